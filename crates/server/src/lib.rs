//! The bibridge server: the only place with tokio, sockets and the clock.
//!
//! # Layout
//! - [`Server`] (this file): starts the transports and the engine task, and stops them.
//! - `transport`: UDP and TCP SIP sockets; TCP framing by Content-Length.
//! - `media`: one task per call owning its RTP/RTCP sockets; relays packets between legs.
//! - [`audit`]: the durable audit log (JSON lines, fsync'd) and its reader.
//! - [`cli`]: command line and config loading for the `bibridge` binary.
//! - [`control`]: requests from the HTTP API into the engine task, and its events back out.
//! - [`http`]: the HTTP API, SSE event stream, operator console assets and `/metrics`.
//! - [`metrics`]: media counters, processing-time histograms and level meters.
//!
//! The engine ([`bibridge_b2bua::engine::Engine`]) is sans-IO; the engine task here feeds it
//! datagrams, timeouts and media events with `Instant::now()`, and carries out what it polls.

pub mod audit;
pub mod cli;
pub mod control;
pub mod http;
mod media;
pub mod metrics;
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
        let (in_tx, in_rx) = mpsc::channel::<Input>(4096);
        let udp = match cfg.sip.udp {
            Some(addr) => Some(transport::Udp::bind(addr, in_tx.clone()).await?),
            None => None,
        };
        let tcp = match cfg.sip.tcp {
            Some(addr) => Some(transport::Tcp::bind(addr, in_tx.clone()).await?),
            None => None,
        };
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
        let control = ControlHandle::new(in_tx.clone(), events_tx.clone(), clock);
        let metrics = Metrics::new();
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
        let audit_log = match &cfg.compliance.audit_log {
            Some(path) => {
                let log = audit::JsonlAudit::open(path).map_err(|source| ServerError::Audit {
                    path: path.clone(),
                    source,
                })?;
                info!(path = %path.display(), "audit log");
                Some(log)
            }
            None => {
                warn!("audit log disabled ([compliance] audit_log = false)");
                None
            }
        };
        let mut engine = Engine::new(cfg, local, seed, Instant::now());
        if let Some(log) = audit_log {
            engine.set_audit_sink(Box::new(log));
        }
        #[cfg(feature = "test-hooks")]
        let input = in_tx.clone();
        let task = EngineTask {
            udp,
            tcp,
            self_tx: in_tx,
            events: EventPublisher::new(events_tx, clock),
            metrics: metrics.clone(),
        };
        let done = tokio::spawn(task.run(engine, in_rx, stop_rx));
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

/// The task that owns the engine: feeds it input and carries out what it asks for.
struct EngineTask {
    udp: Option<transport::Udp>,
    tcp: Option<transport::Tcp>,
    self_tx: mpsc::Sender<Input>,
    events: EventPublisher,
    metrics: Arc<Metrics>,
}

impl EngineTask {
    async fn run(
        mut self,
        mut engine: Engine,
        mut input: mpsc::Receiver<Input>,
        mut stop: oneshot::Receiver<()>,
    ) {
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
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(Input::Sip { data, source, transport }) => engine.handle_datagram(Instant::now(), &data, source, transport),
                    Some(Input::Media(ev)) => engine.handle_media_event(Instant::now(), ev),
                    Some(Input::Control(req)) => {
                        // Events already queued belong before the snapshot's sequence number.
                        self.publish_notices(&mut engine);
                        control::handle(&mut engine, self.events.seq(), req);
                    }
                    #[cfg(feature = "test-hooks")]
                    Some(Input::CrashMedia) => {
                        for m in calls.values() {
                            m.crash();
                        }
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => engine.handle_timeout(Instant::now()),
                _ = &mut stop, if stopping.is_none() => {
                    info!(calls = engine.call_count(), "shutting down");
                    engine.shutdown(Instant::now());
                    // Let BYEs go out and their answers come back.
                    stopping = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                }
            }
        }
        for (call, m) in calls.drain() {
            m.close();
            self.metrics.forget_call(call);
        }
        info!("bibridge stopped");
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
        self.send_sip(engine).await;
        while let Some(cmd) = engine.poll_media() {
            match cmd {
                MediaCommand::Open { call, legs } => {
                    match media::CallMedia::open(call, media_cfg, &legs, self.self_tx.clone()).await
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
        // Media events handled above (ports bound) may have produced more SIP.
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
