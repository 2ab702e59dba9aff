//! Per-call media tasks. Each call's task owns its legs' RTP and RTCP sockets and relays packet by
//! packet between them, untouched: no decode, no re-packetisation, no added buffering.
//!
//! Symmetric RTP: a leg's packets are sent to where that leg's packets come from once the first
//! one arrived (phones behind NAT), else to the address from its SDP. The sans-IO rules for
//! latching and inactivity live in `bibridge_media::rtp`; this task only does the I/O.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bibridge_b2bua::engine::{CallId, LegSetup, MediaEvent, Side};
use bibridge_media::rtp::{InactivityTimer, Latch, LegMedia};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info_span, trace, Instrument};

use crate::Input;

enum Ctl {
    Update {
        side: Side,
        remote: Option<SocketAddr>,
        hold: bool,
    },
}

/// Handle to a call's media task. Dropping the handle (or [`CallMedia::close`]) stops the task
/// and closes its sockets, which returns the ports to the OS.
pub struct CallMedia {
    ctl: mpsc::UnboundedSender<Ctl>,
    task: tokio::task::JoinHandle<()>,
}

struct LegSockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    state: LegMedia,
}

impl CallMedia {
    pub async fn open(
        call: CallId,
        ip: IpAddr,
        legs: &[LegSetup; 2],
        inactivity: Option<Duration>,
        to_engine: mpsc::Sender<Input>,
    ) -> io::Result<CallMedia> {
        let mut socks = Vec::with_capacity(2);
        for leg in legs {
            let rtp = UdpSocket::bind(SocketAddr::new(ip, leg.port)).await?;
            let rtcp = UdpSocket::bind(SocketAddr::new(ip, leg.port.wrapping_add(1))).await?;
            socks.push(LegSockets {
                rtp,
                rtcp,
                state: LegMedia::new(leg.remote),
            });
        }
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let b = socks.pop();
        let a = socks.pop();
        let (Some(a), Some(b)) = (a, b) else {
            return Err(io::Error::other("two legs expected"));
        };
        let span = info_span!("media", call);
        let task =
            tokio::spawn(relay(call, [a, b], inactivity, ctl_rx, to_engine).instrument(span));
        Ok(CallMedia { ctl, task })
    }

    pub fn update(&self, side: Side, remote: Option<SocketAddr>, hold: bool) {
        let _ = self.ctl.send(Ctl::Update { side, remote, hold });
    }

    pub fn close(self) {
        self.task.abort();
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

async fn relay(
    call: CallId,
    mut legs: [LegSockets; 2],
    inactivity: Option<Duration>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    to_engine: mpsc::Sender<Input>,
) {
    // One buffer per socket, reused for every packet: no allocation on the packet path.
    let mut bufs = [[0u8; 2048]; 4];
    let mut timer = inactivity.map(InactivityTimer::new);
    if let Some(t) = timer.as_mut() {
        t.on_activity(Instant::now());
    }
    loop {
        let deadline = timer
            .as_ref()
            .and_then(|t| t.poll_timeout())
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let [b0, b1, b2, b3] = &mut bufs;
        let [l0, l1] = &mut legs;
        // Which socket got what: (leg index, is_rtcp, length, source).
        let got: Option<(usize, bool, usize, SocketAddr)> = tokio::select! {
            r = l0.rtp.recv_from(b0) => r.ok().map(|(n, s)| (0, false, n, s)),
            r = l0.rtcp.recv_from(b1) => r.ok().map(|(n, s)| (0, true, n, s)),
            r = l1.rtp.recv_from(b2) => r.ok().map(|(n, s)| (1, false, n, s)),
            r = l1.rtcp.recv_from(b3) => r.ok().map(|(n, s)| (1, true, n, s)),
            c = ctl.recv() => {
                match c {
                    Some(Ctl::Update { side, remote, hold }) => {
                        let now = Instant::now();
                        legs[idx(side)].state.set_sdp_remote(remote);
                        if let Some(t) = timer.as_mut() {
                            t.set_paused(now, hold);
                        }
                        debug!(?side, ?remote, hold, "media leg updated");
                    }
                    None => return,
                }
                None
            }
            _ = tokio::time::sleep_until(deadline) => {
                if timer.as_ref().is_some_and(|t| t.is_expired(Instant::now())) {
                    debug!("RTP inactivity timeout");
                    let _ = to_engine.send(Input::Media(MediaEvent::Inactive { call })).await;
                    timer = None;
                }
                None
            }
        };
        let Some((from, rtcp, n, src)) = got else {
            continue;
        };
        let now = Instant::now();
        let to = 1 - from;
        let buf = &bufs[from * 2 + usize::from(rtcp)][..n];
        if let Some(t) = timer.as_mut() {
            t.on_activity(now);
        }
        if rtcp {
            if legs[from].state.on_rtcp(now, src, n) == Latch::Foreign {
                continue;
            }
            if let Some(dest) = legs[to].state.rtcp_target() {
                if legs[to].rtcp.send_to(buf, dest).await.is_ok() {
                    legs[to].state.note_sent_rtcp(n);
                }
            }
        } else {
            if legs[from].state.on_rtp(now, src, n) == Latch::Foreign {
                // Another source while the latched one is alive: a stray or a hijack attempt.
                trace!(from, %src, "foreign RTP dropped");
                continue;
            }
            if let Some(dest) = legs[to].state.rtp_target() {
                trace!(from, %dest, bytes = n, "relay");
                if legs[to].rtp.send_to(buf, dest).await.is_ok() {
                    legs[to].state.note_sent(n);
                }
            }
        }
    }
}
