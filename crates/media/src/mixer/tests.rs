//! "Who hears whom" tests in virtual time: every leg sends a tone of its own frequency, and
//! each output is checked for exactly the tones of its DESIGN §3 row.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::f64::consts::PI;

use super::*;

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

#[test]
fn no_supervisor_is_plain_relay() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(1000);
    assert_eq!(
        sim.mixer.poll_timeout(),
        None,
        "nothing is clocked without supervisors"
    );
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    let st = sim.mixer.stats();
    assert_eq!(st.counters.mixed_frames, 0);
    assert_eq!(st.counters.relayed_packets, 100);
}

#[test]
fn monitor_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST]);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // The supervisor's stream is one mix, clocked by the customer: one packet per 20 ms.
    let n = sim.outputs[&SUP_A].len();
    assert!((78..=80).contains(&n), "{n} supervisor packets in 1.6 s");
}

#[test]
fn coach_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_relayed_identical(CUST, AGENT, 0);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // The agent's frames are clocked by the customer's packets: sent in the same
    // millisecond as each customer packet arrived, one per packet.
    let cust_ms: Vec<u64> = sim.inputs[&CUST].iter().map(|s| s.ms).collect();
    let agent_ms: Vec<u64> = sim.outputs[&AGENT].iter().map(|s| s.ms).collect();
    assert_eq!(agent_ms, cust_ms);
}

#[test]
fn barge_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 400, &[F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
}

#[test]
fn two_supervisors_in_different_modes() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_B,
        13,
    );
    sim.run_until(1600);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    // A coach is heard by the agent, so the other supervisor hears it; a monitor is not.
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 400, &[F_CUST, F_AGENT, F_A]);

    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
    sim.mixer.set_mode(now, SUP_B, SessionMode::Coach);
    sim.run_until(3200);
    sim.assert_hears(CUST, 2000, &[F_AGENT, F_A]);
    sim.assert_hears(AGENT, 2000, &[F_CUST, F_A, F_B]);
    sim.assert_hears(SUP_A, 2000, &[F_CUST, F_AGENT, F_B]);
    sim.assert_hears(SUP_B, 2000, &[F_CUST, F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A, SUP_B] {
        sim.assert_continuous(leg);
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

#[test]
fn mode_switches_take_effect_within_one_packet() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Coach);
    sim.run_until(1005);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Barge);
    sim.run_until(1505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Monitor);
    sim.run_until(2005);

    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // Agent: supervisor absent before 505, present from the first packet after the switch
    // (the customer's at 520) until 1505, then gone at once.
    for s in &sim.outputs[&AGENT] {
        let l = packet_level(&sim, AGENT, s, F_A);
        let coach = (520..1505).contains(&s.ms);
        if coach {
            assert!(
                l > LEVEL_DB - 3.0,
                "agent packet at {} ms: coach at {l:.1}",
                s.ms
            );
        } else if s.ms > 60 {
            assert!(
                l < -50.0,
                "agent packet at {} ms: coach leaked at {l:.1}",
                s.ms
            );
        }
    }
    // Customer: supervisor only between the barge switch and the monitor switch.
    for s in &sim.outputs[&CUST] {
        let l = packet_level(&sim, CUST, s, F_A);
        if (1007..1505).contains(&s.ms) {
            assert!(
                l > LEVEL_DB - 3.0,
                "customer packet at {} ms: barge at {l:.1}",
                s.ms
            );
        } else {
            assert!(
                l < -50.0,
                "customer packet at {} ms: supervisor leaked",
                s.ms
            );
        }
    }
    // Back in monitor: plain relay again (payload bytes untouched).
    let relayed: Vec<&[u8]> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 1520)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = sim.inputs[&CUST]
        .iter()
        .filter(|s| s.ms >= 1520)
        .map(|s| &s.pkt[12..])
        .collect();
    assert_eq!(relayed, sent);
    // Marker bit: first generated packet after relay, and first relayed after generated.
    let marker_at = |leg: LegId| -> Vec<u64> {
        sim.outputs[&leg]
            .iter()
            .filter(|s| RtpHeader::parse(&s.pkt).unwrap().marker)
            .map(|s| s.ms)
            .collect()
    };
    assert_eq!(marker_at(AGENT), vec![20, 520, 1520]);
    assert_eq!(marker_at(CUST), vec![7, 1007, 1507]);
}

#[test]
fn agent_hears_coach_while_customer_is_on_hold() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    sim.senders.get_mut(&CUST).unwrap().on = false;
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).unwrap().on = true;
    sim.run_until(2700);

    sim.assert_continuous(AGENT);
    let pkts = &sim.outputs[&AGENT];
    // One packet per 20 ms throughout, and timestamps advancing by one frame each.
    let held: Vec<&Sent> = pkts
        .iter()
        .filter(|s| (560..1500).contains(&s.ms))
        .collect();
    assert!(
        (46..=48).contains(&held.len()),
        "{} packets during hold",
        held.len()
    );
    let hs: Vec<RtpHeader> = pkts
        .iter()
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 160);
    }
    // The coach is heard during the hold; the customer's tone is not (it sends nothing).
    let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
    let mut pcm = Vec::new();
    let mut buf = [0i16; 160];
    for s in &held {
        let n = dec.decode(&s.pkt[12..], &mut buf).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    assert!((level_dbfs(&pcm, F_A, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!(level_dbfs(&pcm, F_CUST, 8000) < -60.0);
    // After the hold the customer clocks the agent's output again.
    sim.assert_hears(AGENT, 1600, &[F_CUST, F_A]);
    let last: Vec<u64> = pkts
        .iter()
        .filter(|s| s.ms >= 1600)
        .map(|s| s.ms % 20)
        .collect();
    assert!(
        last.iter().all(|&m| m == 0),
        "clocked by the customer again"
    );
}

#[test]
fn supervisor_dtmf_is_consumed_and_reported_once() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(300);
    let pkts = sim.senders.get_mut(&SUP_A).unwrap().dtmf_packets(2);
    for p in pkts {
        sim.inject(SUP_A, p);
        sim.run_until(sim.ms + 10);
    }
    sim.run_until(600);
    assert_eq!(
        sim.mixer.poll_event(),
        Some(MixerEvent::Dtmf {
            leg: SUP_A,
            digit: '2'
        })
    );
    assert_eq!(sim.mixer.poll_event(), None);
    assert_eq!(sim.mixer.stats().counters.dtmf_consumed, 1);
    for (leg, pkts) in &sim.outputs {
        for s in pkts {
            let h = RtpHeader::parse(&s.pkt).unwrap();
            assert_ne!(h.payload_type, DTMF_PT, "digit forwarded to leg {leg}");
        }
    }
}

#[test]
fn customer_dtmf_reaches_the_agent_as_packets() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    // Relay: telephone-events relayed untouched.
    sim.run_until(200);
    let ev = sim.senders.get_mut(&CUST).unwrap().dtmf_packets(5);
    for p in &ev {
        sim.inject(CUST, p.clone());
    }
    let relayed: Vec<Vec<u8>> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| s.pkt.clone())
        .collect();
    assert_eq!(relayed, ev);

    // Mixed (coach present): passed through as packets, payload untouched, one timestamp.
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let ev = sim.senders.get_mut(&CUST).unwrap().dtmf_packets(9);
    for p in &ev {
        sim.inject(CUST, p.clone());
        sim.run_until(sim.ms + 5);
    }
    sim.run_until(700);
    let passed: Vec<RtpHeader> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 500 && s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    assert_eq!(passed.len(), ev.len());
    assert!(passed.iter().all(|h| h.timestamp == passed[0].timestamp));
    assert!(passed[0].marker && !passed[1].marker);
    let payloads: Vec<&[u8]> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 500 && s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = ev.iter().map(|p| &p[12..]).collect();
    assert_eq!(payloads, sent);
    sim.assert_continuous(AGENT);
    // The digits are the customer's: no event for the owner.
    assert_eq!(sim.mixer.poll_event(), None);
}

#[test]
fn mixed_codecs_satisfy_the_table() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcma, F_AGENT, 7);
    sim.run_until(600);
    // Different codecs: transcoded, still clocked by the sender's packets.
    sim.assert_hears(AGENT, 100, &[F_CUST]);
    sim.assert_hears(CUST, 100, &[F_AGENT]);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::G722,
        F_A,
        3,
    );
    sim.run_until(1800);
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 700, &[F_CUST]);
    sim.assert_hears(CUST, 700, &[F_AGENT]);
    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Coach);
    sim.run_until(3000);
    sim.assert_hears(SUP_A, 1900, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 1900, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 1900, &[F_AGENT]);
    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
    sim.run_until(4200);
    sim.assert_hears(SUP_A, 3100, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 3100, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 3100, &[F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
}

#[cfg(feature = "opus")]
#[test]
fn opus_legs_satisfy_the_table() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Opus, F_AGENT, 7);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Opus,
        F_A,
        3,
    );
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::G722,
        F_B,
        13,
    );
    sim.run_until(1800);
    sim.assert_hears(CUST, 700, &[F_AGENT, F_A]);
    sim.assert_hears(AGENT, 700, &[F_CUST, F_A]);
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 700, &[F_CUST, F_AGENT, F_A]);
}

#[test]
fn coach_gain_applies_to_the_agent_mix_only() {
    let cfg = MixerConfig {
        coach_gain_db: -6.0,
        ..MixerConfig::default()
    };
    let mut sim = Sim::new(cfg);
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcmu, F_AGENT, 7);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    let (pcm, rate) = sim.heard(AGENT, 400);
    let x = &pcm[..8000];
    assert!((level_dbfs(x, F_A, rate) - (LEVEL_DB - 6.0)).abs() <= 1.0);
    assert!(
        (level_dbfs(x, F_CUST, rate) - LEVEL_DB).abs() <= 1.0,
        "customer not attenuated"
    );
    let (pcm, rate) = sim.heard(CUST, 400);
    assert!((level_dbfs(&pcm[..8000], F_A, rate) - LEVEL_DB).abs() <= 1.0);
}

#[test]
fn barge_promotion_keeps_the_customer_stream() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(800);
    let now = sim.now();
    sim.mixer.remove_leg(now, AGENT);
    sim.senders.remove(&AGENT);
    sim.mixer
        .update_leg(now, SUP_A, params(LegRole::Agent, CodecKind::Pcmu))
        .unwrap();
    sim.run_until(2000);
    sim.assert_continuous(CUST);
    sim.assert_continuous(SUP_A);
    sim.assert_hears(CUST, 900, &[F_A]);
    sim.assert_hears(SUP_A, 900, &[F_CUST]);
    // Two parties left: plain relay again, and nothing clocked.
    assert_eq!(sim.mixer.poll_timeout(), None);
    let tail: Vec<&[u8]> = sim.outputs[&CUST]
        .iter()
        .filter(|s| s.ms > 900)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = sim.inputs[&SUP_A]
        .iter()
        .filter(|s| s.ms > 900)
        .map(|s| &s.pkt[12..])
        .collect();
    assert_eq!(tail, sent);
}

#[test]
fn mix_saturates_instead_of_wrapping() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(100);
    // Customer and coach send a constant near full scale: the sum is far beyond it.
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let mut payload = [0u8; 160];
    enc.encode(&[30000i16; 160], &mut payload).unwrap();
    for _ in 0..20 {
        for id in [SUP_A, CUST] {
            let s = sim.senders.get_mut(&id).unwrap();
            let mut p = Vec::new();
            write_packet(&mut p, false, 0, s.seq, s.ts, s.ssrc, &payload);
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(160);
            s.on = false;
            sim.inject(id, p);
        }
        sim.run_until(sim.ms + 20);
    }
    let (pcm, _) = sim.heard(AGENT, 260);
    assert!(pcm.len() >= 800);
    // 30000 + 30000 clips at full scale; a wrap-around would turn negative.
    assert!(pcm[..800].iter().all(|&x| x > 25000), "wrapped around");
    let clipped = pcm[..800].iter().filter(|&&x| x > 32000).count();
    assert!(
        clipped >= 720,
        "only {clipped} of 800 samples at full scale"
    );
}

#[test]
fn garbage_and_unknown_legs_are_ignored() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(100);
    let now = sim.now();
    for junk in [
        &[][..],
        &[0x80][..],
        &[0x40; 40][..],
        &[0x80, 200, 0, 1, 0, 0, 0, 0][..],
    ] {
        sim.mixer.handle_rtp(now, CUST, junk);
        sim.mixer.handle_rtp(now, 99, junk);
    }
    // A PCMU payload type the leg did not negotiate, and a huge packet.
    let mut p = Vec::new();
    write_packet(&mut p, false, 96, 1, 2, 3, &[0; 100]);
    sim.mixer.handle_rtp(now, SUP_A, &p);
    let mut big = Vec::new();
    write_packet(&mut big, false, 0, 60000, 2, 0x1017, &[0xFF; 1400]);
    sim.mixer.handle_rtp(now, CUST, &big);
    sim.run_until(1400);
    sim.assert_hears(AGENT, 300, &[F_CUST, F_A]);
    let st = sim.mixer.stats();
    let cust = st.legs.iter().find(|(id, _)| *id == CUST).unwrap().1;
    assert_eq!(cust.rx_invalid, 3);
    assert!(matches!(
        sim.mixer
            .add_leg(now, CUST, params(LegRole::Customer, CodecKind::Pcmu)),
        Err(MediaError::Mixer(_))
    ));
}

#[test]
fn quick_coach_monitor_coach_toggle_keeps_agent_sequence() {
    // Coach, then monitor for two customer packets (relayed), then coach again: the
    // packet-clocked path must not take the relayed packets for lost ones.
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Monitor);
    sim.run_until(545);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Coach);
    sim.run_until(1000);
    sim.assert_continuous(AGENT);
    let hs: Vec<RtpHeader> = sim.outputs[&AGENT]
        .iter()
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 160);
    }
}

#[cfg(feature = "opus")]
#[test]
fn opus_agent_gets_30ms_pcmu_customer_packets() {
    // A 30 ms packet time is common on PCMU trunks, but Opus has no 30 ms frame.
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Opus, F_AGENT, 7);
    sim.senders.get_mut(&CUST).unwrap().on = false;
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let (mut seq, mut ts, mut n) = (100u16, 5000u32, 0u64);
    for k in 0..40u64 {
        let pcm: Vec<i16> = (0..240u64)
            .map(|i| {
                let t = (n + i) as f64 / 8000.0;
                (AMP * (2.0 * PI * F_CUST * t).sin()).round() as i16
            })
            .collect();
        n += 240;
        let mut payload = [0u8; 240];
        enc.encode(&pcm, &mut payload).unwrap();
        let mut p = Vec::new();
        write_packet(&mut p, k == 0, 0, seq, ts, 0x1234, &payload);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(240);
        sim.inject(CUST, p);
        sim.run_until(sim.ms + 30);
    }
    let st = sim.mixer.stats();
    let agent = st.legs.iter().find(|(id, _)| *id == AGENT).unwrap().1;
    assert_eq!(agent.encode_errors, 0);
    let (pcm, rate) = sim.heard(AGENT, 300);
    assert!(
        pcm.len() >= 48_000 / 2,
        "agent got only {} samples",
        pcm.len()
    );
    assert!((level_dbfs(&pcm, F_CUST, rate) - LEVEL_DB).abs() <= 2.0);
    sim.assert_continuous(AGENT);
}

/// A customer packet that arrives late (scheduling jitter on the sender's side): the customer
/// never drops to silence in a supervisor frame (heard as a click and a level dip). The
/// supervisor's output is clocked by the customer's packets, so the late one makes its frame
/// when it arrives, and no frame is made without the customer in the meantime.
#[test]
fn a_late_packet_is_concealed_in_the_supervisor_mix() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(800);
    // The customer's packet for 820 ms is held back and arrives 45 ms late.
    sim.senders.get_mut(&CUST).unwrap().on = false;
    sim.run_until(821);
    let late = sim.senders.get_mut(&CUST).unwrap().packet();
    sim.run_until(865);
    sim.inject(CUST, late);
    sim.senders.get_mut(&CUST).unwrap().on = true;
    sim.run_until(1200);
    let frames: Vec<f64> = sim.outputs[&SUP_A]
        .iter()
        .filter(|s| (780..1000).contains(&s.ms))
        .map(|s| packet_level(&sim, SUP_A, s, F_CUST))
        .collect();
    // Concealment fades over a few frames (codec PLC), but never drops to silence.
    assert!(
        frames.iter().all(|l| *l > -60.0),
        "the customer never drops out of the supervisor's mix: {frames:?}"
    );
}

/// The input level of `leg`, which must be metered.
fn input_level(sim: &Sim, leg: LegId) -> f32 {
    sim.mixer
        .input_level(leg)
        .unwrap_or_else(|| panic!("leg {leg} should be metered"))
}

#[test]
fn input_level_on_the_packet_clocked_path() {
    // PCMU customer, PCMA agent: no supervisor, but each side's packets are decoded for the
    // other's packet-clocked mix.
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_AGENT, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcma, F_CUST, 7);
    assert_eq!(sim.mixer.input_level(CUST), None, "nothing received yet");
    sim.run_until(500);
    assert_eq!(sim.mixer.poll_timeout(), None, "no clock: the direct path");
    for leg in [CUST, AGENT] {
        let l = input_level(&sim, leg);
        assert!(
            (f64::from(l) - LEVEL_DB).abs() <= 1.0,
            "leg {leg}: {l:.2} dBFS for a {LEVEL_DB} dBFS tone"
        );
    }
    // The customer goes silent (still sending packets): the reading falls to the floor
    // within the meter's 200 ms, while the agent's stays.
    sim.senders.get_mut(&CUST).expect("customer sender").freq = 0.0;
    sim.run_until(560);
    assert!(
        input_level(&sim, CUST) > -21.0,
        "60 ms of silence are within the meter's window"
    );
    sim.run_until(800);
    assert_eq!(input_level(&sim, CUST), LEVEL_FLOOR_DBFS);
    assert!((f64::from(input_level(&sim, AGENT)) - LEVEL_DB).abs() <= 1.0);
    assert_eq!(sim.mixer.input_level(99), None, "unknown leg");
}

#[test]
fn input_level_of_a_monitor_and_of_relayed_legs() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(300);
    // Plain relay decodes nothing.
    assert_eq!(sim.mixer.input_level(CUST), None);
    assert_eq!(sim.mixer.input_level(AGENT), None);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1000);
    // A monitor is heard by nobody, yet its input is decoded on the mixer's clock and metered;
    // customer and agent are metered from their jitter buffers while it is present.
    for leg in [CUST, AGENT, SUP_A] {
        let l = input_level(&sim, leg);
        assert!(
            (f64::from(l) - LEVEL_DB).abs() <= 1.0,
            "leg {leg}: {l:.2} dBFS for a {LEVEL_DB} dBFS tone"
        );
    }
    // The supervisor stops sending: concealment, then silence on the ticks.
    sim.senders.get_mut(&SUP_A).expect("supervisor sender").on = false;
    sim.run_until(1400);
    assert_eq!(input_level(&sim, SUP_A), LEVEL_FLOOR_DBFS);
    assert!((f64::from(input_level(&sim, CUST)) - LEVEL_DB).abs() <= 1.0);
    // It leaves: back to relay, no reading (not a frozen one).
    let now = sim.now();
    sim.mixer.remove_leg(now, SUP_A);
    sim.senders.remove(&SUP_A);
    sim.run_until(1500);
    assert_eq!(sim.mixer.input_level(CUST), None);
    assert_eq!(sim.mixer.input_level(AGENT), None);
}

#[test]
fn counters_match_stats() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(200);
    let c = sim.mixer.counters();
    assert_eq!((c.relayed_packets, c.mixed_frames, c.ticks), (20, 0, 0));
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(600);
    let c = sim.mixer.counters();
    let st = sim.mixer.stats();
    assert!(c.mixed_frames > 20 && c.ticks >= 19, "{c:?}");
    assert_eq!(c, st.counters);
}

// ---- Notification tones ----

/// The notification tone's frequency.
const F_TONE: f64 = 1400.0;

fn tone_ms(duration_ms: u64, beeps: u8, gap_ms: u64) -> Tone {
    Tone {
        freq_hz: F_TONE as f32,
        duration: Duration::from_millis(duration_ms),
        level_dbfs: LEVEL_DB as f32,
        beeps,
        gap: Duration::from_millis(gap_ms),
    }
}

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

/// Runs of `true` in `v`, as lengths.
fn runs(v: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut n = 0;
    for &b in v {
        if b {
            n += 1;
        } else if n > 0 {
            out.push(n);
            n = 0;
        }
    }
    if n > 0 {
        out.push(n);
    }
    out
}

#[test]
fn tone_to_the_agent_only_in_a_monitor_session() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, tone_ms(400, 1, 0));
    assert!(sim.mixer.tone_playing(AGENT));
    assert!(!sim.mixer.tone_playing(CUST));
    sim.run_until(1500);
    assert!(!sim.mixer.tone_playing(AGENT));

    // The agent: the tone at its level, and the customer still heard through it.
    let pcm = sim.heard_between(AGENT, 540, 880);
    assert!(pcm.len() >= 2400, "{} samples", pcm.len());
    let tone = level_dbfs(&pcm, F_TONE, 8000);
    assert!(
        (tone - LEVEL_DB).abs() <= 1.5,
        "agent hears the tone at {tone:.1} dBFS"
    );
    let cust = level_dbfs(&pcm, F_CUST, 8000);
    assert!(
        (cust - LEVEL_DB).abs() <= 2.0,
        "agent hears the customer at {cust:.1} dBFS during the tone"
    );
    for f in [F_AGENT, F_A] {
        assert!(level_dbfs(&pcm, f, 8000) < -60.0);
    }
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
    // Before and after: a relay again.
    sim.assert_same_payloads(AGENT, CUST, 0, 500);
    sim.assert_same_payloads(AGENT, CUST, 1000, 1500);

    // The customer: untouched relay throughout, no tone.
    sim.assert_relayed_identical(CUST, AGENT, 0);
    let pcm = sim.heard_between(CUST, 0, 1500);
    assert!(level_dbfs(&pcm, F_TONE, 8000) < -60.0);

    // The supervisor hears what the parties send, not what they receive: no tone.
    let pcm = sim.heard_between(SUP_A, 540, 880);
    assert!(pcm.len() >= 2400);
    let l = level_dbfs(&pcm, F_TONE, 8000);
    assert!(
        l < -60.0,
        "supervisor hears the agent's tone at {l:.1} dBFS"
    );
    assert!((level_dbfs(&pcm, F_CUST, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!((level_dbfs(&pcm, F_AGENT, 8000) - LEVEL_DB).abs() <= 2.0);
}

#[test]
fn tone_to_both_parties_returns_to_relay_on_one_stream() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let ssrc_before = [CUST, AGENT].map(|l| sim.mixer.output_ssrc(l));
    let now = sim.now();
    for leg in [AGENT, CUST] {
        sim.mixer.play_tone(now, leg, Tone::default());
    }
    sim.run_until(1200);
    assert_eq!(ssrc_before, [CUST, AGENT].map(|l| sim.mixer.output_ssrc(l)));

    for (leg, other) in [(AGENT, F_CUST), (CUST, F_AGENT)] {
        let pcm = sim.heard_between(leg, 530, 690);
        assert!(pcm.len() >= 1120, "{} samples", pcm.len());
        let tone = level_dbfs(&pcm, F_TONE, 8000);
        assert!(
            (tone - LEVEL_DB).abs() <= 1.5,
            "leg {leg} hears the tone at {tone:.1} dBFS"
        );
        assert!((level_dbfs(&pcm, other, 8000) - LEVEL_DB).abs() <= 2.0);
        assert!(!sim.mixer.tone_playing(leg));
        // One stream across relay -> mix -> relay.
        sim.assert_continuous(leg);
        sim.assert_timestamps_continuous(leg);
        assert!(sim.tone_packets(leg, 900, 1200).iter().all(|on| !on));
    }
    // Relay before and after the tone: the payloads untouched.
    sim.assert_same_payloads(CUST, AGENT, 0, 500);
    sim.assert_same_payloads(CUST, AGENT, 760, 1200);
    sim.assert_same_payloads(AGENT, CUST, 760, 1200);
    let st = sim.mixer.stats();
    let cust = st
        .legs
        .iter()
        .find(|(id, _)| *id == CUST)
        .expect("customer")
        .1;
    assert!(
        (10..=11).contains(&cust.tx_mixed),
        "{} mixed packets to the customer for a 200 ms tone",
        cust.tx_mixed
    );
}

#[test]
fn tone_lasts_its_duration_and_beeps_are_separate_bursts() {
    // No supervisor: both outputs are relays and nothing is clocked, until the tone.
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(300);
    assert_eq!(sim.mixer.poll_timeout(), None);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, Tone::default());
    assert!(
        sim.mixer.poll_timeout().is_some(),
        "the tone runs the clock"
    );
    sim.run_until(900);
    let on = sim.tone_packets(AGENT, 300, 900);
    let r = runs(&on);
    assert_eq!(r.len(), 1, "one burst: {on:?}");
    assert!(
        (9..=11).contains(&r[0]),
        "200 ms tone over {} packets",
        r[0]
    );
    assert!(!on[on.len() - 10..].iter().any(|&b| b), "gone afterwards");
    assert_eq!(
        sim.mixer.poll_timeout(),
        None,
        "clock stopped with the tone"
    );
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_same_payloads(AGENT, CUST, 600, 900);

    // Two beeps of 100 ms, 100 ms apart.
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, tone_ms(100, 2, 100));
    sim.run_until(1500);
    let on = sim.tone_packets(AGENT, 900, 1500);
    let r = runs(&on);
    assert_eq!(r.len(), 2, "two bursts: {on:?}");
    assert!(r.iter().all(|n| (4..=6).contains(n)), "bursts {r:?}");
    let first_end = on.iter().position(|&b| b).expect("a burst") + r[0];
    let gap = on[first_end..].iter().take_while(|&&b| !b).count();
    assert!((4..=6).contains(&gap), "gap of {gap} packets: {on:?}");
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
}

#[test]
fn tone_on_an_idle_call_is_produced_by_the_clock() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    for s in sim.senders.values_mut() {
        s.on = false;
    }
    sim.run_until(100);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, Tone::default());
    sim.run_until(600);
    assert!(!sim.mixer.tone_playing(AGENT));
    assert_eq!(sim.mixer.poll_timeout(), None);
    let on = sim.tone_packets(AGENT, 0, 600);
    assert!(
        (10..=11).contains(&on.len()),
        "{} packets on the clock",
        on.len()
    );
    assert!(on.iter().filter(|&&b| b).count() >= 9, "{on:?}");
    let pcm = sim.heard_between(AGENT, 0, 600);
    let core = &pcm[160..1440];
    let l = level_dbfs(core, F_TONE, 8000);
    assert!((l - LEVEL_DB).abs() <= 1.5, "tone at {l:.1} dBFS");
    // One packet per 20 ms, on one stream.
    let ms: Vec<u64> = sim.outputs[&AGENT].iter().map(|s| s.ms).collect();
    assert!(ms.windows(2).all(|w| w[1] - w[0] == 20), "{ms:?}");
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
    assert!(!sim.outputs.contains_key(&CUST), "nothing for the customer");
}

#[test]
fn tone_to_a_supervisor_and_replacing_a_tone() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(400);
    let now = sim.now();
    // A long tone, replaced after 100 ms by a 200 ms one at another frequency.
    sim.mixer.play_tone(now, SUP_A, tone_ms(2000, 1, 0));
    sim.run_until(500);
    let now = sim.now();
    let replacement = Tone {
        freq_hz: 1800.0,
        ..Tone::default()
    };
    sim.mixer.play_tone(now, SUP_A, replacement);
    sim.run_until(1000);
    assert!(!sim.mixer.tone_playing(SUP_A));
    let first = sim.heard_between(SUP_A, 420, 500);
    assert!((level_dbfs(&first, F_TONE, 8000) - LEVEL_DB).abs() <= 2.0);
    let second = sim.heard_between(SUP_A, 520, 700);
    // Three tones in one PCMU stream leave intermodulation products near -60 dBFS; the old
    // tone would read -20.
    let l = level_dbfs(&second, F_TONE, 8000);
    assert!(l < -50.0, "replaced, yet {l:.1} dBFS");
    assert!((level_dbfs(&second, 1800.0, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!((level_dbfs(&second, F_CUST, 8000) - LEVEL_DB).abs() <= 2.0);
    let after = sim.heard_between(SUP_A, 720, 1000);
    assert!(level_dbfs(&after, 1800.0, 8000) < -60.0, "ended");
    // Nobody else hears it.
    for leg in [CUST, AGENT] {
        let pcm = sim.heard_between(leg, 400, 1000);
        assert!(level_dbfs(&pcm, F_TONE, 8000) < -60.0);
        assert!(level_dbfs(&pcm, 1800.0, 8000) < -60.0);
    }
    sim.assert_continuous(SUP_A);
}

// ---- Memory: mixing state only where the routing needs it ----

/// A call that is only relayed holds little; a supervisor joining allocates the mixing state
/// (at the join), and the relay stays byte-identical before, during and after the session.
#[test]
fn relay_only_call_is_small_and_mixing_state_comes_with_a_supervisor() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    let relay_bytes = sim.mixer.heap_bytes();
    assert!(
        relay_bytes < 16 * 1024,
        "relay-only call holds {relay_bytes} B"
    );
    sim.run_until(400);
    assert_eq!(
        sim.mixer.heap_bytes(),
        relay_bytes,
        "relaying allocates nothing"
    );
    assert!(sim
        .mixer
        .legs
        .iter()
        .all(|l| l.jbp.is_none() && l.dec_direct.is_none() && l.encoder.is_none()));

    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    let monitored = sim.mixer.heap_bytes();
    // Three jitter buffers alone are about 3 x 94 KiB.
    assert!(
        monitored > relay_bytes + 3 * crate::jitter::RING_SLOTS * crate::jitter::MAX_PAYLOAD,
        "{monitored} B while monitored"
    );
    sim.run_until(1400);
    sim.assert_hears(SUP_A, 600, &[F_CUST, F_AGENT]);
    let now = sim.now();
    sim.mixer.remove_leg(now, SUP_A);
    sim.senders.remove(&SUP_A);
    sim.run_until(2000);
    assert_eq!(sim.mixer.poll_timeout(), None);
    // Relayed untouched throughout, on one stream.
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    for leg in [CUST, AGENT] {
        sim.assert_continuous(leg);
    }
    assert_eq!(sim.mixer.counters().tx_dropped, 0);
}

/// Mixing allocates on the routing change (join, mode change, tone), never per packet or
/// tick: the estimate does not move over 500 ticks and their packets afterwards.
#[test]
fn mixing_allocates_on_routing_changes_only() {
    let mut cases = vec![
        (CodecKind::Pcmu, CodecKind::Pcmu, CodecKind::Pcmu),
        // 16 kHz mixes: resampling of the customer up and the mixes down.
        (CodecKind::Pcmu, CodecKind::G722, CodecKind::G722),
        (CodecKind::G722, CodecKind::Pcmu, CodecKind::Pcmu),
    ];
    if CodecKind::Opus.is_available() {
        cases.push((CodecKind::Pcmu, CodecKind::Pcmu, CodecKind::Opus));
    }
    for (cust, agent, sup) in cases {
        let mut sim = Sim::new(MixerConfig::default());
        sim.add(CUST, LegRole::Customer, cust, F_CUST, 0);
        sim.add(AGENT, LegRole::Agent, agent, F_AGENT, 7);
        sim.run_until(200);
        sim.add(
            SUP_A,
            LegRole::Supervisor(SessionMode::Monitor),
            sup,
            F_A,
            3,
        );
        let now = sim.now();
        sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
        sim.mixer.play_tone(now, AGENT, tone_ms(100, 1, 0));
        let joined = sim.mixer.heap_bytes();
        let ticks = sim.mixer.counters().ticks;
        sim.run_until(200 + 500 * 20);
        let c = sim.mixer.counters();
        assert!(c.ticks - ticks >= 500, "{c:?}");
        assert_eq!(
            sim.mixer.heap_bytes(),
            joined,
            "{cust:?}/{agent:?}/{sup:?}: grew while handling packets and ticks"
        );
        sim.assert_hears(AGENT, 2000, &[F_CUST, F_A]);
        sim.assert_hears(CUST, 2000, &[F_AGENT, F_A]);
        sim.assert_hears(SUP_A, 2000, &[F_CUST, F_AGENT]);
    }
}

/// A codec mismatch without supervisors mixes packet by packet: decoders and encoders, but no
/// jitter buffer.
#[test]
fn transcoding_alone_needs_no_jitter_buffer() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::G722, F_AGENT, 7);
    sim.run_until(1000);
    sim.assert_hears(AGENT, 200, &[F_CUST]);
    sim.assert_hears(CUST, 200, &[F_AGENT]);
    assert!(sim
        .mixer
        .legs
        .iter()
        .all(|l| l.jbp.is_none() && l.dec_direct.is_some() && l.encoder.is_some()));
}

/// Growing the transmit ring keeps the queued packets, in order, wherever the ring's head is.
#[test]
fn transmit_ring_grows_without_losing_packets() {
    let mut q = TxQueue::new();
    assert_eq!(q.slots.len(), TX_SLOTS_RELAY);
    let mut buf = [0u8; 16];
    // Move the head into the middle, then wrap: slots 2, 3, 0 hold packets 2, 3, 4.
    for k in 0..3u8 {
        q.reserve(1).push(k);
        q.commit();
    }
    for want in 0..2u8 {
        assert_eq!(q.pop_into(&mut buf), Some((1, 1)));
        assert_eq!(buf[0], want);
    }
    for k in 3..5u8 {
        q.reserve(1).push(k);
        q.commit();
    }
    assert_eq!((q.head, q.len), (2, 3));
    let queued = vec![2u8, 3, 4];
    q.grow(TX_SLOTS);
    assert_eq!(q.slots.len(), TX_SLOTS);
    q.reserve(2).push(99);
    q.commit();
    let mut got = Vec::new();
    while let Some((_, n)) = q.pop_into(&mut buf) {
        assert_eq!(n, 1);
        got.push(buf[0]);
    }
    let mut want = queued;
    want.push(99);
    assert_eq!(got, want);
    assert_eq!(q.dropped, 0);
}

// ---- Supervisor outputs clocked by the customer's packets ----

/// Customer 440 Hz at `cust_phase` ms in the 20 ms grid (off the clock's ticks, which fall on
/// multiples of 20 ms from the first supervisor's join at 0 ms), agent 1000 Hz, all PCMU, and
/// supervisor A in `mode` (added at 0 ms).
fn clocking_call(cust_phase: u64, mode: SessionMode) -> Sim {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, cust_phase);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcmu, F_AGENT, 7);
    sim.add(SUP_A, LegRole::Supervisor(mode), CodecKind::Pcmu, F_A, 3);
    sim
}

/// Send times of the packets sent to `leg` (or received from it, `inputs`) in `[from, to)`.
fn times(v: &[Sent], from_ms: u64, to_ms: u64) -> Vec<u64> {
    v.iter()
        .map(|s| s.ms)
        .filter(|ms| (from_ms..to_ms).contains(ms))
        .collect()
}

/// The customer reaches a supervisor with no added delay: the supervisor's frame carrying the
/// start of a customer burst comes out of the `handle_rtp` call of the packet that carries it,
/// with the burst at full level from its first packet; the agent, jitter-buffered, is heard
/// too, within the jitter buffer's delay.
#[test]
fn a_customer_burst_reaches_a_monitor_in_the_same_call() {
    let mut sim = clocking_call(11, SessionMode::Monitor);
    sim.senders.get_mut(&CUST).expect("customer").freq = 0.0;
    sim.senders.get_mut(&AGENT).expect("agent").freq = 0.0;
    sim.run_until(600);
    // The burst's first packet, handed over alone: no tick runs in between.
    let cust = sim.senders.get_mut(&CUST).expect("customer");
    cust.freq = F_CUST;
    let burst = cust.packet();
    sim.ms = 611;
    let now = sim.now();
    assert!(
        sim.mixer.poll_timeout().is_some_and(|t| t > now),
        "no tick is due"
    );
    let before = sim.outputs.get(&SUP_A).map_or(0, Vec::len);
    sim.inject(CUST, burst);
    let out = &sim.outputs[&SUP_A];
    assert_eq!(
        out.len(),
        before + 1,
        "one supervisor frame per customer packet"
    );
    let s = out.last().expect("a frame");
    let l = packet_level(&sim, SUP_A, s, F_CUST);
    assert!(
        (l - LEVEL_DB).abs() <= 2.0,
        "the burst is in that very frame, at full level: {l:.1} dBFS"
    );
    // Agent burst from its packet at 627 ms on: heard once its jitter buffer lets it out.
    sim.senders.get_mut(&AGENT).expect("agent").freq = F_AGENT;
    sim.run_until(1200);
    let first_agent = sim.outputs[&SUP_A]
        .iter()
        .find(|s| s.ms >= 611 && packet_level(&sim, SUP_A, s, F_AGENT) > -30.0)
        .expect("the agent is heard")
        .ms;
    let delay = first_agent - 627;
    eprintln!("agent -> monitor: {delay} ms");
    let jitter_max = MixerConfig::default().jitter_max.as_millis() as u64;
    assert!(
        delay <= jitter_max,
        "agent heard {delay} ms after sending, more than the jitter buffer's {jitter_max} ms"
    );
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_continuous(SUP_A);
    sim.assert_timestamps_continuous(SUP_A);
}

/// DESIGN §3 rows with the supervisor's output clocked by the customer: every supervisor
/// packet leaves when a customer packet arrives (one each), never on the mixer's ticks.
#[test]
fn supervisor_rows_hold_when_clocked_by_the_customer() {
    for (mode, agent_hears, cust_hears) in [
        (SessionMode::Monitor, &[F_CUST][..], &[F_AGENT][..]),
        (SessionMode::Coach, &[F_CUST, F_A][..], &[F_AGENT][..]),
        (SessionMode::Barge, &[F_CUST, F_A][..], &[F_AGENT, F_A][..]),
    ] {
        let mut sim = clocking_call(11, mode);
        sim.run_until(1600);
        sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
        sim.assert_hears(AGENT, 400, agent_hears);
        sim.assert_hears(CUST, 400, cust_hears);
        for leg in [CUST, AGENT, SUP_A] {
            sim.assert_continuous(leg);
        }
        sim.assert_timestamps_continuous(SUP_A);
        assert_eq!(
            times(&sim.outputs[&SUP_A], 0, 1600),
            times(&sim.inputs[&CUST], 0, 1600),
            "{mode:?}: supervisor frames are sent as the customer's packets arrive"
        );
    }
}

/// The customer is put on hold: the supervisor keeps hearing the agent, on the mixer's clock,
/// in the same stream; when the customer comes back their packets clock it again.
#[test]
fn supervisor_hears_the_agent_while_the_customer_is_on_hold() {
    let mut sim = clocking_call(11, SessionMode::Monitor);
    sim.run_until(500);
    sim.senders.get_mut(&CUST).expect("customer").on = false;
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).expect("customer").on = true;
    sim.run_until(2700);

    // One SSRC, no sequence gap, each timestamp one 20 ms frame after the previous.
    sim.assert_continuous(SUP_A);
    sim.assert_timestamps_continuous(SUP_A);
    // The last customer packet was at 491 ms: the clock takes over after 3 ptime, one frame
    // per tick (ticks fall on multiples of 20 ms).
    let held = times(&sim.outputs[&SUP_A], 560, 1500);
    assert!(
        (46..=48).contains(&held.len()),
        "{} packets on hold",
        held.len()
    );
    assert!(held.iter().all(|ms| ms % 20 == 0), "on the clock: {held:?}");
    let pcm = sim.heard_between(SUP_A, 560, 1500);
    assert!((level_dbfs(&pcm, F_AGENT, 8000) - LEVEL_DB).abs() <= 2.0);
    for f in [F_CUST, F_A] {
        assert!(level_dbfs(&pcm, f, 8000) < -60.0, "{f} Hz heard on hold");
    }
    // Back: clocked by the customer's packets, who is heard again.
    assert_eq!(
        times(&sim.outputs[&SUP_A], 1520, 2700),
        times(&sim.inputs[&CUST], 1520, 2700)
    );
    sim.assert_hears(SUP_A, 1600, &[F_CUST, F_AGENT]);
    // No frame without the agent, at the switches either (an empty FIFO would insert
    // silence: a click).
    for s in sim.outputs[&SUP_A].iter().filter(|s| s.ms >= 100) {
        let l = packet_level(&sim, SUP_A, s, F_AGENT);
        assert!(
            l > LEVEL_DB - 3.0,
            "agent at {l:.1} dBFS in the frame at {} ms",
            s.ms
        );
    }
}

/// Two supervisors, A coaching and B monitoring: B hears A (the agent does), A does not hear
/// B; both with the customer's clock while they send and the mixer's while they are on hold.
#[test]
fn two_supervisors_hear_each_other_as_the_agent_does() {
    let mut sim = clocking_call(11, SessionMode::Coach);
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_B,
        13,
    );
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).expect("customer").on = false;
    sim.run_until(2600);
    sim.senders.get_mut(&CUST).expect("customer").on = true;
    sim.run_until(3800);

    sim.assert_hears(SUP_A, 300, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 300, &[F_CUST, F_AGENT, F_A]);
    sim.assert_hears(AGENT, 300, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 300, &[F_AGENT]);
    for (leg, wanted) in [(SUP_A, &[F_AGENT][..]), (SUP_B, &[F_AGENT, F_A][..])] {
        assert_eq!(
            times(&sim.outputs[&leg], 0, 1500),
            times(&sim.inputs[&CUST], 0, 1500),
            "leg {leg}: clocked by the customer"
        );
        // On hold: the mixer's clock, the same voices but the customer.
        let pcm = sim.heard_between(leg, 1600, 2600);
        assert!(
            pcm.len() >= 4000,
            "leg {leg}: {} samples on hold",
            pcm.len()
        );
        for f in ALL {
            let l = level_dbfs(&pcm, f, 8000);
            if wanted.contains(&f) {
                assert!(
                    (l - LEVEL_DB).abs() <= 2.0,
                    "leg {leg}, {f} Hz on hold: {l:.1}"
                );
            } else {
                assert!(l < -60.0, "leg {leg} must not hear {f} Hz on hold: {l:.1}");
            }
        }
        sim.assert_hears(
            leg,
            2700,
            if leg == SUP_A {
                &[F_CUST, F_AGENT]
            } else {
                &[F_CUST, F_AGENT, F_A]
            },
        );
        sim.assert_continuous(leg);
        sim.assert_timestamps_continuous(leg);
    }
}
