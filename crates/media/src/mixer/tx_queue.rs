//! The transmit queue (a ring of reusable packet buffers) and how a generated packet is
//! written into it.

use super::limits::vec_bytes;
use super::types::LegId;
use crate::rtp::StreamRewriter;

/// Packets the transmit queue holds before the oldest is dropped, once anything is mixed.
pub(super) const TX_SLOTS: usize = 64;

/// The same while the call is only relayed: a relay sends at most one packet per packet
/// received, and the owner drains the queue after each; the spare slots cover an owner that
/// handles a few packets before draining.
pub(super) const TX_SLOTS_RELAY: usize = 4;

/// Initial capacity of a transmit slot (grows once for larger relayed datagrams).
pub(super) const TX_SLOT_BYTES: usize = 1500;

/// A ring of transmit slots: [`TX_SLOTS_RELAY`] while the call is relayed, [`TX_SLOTS`] once
/// anything is mixed (grown by `replan`, never shrunk).
pub(super) struct TxQueue {
    pub(super) slots: Vec<(LegId, bool, Vec<u8>)>,
    pub(super) head: usize,
    pub(super) len: usize,
    pub(super) dropped: u64,
}

impl TxQueue {
    pub(super) fn new() -> Self {
        let mut q = Self {
            slots: Vec::new(),
            head: 0,
            len: 0,
            dropped: 0,
        };
        q.grow(TX_SLOTS_RELAY);
        q
    }

    /// Hold at least `slots` packets; the queued ones stay queued, in order.
    pub(super) fn grow(&mut self, slots: usize) {
        if self.slots.len() >= slots {
            return;
        }
        // Unwrap the ring so the new slots land after its last packet.
        self.slots.rotate_left(self.head);
        self.head = 0;
        self.slots.reserve_exact(slots - self.slots.len());
        self.slots
            .resize_with(slots, || (0, false, Vec::with_capacity(TX_SLOT_BYTES)));
    }

    pub(super) fn heap_bytes(&self) -> usize {
        vec_bytes(&self.slots) + self.slots.iter().map(|s| s.2.capacity()).sum::<usize>()
    }

    /// The buffer of the next slot, emptied; the packet is queued by [`commit`](Self::commit).
    /// A full queue drops its oldest packet.
    pub(super) fn reserve(&mut self, leg: LegId) -> &mut Vec<u8> {
        let cap = self.slots.len();
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.dropped += 1;
        }
        let i = (self.head + self.len) % cap;
        let slot = &mut self.slots[i];
        slot.0 = leg;
        slot.1 = true;
        slot.2.clear();
        &mut slot.2
    }

    pub(super) fn commit(&mut self) {
        self.len += 1;
    }

    /// Forget the packets queued for `leg`.
    pub(super) fn cancel(&mut self, leg: LegId) {
        let cap = self.slots.len();
        for k in 0..self.len {
            let slot = &mut self.slots[(self.head + k) % cap];
            if slot.0 == leg {
                slot.1 = false;
            }
        }
    }

    pub(super) fn pop_into(&mut self, buf: &mut [u8]) -> Option<(LegId, usize)> {
        let cap = self.slots.len();
        while self.len > 0 {
            let (leg, live, data) = &self.slots[self.head];
            let (leg, live) = (*leg, *live);
            let n = data.len();
            let fits = n <= buf.len();
            if live && fits {
                buf[..n].copy_from_slice(data);
            }
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            if live {
                if fits {
                    return Some((leg, n));
                }
                self.dropped += 1;
            }
        }
        None
    }
}

/// Write a fixed RTP header (no CSRC, no extension, no padding) followed by `payload`.
pub(super) fn write_packet(
    out: &mut Vec<u8>,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A rewriter for a stream that starts with a generated packet: random SSRC, sequence
/// number and timestamp (RFC 3550 §5.1).
pub(super) fn new_rewriter(r: u64) -> StreamRewriter {
    StreamRewriter::new((r >> 32) as u32, (r >> 16) as u16, r as u32)
}
