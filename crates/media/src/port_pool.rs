//! The RTP port pool: hands out even RTP ports whose RTCP companion (port + 1) is also in the
//! configured range (RFC 3550 §11: RTP on an even port, RTCP on the next odd one).
//!
//! Ports are chosen **uniformly at random** among the free pairs, with a CSPRNG (ChaCha20)
//! seeded by the driver (OS entropy in the server, a fixed seed in tests): the ports of the next
//! call cannot be predicted from those of earlier calls (issue 12: sequential ports let an
//! attacker spray the next call's ports before its parties send).
//!
//! **Quarantine:** a released pair is not handed out again at once. It waits in a FIFO of
//! recently released pairs, which holds up to a quarter of the range; it becomes free again
//! only when that many later releases pushed it out. So late packets of an ended call hit a
//! closed socket instead of leaking into a new call. Only when no other pair is free is the
//! longest-quarantined pair used (a nearly full pool).
//!
//! **Bind failures:** the driver binds the sockets. A pair it could not bind (another process
//! holds it, or descriptors ran out during a flood) is reported with
//! [`PortPool::mark_unusable`] and retried after [`RETRY_FAILED_AFTER`]
//! ([`PortPool::retry_failed`], called from the engine's housekeeping), not lost forever.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::MediaError;

/// How long a pair that could not be bound stays out of service before it is tried again.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// State of one even/odd port pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Free,
    InUse,
    /// Released recently; waits in the quarantine queue.
    Quarantined,
    /// Could not be bound; back in service at [`PortPool::retry_failed`] after
    /// [`RETRY_FAILED_AFTER`].
    Unusable,
}

/// Allocator of RTP/RTCP port pairs within `[min, max]`.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// The even port of pair 0.
    first: u16,
    /// State per pair; pair `i` is ports `first + 2i` and `first + 2i + 1`.
    state: Vec<PairState>,
    /// Free pairs, in no particular order (allocation picks one at random).
    free: Vec<u16>,
    /// Released pairs, oldest first.
    quarantine: VecDeque<u16>,
    /// Pairs that could not be bound, with the time they may be tried again.
    failed: VecDeque<(Instant, u16)>,
    in_use: usize,
    rng: ChaCha20Rng,
}

impl PortPool {
    /// A pool of the even ports `p` with `min <= p` and `p + 1 <= max`, choosing with a
    /// CSPRNG seeded by `seed`. A range that holds no such pair gives an empty pool (every
    /// [`allocate`](Self::allocate) fails); see [`capacity`](Self::capacity).
    pub fn new(min: u16, max: u16, seed: [u8; 32]) -> Self {
        // Computed in u32 so that ranges touching 65535 cannot overflow.
        let first = u32::from(min) + u32::from(min & 1); // round up to even
        let max = u32::from(max);
        let pairs = if first < max {
            ((max - 1 - first) / 2 + 1) as usize
        } else {
            0
        };
        // With at least one pair, first + 1 <= 65535, so `first` fits in u16.
        let first = u16::try_from(first).unwrap_or(0);
        let free = (0..pairs).map(|i| i as u16).collect();
        Self {
            first,
            state: vec![PairState::Free; pairs],
            free,
            quarantine: VecDeque::new(),
            failed: VecDeque::new(),
            in_use: 0,
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// Number of port pairs the range holds (free, quarantined, in use and unusable).
    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    /// Number of pairs currently allocated.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Number of pairs that can still be allocated (free or quarantined).
    pub fn available(&self) -> usize {
        self.free.len() + self.quarantine.len()
    }

    /// Number of pairs out of service because they could not be bound.
    pub fn unusable(&self) -> usize {
        self.failed.len()
    }

    /// Most pairs the quarantine holds: a quarter of the range.
    fn quarantine_cap(&self) -> usize {
        self.state.len() / 4
    }

    /// Allocate a pair; returns the even RTP port (RTCP is the port + 1).
    pub fn allocate(&mut self) -> Result<u16, MediaError> {
        let idx = if self.free.is_empty() {
            self.quarantine
                .pop_front()
                .ok_or(MediaError::PoolExhausted)?
        } else {
            // Uniform in 0..len (multiply-shift; the bias is below 2^-48 for any range).
            let k = ((u128::from(self.rng.next_u64()) * self.free.len() as u128) >> 64) as usize;
            self.free.swap_remove(k)
        };
        self.state[usize::from(idx)] = PairState::InUse;
        self.in_use += 1;
        Ok(self.port_of(idx))
    }

    /// Give back a pair allocated by [`allocate`](Self::allocate); it goes into quarantine.
    /// Returns `false` (and changes nothing) if `port` is not an allocated RTP port of this
    /// pool, so a double release cannot queue a port twice.
    pub fn release(&mut self, port: u16) -> bool {
        match self.index_of(port) {
            Some(idx) if self.state[usize::from(idx)] == PairState::InUse => {
                self.state[usize::from(idx)] = PairState::Quarantined;
                self.in_use -= 1;
                self.quarantine.push_back(idx);
                while self.quarantine.len() > self.quarantine_cap() {
                    if let Some(old) = self.quarantine.pop_front() {
                        self.state[usize::from(old)] = PairState::Free;
                        self.free.push(old);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Take `port`'s pair out of service because it could not be bound at `now`; it is tried
    /// again by [`retry_failed`](Self::retry_failed) from `now + RETRY_FAILED_AFTER`. Works on
    /// an allocated pair (the usual case: allocate, bind fails, mark unusable, allocate again)
    /// and on a free or quarantined one. Returns `false` if `port` is not an RTP port of this
    /// pool or already unusable.
    pub fn mark_unusable(&mut self, port: u16, now: Instant) -> bool {
        let Some(idx) = self.index_of(port) else {
            return false;
        };
        match self.state[usize::from(idx)] {
            PairState::InUse => self.in_use -= 1,
            // Rare (needs a scan), only when the driver probes ports it did not allocate.
            PairState::Free => self.free.retain(|&i| i != idx),
            PairState::Quarantined => self.quarantine.retain(|&i| i != idx),
            PairState::Unusable => return false,
        }
        self.state[usize::from(idx)] = PairState::Unusable;
        self.failed.push_back((now + RETRY_FAILED_AFTER, idx));
        true
    }

    /// Put the pairs whose retry time has come back into service (free). Returns how many.
    pub fn retry_failed(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(&(at, idx)) = self.failed.front() {
            if at > now {
                break;
            }
            self.failed.pop_front();
            self.state[usize::from(idx)] = PairState::Free;
            self.free.push(idx);
            n += 1;
        }
        n
    }

    /// When the next unusable pair may be retried.
    pub fn next_retry(&self) -> Option<Instant> {
        self.failed.front().map(|(at, _)| *at)
    }

    /// Put every unusable pair back into service now.
    pub fn clear_unusable(&mut self) {
        for (_, idx) in self.failed.drain(..) {
            self.state[usize::from(idx)] = PairState::Free;
            self.free.push(idx);
        }
    }

    /// Whether `port` is an RTP port of this pool that is currently allocated.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.index_of(port)
            .is_some_and(|idx| self.state[usize::from(idx)] == PairState::InUse)
    }

    fn port_of(&self, idx: u16) -> u16 {
        self.first + 2 * idx
    }

    /// Index of the pair whose RTP port is `port`, if `port` is one.
    fn index_of(&self, port: u16) -> Option<u16> {
        if port < self.first || (port - self.first) & 1 == 1 {
            return None;
        }
        let idx = (port - self.first) / 2;
        (usize::from(idx) < self.state.len()).then_some(idx)
    }
}

#[cfg(test)]
mod tests;
