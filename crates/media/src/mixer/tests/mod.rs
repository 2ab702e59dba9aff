//! "Who hears whom" tests in virtual time: every leg sends a tone of its own frequency, and
//! each output is checked for exactly the tones of its docs/design.md §3 row.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::f64::consts::PI;

use std::time::{Duration, Instant};

use super::tx_queue::{write_packet, TxQueue, TX_SLOTS, TX_SLOTS_RELAY};
use super::*;
use crate::codec::{CodecKind, Decoder, Encoder};

mod clocking;
mod level;
mod memory;
mod rows;
mod tones;

const CUST: LegId = 1;
const AGENT: LegId = 2;
const SUP_A: LegId = 3;
const SUP_B: LegId = 4;

const F_CUST: f64 = 440.0;
const F_AGENT: f64 = 1000.0;
const F_A: f64 = 2000.0;
const F_B: f64 = 2600.0;
const ALL: [f64; 4] = [F_CUST, F_AGENT, F_A, F_B];

/// Tone amplitude: -20 dBFS.
const AMP: f64 = 3276.8;
const LEVEL_DB: f64 = -20.0;
const DTMF_PT: u8 = 101;

/// Level of the sine at `freq` in `x`, dBFS (Hann-windowed Goertzel).
fn level_dbfs(x: &[i16], freq: f64, rate: u32) -> f64 {
    let n = x.len();
    let w = 2.0 * PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in x.iter().enumerate() {
        let win = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
        wsum += win;
        let s0 = f64::from(v) * win + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    let amp = 2.0 * power.sqrt() / wsum;
    20.0 * (amp / 32768.0 + 1e-12).log10()
}

fn params(role: LegRole, codec: CodecKind) -> LegParams {
    let payload_type = match codec {
        CodecKind::Pcmu => 0,
        CodecKind::Pcma => 8,
        CodecKind::G722 => 9,
        CodecKind::Opus => 111,
    };
    LegParams {
        role,
        payload_type,
        codec,
        dtmf_payload_type: Some(DTMF_PT),
        ptime_ms: 20,
    }
}

/// A phone sending a tone in 20 ms packets.
struct Sender {
    codec: CodecKind,
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    n: u64,
    freq: f64,
    enc: Encoder,
    /// Offset of its packets within the 20 ms grid.
    phase_ms: u64,
    on: bool,
    first: bool,
}

impl Sender {
    fn new(codec: CodecKind, pt: u8, ssrc: u32, freq: f64, phase_ms: u64) -> Self {
        Self {
            codec,
            pt,
            ssrc,
            seq: (ssrc as u16).wrapping_mul(7),
            ts: ssrc.wrapping_mul(1000),
            n: 0,
            freq,
            enc: Encoder::new(codec).unwrap(),
            phase_ms,
            on: true,
            first: true,
        }
    }

    fn packet(&mut self) -> Vec<u8> {
        let rate = self.codec.sample_rate();
        let len = rate as usize / 50;
        let pcm: Vec<i16> = (0..len as u64)
            .map(|i| {
                let t = (self.n + i) as f64 / f64::from(rate);
                (AMP * (2.0 * PI * self.freq * t).sin()).round() as i16
            })
            .collect();
        self.n += len as u64;
        let mut payload = vec![0u8; 2000];
        let k = self.enc.encode(&pcm, &mut payload).unwrap();
        let mut p = Vec::new();
        write_packet(
            &mut p,
            self.first,
            self.pt,
            self.seq,
            self.ts,
            self.ssrc,
            &payload[..k],
        );
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.codec.rtp_clock_rate() / 50);
        p
    }

    /// RFC 4733 packets of one event (digit code), as a phone sends them: start, updates,
    /// three end packets; one timestamp, consecutive sequence numbers.
    fn dtmf_packets(&mut self, event: u8) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let ts = self.ts;
        for (i, dur) in [160u16, 320, 480, 640, 640, 640].into_iter().enumerate() {
            let end = i >= 3;
            let payload = [
                event,
                if end { 0x80 | 10 } else { 10 },
                (dur >> 8) as u8,
                dur as u8,
            ];
            let mut p = Vec::new();
            write_packet(&mut p, i == 0, DTMF_PT, self.seq, ts, self.ssrc, &payload);
            self.seq = self.seq.wrapping_add(1);
            out.push(p);
        }
        self.ts = self.ts.wrapping_add(640);
        out
    }
}

/// A sent packet as seen by the test.
#[derive(Clone, Debug)]
struct Sent {
    ms: u64,
    pkt: Vec<u8>,
}

struct Sim {
    t0: Instant,
    ms: u64,
    mixer: CallMixer,
    senders: BTreeMap<LegId, Sender>,
    inputs: BTreeMap<LegId, Vec<Sent>>,
    outputs: BTreeMap<LegId, Vec<Sent>>,
    codecs: BTreeMap<LegId, CodecKind>,
}

impl Sim {
    fn new(cfg: MixerConfig) -> Self {
        Self {
            t0: Instant::now(),
            ms: 0,
            mixer: CallMixer::new(cfg, 0x5EED),
            senders: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            codecs: BTreeMap::new(),
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.ms)
    }

    fn add(&mut self, id: LegId, role: LegRole, codec: CodecKind, freq: f64, phase_ms: u64) {
        let p = params(role, codec);
        let now = self.now();
        self.mixer.add_leg(now, id, p.clone()).unwrap();
        self.senders.insert(
            id,
            Sender::new(codec, p.payload_type, 0x1000 * id + 17, freq, phase_ms),
        );
        self.codecs.insert(id, codec);
    }

    /// The usual call: customer 440 Hz, agent 1000 Hz, all `codec`.
    fn call(codec: CodecKind) -> Self {
        let mut s = Sim::new(MixerConfig::default());
        s.add(CUST, LegRole::Customer, codec, F_CUST, 0);
        s.add(AGENT, LegRole::Agent, codec, F_AGENT, 7);
        s
    }

    fn inject(&mut self, id: LegId, pkt: Vec<u8>) {
        let now = self.now();
        self.mixer.handle_rtp(now, id, &pkt);
        self.inputs
            .entry(id)
            .or_default()
            .push(Sent { ms: self.ms, pkt });
        self.drain();
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        while let Some((leg, n)) = self.mixer.poll_transmit(&mut buf) {
            self.outputs.entry(leg).or_default().push(Sent {
                ms: self.ms,
                pkt: buf[..n].to_vec(),
            });
        }
    }

    fn run_until(&mut self, end_ms: u64) {
        while self.ms < end_ms {
            self.ms += 1;
            let ids: Vec<LegId> = self.senders.keys().copied().collect();
            for id in ids {
                let s = self.senders.get_mut(&id).unwrap();
                if s.on && self.ms % 20 == s.phase_ms {
                    let p = s.packet();
                    self.inject(id, p);
                }
            }
            let now = self.now();
            while self.mixer.poll_timeout().is_some_and(|t| t <= now) {
                self.mixer.handle_timeout(now);
                self.drain();
            }
            self.drain();
        }
    }

    /// Decoded audio sent to `leg` from `from_ms` on (audio payload type only).
    fn heard(&self, leg: LegId, from_ms: u64) -> (Vec<i16>, u32) {
        let codec = self.codecs[&leg];
        let pt = params(LegRole::Customer, codec).payload_type;
        let mut dec = Decoder::new(codec).unwrap();
        let mut pcm = Vec::new();
        let mut buf = vec![0i16; 8000];
        for s in self.outputs.get(&leg).map(Vec::as_slice).unwrap_or(&[]) {
            let h = RtpHeader::parse(&s.pkt).unwrap();
            if h.payload_type != pt {
                continue;
            }
            let n = dec.decode(h.payload(&s.pkt), &mut buf).unwrap();
            if s.ms >= from_ms {
                pcm.extend_from_slice(&buf[..n]);
            }
        }
        (pcm, codec.sample_rate())
    }

    /// Assert that `leg` hears exactly the tones in `wanted` (at the sent level ± 2 dB) and
    /// none of the others (below -60 dBFS), over (up to) one second from `from_ms`.
    fn assert_hears(&self, leg: LegId, from_ms: u64, wanted: &[f64]) {
        let (pcm, rate) = self.heard(leg, from_ms);
        let n = (rate as usize).min(pcm.len());
        assert!(
            n >= rate as usize / 2,
            "leg {leg}: only {} samples",
            pcm.len()
        );
        let x = &pcm[..n];
        for f in ALL {
            let l = level_dbfs(x, f, rate);
            if wanted.contains(&f) {
                assert!(
                    (l - LEVEL_DB).abs() <= 2.0,
                    "leg {leg} should hear {f} Hz at {LEVEL_DB} dBFS, got {l:.1}"
                );
            } else {
                assert!(l < -60.0, "leg {leg} must not hear {f} Hz, got {l:.1} dBFS");
            }
        }
    }

    /// Every packet sent to `leg`: one SSRC, sequence numbers without gap or repeat.
    fn assert_continuous(&self, leg: LegId) {
        let pkts = &self.outputs[&leg];
        assert!(!pkts.is_empty());
        let first = RtpHeader::parse(&pkts[0].pkt).unwrap();
        let mut seq = first.seq;
        for s in &pkts[1..] {
            let h = RtpHeader::parse(&s.pkt).unwrap();
            assert_eq!(h.ssrc, first.ssrc, "leg {leg}: SSRC changed at {} ms", s.ms);
            assert_eq!(
                h.seq,
                seq.wrapping_add(1),
                "leg {leg}: sequence gap at {} ms",
                s.ms
            );
            seq = h.seq;
        }
    }

    /// Packets sent to `leg` are exactly the packets `from` sent, byte for byte.
    fn assert_relayed_identical(&self, leg: LegId, from: LegId, from_ms: u64) {
        let out: Vec<&Vec<u8>> = self.outputs[&leg]
            .iter()
            .filter(|s| s.ms >= from_ms)
            .map(|s| &s.pkt)
            .collect();
        let inp: Vec<&Vec<u8>> = self.inputs[&from]
            .iter()
            .filter(|s| s.ms >= from_ms)
            .map(|s| &s.pkt)
            .collect();
        assert!(out.len() > 40);
        assert_eq!(
            out, inp,
            "leg {leg} must get leg {from}'s packets unchanged"
        );
    }
}

/// Level of `freq` in the single packet sent to `leg` at `ms`.
fn packet_level(sim: &Sim, leg: LegId, s: &Sent, freq: f64) -> f64 {
    let codec = sim.codecs[&leg];
    let mut dec = Decoder::new(codec).unwrap();
    let mut buf = vec![0i16; 4000];
    let h = RtpHeader::parse(&s.pkt).unwrap();
    let n = dec.decode(h.payload(&s.pkt), &mut buf).unwrap();
    level_dbfs(&buf[..n], freq, codec.sample_rate())
}

fn tone_ms(duration_ms: u64, beeps: u8, gap_ms: u64) -> Tone {
    Tone {
        freq_hz: F_TONE as f32,
        duration: Duration::from_millis(duration_ms),
        level_dbfs: LEVEL_DB as f32,
        beeps,
        gap: Duration::from_millis(gap_ms),
    }
}

// ---- Harness of the notification tone tests ----

/// The notification tone's frequency.
const F_TONE: f64 = 1400.0;

impl Sim {
    /// Decoded audio sent to `leg` in packets sent within `[from_ms, to_ms)`.
    fn heard_between(&self, leg: LegId, from_ms: u64, to_ms: u64) -> Vec<i16> {
        let codec = self.codecs[&leg];
        let pt = params(LegRole::Customer, codec).payload_type;
        let mut dec = Decoder::new(codec).expect("decoder");
        let mut pcm = Vec::new();
        let mut buf = vec![0i16; 8000];
        for s in self.outputs.get(&leg).map(Vec::as_slice).unwrap_or(&[]) {
            let h = RtpHeader::parse(&s.pkt).expect("valid RTP");
            if h.payload_type != pt {
                continue;
            }
            let n = dec.decode(h.payload(&s.pkt), &mut buf).expect("decodes");
            if (from_ms..to_ms).contains(&s.ms) {
                pcm.extend_from_slice(&buf[..n]);
            }
        }
        pcm
    }

    /// For each packet sent to `leg` within `[from_ms, to_ms)`: whether it carries the tone
    /// (above -40 dBFS; silence of it is below -60).
    fn tone_packets(&self, leg: LegId, from_ms: u64, to_ms: u64) -> Vec<bool> {
        self.outputs[&leg]
            .iter()
            .filter(|s| (from_ms..to_ms).contains(&s.ms))
            .map(|s| {
                let l = packet_level(self, leg, s, F_TONE);
                assert!(
                    !(-60.0..=-40.0).contains(&l),
                    "leg {leg} at {} ms: tone neither on nor off ({l:.1} dBFS)",
                    s.ms
                );
                l > -40.0
            })
            .collect()
    }

    /// Payloads sent to `leg` within `[from_ms, to_ms)` are those `from` sent then.
    fn assert_same_payloads(&self, leg: LegId, from: LegId, from_ms: u64, to_ms: u64) {
        let pick = |v: &[Sent]| -> Vec<Vec<u8>> {
            v.iter()
                .filter(|s| (from_ms..to_ms).contains(&s.ms))
                .map(|s| s.pkt[12..].to_vec())
                .collect()
        };
        let out = pick(&self.outputs[&leg]);
        assert!(out.len() >= 10, "only {} packets", out.len());
        assert_eq!(
            out,
            pick(&self.inputs[&from]),
            "leg {leg} must get leg {from}'s payloads unchanged"
        );
    }

    /// Timestamps of every audio packet sent to `leg` advance by one 20 ms frame.
    fn assert_timestamps_continuous(&self, leg: LegId) {
        let step = self.codecs[&leg].rtp_clock_rate() / 50;
        let hs: Vec<RtpHeader> = self.outputs[&leg]
            .iter()
            .map(|s| RtpHeader::parse(&s.pkt).expect("valid RTP"))
            .collect();
        for w in hs.windows(2) {
            assert_eq!(
                w[1].timestamp.wrapping_sub(w[0].timestamp),
                step,
                "leg {leg}: timestamp jump at seq {}",
                w[1].seq
            );
        }
    }
}
