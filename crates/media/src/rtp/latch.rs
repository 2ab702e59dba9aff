//! Which sources a leg accepts media from (strict or learning latch, never hijackable), and
//! the leg's counters. The rules and their reasons are in docs/reliability/latching.md.
//!
//! - [`LatchMode::Strict`]: RTP only from the address and port the leg's SDP names; RTCP only
//!   from that host at the RTCP port (port + 1, or `a=rtcp`) or from the RTP address itself
//!   (rtcp-mux). Before a usable SDP address is known (none yet, `0.0.0.0` hold, port 0)
//!   nothing is accepted.
//! - [`LatchMode::Learn`]: as strict, and additionally, for phones behind NAT, the first
//!   source of a valid RTP packet with a negotiated payload type within the learning window
//!   (opened when the leg's offer/answer completes) is latched. After that, only that address
//!   and its SSRC (see [`SSRC_CHANGE_AFTER`]); RTCP only from the same host, with the
//!   latched SSRC as sender, whose first such packet fixes the RTCP port.
//!
//! In both modes a latch never moves on silence: only a new SDP address (a re-INVITE or
//! UPDATE, signalled by SIP) resets it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// In learn mode, a packet from the latched address with another SSRC is accepted (and the
/// new SSRC locked) only once the locked SSRC has been silent this long: RFC 3550 §8.2 has a
/// source that changes its SSRC stop using the old one, so two interleaved SSRCs from one
/// address are a blind injection (a spoofed source address), not a restart.
pub const SSRC_CHANGE_AFTER: Duration = Duration::from_millis(200);

/// Default learning window of [`LatchMode::Learn`].
pub const DEFAULT_LEARN_WINDOW: Duration = Duration::from_secs(2);

/// Where a leg's media may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatchMode {
    /// Only the address the SDP names.
    #[default]
    Strict,
    /// The SDP address, or the first source with a negotiated payload type within `window`
    /// after the leg's offer/answer (NAT traversal).
    Learn {
        /// How long after the offer/answer a source may be learned.
        window: Duration,
    },
}

/// Outcome of a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    /// Learn mode: this packet's source is now the leg's source (and send target).
    Latched,
    /// From the leg's source: accepted.
    Current,
    /// Not from the leg's source (or, in learn mode, from it with a foreign SSRC): to be
    /// dropped and never answered. A stray or an attempt to hijack the stream.
    Foreign,
}

/// Packet and byte counters of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets accepted from the remote.
    pub rtp_packets_in: u64,
    /// Bytes of those packets (UDP payload).
    pub rtp_bytes_in: u64,
    /// RTCP packets accepted from the remote.
    pub rtcp_packets_in: u64,
    /// Bytes of those packets.
    pub rtcp_bytes_in: u64,
    /// Packets (RTP or RTCP) from a source other than the leg's, not accepted.
    pub foreign_packets_in: u64,
    /// RTP packets of those.
    pub foreign_rtp_in: u64,
    /// RTCP packets of those.
    pub foreign_rtcp_in: u64,
    /// Times a source was learned (learn mode).
    pub latch_events: u64,
    /// RTP packets sent to the remote.
    pub rtp_packets_out: u64,
    /// Bytes of those packets.
    pub rtp_bytes_out: u64,
    /// RTCP packets sent to the remote.
    pub rtcp_packets_out: u64,
    /// Bytes of those packets.
    pub rtcp_bytes_out: u64,
}

/// Per-leg media source state: which sources are accepted and where to send.
///
/// We send RTP to the leg's accepted source: the SDP address, or in learn mode the learned
/// one (a phone behind NAT announces a private address). See the module documentation for
/// the rules.
#[derive(Debug, Clone, Default)]
pub struct LegMedia {
    mode: LatchMode,
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    /// Payload types a learned first packet may have (bit `pt` set).
    payload_types: u128,
    /// Learn mode: sources may be learned until then.
    window_until: Option<Instant>,
    /// The learned RTP source (learn mode).
    learned: Option<SocketAddr>,
    /// The learned RTCP source (learn mode; same host as `learned`).
    learned_rtcp: Option<SocketAddr>,
    /// Learn mode: the locked SSRC and when it was last seen.
    ssrc: Option<(u32, Instant)>,
    last_rx: Option<Instant>,
    counters: LegCounters,
}

/// An SDP address we can send to and accept from: `c=` 0.0.0.0 (RFC 2543 hold) or port 0
/// (stream rejected) give none.
fn usable(addr: Option<SocketAddr>) -> Option<SocketAddr> {
    addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0)
}

/// Payload type and SSRC of a packet that looks like RTP version 2.
fn rtp_pt_ssrc(pkt: &[u8]) -> Option<(u8, u32)> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 {
        return None;
    }
    let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
    Some((pkt[1] & 0x7f, ssrc))
}

/// Sender SSRC of an RTCP packet (the first of a compound packet).
fn rtcp_sender_ssrc(pkt: &[u8]) -> Option<u32> {
    if pkt.len() < 8 || pkt[0] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]))
}

impl LegMedia {
    /// Strict state for a leg whose SDP names `sdp_remote` as RTP address (None: not known
    /// yet).
    pub fn new(sdp_remote: Option<SocketAddr>) -> Self {
        Self {
            sdp_rtp: sdp_remote,
            ..Self::default()
        }
    }

    /// State in `mode` for a leg whose SDP (if any) was set by an offer/answer at `now`.
    pub fn with_mode(mode: LatchMode, now: Instant, sdp_remote: Option<SocketAddr>) -> Self {
        let mut m = Self {
            mode,
            ..Self::default()
        };
        m.set_sdp_remote(now, sdp_remote);
        m
    }

    /// The latching mode.
    pub fn mode(&self) -> LatchMode {
        self.mode
    }

    /// The SDP RTP address after an offer/answer at `now` (answer, re-INVITE, UPDATE). A new
    /// address is a move signalled by SIP: the learned source is forgotten and, in learn
    /// mode, the window re-opens. The same address again re-opens the window only while
    /// nothing is latched (the offer/answer that completes the leg, e.g. the call's answer).
    pub fn set_sdp_remote(&mut self, now: Instant, sdp_remote: Option<SocketAddr>) {
        let moved = sdp_remote != self.sdp_rtp;
        if moved {
            self.sdp_rtp = sdp_remote;
            self.learned = None;
            self.learned_rtcp = None;
            self.ssrc = None;
        }
        if let LatchMode::Learn { window } = self.mode {
            if usable(self.sdp_rtp).is_some() && (moved || self.learned.is_none()) {
                self.window_until = Some(now + window);
            } else if usable(self.sdp_rtp).is_none() {
                self.window_until = None;
            }
        }
    }

    /// Another offer/answer of the call completed at `now` (e.g. the callee answered): a leg
    /// that has learned nothing yet gets a fresh window (its party starts sending now).
    pub fn offer_answer_done(&mut self, now: Instant) {
        if let LatchMode::Learn { window } = self.mode {
            if self.learned.is_none() && usable(self.sdp_rtp).is_some() {
                self.window_until = Some(now + window);
            }
        }
    }

    /// Explicit RTCP address from SDP `a=rtcp` (RFC 3605); None: RTP port + 1.
    pub fn set_sdp_rtcp(&mut self, sdp_rtcp: Option<SocketAddr>) {
        self.sdp_rtcp = sdp_rtcp;
    }

    /// RTCP multiplexed on the RTP port (RFC 5761, `a=rtcp-mux` negotiated).
    pub fn set_rtcp_mux(&mut self, mux: bool) {
        self.rtcp_mux = mux;
    }

    /// The payload types negotiated for the leg (what a learned first packet may carry).
    pub fn set_payload_types(&mut self, pts: &[u8]) {
        self.payload_types = pts.iter().fold(0u128, |m, &pt| m | (1u128 << (pt & 0x7f)));
    }

    fn window_open(&self, now: Instant) -> bool {
        self.window_until.is_some_and(|t| now < t)
    }

    /// An RTP datagram `pkt` arrived from `src`. Counts it; [`Latch::Foreign`] must be
    /// dropped.
    pub fn on_rtp(&mut self, now: Instant, src: SocketAddr, pkt: &[u8]) -> Latch {
        let verdict = self.judge_rtp(now, src, pkt);
        if verdict == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
            self.counters.foreign_rtp_in += 1;
        } else {
            self.counters.rtp_packets_in += 1;
            self.counters.rtp_bytes_in += pkt.len() as u64;
            self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
        }
        verdict
    }

    fn judge_rtp(&mut self, now: Instant, src: SocketAddr, pkt: &[u8]) -> Latch {
        let sdp = usable(self.sdp_rtp);
        let LatchMode::Learn { .. } = self.mode else {
            return if sdp == Some(src) {
                Latch::Current
            } else {
                Latch::Foreign
            };
        };
        let header = rtp_pt_ssrc(pkt);
        if self.learned == Some(src) {
            return self.check_ssrc(now, header.map(|(_, s)| s));
        }
        let window = self.window_open(now);
        let negotiated = header.is_some_and(|(pt, _)| self.payload_types & (1u128 << pt) != 0);
        // The exact SDP address is what signalling says: latched whenever nothing is yet,
        // and preferred to a source learned in the same window (a phone not behind NAT whose
        // first packets were beaten by a stray). Latched, it closes the door to learning.
        if sdp == Some(src) && (self.learned.is_none() || window) {
            self.learned = Some(src);
            self.learned_rtcp = None;
            self.ssrc = header.map(|(_, s)| (s, now));
            self.counters.latch_events += 1;
            return Latch::Latched;
        }
        if self.learned.is_none() && window && negotiated {
            self.learned = Some(src);
            self.ssrc = header.map(|(_, s)| (s, now));
            self.counters.latch_events += 1;
            return Latch::Latched;
        }
        Latch::Foreign
    }

    /// Learn mode, a packet from the learned address: its SSRC must be the locked one, or
    /// the locked one silent for [`SSRC_CHANGE_AFTER`].
    fn check_ssrc(&mut self, now: Instant, ssrc: Option<u32>) -> Latch {
        let Some(ssrc) = ssrc else {
            // Not RTP (garbage from the right address): harmless, the relay drops it.
            return Latch::Current;
        };
        match self.ssrc {
            Some((locked, _)) if locked == ssrc => {
                self.ssrc = Some((ssrc, now));
                Latch::Current
            }
            Some((_, seen)) if now.saturating_duration_since(seen) < SSRC_CHANGE_AFTER => {
                Latch::Foreign
            }
            _ => {
                self.ssrc = Some((ssrc, now));
                Latch::Current
            }
        }
    }

    /// An RTCP packet `pkt` arrived from `src`, on the RTCP port or (`on_rtp_port`)
    /// demultiplexed with [`is_rtcp`](super::is_rtcp) on the RTP port. RTCP follows the RTP
    /// latch: it is accepted only from the RTP source's host (see the module documentation).
    pub fn on_rtcp(&mut self, src: SocketAddr, pkt: &[u8], on_rtp_port: bool) -> Latch {
        let verdict = self.judge_rtcp(src, pkt, on_rtp_port);
        if verdict == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
            self.counters.foreign_rtcp_in += 1;
        } else {
            self.counters.rtcp_packets_in += 1;
            self.counters.rtcp_bytes_in += pkt.len() as u64;
        }
        verdict
    }

    fn judge_rtcp(&mut self, src: SocketAddr, pkt: &[u8], on_rtp_port: bool) -> Latch {
        let Some(rtp) = self.rtp_target() else {
            return Latch::Foreign;
        };
        if src.ip() != rtp.ip() {
            return Latch::Foreign;
        }
        // From the RTP source itself (rtcp-mux, or RTCP sent from the RTP port).
        if src == rtp {
            return Latch::Current;
        }
        if on_rtp_port {
            return Latch::Foreign;
        }
        if self.learned.is_none() {
            let expected = usable(self.sdp_rtcp).or_else(|| {
                let mut a = rtp;
                a.set_port(a.port().checked_add(1)?);
                Some(a)
            });
            return if expected == Some(src) {
                Latch::Current
            } else {
                Latch::Foreign
            };
        }
        // Learned RTP source (NAT): its RTCP comes from a port of the NAT we cannot predict;
        // the first report from that host carrying the latched SSRC fixes it.
        match self.learned_rtcp {
            Some(a) if a == src => Latch::Current,
            Some(_) => Latch::Foreign,
            None => {
                let locked = self.ssrc.map(|(s, _)| s);
                if locked.is_some() && rtcp_sender_ssrc(pkt) == locked {
                    self.learned_rtcp = Some(src);
                    Latch::Latched
                } else {
                    Latch::Foreign
                }
            }
        }
    }

    /// Where to send RTP: the learned source, else the SDP address (if usable).
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        self.learned.or_else(|| usable(self.sdp_rtp))
    }

    /// Where to send RTCP: the RTP target with rtcp-mux; else the learned RTCP source, else
    /// the SDP `a=rtcp` address, else the RTP target's port + 1.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.rtp_target();
        }
        self.learned_rtcp
            .or_else(|| {
                self.learned
                    .is_none()
                    .then(|| usable(self.sdp_rtcp))
                    .flatten()
            })
            .or_else(|| {
                let mut a = self.rtp_target()?;
                a.set_port(a.port().checked_add(1)?);
                Some(a)
            })
    }

    /// The learned RTP source, if one was learned (learn mode).
    pub fn latched_rtp(&self) -> Option<SocketAddr> {
        self.learned
    }

    /// Arrival time of the last accepted RTP packet.
    pub fn last_rx(&self) -> Option<Instant> {
        self.last_rx
    }

    /// Count an RTP packet of `len` bytes sent to the remote.
    pub fn note_sent(&mut self, len: usize) {
        self.counters.rtp_packets_out += 1;
        self.counters.rtp_bytes_out += len as u64;
    }

    /// Count an RTCP packet of `len` bytes sent to the remote.
    pub fn note_sent_rtcp(&mut self, len: usize) {
        self.counters.rtcp_packets_out += 1;
        self.counters.rtcp_bytes_out += len as u64;
    }

    /// The counters.
    pub fn counters(&self) -> &LegCounters {
        &self.counters
    }
}
