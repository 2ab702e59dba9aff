//! The input level meter: a sliding-window sample peak of a leg's decoded audio.

/// What [`CallMixer::input_level`](crate::mixer::CallMixer::input_level) reads for silence,
/// dBFS: about one LSB of 16-bit audio.
pub const LEVEL_FLOOR_DBFS: f32 = -90.0;

/// The input level meter's window, ms: the level is the peak of the current window and the
/// previous one, i.e. of the last 100–200 ms.
pub(super) const METER_WINDOW_MS: u32 = 100;

/// Sliding-window sample peak of a leg's decoded input (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PeakMeter {
    /// Peak |sample| of the window being filled and of the one before it.
    pub(super) cur: u16,
    pub(super) prev: u16,
    /// Samples in the window being filled.
    pub(super) filled: u32,
    /// Something was fed since the leg became metered.
    pub(super) fed: bool,
}

impl PeakMeter {
    /// Take `pcm` (at `rate` Hz): one pass for the block's peak, then window bookkeeping.
    pub(super) fn feed(&mut self, pcm: &[i16], rate: u32) {
        let peak = pcm.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
        self.cur = self.cur.max(peak);
        self.filled = self.filled.saturating_add(pcm.len() as u32);
        self.fed = true;
        if self.filled >= rate * METER_WINDOW_MS / 1000 {
            self.prev = self.cur;
            self.cur = 0;
            self.filled = 0;
        }
    }

    pub(super) fn level_dbfs(&self) -> Option<f32> {
        if !self.fed {
            return None;
        }
        let peak = self.cur.max(self.prev);
        if peak == 0 {
            return Some(LEVEL_FLOOR_DBFS);
        }
        Some((20.0 * (f32::from(peak) / 32768.0).log10()).max(LEVEL_FLOOR_DBFS))
    }
}
