//! Compliance end to end (docs/design.md §5) on 127.0.0.1: notification tones measured on every
//! leg by frequency analysis, and audit records written by a running server.
//!
//! Parties talk with their own tones (customer 440 Hz, agent 1000 Hz, supervisor 2000 Hz); the
//! notification tone is 1400 Hz. A packet "carries the tone" when 1400 Hz in it is above −30 dBFS
//! (the tone is −20 dBFS); a leg that must not hear it must stay below −60 dBFS in every packet.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::time::Duration;

use bibridge_b2bua::config::Notify;

const NOTE_HZ: f64 = 1400.0;

/// Packets of `peer` (after `clear_received`) whose 1400 Hz level is above −30 dBFS, and the
/// loudest 1400 Hz level seen in any packet.
fn tone_packets(peer: &bibridge_testkit::rtp_peer::RtpPeer) -> (Vec<u16>, f64) {
    let levels = per_packet_levels(peer, NOTE_HZ);
    let max = levels.iter().map(|l| l.3).fold(-200.0, f64::max);
    let on: Vec<u16> = levels.iter().filter(|l| l.3 > -30.0).map(|l| l.1).collect();
    (on, max)
}

/// Number of separate bursts in a list of sequence numbers (a gap of more than one packet splits).
fn bursts(seqs: &[u16]) -> usize {
    let mut n = 0;
    let mut prev: Option<u16> = None;
    for &s in seqs {
        if prev.is_none_or(|p| s.wrapping_sub(p) > 1) {
            n += 1;
        }
        prev = Some(s);
    }
    n
}

/// A connected, talking call and a supervisor session by feature code; everybody's received
/// audio is collected for `ms` after the session started.
async fn session_with(notify: Notify, dialled: &str, ms: u64) -> (Lab, ConnectedCall, Supervisor) {
    let lab = start(|cfg| cfg.compliance.notify = notify).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    // Both directions flowing before the supervisor joins.
    assert!(
        call.customer_rtp
            .wait_for_packets(10, Duration::from_secs(3))
            .await
    );
    assert!(
        call.agent_rtp
            .wait_for_packets(10, Duration::from_secs(3))
            .await
    );
    call.customer_rtp.clear_received();
    call.agent_rtp.clear_received();
    let sup = dial_session(&lab, "2001", dialled, SUP_A_HZ, &[0, 101])
        .await
        .expect("session accepted");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (lab, call, sup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_only_policy_beeps_the_agent_and_nobody_else() {
    let (_lab, call, sup) = session_with(Notify::Agent, "*811001", 1200).await;
    let (agent_on, agent_max) = tone_packets(&call.agent_rtp);
    // 200 ms of tone = 10 packets (±1 for the packet the tone starts or ends in).
    assert!(
        (9..=12).contains(&agent_on.len()),
        "agent: {} tone packets (max {agent_max:.1} dBFS)",
        agent_on.len()
    );
    assert!(
        (agent_max - (-20.0)).abs() <= 2.0,
        "agent tone level {agent_max:.1}"
    );
    assert_eq!(bursts(&agent_on), 1);
    let (_, customer_max) = tone_packets(&call.customer_rtp);
    assert!(
        customer_max < -60.0,
        "customer heard the beep: {customer_max:.1} dBFS"
    );
    let (_, sup_max) = tone_packets(&sup.rtp);
    assert!(
        sup_max < -60.0,
        "supervisor heard the beep: {sup_max:.1} dBFS"
    );
    // The monitor row still holds afterwards.
    listen_fresh(&[&call.agent_rtp, &call.customer_rtp], 1000).await;
    assert_hears(
        "agent",
        &call.agent_rtp.received_audio(),
        &[CUSTOMER_HZ],
        &[SUP_A_HZ, NOTE_HZ],
        2.0,
    );
    assert_hears(
        "customer",
        &call.customer_rtp.received_audio(),
        &[AGENT_HZ],
        &[SUP_A_HZ, NOTE_HZ],
        2.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_parties_policy_beeps_agent_and_customer() {
    let (_lab, call, sup) = session_with(Notify::All, "*821001", 1200).await;
    for (who, peer) in [("agent", &call.agent_rtp), ("customer", &call.customer_rtp)] {
        let (on, max) = tone_packets(peer);
        assert!(
            (9..=12).contains(&on.len()),
            "{who}: {} tone packets",
            on.len()
        );
        assert!((max - (-20.0)).abs() <= 2.0, "{who}: tone level {max:.1}");
    }
    let (_, sup_max) = tone_packets(&sup.rtp);
    assert!(
        sup_max < -60.0,
        "supervisor heard the beep: {sup_max:.1} dBFS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tone_when_policy_says_none() {
    let (_lab, call, sup) = session_with(Notify::None, "*821001", 1000).await;
    for (who, peer) in [
        ("agent", &call.agent_rtp),
        ("customer", &call.customer_rtp),
        ("supervisor", &sup.rtp),
    ] {
        let (_, max) = tone_packets(peer);
        assert!(max < -60.0, "{who} heard a tone: {max:.1} dBFS");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barging_in_plays_the_distinct_two_beep_entrance_tone() {
    let (_lab, call, _sup) = session_with(Notify::Agent, "*831001", 1400).await;
    let (on, _) = tone_packets(&call.agent_rtp);
    assert_eq!(bursts(&on), 2, "two beeps: {on:?}");
    assert!(
        (18..=24).contains(&on.len()),
        "2 × 200 ms: {} packets",
        on.len()
    );
    let (_, customer_max) = tone_packets(&call.customer_rtp);
    assert!(
        customer_max < -60.0,
        "customer heard the entrance tone: {customer_max:.1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_records_starts_and_refusals_in_its_audit_log() {
    let lab = start(|_| {}).await;
    let path = lab.cfg.compliance.audit_log.clone().expect("audit log on");
    let _call = connect_call(&lab, "1001").await;
    let sup = dial_session(&lab, "2001", "*811001", SUP_A_HZ, &[0, 101])
        .await
        .expect("session accepted");
    // Refused: agent 1002 is in no call.
    assert_eq!(
        dial_session(&lab, "2002", "*811002", SUP_B_HZ, &[0, 101])
            .await
            .err(),
        Some(480)
    );
    let (recs, bad) = bibridge::audit::read(&path, &bibridge::audit::Query::default()).unwrap();
    assert_eq!(bad, 0);
    let events: Vec<(&str, &str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap_or(""),
                r["supervisor"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("start", "2001", ""),
            ("refusal", "2002", "agent_not_in_call")
        ],
        "{recs:?}"
    );
    assert_eq!(recs[0]["mode"], "monitor");
    assert_eq!(recs[0]["agent"], "1001");
    assert!(recs[0]["call_id"].as_str().is_some_and(|c| !c.is_empty()));
    drop(sup);
    let _ = std::fs::remove_file(&path);
}
