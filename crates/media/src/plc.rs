//! Packet loss concealment for codecs without their own (G.711, G.722), in the manner of ITU-T
//! G.711 Appendix I: pitch-period repetition from a history of the output, with overlap-add at
//! every join. Written from the published description of the algorithm.
//!
//! # Algorithm
//! - **History.** The last 48.75 ms of output (3 longest pitch periods plus a quarter of one) is
//!   kept; concealed audio is part of the output and goes into it too.
//! - **Pitch.** At the start of an erasure the pitch period `P` is the lag between 5 and 15 ms
//!   that maximises the normalised cross-correlation of the last 20 ms with the history before
//!   them (a coarse search on every second lag at 16 kHz, then refined). A tone above 200 Hz
//!   yields a multiple of its period, which repeats it just as well.
//! - **Synthesis.** The erased audio is the last period repeated; after 10 ms of erasure the last
//!   two periods, after 20 ms the last three (a single period repeated for long buzzes). The
//!   loop's end is overlap-added over a quarter period with the audio just before the loop's
//!   start, so each wrap is seamless; a change from `k` to `k + 1` periods is an overlap-add of a
//!   quarter period between the two loops, at the same phase.
//! - **Start of the erasure.** Appendix I delays its output by a quarter of the longest period
//!   (3.75 ms) to overlap-add the last good samples with the repetition. A bridge wants no added
//!   delay, so here nothing is delayed: the repetition starts one period back, and the step
//!   between the last good sample and the sample the repetition "expects" before it is carried
//!   into the first quarter period and faded out there (an overlap-add of the repetition and
//!   its level-matched copy). The join has no step beyond the signal's own.
//! - **Attenuation.** Full level for the first 10 ms, then a linear fade of 20 % per 10 ms: muted
//!   after 60 ms.
//! - **End of the erasure.** The first good audio is overlap-added with the continued
//!   synthesis over a quarter period, plus 4 ms for each 10 ms of erasure beyond the first,
//!   at most 10 ms.
//!
//! # Resources
//! Fixed buffers sized in [`Plc::new`] for the sample rate (1.5 KiB at 8 kHz, 3 KiB at 16 kHz);
//! nothing allocates afterwards.

/// History length in ms·4 (48.75 ms = 195 / 4).
const HISTORY_QUARTER_MS: usize = 195;
/// Shortest and longest pitch period searched, ms.
const PITCH_MIN_MS: usize = 5;
const PITCH_MAX_MS: usize = 15;
/// Correlation window, ms.
const CORR_MS: usize = 20;
/// Attenuation starts after, and the periods used grow every, this many ms.
const STEP_MS: usize = 10;
/// Muted from this many ms of erasure on.
const MUTE_MS: usize = 60;
/// Most periods in the repetition loop.
const MAX_PERIODS: usize = 3;

/// Concealment state of one decoded stream. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Plc {
    /// Samples per ms.
    per_ms: usize,
    /// The last output samples, oldest first (zeros before the stream started).
    hist: Box<[i16]>,
    /// The history as it was when the erasure started: the repetition's source.
    snap: Box<[i16]>,
    /// Samples concealed in the current erasure; 0 while audio is good.
    erased: usize,
    /// Pitch period and overlap (a quarter of it), samples.
    pitch: usize,
    ov: usize,
    /// Periods in the loop, and the position in it.
    periods: usize,
    pos: usize,
    /// While changing from `periods - 1` to `periods` periods: samples of cross-fade left and
    /// the position in the old loop.
    xfade: usize,
    old_pos: usize,
    /// Step carried into the start of the erasure, faded out over `ov` samples.
    offset: f32,
}

impl Plc {
    /// Concealment for audio at `sample_rate` Hz (8000 or 16000 for G.711 and G.722; any
    /// multiple of 1000 works).
    pub fn new(sample_rate: u32) -> Plc {
        let per_ms = (sample_rate as usize / 1000).max(1);
        let len = HISTORY_QUARTER_MS * per_ms / 4;
        Plc {
            per_ms,
            hist: vec![0; len].into_boxed_slice(),
            snap: vec![0; len].into_boxed_slice(),
            erased: 0,
            pitch: PITCH_MIN_MS * per_ms,
            ov: 1,
            periods: 1,
            pos: 0,
            xfade: 0,
            old_pos: 0,
            offset: 0.0,
        }
    }

    /// Heap bytes a [`Plc`] for `sample_rate` holds (its history and snapshot).
    pub fn heap_bytes_at(sample_rate: u32) -> usize {
        let per_ms = (sample_rate as usize / 1000).max(1);
        2 * (HISTORY_QUARTER_MS * per_ms / 4) * std::mem::size_of::<i16>()
    }

    /// Whether an erasure is being concealed (no good audio since the last [`conceal`]).
    ///
    /// [`conceal`]: Self::conceal
    pub fn in_erasure(&self) -> bool {
        self.erased > 0
    }

    /// Good audio was decoded into `frame`: after an erasure its start is merged with the
    /// continued synthesis (in place); it then goes into the history.
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.erased > 0 {
            let extra = self.erased.saturating_sub(STEP_MS * self.per_ms) / (STEP_MS * self.per_ms);
            let len = (self.ov + 4 * self.per_ms * extra)
                .min(STEP_MS * self.per_ms)
                .min(frame.len());
            for (i, s) in frame.iter_mut().take(len).enumerate() {
                let syn = self.next_synth();
                let t = (i + 1) as f32 / (len + 1) as f32;
                *s = sat((1.0 - t) * syn + t * f32::from(*s));
            }
            self.erased = 0;
        }
        self.remember(frame);
    }

    /// Fill all of `out` with concealment of lost audio (any length: successive calls continue
    /// one erasure).
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.erased == 0 {
            self.start_erasure();
        }
        for o in out.iter_mut() {
            *o = sat(self.next_synth());
        }
        self.remember(out);
    }

    /// Takes the snapshot, finds the pitch and sets up the loop.
    fn start_erasure(&mut self) {
        self.snap.copy_from_slice(&self.hist);
        self.pitch = self.find_pitch();
        self.ov = (self.pitch / 4).max(1);
        self.periods = 1;
        self.pos = 0;
        self.xfade = 0;
        let n = self.snap.len();
        // The repetition starts at snap[n - P]; the sample it follows in the snapshot is
        // snap[n - P - 1], the real one was snap[n - 1]: carry that step and fade it out.
        let last = f32::from(self.snap[n - 1]);
        let before = f32::from(self.snap[n - self.pitch - 1]);
        self.offset = last - before;
    }

    /// The lag in [5, 15] ms maximising the normalised cross-correlation of the last 20 ms
    /// with the audio one lag earlier.
    fn find_pitch(&self) -> usize {
        let (min, max) = (PITCH_MIN_MS * self.per_ms, PITCH_MAX_MS * self.per_ms);
        let win = CORR_MS * self.per_ms;
        let n = self.snap.len();
        let x = &self.snap;
        let score = |lag: usize, step: usize| -> f64 {
            let (mut xy, mut yy) = (0.0f64, 0.0f64);
            let mut i = n - win;
            while i < n {
                let a = f64::from(x[i]);
                let b = f64::from(x[i - lag]);
                xy += a * b;
                yy += b * b;
                i += step;
            }
            if yy <= 0.0 {
                f64::NEG_INFINITY
            } else {
                xy / yy.sqrt()
            }
        };
        // Coarse: every `step`-th lag on every `step`-th sample (one sample per 8 kHz sample).
        let step = (self.per_ms / 8).max(1);
        let mut best = (max, f64::NEG_INFINITY);
        let mut lag = min;
        while lag <= max {
            let s = score(lag, step);
            if s > best.1 {
                best = (lag, s);
            }
            lag += step;
        }
        if step > 1 {
            let (lo, hi) = (
                best.0.saturating_sub(step).max(min),
                (best.0 + step).min(max),
            );
            let coarse = best.0;
            best = (coarse, score(coarse, 1));
            for lag in lo..=hi {
                let s = score(lag, 1);
                if s > best.1 {
                    best = (lag, s);
                }
            }
        }
        best.0
    }

    /// Sample `j` of the loop of `k` periods (before attenuation).
    fn loop_sample(&self, k: usize, j: usize) -> f32 {
        let n = self.snap.len();
        let span = k * self.pitch;
        let start = n - span;
        let raw = f32::from(self.snap[start + j]);
        if j + self.ov < span {
            return raw;
        }
        // The loop's last quarter period fades into the audio just before its start, so the
        // wrap back to the start continues that audio.
        let t = (j + self.ov + 1 - span) as f32 / (self.ov + 1) as f32;
        let before = f32::from(self.snap[start + j - span]);
        (1.0 - t) * raw + t * before
    }

    /// The next synthetic sample, attenuated; advances the erasure.
    fn next_synth(&mut self) -> f32 {
        let step = STEP_MS * self.per_ms;
        if self.erased > 0 && self.erased.is_multiple_of(step) && self.periods < MAX_PERIODS {
            // Every 10 ms: one more period in the loop (from further back), same phase.
            let grown = self.periods + 1;
            if grown * self.pitch + self.ov <= self.snap.len() {
                self.old_pos = self.pos;
                self.pos %= self.pitch;
                self.periods = grown;
                self.xfade = self.ov;
            }
        }
        let mut v = self.loop_sample(self.periods, self.pos);
        if self.xfade > 0 {
            let old = self.loop_sample(self.periods - 1, self.old_pos);
            let t = (self.ov - self.xfade + 1) as f32 / (self.ov + 1) as f32;
            v = (1.0 - t) * old + t * v;
            self.xfade -= 1;
            self.old_pos += 1;
            if self.old_pos >= (self.periods - 1) * self.pitch {
                self.old_pos = 0;
            }
        }
        if self.erased < self.ov {
            v += self.offset * (self.ov - self.erased) as f32 / (self.ov + 1) as f32;
        }
        self.pos += 1;
        if self.pos >= self.periods * self.pitch {
            self.pos = 0;
        }
        let gain = if self.erased < step {
            1.0
        } else {
            let fade = (self.erased - step) as f32 / (step * (MUTE_MS / STEP_MS - 1)) as f32;
            (1.0 - fade).max(0.0)
        };
        self.erased = self.erased.saturating_add(1);
        v * gain
    }

    /// Append output to the history.
    fn remember(&mut self, x: &[i16]) {
        let len = self.hist.len();
        if x.len() >= len {
            self.hist.copy_from_slice(&x[x.len() - len..]);
        } else {
            self.hist.copy_within(x.len().., 0);
            self.hist[len - x.len()..].copy_from_slice(x);
        }
    }
}

fn sat(v: f32) -> i16 {
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: f64, amp: f64, n: usize, phase0: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + phase0) as f64 / rate;
                (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    /// Amplitude of the sine at `freq` in `x` (Goertzel, Hann window, corrected).
    fn amplitude(x: &[i16], freq: f64, rate: f64) -> f64 {
        let n = x.len();
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2, mut gain) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &v) in x.iter().enumerate() {
            let win = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            gain += win;
            let s0 = f64::from(v) * win + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let mag = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt();
        2.0 * mag / gain
    }

    fn db(a: f64, b: f64) -> f64 {
        20.0 * (a / b).log10()
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    /// Run `frames` 20 ms frames of a tone through the PLC, losing the frames in `lost`.
    fn run(freq: f64, rate: usize, frames: usize, lost: &[usize]) -> (Vec<i16>, Vec<i16>) {
        let f = rate / 50;
        let amp = 10000.0;
        let mut plc = Plc::new(rate as u32);
        let input = tone(freq, rate as f64, amp, f * frames, 0);
        let mut out = Vec::new();
        for (k, frame) in input.chunks(f).enumerate() {
            let mut buf = frame.to_vec();
            if lost.contains(&k) {
                plc.conceal(&mut buf);
            } else {
                plc.good(&mut buf);
            }
            out.extend_from_slice(&buf);
        }
        (input, out)
    }

    #[test]
    fn one_lost_frame_of_a_tone_is_the_tone_at_its_level() {
        for (freq, rate) in [(440.0, 8000), (440.0, 16000), (1000.0, 8000), (210.0, 8000)] {
            let f = rate / 50;
            let (input, out) = run(freq, rate, 20, &[10]);
            let concealed = &out[10 * f..11 * f];
            let a = amplitude(concealed, freq, rate as f64);
            let level = db(a, 10000.0);
            assert!(level.abs() < 3.0, "{freq} Hz @ {rate}: level {level:.2} dB");
            // Its energy is at the tone's frequency, not spread around it.
            let off = amplitude(concealed, freq * 1.5, rate as f64);
            assert!(
                db(off, a) < -20.0,
                "{freq} Hz @ {rate}: {:.1} dB off",
                db(off, a)
            );
            // No discontinuity: no sample step above the tone's own largest, plus 20 %.
            let own = max_step(&input);
            let joins = &out[10 * f - 5..11 * f + 40];
            let step = max_step(joins);
            assert!(
                f64::from(step) <= f64::from(own) * 1.2,
                "{freq} Hz @ {rate}: step {step} > {own}"
            );
        }
    }

    #[test]
    fn long_loss_fades_and_is_muted_after_60_ms() {
        // 80 ms lost (frames 10..14) of a 440 Hz tone at 8 kHz.
        let (input, out) = run(440.0, 8000, 20, &[10, 11, 12, 13]);
        let ms = |a: usize, b: usize| &out[1600 + a * 8..1600 + b * 8];
        let first = db(amplitude(ms(0, 10), 440.0, 8000.0), 10000.0);
        assert!(first.abs() < 1.5, "first 10 ms at {first:.2} dB");
        // Level falls 10 ms by 10 ms.
        let levels: Vec<f64> = (1..6)
            .map(|k| {
                let x = ms(k * 10, k * 10 + 10);
                (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
            })
            .collect();
        assert!(levels.windows(2).all(|w| w[1] < w[0]), "{levels:?}");
        assert!(ms(60, 80).iter().all(|&s| s == 0), "not muted after 60 ms");
        // The good audio after the erasure comes back smoothly (fade-in, no click).
        let own = max_step(&input);
        assert!(
            f64::from(max_step(&out[2200..2500])) <= f64::from(own) * 1.2,
            "click at the resume"
        );
        let resumed = db(amplitude(&out[2600..3200], 440.0, 8000.0), 10000.0);
        assert!(resumed.abs() < 0.5, "resumed at {resumed:.2} dB");
    }

    #[test]
    fn joins_have_no_steps_for_losses_of_any_length() {
        for lost in [vec![5], vec![5, 6], vec![5, 6, 7], vec![5, 7, 9, 10]] {
            let (input, out) = run(440.0, 8000, 14, &lost);
            let own = max_step(&input);
            let step = max_step(&out);
            assert!(
                f64::from(step) <= f64::from(own) * 1.2,
                "lost {lost:?}: step {step} > {own}"
            );
        }
    }

    #[test]
    fn silence_before_any_audio_conceals_as_silence() {
        let mut plc = Plc::new(8000);
        let mut out = [7i16; 160];
        plc.conceal(&mut out);
        assert!(out.iter().all(|&s| s == 0));
        assert!(plc.in_erasure());
        plc.good(&mut [0i16; 160]);
        assert!(!plc.in_erasure());
    }

    #[test]
    fn odd_sizes_and_tiny_frames_do_not_panic() {
        let mut plc = Plc::new(16000);
        let t = tone(300.0, 16000.0, 20000.0, 2000, 0);
        plc.good(&mut t[..1000].to_vec());
        for n in [0usize, 1, 3, 77, 5000] {
            let mut buf = vec![0i16; n];
            plc.conceal(&mut buf);
        }
        let mut one = [1000i16];
        plc.good(&mut one);
        let mut big = t.clone();
        plc.good(&mut big);
        let mut buf = vec![0i16; 320];
        plc.conceal(&mut buf);
        assert!(buf.iter().any(|&s| s != 0));
    }
}
