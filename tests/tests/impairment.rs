//! The customer's leg through a seeded impairment relay (5 % loss + 30 ms jitter with
//! reordering, `bibridge_testkit::impair`): monitor and coach still carry the right tones
//! (docs/design.md §3), and the monitor path is concealed rather than holed where customer
//! packets were lost.
//! Customer 440 Hz, agent 1000 Hz, supervisor 2000 Hz, all at −20 dBFS.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bibridge_testkit::impair::{ImpairRelay, Impairment};
use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::tone::{rms_dbfs, tone_level_dbfs};
use bibridge_testkit::ua::{sdp_connection, sdp_offer};
use common::*;

const SEED: u64 = 0x5EED_2026;

/// A customer → agent call whose customer media crosses `relay` (customer → bibridge impaired).
struct ImpairedCall {
    call: ConnectedCall,
    relay: ImpairRelay,
}

async fn impaired_call(lab: &Lab, imp: Impairment) -> ImpairedCall {
    let mut agent = lab.registered("1001").await;
    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let agent_rtp = RtpPeer::bind().await.unwrap();
    let relay = ImpairRelay::start(customer_rtp.local_addr(), imp, Impairment::CLEAN, SEED)
        .await
        .unwrap();
    // The customer's SDP names the relay: bibridge sends there and hears the relay from there.
    let offer = sdp_offer(relay.bridge_addr(), &[0, 8, 101], "sendrecv");
    let mut trunk_call = trunk.invite("1001", &offer, false).await.unwrap();
    let incoming = agent.wait_invite(Duration::from_secs(5)).await.unwrap();
    let anchor_agent = sdp_connection(incoming.sdp.as_deref().unwrap()).unwrap();
    let answer = sdp_offer(agent_rtp.local_addr(), &[0, 101], "sendrecv");
    let agent_call = agent.answer(&incoming, &answer).await.unwrap();
    let ok = trunk
        .wait_final(&mut trunk_call, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.status_code.code(), 200);
    let anchor_customer = sdp_connection(trunk_call.remote_sdp.as_deref().unwrap()).unwrap();
    relay.set_bridge(anchor_customer).unwrap();
    customer_rtp.start_sending(relay.phone_addr(), Some(CUSTOMER_HZ), LEVEL, 0);
    agent_rtp.start_sending(anchor_agent, Some(AGENT_HZ), LEVEL, 0);
    ImpairedCall {
        call: ConnectedCall {
            trunk,
            agent,
            trunk_call,
            agent_call,
            customer_rtp,
            agent_rtp,
            anchor_customer,
            anchor_agent,
        },
        relay,
    }
}

/// The last `secs` seconds of `peer`'s audio placed by RTP timestamp (lost packets as zeros,
/// reordered ones in their place), and how many samples of it no packet covered.
fn timeline_tail(peer: &RtpPeer, secs: f64) -> (Vec<i16>, usize) {
    let (audio, _) = peer.received_timeline();
    let n = (8000.0 * secs) as usize;
    assert!(
        audio.len() >= n,
        "only {} samples on the timeline",
        audio.len()
    );
    let tail = audio[audio.len() - n..].to_vec();
    // Count uncovered samples of the tail again from the tail alone: zero runs of a whole
    // packet are holes (a −20 dBFS tone sum is never 160 zeros in a row).
    let holes = tail
        .chunks(160)
        .filter(|c| c.len() == 160 && c.iter().all(|&s| s == 0))
        .count()
        * 160;
    (tail, holes)
}

/// Wanted tones within `tol` dB of −20 dBFS, unwanted ones below −60 dBFS, by Goertzel on the
/// timeline.
fn hears(who: &str, audio: &[i16], wanted: &[f64], unwanted: &[f64], tol: f64) {
    for &f in wanted {
        let l = tone_level_dbfs(audio, f, 8000);
        assert!(
            (l - LEVEL).abs() <= tol,
            "{who} should hear {f} Hz at {LEVEL} dBFS ±{tol}, got {l:.2}"
        );
    }
    for &f in unwanted {
        let l = tone_level_dbfs(audio, f, 8000);
        assert!(l < -60.0, "{who} must not hear {f} Hz, got {l:.2} dBFS");
    }
}

/// Longest run of 10 ms windows quieter than −45 dBFS (the tones are at −20 dBFS each), in ms.
fn longest_silence_ms(audio: &[i16]) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for w in audio.chunks(80) {
        if rms_dbfs(w) < -45.0 {
            run += 10;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_and_coach_carry_the_right_tones_under_loss_and_jitter() {
    let lab = start(|_| {}).await;
    let ic = impaired_call(&lab, Impairment::loss_jitter(5.0, 30)).await;
    let call = &ic.call;
    let mut sup = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 300).await;
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 2500).await;

    // Monitor: the supervisor hears customer and agent, nobody hears the supervisor.
    let (heard, holes) = timeline_tail(&sup.rtp, 2.0);
    hears(
        "supervisor (monitor)",
        &heard,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[],
        3.0,
    );
    let (agent_heard, _) = timeline_tail(&call.agent_rtp, 2.0);
    hears(
        "agent (monitor)",
        &agent_heard,
        &[CUSTOMER_HZ],
        &[SUP_A_HZ],
        3.0,
    );
    // Concealment: no customer packet lost on the way leaves a hole in what the supervisor
    // hears (before PLC each lost packet was passed on as a 20 ms gap).
    let stats = ic.relay.to_bridge_stats();
    assert!(stats.lost > 0, "the relay lost nothing: {stats:?}");
    let silence = longest_silence_ms(&heard);
    assert!(
        holes == 0 && silence < 20,
        "monitor path has gaps: {holes} samples uncovered, longest silence {silence} ms \
         (relay: {stats:?})"
    );

    // Coach by SIP INFO "2": the agent hears customer and coach, the customer never the coach.
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
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 300).await;
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &sup.rtp], 2500).await;
    let (agent_heard, agent_holes) = timeline_tail(&call.agent_rtp, 2.0);
    hears(
        "agent (coach)",
        &agent_heard,
        &[CUSTOMER_HZ, SUP_A_HZ],
        &[],
        3.0,
    );
    let silence = longest_silence_ms(&agent_heard);
    assert!(
        agent_holes == 0 && silence < 20,
        "coach path has gaps: {agent_holes} samples uncovered, longest silence {silence} ms"
    );
    let (customer_heard, _) = timeline_tail(&call.customer_rtp, 2.0);
    hears(
        "customer (coach)",
        &customer_heard,
        &[AGENT_HZ],
        &[SUP_A_HZ],
        2.0,
    );
    let (heard, _) = timeline_tail(&sup.rtp, 2.0);
    hears(
        "supervisor (coach)",
        &heard,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[],
        3.0,
    );
    lab.server.shutdown().await;
}

/// Not a test: the capture behind `scripts/pesq-monitor` (PESQ of the monitor path). With
/// `PESQ_REF` naming raw 8 kHz 16-bit little-endian speech and `PESQ_OUT` a directory, the
/// customer says the speech through the relay under each condition (the agent silent) and what
/// the supervisor receives, placed by RTP timestamp, is written to `PESQ_OUT/<condition>.raw`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement for scripts/pesq-monitor, not CI"]
async fn pesq_capture() {
    let (Ok(reference), Ok(out)) = (std::env::var("PESQ_REF"), std::env::var("PESQ_OUT")) else {
        eprintln!("PESQ_REF and PESQ_OUT not set: nothing to capture");
        return;
    };
    let bytes = std::fs::read(&reference).unwrap();
    let speech: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let secs = speech.len() as u64 / 8;
    for (name, loss, jitter) in [
        ("clean", 0.0, 0),
        ("loss2-jitter20", 2.0, 20),
        ("loss5-jitter30", 5.0, 30),
        ("loss10-jitter60", 10.0, 60),
    ] {
        let lab = start(|_| {}).await;
        let ic = impaired_call(&lab, Impairment::loss_jitter(loss, jitter)).await;
        let call = &ic.call;
        call.customer_rtp
            .start_sending(ic.relay.phone_addr(), None, LEVEL, 0);
        call.agent_rtp
            .start_sending(call.anchor_agent, None, LEVEL, 0);
        let sup = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        sup.rtp.clear_received();
        call.customer_rtp
            .start_sending_pcm(ic.relay.phone_addr(), speech.clone(), 0);
        tokio::time::sleep(Duration::from_millis(secs + 600)).await;
        let (heard, missing) = sup.rtp.received_timeline();
        let raw: Vec<u8> = heard.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(format!("{out}/{name}.raw"), raw).unwrap();
        eprintln!(
            "{name}: {} samples, {missing} uncovered, relay {:?}",
            heard.len(),
            ic.relay.to_bridge_stats()
        );
        lab.server.shutdown().await;
    }
}
