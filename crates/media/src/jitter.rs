//! Adaptive jitter buffer for one mixed input stream (sans-IO).
//!
//! The mixer keeps one [`JitterBuffer`] per input leg whose audio it decodes and mixes. The buffer
//! does not decode: it puts received RTP packets back in sequence order and tells the mixer when
//! each packet's audio is due ([`JbOut::Packet`]) or that audio never arrived in time
//! ([`JbOut::Lost`]) so the mixer conceals that much.
//!
//! # Playout schedule
//! `playout(ts) = base_instant + (ts - base_ts) / clock_rate + delay`. The base (an "anchor": the
//! arrival instant and timestamp of one packet) is taken from the first packet and re-taken on an
//! SSRC change (the old source's buffered tail is flushed), on a sequence jump the ring cannot
//! hold, on a jump of the timestamp (or of the arrival time against it) by more than one second,
//! and at a talkspurt start (marker bit while the buffer is empty), which is where the delay can
//! change without a glitch. A timestamp jump while audio is still buffered does not re-anchor:
//! the new timeline is mapped onto the old one where the packet was expected, so nothing buffered
//! is thrown away and the reported timestamps stay the sender's.
//!
//! # Driving it
//! `push` every received packet; at each mixer tick (and when [`JitterBuffer::poll_timeout`]
//! fires) call `pop` until it returns `None`. While nothing is buffered `pop` reports nothing,
//! not loss: the sender may be silent (DTX, hold), and the mixer treats the input as absent.
//!
//! # Adaptation
//! Every packet updates the RFC 3550 §6.4.1 interarrival jitter `J` and a slowly decaying peak of
//! its lateness against the anchor's schedule. The target delay is
//! `clamp(max(3·J, peak lateness) + half a frame, min_delay, max_delay)`; it rises at once and
//! falls with a time constant of a few seconds. The *applied* delay only changes where no audio
//! is skipped: it grows on an underflow (the next packet is due but missing, so there is a gap
//! anyway), and follows the target both ways at a talkspurt start or resync. Within a talkspurt
//! audio is only ever dropped when a packet arrives after its slot was played or concealed.
//!
//! # Resources
//! All memory is allocated in [`JitterBuffer::new`]: a ring of [`RING_SLOTS`] slots with
//! [`MAX_PAYLOAD`]-byte payload buffers. Nothing allocates afterwards and no input panics.

use std::time::{Duration, Instant};

/// Number of packets the ring holds; also the widest sequence window ahead of the playout point.
/// A power of two that divides 65536, so `seq % RING_SLOTS` stays consistent across the wrap.
pub const RING_SLOTS: usize = 64;

/// Largest payload a slot holds (an Ethernet MTU). Larger packets are discarded and counted.
pub const MAX_PAYLOAD: usize = 1500;

/// How far behind the playout point a sequence number may be and still count as a late or
/// duplicate packet of this stream (RFC 3550 Appendix A.1 `MAX_MISORDER`).
const MAX_MISORDER: i32 = 100;

/// Forward sequence jumps up to this many are a burst loss and resync at once; larger ones need a
/// second, consecutive packet to be believed (RFC 3550 Appendix A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: i32 = 3000;

/// Per-packet decay of the lateness peak: a half-life of about 140 packets (~3 s at 20 ms).
const PEAK_DECAY: f64 = 0.995;

/// Per-packet fraction by which the target moves down toward a lower estimate (~5 s at 20 ms).
const TARGET_FALL: f64 = 1.0 / 256.0;

/// Configuration of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream, e.g. 8000 for G.711, 48000 for Opus.
    pub clock_rate: u32,
    /// Smallest delay the adaptation may choose.
    pub min_delay: Duration,
    /// Largest delay the adaptation may choose.
    pub max_delay: Duration,
    /// Delay used until the first estimate: small, so a clean stream starts with low latency.
    pub initial_delay: Duration,
}

impl Default for JitterConfig {
    /// 8 kHz clock, adaptive between 0 and 60 ms, starting at 20 ms.
    fn default() -> Self {
        JitterConfig {
            clock_rate: 8000,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(60),
            initial_delay: Duration::from_millis(20),
        }
    }
}

/// What [`JitterBuffer::pop`] hands the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JbOut<'a> {
    /// A packet whose audio is due now: its RTP timestamp, sequence number, marker bit and payload.
    Packet {
        /// RTP timestamp of the packet.
        ts: u32,
        /// RTP sequence number of the packet.
        seq: u16,
        /// RTP marker bit (start of a talkspurt for audio).
        marker: bool,
        /// The payload as received (still encoded).
        payload: &'a [u8],
    },
    /// A gap: `duration` clock units of audio starting at RTP timestamp `ts` never arrived in
    /// time; the mixer conceals that much.
    Lost {
        /// RTP timestamp where the missing audio starts.
        ts: u32,
        /// Length of the missing audio in clock units.
        duration: u32,
    },
}

/// Counters and the jitter estimate of a [`JitterBuffer`].
///
/// Every received packet ends up in exactly one of `played`, `late`, `duplicates`, `flushed`,
/// `discarded`, or is still buffered.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JitterStats {
    /// Packets passed to [`JitterBuffer::push`].
    pub received: u64,
    /// Packets handed out by [`JitterBuffer::pop`].
    pub played: u64,
    /// Packets dropped because their slot had already been played or concealed.
    pub late: u64,
    /// Packets dropped because the same sequence number was buffered or played already.
    pub duplicates: u64,
    /// Packets declared lost ([`JbOut::Lost`] emitted).
    pub lost: u64,
    /// Packets accepted although a higher sequence number had arrived before them.
    pub reordered: u64,
    /// Schedule resets for a new source: SSRC change, timestamp/transit jump, sequence jump.
    pub resyncs: u64,
    /// Talkspurt starts (marker bit on an empty buffer) where the schedule was re-anchored.
    pub talkspurts: u64,
    /// Buffered packets thrown away by a resync (the old source's or timeline's tail).
    pub flushed: u64,
    /// Packets discarded unseen: payload over [`MAX_PAYLOAD`], or a sequence number far outside
    /// the stream's window that a second packet did not confirm.
    pub discarded: u64,
    /// RFC 3550 §6.4.1 interarrival jitter, in clock units.
    pub jitter: u32,
    /// The same jitter in milliseconds.
    pub jitter_ms: f64,
}

/// Bookkeeping of one ring slot; its payload lives in the shared arena.
#[derive(Debug, Clone, Copy, Default)]
struct SlotMeta {
    used: bool,
    seq: u16,
    /// RTP timestamp as received.
    ts: u32,
    /// Extended (non-wrapping) timestamp, see [`JitterBuffer::extend_ts`].
    ts_ext: i64,
    marker: bool,
    len: usize,
}

/// Adaptive jitter buffer for one RTP stream. See the [module docs](self).
#[derive(Debug)]
pub struct JitterBuffer {
    rate: i64,
    min_units: i64,
    max_units: i64,
    initial_units: i64,

    meta: [SlotMeta; RING_SLOTS],
    /// `RING_SLOTS * MAX_PAYLOAD` bytes, slot `i` at `i * MAX_PAYLOAD`.
    arena: Box<[u8]>,
    /// Number of used slots.
    count: usize,

    /// Instant that clock-unit arrival times count from (first packet after `new`/`reset`).
    origin: Option<Instant>,
    synced: bool,
    ssrc: u32,
    /// Next sequence number to play (the playout point).
    cursor_seq: u16,
    /// Extended timestamp expected for `cursor_seq`. Extended timestamps are kept relative to
    /// this value, which makes 32-bit timestamp wrap invisible.
    cursor_ts: i64,
    highest_seq: u16,
    highest_ts: i64,
    /// Added to received timestamps before extension: after a timestamp jump it maps the new
    /// timeline onto the old one, so the schedule continues.
    ts_adj: u32,
    /// `arrival - ts` (clock units) of the anchor packet: playout(ts) = ts + base + delay.
    base_transit: i64,
    /// Applied delay in clock units.
    delay: i64,
    /// Adaptive target delay in clock units (applied at talkspurt starts and underflows).
    target: f64,
    /// Decaying peak of `lateness + margin` against the anchor, clock units.
    late_peak: f64,
    /// RFC 3550 interarrival jitter scaled by 16 (Appendix A.8).
    jitter16: i64,
    last_transit: Option<i64>,
    /// Estimated packet duration (timestamp increment per sequence number), clock units.
    frame: i64,
    /// Bit `k` set: sequence `cursor_seq - 1 - k` was played (tells duplicates from late ones).
    played_hist: u64,
    /// Sequence number that would confirm a far jump (RFC 3550 A.1 probation).
    probation: Option<u16>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates a buffer; all of its memory is allocated here.
    ///
    /// The configuration is normalised rather than rejected: a zero clock rate is taken as 1,
    /// `min_delay` is capped at `max_delay`, and `initial_delay` is clamped between them.
    pub fn new(cfg: JitterConfig) -> Self {
        let rate = i64::from(cfg.clock_rate.max(1));
        // Round inward so the delay reported back never leaves [min_delay, max_delay].
        let max_units = dur_units(cfg.max_delay, rate, 0);
        let min_units = dur_units(cfg.min_delay, rate, 999_999_999).min(max_units);
        let initial_units =
            dur_units(cfg.initial_delay, rate, 500_000_000).clamp(min_units, max_units);
        JitterBuffer {
            rate,
            min_units,
            max_units,
            initial_units,
            meta: [SlotMeta::default(); RING_SLOTS],
            arena: vec![0u8; RING_SLOTS * MAX_PAYLOAD].into_boxed_slice(),
            count: 0,
            origin: None,
            synced: false,
            ssrc: 0,
            cursor_seq: 0,
            cursor_ts: 0,
            highest_seq: 0,
            highest_ts: 0,
            ts_adj: 0,
            base_transit: 0,
            delay: initial_units,
            // lossless: clock units of at most a few seconds fit an f64 mantissa
            target: initial_units as f64,
            late_peak: 0.0,
            jitter16: 0,
            last_transit: None,
            frame: rate / 50,
            played_hist: 0,
            probation: None,
            stats: JitterStats::default(),
        }
    }

    /// Takes one received RTP packet (header fields parsed by the caller). The payload is copied
    /// into a preallocated slot; nothing is allocated. Late, duplicate, oversized and
    /// out-of-window packets are dropped and counted in [`stats`](Self::stats).
    pub fn push(
        &mut self,
        now: Instant,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: &[u8],
    ) {
        self.stats.received += 1;
        if payload.len() > MAX_PAYLOAD {
            self.stats.discarded += 1;
            return;
        }
        if self.origin.is_none() {
            self.origin = Some(now);
        }
        let arrival = self.units_since(now);

        if !self.synced {
            self.restart(arrival, seq, ts, ssrc, marker, payload);
            return;
        }
        if ssrc != self.ssrc {
            self.stats.resyncs += 1;
            self.restart(arrival, seq, ts, ssrc, marker, payload);
            return;
        }

        let d_seq = i32::from(seq.wrapping_sub(self.cursor_seq) as i16);
        if d_seq < 0 {
            if d_seq < -MAX_MISORDER {
                self.on_far_jump(arrival, seq, ts, ssrc, marker, payload);
            } else {
                self.on_behind(arrival, d_seq, ts);
            }
            return;
        }
        // lossless: 0 <= d_seq < 32768
        let ahead = d_seq as usize;
        if ahead >= RING_SLOTS {
            if d_seq <= MAX_DROPOUT {
                // A burst loss wider than the ring: nothing buffered can bridge it anyway.
                self.stats.resyncs += 1;
                self.restart(arrival, seq, ts, ssrc, marker, payload);
            } else {
                self.on_far_jump(arrival, seq, ts, ssrc, marker, payload);
            }
            return;
        }

        self.probation = None;
        let idx = slot_index(seq);
        if self.meta.get(idx).is_some_and(|m| m.used && m.seq == seq) {
            self.stats.duplicates += 1;
            return;
        }

        let rate = self.rate.unsigned_abs();
        let expected_ts = self
            .cursor_ts
            .saturating_add(i64::from(d_seq).saturating_mul(self.frame));
        let mut ts_ext = self.extend_ts(ts);
        let mut jumped = false;
        if ts_ext.abs_diff(expected_ts) > rate {
            // The sender's timeline jumped by more than a second. Map the new timeline onto
            // the old one where this packet was expected: buffered audio keeps its schedule
            // and the stream goes on seamlessly. With nothing buffered, re-anchor here.
            self.stats.resyncs += 1;
            jumped = true;
            // truncation intended: offsets between 32-bit RTP timelines
            self.ts_adj = (expected_ts as u32).wrapping_sub(ts);
            ts_ext = expected_ts;
        }
        let transit = arrival.saturating_sub(ts_ext);
        if !jumped && transit.abs_diff(self.base_transit) > rate {
            // Arrival jumped by more than a second against steady timestamps (a sender that
            // froze its clock over a hold): the schedule and whatever is buffered are stale.
            self.stats.resyncs += 1;
            if self.count > 0 {
                self.restart(arrival, seq, ts, ssrc, marker, payload);
                return;
            }
            jumped = true;
        }

        if jumped {
            // D across a discontinuity says nothing about the network.
            self.last_transit = None;
            self.late_peak = 0.0;
        }
        self.update_jitter(transit);
        if (jumped || marker) && self.count == 0 {
            // Talkspurt start (or a new timeline) on an empty buffer: re-anchor on this
            // packet and apply the target in both directions; nothing is skipped.
            if !jumped {
                self.stats.talkspurts += 1;
                // Keep the lateness peak meaningful in the new anchor's frame.
                self.late_peak =
                    (self.late_peak + self.base_transit.saturating_sub(transit) as f64).max(0.0);
            }
            self.base_transit = transit;
            self.played_hist = self
                .played_hist
                .checked_shl(d_seq.unsigned_abs())
                .unwrap_or(0);
            self.cursor_seq = seq;
            self.cursor_ts = ts_ext;
            self.update_target(transit);
            self.delay = self.target_units();
        } else {
            self.update_target(transit);
        }
        self.track_order(seq, ts_ext, marker);
        self.insert(seq, ts, ts_ext, marker, payload);

        if seq == self.cursor_seq {
            // The packet at the playout point arrived after it was due: an underflow happened,
            // so this is where a larger delay can be applied without skipping audio.
            let due = self.due_units(ts_ext);
            if arrival > due {
                self.grow_delay();
            }
        }
    }

    /// The next audio due at `now`, in sequence order. Call repeatedly until `None` at each
    /// mixer tick. `None` also while the buffer is empty: a pause (silence suppression, hold)
    /// is not reported as loss, so the mixer simply has no audio from this input.
    pub fn pop(&mut self, now: Instant) -> Option<JbOut<'_>> {
        if !self.synced {
            return None;
        }
        let now_u = self.units_since(now);
        let idx = slot_index(self.cursor_seq);
        let m = self.meta.get(idx).copied().unwrap_or_default();

        if m.used && m.seq == self.cursor_seq {
            if now_u < self.due_units(m.ts_ext) {
                return None;
            }
            if let Some(slot) = self.meta.get_mut(idx) {
                slot.used = false;
            }
            self.count = self.count.saturating_sub(1);
            self.stats.played += 1;
            self.cursor_seq = self.cursor_seq.wrapping_add(1);
            self.cursor_ts = m.ts_ext.saturating_add(self.frame);
            self.played_hist = (self.played_hist << 1) | 1;
            let start = idx * MAX_PAYLOAD;
            let payload = self.arena.get(start..start + m.len).unwrap_or(&[]);
            return Some(JbOut::Packet {
                ts: m.ts,
                seq: m.seq,
                marker: m.marker,
                payload,
            });
        }

        // The packet at the playout point is missing.
        if now_u < self.due_units(self.cursor_ts) {
            return None;
        }
        // Underflow: there is a gap anyway, so grow the delay now and give the packet that
        // much longer to arrive instead of concealing at once.
        self.grow_delay();
        if now_u < self.due_units(self.cursor_ts) || self.count == 0 {
            // With nothing buffered we cannot tell loss from a pause: report nothing.
            return None;
        }
        let duration = self.gap_duration();
        // truncation intended: back to the sender's 32-bit timeline
        let ts = (self.cursor_ts as u32).wrapping_sub(self.ts_adj);
        self.cursor_seq = self.cursor_seq.wrapping_add(1);
        self.cursor_ts = self.cursor_ts.saturating_add(duration);
        self.played_hist <<= 1;
        self.stats.lost += 1;
        Some(JbOut::Lost {
            ts,
            duration: u32::try_from(duration).unwrap_or(u32::MAX),
        })
    }

    /// When the next buffered packet (or the gap in front of it) becomes due, for the driver's
    /// timer. `None` when nothing is buffered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.synced || self.count == 0 {
            return None;
        }
        let m = self.meta.get(slot_index(self.cursor_seq))?;
        let ts_ext = if m.used && m.seq == self.cursor_seq {
            m.ts_ext
        } else {
            self.cursor_ts
        };
        self.instant_of(self.due_units(ts_ext))
    }

    /// The delay currently applied to the playout schedule.
    pub fn current_delay(&self) -> Duration {
        self.units_dur(self.delay)
    }

    /// The adaptive target the delay moves to at the next talkspurt start (or, if larger, at
    /// the next underflow).
    pub fn target_delay(&self) -> Duration {
        self.units_dur(self.target_units())
    }

    /// Number of packets buffered.
    pub fn buffered(&self) -> usize {
        self.count
    }

    /// Counters and the current interarrival jitter.
    pub fn stats(&self) -> JitterStats {
        let j = self.jitter16 >> 4;
        let mut s = self.stats;
        s.jitter = u32::try_from(j).unwrap_or(u32::MAX);
        s.jitter_ms = j as f64 * 1000.0 / self.rate as f64;
        s
    }

    /// Heap memory the buffer holds, bytes: its payload arena (allocated by [`new`](Self::new)).
    pub fn heap_bytes(&self) -> usize {
        self.arena.len()
    }

    /// Forgets the stream, the estimates and the counters, as after [`new`](Self::new).
    /// Keeps the allocated memory.
    pub fn reset(&mut self) {
        self.meta = [SlotMeta::default(); RING_SLOTS];
        self.count = 0;
        self.origin = None;
        self.synced = false;
        self.ssrc = 0;
        self.cursor_seq = 0;
        self.cursor_ts = 0;
        self.highest_seq = 0;
        self.highest_ts = 0;
        self.ts_adj = 0;
        self.base_transit = 0;
        self.delay = self.initial_units;
        self.target = self.initial_units as f64;
        self.late_peak = 0.0;
        self.jitter16 = 0;
        self.last_transit = None;
        self.frame = self.rate / 50;
        self.played_hist = 0;
        self.probation = None;
        self.stats = JitterStats::default();
    }

    /// Starts (or restarts, for a new source or timeline) the schedule on this packet.
    fn restart(
        &mut self,
        arrival: i64,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: &[u8],
    ) {
        if self.count > 0 {
            self.stats.flushed += self.count as u64;
            for m in &mut self.meta {
                m.used = false;
            }
            self.count = 0;
        }
        let ts_ext = i64::from(ts);
        self.synced = true;
        self.ssrc = ssrc;
        self.cursor_seq = seq;
        self.cursor_ts = ts_ext;
        self.highest_seq = seq;
        self.highest_ts = ts_ext;
        self.ts_adj = 0;
        self.base_transit = arrival.saturating_sub(ts_ext);
        // Transit of the old timeline is meaningless against the new one; the jitter estimate
        // (a property of the network path) and the target are kept.
        self.last_transit = Some(self.base_transit);
        self.late_peak = 0.0;
        self.played_hist = 0;
        self.probation = None;
        self.delay = self.target_units();
        self.insert(seq, ts, ts_ext, marker, payload);
    }

    /// A packet behind the playout point: a duplicate of a played one, or late.
    fn on_behind(&mut self, arrival: i64, d_seq: i32, ts: u32) {
        let back = d_seq.unsigned_abs(); // 1..=MAX_MISORDER
        let played = back <= 64 && (self.played_hist >> (back - 1)) & 1 == 1;
        if played {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.late += 1;
        // A late packet is exactly the evidence the adaptation needs.
        let ts_ext = self.extend_ts(ts);
        let transit = arrival.saturating_sub(ts_ext);
        if transit.abs_diff(self.base_transit) <= self.rate.unsigned_abs() {
            self.update_jitter(transit);
            self.update_target(transit);
        }
    }

    /// A sequence number far outside the window: believe it only when the next packet follows
    /// it (RFC 3550 Appendix A.1), so one stray packet cannot derail the stream.
    fn on_far_jump(
        &mut self,
        arrival: i64,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: &[u8],
    ) {
        if self.probation == Some(seq) {
            self.stats.resyncs += 1;
            self.restart(arrival, seq, ts, ssrc, marker, payload);
        } else {
            self.stats.discarded += 1;
            self.probation = Some(seq.wrapping_add(1));
        }
    }

    fn insert(&mut self, seq: u16, ts: u32, ts_ext: i64, marker: bool, payload: &[u8]) {
        let idx = slot_index(seq);
        let start = idx * MAX_PAYLOAD;
        let Some(dst) = self.arena.get_mut(start..start + payload.len()) else {
            self.stats.discarded += 1;
            return;
        };
        dst.copy_from_slice(payload);
        let Some(m) = self.meta.get_mut(idx) else {
            return;
        };
        if m.used {
            // Unreachable by construction (slots behind the playout point are always free),
            // but keep the accounting exact if it ever happens.
            self.stats.flushed += 1;
        } else {
            self.count += 1;
        }
        *m = SlotMeta {
            used: true,
            seq,
            ts,
            ts_ext,
            marker,
            len: payload.len(),
        };
    }

    /// Reorder counter and packet-duration estimate from in-order neighbours.
    fn track_order(&mut self, seq: u16, ts_ext: i64, marker: bool) {
        let d = seq.wrapping_sub(self.highest_seq) as i16;
        if d < 0 {
            self.stats.reordered += 1;
            return;
        }
        if d == 1 && !marker {
            let delta = ts_ext.saturating_sub(self.highest_ts);
            // Up to 120 ms (the largest common ptime); beyond that it is a silence gap.
            if delta > 0 && delta <= self.rate * 12 / 100 {
                self.frame = delta;
            }
        }
        self.highest_seq = seq;
        self.highest_ts = ts_ext;
    }

    /// RFC 3550 §6.4.1 / Appendix A.8: `J += (|D| - J) / 16`, kept scaled by 16.
    fn update_jitter(&mut self, transit: i64) {
        if let Some(prev) = self.last_transit {
            let d = transit.abs_diff(prev).min(i64::MAX as u64 / 32) as i64;
            self.jitter16 += d - ((self.jitter16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// New target from the jitter estimate and this packet's lateness against the anchor.
    fn update_target(&mut self, transit: i64) {
        let margin = (self.frame / 2) as f64;
        let lateness = transit.saturating_sub(self.base_transit) as f64;
        self.late_peak = (self.late_peak * PEAK_DECAY).max(lateness + margin);
        let j = (self.jitter16 >> 4) as f64;
        let raw = (3.0 * j + margin)
            .max(self.late_peak)
            .clamp(self.min_units as f64, self.max_units as f64);
        if raw > self.target {
            self.target = raw;
        } else {
            self.target += (raw - self.target) * TARGET_FALL;
        }
    }

    /// Applies the target if it is larger than the applied delay.
    fn grow_delay(&mut self) {
        let t = self.target_units();
        if t > self.delay {
            self.delay = t;
        }
    }

    fn target_units(&self) -> i64 {
        (self.target.round() as i64).clamp(self.min_units, self.max_units)
    }

    /// Duration of the missing packet at the playout point, from the next buffered packet's
    /// timestamp (spread evenly over the missing sequence numbers), else the frame estimate.
    fn gap_duration(&self) -> i64 {
        for k in 1..RING_SLOTS as u16 {
            let seq = self.cursor_seq.wrapping_add(k);
            let Some(m) = self.meta.get(slot_index(seq)) else {
                continue;
            };
            if m.used && m.seq == seq {
                let total = m.ts_ext.saturating_sub(self.cursor_ts);
                if total > 0 && total <= self.rate {
                    return (total / i64::from(k)).max(1);
                }
                break;
            }
        }
        self.frame.max(1)
    }

    /// Extends a 32-bit timestamp (mapped by `ts_adj`) around the playout point's.
    fn extend_ts(&self, ts: u32) -> i64 {
        // truncation intended: difference of the low 32 bits, read as signed
        let rel = ts
            .wrapping_add(self.ts_adj)
            .wrapping_sub(self.cursor_ts as u32) as i32;
        self.cursor_ts.saturating_add(i64::from(rel))
    }

    fn due_units(&self, ts_ext: i64) -> i64 {
        ts_ext
            .saturating_add(self.base_transit)
            .saturating_add(self.delay)
    }

    /// Clock units elapsed from the origin to `now` (floor; 0 if `now` is earlier).
    fn units_since(&self, now: Instant) -> i64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        let ns = now.saturating_duration_since(origin).as_nanos();
        let u = ns.saturating_mul(self.rate.unsigned_abs() as u128) / 1_000_000_000;
        i64::try_from(u).unwrap_or(i64::MAX)
    }

    /// The first instant whose [`units_since`](Self::units_since) is at least `units`.
    fn instant_of(&self, units: i64) -> Option<Instant> {
        let origin = self.origin?;
        let ns = self.units_dur(units.max(0));
        origin.checked_add(ns)
    }

    /// Clock units to a duration, rounded up to the nanosecond.
    fn units_dur(&self, units: i64) -> Duration {
        let u = units.max(0).unsigned_abs() as u128;
        let r = self.rate.unsigned_abs() as u128;
        let ns = (u * 1_000_000_000).div_ceil(r);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

fn slot_index(seq: u16) -> usize {
    usize::from(seq) % RING_SLOTS
}

/// A duration in clock units; `round` (in 1e-9 units) selects floor, nearest or ceiling.
fn dur_units(d: Duration, rate: i64, round: u128) -> i64 {
    let u = (d.as_nanos() * rate.unsigned_abs() as u128 + round) / 1_000_000_000;
    i64::try_from(u).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MS: u32 = 8; // clock units per millisecond at 8 kHz

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ev {
        P { seq: u16, ts: u32 },
        L { ts: u32, dur: u32 },
    }

    #[derive(Debug, Clone, Copy)]
    struct Pkt {
        at: Duration,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
    }

    fn pkt(at_ms: u64, seq: u16, ts: u32) -> Pkt {
        Pkt {
            at: Duration::from_millis(at_ms),
            seq,
            ts,
            ssrc: 0x1234,
            marker: false,
        }
    }

    /// A clean 20 ms stream: packet n arrives at 20n ms.
    fn stream(n: u16, seq0: u16, ts0: u32) -> Vec<Pkt> {
        (0..n)
            .map(|i| {
                pkt(
                    20 * u64::from(i),
                    seq0.wrapping_add(i),
                    ts0.wrapping_add(160 * u32::from(i)),
                )
            })
            .collect()
    }

    fn payload_of(seq: u16) -> [u8; 3] {
        let b = seq.to_be_bytes();
        [b[0], b[1], 0xAB]
    }

    /// Event-driven virtual-time driver: pushes each packet at its arrival time (in arrival
    /// order, pushes before pops at equal instants) and pops at the instants `poll_timeout`
    /// names. `check` runs after every step with the number of packets pushed so far.
    fn run_with(
        jb: &mut JitterBuffer,
        t0: Instant,
        pkts: &[Pkt],
        mut check: impl FnMut(usize, &JitterBuffer),
    ) -> Vec<(Duration, Ev)> {
        let mut order: Vec<Pkt> = pkts.to_vec();
        order.sort_by_key(|p| p.at);
        let mut out = Vec::new();
        let mut i = 0;
        let mut last = t0;
        for _ in 0..1_000_000 {
            let next_arr = order.get(i).map(|p| t0 + p.at);
            let t = match (next_arr, jb.poll_timeout()) {
                (None, None) => return out,
                (Some(a), None) => a,
                (None, Some(d)) => d,
                (Some(a), Some(d)) => a.min(d),
            }
            .max(last);
            last = t;
            while i < order.len() && t0 + order[i].at <= t {
                let p = order[i];
                jb.push(t, p.seq, p.ts, p.ssrc, p.marker, &payload_of(p.seq));
                i += 1;
                check(i, jb);
            }
            while let Some(o) = jb.pop(t) {
                let ev = match o {
                    JbOut::Packet {
                        ts, seq, payload, ..
                    } => {
                        assert_eq!(payload, payload_of(seq), "payload of seq {seq}");
                        Ev::P { seq, ts }
                    }
                    JbOut::Lost { ts, duration } => Ev::L { ts, dur: duration },
                };
                out.push((t - t0, ev));
            }
            check(i, jb);
        }
        panic!("driver made no progress");
    }

    fn run(jb: &mut JitterBuffer, t0: Instant, pkts: &[Pkt]) -> Vec<(Duration, Ev)> {
        run_with(jb, t0, pkts, |_, _| {})
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn played_seqs(evs: &[(Duration, Ev)]) -> Vec<u16> {
        evs.iter()
            .filter_map(|(_, e)| match e {
                Ev::P { seq, .. } => Some(*seq),
                Ev::L { .. } => None,
            })
            .collect()
    }

    fn lost(evs: &[(Duration, Ev)]) -> Vec<(Duration, u32, u32)> {
        evs.iter()
            .filter_map(|(t, e)| match e {
                Ev::L { ts, dur } => Some((*t, *ts, *dur)),
                Ev::P { .. } => None,
            })
            .collect()
    }

    /// Deterministic uniform integers in `lo..=hi` (xorshift), so tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn range(&mut self, lo: i64, hi: i64) -> i64 {
            lo + (self.next() % (hi - lo + 1) as u64) as i64
        }
    }

    #[test]
    fn in_order_stream_plays_at_initial_delay() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &stream(50, 1000, 5000));
        assert_eq!(evs.len(), 50);
        for (n, (t, e)) in evs.iter().enumerate() {
            let n16 = n as u16;
            assert_eq!(
                *e,
                Ev::P {
                    seq: 1000 + n16,
                    ts: 5000 + 160 * n as u32
                }
            );
            assert_eq!(
                *t,
                ms(20 * n as u64 + 20),
                "packet {n} plays 20 ms after arrival"
            );
        }
        let s = jb.stats();
        assert_eq!((s.received, s.played, s.lost, s.late), (50, 50, 0, 0));
        assert_eq!(s.jitter, 0);
        assert_eq!(jb.current_delay(), ms(20));
    }

    #[test]
    fn poll_timeout_names_the_next_due_instant() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        assert_eq!(jb.poll_timeout(), None);
        assert!(jb.pop(t0).is_none());
        jb.push(t0, 1, 0, 7, false, &[1, 2]);
        assert_eq!(jb.poll_timeout(), Some(t0 + ms(20)));
        assert!(jb.pop(t0 + ms(19)).is_none());
        assert_eq!(
            jb.pop(t0 + ms(20)),
            Some(JbOut::Packet {
                ts: 0,
                seq: 1,
                marker: false,
                payload: &[1, 2]
            })
        );
        assert_eq!(jb.poll_timeout(), None);
    }

    #[test]
    fn reordered_pair_is_played_in_order() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        pkts[4].at = ms(95); // due at 100: late on the wire but in time for its slot
        pkts[5].at = ms(81);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(played_seqs(&evs), (0..10).collect::<Vec<_>>());
        assert!(lost(&evs).is_empty());
        let s = jb.stats();
        assert_eq!((s.reordered, s.late, s.lost), (1, 0, 0));
    }

    #[test]
    fn missing_packet_yields_one_lost_at_its_due_time() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 300, 8000);
        pkts.remove(5);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(lost(&evs), vec![(ms(120), 8000 + 5 * 160, 160)]);
        assert_eq!(
            played_seqs(&evs),
            vec![300, 301, 302, 303, 304, 306, 307, 308, 309]
        );
        let after = evs
            .iter()
            .position(|(_, e)| matches!(e, Ev::L { .. }))
            .unwrap();
        assert_eq!(evs[after + 1], (ms(140), Ev::P { seq: 306, ts: 8960 }));
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn lost_duration_comes_from_timestamp_deltas() {
        // 10 ms packets (80 units); two consecutive ones missing.
        let t0 = Instant::now();
        let mut pkts: Vec<Pkt> = (0..12u16)
            .map(|i| pkt(10 * u64::from(i), i, 80 * u32::from(i)))
            .collect();
        pkts.retain(|p| p.seq != 6 && p.seq != 7);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        // due = arrival + 20 ms: seq 6 at 80 ms, seq 7 at 90 ms
        assert_eq!(lost(&evs), vec![(ms(80), 6 * 80, 80), (ms(90), 7 * 80, 80)]);
        assert_eq!(played_seqs(&evs).len(), 10);
    }

    #[test]
    fn late_packet_is_dropped_and_counted() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        pkts[5].at = ms(130); // due at 120, seq 6 is there at 120: concealed, then late
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(lost(&evs), vec![(ms(120), 800, 160)]);
        assert!(!played_seqs(&evs).contains(&5));
        let s = jb.stats();
        assert_eq!((s.late, s.lost, s.played, s.duplicates), (1, 1, 9, 0));
        // The late packet raised the target (30 ms late + margin) at once, but the applied
        // delay waits for an underflow or a talkspurt start.
        assert!(jb.target_delay() >= ms(40), "{:?}", jb.target_delay());
        assert_eq!(jb.current_delay(), ms(20));
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 65534, 0);
        let mut dup_buffered = pkts[3];
        dup_buffered.at = ms(65); // seq 1 (wrapped) still buffered (due at 80)
        let mut dup_played = pkts[2];
        dup_played.at = ms(100); // seq 0 played at 60
        pkts.push(dup_buffered);
        pkts.push(dup_played);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(
            played_seqs(&evs),
            (0..10u16)
                .map(|i| 65534u16.wrapping_add(i))
                .collect::<Vec<_>>()
        );
        let s = jb.stats();
        assert_eq!((s.duplicates, s.late, s.lost, s.received), (2, 0, 0, 12));
    }

    /// A stream whose packets arrive `15 ms ± 15 ms` after their nominal time.
    fn jittery(rng: &mut Rng, n: u16, seq0: u16, ts0: u32, t_ms: u64, amp: i64) -> Vec<Pkt> {
        (0..n)
            .map(|i| {
                let e = rng.range(-amp, amp);
                let at = (t_ms as i64 + 20 * i64::from(i) + amp + e) as u64;
                pkt(
                    at,
                    seq0.wrapping_add(i),
                    ts0.wrapping_add(160 * u32::from(i)),
                )
            })
            .collect()
    }

    #[test]
    fn jitter_grows_the_delay_until_nothing_is_late() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut pkts = jittery(&mut rng, 1500, 40000, 1, 0, 15);
            jittery_stream_adapts(&pkts);
            // The schedule is anchored on the first packet; when that one came through
            // fastest, everything else is up to 30 ms behind it and the delay must grow.
            pkts[0].at = ms(0);
            let d = jittery_stream_adapts(&pkts);
            assert!(d >= ms(30), "seed {seed}: delay {d:?}");
        }
    }

    /// Plays a ±15 ms jittery stream; returns the final delay.
    fn jittery_stream_adapts(pkts: &[Pkt]) -> Duration {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut at_500 = None;
        let (mut j_sum, mut j_n) = (0.0, 0.0);
        let evs = run_with(&mut jb, t0, pkts, |pushed, jb| {
            assert!(jb.current_delay() <= ms(60));
            j_sum += jb.stats().jitter_ms;
            j_n += 1.0;
            if pushed == 500 && at_500.is_none() {
                at_500 = Some(jb.stats());
            }
        });
        let at_500 = at_500.unwrap();
        let s = jb.stats();
        // In order, each at most once.
        let seqs = played_seqs(&evs);
        assert!(seqs
            .windows(2)
            .all(|w| (w[1].wrapping_sub(w[0]) as i16) > 0));
        // After adaptation: nothing late, nothing concealed.
        assert_eq!(s.late, at_500.late, "late packets after adaptation");
        let ts_500 = 1 + 500 * 160;
        assert!(
            lost(&evs).iter().all(|(_, ts, _)| *ts < ts_500),
            "{:?}",
            lost(&evs)
        );
        assert_eq!(s.played + s.late, 1500);
        let d = jb.current_delay();
        assert!(d <= ms(60), "delay {d:?}");
        // RFC 3550 J of uniform ±15 ms arrival noise is E|e1 - e2| = 10 ms (on average: J
        // itself is a 16-packet moving estimate and fluctuates).
        let j_mean = j_sum / j_n;
        assert!(j_mean > 9.0 && j_mean < 11.5, "mean J = {j_mean} ms");
        d
    }

    #[test]
    fn delay_never_exceeds_max_and_respects_min() {
        let t0 = Instant::now();
        let mut rng = Rng(42);
        let pkts = jittery(&mut rng, 500, 0, 0, 0, 200);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut peak = Duration::ZERO;
        run_with(&mut jb, t0, &pkts, |_, jb| {
            assert!(jb.current_delay() <= ms(60));
            assert!(jb.target_delay() <= ms(60));
            peak = peak.max(jb.current_delay());
        });
        assert_eq!(peak, ms(60), "wild jitter drives the delay to the maximum");

        let cfg = JitterConfig {
            min_delay: ms(40),
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        let evs = run(&mut jb, t0, &stream(5, 0, 0));
        assert_eq!(evs[0].0, ms(40), "initial delay is clamped up to min_delay");
        assert_eq!(jb.target_delay(), ms(40));
    }

    #[test]
    fn ssrc_change_resyncs_without_lost_storm() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 100, 0);
        for i in 0..10u16 {
            let mut p = pkt(
                210 + 20 * u64::from(i),
                9000 + i,
                777_777 + 160 * u32::from(i),
            );
            p.ssrc = 0xBEEF;
            pkts.push(p);
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert!(lost(&evs).is_empty());
        assert_eq!(evs.len(), 20);
        // The target drifted a little below 20 ms on the clean first stream.
        let d = jb.current_delay();
        assert!(d > ms(19) && d <= ms(20), "{d:?}");
        for (i, (t, e)) in evs[10..].iter().enumerate() {
            assert_eq!(
                *e,
                Ev::P {
                    seq: 9000 + i as u16,
                    ts: 777_777 + 160 * i as u32
                }
            );
            assert_eq!(
                *t,
                ms(210 + 20 * i as u64) + d,
                "new source plays at arrival + delay"
            );
        }
        let s = jb.stats();
        assert_eq!((s.resyncs, s.flushed, s.late), (1, 0, 0));
    }

    #[test]
    fn ssrc_change_flushes_old_tail() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(t0, 1, 0, 1, false, &[1]);
        jb.push(t0 + ms(5), 2, 160, 1, false, &[2]);
        jb.push(t0 + ms(10), 50, 99, 2, false, &[3]);
        assert_eq!(jb.buffered(), 1);
        let s = jb.stats();
        assert_eq!((s.flushed, s.resyncs), (2, 1));
        assert_eq!(jb.poll_timeout(), Some(t0 + ms(30)));
        assert!(matches!(
            jb.pop(t0 + ms(30)),
            Some(JbOut::Packet {
                seq: 50,
                ts: 99,
                ..
            })
        ));
    }

    #[test]
    fn sequence_wrap_with_reordering() {
        let t0 = Instant::now();
        let mut pkts = stream(20, 65530, 0);
        pkts[5].at = ms(105); // seq 65535 after seq 0
        pkts[6].at = ms(101);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        let want: Vec<u16> = (0..20u16).map(|i| 65530u16.wrapping_add(i)).collect();
        assert_eq!(played_seqs(&evs), want);
        let s = jb.stats();
        assert_eq!((s.lost, s.late, s.resyncs, s.reordered), (0, 0, 0, 1));
    }

    #[test]
    fn timestamp_wrap_keeps_the_schedule() {
        let t0 = Instant::now();
        let ts0 = u32::MAX - 3 * 160 + 1;
        let mut pkts = stream(20, 7, ts0);
        pkts.remove(4); // a loss right across the wrap
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        for (t, e) in &evs {
            let (Ev::P { ts, .. } | Ev::L { ts, .. }) = *e;
            let n = ts.wrapping_sub(ts0) / 160;
            assert_eq!(*t, ms(20 * u64::from(n) + 20), "{e:?}");
        }
        assert_eq!(lost(&evs), vec![(ms(100), ts0.wrapping_add(640), 160)]);
        assert_eq!(jb.stats().resyncs, 0);
        assert_eq!(evs.len(), 20);
    }

    #[test]
    fn timestamp_jump_resyncs() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        for i in 10..20u16 {
            // Same cadence, timestamps suddenly 5 s ahead (and then back, 5 s behind).
            pkts.push(pkt(20 * u64::from(i), i, 40_000 + 160 * u32::from(i)));
        }
        for i in 20..30u16 {
            pkts.push(pkt(20 * u64::from(i), i, 160 * u32::from(i)));
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(played_seqs(&evs), (0..30).collect::<Vec<_>>());
        assert!(lost(&evs).is_empty());
        for (n, (t, _)) in evs.iter().enumerate() {
            assert_eq!(*t, ms(20 * n as u64 + 20));
        }
        assert_eq!(jb.stats().resyncs, 2);
    }

    #[test]
    fn long_silence_without_marker_resyncs_on_empty_buffer() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        // 3 s of silence suppression, sequence numbers continue, no marker bit, and the
        // packets now arrive 12 ms later relative to their timestamps.
        for i in 10..15u16 {
            let at = 3000 + 12 + 20 * u64::from(i);
            pkts.push(pkt(at, i, 24_000 + 160 * u32::from(i)));
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(played_seqs(&evs), (0..15).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!((s.resyncs, s.flushed, s.late, s.lost), (1, 0, 0, 0));
        let d = jb.current_delay();
        assert_eq!(evs[10].0, ms(3212) + d);
        assert_eq!(
            evs[10].1,
            Ev::P {
                seq: 10,
                ts: 24_000 + 1600
            }
        );
    }

    #[test]
    fn marker_on_empty_buffer_reanchors_the_talkspurt() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        // 400 ms of silence (timestamps advance), then the path got 35 ms slower.
        for i in 10..20u16 {
            let mut p = pkt(400 + 35 + 20 * u64::from(i), i, 3200 + 160 * u32::from(i));
            p.marker = i == 10;
            pkts.push(p);
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(played_seqs(&evs), (0..20).collect::<Vec<_>>());
        let s = jb.stats();
        assert_eq!((s.talkspurts, s.resyncs, s.late, s.lost), (1, 0, 0, 0));
        let d = jb.current_delay();
        assert!(d > ms(10) && d <= ms(20), "{d:?}");
        for (i, (t, _)) in evs[10..].iter().enumerate() {
            assert_eq!(
                *t,
                ms(635 + 20 * i as u64) + d,
                "plays at its arrival + delay"
            );
        }
    }

    #[test]
    fn marker_with_buffered_audio_does_not_reanchor() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        pkts[5].marker = true; // arrives at 95 while seq 4 (due 100) is still buffered
        pkts[5].at = ms(95);
        pkts[4].at = ms(90);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        assert_eq!(jb.stats().talkspurts, 0);
        assert_eq!(evs[5], (ms(120), Ev::P { seq: 5, ts: 800 }));
    }

    #[test]
    fn delay_shrinks_slowly_after_jitter_calms_down() {
        let t0 = Instant::now();
        let mut rng = Rng(7);
        let mut pkts = Vec::new();
        let mut t_ms = 0u64;
        let mut seq = 0u16;
        let mut ts = 0u32;
        for spurt in 0..40 {
            let amp = if spurt < 10 { 15 } else { 0 };
            let mut s = jittery(&mut rng, 50, seq, ts, t_ms, amp);
            s[0].marker = true;
            pkts.extend(s);
            // 50 packets, then 300 ms of silence
            t_ms += 50 * 20 + 300;
            ts = ts.wrapping_add(50 * 160 + 300 * MS);
            seq = seq.wrapping_add(50);
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut at_starts = Vec::new();
        let mut late_calm = None;
        run_with(&mut jb, t0, &pkts, |pushed, jb| {
            if pushed > 0 && (pushed - 1) % 50 == 0 && at_starts.len() * 50 < pushed {
                at_starts.push(jb.current_delay());
            }
            if pushed == 11 * 50 && late_calm.is_none() {
                late_calm = Some(jb.stats().late);
            }
        });
        assert_eq!(at_starts.len(), 40);
        let peak = *at_starts[..10].iter().max().unwrap();
        assert!(peak >= ms(30), "jitter raised the delay: {at_starts:?}");
        let calm = &at_starts[10..];
        // Slowly: no big step from one talkspurt to the next...
        assert!(
            calm.windows(2).all(|w| w[1] + ms(6) >= w[0]),
            "{at_starts:?}"
        );
        assert!(calm[1] >= ms(25), "{at_starts:?}");
        // ...but eventually down to about half a frame.
        assert!(*calm.last().unwrap() <= ms(12), "{at_starts:?}");
        assert!(calm.last().unwrap() < &peak);
        assert_eq!(
            jb.stats().late,
            late_calm.unwrap(),
            "nothing late while shrinking"
        );
        // A jittery talkspurt whose marker packet is overtaken by the next one starts on the
        // old anchor (the buffer is not empty when the marker arrives); calm ones all re-anchor.
        assert!(jb.stats().talkspurts >= 35, "{:?}", jb.stats());
    }

    #[test]
    fn far_sequence_jump_needs_confirmation() {
        let t0 = Instant::now();
        let mut pkts = stream(10, 0, 0);
        pkts.push(pkt(95, 20_000, 880)); // one stray packet: ignored
        for i in 0..5u16 {
            // a restarted sender: confirmed by its second packet
            pkts.push(pkt(
                200 + 20 * u64::from(i),
                30_000 + i,
                1600 + 160 * u32::from(i),
            ));
        }
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let evs = run(&mut jb, t0, &pkts);
        let seqs = played_seqs(&evs);
        assert_eq!(&seqs[..10], &(0..10).collect::<Vec<_>>()[..]);
        assert_eq!(&seqs[10..], &[30_001, 30_002, 30_003, 30_004]);
        let s = jb.stats();
        assert_eq!((s.discarded, s.resyncs, s.lost), (2, 1, 0));
    }

    #[test]
    fn oversized_payload_is_discarded() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        jb.push(t0, 1, 0, 1, false, &[0u8; MAX_PAYLOAD + 1]);
        jb.push(t0, 2, 160, 1, false, &[0u8; MAX_PAYLOAD]);
        assert_eq!(jb.stats().discarded, 1);
        assert_eq!(jb.buffered(), 1);
        assert!(
            matches!(jb.pop(t0 + ms(20)), Some(JbOut::Packet { seq: 2, payload, .. }) if payload.len() == MAX_PAYLOAD)
        );
    }

    #[test]
    fn reset_forgets_everything() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut rng = Rng(3);
        run(&mut jb, t0, &jittery(&mut rng, 100, 0, 0, 0, 15));
        jb.push(t0 + ms(5000), 77, 1, 1, false, &[1]);
        jb.reset();
        assert_eq!(jb.stats(), JitterStats::default());
        assert_eq!(jb.poll_timeout(), None);
        assert_eq!(jb.buffered(), 0);
        assert_eq!(jb.current_delay(), ms(20));
        let t1 = t0 + ms(10_000);
        jb.push(t1, 5, 5, 9, false, &[9]);
        assert_eq!(jb.poll_timeout(), Some(t1 + ms(20)));
    }

    fn check_invariants(jb: &JitterBuffer) {
        let s = jb.stats();
        assert!(jb.buffered() <= RING_SLOTS);
        assert_eq!(
            s.received,
            s.played + s.late + s.duplicates + s.flushed + s.discarded + jb.buffered() as u64,
            "{s:?}"
        );
        assert!(jb.current_delay() <= ms(60));
        assert!(jb.target_delay() <= ms(60));
    }

    #[test]
    fn random_input_never_panics() {
        let t0 = Instant::now();
        let mut rng = Rng(0xDEAD_BEEF);
        for clock_rate in [0u32, 1, 8000, 48000, u32::MAX] {
            let cfg = JitterConfig {
                clock_rate,
                ..JitterConfig::default()
            };
            let mut jb = JitterBuffer::new(cfg);
            let buf = [0x5Au8; 1600];
            let mut now = t0;
            for _ in 0..20_000 {
                match rng.range(0, 9) {
                    0 => now += ms(rng.range(0, 3000) as u64),
                    1 => now = t0 + ms(rng.range(0, 100) as u64), // clock going backwards
                    2..=5 => now += ms(rng.range(0, 30) as u64),
                    _ => {}
                }
                let seq = rng.next() as u16;
                let ts = rng.next() as u32;
                let ssrc = rng.range(0, 2) as u32;
                let len = rng.range(0, 1600) as usize;
                jb.push(now, seq, ts, ssrc, rng.range(0, 1) == 1, &buf[..len]);
                while let Some(o) = jb.pop(now) {
                    if let JbOut::Packet { payload, .. } = o {
                        assert!(payload.len() <= MAX_PAYLOAD);
                    }
                }
                let _ = jb.poll_timeout();
                check_invariants(&jb);
                if rng.range(0, 5000) == 0 {
                    jb.reset();
                }
            }
        }
    }

    #[test]
    fn perturbed_stream_stays_ordered() {
        // Mostly a real stream: losses, duplicates, reordering, marker bits, timestamp and
        // sequence jumps and SSRC flips; played packets stay in order between resyncs.
        let t0 = Instant::now();
        let mut rng = Rng(0x1234_5678);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let (mut seq, mut ts, mut ssrc) = (65000u16, u32::MAX - 100_000, 1u32);
        let mut t = t0;
        let mut held: Option<(u16, u32)> = None;
        let mut last_played: Option<(u64, u16)> = None;
        for _ in 0..50_000 {
            t += ms(rng.range(5, 35) as u64);
            match rng.range(0, 199) {
                0 => ts = ts.wrapping_add(rng.next() as u32),
                1 => seq = seq.wrapping_add(rng.range(64, 40_000) as u16),
                2 => ssrc ^= 1,
                _ => {}
            }
            let marker = rng.range(0, 30) == 0;
            let r = rng.range(0, 99);
            if r < 8 {
                // lost
            } else if r < 14 {
                held = Some((seq, ts)); // delivered after the next one
            } else {
                jb.push(t, seq, ts, ssrc, marker, &seq.to_be_bytes());
                if r < 18 {
                    jb.push(t, seq, ts, ssrc, false, &seq.to_be_bytes());
                }
                if let Some((s, x)) = held.take() {
                    jb.push(t, s, x, ssrc, false, &s.to_be_bytes());
                }
            }
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            while let Some(o) = jb.pop(t) {
                if let JbOut::Packet {
                    seq: s, payload, ..
                } = o
                {
                    assert_eq!(payload, s.to_be_bytes());
                    let epoch = jb.stats().resyncs;
                    if let Some((e, prev)) = last_played {
                        if e == epoch {
                            assert!((s.wrapping_sub(prev) as i16) > 0, "{prev} then {s}");
                        }
                    }
                    last_played = Some((epoch, s));
                }
            }
            check_invariants(&jb);
        }
        let s = jb.stats();
        assert!(
            s.played > 40_000 && s.lost > 1000 && s.duplicates > 1000,
            "{s:?}"
        );
    }
}
