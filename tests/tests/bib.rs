//! Built-In-Bridge end to end: supervisors attach to a live customer ↔ agent call with feature
//! codes; every leg's audio is checked by tone detection against the docs/design.md §3 table.
//! Customer 440 Hz, agent 1000 Hz, supervisor A 2000 Hz, supervisor B 2600 Hz, all at −20 dBFS.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(5);
const ALL: [f64; 4] = [CUSTOMER_HZ, AGENT_HZ, SUP_A_HZ, SUP_B_HZ];

fn except(wanted: &[f64]) -> Vec<f64> {
    ALL.iter()
        .copied()
        .filter(|f| !wanted.contains(f))
        .collect()
}

/// Check one leg against its row of the table: wanted tones ±2 dB, everything else < −60 dBFS.
/// On failure, the packets behind the audio are described too (sources, SSRCs, sequence gaps,
/// per-packet levels of the wanted tones), so a rare failure can be told from a flake.
fn row(who: &str, peer: &bibridge_testkit::rtp_peer::RtpPeer, wanted: &[f64]) {
    let audio = peer.received_audio();
    let checked =
        std::panic::catch_unwind(|| assert_hears(who, &audio, wanted, &except(wanted), 2.0));
    if let Err(panic) = checked {
        let pkts = peer.received_packets();
        let mut sources: Vec<_> = pkts.iter().map(|p| (p.from, p.ssrc)).collect();
        sources.sort();
        sources.dedup();
        let gaps = pkts
            .windows(2)
            .filter(|w| w[1].seq != w[0].seq.wrapping_add(1))
            .count();
        let tail = pkts.len().saturating_sub(50);
        for &f in wanted {
            let levels: Vec<String> = per_packet_levels(peer, f)
                .iter()
                .skip(tail)
                .map(|(_, seq, _, l)| format!("{seq}:{l:.0}"))
                .collect();
            eprintln!("{who}: {f} Hz per packet (last 50): {}", levels.join(" "));
        }
        eprintln!(
            "{who}: {} packets from (addr, ssrc) {sources:?}, {gaps} sequence gaps",
            pkts.len()
        );
        std::panic::resume_unwind(panic);
    }
}

async fn session_in_mode(code: &str) -> (Lab, ConnectedCall, Supervisor) {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let sup = dial_session(&lab, "2001", &format!("{code}1001"), SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 1200).await;
    (lab, call, sup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_hears_both_and_is_heard_by_nobody() {
    let (lab, call, sup) = session_in_mode("*81").await;
    row("supervisor", &sup.rtp, &[CUSTOMER_HZ, AGENT_HZ]);
    row("agent", &call.agent_rtp, &[CUSTOMER_HZ]);
    row("customer", &call.customer_rtp, &[AGENT_HZ]);
    // The customer receives the agent's packets unchanged.
    let sent = call.agent_rtp.sent_packets();
    for p in call.customer_rtp.received_packets().iter().rev().take(20) {
        assert!(
            sent.iter().any(|s| s.payload == p.payload),
            "customer got a payload the agent never sent"
        );
    }
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coach_is_heard_by_the_agent_only() {
    let (lab, call, sup) = session_in_mode("*82").await;
    row("supervisor", &sup.rtp, &[CUSTOMER_HZ, AGENT_HZ]);
    row("agent", &call.agent_rtp, &[CUSTOMER_HZ, SUP_A_HZ]);
    row("customer", &call.customer_rtp, &[AGENT_HZ]);
    let sent = call.agent_rtp.sent_packets();
    for p in call.customer_rtp.received_packets().iter().rev().take(20) {
        assert!(
            sent.iter().any(|s| s.payload == p.payload),
            "customer payloads are the agent's, untouched"
        );
    }
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_is_a_three_way_call() {
    let (lab, call, sup) = session_in_mode("*83").await;
    row("supervisor", &sup.rtp, &[CUSTOMER_HZ, AGENT_HZ]);
    row("agent", &call.agent_rtp, &[CUSTOMER_HZ, SUP_A_HZ]);
    row("customer", &call.customer_rtp, &[AGENT_HZ, SUP_A_HZ]);
    lab.server.shutdown().await;
}

/// Outputs keep one SSRC and continuous sequence numbers across a switch.
fn assert_continuous(who: &str, peer: &bibridge_testkit::rtp_peer::RtpPeer) {
    let pkts = peer.received_packets();
    assert!(pkts.len() > 20, "{who}: too few packets");
    let ssrc = pkts[0].ssrc;
    for w in pkts.windows(2) {
        assert_eq!(w[1].ssrc, ssrc, "{who}: SSRC changed");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{who}: sequence gap or jump"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_switches_modes_by_info_and_rfc4733_without_gaps() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.talk();
    let mut sup = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 1100).await;
    row("agent (monitor)", &call.agent_rtp, &[CUSTOMER_HZ]);

    // SIP INFO "2" → coach.
    let r = sup
        .ua
        .send_request_in_dialog(
            &sup.call,
            "INFO",
            &[],
            Some(("application/dtmf-relay", "Signal=2\r\nDuration=160\r\n")),
        )
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let switched_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The switch takes effect within 40 ms of media: among the agent's packets sent after the
    // INFO was answered, the one already in flight may lack the coach; within the next two
    // (40 ms) it must be there.
    // Counted in packets (20 ms of audio each), not wall-clock, so a loaded machine cannot
    // make it flaky.
    let after: Vec<f64> = per_packet_levels(&call.agent_rtp, SUP_A_HZ)
        .into_iter()
        .filter(|(at, _, _, _)| *at >= switched_at)
        .map(|(_, _, _, l)| l)
        .collect();
    let first = after
        .iter()
        .position(|l| *l > -30.0)
        .expect("coach never heard");
    assert!(
        first <= 2,
        "coach heard only from packet {first} after the switch: {after:?}"
    );
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 1100).await;
    row(
        "agent (coach by INFO)",
        &call.agent_rtp,
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    row("customer (coach by INFO)", &call.customer_rtp, &[AGENT_HZ]);

    // RFC 4733 "3" → barge (three packets of one event, as phones send them; end bit on the last).
    for (i, end) in [(0u16, false), (1, false), (2, true)] {
        let mut pkt = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        pkt[2..4].copy_from_slice(&(30_000u16 + i).to_be_bytes());
        pkt[4..8].copy_from_slice(&1_234_560u32.to_be_bytes());
        pkt.extend_from_slice(&[3, if end { 0x80 | 10 } else { 10 }]);
        pkt.extend_from_slice(&(160 * (i + 1)).to_be_bytes());
        sup.rtp.send_raw(sup.anchor, &pkt).await.unwrap();
    }
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 300).await;
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 1000).await;
    row(
        "customer (barge by RFC 4733)",
        &call.customer_rtp,
        &[AGENT_HZ, SUP_A_HZ],
    );
    // Digits are consumed: nobody received a telephone-event packet.
    for (who, p) in [("agent", &call.agent_rtp), ("customer", &call.customer_rtp)] {
        assert!(
            p.received_packets().iter().all(|x| x.payload_type != 101),
            "{who} got the supervisor's DTMF"
        );
    }

    // Back to monitor by INFO, then check continuity over the whole run.
    call.agent_rtp.clear_received();
    call.customer_rtp.clear_received();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sup.ua
        .send_request_in_dialog(
            &sup.call,
            "INFO",
            &[],
            Some(("application/dtmf-relay", "Signal=1\r\n")),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_continuous("agent across barge→monitor", &call.agent_rtp);
    assert_continuous("customer across barge→monitor", &call.customer_rtp);
    let _ = &mut call;
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coach_is_heard_while_the_customer_is_on_hold() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.talk();
    let sup = dial_session(&lab, "2001", "*821001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    // The agent holds the customer: the customer stops sending.
    let hold = bibridge_testkit::ua::sdp_offer(call.agent_rtp.local_addr(), &[0, 101], "sendonly");
    call.trunk
        .set_auto_answer_reinvite(Some(bibridge_testkit::ua::sdp_offer(
            call.customer_rtp.local_addr(),
            &[0, 101],
            "recvonly",
        )));
    let trunk = tokio::spawn(async move {
        let _ = call.trunk.wait_request("INVITE", T).await;
        call.trunk
    });
    let r = call
        .agent
        .reinvite(&mut call.agent_call, Some(&hold))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    let _trunk = trunk.await.unwrap();
    call.customer_rtp.stop_sending();
    listen_fresh(&[&call.agent_rtp, &sup.rtp], 300).await;
    listen_fresh(&[&call.agent_rtp, &sup.rtp], 1200).await;
    row("agent on hold", &call.agent_rtp, &[SUP_A_HZ]);
    row("supervisor on hold", &sup.rtp, &[AGENT_HZ]);
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_supervisors_in_different_modes() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let a = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    let b = dial_session(&lab, "2002", "*821001", SUP_B_HZ, &[8, 101])
        .await
        .unwrap();
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &a.rtp, &b.rtp], 1200).await;
    row("agent", &call.agent_rtp, &[CUSTOMER_HZ, SUP_B_HZ]);
    row("customer", &call.customer_rtp, &[AGENT_HZ]);
    // A monitors and also hears B, whose voice reaches the agent; B does not hear A (silent).
    row(
        "supervisor A (monitor)",
        &a.rtp,
        &[CUSTOMER_HZ, AGENT_HZ, SUP_B_HZ],
    );
    row(
        "supervisor B (coach, PCMA)",
        &b.rtp,
        &[CUSTOMER_HZ, AGENT_HZ],
    );
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_hang_up_sends_bye_to_every_supervisor() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    let mut sup = dial_session(&lab, "2001", "*821001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    call.agent.bye(&call.agent_call).await.unwrap();
    sup.ua.wait_request("BYE", T).await.unwrap();
    call.trunk.wait_request("BYE", T).await.unwrap();
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_promotion_keeps_supervisor_and_customer_connected() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.talk();
    let mut sup = dial_session(&lab, "2001", "*831001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = call.agent.bye(&call.agent_call).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    call.agent_rtp.stop_sending();
    // Nobody hangs up on the customer or the supervisor.
    assert!(
        call.trunk
            .wait_request("BYE", Duration::from_millis(500))
            .await
            .is_err(),
        "customer must stay connected"
    );
    listen_fresh(&[&call.customer_rtp, &sup.rtp], 1200).await;
    row("customer after promotion", &call.customer_rtp, &[SUP_A_HZ]);
    row("supervisor after promotion", &sup.rtp, &[CUSTOMER_HZ]);
    // The customer hangs up: the promoted supervisor gets the BYE.
    call.trunk.bye(&call.trunk_call).await.unwrap();
    sup.ua.wait_request("BYE", T).await.unwrap();
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_code() {
    let lab = start(|c| {
        for u in &mut c.users {
            if u.extension == "1002" {
                u.builtin_bridge = false;
            }
        }
        // 2002 may monitor but not barge.
        c.policy.push(bibridge_b2bua::config::PolicyRule {
            supervisors: "night".into(),
            agents: "agents".into(),
            modes: vec![bibridge_b2bua::config::Mode::Monitor],
            notify: None,
        });
        for u in &mut c.users {
            if u.extension == "2002" {
                u.groups = vec!["night".into()];
            }
        }
    })
    .await;
    // One agent in a call; 1002 (Built-In-Bridge off) is refused before the call is looked up.
    let mut call = connect_call(&lab, "1001").await;
    let pts = [0u8, 101];
    let cases = [
        ("2001", "*811999", 404, "no such extension"),
        ("2001", "*811003", 480, "agent not in a call"),
        ("2001", "*811002", 403, "Built-In-Bridge off"),
        ("2001", "*812001", 403, "self"),
        ("2002", "*831001", 403, "mode not allowed"),
        ("1003", "*811001", 403, "an agent is no supervisor"),
    ];
    for (sup, dialled, code, why) in cases {
        let got = dial_session(&lab, sup, dialled, SUP_A_HZ, &pts).await.err();
        assert_eq!(got, Some(code), "{why}: {sup} dialling {dialled}");
    }
    assert!(
        dial_session(&lab, "2002", "*811001", SUP_A_HZ, &pts)
            .await
            .is_ok(),
        "allowed mode works"
    );
    // From the trunk: never.
    let trunk = &mut call.trunk;
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let mut c = trunk
        .invite(
            "*811001",
            &bibridge_testkit::ua::sdp_offer(rtp.local_addr(), &[0], "sendrecv"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        trunk
            .wait_final(&mut c, T)
            .await
            .unwrap()
            .status_code
            .code(),
        403
    );
    lab.server.shutdown().await;
}

/// PCMU customer, PCMA agent (the legs are transcoded), a supervisor on G.722 — or on Opus when
/// built with the `opus` feature: the table still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_codecs_keep_the_table() {
    use bibridge_media::codec::CodecKind;
    let lab = start(|_| {}).await;
    let mut agent = lab.registered("1001").await;
    let mut trunk = lab.trunk_ua().await;
    let customer = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let agent_rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let offer = bibridge_testkit::ua::sdp_offer(customer.local_addr(), &[0, 101], "sendrecv");
    let mut c = trunk.invite("1001", &offer, false).await.unwrap();
    let inc = agent.wait_invite(T).await.unwrap();
    let anchor_agent = bibridge_testkit::ua::sdp_connection(inc.sdp.as_deref().unwrap()).unwrap();
    assert!(
        bibridge_testkit::ua::sdp_payload_types(inc.sdp.as_deref().unwrap()).contains(&8),
        "PCMA offered to the agent"
    );
    agent
        .answer(
            &inc,
            &bibridge_testkit::ua::sdp_offer(agent_rtp.local_addr(), &[8, 101], "sendrecv"),
        )
        .await
        .unwrap();
    assert_eq!(
        trunk
            .wait_final(&mut c, T)
            .await
            .unwrap()
            .status_code
            .code(),
        200
    );
    let sdp_c = c.remote_sdp.clone().unwrap();
    assert_eq!(
        bibridge_testkit::ua::sdp_payload_types(&sdp_c)[0],
        0,
        "customer keeps PCMU"
    );
    let anchor_customer = bibridge_testkit::ua::sdp_connection(&sdp_c).unwrap();
    customer.start_sending(anchor_customer, Some(CUSTOMER_HZ), LEVEL, 0);
    agent_rtp.start_sending(anchor_agent, Some(AGENT_HZ), LEVEL, 8);

    let (kind, pt) = if cfg!(feature = "opus") {
        (CodecKind::Opus, 111u8)
    } else {
        (CodecKind::G722, 9u8)
    };
    let mut sup_ua = bibridge_testkit::ua::TestUa::bind("2001", "lab2001", lab.sip)
        .await
        .unwrap();
    let mut sup = CodecPeer::bind(kind).await;
    let offer = bibridge_testkit::ua::sdp_offer(sup.local_addr(), &[pt, 101], "sendrecv");
    let mut s = sup_ua.invite("*821001", &offer, true).await.unwrap();
    assert_eq!(
        sup_ua
            .wait_final(&mut s, T)
            .await
            .unwrap()
            .status_code
            .code(),
        200
    );
    let anchor_sup =
        bibridge_testkit::ua::sdp_connection(s.remote_sdp.as_deref().unwrap()).unwrap();
    sup.start_sending(anchor_sup, SUP_A_HZ, pt);
    tokio::time::sleep(Duration::from_millis(500)).await;
    listen_fresh(&[&customer, &agent_rtp], 0).await;
    sup.clear();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    row(
        "agent (PCMA) in coach",
        &agent_rtp,
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    row("customer (PCMU) in coach", &customer, &[AGENT_HZ]);
    sup.assert_hears(
        &format!("supervisor ({kind:?})"),
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_A_HZ],
        2.0,
    );
    lab.server.shutdown().await;
}

/// A supervisor's phone that knows the agent's dialog joins it (RFC 3911 `Join`): a barge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_header_barges_into_the_named_dialog() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    // bibridge's view of the agent's dialog: to-tag is bibridge's tag, from-tag the agent's.
    let join = format!(
        "{};to-tag={};from-tag={}",
        call.agent_call.call_id,
        call.agent_call.remote_tag.clone().unwrap(),
        call.agent_call.local_tag
    );
    let mut ua = bibridge_testkit::ua::TestUa::bind("2001", "lab2001", lab.sip)
        .await
        .unwrap();
    let rtp = bibridge_testkit::rtp_peer::RtpPeer::bind().await.unwrap();
    let offer = bibridge_testkit::ua::sdp_offer(rtp.local_addr(), &[0, 101], "sendrecv");
    // A dialog that does not exist: 481.
    let mut bad = ua
        .invite_with(
            "2001",
            &offer,
            true,
            &[("Join", "nope;to-tag=x;from-tag=y")],
        )
        .await
        .unwrap();
    assert_eq!(
        ua.wait_final(&mut bad, T).await.unwrap().status_code.code(),
        481
    );
    let mut s = ua
        .invite_with("2001", &offer, true, &[("Join", &join)])
        .await
        .unwrap();
    assert_eq!(
        ua.wait_final(&mut s, T).await.unwrap().status_code.code(),
        200
    );
    let anchor = bibridge_testkit::ua::sdp_connection(s.remote_sdp.as_deref().unwrap()).unwrap();
    rtp.start_sending(anchor, Some(SUP_A_HZ), LEVEL, 0);
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &rtp], 1200).await;
    row(
        "customer (joined = barge)",
        &call.customer_rtp,
        &[AGENT_HZ, SUP_A_HZ],
    );
    row(
        "agent (joined = barge)",
        &call.agent_rtp,
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    row("supervisor (joined)", &rtp, &[CUSTOMER_HZ, AGENT_HZ]);
    lab.server.shutdown().await;
}

/// A supervisor's phone re-offers mid-session with another codec: bibridge answers from the new
/// offer and the coach is still heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_reoffer_switches_codec() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let mut sup = dial_session(&lab, "2001", "*821001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    let offer = bibridge_testkit::ua::sdp_offer(sup.rtp.local_addr(), &[8, 101], "sendrecv");
    let r = sup.ua.reinvite(&mut sup.call, Some(&offer)).await.unwrap();
    assert_eq!(r.status_code.code(), 200);
    let answer = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!(
        bibridge_testkit::ua::sdp_payload_types(&answer),
        vec![8, 101],
        "{answer}"
    );
    sup.rtp.stop_sending();
    sup.rtp.start_sending(sup.anchor, Some(SUP_A_HZ), LEVEL, 8);
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 300).await;
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 1200).await;
    row(
        "agent (coach on PCMA)",
        &call.agent_rtp,
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    row("customer", &call.customer_rtp, &[AGENT_HZ]);
    row("supervisor on PCMA", &sup.rtp, &[CUSTOMER_HZ, AGENT_HZ]);
    assert!(sup
        .rtp
        .received_packets()
        .iter()
        .rev()
        .take(10)
        .all(|p| p.payload_type == 8));
    lab.server.shutdown().await;
}
