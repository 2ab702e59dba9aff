//! Mixing: decoding a clocking packet, the packet-clocked and supervisor mixes, and encoding
//! a mixed frame into the output stream.

use std::time::Instant;

use super::leg::{LastTx, Route};
use super::limits::{MAX_PACKET_MS, MAX_PCM};
use super::tx_queue::{new_rewriter, write_packet};
use super::CallMixer;
use crate::codec::CodecKind;
use crate::rtp::RtpHeader;

/// On a packet-clocked path a sequence gap up to this many packets is concealed (`crate::plc`,
/// or Opus' own PLC/FEC) and sent on as that many frames; a larger jump is a restart, not loss
/// (and concealment is muted after 60 ms anyway).
pub(super) const MAX_GAP_CONCEALED: i32 = 5;

/// Signed distance from sequence number `b` to `a`, modulo 2^16.
pub(super) fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// `s` with `gain` (Q16) applied, saturated to the i32 accumulator's useful range.
pub(super) fn apply_gain(s: i16, gain_q16: i64) -> i32 {
    ((i64::from(s) * gain_q16) >> 16).clamp(-(1 << 20), 1 << 20) as i32
}

impl CallMixer {
    /// Where an audio packet of `src` stands on the packet-clocked path: `None` if it is not to
    /// be mixed (late or duplicate: its place in the output has passed), else the number of
    /// packets of `src` lost just before it and its length in samples (the length each of them
    /// is concealed with). Nothing is concealed when the mixer's clock produced the frames
    /// meanwhile (`clocked_meanwhile`: the input was quiet for more than 3 ptime).
    pub(super) fn direct_gap(
        &mut self,
        src: usize,
        h: &RtpHeader,
        packet: &[u8],
        clocked_meanwhile: bool,
    ) -> Option<(usize, usize)> {
        let s = &mut self.legs[src];
        let mut missing = 0usize;
        if let Some(last) = s.last_direct_seq {
            let d = seq_diff(h.seq, last);
            if d <= 0 && d > -100 {
                // Late or duplicate: no buffering here.
                s.stats.rx_discarded += 1;
                return None;
            }
            if (2..=MAX_GAP_CONCEALED + 1).contains(&d) && !clocked_meanwhile {
                missing = (d - 1) as usize;
            }
        }
        let max = (s.rate * MAX_PACKET_MS / 1000) as usize;
        let len = s
            .dec_direct
            .as_ref()
            .and_then(|dec| dec.samples_in(h.payload(packet)))
            .filter(|&n| n > 0 && n <= max);
        match len {
            Some(n) => Some((missing, n)),
            // Not concealed: the packet's own length is unknown (its decoding will fail or be
            // discarded too).
            None => Some((0, 0)),
        }
    }

    /// Conceal one lost packet of `src` (`len` samples) into `s_pcm`, for the packet-clocked
    /// mixes; `next` is the payload that arrived after the gap (Opus' in-band FEC), given for
    /// the last lost packet only.
    pub(super) fn conceal_direct(&mut self, src: usize, len: usize, next: Option<&[u8]>) {
        let s = &mut self.legs[src];
        self.scratch.pcm.clear();
        self.scratch.pcm.resize(len.min(MAX_PCM), 0);
        let Some(dec) = s.dec_direct.as_mut() else {
            return;
        };
        match next {
            Some(p) => dec.conceal_before(p, &mut self.scratch.pcm),
            None => dec.conceal(&mut self.scratch.pcm),
        };
        s.stats.concealed += 1;
        if !s.jb_active {
            s.meter.feed(&self.scratch.pcm, s.rate);
        }
    }

    /// Decode an audio packet of `src` on the packet-clocked path into `s_pcm` (native rate);
    /// `false` if it is not to be mixed (undecodable, implausibly long).
    pub(super) fn decode_direct(&mut self, src: usize, h: &RtpHeader, packet: &[u8]) -> bool {
        let max_samples = |rate: u32| (rate * MAX_PACKET_MS / 1000) as usize;
        let s = &mut self.legs[src];
        let Some(dec) = s.dec_direct.as_mut() else {
            // Not reached: `replan` gives the source of every mixed output its decoder.
            s.stats.rx_discarded += 1;
            return false;
        };
        self.scratch.pcm.clear();
        let bound = dec.max_samples(h.payload(packet)).min(MAX_PCM);
        self.scratch.pcm.resize(bound, 0);
        let n = match dec.decode(h.payload(packet), &mut self.scratch.pcm) {
            Ok(n) => n,
            Err(_) => {
                s.stats.decode_errors += 1;
                return false;
            }
        };
        if n == 0 || n > max_samples(s.rate) {
            // Longer than any sane packet time: not sent on (it would stall the mix).
            s.stats.rx_discarded += 1;
            return false;
        }
        s.last_direct_seq = Some(h.seq);
        self.scratch.pcm.truncate(n);
        if !s.jb_active {
            // Metered here only without a jitter buffer: with one, its tick frames feed the
            // meter (the same audio; fed twice it would fill the window twice as fast).
            s.meter.feed(&self.scratch.pcm, s.rate);
        }
        true
    }

    /// Packet-clocked mix: the audio of `src` in `s_pcm` (a decoded or concealed packet) makes
    /// one frame for `dst`.
    pub(super) fn direct_mix(&mut self, now: Instant, src: usize, dst: usize) {
        let s = &mut self.legs[src];
        self.scratch.rs.clear();
        match s.direct_conv.as_mut() {
            Some(c) => c.run(&self.scratch.pcm, &mut self.scratch.rs),
            None => self.scratch.rs.extend_from_slice(&self.scratch.pcm),
        }
        let len = self.scratch.rs.len();
        let to_agent = Some(dst) == self.agent;

        self.scratch.acc.clear();
        self.scratch
            .acc
            .extend(self.scratch.rs.iter().map(|&x| i32::from(x)));
        self.add_sides(to_agent, len);
        self.emit(now, dst);
    }

    /// The customer's audio in `s_pcm` (a decoded or concealed packet) makes one frame for
    /// every supervisor: the customer as received, plus the same span of the supervisor's
    /// FIFO (agent and the supervisors the agent hears).
    pub(super) fn supervisor_mix(&mut self, now: Instant) {
        for s in 0..self.legs.len() {
            let l = &mut self.legs[s];
            if l.route != Route::Clocked {
                continue;
            }
            let Some(conv) = l.cust_conv.as_mut() else {
                // Not reached: `replan` gives every supervisor output a converter while
                // there is a customer.
                continue;
            };
            self.scratch.rs.clear();
            conv.run(&self.scratch.pcm, &mut self.scratch.rs);
            let len = self.scratch.rs.len();
            self.scratch.acc.clear();
            self.scratch
                .acc
                .extend(self.scratch.rs.iter().map(|&x| i32::from(x)));
            let k = len.min(l.others.len());
            for (a, &x) in self.scratch.acc.iter_mut().zip(&l.others[..k]) {
                *a += x;
            }
            l.others.drain(..k);
            self.emit(now, s);
        }
    }

    /// Add `len` samples of every contributing supervisor's FIFO (agent's or customer's mix)
    /// into the accumulator.
    pub(super) fn add_sides(&mut self, to_agent: bool, len: usize) {
        let gain = if to_agent { self.gain_q16 } else { 1 << 16 };
        let acc = &mut self.scratch.acc;
        for l in &mut self.legs {
            let (on, side) = if to_agent {
                (l.to_agent, &mut l.side_agent)
            } else {
                (l.to_customer, &mut l.side_customer)
            };
            if !on {
                continue;
            }
            let k = len.min(side.len());
            if gain == 1 << 16 {
                for (a, &x) in acc.iter_mut().zip(side.iter().take(k)) {
                    *a += i32::from(x);
                }
            } else {
                for (a, &x) in acc.iter_mut().zip(side.iter().take(k)) {
                    *a += apply_gain(x, gain);
                }
            }
            side.drain(..k);
        }
    }

    /// Encode the accumulator (at `dst`'s mix rate) and queue it as the next generated packet
    /// of `dst`.
    pub(super) fn emit(&mut self, now: Instant, dst: usize) {
        let seed = self.next_random();
        let silence_gap = self.cfg.ptime * 3;
        if let Some(t) = self.legs[dst].tone.as_mut() {
            t.add_to(&mut self.scratch.acc);
            if t.done() {
                self.legs[dst].tone = None;
                self.tone_ended = true;
            }
        }
        self.scratch.mix.clear();
        self.scratch.mix.extend(
            self.scratch
                .acc
                .iter()
                .map(|&x| x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16),
        );
        let d = &mut self.legs[dst];
        self.scratch.out.clear();
        match d.out_conv.as_mut() {
            Some(c) => c.run(&self.scratch.mix, &mut self.scratch.out),
            None => self.scratch.out.extend_from_slice(&self.scratch.mix),
        }
        let mut marker = d.force_marker
            || match d.last_tx {
                None => true,
                Some(l) => !l.generated || now.saturating_duration_since(l.at) > silence_gap,
            };
        // One packet per frame the codec can encode: a span Opus has no frame size for (a
        // 30 ms PCMU packet clocking an Opus leg) goes out as several packets.
        let total = self.scratch.out.len();
        let mut off = 0;
        while off < total {
            let len = encodable_len(d.params.codec, total - off);
            if len == 0 {
                // An Opus remainder below 2.5 ms (odd-sized input): dropped.
                break;
            }
            let pcm = self.scratch.out.get(off..off + len).unwrap_or(&[]);
            off += len;
            // `replan` gives every mixed output its encoder: `None` is not reached.
            let encoded = d
                .encoder
                .as_mut()
                .map(|enc| enc.encode(pcm, &mut self.scratch.enc));
            let Some(Ok(n)) = encoded else {
                d.stats.encode_errors += 1;
                return;
            };
            let step = (len as u64 * u64::from(d.rtp_clock) / u64::from(d.rate)) as u32;
            let rw = d.rewriter.get_or_insert_with(|| new_rewriter(seed));
            let (seq, ts) = rw.next_generated(step);
            let ssrc = rw.ssrc();
            let buf = self.tx.reserve(d.id);
            write_packet(
                buf,
                marker,
                d.params.payload_type,
                seq,
                ts,
                ssrc,
                self.scratch.enc.get(..n).unwrap_or(&[]),
            );
            self.tx.commit();
            marker = false;
            d.force_marker = false;
            d.last_tx = Some(LastTx {
                at: now,
                generated: true,
            });
            d.stats.tx_mixed += 1;
            self.counters.mixed_frames += 1;
        }
    }
}

/// The longest prefix of `n` samples (at the codec's rate) that `kind` encodes as one frame.
/// Opus takes 2.5, 5, 10, 20, 40 or 60 ms only (RFC 6716 §2.1.4); the others take any length.
pub(super) fn encodable_len(kind: CodecKind, n: usize) -> usize {
    match kind {
        CodecKind::Opus => [2880, 1920, 960, 480, 240, 120]
            .into_iter()
            .find(|&f| f <= n)
            .unwrap_or(0),
        _ => n,
    }
}
