//! Sample-rate conversion stages that keep frames aligned, and the per-rate views of a tick
//! frame.

use super::limits::{vec_bytes, MAX_PCM};
use crate::resample::Resampler;
use crate::MediaError;

/// A resampling stage that always yields exactly `len * to / from` samples per call, so
/// frames stay aligned whatever the resampler's own latency (its start is zero-padded).
pub(super) struct Conv {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) rs: Option<Resampler>,
    /// Output of the resampler not yet handed out.
    pub(super) carry: Vec<i16>,
}

impl Conv {
    pub(super) fn new(from: u32, to: u32) -> Result<Self, MediaError> {
        let (rs, carry) = if from == to {
            // A plain copy: nothing is carried over.
            (None, Vec::new())
        } else {
            (
                Some(Resampler::new(from, to)?),
                Vec::with_capacity(MAX_PCM * 2),
            )
        };
        Ok(Self {
            from,
            to,
            rs,
            carry,
        })
    }

    /// Heap held (the resampler's filter tables, under 1 KiB, are not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        vec_bytes(&self.carry)
    }

    /// Append `input` converted to `to` Hz onto `out`.
    pub(super) fn run(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(rs) = self.rs.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        let want = (input.len() as u64 * u64::from(self.to) / u64::from(self.from)) as usize;
        rs.process(input, &mut self.carry);
        let take = want.min(self.carry.len());
        out.extend(self.carry.drain(..take));
        out.resize(out.len() + (want - take), 0);
        // A resampler that ran ahead (it should not) must not turn into growing delay.
        if self.carry.len() > want {
            let excess = self.carry.len() - want;
            self.carry.drain(..excess);
        }
    }
}

/// One input's current tick frame converted to a mix rate.
pub(super) struct View {
    pub(super) conv: Conv,
    pub(super) buf: Vec<i16>,
}
