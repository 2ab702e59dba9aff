//! The bibridge server: the only place with tokio, sockets and the clock.
//!
//! # Layout
//! - [`Server`] (this file): starts the transports and the engine task, and stops them.
//! - `transport`: UDP and TCP SIP sockets; TCP framing by Content-Length, connection limits,
//!   idle and message timeouts.
//! - `media`: one task per call owning its RTP/RTCP sockets; relays packets between legs.
//! - [`audit`]: the durable audit log (JSON lines, fsync'd) and its reader.
//! - [`cli`]: command line and config loading for the `bibridge` binary.
//! - [`control`]: requests from the HTTP API into the engine task, and its events back out.
//! - [`http`]: the HTTP API, SSE event stream, operator console assets and `/metrics`.
//! - [`metrics`]: media counters, processing-time histograms and level meters.
//! - [`text`]: control characters escaped in the log and in `bibridge audit`'s text output.
//! - [`state`]: the registrar's bindings kept across restarts (`[state] dir`).
//! - [`net_guard`]: connection limits (total, per address), accept back-off and the descriptor
//!   budget shared by the SIP/TCP and HTTP listeners.
//!
//! The engine ([`bibridge_b2bua::engine::Engine`]) is sans-IO; the engine task here feeds it
//! datagrams, timeouts and media events with `Instant::now()`, and carries out what it polls.

pub mod audit;
pub mod cli;
pub mod control;
pub mod http;
mod media;
pub mod metrics;
pub mod net_guard;
pub mod state;
pub mod text;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent, Notice};
use bibridge_sip::Transport;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::control::{Clock, ControlHandle, ControlRequest, EventPublisher};
use crate::metrics::Metrics;
use tracing::{info, warn};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("configuration has neither a UDP nor a TCP SIP listener")]
    NoListener,
    #[error("cannot open the audit log {path}: {source} ([compliance] audit_log)")]
    Audit {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The engine task's input queues, one per kind, bounded, served in priority order (media
/// events, audit completions, control, timers, then SIP): a SIP flood can fill its own queue
/// only. UDP datagrams that find the SIP queue full are dropped and counted (SIP retransmits);
/// TCP messages wait (backpressure on the connection); media events and control requests wait
/// for room in their own queues, which nothing else competes for.
pub(crate) const SIP_QUEUE: usize = 4096;
/// Media events: DTMF digits, RTP inactivity, a few per call at most.
pub(crate) const MEDIA_QUEUE: usize = 1024;
/// Control requests from the HTTP API.
pub(crate) const CONTROL_QUEUE: usize = 256;
/// Audit records waiting for the writer thread; when full, a record fails (a session start is
/// refused with 500) instead of blocking the engine task.
pub(crate) const AUDIT_QUEUE: usize = 4096;

/// Input for the engine task.
pub(crate) enum Input {
    Sip {
        data: bytes::Bytes,
        source: SocketAddr,
        transport: Transport,
    },
    Media(MediaEvent),
    Control(ControlRequest),
    /// Test hook: make every call's media task panic.
    #[cfg(feature = "test-hooks")]
    CrashMedia,
}

/// A running bibridge. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    control: ControlHandle,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    http_task: Option<tokio::task::JoinHandle<()>>,
    #[cfg(feature = "test-hooks")]
    input: mpsc::Sender<Input>,
}

impl Server {
    /// Bind the configured sockets and start serving.
    pub async fn start(cfg: Config) -> Result<Server, ServerError> {
        if cfg.sip.udp.is_none() && cfg.sip.tcp.is_none() {
            return Err(ServerError::NoListener);
        }
        let (sip_tx, sip_rx) = mpsc::channel::<Input>(SIP_QUEUE);
        let (media_tx, media_rx) = mpsc::channel::<Input>(MEDIA_QUEUE);
        let (control_tx, control_rx) = mpsc::channel::<Input>(CONTROL_QUEUE);
        let metrics = Metrics::new();
        let udp = match cfg.sip.udp {
            Some(addr) => Some(
                transport::Udp::bind(addr, sip_tx.clone(), metrics.sip_queue_dropped.clone())
                    .await?,
            ),
            None => None,
        };
        let tcp = match cfg.sip.tcp {
            Some(addr) => {
                let limits = transport::TcpLimits::from_config(&cfg.sip);
                let stats = metrics.sip_tcp.clone();
                Some(transport::Tcp::bind(addr, sip_tx.clone(), limits, stats).await?)
            }
            None => None,
        };
        drop(sip_tx);
        let local = LocalAddrs {
            udp: udp.as_ref().map(|u| u.local_addr()),
            tcp: tcp.as_ref().map(|t| t.local_addr()),
        };
        if cfg.uses_lab_passwords() {
            warn!("running with lab passwords (password = \"lab\" + extension): for labs and tests only");
        }
        info!(udp = ?local.udp, tcp = ?local.tcp, rtp = %format!("{}:{}-{}", cfg.rtp.address, cfg.rtp.port_min, cfg.rtp.port_max), users = cfg.users.len(), "bibridge listening");
        let (stop_tx, stop_rx) = oneshot::channel();
        let seed: [u8; 32] = rand::random();
        let clock = Clock::now();
        let (events_tx, _) = broadcast::channel(control::EVENT_BACKLOG);
        let control = ControlHandle::new(control_tx.clone(), events_tx.clone(), clock);
        let http = match cfg.http.listen {
            Some(addr) => Some(
                http::start(
                    addr,
                    Arc::new(cfg.clone()),
                    control.clone(),
                    metrics.clone(),
                )
                .await?,
            ),
            None => None,
        };
        // The audit log is written by a thread of its own: the engine task never waits on a
        // disk; a session start waits (parked in the engine) for its record's completion.
        let (audit_done_tx, audit_done_rx) = mpsc::channel(AUDIT_QUEUE);
        let audit = match &cfg.compliance.audit_log {
            Some(path) => {
                let err = |source| ServerError::Audit {
                    path: path.clone(),
                    source,
                };
                let mut log = audit::JsonlAudit::open(path).map_err(err)?;
                // After a crash: sessions left open are closed on record (`interrupted`).
                match log.close_interrupted_sessions().map_err(err)? {
                    0 => {}
                    n => warn!(
                        sessions = n,
                        "sessions interrupted by a crash closed in the audit log"
                    ),
                }
                let writer =
                    audit::AuditWriter::spawn(log, AUDIT_QUEUE, audit_done_tx).map_err(err)?;
                info!(path = %path.display(), "audit log");
                Some(writer)
            }
            None => {
                warn!("audit log disabled ([compliance] audit_log = false)");
                None
            }
        };
        let state_dir = cfg.state_dir();
        let mut engine = Engine::new(cfg, local, seed, Instant::now());
        if audit.is_some() {
            engine.use_audit_queue();
        }
        // Registrations from before a restart: agents stay reachable without re-registering.
        if let Some(dir) = &state_dir {
            match state::load(dir) {
                Ok(saved) => {
                    engine.import_registrations(Instant::now(), saved);
                }
                Err(e) => warn!(dir = %dir.display(), error = %e, "saved registrations not loaded"),
            }
        }
        #[cfg(feature = "test-hooks")]
        let input = control_tx.clone();
        let task = EngineTask {
            udp,
            tcp,
            media_tx,
            audit,
            api_waiting: HashMap::new(),
            registrations: RegistrationSaver {
                saved_version: engine.registrations_version(),
                dir: state_dir,
                last_save: None,
                saving: None,
            },
            test_panic: cfg!(debug_assertions)
                && std::env::var_os("BIBRIDGE_TEST_PANIC").is_some_and(|v| v == "engine"),
            events: EventPublisher::new(events_tx, clock),
            metrics: metrics.clone(),
        };
        let inputs = Inputs {
            media: media_rx,
            control: control_rx,
            sip: sip_rx,
            audit_done: audit_done_rx,
        };
        let done = tokio::spawn(task.run(engine, inputs, stop_rx));
        tokio::spawn(log_media_figures(metrics.clone()));
        let (http, http_task) = match http {
            Some((addr, task)) => (Some(addr), Some(task)),
            None => (None, None),
        };
        Ok(Server {
            udp: local.udp,
            tcp: local.tcp,
            http,
            control,
            metrics,
            stop: Some(stop_tx),
            done,
            http_task,
            #[cfg(feature = "test-hooks")]
            input,
        })
    }

    /// The bound UDP SIP address.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp
    }

    /// The bound TCP SIP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The bound HTTP address (API, console, metrics), if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// A handle on the engine for control requests and events.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Process-wide media metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Graceful shutdown: BYE active calls, give the BYEs a moment, stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
        if let Some(t) = self.http_task.take() {
            t.abort();
        }
    }

    /// Test hook: make every call's media task panic, as a bug in it would.
    #[cfg(feature = "test-hooks")]
    pub async fn crash_media_tasks(&self) {
        let _ = self.input.send(Input::CrashMedia).await;
    }

    /// Wait until the server stops (it stops on its own only after `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Once a minute, a log line with the media processing-time percentiles (when packets flowed):
/// the figures are visible without a metrics scraper.
async fn log_media_figures(metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    let mut last = (0, 0);
    loop {
        tick.tick().await;
        // The server is gone once nobody else holds the metrics.
        if Arc::strong_count(&metrics) == 1 {
            return;
        }
        let (relay, mix) = metrics.histograms();
        if (relay.count, mix.count) == last {
            continue;
        }
        last = (relay.count, mix.count);
        let [r50, r99, r999, rmax] = relay.quantiles_us;
        let [m50, m99, m999, mmax] = mix.quantiles_us;
        info!(
            relay_packets = relay.count,
            relay_us = %format!("p50 {r50:.1} p99 {r99:.1} p99.9 {r999:.1} max {rmax:.1}"),
            mix_packets = mix.count,
            mix_us = %format!("p50 {m50:.1} p99 {m99:.1} p99.9 {m999:.1} max {mmax:.1}"),
            "media processing time since start"
        );
    }
}

/// Saves the registrar's bindings (see [`state`]) off the engine task, at most once per
/// [`state::SAVE_INTERVAL`] while they change, and at shutdown.
struct RegistrationSaver {
    dir: Option<std::path::PathBuf>,
    /// The engine's registrations version last handed to a save.
    saved_version: u64,
    last_save: Option<tokio::time::Instant>,
    /// The save in flight (one at a time: they share the temporary file).
    saving: Option<tokio::task::JoinHandle<()>>,
}

impl RegistrationSaver {
    /// When the engine task must wake up to save changes held back by the interval.
    fn wake(&self, engine: &Engine) -> Option<tokio::time::Instant> {
        self.dir.as_ref()?;
        if engine.registrations_version() == self.saved_version {
            return None;
        }
        Some(
            self.last_save
                .map(|t| t + state::SAVE_INTERVAL)
                .unwrap_or_else(tokio::time::Instant::now),
        )
    }

    /// Start a save if the bindings changed and the interval allows (`force`: at shutdown).
    fn maybe_save(&mut self, engine: &Engine, force: bool) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let version = engine.registrations_version();
        if version == self.saved_version {
            return;
        }
        let now = tokio::time::Instant::now();
        let due = self
            .last_save
            .is_none_or(|t| now >= t + state::SAVE_INTERVAL);
        let busy = self.saving.as_ref().is_some_and(|h| !h.is_finished());
        if busy || !(due || force) {
            return;
        }
        let doc = state::to_json(
            &engine.export_registrations(Instant::now()),
            std::time::SystemTime::now(),
        );
        self.saved_version = version;
        self.last_save = Some(now);
        self.saving = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = state::save(&dir, &doc) {
                warn!(dir = %dir.display(), error = %e, "registrations not saved");
            }
        }));
    }

    /// Wait for the save in flight.
    async fn settle(&mut self) {
        if let Some(h) = self.saving.take() {
            let _ = h.await;
        }
    }
}

/// The engine task's input queues (see [`SIP_QUEUE`]).
struct Inputs {
    media: mpsc::Receiver<Input>,
    control: mpsc::Receiver<Input>,
    sip: mpsc::Receiver<Input>,
    audit_done: mpsc::Receiver<audit::AuditDone>,
}

/// The task that owns the engine: feeds it input and carries out what it asks for.
struct EngineTask {
    udp: Option<transport::Udp>,
    tcp: Option<transport::Tcp>,
    /// Given to each call's media task for its events.
    media_tx: mpsc::Sender<Input>,
    /// The audit log's writer thread (none when the log is disabled).
    audit: Option<audit::AuditWriter>,
    /// API session starts waiting for their audit record, by record id.
    api_waiting: HashMap<bibridge_b2bua::audit::AuditId, control::StartReply>,
    /// Keeps the registrar's bindings in the state directory.
    registrations: RegistrationSaver,
    /// Debug builds: panic on the first SIP message (`BIBRIDGE_TEST_PANIC=engine`).
    test_panic: bool,
    events: EventPublisher,
    metrics: Arc<Metrics>,
}

impl EngineTask {
    async fn run(mut self, mut engine: Engine, mut input: Inputs, mut stop: oneshot::Receiver<()>) {
        let mut calls: media::Calls = HashMap::new();
        let media_cfg = media::MediaConfig {
            ip: engine.config().rtp.address,
            inactivity: match engine.config().rtp.inactivity_timeout_s {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
            coach_gain_db: engine.config().rtp.coach_gain_db as f32,
            latch: match engine.config().rtp.latching {
                bibridge_b2bua::config::Latching::Strict => bibridge_media::rtp::LatchMode::Strict,
                bibridge_b2bua::config::Latching::Learn => bibridge_media::rtp::LatchMode::Learn {
                    window: Duration::from_millis(engine.config().rtp.learn_window_ms),
                },
            },
            metrics: self.metrics.clone(),
        };
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            self.carry_out(&mut engine, &mut calls, &media_cfg).await;
            if let Some(deadline) = stopping {
                if engine.call_count() == 0 || tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            let wake = engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let wake = match stopping {
                Some(d) => wake.min(d),
                None => wake,
            };
            self.registrations.maybe_save(&engine, false);
            let wake = match self.registrations.wake(&engine) {
                Some(w) => wake.min(w.max(tokio::time::Instant::now() + Duration::from_millis(10))),
                None => wake,
            };
            // Priority: media events (supervisor DTMF) and audit completions first, then the
            // operator, timers and shutdown, and SIP last: a SIP flood fills only its own queue.
            tokio::select! {
                biased;
                Some(msg) = input.media.recv() => self.on_input(&mut engine, msg),
                Some(done) = input.audit_done.recv() => {
                    engine.handle_audit_done(Instant::now(), done.id, done.result);
                }
                Some(msg) = input.control.recv() => {
                    #[cfg(feature = "test-hooks")]
                    if matches!(msg, Input::CrashMedia) {
                        for m in calls.values() {
                            m.crash();
                        }
                    }
                    self.on_input(&mut engine, msg)
                }
                _ = tokio::time::sleep_until(wake) => engine.handle_timeout(Instant::now()),
                _ = &mut stop, if stopping.is_none() => {
                    info!(calls = engine.call_count(), "shutting down");
                    engine.shutdown(Instant::now());
                    // Let BYEs go out and their answers come back.
                    stopping = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                }
                Some(msg) = input.sip.recv() => self.on_input(&mut engine, msg),
            }
        }
        for (call, m) in calls.drain() {
            m.close();
            self.metrics.forget_call(call);
        }
        // The last records (stops at shutdown) and registrations are on disk before the
        // process may exit.
        self.registrations.settle().await;
        self.registrations.maybe_save(&engine, true);
        self.registrations.settle().await;
        self.send_audit(&mut engine);
        if let Some(w) = self.audit.take() {
            w.finish().await;
        }
        info!("bibridge stopped");
    }

    fn on_input(&mut self, engine: &mut Engine, msg: Input) {
        match msg {
            Input::Sip {
                data,
                source,
                transport,
            } => {
                // Debug builds only: the panic test of the binary (crates/server/tests/panic.rs).
                if cfg!(debug_assertions) && self.test_panic {
                    panic!("BIBRIDGE_TEST_PANIC=engine: the engine task panics on purpose");
                }
                engine.handle_datagram(Instant::now(), &data, source, transport)
            }
            Input::Media(ev) => engine.handle_media_event(Instant::now(), ev),
            Input::Control(req) => {
                // Events already queued belong before the snapshot's sequence number.
                self.publish_notices(engine);
                control::handle(engine, self.events.seq(), req, &mut self.api_waiting);
            }
            // Handled in the run loop, which owns the media tasks.
            #[cfg(feature = "test-hooks")]
            Input::CrashMedia => {}
        }
    }

    /// Hand the engine's audit records to the writer thread, in order. A full queue or a dead
    /// writer fails the record at once (a waiting session start is refused, as when the disk
    /// fails) rather than blocking the engine task.
    fn send_audit(&mut self, engine: &mut Engine) {
        while let Some(a) = engine.poll_audit() {
            let id = a.id;
            let r = match &self.audit {
                Some(w) => w.try_append(a),
                None => Err("audit log disabled".to_string()),
            };
            if let Err(e) = r {
                self.metrics
                    .audit_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                engine.handle_audit_done(
                    Instant::now(),
                    id,
                    Err(bibridge_b2bua::audit::AuditError(e)),
                );
            }
        }
        while let Some((id, r)) = engine.poll_api_reply() {
            if let Some(reply) = self.api_waiting.remove(&id) {
                let _ = reply.send(r);
            }
        }
    }

    fn publish_notices(&mut self, engine: &mut Engine) {
        while let Some(n) = engine.poll_notice() {
            match &n {
                Notice::SessionStarted { mode, origin, .. } => self
                    .metrics
                    .count_session_start(mode.as_str(), origin.as_str()),
                Notice::SessionRefused { reason, .. } => self.metrics.count_refusal(reason),
                _ => {}
            }
            self.events.on_notice(engine, &n);
        }
    }

    /// Carry out everything the engine asked for: SIP out, media commands, notices.
    async fn carry_out(
        &mut self,
        engine: &mut Engine,
        calls: &mut media::Calls,
        media_cfg: &media::MediaConfig,
    ) {
        self.send_audit(engine);
        self.send_sip(engine).await;
        while let Some(cmd) = engine.poll_media() {
            match cmd {
                MediaCommand::Open { call, legs } => {
                    match media::CallMedia::open(call, media_cfg, &legs, self.media_tx.clone())
                        .await
                    {
                        Ok(m) => {
                            calls.insert(call, m);
                            engine.handle_media_event(Instant::now(), MediaEvent::Opened { call });
                        }
                        Err((port, e)) => {
                            warn!(call, port, error = %e, "cannot bind media ports");
                            engine.handle_media_event(
                                Instant::now(),
                                MediaEvent::OpenFailed {
                                    call,
                                    bad_ports: vec![port],
                                },
                            );
                        }
                    }
                }
                MediaCommand::AddLeg { call, setup } => {
                    if let Some(m) = calls.get(&call) {
                        if let Err(e) = m.add_leg(setup).await {
                            warn!(call, error = %e, "cannot open supervisor media ports");
                        }
                    }
                }
                MediaCommand::Update {
                    call,
                    leg,
                    remote,
                    hold,
                    codec,
                } => {
                    if let Some(m) = calls.get(&call) {
                        m.update(leg, remote, hold, codec);
                    }
                }
                MediaCommand::SetRole { call, leg, role } => {
                    if let Some(m) = calls.get(&call) {
                        m.set_role(leg, role);
                    }
                }
                MediaCommand::RemoveLeg { call, leg } => {
                    if let Some(m) = calls.get(&call) {
                        m.remove_leg(leg);
                    }
                }
                MediaCommand::PlayTone { call, legs, tone } => {
                    if let Some(m) = calls.get(&call) {
                        m.play_tone(legs, tone);
                    }
                }
                MediaCommand::Close { call } => {
                    if let Some(m) = calls.remove(&call) {
                        m.close();
                        self.metrics.forget_call(call);
                    }
                }
            }
        }
        // Media events handled above (ports bound) may have produced more SIP (and records).
        self.send_audit(engine);
        self.send_sip(engine).await;
        self.publish_notices(engine);
    }

    async fn send_sip(&self, engine: &mut Engine) {
        while let Some(t) = engine.poll_transmit() {
            match (t.transport, &self.udp, &self.tcp) {
                (Transport::Udp, Some(u), _) => u.send(&t.data, t.dest).await,
                (Transport::Tcp, _, Some(s)) => s.send(t.data, t.dest),
                _ => {
                    warn!(dest = %t.dest, transport = ?t.transport, "no transport for outgoing message")
                }
            }
        }
    }
}
