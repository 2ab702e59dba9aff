//! The RTP port pool: hands out even RTP ports whose RTCP companion (port + 1) is also in the
//! configured range (RFC 3550 §11: RTP on an even port, RTCP on the next odd one).
//!
//! Free ports are kept in a FIFO queue: allocation takes the port that has been free the
//! longest, and a released port goes to the back. So the pool rotates through the whole range
//! and a port just released by one call is not handed to the next call straight away; late
//! packets of the old call then hit a closed socket instead of leaking into a new call.
//!
//! The pool is a pure allocator: the driver binds the sockets. If it cannot bind an allocated
//! port (another process holds it), it reports that with [`PortPool::mark_unusable`] and
//! allocates again.

use std::collections::VecDeque;

use crate::MediaError;

/// State of one even/odd port pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Free,
    InUse,
    /// Could not be bound; never handed out again (until [`PortPool::clear_unusable`]).
    Unusable,
}

/// Allocator of RTP/RTCP port pairs within `[min, max]`.
#[derive(Debug, Clone)]
pub struct PortPool {
    /// The even port of pair 0.
    first: u16,
    /// State per pair; pair `i` is ports `first + 2i` and `first + 2i + 1`.
    state: Vec<PairState>,
    /// Free pairs, longest-free first.
    free: VecDeque<u16>,
    in_use: usize,
}

impl PortPool {
    /// A pool of the even ports `p` with `min <= p` and `p + 1 <= max`. A range that holds no
    /// such pair gives an empty pool (every [`allocate`](Self::allocate) fails); see
    /// [`capacity`](Self::capacity).
    pub fn new(min: u16, max: u16) -> Self {
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
            in_use: 0,
        }
    }

    /// Number of port pairs the range holds (free, in use and unusable).
    pub fn capacity(&self) -> usize {
        self.state.len()
    }

    /// Number of pairs currently allocated.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Number of pairs that can still be allocated.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Number of pairs marked unusable.
    pub fn unusable(&self) -> usize {
        self.state.len() - self.free.len() - self.in_use
    }

    /// Allocate a pair; returns the even RTP port (RTCP is the port + 1).
    pub fn allocate(&mut self) -> Result<u16, MediaError> {
        let idx = self.free.pop_front().ok_or(MediaError::PoolExhausted)?;
        if let Some(st) = self.state.get_mut(usize::from(idx)) {
            *st = PairState::InUse;
        }
        self.in_use += 1;
        Ok(self.port_of(idx))
    }

    /// Give back a pair allocated by [`allocate`](Self::allocate). Returns `false` (and
    /// changes nothing) if `port` is not an allocated RTP port of this pool, so a double
    /// release cannot put a port in the queue twice.
    pub fn release(&mut self, port: u16) -> bool {
        match self.index_of(port) {
            Some(idx) if self.state[usize::from(idx)] == PairState::InUse => {
                self.state[usize::from(idx)] = PairState::Free;
                self.in_use -= 1;
                self.free.push_back(idx);
                true
            }
            _ => false,
        }
    }

    /// Take `port`'s pair out of service because it could not be bound. Works on an allocated
    /// pair (the usual case: allocate, bind fails, mark unusable, allocate again) and on a
    /// free one. Returns `false` if `port` is not an RTP port of this pool or already unusable.
    pub fn mark_unusable(&mut self, port: u16) -> bool {
        let Some(idx) = self.index_of(port) else {
            return false;
        };
        match self.state[usize::from(idx)] {
            PairState::InUse => self.in_use -= 1,
            // Rare (needs a scan), only when the driver probes ports it did not allocate.
            PairState::Free => self.free.retain(|&i| i != idx),
            PairState::Unusable => return false,
        }
        self.state[usize::from(idx)] = PairState::Unusable;
        true
    }

    /// Put every unusable pair back into service (at the back of the queue), e.g. after the
    /// process that held them is gone.
    pub fn clear_unusable(&mut self) {
        for (i, st) in self.state.iter_mut().enumerate() {
            if *st == PairState::Unusable {
                *st = PairState::Free;
                self.free.push_back(i as u16);
            }
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
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn range_bounds_and_parity() {
        assert_eq!(PortPool::new(20000, 29999).capacity(), 5000);
        assert_eq!(PortPool::new(20001, 29999).capacity(), 4999); // 20002..=29998
        assert_eq!(PortPool::new(20000, 20000).capacity(), 0); // no room for RTCP
        assert_eq!(PortPool::new(20000, 20001).capacity(), 1);
        assert_eq!(PortPool::new(20001, 20002).capacity(), 0);
        assert_eq!(PortPool::new(20001, 20003).capacity(), 1);
        assert_eq!(PortPool::new(30000, 20000).capacity(), 0);
        assert_eq!(PortPool::new(65534, 65535).capacity(), 1);
        assert_eq!(PortPool::new(65535, 65535).capacity(), 0);
        assert_eq!(PortPool::new(0, 65535).capacity(), 32768);

        let mut p = PortPool::new(1001, 1010);
        let mut seen = HashSet::new();
        while let Ok(port) = p.allocate() {
            assert_eq!(port % 2, 0);
            assert!((1001..1010).contains(&port), "{port}");
            assert!(seen.insert(port));
        }
        assert_eq!(seen.len(), 4); // 1002, 1004, 1006, 1008
        assert!(matches!(p.allocate(), Err(MediaError::PoolExhausted)));
        assert_eq!(p.in_use(), 4);
    }

    #[test]
    fn empty_pool_is_exhausted() {
        let mut p = PortPool::new(5, 5);
        assert!(matches!(p.allocate(), Err(MediaError::PoolExhausted)));
    }

    #[test]
    fn rotates_and_does_not_reuse_just_released_port() {
        let mut p = PortPool::new(20000, 20009); // 5 pairs
        let a = p.allocate().unwrap();
        assert_eq!(a, 20000);
        assert!(p.release(a));
        // The released port goes to the back: the other four come first.
        let next: Vec<u16> = (0..4).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(next, vec![20002, 20004, 20006, 20008]);
        assert_eq!(p.allocate().unwrap(), 20000);
        assert_eq!(p.in_use(), 5);
        assert!(p.allocate().is_err());
        // Release order decides reuse order.
        assert!(p.release(20006));
        assert!(p.release(20002));
        assert_eq!(p.allocate().unwrap(), 20006);
        assert_eq!(p.allocate().unwrap(), 20002);
    }

    #[test]
    fn release_rejects_foreign_and_double_release() {
        let mut p = PortPool::new(20000, 20009);
        let a = p.allocate().unwrap();
        assert!(!p.release(a + 1)); // RTCP port is not an RTP port
        assert!(!p.release(19998));
        assert!(!p.release(20010));
        assert!(!p.release(20002)); // in range but free
        assert!(p.release(a));
        assert!(!p.release(a)); // double release
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.available(), 5);
    }

    #[test]
    fn mark_unusable_takes_pair_out_of_service() {
        let mut p = PortPool::new(20000, 20005); // 3 pairs
        let a = p.allocate().unwrap();
        assert!(p.mark_unusable(a)); // bind failed
        assert_eq!(p.in_use(), 0);
        assert_eq!(p.unusable(), 1);
        assert!(!p.mark_unusable(a));
        assert!(!p.release(a)); // not allocated any more
        assert!(p.mark_unusable(20004)); // a free pair
        assert_eq!(p.allocate().unwrap(), 20002);
        assert!(p.allocate().is_err()); // 20000 and 20004 are never handed out
        assert!(p.release(20002));
        assert_eq!(p.allocate().unwrap(), 20002);
        p.clear_unusable();
        assert_eq!(p.available(), 2);
        let mut rest = vec![p.allocate().unwrap(), p.allocate().unwrap()];
        rest.sort_unstable();
        assert_eq!(rest, vec![20000, 20004]);
        assert!(p.is_allocated(20004));
        assert!(!p.is_allocated(20005));
    }
}
