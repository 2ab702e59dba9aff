//! Bounds shared by the SIP/TCP and HTTP listeners: connection counts (total and per source
//! address), the back-off after accept errors, and the descriptor budget they are capped by.
//!
//! Over a limit a connection is accepted and closed at once (cheap, and the backlog does not
//! fill with connections nobody will serve). An accept error (EMFILE, ENFILE, ENOBUFS) backs off
//! 100 ms doubling to 1 s, and is logged once per [`LOG_EVERY`] with the count, never once per
//! failure: at the descriptor limit a listener would otherwise spin and flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Floods are logged at most once per this interval.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
/// The first pause after an accept error; doubled on each further one up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The listener holds its maximum of connections.
    Total,
    /// The source address holds its maximum.
    PerAddress,
}

/// Counters a listener keeps (exposed at `/metrics`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections refused because the listener was full.
    pub refused_total: AtomicU64,
    /// Connections refused because their address held its maximum.
    pub refused_per_address: AtomicU64,
    /// Failed `accept` calls (EMFILE and the like).
    pub accept_errors: AtomicU64,
    /// Connections closed for idleness (SIP/TCP) or a header timeout (HTTP).
    pub idle_closed: AtomicU64,
    /// Connections closed because a message (SIP) or body (HTTP) did not arrive in time.
    pub slow_closed: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_addr: HashMap<IpAddr, usize>,
}

/// Connection counts of one listener, total and per source address.
#[derive(Debug, Clone)]
pub(crate) struct ConnLimiter {
    max_total: usize,
    max_per_addr: usize,
    counts: Arc<Mutex<Counts>>,
    stats: Arc<ListenerStats>,
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    ip: Option<IpAddr>,
    counts: Arc<Mutex<Counts>>,
    stats: Arc<ListenerStats>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = c.per_addr.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_addr.remove(&ip);
                }
            }
        }
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An IPv4 peer seen on a dual-stack socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl ConnLimiter {
    pub(crate) fn new(max_total: usize, max_per_addr: usize, stats: Arc<ListenerStats>) -> Self {
        ConnLimiter {
            max_total,
            max_per_addr,
            counts: Arc::default(),
            stats,
        }
    }

    pub(crate) fn stats(&self) -> &Arc<ListenerStats> {
        &self.stats
    }

    /// A place for an accepted connection from `ip`, or why not (counted).
    pub(crate) fn accept(&self, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let ip = canonical(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.max_total {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        let n = c.per_addr.entry(ip).or_insert(0);
        if *n >= self.max_per_addr {
            self.stats
                .refused_per_address
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerAddress);
        }
        *n += 1;
        c.total += 1;
        drop(c);
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnSlot {
            ip: Some(ip),
            counts: self.counts.clone(),
            stats: self.stats.clone(),
        })
    }

    /// A place for a connection we open ourselves: counted in the total, never refused (the
    /// engine decided to send; the peers it sends to are registered or configured).
    pub(crate) fn outbound(&self) -> ConnSlot {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        ConnSlot {
            ip: None,
            counts: self.counts.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// Counts events of a flood and says when to log them: the first at once, then at most one
/// line per [`LOG_EVERY`] carrying the number since the last line.
#[derive(Debug)]
pub(crate) struct LogEvery {
    every: Duration,
    last: Option<Instant>,
    pending: u64,
}

impl LogEvery {
    pub(crate) fn new(every: Duration) -> Self {
        LogEvery {
            every,
            last: None,
            pending: 0,
        }
    }

    /// Count one event; `Some(n)`: log now, `n` events since the last line (this one included).
    pub(crate) fn event(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// The pause after accept errors: 100 ms doubling to 1 s, reset by a successful accept.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    next: Duration,
    pub(crate) log: LogEvery,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            next: BACKOFF_MIN,
            log: LogEvery::new(LOG_EVERY),
        }
    }
}

impl AcceptBackoff {
    /// An accept failed at `now`: how long to pause, and whether to log (with the count).
    pub(crate) fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let pause = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        (pause, self.log.event(now))
    }

    /// An accept succeeded: the next error starts from the shortest pause again.
    pub(crate) fn succeeded(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// The soft limit on open files of this process (`RLIMIT_NOFILE`), if it can be read.
pub(crate) fn nofile_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Raise the soft open-file limit to the hard one (as Go and many servers do): each SIP/TCP or
/// HTTP connection and each RTP port takes a descriptor, and the soft default (often 1024) is
/// low for a contact centre. Returns the limit in force afterwards.
pub fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// `configured`, capped at `limit / divisor` (at least 16) when the descriptor limit is known.
pub(crate) fn cap_by_nofile(configured: usize, nofile: Option<u64>, divisor: u64) -> usize {
    match nofile {
        Some(n) if n != u64::MAX => {
            let cap = usize::try_from((n / divisor).max(16)).unwrap_or(usize::MAX);
            configured.min(cap)
        }
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_total_and_per_address_and_frees_on_drop() {
        let stats = Arc::new(ListenerStats::default());
        let l = ConnLimiter::new(3, 2, stats.clone());
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let s1 = l.accept(a).expect("first");
        let _s2 = l.accept(a).expect("second");
        assert_eq!(l.accept(a).err(), Some(Refused::PerAddress));
        // The same address seen as IPv4-mapped IPv6 is the same address.
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(l.accept(mapped).err(), Some(Refused::PerAddress));
        let _s3 = l.accept(b).expect("another address");
        assert_eq!(
            l.accept(IpAddr::from([10, 0, 0, 3])).err(),
            Some(Refused::Total)
        );
        assert_eq!(stats.open.load(Ordering::Relaxed), 3);
        assert_eq!(stats.refused_per_address.load(Ordering::Relaxed), 2);
        assert_eq!(stats.refused_total.load(Ordering::Relaxed), 1);
        drop(s1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 2);
        l.accept(a).expect("a place again");
    }

    /// An accept-error storm (EMFILE on every call) with the real loop's arithmetic: pauses
    /// grow to 1 s, so a minute of failures is ~60 accept calls, not millions; and the log gets
    /// one line per 10 s carrying the count.
    #[test]
    fn accept_errors_back_off_and_log_once_per_interval() {
        let mut b = AcceptBackoff::default();
        let start = Instant::now();
        let mut now = start;
        let (mut calls, mut lines, mut logged) = (0u64, 0u64, 0u64);
        while now < start + Duration::from_secs(60) {
            calls += 1;
            let (pause, log) = b.failed(now);
            if let Some(n) = log {
                lines += 1;
                logged += n;
            }
            assert!(pause >= BACKOFF_MIN && pause <= BACKOFF_MAX);
            now += pause;
        }
        assert!(calls <= 70, "{calls} accept calls in 60 s");
        assert_eq!(lines, 6, "one line per 10 s");
        // Every failure is accounted for in some line except those since the last one.
        assert!(
            logged <= calls && calls - logged <= 11,
            "{logged} of {calls}"
        );
        // Success resets the pause.
        b.succeeded();
        assert_eq!(b.failed(now).0, BACKOFF_MIN);
    }

    #[test]
    fn caps_follow_the_descriptor_limit() {
        assert_eq!(cap_by_nofile(4096, Some(1024), 2), 512);
        assert_eq!(cap_by_nofile(100, Some(1024), 2), 100);
        assert_eq!(cap_by_nofile(4096, Some(20), 2), 16);
        assert_eq!(cap_by_nofile(4096, None, 2), 4096);
        assert_eq!(cap_by_nofile(4096, Some(u64::MAX), 2), 4096);
    }
}
