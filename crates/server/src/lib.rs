//! The bibridge server: the only place with tokio, sockets and the clock.
//!
//! # Layout
//! - [`Server`] (this file): starts the transports and the engine task, and stops them.
//! - [`transport`]: UDP and TCP SIP sockets; TCP framing by Content-Length.
//! - [`media`]: one task per call owning its RTP/RTCP sockets; relays packets between legs.
//! - [`cli`]: command line and config loading for the `bibridge` binary.
//!
//! The engine ([`bibridge_b2bua::engine::Engine`]) is sans-IO; the engine task here feeds it
//! datagrams, timeouts and media events with `Instant::now()`, and carries out what it polls.

pub mod cli;
mod media;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent};
use bibridge_sip::Transport;
use tokio::sync::{mpsc, oneshot};
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
}

/// Input for the engine task.
pub(crate) enum Input {
    Sip {
        data: bytes::Bytes,
        source: SocketAddr,
        transport: Transport,
    },
    Media(MediaEvent),
}

/// A running bibridge. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
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
        let engine = Engine::new(cfg, local, seed, Instant::now());
        let done = tokio::spawn(engine_task(engine, udp, tcp, in_rx, in_tx, stop_rx));
        Ok(Server {
            udp: local.udp,
            tcp: local.tcp,
            stop: Some(stop_tx),
            done,
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

    /// Graceful shutdown: BYE active calls, give the BYEs a moment, stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
    }

    /// Wait until the server stops (it stops on its own only after `shutdown`).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

async fn engine_task(
    mut engine: Engine,
    udp: Option<transport::Udp>,
    tcp: Option<transport::Tcp>,
    mut input: mpsc::Receiver<Input>,
    self_tx: mpsc::Sender<Input>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut calls: media::Calls = HashMap::new();
    let coach_gain_db = engine.config().rtp.coach_gain_db as f32;
    let rtp_ip = engine.config().rtp.address;
    let inactivity = match engine.config().rtp.inactivity_timeout_s {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let mut stopping: Option<tokio::time::Instant> = None;
    loop {
        // Carry out everything the engine asked for.
        while let Some(t) = engine.poll_transmit() {
            match t.transport {
                Transport::Udp => match &udp {
                    Some(u) => u.send(&t.data, t.dest).await,
                    None => warn!(dest = %t.dest, "no UDP transport for outgoing message"),
                },
                Transport::Tcp => match &tcp {
                    Some(s) => s.send(t.data, t.dest),
                    None => warn!(dest = %t.dest, "no TCP transport for outgoing message"),
                },
            }
        }
        while let Some(cmd) = engine.poll_media() {
            match cmd {
                MediaCommand::Open { call, legs } => {
                    match media::CallMedia::open(
                        call,
                        rtp_ip,
                        &legs,
                        inactivity,
                        coach_gain_db,
                        self_tx.clone(),
                    )
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
                MediaCommand::Close { call } => {
                    if let Some(m) = calls.remove(&call) {
                        m.close();
                    }
                }
            }
        }
        while engine.poll_notice().is_some() {}
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
    for (_, m) in calls.drain() {
        m.close();
    }
    info!("bibridge stopped");
}
