//! bibridge against third-party SIP implementations over real sockets: SIPp 3.6.1 running the
//! scenarios in `sipp-scenarios/`, and baresip.
//!
//! Every test starts its own bibridge in-process (the lab config on ephemeral ports, see
//! `common::start`) and gives the external tools ports of its own, so the tests run in parallel.
//! External processes are killed when their handle drops (`kill_on_drop`), also when a test
//! panics. When `sipp` or `baresip` is missing the test prints a notice and passes, unless the
//! environment variable `CI` is set: then a missing tool is a failure.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "sipp/support.rs"]
mod sipp_support;

use std::time::Duration;

use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::tone::tone_level_dbfs;
use bibridge_testkit::ua::{sdp_connection, sdp_offer};
use common::*;
use sipp_support::*;

const T: Duration = Duration::from_secs(10);

/// The tone in `sipp-scenarios/audio/tone440-pcmu.raw` (sox: 440 Hz sine, gain -20 dB).
const SIPP_TONE_HZ: f64 = 440.0;
const SIPP_TONE_DBFS: f64 = -20.0;

/// (a) SIPp registers with digest auth (it has to pick the MD5 challenge, see register.xml), and
/// a wrong password is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_with_digest() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("register");

    let ok = register_with_sipp(&lab, &logs, "ok", "1001", "lab1001", free_udp_addr().port()).await;
    ok.assert_success();

    let wrong = register_with_sipp(
        &lab,
        &logs,
        "wrong",
        "1001",
        "not-lab1001",
        free_udp_addr().port(),
    )
    .await;
    // 1 = "at least one call failed": SIPp ran, and the call failed on the challenge that
    // answered its REGISTER instead of a 200.
    assert_eq!(
        wrong.code,
        Some(1),
        "a wrong password must fail the scenario\n{}",
        wrong.report
    );
    assert!(
        wrong.errors.contains("401") || wrong.errors.contains("403"),
        "the failure is a refusal\n{}",
        wrong.report
    );
    logs.cleanup();
    lab.server.shutdown().await;
}

/// (b) The full SIPp pair: the agent registers (register.xml) and answers (agent-uas.xml, RTP
/// echo), the customer calls from the trunk port with RTP (customer-uac.xml) and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_customer_calls_sipp_agent() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("call");
    let agent_port = free_udp_addr().port();
    register_with_sipp(&lab, &logs, "agent-register", "1001", "lab1001", agent_port)
        .await
        .assert_success();

    let agent = spawn_agent_uas(&logs, &lab, agent_port, free_port_block(4), true);
    wait_udp_bound(agent_port).await;
    let customer = spawn_customer_uac(&logs, &lab, "1001", free_port_block(4));

    let customer = customer.finish().await;
    let agent = agent.finish().await;
    customer.assert_success();
    agent.assert_success();
    // Media was anchored on both legs: each side saw an SDP with one of bibridge's ports.
    let rtp = lab.cfg.rtp.port_min..=lab.cfg.rtp.port_max;
    for (who, outcome) in [("customer", &customer), ("agent", &agent)] {
        let ports = sdp_audio_ports(&outcome.messages);
        assert!(
            ports.iter().any(|p| rtp.contains(p)),
            "{who} never got an SDP with a port of bibridge's range {rtp:?} (saw {ports:?})\n{}",
            outcome.report
        );
    }
    logs.cleanup();
    lab.server.shutdown().await;
}

/// (c) SIPp's customer streams its 440 Hz file through bibridge: a test phone answering as the
/// agent hears it, bit-exact in level, and the customer's BYE reaches the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_customer_audio_reaches_the_agent() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("customer-audio");
    let mut agent = lab.registered("1001").await;
    let agent_rtp = RtpPeer::bind().await.unwrap();
    let customer_media = free_port_block(4);
    let customer = spawn_customer_uac(&logs, &lab, "1001", customer_media);

    let incoming = agent.wait_invite(T).await.unwrap();
    let anchor = sdp_connection(incoming.sdp.as_deref().unwrap()).unwrap();
    assert_ne!(
        anchor.port(),
        customer_media,
        "the agent must be offered bibridge's port, not SIPp's"
    );
    let answer = sdp_offer(agent_rtp.local_addr(), &[0, 101], "sendrecv");
    let _call = agent.answer(&incoming, &answer).await.unwrap();
    agent_rtp.start_sending(anchor, Some(AGENT_HZ), LEVEL, 0);

    // SIPp talks for 4 s; 1.5 s of it is plenty.
    assert!(
        agent_rtp.wait_for_packets(75, T).await,
        "no RTP from the SIPp customer reached the agent"
    );
    let audio = agent_rtp.received_audio();
    let tail = &audio[audio.len() - 8000.min(audio.len())..];
    let level = tone_level_dbfs(tail, SIPP_TONE_HZ, 8000);
    assert!(
        (level - SIPP_TONE_DBFS).abs() <= 1.0,
        "agent should hear SIPp's {SIPP_TONE_HZ} Hz at {SIPP_TONE_DBFS} dBFS, got {level:.2}"
    );
    assert!(
        tone_level_dbfs(tail, AGENT_HZ, 8000) < -60.0,
        "the agent must not hear itself"
    );

    agent.wait_request("BYE", T).await.unwrap();
    customer.finish().await.assert_success();
    logs.cleanup();
    lab.server.shutdown().await;
}

/// (d) SIPp's agent (register.xml + agent-uas.xml with -rtp_echo) answers a test customer on the
/// trunk, and the customer hears its own tone back through bibridge twice (there and back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_agent_echoes_customer_audio() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("agent-echo");
    let agent_port = free_udp_addr().port();
    register_with_sipp(&lab, &logs, "agent-register", "1001", "lab1001", agent_port)
        .await
        .assert_success();
    let agent_media = free_port_block(4);
    let agent = spawn_agent_uas(&logs, &lab, agent_port, agent_media, true);
    wait_udp_bound(agent_port).await;

    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let offer = sdp_offer(customer_rtp.local_addr(), &[0, 101], "sendrecv");
    let mut call = trunk.invite("1001", &offer, false).await.unwrap();
    let ok = trunk.wait_final(&mut call, T).await.unwrap();
    assert_eq!(ok.status_code.code(), 200, "the SIPp agent answers");
    assert!(
        call.provisionals.contains(&180),
        "its 180 is relayed: {:?}",
        call.provisionals
    );
    let anchor = sdp_connection(call.remote_sdp.as_deref().unwrap()).unwrap();
    assert_ne!(
        anchor.port(),
        agent_media,
        "media must be anchored on bibridge"
    );

    customer_rtp.start_sending(anchor, Some(CUSTOMER_HZ), LEVEL, 0);
    assert!(
        customer_rtp.wait_for_packets(75, T).await,
        "no echo came back through bibridge"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio = customer_rtp.received_audio();
    assert_hears("customer (echo)", &audio, &[CUSTOMER_HZ], &[AGENT_HZ], 1.0);
    customer_rtp.stop_sending();

    let bye = trunk.bye(&call).await.unwrap();
    assert_eq!(bye.status_code.code(), 200);
    agent.finish().await.assert_success();
    logs.cleanup();
    lab.server.shutdown().await;
}

/// baresip answers a trunk call, reached through a static contact (config `contact`): a device
/// that does not register.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_answers_a_trunk_call_via_static_contact() {
    let Some(modules) = baresip_modules() else {
        return;
    };
    let sip_port = free_udp_addr().port();
    let lab = start(|cfg| {
        let u = cfg
            .users
            .iter_mut()
            .find(|u| u.extension == "1002")
            .unwrap();
        u.contact = Some(format!("sip:1002@127.0.0.1:{sip_port}"));
    })
    .await;
    let phone = Baresip::spawn(&modules, &lab, sip_port, false);
    wait_udp_bound(sip_port).await;
    call_baresip_and_check_audio(&lab, &phone).await;
    drop(phone);
    lab.server.shutdown().await;
}

/// baresip registers as 1002 (digest) and is then reachable. baresip 1.0.0 (libre) rejects a 401
/// holding any non-MD5 challenge ("Register: Function not implemented"), so bibridge challenges
/// User-Agents listed in `auth.md5_only_user_agents` (lab: baresip, SIPp) with MD5 alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_and_answers() {
    let Some(modules) = baresip_modules() else {
        return;
    };
    let lab = start(|_| {}).await;
    let sip_port = free_udp_addr().port();
    let phone = Baresip::spawn(&modules, &lab, sip_port, true);
    // Registration is observable only through routing: wait until a call to 1002 rings there.
    let mut trunk = lab.trunk_ua().await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let rtp = RtpPeer::bind().await.unwrap();
        let mut call = trunk
            .invite(
                "1002",
                &sdp_offer(rtp.local_addr(), &[0], "sendrecv"),
                false,
            )
            .await
            .unwrap();
        let r = trunk.wait_final(&mut call, T).await.unwrap();
        if r.status_code.code() == 200 {
            trunk.bye(&call).await.unwrap();
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "baresip never became reachable as 1002 (last answer {}); baresip output:\n{}",
            r.status_code,
            phone.output()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(phone);
    lab.server.shutdown().await;
}

async fn call_baresip_and_check_audio(lab: &Lab, phone: &Baresip) {
    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let offer = sdp_offer(customer_rtp.local_addr(), &[0, 101], "sendrecv");
    let mut call = trunk.invite("1002", &offer, false).await.unwrap();
    let ok = trunk.wait_final(&mut call, T).await.unwrap();
    assert_eq!(
        ok.status_code.code(),
        200,
        "baresip auto-answers; its output:\n{}",
        phone.output()
    );
    let anchor = sdp_connection(call.remote_sdp.as_deref().unwrap()).unwrap();
    customer_rtp.start_sending(anchor, Some(CUSTOMER_HZ), LEVEL, 0);
    // baresip plays BARESIP_TONE_HZ from a WAV file; skip its first half second (start-up).
    assert!(
        customer_rtp.wait_for_packets(100, T).await,
        "no RTP from baresip reached the customer; baresip output:\n{}",
        phone.output()
    );
    let audio = customer_rtp.received_audio();
    let tail = &audio[audio.len() - 8000.min(audio.len())..];
    let level = tone_level_dbfs(tail, BARESIP_TONE_HZ, 8000);
    assert!(
        (level - LEVEL).abs() <= 1.0,
        "customer should hear baresip's {BARESIP_TONE_HZ} Hz at {LEVEL} dBFS, got {level:.2}"
    );
    let bye = trunk.bye(&call).await.unwrap();
    assert_eq!(bye.status_code.code(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zz_explore_supervisor() {
    let lab = start(|_| {}).await;
    let logs = LogDir::new("sup-explore");
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let port = free_udp_addr().port().to_string();
    let media = free_port_block(4).to_string();
    let t0 = std::time::Instant::now();
    let sipp = Sipp::spawn(&logs, "supervisor", lab.sip, "supervisor-monitor.xml",
        &args(&["-s", "1001", "-au", "2001", "-ap", "lab2001", "-p", &port, "-mp", &media]));
    let msgs = logs.path.join("supervisor_messages.log");
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = std::fs::read_to_string(&msgs).unwrap_or_default();
        eprintln!("{:?} len {} has200 {}", t0.elapsed(), m.len(), m.contains("CSeq: 2 INVITE") && m.contains("SIP/2.0 200"));
    }
    let out = sipp.finish().await;
    eprintln!("{}", out.report);
    eprintln!("{}", out.messages);
    lab.server.shutdown().await;
}
