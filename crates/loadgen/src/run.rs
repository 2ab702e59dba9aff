//! One load run, start to end:
//! 1. calls are placed at `cps` (customer INVITE from the trunk; our agent answers), media
//!    starts on each leg as soon as it is confirmed;
//! 2. sessions are started at `cps` on the first `sessions` calls that are up;
//! 3. after one settling second, the measurement window: counters and histograms from zero,
//!    CPU of the target and of ourselves read at both ends;
//! 4. teardown: supervisors hang up, then customers; media stops per call before its BYE.
//!
//! The rtpengine baseline replaces 1-2 by NG offer/answer per call (no sessions) and 4 by
//! `delete`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Parties;
use crate::cpu::cpu_time;
use crate::ng::NgClient;
use crate::report::{fill_media, CpuStats, Report};
use crate::rtp::{self, Ctl, Engine, Measure, Path, Progress, Role};
use crate::sip::{SipDriver, SipSetup};
use crate::stats::new_histogram;
use crate::stats::LatencySummary;
use crate::{is_loopback, SessionMode, MAX_CALLS, MAX_CPS, MAX_DURATION_S};

/// What is being measured.
#[derive(Debug, Clone)]
pub enum Target {
    /// bibridge over SIP, playing the parties of this config.
    Bibridge(Parties),
    /// rtpengine over its NG protocol at this address.
    Rtpengine(SocketAddr),
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: Target,
    pub calls: u32,
    pub sessions: u32,
    pub mode: SessionMode,
    pub duration: Duration,
    pub cps: u32,
    /// Process whose CPU is measured.
    pub pid: Option<u32>,
    /// One progress line per second on stderr.
    pub progress: bool,
}

/// A finished run: the report and the raw window measurement (for the plot).
pub struct Outcome {
    pub report: Report,
    pub measure: Measure,
}

impl RunOptions {
    /// Refuses what this tool must never do: non-loopback targets, unbounded runs.
    pub fn validate(&self) -> Result<(), String> {
        let addrs: Vec<SocketAddr> = match &self.target {
            Target::Bibridge(p) => vec![p.sip, p.trunk, p.agent_contact],
            Target::Rtpengine(a) => vec![*a],
        };
        if let Some(a) = addrs.iter().find(|a| !is_loopback(**a)) {
            return Err(format!(
                "{a} is not a loopback address: bibridge-load only targets 127.0.0.0/8 or ::1"
            ));
        }
        if self.calls == 0 || self.calls > MAX_CALLS {
            return Err(format!("--calls must be 1..={MAX_CALLS}"));
        }
        if self.sessions > self.calls {
            return Err("--sessions cannot exceed --calls (one session per call)".into());
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(MAX_DURATION_S) {
            return Err(format!("--duration must be 1s..={MAX_DURATION_S}s"));
        }
        if self.cps == 0 || self.cps > MAX_CPS {
            return Err(format!("--cps must be 1..={MAX_CPS}"));
        }
        if let Target::Bibridge(p) = &self.target {
            if (p.agents.len() as u32) < self.calls {
                return Err(format!(
                    "the config has {} agents with a static contact, --calls {} needs as many",
                    p.agents.len(),
                    self.calls
                ));
            }
            if (p.supervisors.len() as u32) < self.sessions {
                return Err(format!(
                    "the config has {} supervisors, --sessions {} needs as many",
                    p.supervisors.len(),
                    self.sessions
                ));
            }
        }
        if matches!(self.target, Target::Rtpengine(_)) && self.sessions > 0 {
            return Err("the rtpengine baseline has no sessions (use --sessions 0)".into());
        }
        Ok(())
    }
}

struct Progressor {
    start: Instant,
    last: Instant,
    last_rx: u64,
    last_tx: u64,
    enabled: bool,
}

impl Progressor {
    fn tick(&mut self, p: &Progress, phase: &str, calls: (usize, usize), sessions: (usize, usize)) {
        if !self.enabled || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        let dt = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        let rx: u64 = p.received.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        let tx: u64 = p.sent.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        let (exp, lost) = (
            p.expected.load(Ordering::Relaxed),
            p.lost.load(Ordering::Relaxed),
        );
        let loss = if exp == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / exp as f64
        };
        eprintln!(
            "[{:>4.0}s {phase:<8}] calls up {} failed {} | sessions up {} failed {} | tx {:.0} pkt/s rx {:.0} pkt/s | loss {loss:.3}%",
            self.start.elapsed().as_secs_f64(),
            calls.0,
            calls.1,
            sessions.0,
            sessions.1,
            tx.saturating_sub(self.last_tx) as f64 / dt,
            rx.saturating_sub(self.last_rx) as f64 / dt,
        );
        self.last_rx = rx;
        self.last_tx = tx;
        let _ = std::io::stderr().flush();
    }
}

fn new_report(o: &RunOptions, target: &str) -> Report {
    Report {
        target: target.to_string(),
        mode: (o.sessions > 0).then(|| o.mode.name().to_string()),
        calls_requested: o.calls,
        calls_up: 0,
        calls_failed: 0,
        call_failures: BTreeMap::new(),
        sessions_requested: o.sessions,
        sessions_up: 0,
        sessions_failed: 0,
        session_failures: BTreeMap::new(),
        remote_hangups: 0,
        cps: o.cps,
        window_s: 0.0,
        call_setup: Default::default(),
        session_setup: Default::default(),
        packets: BTreeMap::new(),
        latency: BTreeMap::new(),
        probes_sent: 0,
        stale_keys: 0,
        unknown_source: 0,
        send_errors: 0,
        skipped_slots: 0,
        cpu: None,
        loadgen_cpu_pct: 0.0,
        teardown_open_dialogs: 0,
    }
}

/// CPU readings at the start of the window.
struct CpuMark {
    target: Option<(u32, Duration)>,
    me: Option<Duration>,
}

fn cpu_mark(pid: Option<u32>) -> CpuMark {
    CpuMark {
        target: pid.and_then(|p| cpu_time(p).map(|t| (p, t))),
        me: cpu_time(std::process::id()),
    }
}

fn cpu_finish(r: &mut Report, start: &CpuMark, m: &Measure) {
    let window = m.duration.as_secs_f64().max(1e-3);
    if let (Some(a), Some(b)) = (start.me, cpu_time(std::process::id())) {
        r.loadgen_cpu_pct = (b.saturating_sub(a).as_secs_f64() / window * 1000.0).round() / 10.0;
    }
    let Some((pid, t0)) = start.target else {
        return;
    };
    let Some(t1) = cpu_time(pid) else {
        return;
    };
    let cpu = t1.saturating_sub(t0);
    let cpu_us = cpu.as_micros() as f64;
    let pin: u64 = m.sent.iter().sum();
    let relayed: u64 = Path::ALL
        .iter()
        .filter(|p| p.is_relay())
        .map(|&p| m.path_packets[p as usize])
        .sum();
    let total_out: u64 = m.path_packets.iter().sum();
    let call_seconds = r.calls_up as f64 * window;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    r.cpu = Some(CpuStats {
        pid,
        cpu_s: round(cpu.as_secs_f64()),
        cpu_pct_of_one_core: round(cpu.as_secs_f64() / window * 100.0),
        us_per_call_second: round(cpu_us / call_seconds.max(1e-9)),
        us_per_packet_in: round(cpu_us / (pin.max(1) as f64)),
        us_per_packet_out: round(cpu_us / (total_out.max(1) as f64)),
        packets_in: pin,
        packets_out_relayed: relayed,
        packets_out_mixed: total_out - relayed,
    });
}

/// Runs the load described by `o` against an already running target.
pub fn run(o: &RunOptions) -> Result<Outcome, String> {
    o.validate()?;
    let ip = match &o.target {
        Target::Bibridge(p) => p.sip.ip(),
        Target::Rtpengine(a) => a.ip(),
    };
    let socks = rtp::bind_sockets(ip).map_err(|e| format!("RTP sockets: {e}"))?;
    let rtp_addrs: Vec<SocketAddr> = socks
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let progress = Arc::new(Progress::default());
    let (ctl, ctl_rx) = mpsc::channel();
    let engine_progress = progress.clone();
    // MultiHeaders hold raw pointers (not Send): the engine is built on its own thread.
    let media = std::thread::Builder::new()
        .name("rtp".into())
        .spawn(move || Engine::new(socks, engine_progress).run(ctl_rx))
        .map_err(|e| e.to_string())?;
    let result = match &o.target {
        Target::Bibridge(p) => run_bibridge(
            o,
            p,
            [rtp_addrs[0], rtp_addrs[1], rtp_addrs[2]],
            &ctl,
            &progress,
        ),
        Target::Rtpengine(ng) => {
            run_rtpengine(o, *ng, [rtp_addrs[0], rtp_addrs[1]], &ctl, &progress)
        }
    };
    let _ = ctl.send(Ctl::Stop);
    let _ = media.join();
    result
}

fn end_window(ctl: &mpsc::Sender<Ctl>) -> Result<Measure, String> {
    let (tx, rx) = mpsc::channel();
    ctl.send(Ctl::EndWindow(tx))
        .map_err(|_| "media thread gone".to_string())?;
    rx.recv_timeout(Duration::from_secs(5))
        .map_err(|_| "media thread did not report".to_string())
}

fn run_bibridge(
    o: &RunOptions,
    p: &Parties,
    rtp_addrs: [SocketAddr; 3],
    ctl: &mpsc::Sender<Ctl>,
    progress: &Progress,
) -> Result<Outcome, String> {
    let bind = |a: SocketAddr, what: &str| {
        UdpSocket::bind(a).map_err(|e| format!("cannot bind the {what} socket {a}: {e}"))
    };
    let code = match o.mode {
        SessionMode::Monitor => &p.codes[0],
        SessionMode::Coach => &p.codes[1],
        SessionMode::Barge => &p.codes[2],
    };
    let setup = SipSetup {
        server: p.sip,
        trunk: bind(p.trunk, "trunk (customer)")?,
        agents: bind(p.agent_contact, "agent")?,
        supervisors: bind(SocketAddr::new(p.sip.ip(), 0), "supervisor")?,
        rtp: rtp_addrs,
        agent_exts: p.agents[..o.calls as usize].to_vec(),
        supervisors_creds: p.supervisors[..o.sessions as usize].to_vec(),
        feature_code: code.clone(),
        mode: o.mode,
    };
    let mut sip = SipDriver::new(setup, ctl.clone()).map_err(|e| e.to_string())?;
    let mut prog = Progressor {
        start: Instant::now(),
        last: Instant::now(),
        last_rx: 0,
        last_tx: 0,
        enabled: o.progress,
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(o.cps));
    let tick = |sip: &SipDriver, prog: &mut Progressor, phase: &str| {
        let c = &sip.counts;
        prog.tick(
            progress,
            phase,
            (c.calls_up, c.calls_failed),
            (c.sessions_up, c.sessions_failed),
        );
    };
    // 1. calls
    let mut next = Instant::now();
    for i in 0..o.calls {
        sip.pump(next);
        sip.start_call(i);
        next += interval;
        tick(&sip, &mut prog, "calls");
    }
    let deadline = Instant::now() + Duration::from_secs(35);
    while Instant::now() < deadline && sip.in_progress().0 > 0 {
        sip.pump(Instant::now() + Duration::from_millis(50));
        tick(&sip, &mut prog, "calls");
    }
    // 2. sessions, on calls that are up
    let up = sip.up_calls();
    let mut next = Instant::now();
    for &c in up.iter().filter(|&&c| c < o.sessions) {
        sip.pump(next);
        sip.start_session(c);
        next += interval;
        tick(&sip, &mut prog, "sessions");
    }
    let deadline = Instant::now() + Duration::from_secs(35);
    while Instant::now() < deadline && sip.in_progress().1 > 0 {
        sip.pump(Instant::now() + Duration::from_millis(50));
        tick(&sip, &mut prog, "sessions");
    }
    // Let latching and jitter buffers settle before measuring.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        sip.pump(settle.min(Instant::now() + Duration::from_millis(100)));
        tick(&sip, &mut prog, "settle");
    }
    // 3. window
    let calls_up_at_start = sip.up_calls().len();
    let mark = cpu_mark(o.pid);
    ctl.send(Ctl::BeginWindow)
        .map_err(|_| "media thread gone".to_string())?;
    let end = Instant::now() + o.duration;
    while Instant::now() < end {
        sip.pump(end.min(Instant::now() + Duration::from_millis(100)));
        tick(&sip, &mut prog, "measure");
    }
    let measure = end_window(ctl)?;
    let mut r = new_report(o, "bibridge");
    r.calls_up = calls_up_at_start;
    cpu_finish(&mut r, &mark, &measure);
    // 4. teardown: supervisors first, so the agent calls end without sessions attached.
    for s in sip.up_sessions() {
        sip.bye_session(s);
    }
    sip.pump_until(Duration::from_secs(5), |s| s.up_sessions().is_empty());
    let mut next = Instant::now();
    for c in sip.up_calls() {
        sip.pump(next);
        sip.bye_call(c);
        next += interval / 2;
    }
    sip.pump_until(Duration::from_secs(10), |s| s.open_dialogs() == 0);
    r.teardown_open_dialogs = sip.open_dialogs();
    let c = &sip.counts;
    r.calls_failed = c.calls_failed;
    r.sessions_up = c.sessions_up;
    r.sessions_failed = c.sessions_failed;
    r.remote_hangups = c.remote_hangups;
    r.call_failures = sip
        .call_failures
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    r.session_failures = sip
        .session_failures
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    r.call_setup = LatencySummary::of(&sip.call_setup);
    r.session_setup = LatencySummary::of(&sip.session_setup);
    r.window_s = (measure.duration.as_secs_f64() * 100.0).round() / 100.0;
    fill_media(&mut r, &measure);
    Ok(Outcome { report: r, measure })
}

fn run_rtpengine(
    o: &RunOptions,
    ng: SocketAddr,
    rtp_addrs: [SocketAddr; 2],
    ctl: &mpsc::Sender<Ctl>,
    progress: &Progress,
) -> Result<Outcome, String> {
    let mut client = NgClient::new(ng).map_err(|e| e.to_string())?;
    let mut prog = Progressor {
        start: Instant::now(),
        last: Instant::now(),
        last_rx: 0,
        last_tx: 0,
        enabled: o.progress,
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(o.cps));
    let mut setup = new_histogram();
    let (mut up, mut failed) = (0usize, 0usize);
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut next = Instant::now();
    for i in 0..o.calls {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += interval;
        let t = Instant::now();
        match client.setup_call(i, rtp_addrs[0], rtp_addrs[1]) {
            Ok(call) => {
                setup.saturating_record(t.elapsed().as_micros().max(1) as u64);
                up += 1;
                for (role, addr) in [
                    (Role::Customer, call.customer_side),
                    (Role::Agent, call.agent_side),
                ] {
                    let _ = ctl.send(Ctl::AddTx {
                        role,
                        call: i,
                        dest: addr,
                    });
                    let _ = ctl.send(Ctl::AddRx {
                        role,
                        call: i,
                        src_port: addr.port(),
                    });
                }
            }
            Err(e) => {
                failed += 1;
                *failures.entry(e.to_string()).or_default() += 1;
            }
        }
        prog.tick(progress, "calls", (up, failed), (0, 0));
    }
    std::thread::sleep(Duration::from_secs(1));
    let mark = cpu_mark(o.pid);
    ctl.send(Ctl::BeginWindow)
        .map_err(|_| "media thread gone".to_string())?;
    let end = Instant::now() + o.duration;
    while Instant::now() < end {
        std::thread::sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100)),
        );
        prog.tick(progress, "measure", (up, failed), (0, 0));
    }
    let measure = end_window(ctl)?;
    let mut r = new_report(o, "rtpengine");
    r.calls_up = up;
    r.calls_failed = failed;
    r.call_failures = failures;
    r.call_setup = LatencySummary::of(&setup);
    cpu_finish(&mut r, &mark, &measure);
    for i in 0..o.calls {
        let _ = ctl.send(Ctl::StopCall { call: i });
    }
    let deleted = client.delete_all();
    r.teardown_open_dialogs = up.saturating_sub(deleted);
    r.window_s = (measure.duration.as_secs_f64() * 100.0).round() / 100.0;
    fill_media(&mut r, &measure);
    Ok(Outcome { report: r, measure })
}

/// A free UDP port on `ip` (bound and released: fine for a benchmark's own processes).
pub fn free_udp_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    Ok(UdpSocket::bind(SocketAddr::new(ip, 0))?
        .local_addr()?
        .port())
}

/// Waits until something answers a SIP OPTIONS at `sip` (any response), up to `timeout`.
pub fn wait_sip_ready(sip: SocketAddr, timeout: Duration) -> bool {
    let Ok(s) = UdpSocket::bind(SocketAddr::new(sip.ip(), 0)) else {
        return false;
    };
    let Ok(local) = s.local_addr() else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let end = Instant::now() + timeout;
    let mut n = 0u32;
    while Instant::now() < end {
        n += 1;
        let msg = format!(
            "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=r{n}\r\nTo: <sip:{sip}>\r\n\
             Call-ID: ready{n}@bibridge-load\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = s.send_to(msg.as_bytes(), sip);
        let mut buf = [0u8; 4096];
        if s.recv(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

/// Waits until rtpengine answers an NG `ping`.
pub fn wait_ng_ready(ng: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut c) = NgClient::new(ng) else {
        return false;
    };
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        match c.exchange("ping", &[]) {
            Ok(_) => return true,
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    false
}
