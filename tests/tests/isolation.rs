//! Engine task isolation and crash recovery (issue 12, findings 6–8): a SIP flood cannot starve
//! media events (supervisor DTMF still switches modes), and what survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Blast distinct OPTIONS requests at `target` from one loopback socket until `stop` (bounded
/// by `max` anyway); returns how many were sent.
fn flood(target: std::net::SocketAddr, stop: Arc<AtomicBool>, max: Duration) -> u64 {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let end = std::time::Instant::now() + max;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < end {
        let msg = format!(
            "OPTIONS sip:bibridge@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKfl{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:flood@{me}>;tag=f{n}\r\nTo: <sip:bibridge@{target}>\r\n\
             Call-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), target);
        n += 1;
    }
    n
}

async fn session_mode(lab: &Lab) -> Option<String> {
    let snap = lab.server.control().snapshot(None).await.unwrap();
    snap.calls
        .first()
        .and_then(|c| c.sessions.first())
        .map(|s| s.mode.as_str().to_string())
}

/// Finding 6: under a SIP flood the engine's single input queue was full, the media task's
/// `try_send` failed and the supervisor's DTMF digit was dropped. Now media events have a queue
/// of their own that the engine task serves first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_switches_the_mode_during_a_sip_flood() {
    let lab = start(|_| {}).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let sup = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(session_mode(&lab).await.as_deref(), Some("monitor"));

    let stop = Arc::new(AtomicBool::new(false));
    let target = lab.sip;
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || flood(target, stop, Duration::from_secs(8)))
    };
    // Let the queue fill.
    tokio::time::sleep(Duration::from_millis(700)).await;
    // RFC 4733 "2" → coach, as phones send it (three packets, end bit on the last).
    for (i, end) in [(0u16, false), (1, false), (2, true)] {
        let mut pkt = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        pkt[2..4].copy_from_slice(&(30_000u16 + i).to_be_bytes());
        pkt[4..8].copy_from_slice(&1_234_560u32.to_be_bytes());
        pkt.extend_from_slice(&[2, if end { 0x80 | 10 } else { 10 }]);
        pkt.extend_from_slice(&(160 * (i + 1)).to_be_bytes());
        sup.rtp.send_raw(sup.anchor, &pkt).await.unwrap();
    }
    let dtmf_at = std::time::Instant::now();
    // Still flooding: the switch must happen while the flood goes on, promptly: the agent hears
    // the coach within a few packets (before: the digit waited behind thousands of queued SIP
    // messages, or was dropped).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = per_packet_levels(&call.agent_rtp, SUP_A_HZ)
        .into_iter()
        .find(|(at, _, _, l)| *at >= dtmf_at && *l > -30.0)
        .map(|(at, _, _, _)| at - dtmf_at);
    let t0 = std::time::Instant::now();
    let mode = tokio::time::timeout(Duration::from_secs(5), session_mode(&lab))
        .await
        .expect("control answered during the flood");
    let control_latency = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.join().unwrap();
    eprintln!(
        "flood: {sent} OPTIONS sent; coach heard after {heard:?}; snapshot took {control_latency:?}"
    );
    assert_eq!(
        mode.as_deref(),
        Some("coach"),
        "DTMF digit lost in the flood"
    );
    let heard = heard.expect("the agent never heard the coach");
    assert!(
        heard < Duration::from_millis(400),
        "the switch waited {heard:?} behind the SIP flood"
    );
    assert!(
        control_latency < Duration::from_millis(400),
        "a control request waited {control_latency:?} behind the SIP flood"
    );
    let dropped = lab
        .server
        .metrics()
        .sip_queue_dropped
        .load(Ordering::Relaxed);
    eprintln!("SIP datagrams dropped at the full queue: {dropped}");
    lab.server.shutdown().await;
}

/// Finding 7: registrations were lost on restart (calls to agents got 480 until their phones
/// re-registered). Now the bindings are saved in the state directory and restored at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registered_before_a_restart_is_reachable_after_it() {
    let lab = start(|_| {}).await;
    let state = lab
        .cfg
        .state_dir()
        .expect("a state dir next to the audit log");
    let mut agent = lab.registered("1002").await;
    // Saved within the debounce interval, without waiting for a shutdown.
    let file = state.join(bibridge::state::REGISTRATIONS_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("\"1002\"")) {
        assert!(
            std::time::Instant::now() < deadline,
            "registrations not saved to {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let lab = lab.stop().await.restart().await;
    let mut trunk = lab.trunk_ua().await;
    let offer =
        bibridge_testkit::ua::sdp_offer("127.0.0.1:45010".parse().unwrap(), &[0, 101], "sendrecv");
    let mut call = trunk.invite("1002", &offer, false).await.unwrap();
    let incoming = agent
        .wait_invite(Duration::from_secs(5))
        .await
        .expect("the agent's phone rings without having re-registered");
    let answer =
        bibridge_testkit::ua::sdp_offer("127.0.0.1:45012".parse().unwrap(), &[0, 101], "sendrecv");
    agent.answer(&incoming, &answer).await.unwrap();
    let ok = trunk
        .wait_final(&mut call, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.status_code.code(), 200);
    lab.server.shutdown().await;
    let _ = std::fs::remove_dir_all(&state);
}
