//! Notification tones (compliance beeps) generated inside the mixer.
//!
//! A [`Tone`] is one or more sine bursts separated by silent gaps. `ToneGen` renders it into
//! a mix accumulator block by block: a phase accumulator and a position counter, nothing
//! precomputed, so producing a frame neither allocates nor depends on the frame size.

use std::f32::consts::{PI, TAU};
use std::time::Duration;

/// Length of the raised-cosine fade at each burst edge: a sine switched on or off abruptly is
/// heard as a click.
const RAMP: Duration = Duration::from_millis(5);

/// A notification tone: `beeps` bursts of `freq_hz` lasting `duration` each, separated by
/// `gap` of silence. The level is the sine's peak relative to full scale (0 dBFS = a
/// full-scale sine, as for [`CallMixer::input_level`](crate::mixer::CallMixer::input_level)).
///
/// The frequency should stay below half the sample rate of the leg that hears it (4 kHz for
/// G.711).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tone {
    /// Frequency of the bursts, Hz.
    pub freq_hz: f32,
    /// Length of one burst.
    pub duration: Duration,
    /// Peak level, dBFS.
    pub level_dbfs: f32,
    /// Number of bursts; 0 is taken as 1.
    pub beeps: u8,
    /// Silence between two bursts.
    pub gap: Duration,
}

impl Default for Tone {
    /// The compliance default: one 1400 Hz burst of 200 ms at −20 dBFS.
    fn default() -> Self {
        Self {
            freq_hz: 1400.0,
            duration: Duration::from_millis(200),
            level_dbfs: -20.0,
            beeps: 1,
            gap: Duration::from_millis(200),
        }
    }
}

impl Tone {
    /// Total length: every burst and the gaps between them.
    pub fn total(&self) -> Duration {
        let beeps = u32::from(self.beeps.max(1));
        self.duration * beeps + self.gap * (beeps - 1)
    }
}

/// Samples in `d` at `rate` Hz.
fn samples(d: Duration, rate: u32) -> u64 {
    (u128::from(rate) * d.as_micros() / 1_000_000) as u64
}

/// A [`Tone`] being rendered at one sample rate.
#[derive(Clone, Debug)]
pub(crate) struct ToneGen {
    tone: Tone,
    rate: u32,
    /// Samples rendered (or skipped) so far.
    pos: u64,
    /// Burst length, burst + gap, whole tone and fade length, in samples at `rate`.
    burst: u64,
    cycle: u64,
    total: u64,
    ramp: u64,
    /// Phase accumulator: a full turn is 2^32, so it wraps by itself.
    phase: u32,
    inc: u32,
    /// Peak amplitude in sample units.
    amp: f32,
}

impl ToneGen {
    pub(crate) fn new(tone: Tone, rate: u32) -> Self {
        let amp = (32768.0 * 10f32.powf(tone.level_dbfs / 20.0)).clamp(0.0, 32767.0);
        let mut g = Self {
            tone,
            rate: 0,
            pos: 0,
            burst: 0,
            cycle: 0,
            total: 0,
            ramp: 0,
            phase: 0,
            inc: 0,
            amp,
        };
        g.set_rate(rate);
        g
    }

    /// Render at `rate` from now on; the position keeps its place in time.
    pub(crate) fn set_rate(&mut self, rate: u32) {
        let rate = rate.max(1);
        if rate == self.rate {
            return;
        }
        if self.rate != 0 {
            self.pos = self.pos * u64::from(rate) / u64::from(self.rate);
        }
        self.rate = rate;
        let t = &self.tone;
        self.burst = samples(t.duration, rate);
        self.cycle = self.burst + samples(t.gap, rate);
        self.total = samples(t.total(), rate);
        // Short bursts: the two fades meet in the middle.
        self.ramp = samples(RAMP, rate).min(self.burst / 2).max(1);
        let turns = f64::from(t.freq_hz.max(0.0)) / f64::from(rate);
        self.inc = (turns.fract() * 4_294_967_296.0) as u32;
    }

    /// Whether the whole tone has been rendered.
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.total
    }

    /// Add the next `acc.len()` samples of the tone to `acc` (past its end: nothing).
    pub(crate) fn add_to(&mut self, acc: &mut [i32]) {
        for a in acc.iter_mut() {
            if self.pos >= self.total {
                break;
            }
            let k = self.pos % self.cycle.max(1);
            if k < self.burst {
                let edge = k.min(self.burst - 1 - k);
                let env = if edge < self.ramp {
                    0.5 - 0.5 * (PI * edge as f32 / self.ramp as f32).cos()
                } else {
                    1.0
                };
                let x = (self.phase as f32) * (TAU / 4_294_967_296.0);
                *a += (self.amp * env * x.sin()).round() as i32;
            }
            self.phase = self.phase.wrapping_add(self.inc);
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_gaps_and_fades() {
        let tone = Tone {
            freq_hz: 1000.0,
            duration: Duration::from_millis(50),
            level_dbfs: -6.0,
            beeps: 2,
            gap: Duration::from_millis(30),
        };
        assert_eq!(tone.total(), Duration::from_millis(130));
        let mut g = ToneGen::new(tone, 8000);
        let mut acc = vec![0i32; 2000];
        g.add_to(&mut acc);
        assert!(g.done());
        let peak = |r: std::ops::Range<usize>| acc[r].iter().map(|x| x.abs()).max().unwrap_or(0);
        let amp = (32768.0 * 10f64.powf(-6.0 / 20.0)) as i32;
        // Full level inside a burst, silence in the gap and after the end.
        assert!((peak(100..300) - amp).abs() <= 2);
        assert_eq!(peak(400..640), 0);
        assert!((peak(740..940) - amp).abs() <= 2);
        assert_eq!(peak(1040..2000), 0);
        // The fade: the first samples are far below the peak.
        assert!(peak(0..4) < amp / 20);
        assert!(peak(396..400) < amp / 20);
    }

    #[test]
    fn rate_change_keeps_the_position() {
        let mut g = ToneGen::new(Tone::default(), 8000);
        g.add_to(&mut vec![0i32; 800]);
        g.set_rate(16000);
        let mut acc = vec![0i32; 1600];
        g.add_to(&mut acc);
        assert!(g.done(), "100 ms at 8 kHz + 100 ms at 16 kHz = 200 ms");
    }
}
