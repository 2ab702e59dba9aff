//! Media hijack attempts against a live call on 127.0.0.1 (issue 12, finding 1): an attacker
//! with no credentials sprays RTP/RTCP at the call's ports. With strict latching (the lab
//! default) bibridge accepts media only from the address each leg's SDP names: the attacker
//! receives nothing, and nothing it sends reaches a party. See docs/reliability/latching.md.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::tone::tone_level_dbfs;
use common::*;
use tokio::net::UdpSocket;

const T: Duration = Duration::from_secs(5);
/// The attacker's tone: it must never be heard by a party.
const ATTACKER_HZ: f64 = 2370.0; // no harmonic of the parties' 440 and 1000 Hz

fn rtcp_of(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip(), a.port() + 1)
}

/// Level of `hz` over everything `peer` heard (not only the tail: a hijack that lasted a
/// moment counts).
fn worst_level(peer: &RtpPeer, hz: f64) -> f64 {
    let audio = peer.received_audio();
    audio
        .chunks(8000)
        .filter(|c| c.len() >= 800)
        .map(|c| tone_level_dbfs(c, hz, 8000))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn assert_attacker_got_nothing(who: &str, attacker: &RtpPeer) {
    assert_eq!(
        (attacker.received_count(), attacker.received_other()),
        (0, (0, 0)),
        "{who}: the attacker received media from bibridge"
    );
}

fn assert_nobody_hears_attacker(call: &ConnectedCall) {
    for (who, p) in [("customer", &call.customer_rtp), ("agent", &call.agent_rtp)] {
        let l = worst_level(p, ATTACKER_HZ);
        assert!(
            l < -60.0,
            "{who} heard the attacker's {ATTACKER_HZ} Hz at {l:.1} dBFS"
        );
    }
}

/// (a) RTP sprayed at both legs' ports before the parties send, and on while they talk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_spray_before_and_during_the_call_hijacks_nothing() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    let at_customer = RtpPeer::bind().await.unwrap();
    let at_agent = RtpPeer::bind().await.unwrap();
    at_customer.start_sending(call.anchor_customer, Some(ATTACKER_HZ), LEVEL, 0);
    at_agent.start_sending(call.anchor_agent, Some(ATTACKER_HZ), LEVEL, 0);
    // The attacker is first: its packets reach the ports before any legitimate one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.talk();
    assert!(call.customer_rtp.wait_for_packets(75, T).await);
    assert!(call.agent_rtp.wait_for_packets(75, T).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_attacker_got_nothing("customer leg", &at_customer);
    assert_attacker_got_nothing("agent leg", &at_agent);
    assert_nobody_hears_attacker(&call);
    // The parties still hear each other.
    assert_hears(
        "customer",
        &call.customer_rtp.received_audio(),
        &[AGENT_HZ],
        &[CUSTOMER_HZ, ATTACKER_HZ],
        1.0,
    );
    assert_hears(
        "agent",
        &call.agent_rtp.received_audio(),
        &[CUSTOMER_HZ],
        &[AGENT_HZ, ATTACKER_HZ],
        1.0,
    );
    // Counted in /metrics.
    let dropped = foreign_counted(&lab, false).await;
    assert!(dropped >= 10, "foreign RTP not counted: {dropped}");
    lab.server.shutdown().await;
}

/// (b) The customer pauses 1.5 s (hold without re-INVITE, VAD): a foreign sender must not take
/// the leg over meanwhile, and the customer's audio flows again when it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_does_not_let_a_foreign_source_take_over() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    assert!(call.agent_rtp.wait_for_packets(40, T).await);
    call.customer_rtp.stop_sending();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attacker = RtpPeer::bind().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    attacker.start_sending(call.anchor_customer, Some(ATTACKER_HZ), LEVEL, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    call.customer_rtp
        .start_sending(call.anchor_customer, Some(CUSTOMER_HZ), LEVEL, 0);
    listen_fresh(&[&call.agent_rtp], 1200).await;
    attacker.stop_sending();
    assert_attacker_got_nothing("customer leg", &attacker);
    assert_nobody_hears_attacker(&call);
    assert_hears(
        "agent",
        &call.agent_rtp.received_audio(),
        &[CUSTOMER_HZ],
        &[ATTACKER_HZ],
        1.0,
    );
    lab.server.shutdown().await;
}

/// Bind an RTP peer whose port + 1 is free too, and a socket there (the party's RTCP port).
async fn peer_with_rtcp() -> (RtpPeer, UdpSocket) {
    for _ in 0..50 {
        let p = RtpPeer::bind().await.unwrap();
        if let Ok(s) = UdpSocket::bind(rtcp_of(p.local_addr())).await {
            return (p, s);
        }
    }
    panic!("no RTP port with a free port + 1");
}

/// An RTCP receiver report (RFC 3550 §6.4.2) with no report blocks from `ssrc`.
fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// Datagrams waiting on `s` within `wait`, and their bytes.
async fn drain(s: &UdpSocket, wait: Duration) -> (usize, usize) {
    let (mut n, mut bytes) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok(Ok((k, _))) = tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
        n += 1;
        bytes += k;
    }
    (n, bytes)
}

/// (c) Foreign RTCP (valid reports and garbage) at both legs' RTCP ports: never relayed to a
/// party, never answered or reflected to the attacker. Legitimate RTCP still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_rtcp_is_neither_relayed_nor_reflected() {
    let lab = start(|_| {}).await;
    let mut agent = lab.registered("1001").await;
    let mut trunk = lab.trunk_ua().await;
    let (customer_rtp, customer_rtcp) = peer_with_rtcp().await;
    let (agent_rtp, agent_rtcp) = peer_with_rtcp().await;
    let offer = bibridge_testkit::ua::sdp_offer(customer_rtp.local_addr(), &[0, 101], "sendrecv");
    let mut trunk_call = trunk.invite("1001", &offer, false).await.unwrap();
    let incoming = agent.wait_invite(T).await.unwrap();
    let anchor_agent =
        bibridge_testkit::ua::sdp_connection(incoming.sdp.as_deref().unwrap()).unwrap();
    let answer = bibridge_testkit::ua::sdp_offer(agent_rtp.local_addr(), &[0, 101], "sendrecv");
    let _agent_call = agent.answer(&incoming, &answer).await.unwrap();
    let ok = trunk.wait_final(&mut trunk_call, T).await.unwrap();
    assert_eq!(ok.status_code.code(), 200);
    let anchor_customer =
        bibridge_testkit::ua::sdp_connection(trunk_call.remote_sdp.as_deref().unwrap()).unwrap();
    customer_rtp.start_sending(anchor_customer, Some(CUSTOMER_HZ), LEVEL, 0);
    agent_rtp.start_sending(anchor_agent, Some(AGENT_HZ), LEVEL, 0);
    assert!(agent_rtp.wait_for_packets(25, T).await);

    // The attacker sprays both RTCP ports from one socket: valid reports and garbage.
    let attacker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for k in 0..400u32 {
        for port in [rtcp_of(anchor_customer), rtcp_of(anchor_agent)] {
            let pkt = if k % 2 == 0 {
                rtcp_rr(0xbad0_0000 | k)
            } else {
                vec![0x5a; 200]
            };
            attacker.send_to(&pkt, port).await.unwrap();
        }
        if k % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Foreign RTCP sent to the RTP ports (demultiplexed as RTCP there) too.
    for port in [anchor_customer, anchor_agent] {
        for k in 0..50 {
            attacker
                .send_to(&rtcp_rr(0xbad1_0000 | k), port)
                .await
                .unwrap();
        }
    }
    let reflected = drain(&attacker, Duration::from_millis(500)).await;
    let at_agent = drain(&agent_rtcp, Duration::from_millis(50)).await;
    let at_customer = drain(&customer_rtcp, Duration::from_millis(50)).await;
    assert_eq!(reflected, (0, 0), "bytes reflected to the attacker");
    assert_eq!(at_agent, (0, 0), "foreign RTCP relayed to the agent");
    assert_eq!(at_customer, (0, 0), "foreign RTCP relayed to the customer");

    // The customer's own RTCP (from its SDP port + 1) still reaches the agent's RTCP port.
    let rr = rtcp_rr(customer_rtp.ssrc());
    for _ in 0..3 {
        customer_rtcp
            .send_to(&rr, rtcp_of(anchor_customer))
            .await
            .unwrap();
    }
    let legit = drain(&agent_rtcp, Duration::from_millis(500)).await;
    assert_eq!(legit.0, 3, "legitimate RTCP relayed");
    assert_eq!(
        drain(&attacker, Duration::from_millis(100)).await,
        (0, 0),
        "nothing for the attacker"
    );
    let dropped = foreign_counted(&lab, true).await;
    assert!(dropped >= 100, "foreign RTCP not counted: {dropped}");
    lab.server.shutdown().await;
}

/// (d) Consecutive calls do not get predictable ports (the old allocator advanced by 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_calls_get_unpredictable_ports() {
    let lab = start(|_| {}).await;
    let mut ports = Vec::new();
    for _ in 0..4 {
        let mut call = connect_call(&lab, "1001").await;
        ports.push(call.anchor_customer.port());
        let r = call.trunk.bye(&call.trunk_call).await.unwrap();
        assert_eq!(r.status_code.code(), 200);
        call.agent.wait_request("BYE", T).await.unwrap();
    }
    let steps: Vec<i32> = ports
        .windows(2)
        .map(|w| i32::from(w[1]) - i32::from(w[0]))
        .collect();
    // With 100 pairs chosen at random, three equal steps happen by chance about once in 10^6.
    assert!(
        !steps.iter().all(|&s| s == steps[0]),
        "ports advance predictably: {ports:?}"
    );
    lab.server.shutdown().await;
}

/// Foreign RTP (or RTCP) packets dropped, as `/metrics` shows them (the media tasks fold their
/// counters in once a second).
async fn foreign_counted(lab: &Lab, rtcp: bool) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = lab.server.metrics();
    if rtcp {
        m.rtcp_foreign.load(Relaxed)
    } else {
        m.rtp_foreign.load(Relaxed)
    }
}

/// A call's media task that dies (a panic, through a test-only hook) is noticed: the call is
/// ended with a BYE to both parties and the ports are free again (issue 12, finding 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_media_task_ends_its_call() {
    let lab = start(|_| {}).await;
    let mut call = connect_call(&lab, "1001").await;
    call.talk();
    assert!(call.agent_rtp.wait_for_packets(10, T).await);
    lab.server.crash_media_tasks().await;
    call.trunk.wait_request("BYE", T).await.unwrap();
    call.agent.wait_request("BYE", T).await.unwrap();
    let stats = lab.server.control().stats().await.unwrap();
    assert_eq!((stats.calls, stats.ports_in_use), (0, 0));
    assert_eq!(
        lab.server
            .metrics()
            .media_tasks_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    lab.server.shutdown().await;
}

/// A customer "behind NAT": its SDP names an address it does not send from. Strict mode drops
/// its media (documented); learn mode latches it within the window after the answer, and an
/// attacker that starts after the phone cannot take it over.
async fn nat_customer(latching: bibridge_b2bua::config::Latching) -> (usize, usize, usize) {
    let lab = start(|c| c.rtp.latching = latching).await;
    let mut agent = lab.registered("1001").await;
    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let agent_rtp = RtpPeer::bind().await.unwrap();
    // The private address in the SDP: a port nobody sends from.
    let private = free_udp_addr();
    let offer = bibridge_testkit::ua::sdp_offer(private, &[0, 101], "sendrecv");
    let mut trunk_call = trunk.invite("1001", &offer, false).await.unwrap();
    let incoming = agent.wait_invite(T).await.unwrap();
    let anchor_agent =
        bibridge_testkit::ua::sdp_connection(incoming.sdp.as_deref().unwrap()).unwrap();
    let answer = bibridge_testkit::ua::sdp_offer(agent_rtp.local_addr(), &[0, 101], "sendrecv");
    let _agent_call = agent.answer(&incoming, &answer).await.unwrap();
    let ok = trunk.wait_final(&mut trunk_call, T).await.unwrap();
    assert_eq!(ok.status_code.code(), 200);
    let anchor_customer =
        bibridge_testkit::ua::sdp_connection(trunk_call.remote_sdp.as_deref().unwrap()).unwrap();
    customer_rtp.start_sending(anchor_customer, Some(CUSTOMER_HZ), LEVEL, 0);
    agent_rtp.start_sending(anchor_agent, Some(AGENT_HZ), LEVEL, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let attacker = RtpPeer::bind().await.unwrap();
    attacker.start_sending(anchor_customer, Some(ATTACKER_HZ), LEVEL, 0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    attacker.stop_sending();
    assert!(
        worst_level(&agent_rtp, ATTACKER_HZ) < -60.0,
        "agent heard the attacker"
    );
    let got = (
        agent_rtp.received_count(),
        customer_rtp.received_count(),
        attacker.received_count(),
    );
    lab.server.shutdown().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learn_mode_serves_a_phone_behind_nat_and_strict_does_not() {
    use bibridge_b2bua::config::Latching;
    let (agent, customer, attacker) = nat_customer(Latching::Learn).await;
    assert!(agent >= 40 && customer >= 40, "learn: {agent} / {customer}");
    assert_eq!(attacker, 0, "learn: the attacker received media");
    let (agent, _, attacker) = nat_customer(Latching::Strict).await;
    assert_eq!(
        (agent, attacker),
        (0, 0),
        "strict: media from an address not in SDP"
    );
}
