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
mod tests;
