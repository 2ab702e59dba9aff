//! Per-call media tasks. Each call's task owns its legs' RTP and RTCP sockets and its
//! [`CallMixer`]: the only state touched per packet, owned by one task, so no locks on the media
//! path. The mixer decides, per output leg, whether to relay packets untouched (no supervisor
//! needs that direction mixed) or to decode, mix and encode (docs/design.md §3).
//!
//! Symmetric RTP: a leg's packets are sent to where that leg's packets come from once the first
//! one arrived (phones behind NAT), else to the address from its SDP. The sans-IO rules for
//! latching and inactivity live in `bibridge_media::rtp`; this task only does the I/O.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;
use std::time::{Duration, Instant};

use bibridge_b2bua::config::{Mode, ToneSpec};
use bibridge_b2bua::engine::{CallId, LegCodec, LegId, LegSetup, MediaEvent, MediaRole};
use bibridge_media::codec::CodecKind;
use bibridge_media::mixer::{
    CallMixer, LegParams, LegRole, MixerConfig, MixerEvent, SessionMode, Tone,
};
use bibridge_media::rtp::{
    is_rtcp, rtp_seq_ts_ssrc, InactivityTimer, Latch, LatchMode, LegMedia, ReceiveStats,
};
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, info_span, trace, warn, Instrument};

use crate::metrics::{MediaTally, Metrics, Path};
use crate::Input;

/// How often a call's media task folds its counters into the shared metrics.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often level meters are published (the console shows about five updates a second).
const LEVELS_EVERY: Duration = Duration::from_millis(200);

/// Settings every call's media task shares.
pub struct MediaConfig {
    pub ip: IpAddr,
    pub inactivity: Option<Duration>,
    pub coach_gain_db: f32,
    /// Which sources a leg accepts media from (`[rtp] latching`).
    pub latch: LatchMode,
    pub metrics: std::sync::Arc<Metrics>,
}

/// Largest datagram we read; RTP packets are far smaller, anything longer is truncated garbage.
const MAX_PACKET: usize = 2048;

enum Ctl {
    Update {
        leg: LegId,
        remote: Option<SocketAddr>,
        hold: bool,
        codec: Option<LegCodec>,
    },
    AddLeg {
        setup: LegSetup,
        sockets: (UdpSocket, UdpSocket),
    },
    SetRole {
        leg: LegId,
        role: MediaRole,
    },
    RemoveLeg {
        leg: LegId,
    },
    PlayTone {
        legs: Vec<LegId>,
        tone: Tone,
    },
    /// Test hook: make the task panic, as a bug would.
    #[cfg(feature = "test-hooks")]
    Crash,
}

/// Handle to a call's media task. Dropping the handle (or [`CallMedia::close`]) stops the task
/// and closes its sockets.
pub struct CallMedia {
    ctl: mpsc::UnboundedSender<Ctl>,
    task: tokio::task::AbortHandle,
    ip: IpAddr,
}

struct LegIo {
    id: LegId,
    rtp: UdpSocket,
    rtcp: UdpSocket,
    state: LegMedia,
    role: MediaRole,
    codec: Option<LegCodec>,
    /// Whether the mixer knows this leg yet (it needs the codec, known after the answer).
    in_mixer: bool,
    /// RFC 3550 loss and jitter of what this leg sends us.
    rx: ReceiveStats,
}

async fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtp = UdpSocket::bind(SocketAddr::new(ip, port)).await?;
    let rtcp = UdpSocket::bind(SocketAddr::new(ip, port.wrapping_add(1))).await?;
    Ok((rtp, rtcp))
}

impl CallMedia {
    /// Bind every leg's RTP/RTCP pair and start the task. On failure, the even port of the pair
    /// that could not be bound (held by another process) is returned with the error.
    pub async fn open(
        call: CallId,
        cfg: &MediaConfig,
        legs: &[LegSetup],
        to_engine: mpsc::Sender<Input>,
    ) -> Result<CallMedia, (u16, io::Error)> {
        let ip = cfg.ip;
        let mut ios = Vec::with_capacity(legs.len() + 2);
        let now = Instant::now();
        for l in legs {
            let (rtp, rtcp) = bind_pair(ip, l.port).await.map_err(|e| (l.port, e))?;
            ios.push(LegIo {
                id: l.leg,
                rtp,
                rtcp,
                state: leg_media(cfg.latch, now, l),
                role: l.role,
                codec: l.codec.clone(),
                in_mixer: false,
                rx: ReceiveStats::new(),
            });
        }
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let span = info_span!("media", call);
        let inner = tokio::spawn(
            run(
                call,
                ios,
                (cfg.inactivity, cfg.coach_gain_db, cfg.latch),
                ctl_rx,
                to_engine.clone(),
                cfg.metrics.clone(),
            )
            .instrument(span),
        );
        let task = inner.abort_handle();
        tokio::spawn(watch(call, inner, to_engine, cfg.metrics.clone()));
        Ok(CallMedia { ctl, task, ip })
    }

    pub fn update(
        &self,
        leg: LegId,
        remote: Option<SocketAddr>,
        hold: bool,
        codec: Option<LegCodec>,
    ) {
        let _ = self.ctl.send(Ctl::Update {
            leg,
            remote,
            hold,
            codec,
        });
    }

    /// Bind a supervisor leg's ports and hand them to the task.
    pub async fn add_leg(&self, setup: LegSetup) -> io::Result<()> {
        let sockets = bind_pair(self.ip, setup.port).await?;
        let _ = self.ctl.send(Ctl::AddLeg { setup, sockets });
        Ok(())
    }

    pub fn set_role(&self, leg: LegId, role: MediaRole) {
        let _ = self.ctl.send(Ctl::SetRole { leg, role });
    }

    pub fn remove_leg(&self, leg: LegId) {
        let _ = self.ctl.send(Ctl::RemoveLeg { leg });
    }

    /// Mix a notification tone into what `legs` hear.
    pub fn play_tone(&self, legs: Vec<LegId>, spec: ToneSpec) {
        let tone = Tone {
            freq_hz: spec.freq_hz as f32,
            duration: Duration::from_millis(u64::from(spec.duration_ms)),
            level_dbfs: spec.level_dbfs as f32,
            beeps: spec.beeps.clamp(1, 255) as u8,
            gap: Duration::from_millis(u64::from(spec.gap_ms)),
        };
        let _ = self.ctl.send(Ctl::PlayTone { legs, tone });
    }

    pub fn close(self) {
        self.task.abort();
    }

    /// Test hook: make the call's media task panic.
    #[cfg(feature = "test-hooks")]
    pub fn crash(&self) {
        let _ = self.ctl.send(Ctl::Crash);
    }
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Wait for a call's media task to end; if it ended by itself (a panic: it never returns while
/// its call is open) rather than by [`CallMedia::close`] (an abort), tell the engine, which
/// ends the call: without it the parties would sit in silence until the inactivity timeout, or
/// forever when that is off.
async fn watch(
    call: CallId,
    task: tokio::task::JoinHandle<()>,
    to_engine: mpsc::Sender<Input>,
    metrics: std::sync::Arc<Metrics>,
) {
    let failure = match task.await {
        Err(e) if e.is_cancelled() => return,
        Err(e) => format!("panicked: {e}"),
        // `run` returns only when its control channel is gone, i.e. the handle was dropped.
        Ok(()) => return,
    };
    error!(call, %failure, "media task died");
    metrics
        .media_tasks_failed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = to_engine
        .send(Input::Media(MediaEvent::MediaFailed { call }))
        .await;
}

/// A leg's latch state from its setup, in `mode`, its SDP known as of `now`.
fn leg_media(mode: LatchMode, now: Instant, l: &LegSetup) -> LegMedia {
    let mut m = LegMedia::with_mode(mode, now, l.remote);
    if let Some(c) = &l.codec {
        m.set_payload_types(&c.payload_types);
    }
    m
}

fn mixer_role(role: MediaRole) -> LegRole {
    match role {
        MediaRole::Customer => LegRole::Customer,
        MediaRole::Agent => LegRole::Agent,
        MediaRole::Supervisor(m) => LegRole::Supervisor(session_mode(m)),
    }
}

fn session_mode(m: Mode) -> SessionMode {
    match m {
        Mode::Monitor => SessionMode::Monitor,
        Mode::Coach => SessionMode::Coach,
        Mode::Barge => SessionMode::Barge,
    }
}

fn params(role: MediaRole, codec: &LegCodec) -> Option<LegParams> {
    Some(LegParams {
        role: mixer_role(role),
        payload_type: codec.payload_type,
        codec: CodecKind::from_rtpmap(&codec.name, codec.clock_rate)?,
        dtmf_payload_type: codec.dtmf_payload_type,
        ptime_ms: 20,
    })
}

/// Tell the mixer about a leg (or its new codec/role) once its codec is known. A leg whose
/// (new) codec the mixer cannot take leaves the mixer: kept with its old codec, its packets
/// (new payload type) would be dropped and what is sent to it labelled with the old one.
fn sync_leg(mixer: &mut CallMixer, now: Instant, leg: &mut LegIo) {
    let r = match leg.codec.as_ref().and_then(|c| params(leg.role, c)) {
        None if leg.codec.is_none() => return,
        None => {
            warn!(leg = leg.id, codec = ?leg.codec, "codec not supported by the mixer; leg not mixed");
            Err(())
        }
        Some(p) if leg.in_mixer => mixer.update_leg(now, leg.id, p).map_err(|e| {
            warn!(leg = leg.id, error = %e, "mixer refused leg");
        }),
        Some(p) => mixer.add_leg(now, leg.id, p).map_err(|e| {
            warn!(leg = leg.id, error = %e, "mixer refused leg");
        }),
    };
    match r {
        Ok(()) => leg.in_mixer = true,
        Err(()) if leg.in_mixer => {
            mixer.remove_leg(now, leg.id);
            leg.in_mixer = false;
        }
        Err(()) => {}
    }
}

/// Customer and agent (legs 0 and 1) are either both in the mixer or both relayed directly
/// by this task: with only one of them in the mixer, the other's output would get the
/// mixer's stream (a coach on its own clock) and the direct relay at once.
fn sync_parties(mixer: &mut CallMixer, now: Instant, legs: &mut [LegIo], changed: LegId) {
    if changed > 1 {
        return;
    }
    let (Some(a), Some(b)) = (
        legs.iter().position(|l| l.id == changed),
        legs.iter().position(|l| l.id == 1 - changed),
    ) else {
        return;
    };
    if legs[a].in_mixer && !legs[b].in_mixer {
        // Back to a codec the mixer takes: bring the peer back too, if it can be.
        sync_leg(mixer, now, &mut legs[b]);
    }
    if legs[a].in_mixer != legs[b].in_mixer {
        for i in [a, b] {
            let l = &mut legs[i];
            if l.in_mixer {
                mixer.remove_leg(now, l.id);
                l.in_mixer = false;
            }
        }
    }
}

/// Send what the mixer produced; returns the (relayed, mixed) packets produced since the last
/// call. The mixer counts a packet when it produces it (in `handle_rtp`/`handle_timeout`, before
/// this drains it), so the delta is taken against the totals seen last time, kept in `counted`.
async fn send_mixer_output(
    mixer: &mut CallMixer,
    legs: &mut [LegIo],
    outbuf: &mut [u8],
    counted: &mut (u64, u64),
) -> (u64, u64) {
    while let Some((to, n)) = mixer.poll_transmit(outbuf) {
        if let Some(leg) = legs.iter_mut().find(|l| l.id == to) {
            if let Some(dest) = leg.state.rtp_target() {
                trace!(to, %dest, bytes = n, "rtp out");
                if leg.rtp.send_to(&outbuf[..n], dest).await.is_ok() {
                    leg.state.note_sent(n);
                }
            }
        }
    }
    let c = mixer.counters();
    let delta = (
        c.relayed_packets.saturating_sub(counted.0),
        c.mixed_frames.saturating_sub(counted.1),
    );
    *counted = (c.relayed_packets, c.mixed_frames);
    delta
}

/// Fold this call's counters into the shared metrics.
fn flush_metrics(
    call: CallId,
    tally: &mut MediaTally,
    metrics: &Metrics,
    legs: &[LegIo],
    lost_reported: &mut u64,
) {
    let lost: u64 = legs.iter().map(|l| l.rx.lost()).sum();
    let jitter = legs.iter().map(|l| l.rx.jitter_ms()).fold(0.0, f64::max);
    tally.flush(metrics, call, lost.saturating_sub(*lost_reported), jitter);
    *lost_reported = lost.max(*lost_reported);
}

/// Publish the legs' level meters (only decoded legs have one; the others are cleared).
fn publish_levels(call: CallId, metrics: &Metrics, legs: &[LegIo], mixer: &CallMixer) {
    // At most a handful of legs: a small stack array, no allocation.
    let mut levels = [(0 as LegId, None); 8];
    let n = legs.len().min(levels.len());
    for (slot, l) in levels.iter_mut().zip(legs) {
        *slot = (l.id, mixer.input_level(l.id));
    }
    metrics.publish_levels(call, &levels[..n]);
}

async fn run(
    call: CallId,
    mut legs: Vec<LegIo>,
    (inactivity, coach_gain_db, latch): (Option<Duration>, f32, LatchMode),
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    to_engine: mpsc::Sender<Input>,
    metrics: std::sync::Arc<Metrics>,
) {
    let cfg = MixerConfig {
        coach_gain_db,
        jitter_max: Duration::from_millis(60),
        ptime: Duration::from_millis(20),
    };
    let mut mixer = CallMixer::new(cfg, u64::from(rand::random::<u32>()) << 32 | call);
    let start = Instant::now();
    for leg in &mut legs {
        sync_leg(&mut mixer, start, leg);
    }
    sync_parties(&mut mixer, start, &mut legs, 0);
    // Reused for every packet in and out: no allocation on the packet path.
    let mut inbuf = vec![0u8; MAX_PACKET];
    let mut outbuf = vec![0u8; MAX_PACKET];
    let mut timer = inactivity.map(InactivityTimer::new);
    if let Some(t) = timer.as_mut() {
        t.on_activity(start);
    }
    let mut rotate = 0usize;
    let mut tally = MediaTally::new();
    // Mixer totals already folded into `tally` (see send_mixer_output).
    let mut counted = (0u64, 0u64);
    let mut lost_reported = 0u64;
    let mut next_flush = start + FLUSH_EVERY;
    let mut next_levels = start + LEVELS_EVERY;
    loop {
        // Mixer output after control changes (mode switch, leg removed) goes out now.
        let (relayed, mixed) =
            send_mixer_output(&mut mixer, &mut legs, &mut outbuf, &mut counted).await;
        tally.add_sent(relayed, mixed);
        while let Some(ev) = mixer.poll_event() {
            match ev {
                MixerEvent::Dtmf { leg, digit } => {
                    debug!(leg, %digit, "DTMF from supervisor");
                    // Media events have a queue of their own that the engine task serves
                    // first (SIP cannot fill it): waiting for room is brief and a digit is
                    // never lost.
                    let _ = to_engine
                        .send(Input::Media(MediaEvent::Dtmf { call, leg, digit }))
                        .await;
                }
            }
        }
        // Counters and histograms once a second (with the meters, which clears those of legs no
        // longer decoded); meters five times a second only while something is decoded: a
        // relay-only call has none and need not wake up for them.
        let now = Instant::now();
        let mixing = legs.iter().any(|l| l.in_mixer);
        if now >= next_flush {
            next_flush = now + FLUSH_EVERY;
            next_levels = now + LEVELS_EVERY;
            flush_metrics(call, &mut tally, &metrics, &legs, &mut lost_reported);
            publish_levels(call, &metrics, &legs, &mixer);
        } else if now >= next_levels {
            next_levels = now + LEVELS_EVERY;
            if mixing {
                publish_levels(call, &metrics, &legs, &mixer);
            }
        }
        let deadline = [
            mixer.poll_timeout(),
            timer.as_ref().and_then(|t| t.poll_timeout()),
            Some(next_flush),
            mixing.then_some(next_levels),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(tokio::time::Instant::from_std)
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let received = poll_fn(|cx| {
            let n = legs.len();
            for k in 0..n * 2 {
                let i = (rotate + k / 2) % n;
                let leg = &legs[i];
                let sock = if k % 2 == 0 { &leg.rtp } else { &leg.rtcp };
                let mut rb = ReadBuf::new(&mut inbuf);
                if let Poll::Ready(r) = sock.poll_recv_from(cx, &mut rb) {
                    let len = rb.filled().len();
                    return Poll::Ready(r.map(|src| (i, k % 2 == 1, len, src)));
                }
            }
            Poll::Pending
        });
        let got = tokio::select! {
            r = received => r.ok(),
            c = ctl.recv() => {
                let Some(c) = c else {
                    flush_metrics(call, &mut tally, &metrics, &legs, &mut lost_reported);
                    return;
                };
                let now = Instant::now();
                match c {
                    Ctl::Update { leg, remote, hold, codec } => {
                        // An offer/answer completed: legs that learned nothing yet may learn
                        // now (the caller's leg when the callee answers).
                        for l in legs.iter_mut().filter(|l| l.id != leg) {
                            l.state.offer_answer_done(now);
                        }
                        if let Some(l) = legs.iter_mut().find(|l| l.id == leg) {
                            l.state.set_sdp_remote(now, remote);
                            if let Some(c) = &codec {
                                l.state.set_payload_types(&c.payload_types);
                            }
                            if codec.is_some() && codec != l.codec {
                                l.codec = codec;
                                sync_leg(&mut mixer, now, l);
                                sync_parties(&mut mixer, now, &mut legs, leg);
                            }
                        }
                        if let Some(t) = timer.as_mut() {
                            t.set_paused(now, hold);
                        }
                        debug!(leg, ?remote, hold, "media leg updated");
                    }
                    Ctl::AddLeg { setup, sockets: (rtp, rtcp) } => {
                        let mut l = LegIo { id: setup.leg, rtp, rtcp, state: leg_media(latch, now, &setup), role: setup.role, codec: setup.codec, in_mixer: false, rx: ReceiveStats::new() };
                        sync_leg(&mut mixer, now, &mut l);
                        debug!(leg = l.id, role = ?l.role, "leg added");
                        legs.push(l);
                    }
                    Ctl::SetRole { leg, role } => {
                        if let Some(l) = legs.iter_mut().find(|l| l.id == leg) {
                            l.role = role;
                            match role {
                                MediaRole::Supervisor(m) if l.in_mixer => mixer.set_mode(now, leg, session_mode(m)),
                                _ => sync_leg(&mut mixer, now, l),
                            }
                            debug!(leg, ?role, "leg role changed");
                        }
                    }
                    Ctl::RemoveLeg { leg } => {
                        mixer.remove_leg(now, leg);
                        legs.retain(|l| l.id != leg);
                        debug!(leg, "leg removed");
                    }
                    Ctl::PlayTone { legs: to, tone } => {
                        for leg in to {
                            mixer.play_tone(now, leg, tone);
                        }
                        debug!(hz = tone.freq_hz, beeps = tone.beeps, "notification tone");
                    }
                    #[cfg(feature = "test-hooks")]
                    Ctl::Crash => panic!("media task crash requested by a test"),
                }
                None
            }
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                if mixer.poll_timeout().is_some_and(|t| t <= now) {
                    mixer.handle_timeout(now);
                    let (relayed, mixed) = send_mixer_output(&mut mixer, &mut legs, &mut outbuf, &mut counted).await;
                    tally.add_sent(relayed, mixed);
                    if mixed > 0 {
                        tally.record(Path::Mix, now.elapsed());
                    }
                }
                if timer.as_ref().is_some_and(|t| t.is_expired(now)) {
                    debug!("RTP inactivity timeout");
                    let _ = to_engine.send(Input::Media(MediaEvent::Inactive { call })).await;
                    timer = None;
                }
                None
            }
        };
        let Some((i, rtcp_socket, n, src)) = got else {
            continue;
        };
        rotate = rotate.wrapping_add(1);
        let now = Instant::now();
        if let Some(t) = timer.as_mut() {
            t.on_activity(now);
        }
        let pkt = &inbuf[..n];
        if rtcp_socket || is_rtcp(pkt) {
            match legs[i].state.on_rtcp(src, pkt, !rtcp_socket) {
                // Never relayed, never answered.
                Latch::Foreign => {
                    trace!(leg = legs[i].id, %src, "foreign RTCP dropped");
                    tally.foreign(true);
                    continue;
                }
                Latch::Latched => debug!(leg = legs[i].id, %src, "RTCP source learned"),
                Latch::Current => {}
            }
            // RTCP is end to end between customer and agent (legs 0 and 1); a supervisor's
            // reports describe a stream that is ours, so they stop here.
            let from = legs[i].id;
            if from > 1 {
                continue;
            }
            let to = 1 - from;
            if let Some(leg) = legs.iter_mut().find(|l| l.id == to) {
                if let Some(dest) = leg.state.rtcp_target() {
                    if leg.rtcp.send_to(pkt, dest).await.is_ok() {
                        leg.state.note_sent_rtcp(n);
                    }
                }
            }
            continue;
        }
        match legs[i].state.on_rtp(now, src, pkt) {
            Latch::Foreign => {
                // Not the leg's source: a stray or a hijack attempt. Counted; the flush logs
                // one line per second at most.
                trace!(leg = legs[i].id, %src, "foreign RTP dropped");
                tally.foreign(false);
                continue;
            }
            Latch::Latched => {
                info!(leg = legs[i].id, %src, "RTP source learned");
                tally.latched();
            }
            Latch::Current => {}
        }
        trace!(leg = legs[i].id, bytes = n, "rtp in");
        tally.received();
        if let Some((seq, ts, ssrc)) = rtp_seq_ts_ssrc(pkt) {
            let rate = legs[i].codec.as_ref().map_or(8000, |c| c.clock_rate);
            legs[i].rx.on_packet(now, ssrc, seq, ts, rate);
        }
        let from = legs[i].id;
        // Customer and agent are relayed directly only when the mixer cannot take one of them
        // (a codec it does not decode, or not known yet); otherwise the mixer decides.
        let peer = (from <= 1)
            .then(|| legs.iter().find(|l| l.id == 1 - from))
            .flatten();
        let direct = peer.is_some_and(|p| !p.in_mixer || !legs[i].in_mixer);
        if !direct {
            if legs[i].in_mixer {
                mixer.handle_rtp(now, from, pkt);
                let (relayed, mixed) =
                    send_mixer_output(&mut mixer, &mut legs, &mut outbuf, &mut counted).await;
                tally.add_sent(relayed, mixed);
                let path = if mixed > 0 { Path::Mix } else { Path::Relay };
                if relayed + mixed > 0 {
                    tally.record(path, now.elapsed());
                }
            }
        } else {
            // A leg whose codec the mixer does not know (or not yet): plain relay still works,
            // only supervisors cannot be mixed in.
            if let Some(leg) = legs.iter_mut().find(|l| l.id == 1 - from) {
                if let Some(dest) = leg.state.rtp_target() {
                    if leg.rtp.send_to(pkt, dest).await.is_ok() {
                        leg.state.note_sent(n);
                        tally.add_sent(1, 0);
                        tally.record(Path::Relay, now.elapsed());
                    }
                }
            }
        }
    }
}

/// Per-call media handles, owned by the engine task.
pub type Calls = HashMap<CallId, CallMedia>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn codec(name: &str, pt: u8) -> LegCodec {
        LegCodec {
            payload_type: pt,
            name: name.into(),
            clock_rate: 8000,
            dtmf_payload_type: Some(101),
            payload_types: vec![pt, 101],
        }
    }

    async fn leg(id: LegId, role: MediaRole, c: LegCodec) -> LegIo {
        let ip: IpAddr = [127, 0, 0, 1].into();
        LegIo {
            id,
            rtp: UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap(),
            rtcp: UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap(),
            state: LegMedia::new(None),
            role,
            codec: Some(c),
            in_mixer: false,
            rx: ReceiveStats::new(),
        }
    }

    /// A re-INVITE to a codec the mixer cannot take must not leave the leg in the mixer with
    /// its old payload type (every packet dropped): customer and agent go direct, together,
    /// and come back when the codec is one the mixer takes again.
    #[tokio::test]
    async fn unsupported_codec_change_takes_the_parties_out_of_the_mixer() {
        let now = Instant::now();
        let mut mixer = CallMixer::new(MixerConfig::default(), 1);
        let mut legs = vec![
            leg(0, MediaRole::Customer, codec("PCMU", 0)).await,
            leg(1, MediaRole::Agent, codec("PCMU", 0)).await,
            leg(2, MediaRole::Supervisor(Mode::Coach), codec("PCMU", 0)).await,
        ];
        for l in &mut legs {
            sync_leg(&mut mixer, now, l);
        }
        sync_parties(&mut mixer, now, &mut legs, 0);
        assert!(legs.iter().all(|l| l.in_mixer));

        legs[0].codec = Some(codec("G729", 18));
        sync_leg(&mut mixer, now, &mut legs[0]);
        sync_parties(&mut mixer, now, &mut legs, 0);
        assert!(!legs[0].in_mixer && !legs[1].in_mixer);
        let ids: Vec<LegId> = mixer.stats().legs.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![2], "only the supervisor stays in the mixer");

        legs[0].codec = Some(codec("PCMA", 8));
        sync_leg(&mut mixer, now, &mut legs[0]);
        sync_parties(&mut mixer, now, &mut legs, 0);
        assert!(legs[0].in_mixer && legs[1].in_mixer);
    }
}
