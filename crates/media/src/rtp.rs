//! RTP packet views and the per-leg relay state.
//!
//! - [`RtpHeader`]: validation and a zero-copy view of an RTP packet (RFC 3550 §5.1).
//! - [`is_rtcp`]: RTP/RTCP demultiplexing on one port (RFC 5761 §4).
//! - [`StreamRewriter`]: keeps what we send on an output leg one continuous RTP stream (one
//!   SSRC, continuous sequence numbers and timestamps) whatever happens to its input.
//! - [`LegMedia`]: symmetric RTP (RFC 4961) latching of a leg's remote address, and counters.
//! - [`InactivityTimer`]: media timeout that does not count while the leg is on hold.
//! - [`ReceiveStats`]: RFC 3550 receiver statistics of an incoming stream (expected, lost,
//!   interarrival jitter); [`rtp_seq_ts_ssrc`] reads what it needs from a datagram.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::MediaError;

/// Length of the fixed RTP header.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// RFC 3550 appendix A.1: a sequence number further ahead than this is not a loss but a
/// discontinuity of the sender.
const MAX_DROPOUT: i32 = 3000;
/// RFC 3550 appendix A.1: a packet further behind than this is not reordering but a sender
/// restart.
const MAX_MISORDER: i32 = 100;

/// A validated RTP header: the fixed fields and where the payload is.
///
/// It holds no reference to the packet (so it can be kept while the buffer is rewritten); the
/// payload is a range into the buffer it was parsed from, see [`RtpHeader::payload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Marker bit (audio: first packet of a talkspurt).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRC identifiers after the fixed header.
    pub csrc_count: u8,
    /// Header extension: the 16-bit profile-defined value and the range of its data.
    pub extension: Option<(u16, Range<usize>)>,
    /// Number of padding bytes at the end (0 without the P bit; includes the count byte).
    pub padding_len: u8,
    /// Range of the payload in the packet (between header and padding).
    pub payload: Range<usize>,
}

impl RtpHeader {
    /// Validate `pkt` as an RTP packet and return its header.
    ///
    /// Checks version 2, that the CSRC list, the header extension and the padding fit in the
    /// buffer, and that the padding count is not zero. It does not reject RTCP: on a
    /// multiplexed port (RFC 5761) call [`is_rtcp`] first.
    pub fn parse(pkt: &[u8]) -> Result<RtpHeader, MediaError> {
        let fixed = pkt
            .get(..RTP_FIXED_HEADER_LEN)
            .ok_or(MediaError::BadPacket("shorter than the RTP fixed header"))?;
        let b0 = fixed[0];
        if b0 >> 6 != 2 {
            return Err(MediaError::BadPacket("RTP version is not 2"));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0F;
        let mut offset = RTP_FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if offset > pkt.len() {
            return Err(MediaError::BadPacket("CSRC list truncated"));
        }
        let extension = if has_extension {
            let ext = pkt
                .get(offset..offset + 4)
                .ok_or(MediaError::BadPacket("header extension truncated"))?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if end > pkt.len() {
                return Err(MediaError::BadPacket("header extension truncated"));
            }
            offset = end;
            Some((profile, start..end))
        } else {
            None
        };
        let padding_len = if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let count = *pkt
                .last()
                .filter(|_| pkt.len() > offset)
                .ok_or(MediaError::BadPacket("padding bit set but no padding"))?;
            if count == 0 || usize::from(count) > pkt.len() - offset {
                return Err(MediaError::BadPacket("invalid padding length"));
            }
            count
        } else {
            0
        };
        Ok(RtpHeader {
            payload_type: fixed[1] & 0x7F,
            marker: fixed[1] & 0x80 != 0,
            seq: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc_count,
            extension,
            padding_len,
            payload: offset..pkt.len() - usize::from(padding_len),
        })
    }

    /// Length of the header (fixed part, CSRCs and extension): the payload offset.
    pub fn header_len(&self) -> usize {
        self.payload.start
    }

    /// The payload within `pkt`, the buffer this header was parsed from (empty if `pkt` is
    /// too short, i.e. a different buffer).
    pub fn payload<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        pkt.get(self.payload.clone()).unwrap_or(&[])
    }
}

/// Whether a packet received on an RTP port is RTCP (RFC 5761 §4): version 2 and a second
/// octet (marker bit + payload type in RTP, packet type in RTCP) in 192..=223, the range that
/// RTCP packet types occupy and RTP payload types must avoid when multiplexed.
pub fn is_rtcp(pkt: &[u8]) -> bool {
    // An RTCP header is at least 4 octets (V/P/count, type, length).
    pkt.len() >= 4 && pkt[0] >> 6 == 2 && (192..=223).contains(&pkt[1])
}

/// Overwrite SSRC, sequence number and timestamp (and set the marker bit if asked) of a
/// packet already validated by [`RtpHeader::parse`].
fn write_header(pkt: &mut [u8], seq: u16, ts: u32, ssrc: u32, set_marker: bool) {
    if let Some(h) = pkt.get_mut(..RTP_FIXED_HEADER_LEN) {
        if set_marker {
            h[1] |= 0x80;
        }
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Signed distance from sequence number `b` to `a`, modulo 2^16.
fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// What [`StreamRewriter::rewrite_in_place`] decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// The header was rewritten; send the packet.
    Forward {
        /// Output sequence number written into the packet.
        seq: u16,
        /// Output timestamp written into the packet.
        timestamp: u32,
        /// The mapping was re-based at this packet (first packet, new source, sequence
        /// discontinuity, or after generated packets); the marker bit was set so receivers
        /// resynchronise their jitter buffer.
        rebased: bool,
    },
    /// A late packet whose place in the output was already taken (it precedes the point where
    /// the current mapping began, e.g. a straggler of the previous source). Do not send it:
    /// its sequence number would duplicate one already sent.
    Drop,
}

/// Mapping of the current input source to the output numbering.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    /// Input sequence number at which this mapping began.
    base_seq: u16,
    /// Highest input sequence number seen (RFC 3550 sense, modulo wrap) and its timestamp.
    high_seq: u16,
    high_ts: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// Keeps one output stream continuous: our SSRC, sequence numbers and timestamps that go on
/// where they left off, across changes of the input stream.
///
/// While the input stays one source, sequence and timestamp offsets are kept fixed, so input
/// loss, reordering and silence gaps show through unchanged (the far end's jitter buffer and
/// RTCP statistics see the truth). The mapping is re-based, so that the next output packet
/// is last sequence + 1 and last timestamp + one packet duration, when:
/// - the input SSRC changes (a re-INVITE to another device, a different relayed leg),
/// - the input sequence number jumps by more than RFC 3550's MAX_DROPOUT (3000) ahead or
///   MAX_MISORDER (100) behind (a sender restart without SSRC change),
/// - packets were generated in between with [`next_generated`](Self::next_generated),
/// - [`note_source_switch`](Self::note_source_switch) was called.
///
/// The packet duration for re-basing is estimated from consecutive input packets (timestamp
/// delta of sequence-consecutive packets), or the sample count of the last generated packet,
/// else 20 ms.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    out_ssrc: u32,
    initial_seq: u16,
    initial_ts: u32,
    /// Highest output sequence number sent and its timestamp; `None` before the first.
    out_high: Option<(u16, u32)>,
    /// Duration (timestamp units) of the most recent output packet, if known.
    last_step: Option<u32>,
    cur: Option<Source>,
    /// SSRC and highest input sequence number of the source before `cur`, to recognise its
    /// stragglers.
    prev: Option<(u32, u16)>,
    rebase_pending: bool,
}

impl StreamRewriter {
    /// A rewriter whose first output packet gets `initial_seq`/`initial_ts` (RFC 3550: these
    /// and `out_ssrc` should be random).
    pub fn new(out_ssrc: u32, initial_seq: u16, initial_ts: u32) -> Self {
        Self {
            out_ssrc,
            initial_seq,
            initial_ts,
            out_high: None,
            last_step: None,
            cur: None,
            prev: None,
            rebase_pending: false,
        }
    }

    /// Our SSRC, written into every output packet.
    pub fn ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Highest output sequence number and its timestamp so far (for RTCP sender reports).
    pub fn last_output(&self) -> Option<(u16, u32)> {
        self.out_high
    }

    /// Force re-basing at the next relayed packet (the relay now takes its packets from a
    /// different leg, even one that may happen to share SSRC or numbering).
    pub fn note_source_switch(&mut self) {
        self.rebase_pending = true;
    }

    /// Rewrite SSRC, sequence number and timestamp of the relayed RTP packet `pkt` in place.
    /// `clock_rate_hz` is the RTP clock rate of its payload type (for the 20 ms default
    /// duration and the plausibility check of the estimate). Payload bytes are untouched; on
    /// re-basing the marker bit is set.
    pub fn rewrite_in_place(
        &mut self,
        pkt: &mut [u8],
        clock_rate_hz: u32,
    ) -> Result<Rewrite, MediaError> {
        let h = RtpHeader::parse(pkt)?;
        let action = self.map(h.ssrc, h.seq, h.timestamp, clock_rate_hz);
        if let Rewrite::Forward {
            seq,
            timestamp,
            rebased,
        } = action
        {
            write_header(pkt, seq, timestamp, self.out_ssrc, rebased);
        }
        Ok(action)
    }

    /// Sequence number and timestamp for a packet we generate ourselves (mixer output) of
    /// `samples` timestamp units, continuing the output stream. The next relayed packet is
    /// re-based after it.
    pub fn next_generated(&mut self, samples: u32) -> (u16, u32) {
        let (seq, ts) = match self.out_high {
            None => (self.initial_seq, self.initial_ts),
            Some((s, t)) => (
                s.wrapping_add(1),
                t.wrapping_add(self.last_step.unwrap_or(samples)),
            ),
        };
        self.out_high = Some((seq, ts));
        self.last_step = Some(samples);
        self.rebase_pending = true;
        (seq, ts)
    }

    fn map(&mut self, ssrc: u32, seq: u16, ts: u32, clock_rate_hz: u32) -> Rewrite {
        let rebase = match &self.cur {
            None => true,
            Some(c) if c.ssrc == ssrc => {
                let d = seq_diff(seq, c.high_seq);
                let in_window = (-MAX_MISORDER..=MAX_DROPOUT).contains(&d);
                if !in_window {
                    true
                } else if self.rebase_pending {
                    // A straggler of this source after generated packets: its slot is taken.
                    if d <= 0 {
                        return Rewrite::Drop;
                    }
                    true
                } else if seq_diff(seq, c.base_seq) < 0 {
                    return Rewrite::Drop;
                } else {
                    false
                }
            }
            Some(_) => {
                if let Some((prev_ssrc, prev_high)) = self.prev {
                    let d = seq_diff(seq, prev_high);
                    if prev_ssrc == ssrc && (-MAX_MISORDER..=0).contains(&d) {
                        return Rewrite::Drop;
                    }
                }
                true
            }
        };
        if rebase {
            return self.rebase(ssrc, seq, ts, clock_rate_hz);
        }
        let Some(c) = self.cur.as_mut() else {
            // Unreachable: `rebase` is true when there is no current source.
            return Rewrite::Drop;
        };
        let out_seq = seq.wrapping_add(c.seq_offset);
        let out_ts = ts.wrapping_add(c.ts_offset);
        let d = seq_diff(seq, c.high_seq);
        if d > 0 {
            if d == 1 {
                // Consecutive packets: their timestamp delta is a packet duration, unless a
                // silence gap (DTX) or a telephone-event (constant timestamp) is in between.
                let dt = ts.wrapping_sub(c.high_ts);
                if dt > 0 && dt <= (clock_rate_hz / 5).max(1) {
                    self.last_step = Some(dt);
                }
            }
            c.high_seq = seq;
            c.high_ts = ts;
            self.out_high = Some((out_seq, out_ts));
        }
        Rewrite::Forward {
            seq: out_seq,
            timestamp: out_ts,
            rebased: false,
        }
    }

    fn rebase(&mut self, ssrc: u32, seq: u16, ts: u32, clock_rate_hz: u32) -> Rewrite {
        let (out_seq, out_ts) = match self.out_high {
            None => (self.initial_seq, self.initial_ts),
            Some((s, t)) => {
                let default_step = if clock_rate_hz == 0 {
                    160
                } else {
                    clock_rate_hz / 50
                };
                let step = self.last_step.unwrap_or(default_step);
                (s.wrapping_add(1), t.wrapping_add(step))
            }
        };
        if let Some(c) = &self.cur {
            if c.ssrc != ssrc {
                self.prev = Some((c.ssrc, c.high_seq));
            }
        }
        self.cur = Some(Source {
            ssrc,
            base_seq: seq,
            high_seq: seq,
            high_ts: ts,
            seq_offset: out_seq.wrapping_sub(seq),
            ts_offset: out_ts.wrapping_sub(ts),
        });
        self.rebase_pending = false;
        self.out_high = Some((out_seq, out_ts));
        Rewrite::Forward {
            seq: out_seq,
            timestamp: out_ts,
            rebased: true,
        }
    }
}

/// How long the latched address must be silent before another source may take over.
pub const RELATCH_AFTER: Duration = Duration::from_secs(1);

/// Outcome of a received packet for the symmetric-RTP latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    /// First packet: its source is now the send target.
    Latched,
    /// From the latched address.
    Current,
    /// From a new address after the latched one was silent for [`RELATCH_AFTER`]: the target
    /// moved there (a NAT rebinding, a device change).
    Relatched {
        /// The address latched before.
        previous: SocketAddr,
    },
    /// From another address while the latched one is alive. Not latched, and should be
    /// dropped: it is either a stray or an attempt to hijack the stream.
    Foreign,
}

#[derive(Debug, Clone, Default)]
struct LatchState {
    addr: Option<SocketAddr>,
    last_seen: Option<Instant>,
}

impl LatchState {
    fn on_packet(&mut self, now: Instant, src: SocketAddr) -> Latch {
        match (self.addr, self.last_seen) {
            (None, _) => {
                self.addr = Some(src);
                self.last_seen = Some(now);
                Latch::Latched
            }
            (Some(a), _) if a == src => {
                self.last_seen = Some(self.last_seen.map_or(now, |l| l.max(now)));
                Latch::Current
            }
            (Some(a), last) => {
                let silent = last.is_none_or(|l| now.saturating_duration_since(l) >= RELATCH_AFTER);
                if silent {
                    self.addr = Some(src);
                    self.last_seen = Some(now);
                    Latch::Relatched { previous: a }
                } else {
                    Latch::Foreign
                }
            }
        }
    }
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
    /// Packets (RTP or RTCP) from a source other than the latched one, not accepted.
    pub foreign_packets_in: u64,
    /// RTP packets sent to the remote.
    pub rtp_packets_out: u64,
    /// Bytes of those packets.
    pub rtp_bytes_out: u64,
    /// RTCP packets sent to the remote.
    pub rtcp_packets_out: u64,
    /// Bytes of those packets.
    pub rtcp_bytes_out: u64,
}

/// Per-leg media state for symmetric RTP (RFC 4961) behind NAT.
///
/// We send to the address the remote's packets come from, not (only) to what its SDP says:
/// a phone behind NAT announces a private address. Before any packet arrives the SDP
/// address is used. The first packet latches its source; a packet from another source
/// re-latches only after the latched address was silent for [`RELATCH_AFTER`], so a stray
/// or forged packet cannot steal the stream and two sources cannot make it flap. RTCP has its
/// own latch (its NAT mapping is a different one).
#[derive(Debug, Clone, Default)]
pub struct LegMedia {
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    rtp_latch: LatchState,
    rtcp_latch: LatchState,
    last_rx: Option<Instant>,
    counters: LegCounters,
}

/// An SDP address we can send to: `c=` 0.0.0.0 (RFC 2543 hold) or port 0 (stream
/// rejected) give none.
fn usable(addr: Option<SocketAddr>) -> Option<SocketAddr> {
    addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0)
}

impl LegMedia {
    /// State for a leg whose SDP names `sdp_remote` as RTP address (None: not known yet).
    pub fn new(sdp_remote: Option<SocketAddr>) -> Self {
        Self {
            sdp_rtp: sdp_remote,
            ..Self::default()
        }
    }

    /// New SDP RTP address (offer/answer of a re-INVITE or UPDATE). If it differs from the
    /// previous one the remote moved: both latches are reset, so the next packet latches at
    /// once instead of waiting for the old address to be silent.
    pub fn set_sdp_remote(&mut self, sdp_remote: Option<SocketAddr>) {
        if sdp_remote != self.sdp_rtp {
            self.sdp_rtp = sdp_remote;
            self.rtp_latch = LatchState::default();
            self.rtcp_latch = LatchState::default();
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

    /// An RTP packet of `len` bytes arrived from `src`. Counts it unless it is
    /// [`Latch::Foreign`], which the caller should drop.
    pub fn on_rtp(&mut self, now: Instant, src: SocketAddr, len: usize) -> Latch {
        let l = self.rtp_latch.on_packet(now, src);
        if l == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
        } else {
            self.counters.rtp_packets_in += 1;
            self.counters.rtp_bytes_in += len as u64;
            self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
        }
        l
    }

    /// An RTCP packet of `len` bytes arrived from `src` (on the RTCP port, or demultiplexed
    /// with [`is_rtcp`] on the RTP port). Same rules as [`on_rtp`](Self::on_rtp), own latch.
    pub fn on_rtcp(&mut self, now: Instant, src: SocketAddr, len: usize) -> Latch {
        let l = self.rtcp_latch.on_packet(now, src);
        if l == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
        } else {
            self.counters.rtcp_packets_in += 1;
            self.counters.rtcp_bytes_in += len as u64;
        }
        l
    }

    /// Where to send RTP: the latched source, else the SDP address (if usable).
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr.or_else(|| usable(self.sdp_rtp))
    }

    /// Where to send RTCP: the RTP target with rtcp-mux; else the latched RTCP source, else
    /// the SDP `a=rtcp` address, else the RTP target's port + 1.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.rtp_target();
        }
        self.rtcp_latch
            .addr
            .or_else(|| usable(self.sdp_rtcp))
            .or_else(|| {
                let mut a = self.rtp_target()?;
                a.set_port(a.port().checked_add(1)?);
                Some(a)
            })
    }

    /// The latched RTP source, if any packet arrived.
    pub fn latched_rtp(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr
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

/// Media inactivity ("RTP timeout"): expires when no activity was seen for `timeout`, except
/// while paused (a leg on hold legitimately sends nothing).
///
/// It is armed by the first [`on_activity`](Self::on_activity) (call it when the leg's media
/// starts, so that a leg that never sends also times out) or by un-pausing. A zero timeout
/// disables it.
#[derive(Debug, Clone)]
pub struct InactivityTimer {
    timeout: Duration,
    last: Option<Instant>,
    paused: bool,
}

impl InactivityTimer {
    /// A timer expiring after `timeout` without activity.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            last: None,
            paused: false,
        }
    }

    /// Media (or the start of the leg's media) was seen at `now`.
    pub fn on_activity(&mut self, now: Instant) {
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Pause (hold) or resume. Resuming starts a full new timeout window at `now`, since the
    /// remote needs a moment to restart its media after the hold ends.
    pub fn set_paused(&mut self, now: Instant, paused: bool) {
        if paused {
            self.paused = true;
        } else if self.paused {
            self.paused = false;
            self.last = Some(now);
        }
    }

    /// Whether the timer is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// When the timer expires, if it runs (armed, not paused, non-zero timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.paused || self.timeout.is_zero() {
            return None;
        }
        self.last?.checked_add(self.timeout)
    }

    /// Whether the timer has expired at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|deadline| now >= deadline)
    }
}

/// SSRC, sequence number and timestamp of an RTP packet: `(seq, timestamp, ssrc)`.
///
/// `None` for RTCP (RFC 5761 demultiplexing, see [`is_rtcp`]) and for anything
/// [`RtpHeader::parse`] rejects.
pub fn rtp_seq_ts_ssrc(packet: &[u8]) -> Option<(u16, u32, u32)> {
    if is_rtcp(packet) {
        return None;
    }
    let h = RtpHeader::parse(packet).ok()?;
    Some((h.seq, h.timestamp, h.ssrc))
}

/// RFC 3550 appendix A.1: 2^16, the sequence number space.
const RTP_SEQ_MOD: u32 = 1 << 16;

/// Receiver statistics of one incoming RTP stream (RFC 3550 §6.4.1, appendix A): packets
/// expected and received, cumulative loss and interarrival jitter. Sans-IO: the caller passes
/// each packet's arrival time.
///
/// - Sequence tracking follows appendix A.1 without the probation period: the first packet
///   is trusted. A jump of more than MAX_DROPOUT (3000) ahead or MAX_MISORDER (100) behind is
///   ignored unless the next packet continues from it, which is taken as a sender restart.
/// - `expected` = extended highest sequence number − base + 1, `lost` = expected − received
///   (A.3); duplicates make the difference negative, [`lost`](Self::lost) reports 0 then.
/// - Jitter (A.8): `J += (|D| − J) / 16`, D the difference of relative transit times in
///   timestamp units, over every counted packet in arrival order (late and duplicate ones
///   included).
/// - A new SSRC (a re-INVITE to another device, a sender restart) or a sender restart within
///   one SSRC starts sequence tracking afresh; the counts of the earlier span are kept in the
///   totals, so `expected`, `received` and `lost` are cumulative for the leg. The jitter
///   estimate is kept, but no transit difference is taken across the change.
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    /// The current span (one SSRC, no restart), `None` before the first packet.
    cur: Option<SeqSpan>,
    /// Expected and received packets of earlier spans.
    expected_before: u64,
    received_before: u64,
    /// Arrival and RTP timestamp of the previous packet, for the transit difference.
    last: Option<(Instant, u32)>,
    /// Interarrival jitter estimate, timestamp units of `clock_rate`.
    jitter: f64,
    clock_rate: u32,
}

/// RFC 3550 A.1 `source` state of one span.
#[derive(Debug, Clone)]
struct SeqSpan {
    ssrc: u32,
    base_seq: u16,
    max_seq: u16,
    /// Wraps of the sequence number, times 2^16.
    cycles: u64,
    /// A sequence number that would confirm a large jump as a restart (RFC `bad_seq`).
    bad_seq: Option<u16>,
    received: u64,
}

impl SeqSpan {
    fn new(ssrc: u32, seq: u16) -> Self {
        Self {
            ssrc,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            received: 0,
        }
    }

    fn expected(&self) -> u64 {
        (self.cycles + u64::from(self.max_seq) + 1).saturating_sub(u64::from(self.base_seq))
    }
}

impl ReceiveStats {
    /// No packet seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One RTP packet of SSRC `ssrc` with sequence number `seq` and timestamp `rtp_ts`
    /// arrived at `now`; `clock_rate` is the RTP clock rate of its payload type (Hz).
    pub fn on_packet(&mut self, now: Instant, ssrc: u32, seq: u16, rtp_ts: u32, clock_rate: u32) {
        // A packet the sequence check sets aside (a stray far from the stream) would make
        // a meaningless transit difference too.
        if self.track_seq(ssrc, seq) {
            self.track_jitter(now, rtp_ts, clock_rate);
        }
    }

    /// Close the current span into the totals and start one at `seq`.
    fn restart(&mut self, ssrc: u32, seq: u16) -> &mut SeqSpan {
        if let Some(old) = self.cur.take() {
            self.expected_before += old.expected();
            self.received_before += old.received;
        }
        // The transit time of another source (or a restarted sender) is unrelated.
        self.last = None;
        self.cur.insert(SeqSpan::new(ssrc, seq))
    }

    /// RFC 3550 A.1 `update_seq`, without probation. Returns whether the packet was counted.
    fn track_seq(&mut self, ssrc: u32, seq: u16) -> bool {
        let span = match self.cur.as_mut() {
            Some(s) if s.ssrc == ssrc => s,
            _ => {
                self.restart(ssrc, seq).received += 1;
                return true;
            }
        };
        let udelta = u32::from(seq.wrapping_sub(span.max_seq));
        if udelta < MAX_DROPOUT as u32 {
            // In order, with a permissible gap.
            if seq < span.max_seq {
                span.cycles += u64::from(RTP_SEQ_MOD);
            }
            span.max_seq = seq;
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            // A very large jump: a restart if the next packet follows it, else a stray.
            if span.bad_seq == Some(seq) {
                self.restart(ssrc, seq).received += 1;
                return true;
            }
            span.bad_seq = Some(seq.wrapping_add(1));
            return false;
        }
        // (Otherwise a duplicate or reordered packet: counted, max_seq unchanged.)
        span.received += 1;
        true
    }

    /// RFC 3550 A.8.
    fn track_jitter(&mut self, now: Instant, rtp_ts: u32, clock_rate: u32) {
        if clock_rate == 0 {
            return;
        }
        if self.clock_rate != clock_rate {
            // A codec change: keep the estimate, in the new units; no difference across it.
            if self.clock_rate != 0 {
                self.jitter = self.jitter * f64::from(clock_rate) / f64::from(self.clock_rate);
            }
            self.clock_rate = clock_rate;
            self.last = None;
        }
        if let Some((at, ts)) = self.last {
            let arrival = match now.checked_duration_since(at) {
                Some(d) => d.as_secs_f64(),
                None => -at.saturating_duration_since(now).as_secs_f64(),
            } * f64::from(clock_rate);
            let sent = f64::from(rtp_ts.wrapping_sub(ts) as i32);
            let d = arrival - sent;
            self.jitter += (d.abs() - self.jitter) / 16.0;
        }
        self.last = Some((now, rtp_ts));
    }

    /// Packets expected: for each span, extended highest sequence number − first + 1 (A.3).
    pub fn expected(&self) -> u64 {
        self.expected_before + self.cur.as_ref().map_or(0, SeqSpan::expected)
    }

    /// Packets received (duplicates included, as in RFC 3550).
    pub fn received(&self) -> u64 {
        self.received_before + self.cur.as_ref().map_or(0, |s| s.received)
    }

    /// Cumulative packets lost: expected − received, 0 when duplicates outnumber losses.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received())
    }

    /// Interarrival jitter in timestamp units (the RTCP report block's field).
    pub fn jitter_ts(&self) -> u32 {
        self.jitter.round() as u32
    }

    /// Interarrival jitter in milliseconds (0 before two packets arrived).
    pub fn jitter_ms(&self) -> f64 {
        if self.clock_rate == 0 {
            0.0
        } else {
            self.jitter * 1000.0 / f64::from(self.clock_rate)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pkt(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parse_plain_packet() {
        let p = pkt(0, true, 0xBEEF, 0x01020304, 0xCAFEBABE, &[1, 2, 3]);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.payload_type, 0);
        assert!(h.marker);
        assert_eq!(h.seq, 0xBEEF);
        assert_eq!(h.timestamp, 0x01020304);
        assert_eq!(h.ssrc, 0xCAFEBABE);
        assert_eq!(h.payload, 12..15);
        assert_eq!(h.payload(&p), &[1, 2, 3]);
        assert_eq!(h.extension, None);
        assert_eq!(h.padding_len, 0);
        // Empty payload is valid (e.g. keep-alive).
        let h = RtpHeader::parse(&p[..12]).unwrap();
        assert!(h.payload.is_empty());
    }

    #[test]
    fn parse_csrc_extension_padding() {
        let mut p = pkt(8, false, 1, 2, 3, &[]);
        p[0] = 0x80 | 0x20 | 0x10 | 2; // P, X, CC=2
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 9, 9, 9, 9]); // extension, 1 word
        p.extend_from_slice(&[0xAA, 0xBB]); // payload
        p.extend_from_slice(&[0, 0, 3]); // 3 padding bytes
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.csrc_count, 2);
        assert_eq!(h.extension, Some((0xBEDE, 24..28)));
        assert_eq!(h.header_len(), 28);
        assert_eq!(h.padding_len, 3);
        assert_eq!(h.payload(&p), &[0xAA, 0xBB]);
        assert_eq!(h.payload_type, 8);
    }

    #[test]
    fn parse_rejects_malformed() {
        let good = pkt(0, false, 1, 2, 3, &[0; 4]);
        assert!(RtpHeader::parse(&good[..11]).is_err());
        assert!(RtpHeader::parse(&[]).is_err());
        let mut v1 = good.clone();
        v1[0] = 0x40;
        assert!(RtpHeader::parse(&v1).is_err());
        let mut cc = good.clone();
        cc[0] = 0x82; // 2 CSRCs = 8 bytes, only 4 present
        assert!(RtpHeader::parse(&cc).is_err());
        let mut ext = good.clone();
        ext[0] = 0x90; // extension header of 4 bytes fits, its length says 0x0101 words
        ext[14] = 1;
        ext[15] = 1;
        assert!(RtpHeader::parse(&ext).is_err());
        let mut ext_hdr = pkt(0, false, 1, 2, 3, &[0; 2]);
        ext_hdr[0] = 0x90; // extension header itself truncated
        assert!(RtpHeader::parse(&ext_hdr).is_err());
        let mut pad0 = good.clone();
        pad0[0] = 0xA0;
        *pad0.last_mut().unwrap() = 0; // padding count 0
        assert!(RtpHeader::parse(&pad0).is_err());
        let mut pad_big = good.clone();
        pad_big[0] = 0xA0;
        *pad_big.last_mut().unwrap() = 5; // more than the 4 bytes after the header
        assert!(RtpHeader::parse(&pad_big).is_err());
        let mut pad_none = good[..12].to_vec();
        pad_none[0] = 0xA0; // padding bit without any byte after the header
        assert!(RtpHeader::parse(&pad_none).is_err());
        let mut pad_all = good.clone();
        pad_all[0] = 0xA0;
        *pad_all.last_mut().unwrap() = 4;
        assert!(RtpHeader::parse(&pad_all).unwrap().payload.is_empty());
    }

    #[test]
    fn rtcp_demux() {
        // RR: V=2, RC=0, PT=201, length 1.
        assert!(is_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 1]));
        assert!(is_rtcp(&[0x81, 200, 0, 6]));
        assert!(is_rtcp(&[0x80, 223, 0, 0]));
        assert!(!is_rtcp(&[0x80, 224, 0, 0]));
        assert!(!is_rtcp(&[0x80, 191, 0, 0]));
        assert!(!is_rtcp(&pkt(0, true, 1, 2, 3, &[0; 160]))); // PCMU with marker: 128
        assert!(!is_rtcp(&pkt(96, true, 1, 2, 3, &[0; 10]))); // 224
        assert!(!is_rtcp(&[0x40, 200, 0, 0])); // version 1
        assert!(!is_rtcp(&[0x80, 200, 0])); // too short
    }

    /// Relay one packet through `rw` and return (seq, ts, ssrc, marker) as written.
    fn relay(
        rw: &mut StreamRewriter,
        ssrc: u32,
        seq: u16,
        ts: u32,
    ) -> Option<(u16, u32, u32, bool)> {
        let mut p = pkt(0, false, seq, ts, ssrc, &[0x55; 160]);
        let orig_payload = p[12..].to_vec();
        match rw.rewrite_in_place(&mut p, 8000).unwrap() {
            Rewrite::Drop => None,
            Rewrite::Forward {
                seq: s,
                timestamp,
                rebased,
            } => {
                let h = RtpHeader::parse(&p).unwrap();
                assert_eq!((h.seq, h.timestamp), (s, timestamp));
                assert_eq!(h.marker, rebased);
                assert_eq!(h.payload(&p), &orig_payload[..], "payload untouched");
                Some((h.seq, h.timestamp, h.ssrc, h.marker))
            }
        }
    }

    #[test]
    fn first_packet_gets_initial_values_and_offsets_are_kept() {
        let mut rw = StreamRewriter::new(0xAABBCCDD, 1000, 50_000);
        assert_eq!(
            relay(&mut rw, 7, 65534, 4_000_000_000),
            Some((1000, 50_000, 0xAABBCCDD, true))
        );
        // Input seq wraps; output follows with fixed offset.
        assert_eq!(
            relay(&mut rw, 7, 65535, 4_000_000_160),
            Some((1001, 50_160, 0xAABBCCDD, false))
        );
        assert_eq!(
            relay(&mut rw, 7, 0, 4_000_000_320),
            Some((1002, 50_320, 0xAABBCCDD, false))
        );
        // Loss of two packets shows as a gap; a DTX silence gap in timestamps shows too.
        assert_eq!(
            relay(&mut rw, 7, 3, 4_000_008_000),
            Some((1005, 58_000, 0xAABBCCDD, false))
        );
        assert_eq!(rw.ssrc(), 0xAABBCCDD);
        assert_eq!(rw.last_output(), Some((1005, 58_000)));
    }

    #[test]
    fn ssrc_change_keeps_seq_and_ts_continuous() {
        let mut rw = StreamRewriter::new(42, 100, 0);
        for i in 0..5u16 {
            let r = relay(&mut rw, 1, 5000 + i, 9000 + 160 * u32::from(i)).unwrap();
            assert_eq!((r.0, r.1), (100 + i, 160 * u32::from(i)));
        }
        // New source with unrelated numbering: continues at +1 / +160 (observed ptime).
        assert_eq!(relay(&mut rw, 2, 17, 123_456), Some((105, 800, 42, true)));
        assert_eq!(relay(&mut rw, 2, 18, 123_616), Some((106, 960, 42, false)));
        assert_eq!(relay(&mut rw, 2, 19, 123_776), Some((107, 1120, 42, false)));
        // A straggler of the old source would duplicate seq 104: dropped.
        assert_eq!(relay(&mut rw, 1, 5004, 9640), None);
        assert_eq!(relay(&mut rw, 1, 5003, 9480), None);
        // The old source really coming back (newer numbering) is a new switch.
        assert_eq!(relay(&mut rw, 1, 5010, 10_600), Some((108, 1280, 42, true)));
    }

    #[test]
    fn ptime_estimate_used_for_rebase() {
        let mut rw = StreamRewriter::new(1, 0, 0);
        relay(&mut rw, 1, 10, 0);
        relay(&mut rw, 1, 11, 240); // 30 ms packets
        assert_eq!(relay(&mut rw, 2, 500, 7), Some((2, 480, 1, true)));
        // Without any estimate the default is 20 ms of the clock rate.
        let mut rw = StreamRewriter::new(1, 0, 0);
        relay(&mut rw, 1, 10, 0);
        assert_eq!(relay(&mut rw, 2, 500, 7), Some((1, 160, 1, true)));
    }

    #[test]
    fn reordering_and_loss_preserved() {
        let mut rw = StreamRewriter::new(9, 200, 1000);
        let input = [1u16, 2, 4, 3, 5, 8, 6];
        let out: Vec<u16> = input
            .iter()
            .map(|&s| relay(&mut rw, 5, s, u32::from(s) * 160).unwrap().0)
            .collect();
        assert_eq!(out, vec![200, 201, 203, 202, 204, 207, 205]);
        // Timestamps follow the same fixed offset.
        assert_eq!(relay(&mut rw, 5, 7, 7 * 160).unwrap().1, 1000 + 6 * 160);
        // A packet older than the start of the mapping would reuse a slot: dropped.
        assert_eq!(relay(&mut rw, 5, 0, 0), None);
    }

    #[test]
    fn large_seq_jump_rebases() {
        let mut rw = StreamRewriter::new(9, 0, 0);
        relay(&mut rw, 5, 100, 16_000);
        relay(&mut rw, 5, 101, 16_160);
        // Sender restarted its numbering without changing SSRC.
        assert_eq!(relay(&mut rw, 5, 40_000, 99), Some((2, 320, 9, true)));
        assert_eq!(relay(&mut rw, 5, 40_001, 259), Some((3, 480, 9, false)));
        // Backwards beyond MAX_MISORDER is also a restart.
        assert_eq!(relay(&mut rw, 5, 39_000, 0), Some((4, 640, 9, true)));
    }

    #[test]
    fn relay_generated_relay_continuity() {
        let mut rw = StreamRewriter::new(77, 10, 1_000);
        assert_eq!(relay(&mut rw, 3, 500, 0).unwrap().0, 10);
        assert_eq!(relay(&mut rw, 3, 501, 160).unwrap().0, 11);
        // Relay stops (hold/DTX); the mixer generates on its own 20 ms clock.
        assert_eq!(rw.next_generated(160), (12, 1_320));
        assert_eq!(rw.next_generated(160), (13, 1_480));
        assert_eq!(rw.next_generated(160), (14, 1_640));
        // Same source resumes later (its seq/ts moved on): re-based after the generated ones.
        assert_eq!(
            relay(&mut rw, 3, 560, 60 * 160),
            Some((15, 1_800, 77, true))
        );
        assert_eq!(
            relay(&mut rw, 3, 561, 61 * 160),
            Some((16, 1_960, 77, false))
        );
        // Stragglers from before the generated stretch are dropped.
        assert_eq!(rw.next_generated(160), (17, 2_120));
        assert_eq!(relay(&mut rw, 3, 559, 59 * 160), None);
        assert_eq!(
            relay(&mut rw, 3, 562, 62 * 160),
            Some((18, 2_280, 77, true))
        );
    }

    #[test]
    fn generated_first_then_relay() {
        let mut rw = StreamRewriter::new(77, 65535, u32::MAX - 100);
        assert_eq!(rw.next_generated(160), (65535, u32::MAX - 100));
        assert_eq!(rw.next_generated(160), (0, 59)); // both wrap
        assert_eq!(relay(&mut rw, 3, 9, 9), Some((1, 219, 77, true)));
    }

    #[test]
    fn explicit_source_switch_rebases_even_with_same_ssrc() {
        let mut rw = StreamRewriter::new(1, 0, 0);
        relay(&mut rw, 3, 10, 1600);
        relay(&mut rw, 3, 11, 1760);
        rw.note_source_switch();
        // Another leg that happens to use the same SSRC and a later seq.
        assert_eq!(relay(&mut rw, 3, 900, 5), Some((2, 320, 1, true)));
        assert_eq!(relay(&mut rw, 3, 901, 165), Some((3, 480, 1, false)));
    }

    #[test]
    fn rewrite_rejects_garbage_without_touching_it() {
        let mut rw = StreamRewriter::new(1, 0, 0);
        let mut junk = vec![0x40u8; 20];
        assert!(rw.rewrite_in_place(&mut junk, 8000).is_err());
        assert_eq!(junk, vec![0x40u8; 20]);
        assert!(rw.rewrite_in_place(&mut [0x80, 0], 8000).is_err());
        assert_eq!(rw.last_output(), None);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn latching_and_relatch_after_silence() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let sdp = addr("192.168.1.10:4000");
        let nat = addr("203.0.113.5:61000");
        let other = addr("198.51.100.9:5000");
        let mut leg = LegMedia::new(Some(sdp));
        assert_eq!(leg.rtp_target(), Some(sdp));
        assert_eq!(leg.rtcp_target(), Some(addr("192.168.1.10:4001")));
        assert_eq!(leg.last_rx(), None);

        assert_eq!(leg.on_rtp(ms(0), nat, 172), Latch::Latched);
        assert_eq!(leg.rtp_target(), Some(nat));
        assert_eq!(leg.rtcp_target(), Some(addr("203.0.113.5:61001")));
        assert_eq!(leg.on_rtp(ms(20), nat, 172), Latch::Current);
        // Another source while the latched one is alive: refused, not counted as media.
        assert_eq!(leg.on_rtp(ms(30), other, 172), Latch::Foreign);
        assert_eq!(leg.on_rtp(ms(1019), other, 172), Latch::Foreign);
        assert_eq!(leg.rtp_target(), Some(nat));
        assert_eq!(leg.last_rx(), Some(ms(20)));
        // Latched source silent for 1 s: the new one takes over.
        assert_eq!(
            leg.on_rtp(ms(1020), other, 172),
            Latch::Relatched { previous: nat }
        );
        assert_eq!(leg.rtp_target(), Some(other));
        assert_eq!(leg.on_rtp(ms(1040), nat, 172), Latch::Foreign);
        let c = leg.counters();
        assert_eq!(
            (c.rtp_packets_in, c.rtp_bytes_in, c.foreign_packets_in),
            (3, 516, 3)
        );
        assert_eq!(leg.last_rx(), Some(ms(1020)));
    }

    #[test]
    fn rtcp_latch_is_separate() {
        let t0 = Instant::now();
        let mut leg = LegMedia::new(Some(addr("10.0.0.1:4000")));
        leg.on_rtp(t0, addr("203.0.113.5:61000"), 100);
        // RTCP's NAT mapping is not port + 1.
        assert_eq!(
            leg.on_rtcp(t0, addr("203.0.113.5:62000"), 80),
            Latch::Latched
        );
        assert_eq!(leg.rtcp_target(), Some(addr("203.0.113.5:62000")));
        assert_eq!(leg.rtp_target(), Some(addr("203.0.113.5:61000")));
        assert_eq!(
            leg.on_rtcp(
                t0 + Duration::from_millis(10),
                addr("203.0.113.5:61000"),
                80
            ),
            Latch::Foreign
        );
        leg.set_rtcp_mux(true);
        assert_eq!(leg.rtcp_target(), Some(addr("203.0.113.5:61000")));
        leg.note_sent(172);
        leg.note_sent_rtcp(52);
        let c = leg.counters();
        assert_eq!((c.rtp_packets_out, c.rtp_bytes_out), (1, 172));
        assert_eq!((c.rtcp_packets_out, c.rtcp_bytes_out), (1, 52));
        assert_eq!((c.rtcp_packets_in, c.rtcp_bytes_in), (1, 80));
    }

    #[test]
    fn sdp_changes() {
        let t0 = Instant::now();
        let mut leg = LegMedia::new(None);
        assert_eq!(leg.rtp_target(), None);
        assert_eq!(leg.rtcp_target(), None);
        leg.set_sdp_remote(Some(addr("0.0.0.0:4000"))); // old-style hold
        assert_eq!(leg.rtp_target(), None);
        leg.set_sdp_remote(Some(addr("10.0.0.1:0"))); // rejected stream
        assert_eq!(leg.rtp_target(), None);
        leg.set_sdp_remote(Some(addr("10.0.0.1:4000")));
        leg.set_sdp_rtcp(Some(addr("10.0.0.1:5555")));
        assert_eq!(leg.rtcp_target(), Some(addr("10.0.0.1:5555")));
        leg.on_rtp(t0, addr("203.0.113.5:61000"), 100);
        // Same SDP again (re-INVITE without change): latch kept.
        leg.set_sdp_remote(Some(addr("10.0.0.1:4000")));
        assert_eq!(leg.rtp_target(), Some(addr("203.0.113.5:61000")));
        // The remote moved: latch reset, new source latches immediately.
        leg.set_sdp_remote(Some(addr("10.0.0.2:4000")));
        assert_eq!(leg.rtp_target(), Some(addr("10.0.0.2:4000")));
        assert_eq!(
            leg.on_rtp(t0 + Duration::from_millis(5), addr("10.0.0.2:4000"), 100),
            Latch::Latched
        );
        let mut edge = LegMedia::new(Some(addr("10.0.0.1:65535")));
        assert_eq!(edge.rtcp_target(), None); // no port + 1
        edge.set_rtcp_mux(true);
        assert_eq!(edge.rtcp_target(), Some(addr("10.0.0.1:65535")));
    }

    #[test]
    fn inactivity_timer() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = InactivityTimer::new(Duration::from_secs(30));
        assert_eq!(t.poll_timeout(), None); // not armed
        assert!(!t.is_expired(s(1000)));
        t.on_activity(s(0));
        assert_eq!(t.poll_timeout(), Some(s(30)));
        assert!(!t.is_expired(s(29)));
        assert!(t.is_expired(s(30)));
        t.on_activity(s(20));
        t.on_activity(s(10)); // out-of-order report does not move it back
        assert_eq!(t.poll_timeout(), Some(s(50)));
        t.set_paused(s(25), true);
        assert!(t.is_paused());
        assert_eq!(t.poll_timeout(), None);
        assert!(!t.is_expired(s(500)));
        t.set_paused(s(600), false);
        assert_eq!(t.poll_timeout(), Some(s(630)));
        assert!(!t.is_expired(s(629)));
        assert!(t.is_expired(s(630)));
        t.set_paused(s(601), false); // not paused: no change
        assert_eq!(t.poll_timeout(), Some(s(630)));

        let mut off = InactivityTimer::new(Duration::ZERO);
        off.on_activity(s(0));
        assert_eq!(off.poll_timeout(), None);
        assert!(!off.is_expired(s(10_000)));
    }

    /// Arrival instants `t0 + ms` of packets, fed with sequence numbers, timestamps and SSRC.
    fn feed(st: &mut ReceiveStats, t0: Instant, pkts: &[(u64, u32, u16, u32)]) {
        for &(ms, ssrc, seq, ts) in pkts {
            st.on_packet(t0 + Duration::from_millis(ms), ssrc, seq, ts, 8000);
        }
    }

    #[test]
    fn receive_stats_jitter_of_a_paced_stream_is_zero() {
        let t0 = Instant::now();
        let mut st = ReceiveStats::new();
        assert_eq!(st.jitter_ms(), 0.0);
        let pkts: Vec<_> = (0..100u16)
            .map(|k| (20 * u64::from(k), 7, 1000 + k, 5000 + 160 * u32::from(k)))
            .collect();
        feed(&mut st, t0, &pkts);
        assert!(st.jitter_ms().abs() < 1e-6, "jitter {}", st.jitter_ms());
        assert_eq!(st.jitter_ts(), 0);
        assert_eq!((st.expected(), st.received(), st.lost()), (100, 100, 0));
    }

    #[test]
    fn receive_stats_jitter_of_alternating_offsets_follows_rfc3550() {
        // Sent every 20 ms, arriving alternately 10 ms late and 10 ms early: every transit
        // difference D is ±20 ms = 160 units, so after n differences (J starts at 0)
        // J_n = 160 * (1 - (15/16)^n) units, tending to 20 ms.
        let t0 = Instant::now();
        let arrivals = |count: u16| -> Vec<(u64, u32, u16, u32)> {
            (0..count)
                .map(|k| {
                    let ms = 20 + 20 * u64::from(k);
                    let ms = if k % 2 == 0 { ms + 10 } else { ms - 10 };
                    (ms, 9, k, 160 * u32::from(k))
                })
                .collect()
        };
        let mut st = ReceiveStats::new();
        feed(&mut st, t0, &arrivals(50));
        let want = 20.0 * (1.0 - (15.0f64 / 16.0).powi(49));
        assert!(
            (st.jitter_ms() - want).abs() < 1e-6,
            "jitter {} ms, RFC 3550 A.8 gives {want} ms",
            st.jitter_ms()
        );
        let mut st = ReceiveStats::new();
        feed(&mut st, t0, &arrivals(300));
        assert!((st.jitter_ms() - 20.0).abs() < 0.01, "{}", st.jitter_ms());
        assert_eq!(st.jitter_ts(), 160);
    }

    #[test]
    fn receive_stats_loss_across_sequence_wrap() {
        let t0 = Instant::now();
        let mut st = ReceiveStats::new();
        // 65530..=65535, 0..=9, without 65534 and 2: 16 expected, 14 received.
        let pkts: Vec<_> = (65530u32..65546)
            .map(|s| s as u16)
            .filter(|&s| s != 65534 && s != 2)
            .enumerate()
            .map(|(k, s)| (20 * k as u64, 1, s, 0))
            .collect();
        feed(&mut st, t0, &pkts);
        assert_eq!(st.expected(), 16);
        assert_eq!(st.received(), 14);
        assert_eq!(st.lost(), 2);
        // A second wrap is counted too: 0 -> 65535 -> 0 again.
        let mut st = ReceiveStats::new();
        let pkts: Vec<_> = (0u32..=131_072)
            .step_by(2)
            .map(|s| (0, 1, s as u16, 0))
            .collect();
        feed(&mut st, t0, &pkts);
        assert_eq!(st.expected(), 131_073);
        assert_eq!(st.received(), 65_537);
        assert_eq!(st.lost(), 65_536);
    }

    #[test]
    fn receive_stats_reordering_and_duplicates() {
        let t0 = Instant::now();
        let mut st = ReceiveStats::new();
        // 4 before 3, 5 twice: nothing lost, one duplicate. RFC 3550 counts it as received, so
        // expected - received = -1, reported as 0.
        let pkts: Vec<_> = [1u16, 2, 4, 3, 5, 5, 6]
            .iter()
            .enumerate()
            .map(|(k, &s)| (20 * k as u64, 3, s, 160 * u32::from(s)))
            .collect();
        feed(&mut st, t0, &pkts);
        assert_eq!((st.expected(), st.received(), st.lost()), (6, 7, 0));
        // 7 and 8 missing: 9 expected, 8 received (the duplicate offsets one loss, as in the
        // RFC's cumulative count).
        feed(&mut st, t0, &[(200, 3, 9, 160 * 9)]);
        assert_eq!((st.expected(), st.received(), st.lost()), (9, 8, 1));
        // A late packet (less than MAX_MISORDER behind) counts as reordering.
        feed(&mut st, t0, &[(220, 3, 7, 160 * 7)]);
        assert_eq!((st.expected(), st.received(), st.lost()), (9, 9, 0));
    }

    #[test]
    fn receive_stats_ssrc_change_and_restart_keep_totals() {
        let t0 = Instant::now();
        let mut st = ReceiveStats::new();
        // SSRC A: 100..=109 without 105.
        let a: Vec<_> = (100u16..110)
            .filter(|&s| s != 105)
            .map(|s| (20 * u64::from(s - 100), 0xA, s, 160 * u32::from(s)))
            .collect();
        feed(&mut st, t0, &a);
        assert_eq!((st.expected(), st.received(), st.lost()), (10, 9, 1));
        // SSRC B starts elsewhere, paced: counts add up, and no transit difference is taken
        // across the change (its timestamps are unrelated), so jitter stays 0.
        let b: Vec<_> = (0u16..5)
            .map(|k| {
                (
                    200 + 20 * u64::from(k),
                    0xB,
                    40_000 + k,
                    123_456 + 160 * u32::from(k),
                )
            })
            .collect();
        feed(&mut st, t0, &b);
        assert_eq!((st.expected(), st.received(), st.lost()), (15, 14, 1));
        assert!(st.jitter_ms().abs() < 1e-6, "jitter {}", st.jitter_ms());
        // One stray packet far ahead is ignored; the stream goes on.
        feed(&mut st, t0, &[(300, 0xB, 10, 0), (300, 0xB, 40_005, 0)]);
        assert_eq!((st.expected(), st.received()), (16, 15));
        // A jump followed by its successor is a sender restart within the SSRC: the first
        // packet of the new numbering is not counted (A.1), the rest continue the totals.
        feed(
            &mut st,
            t0,
            &[
                (320, 0xB, 1000, 0),
                (340, 0xB, 1001, 160),
                (360, 0xB, 1002, 320),
            ],
        );
        assert_eq!((st.expected(), st.received(), st.lost()), (18, 17, 1));
    }

    #[test]
    fn rtp_seq_ts_ssrc_reads_rtp_only() {
        let p = pkt(0, false, 0x1234, 0xDEAD_BEEF, 0x0102_0304, &[0xFF; 160]);
        assert_eq!(
            rtp_seq_ts_ssrc(&p),
            Some((0x1234, 0xDEAD_BEEF, 0x0102_0304))
        );
        // An RTCP receiver report (PT 201) on the same port, and garbage.
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0];
        assert_eq!(rtp_seq_ts_ssrc(&rr), None);
        assert_eq!(rtp_seq_ts_ssrc(&p[..11]), None);
        assert_eq!(rtp_seq_ts_ssrc(&[0x40; 20]), None);
    }
}
