//! RFC 3550 receiver statistics of an incoming RTP stream (expected, lost, jitter).

use std::time::Instant;

use super::seq::{MAX_DROPOUT, MAX_MISORDER};

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
