//! Sine tone generator and a Goertzel tone detector, for "who hears whom" assertions.
//!
//! Levels are in dBFS with the AES17 convention: a full-scale sine (amplitude 32767) reads
//! 0 dBFS, both for a tone's level ([`tone_level_dbfs`]) and for the RMS level
//! ([`rms_dbfs`]).
//!
//! The detector evaluates the DTFT of the samples at exactly the tone frequency (generalised
//! Goertzel), so the block need not hold a whole number of cycles, with a 4-term
//! Blackman-Harris window: its side lobes are below -92 dB, so a tone 4 or more frequency
//! bins (`4 * sample_rate / len` Hz) away leaks nothing measurable into the reading.
//! One second of audio at 8 kHz resolves tones 4 Hz apart; 20 ms (160 samples) 200 Hz apart.

use std::f64::consts::PI;

/// Amplitude of a 0 dBFS sine.
pub const FULL_SCALE: f64 = 32767.0;

/// A phase-continuous sine generator.
#[derive(Debug, Clone)]
pub struct ToneGen {
    amplitude: f64,
    /// Phase advance per sample, radians.
    step: f64,
    phase: f64,
}

impl ToneGen {
    /// A sine of `freq_hz` at `level_dbfs` (0 = amplitude 32767), sampled at `sample_rate`.
    pub fn new(freq_hz: f64, level_dbfs: f64, sample_rate: u32) -> Self {
        Self {
            amplitude: FULL_SCALE * 10f64.powf(level_dbfs / 20.0),
            step: 2.0 * PI * freq_hz / f64::from(sample_rate.max(1)),
            phase: 0.0,
        }
    }

    /// Fill `out` with the next samples; consecutive calls continue the waveform without a
    /// phase jump.
    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            let v = (self.amplitude * self.phase.sin()).round();
            *s = v.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16;
            // Keep the phase small so precision does not degrade over long runs.
            self.phase = (self.phase + self.step) % (2.0 * PI);
        }
    }

    /// The next `n` samples as a vector.
    pub fn samples(&mut self, n: usize) -> Vec<i16> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// 4-term Blackman-Harris window coefficients (a0..a3).
const BH: [f64; 4] = [0.35875, 0.48829, 0.14128, 0.01168];

fn window(n: usize, len: usize) -> f64 {
    // Periodic form (denominator len): its coherent gain is exactly a0 for any length.
    let x = 2.0 * PI * n as f64 / len as f64;
    BH[0] - BH[1] * x.cos() + BH[2] * (2.0 * x).cos() - BH[3] * (3.0 * x).cos()
}

/// Power of the sinusoidal component at `freq` in `samples`: `A²/2` for a sine of amplitude
/// `A` (sample units squared), so it compares directly with a mean square. Windowed
/// (Blackman-Harris) and corrected for the window's gain. 0 for an empty block.
pub fn goertzel_power(samples: &[i16], freq: f64, sample_rate: u32) -> f64 {
    let len = samples.len();
    if len == 0 || sample_rate == 0 {
        return 0.0;
    }
    let w = 2.0 * PI * freq / f64::from(sample_rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut gain = 0.0;
    for (n, &x) in samples.iter().enumerate() {
        let wn = window(n, len);
        gain += wn;
        let s0 = f64::from(x) * wn + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    // |X(w)|² of the windowed block.
    let mag2 = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    // A sine of amplitude A gives |X| = A/2 * sum(w): A = 2|X| / sum(w).
    let amplitude2 = 4.0 * mag2 / (gain * gain);
    amplitude2 / 2.0
}

/// Level in dBFS of the sinusoid at `freq` (0 dBFS = full-scale sine). `-inf` if none at all.
pub fn tone_level_dbfs(samples: &[i16], freq: f64, sample_rate: u32) -> f64 {
    let p = goertzel_power(samples, freq, sample_rate);
    10.0 * (p / (FULL_SCALE * FULL_SCALE / 2.0)).log10()
}

/// RMS level in dBFS, AES17 convention (a full-scale sine reads 0 dBFS, a full-scale square
/// wave +3 dBFS). `-inf` for silence or an empty block.
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let ms = samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len() as f64;
    10.0 * (ms / (FULL_SCALE * FULL_SCALE / 2.0)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bibridge_media::g711;

    const RATE: u32 = 8000;
    const FREQS: [f64; 4] = [440.0, 1000.0, 2000.0, 2600.0];

    /// Sum of tones, each at `level`, `n` samples.
    fn mix(freqs: &[f64], level: f64, n: usize) -> Vec<i16> {
        let mut acc = vec![0i32; n];
        for &f in freqs {
            for (a, s) in acc.iter_mut().zip(ToneGen::new(f, level, RATE).samples(n)) {
                *a += i32::from(s);
            }
        }
        acc.into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect()
    }

    fn ulaw_round_trip(x: &[i16]) -> Vec<i16> {
        x.iter()
            .map(|&s| g711::ulaw_decode(g711::ulaw_encode(s)))
            .collect()
    }

    fn alaw_round_trip(x: &[i16]) -> Vec<i16> {
        x.iter()
            .map(|&s| g711::alaw_decode(g711::alaw_encode(s)))
            .collect()
    }

    #[test]
    fn full_scale_reads_zero_and_generator_level() {
        let x = ToneGen::new(1000.0, 0.0, RATE).samples(8000);
        assert!(tone_level_dbfs(&x, 1000.0, RATE).abs() < 0.01);
        assert!(rms_dbfs(&x).abs() < 0.01);
        assert_eq!(*x.iter().max().unwrap_or(&0), 32767);
        let x = ToneGen::new(440.0, -20.0, RATE).samples(8000);
        let level = tone_level_dbfs(&x, 440.0, RATE);
        assert!((level + 20.0).abs() < 0.05, "{level}");
        assert!((rms_dbfs(&x) + 20.0).abs() < 0.05);
        assert_eq!(rms_dbfs(&[0; 100]), f64::NEG_INFINITY);
        assert_eq!(rms_dbfs(&[]), f64::NEG_INFINITY);
        assert_eq!(goertzel_power(&[], 1000.0, RATE), 0.0);
    }

    #[test]
    fn phase_continuous_across_fills() {
        let whole = ToneGen::new(1234.5, -6.0, RATE).samples(480);
        let mut g = ToneGen::new(1234.5, -6.0, RATE);
        let mut parts = Vec::new();
        for _ in 0..3 {
            let mut b = [0i16; 160];
            g.fill(&mut b);
            parts.extend_from_slice(&b);
        }
        assert_eq!(whole, parts);
    }

    #[test]
    fn non_integer_cycles_and_short_blocks() {
        // 440 Hz in 20 ms = 8.8 cycles; the window keeps the reading accurate anyway.
        let x = ToneGen::new(440.0, -10.0, RATE).samples(160);
        let level = tone_level_dbfs(&x, 440.0, RATE);
        assert!((level + 10.0).abs() < 0.2, "{level}");
        let x = ToneGen::new(2600.0, -25.0, 16000).samples(1234);
        let level = tone_level_dbfs(&x, 2600.0, 16000);
        assert!((level + 25.0).abs() < 0.2, "{level}");
    }

    /// Exact level of the component at `freq` by a rectangular-window DFT; exact when the
    /// block holds a whole number of cycles of every component (true for 1 s at 8 kHz and
    /// whole-Hz frequencies).
    fn exact_level_dbfs(x: &[i16], freq: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &s) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * n as f64 / f64::from(RATE);
            re += f64::from(s) * ph.cos();
            im -= f64::from(s) * ph.sin();
        }
        let amp = 2.0 * (re * re + im * im).sqrt() / x.len() as f64;
        20.0 * (amp / FULL_SCALE).log10()
    }

    #[test]
    fn level_accurate_after_g711_from_minus30_to_minus6() {
        for &f in &FREQS {
            // G.711 itself moves the level of tones whose period is a whole number of samples
            // (1000 Hz = fs/8, 2000 Hz = fs/4): each cycle hits the same few quantisation
            // errors, which then do not average out, by up to half a step (~0.28 dB at
            // 2000 Hz). That is the decoded signal's real level, not a detector error
            // (checked against the exact DFT below), so those two get a 0.3 dB bound.
            let nominal_tol = if f == 1000.0 || f == 2000.0 { 0.3 } else { 0.2 };
            for level in (-30..=-6).map(f64::from) {
                let x = ToneGen::new(f, level, RATE).samples(8000);
                for (law, y) in [("u", ulaw_round_trip(&x)), ("A", alaw_round_trip(&x))] {
                    let got = tone_level_dbfs(&y, f, RATE);
                    let exact = exact_level_dbfs(&y, f);
                    assert!(
                        (got - exact).abs() <= 0.02,
                        "{f} Hz at {level} dBFS via {law}-law: read {got}, exact {exact}"
                    );
                    assert!(
                        (got - level).abs() <= nominal_tol,
                        "{f} Hz at {level} dBFS via {law}-law read {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_blocks_after_g711() {
        // 20 ms blocks (one packet) of a -20 dBFS tone, read block by block.
        for &f in &[440.0, 2600.0] {
            let x = ulaw_round_trip(&ToneGen::new(f, -20.0, RATE).samples(1600));
            for block in x.chunks(160) {
                let got = tone_level_dbfs(block, f, RATE);
                assert!((got + 20.0).abs() <= 0.5, "{f} Hz 20 ms block read {got}");
            }
        }
    }

    #[test]
    fn absent_tone_reads_below_minus60_with_others_present() {
        for (i, &absent) in FREQS.iter().enumerate() {
            let others: Vec<f64> = FREQS
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &f)| f)
                .collect();
            let x = mix(&others, -20.0, 8000);
            for (law, y) in [("u", ulaw_round_trip(&x)), ("A", alaw_round_trip(&x))] {
                let got = tone_level_dbfs(&y, absent, RATE);
                assert!(got < -60.0, "{absent} Hz absent via {law}-law read {got}");
                for &f in &others {
                    let present = tone_level_dbfs(&y, f, RATE);
                    assert!((present + 20.0).abs() <= 0.2, "{f} Hz read {present}");
                }
            }
            // Also each present tone on its own: no leakage into the absent frequency.
            for &f in &others {
                let y = ulaw_round_trip(&ToneGen::new(f, -20.0, RATE).samples(8000));
                let got = tone_level_dbfs(&y, absent, RATE);
                assert!(got < -60.0, "{absent} Hz with only {f} Hz read {got}");
            }
        }
    }

    #[test]
    fn silence_and_noise_floor() {
        assert_eq!(tone_level_dbfs(&[0; 800], 1000.0, RATE), f64::NEG_INFINITY);
        // Off-frequency by 300 Hz on a 20 ms block: still far down.
        let x = ToneGen::new(1300.0, -6.0, RATE).samples(160);
        assert!(tone_level_dbfs(&x, 1000.0, RATE) < -60.0);
    }
}
