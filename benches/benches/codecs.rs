//! Codec and resampler benchmarks: one 20 ms frame encoded and decoded per iteration (G.711 µ
//! and A law, G.722, and Opus with `--features opus`), and one 20 ms frame resampled 8 kHz →
//! 48 kHz and 48 kHz → 8 kHz. Run with
//! `cargo bench -p bibridge-benches --bench codecs --features opus`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bibridge_media::codec::{CodecKind, Decoder, Encoder};
use bibridge_media::resample::Resampler;
use criterion::{criterion_group, criterion_main, Criterion};

/// 20 ms of a speech-like test signal (two tones and a bit of pseudo-noise) at `rate`.
fn frame(rate: u32) -> Vec<i16> {
    let n = (rate / 50) as usize;
    let mut lcg = 12345u32;
    (0..n)
        .map(|i| {
            lcg = lcg.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let t = i as f64 / f64::from(rate);
            let noise = f64::from((lcg >> 20) as i32 - 2048);
            (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1270.0 * t).sin()
                + noise) as i16
        })
        .collect()
}

fn codec_round_trip(c: &mut Criterion, kind: CodecKind, name: &str) {
    let pcm = frame(kind.sample_rate());
    let mut enc = Encoder::new(kind).unwrap();
    let mut dec = Decoder::new(kind).unwrap();
    let mut payload = [0u8; 1500];
    let mut out = vec![0i16; pcm.len()];
    c.bench_function(&format!("codec/{name} encode+decode 20 ms"), |b| {
        b.iter(|| {
            let n = enc.encode(black_box(&pcm), &mut payload).unwrap();
            dec.decode(black_box(&payload[..n]), &mut out).unwrap()
        })
    });
}

fn codecs(c: &mut Criterion) {
    codec_round_trip(c, CodecKind::Pcmu, "PCMU");
    codec_round_trip(c, CodecKind::Pcma, "PCMA");
    codec_round_trip(c, CodecKind::G722, "G722");
    #[cfg(feature = "opus")]
    codec_round_trip(c, CodecKind::Opus, "Opus");
}

fn resampling(c: &mut Criterion) {
    for (from, to) in [(8000u32, 48000u32), (48000, 8000)] {
        let input = frame(from);
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::with_capacity((to / 50) as usize);
        c.bench_function(&format!("resample/{from}->{to} 20 ms"), |b| {
            b.iter(|| {
                out.clear();
                r.process(black_box(&input), &mut out);
                out.len()
            })
        });
    }
}

criterion_group!(benches, codecs, resampling);
criterion_main!(benches);
