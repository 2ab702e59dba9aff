//! Sizes and bounds shared by the mixer's parts, and the buffer helpers that apply them.

use std::time::Duration;

/// The longest audio one packet may carry on a packet-clocked path: 120 ms.
pub(super) const MAX_PACKET_MS: u32 = 120;

/// The highest sample rate of any codec, and so of any mix.
pub(super) const MAX_RATE: u32 = 48_000;

/// Samples of [`MAX_PACKET_MS`] at 48 kHz, the highest rate: decode buffer size.
pub(super) const MAX_PCM: usize = (MAX_RATE / 1000 * MAX_PACKET_MS) as usize;

/// Largest encoded payload we produce (Opus' maximum for 120 ms is below this).
pub(super) const MAX_ENCODED: usize = 4000;

/// A supervisor FIFO feeding a packet-clocked mix holds at most this many frames: the two
/// clocks drift, and the excess is dropped rather than becoming delay.
pub(super) const SIDE_MAX_FRAMES: usize = 3;

/// Events queued before the oldest is dropped (the owner polls after every call).
pub(super) const MAX_EVENTS: usize = 32;

/// Samples in `d` at `rate` Hz.
pub(super) fn samples_in(d: Duration, rate: u32) -> usize {
    (u128::from(rate) * d.as_micros() / 1_000_000) as usize
}

/// Bytes of a vector's capacity.
pub(super) fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Make `v` hold at least `cap` elements without growing later.
pub(super) fn ensure_capacity<T>(v: &mut Vec<T>, cap: usize) {
    if v.capacity() < cap {
        v.reserve(cap - v.len());
    }
}
