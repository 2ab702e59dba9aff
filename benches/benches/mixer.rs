//! Call mixer cost per 20 ms frame: every leg sends one packet, the mixer's clock ticks once
//! and every output packet is collected. Scenarios: customer + agent + supervisors in barge,
//! so each supervisor's mix has N inputs (N = 2, 3, 4). Rates: all PCMU (8 kHz mix), PCMU
//! customer with G.722 agent and supervisors (16 kHz mix, resampling), and with the `opus`
//! feature Opus agent and supervisors (48 kHz mix).
//! Run with `cargo bench -p bibridge-benches --bench mixer [--features opus]`.
#![allow(clippy::unwrap_used)]

use std::f64::consts::PI;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bibridge_media::codec::{CodecKind, Encoder};
use bibridge_media::mixer::{CallMixer, LegId, LegParams, LegRole, MixerConfig, SessionMode};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// One sending leg: its payload (a 20 ms tone frame) and RTP numbering.
struct Source {
    id: LegId,
    pt: u8,
    payload: Vec<u8>,
    seq: u16,
    ts: u32,
    step: u32,
    ssrc: u32,
}

fn payload_type(codec: CodecKind) -> u8 {
    match codec {
        CodecKind::Pcmu => 0,
        CodecKind::Pcma => 8,
        CodecKind::G722 => 9,
        CodecKind::Opus => 111,
    }
}

fn tone_payload(codec: CodecKind, freq: f64) -> Vec<u8> {
    let rate = codec.sample_rate();
    let pcm: Vec<i16> = (0..rate / 50)
        .map(|i| (3000.0 * (2.0 * PI * freq * f64::from(i) / f64::from(rate)).sin()) as i16)
        .collect();
    let mut enc = Encoder::new(codec).unwrap();
    let mut out = vec![0u8; 4000];
    let n = enc.encode(&pcm, &mut out).unwrap();
    out.truncate(n);
    out
}

/// A call with `inputs` inputs per supervisor mix: customer, agent and `inputs - 1` barge
/// supervisors, warmed up for one second.
fn setup(
    inputs: usize,
    customer: CodecKind,
    others: CodecKind,
) -> (CallMixer, Vec<Source>, Instant, u64) {
    let t0 = Instant::now();
    let mut m = CallMixer::new(MixerConfig::default(), 7);
    let mut sources = Vec::new();
    let freqs = [440.0, 1000.0, 2000.0, 2600.0, 3000.0];
    for (k, &freq) in freqs.iter().enumerate().take(inputs + 1) {
        let (role, codec) = match k {
            0 => (LegRole::Customer, customer),
            1 => (LegRole::Agent, others),
            _ => (LegRole::Supervisor(SessionMode::Barge), others),
        };
        let id = k as LegId + 1;
        let pt = payload_type(codec);
        m.add_leg(
            t0,
            id,
            LegParams {
                role,
                payload_type: pt,
                codec,
                dtmf_payload_type: Some(101),
                ptime_ms: 20,
            },
        )
        .unwrap();
        sources.push(Source {
            id,
            pt,
            payload: tone_payload(codec, freq),
            seq: 1000 * k as u16,
            ts: 0,
            step: codec.rtp_clock_rate() / 50,
            ssrc: 0x100 + k as u32,
        });
    }
    let mut frame = 0;
    for _ in 0..50 {
        one_frame(&mut m, &mut sources, t0, frame);
        frame += 1;
    }
    (m, sources, t0, frame)
}

/// One 20 ms frame of the call; returns the bytes sent.
fn one_frame(m: &mut CallMixer, sources: &mut [Source], t0: Instant, frame: u64) -> usize {
    let now = t0 + Duration::from_millis(20 * frame);
    let mut pkt = [0u8; 1500];
    for s in sources.iter_mut() {
        pkt[0] = 0x80;
        pkt[1] = s.pt;
        pkt[2..4].copy_from_slice(&s.seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&s.ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
        let len = 12 + s.payload.len();
        pkt[12..len].copy_from_slice(&s.payload);
        s.seq = s.seq.wrapping_add(1);
        s.ts = s.ts.wrapping_add(s.step);
        m.handle_rtp(now, s.id, &pkt[..len]);
    }
    m.handle_timeout(now);
    let mut out = [0u8; 1500];
    let mut bytes = 0;
    while let Some((_, n)) = m.poll_transmit(&mut out) {
        bytes += n;
    }
    bytes
}

fn bench_mixer(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixer_frame");
    let mut cases = vec![
        ("pcmu_8k", CodecKind::Pcmu, CodecKind::Pcmu),
        ("g722_16k", CodecKind::Pcmu, CodecKind::G722),
    ];
    if CodecKind::Opus.is_available() {
        cases.push(("opus_48k", CodecKind::Pcmu, CodecKind::Opus));
    }
    for (name, customer, others) in cases {
        for inputs in [2usize, 3, 4] {
            g.bench_with_input(BenchmarkId::new(name, inputs), &inputs, |b, &inputs| {
                let (mut m, mut sources, t0, mut frame) = setup(inputs, customer, others);
                b.iter(|| {
                    let n = one_frame(&mut m, &mut sources, t0, frame);
                    frame += 1;
                    black_box(n)
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_mixer);
criterion_main!(benches);
