//! Relay: a packet of one party copied to the other with its header rewritten; and
//! telephone-events passed through into a mixed output.

use std::time::Instant;

use super::leg::LastTx;
use super::tx_queue::{new_rewriter, write_packet};
use super::CallMixer;
use crate::rtp::{Rewrite, RtpHeader, StreamRewriter};

impl CallMixer {
    /// Relay a packet of leg `src` to leg `dst`: header rewritten, payload untouched.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn relay(
        &mut self,
        now: Instant,
        src: usize,
        dst: usize,
        h: &RtpHeader,
        packet: &[u8],
        is_audio: bool,
        is_dtmf: bool,
    ) {
        let out_pt = if is_audio {
            Some(self.legs[dst].params.payload_type)
        } else if is_dtmf {
            match self.legs[dst].params.dtmf_payload_type {
                Some(pt) => Some(pt),
                // The other side did not negotiate telephone-event: nothing to send it as.
                None => {
                    self.legs[src].stats.rx_discarded += 1;
                    return;
                }
            }
        } else {
            None
        };
        let d = &mut self.legs[dst];
        let rw = d
            .rewriter
            .get_or_insert_with(|| StreamRewriter::new(h.ssrc, h.seq, h.timestamp));
        let buf = self.tx.reserve(d.id);
        buf.extend_from_slice(packet);
        if let (Some(pt), Some(b1)) = (out_pt, buf.get_mut(1)) {
            *b1 = (*b1 & 0x80) | (pt & 0x7F);
        }
        match rw.rewrite_in_place(buf, d.rtp_clock) {
            Ok(Rewrite::Forward { .. }) => {
                self.tx.commit();
                d.stats.tx_relayed += 1;
                d.last_tx = Some(LastTx {
                    at: now,
                    generated: false,
                });
                d.force_marker = false;
                self.counters.relayed_packets += 1;
            }
            Ok(Rewrite::Drop) | Err(_) => {
                self.legs[src].stats.rx_discarded += 1;
            }
        }
    }

    /// A telephone-event packet of the source of `dst` while `dst`'s output is mixed: passed
    /// on as it is (payload untouched), numbered within the generated stream. All packets of
    /// one event keep one output timestamp (RFC 4733 §2.5.1.2).
    pub(super) fn pass_dtmf(&mut self, now: Instant, dst: usize, h: &RtpHeader, packet: &[u8]) {
        let seed = self.next_random();
        let d = &mut self.legs[dst];
        let Some(pt) = d.params.dtmf_payload_type else {
            return;
        };
        let rw = d.rewriter.get_or_insert_with(|| new_rewriter(seed));
        // A zero-length step: the event occupies no audio time of its own; the next audio
        // frame continues at the timestamp the event got.
        let (seq, next_ts) = rw.next_generated(0);
        let ts = match d.dtmf_map {
            Some((in_ts, out_ts)) if in_ts == h.timestamp => out_ts,
            _ => {
                d.dtmf_map = Some((h.timestamp, next_ts));
                next_ts
            }
        };
        let ssrc = rw.ssrc();
        let buf = self.tx.reserve(d.id);
        write_packet(buf, h.marker, pt, seq, ts, ssrc, h.payload(packet));
        self.tx.commit();
        d.stats.tx_dtmf_passed += 1;
        d.last_tx = Some(LastTx {
            at: now,
            generated: true,
        });
    }
}
