//! The output stream rewriter: one continuous RTP stream per output leg whatever its input does.

use super::header::write_header;
use super::header::RtpHeader;
use super::seq::{seq_diff, MAX_DROPOUT, MAX_MISORDER};
use crate::MediaError;

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
