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
    // Media was anchored on both legs.
    assert_anchored(&lab, &[("customer", &customer), ("agent", &agent)]);
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
        // baresip writes its eth0 address into SDP but sends from 127.0.0.1: to bibridge that
        // is a phone behind NAT, which strict latching (the default) refuses; learn mode is
        // the setting for such phones (docs/reliability/latching.md).
        cfg.rtp.latching = bibridge_b2bua::config::Latching::Learn;
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

// ---------------------------------------------------------------------------------------------
// Supervisor sessions driven by SIPp (supervisor-*.xml): SIPp authenticates as 2001, dials
// *8x1001 into a customer ↔ agent call between test phones (customer 440 Hz, agent 1000 Hz) and
// streams audio/tone2000-pcmu.raw; the phones' audio is checked in the windows where SIPp's
// stream was playing, located by SIPp's message trace (SIPp flushes it per message).

/// The tone in `sipp-scenarios/audio/tone2000-pcmu.raw` (sox: 2000 Hz sine, gain -20 dB).
const SIPP_SUPERVISOR_HZ: f64 = 2000.0;

/// One supervisor-*.xml run and its message trace.
struct SupervisorRun {
    sipp: Sipp,
    messages: std::path::PathBuf,
}

impl SupervisorRun {
    /// SIPp as supervisor 2001 running `scenario` against agent `agent_ext`.
    fn spawn(logs: &LogDir, lab: &Lab, scenario: &str, agent_ext: &str) -> SupervisorRun {
        let label = "supervisor";
        let sipp = Sipp::spawn(
            logs,
            label,
            lab.sip,
            scenario,
            &args(&[
                "-s",
                agent_ext,
                "-au",
                "2001",
                "-ap",
                "lab2001",
                "-p",
                &free_udp_addr().port().to_string(),
                "-mp",
                &free_port_block(4).to_string(),
            ]),
        );
        SupervisorRun {
            sipp,
            // Sipp::spawn names its trace `<label>_messages.log`.
            messages: logs.path.join(format!("{label}_messages.log")),
        }
    }

    /// When `needle` (e.g. "CSeq: 3 INFO") first appeared in the trace: the moment SIPp sent
    /// that request, to within the 5 ms poll. On timeout, SIPp's report is in the panic.
    async fn wait_trace(self, needle: &str) -> (SupervisorRun, std::time::Instant) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let text = std::fs::read_to_string(&self.messages).unwrap_or_default();
            if text.contains(needle) {
                return (self, std::time::Instant::now());
            }
            if tokio::time::Instant::now() >= deadline {
                let outcome = self.sipp.finish().await;
                panic!("SIPp never sent `{needle}`\n{}", outcome.report);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A time window of the call, by arrival time of RTP packets at the test phones.
#[derive(Clone, Copy, Debug)]
struct Window {
    from: std::time::Instant,
    to: std::time::Instant,
}

impl Window {
    /// `[start + skip, end - cut)`: skip the switch and the jitter buffer, cut the poll delay.
    fn between(start: std::time::Instant, end: std::time::Instant, skip: u64, cut: u64) -> Self {
        let w = Window {
            from: start + Duration::from_millis(skip),
            to: end - Duration::from_millis(cut),
        };
        assert!(
            w.to.duration_since(w.from) >= Duration::from_millis(1000),
            "window too short to analyse: {w:?}"
        );
        w
    }
}

/// Decoded G.711 audio of the packets `peer` received within `w`, in arrival order.
fn audio_in(peer: &RtpPeer, w: Window) -> Vec<i16> {
    let mut pcm = Vec::new();
    for p in peer.received_packets() {
        if p.at < w.from || p.at >= w.to {
            continue;
        }
        match p.payload_type {
            0 => pcm.extend(
                p.payload
                    .iter()
                    .map(|&b| bibridge_media::g711::ulaw_decode(b)),
            ),
            8 => pcm.extend(
                p.payload
                    .iter()
                    .map(|&b| bibridge_media::g711::alaw_decode(b)),
            ),
            _ => {}
        }
    }
    pcm
}

/// What `who` heard during `w`: every `wanted` tone at −20 dBFS ± 2 dB (the phones and SIPp's
/// file all play at −20 dBFS; mixing must not attenuate), every `unwanted` below −60 dBFS.
fn assert_heard_in(who: &str, peer: &RtpPeer, w: Window, wanted: &[f64], unwanted: &[f64]) {
    let audio = audio_in(peer, w);
    let expected = w.to.duration_since(w.from).as_millis() as usize * 8;
    assert!(
        audio.len() * 10 >= expected * 8,
        "{who}: only {} of ~{expected} samples arrived in {w:?}",
        audio.len()
    );
    for &f in wanted {
        let l = tone_level_dbfs(&audio, f, 8000);
        assert!(
            (l - LEVEL).abs() <= 2.0,
            "{who} should hear {f} Hz at {LEVEL} dBFS ±2, got {l:.2}"
        );
    }
    for &f in unwanted {
        let l = tone_level_dbfs(&audio, f, 8000);
        assert!(l < -60.0, "{who} must not hear {f} Hz, got {l:.2} dBFS");
    }
}

/// The supervisor's digits are consumed: no telephone-event packet reached agent or customer.
fn assert_no_dtmf_forwarded(call: &ConnectedCall) {
    for (who, p) in [("agent", &call.agent_rtp), ("customer", &call.customer_rtp)] {
        assert!(
            p.received_packets()
                .iter()
                .all(|x| x.payload_type == 0 || x.payload_type == 8),
            "{who} received a non-audio packet (a forwarded digit?)"
        );
    }
}

/// Run one single-mode scenario against a talking customer ↔ agent call and check both phones
/// during SIPp's session against the docs/design.md §3 table.
async fn sipp_supervisor_mode(scenario: &str, agent_hears: bool, customer_hears: bool) {
    let lab = start(|_| {}).await;
    let logs = LogDir::new(scenario.trim_end_matches(".xml"));
    let call = connect_call(&lab, "1001").await;
    call.talk();
    assert!(
        call.agent_rtp.wait_for_packets(10, T).await,
        "the call carries no audio before the supervisor joins"
    );

    let run = SupervisorRun::spawn(&logs, &lab, scenario, "1001");
    // The session is up, and SIPp starts streaming, when it ACKs the 200; it hangs up 4 s later.
    let (run, joined) = run.wait_trace("CSeq: 2 ACK").await;
    let (run, left) = run.wait_trace("CSeq: 3 BYE").await;
    run.sipp.finish().await.assert_success();

    let w = Window::between(joined, left, 400, 100);
    let sup = SIPP_SUPERVISOR_HZ;
    let (agent_want, agent_not) = if agent_hears {
        (vec![CUSTOMER_HZ, sup], vec![AGENT_HZ])
    } else {
        (vec![CUSTOMER_HZ], vec![AGENT_HZ, sup])
    };
    let (customer_want, customer_not) = if customer_hears {
        (vec![AGENT_HZ, sup], vec![CUSTOMER_HZ])
    } else {
        (vec![AGENT_HZ], vec![CUSTOMER_HZ, sup])
    };
    assert_heard_in("agent", &call.agent_rtp, w, &agent_want, &agent_not);
    assert_heard_in(
        "customer",
        &call.customer_rtp,
        w,
        &customer_want,
        &customer_not,
    );
    assert_no_dtmf_forwarded(&call);
    logs.cleanup();
    lab.server.shutdown().await;
}

/// supervisor-monitor.xml: SIPp (2001) monitors 1001; neither agent nor customer hears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_supervisor_monitors() {
    if !tool_available("sipp", "-v") {
        return;
    }
    sipp_supervisor_mode("supervisor-monitor.xml", false, false).await;
}

/// supervisor-coach.xml: the agent hears SIPp's 2000 Hz with the customer; the customer does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_supervisor_coaches() {
    if !tool_available("sipp", "-v") {
        return;
    }
    sipp_supervisor_mode("supervisor-coach.xml", true, false).await;
}

/// supervisor-barge.xml: agent and customer both hear SIPp's 2000 Hz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_supervisor_barges() {
    if !tool_available("sipp", "-v") {
        return;
    }
    sipp_supervisor_mode("supervisor-barge.xml", true, true).await;
}

/// supervisor-dtmf-switch.xml: monitor, INFO 2 → coach, INFO 3 → barge, INFO 1 → monitor; each
/// phase (between the INFOs SIPp sent, by its trace) is checked at both phones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_supervisor_switches_modes_by_info() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("supervisor-dtmf-switch");
    let call = connect_call(&lab, "1001").await;
    call.talk();
    assert!(
        call.agent_rtp.wait_for_packets(10, T).await,
        "the call carries no audio before the supervisor joins"
    );

    let run = SupervisorRun::spawn(&logs, &lab, "supervisor-dtmf-switch.xml", "1001");
    let (run, joined) = run.wait_trace("CSeq: 2 ACK").await;
    let (run, coach) = run.wait_trace("CSeq: 3 INFO").await;
    let (run, barge) = run.wait_trace("CSeq: 4 INFO").await;
    let (run, monitor) = run.wait_trace("CSeq: 5 INFO").await;
    let (run, left) = run.wait_trace("CSeq: 6 BYE").await;
    let outcome = run.sipp.finish().await;
    outcome.assert_success();
    // bibridge accepted every digit (200 to each INFO; the scenario requires it, this documents it).
    assert_eq!(
        outcome.messages.matches("SIP/2.0 200 OK").count(),
        5,
        "200s: INVITE, three INFOs, BYE\n{}",
        outcome.report
    );

    let sup = SIPP_SUPERVISOR_HZ;
    let phases = [
        (
            "monitor",
            Window::between(joined, coach, 400, 100),
            false,
            false,
        ),
        (
            "coach (INFO 2)",
            Window::between(coach, barge, 250, 100),
            true,
            false,
        ),
        (
            "barge (INFO 3)",
            Window::between(barge, monitor, 250, 100),
            true,
            true,
        ),
        (
            "monitor (INFO 1)",
            Window::between(monitor, left, 250, 100),
            false,
            false,
        ),
    ];
    let mut agent_heard = false;
    let mut customer_heard = false;
    for (phase, w, agent_hears, customer_hears) in phases {
        let (aw, an): (&[f64], &[f64]) = if agent_hears {
            (&[CUSTOMER_HZ, sup], &[AGENT_HZ])
        } else {
            (&[CUSTOMER_HZ], &[AGENT_HZ, sup])
        };
        let (cw, cn): (&[f64], &[f64]) = if customer_hears {
            (&[AGENT_HZ, sup], &[CUSTOMER_HZ])
        } else {
            (&[AGENT_HZ], &[CUSTOMER_HZ, sup])
        };
        assert_heard_in(&format!("agent in {phase}"), &call.agent_rtp, w, aw, an);
        assert_heard_in(
            &format!("customer in {phase}"),
            &call.customer_rtp,
            w,
            cw,
            cn,
        );
        agent_heard |= agent_hears;
        customer_heard |= customer_hears;
    }
    assert!(
        agent_heard && customer_heard,
        "the phases cover coach and barge"
    );
    assert_no_dtmf_forwarded(&call);
    logs.cleanup();
    lab.server.shutdown().await;
}

/// The refusals reach SIPp as final responses after authentication: an unknown extension 404,
/// an idle agent 480; the scenario then fails (exit code 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_supervisor_is_refused_without_a_target_call() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("supervisor-refused");
    // 1001 is registered but not in a call.
    let _agent = lab.registered("1001").await;
    for (ext, code) in [("1001", "480"), ("9999", "404")] {
        let outcome = SupervisorRun::spawn(&logs, &lab, "supervisor-monitor.xml", ext)
            .sipp
            .finish()
            .await;
        assert_eq!(
            outcome.code,
            Some(1),
            "*81{ext} must fail the scenario\n{}",
            outcome.report
        );
        // The refusal answers the authenticated INVITE (CSeq 2), not the first one.
        let refusal = format!("SIP/2.0 {code} ");
        let at = outcome
            .messages
            .find(&refusal)
            .unwrap_or_else(|| panic!("*81{ext}: no {code}\n{}", outcome.report));
        assert!(
            outcome.messages[at..].contains("CSeq: 2 INVITE"),
            "*81{ext}: the {code} must answer the authenticated INVITE\n{}",
            outcome.report
        );
        assert!(
            outcome.messages[..at].contains("SIP/2.0 401 "),
            "*81{ext}: bibridge must challenge before it refuses\n{}",
            outcome.report
        );
    }
    logs.cleanup();
    lab.server.shutdown().await;
}
