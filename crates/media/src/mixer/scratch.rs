//! The mixing scratch buffers, reused for every packet and tick.

use std::time::Duration;

use super::limits::{ensure_capacity, samples_in, vec_bytes, MAX_ENCODED, MAX_PCM, MAX_RATE};

/// Scratch buffers of the mixing path. Empty while the call is only relayed; sized once by
/// [`reserve`](Self::reserve) when something is first mixed, and kept.
#[derive(Default)]
pub(super) struct Scratch {
    /// A decoded packet at its native rate.
    pub(super) pcm: Vec<i16>,
    /// An input converted to a mix rate.
    pub(super) rs: Vec<i16>,
    /// The mix accumulator (sums saturate once, when it is narrowed into `mix`).
    pub(super) acc: Vec<i32>,
    /// The saturated mix at its mix rate.
    pub(super) mix: Vec<i16>,
    /// The mix at the output codec's rate.
    pub(super) out: Vec<i16>,
    /// An encoded payload.
    pub(super) enc: Vec<u8>,
}

impl Scratch {
    /// Size every buffer for the longest frame it can hold.
    ///
    /// A packet-clocked frame is at most [`MAX_PACKET_MS`](super::limits::MAX_PACKET_MS) of
    /// audio (longer packets are discarded) at a mix rate of at most [`MAX_RATE`]; a clocked
    /// frame is one `ptime` at that rate. Every scratch buffer holds one such frame at most.
    pub(super) fn reserve(&mut self, ptime: Duration) {
        let cap = MAX_PCM.max(samples_in(ptime, MAX_RATE));
        ensure_capacity(&mut self.pcm, MAX_PCM);
        ensure_capacity(&mut self.rs, cap);
        ensure_capacity(&mut self.acc, cap);
        ensure_capacity(&mut self.mix, cap);
        ensure_capacity(&mut self.out, cap);
        if self.enc.len() < MAX_ENCODED {
            self.enc.resize(MAX_ENCODED, 0);
        }
    }

    /// Heap held.
    pub(super) fn heap_bytes(&self) -> usize {
        vec_bytes(&self.pcm)
            + vec_bytes(&self.rs)
            + vec_bytes(&self.acc)
            + vec_bytes(&self.mix)
            + vec_bytes(&self.out)
            + vec_bytes(&self.enc)
    }
}
