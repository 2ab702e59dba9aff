//! Process-wide media counters, processing-time histograms and live levels.
//!
//! The packet path never takes a lock: each call's media task keeps its own `MediaTally`
//! (plain integers and two `hdrhistogram`s, no allocation per record) and folds it into the
//! shared [`Metrics`] once a second and when the call ends. Readers (`/metrics`, the periodic log
//! line, the SSE level meters) only ever see those folded values.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bibridge_b2bua::engine::{CallId, LegId};
use dashmap::DashMap;
use hdrhistogram::Histogram;

/// Processing times are recorded in nanoseconds, up to 100 ms, with 2 significant digits (1 %
/// resolution). Every call's media task owns two of these: with 3 digits and 1 s they were
/// 160 KiB each, and zeroing them showed up in call set-up profiles; these are ~20 KiB.
const HIST_MAX_NS: u64 = 100_000_000;

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 2).expect("constant histogram bounds are valid")
}

/// Which media path a packet took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Forwarded untouched (no supervisor needs the direction mixed).
    Relay,
    /// Decoded, mixed and encoded (or a mixer tick producing frames).
    Mix,
}

/// Shared, process-wide metrics. Cheap to read; written by the media tasks' flushes and by the
/// engine task on lifecycle notices.
#[derive(Default)]
pub struct Metrics {
    pub rtp_received: AtomicU64,
    pub rtp_relayed: AtomicU64,
    pub rtp_mixed: AtomicU64,
    pub rtp_lost: AtomicU64,
    /// RTP packets dropped because they came from a source other than the leg's (latching).
    pub rtp_foreign: AtomicU64,
    /// RTCP packets dropped because they came from a source other than the leg's.
    pub rtcp_foreign: AtomicU64,
    /// Legs that latched onto a learned source (`[rtp] latching = "learn"`).
    pub latch_events: AtomicU64,
    /// Per-call media tasks that ended unexpectedly (panic or error); their calls were ended.
    pub media_tasks_failed: AtomicU64,
    /// Session starts by (mode, origin).
    pub session_starts: Mutex<HashMap<(String, String), u64>>,
    /// Session refusals by reason key.
    pub session_refusals: Mutex<HashMap<String, u64>>,
    /// SIP/UDP datagrams dropped because the engine's SIP queue was full.
    pub sip_queue_dropped: Arc<AtomicU64>,
    /// Audit records that could not be handed to the writer thread (queue full, thread gone).
    pub audit_failed: AtomicU64,
    hist: Mutex<Hists>,
    /// Interarrival jitter (ms), the worst leg of each call.
    jitter: DashMap<CallId, f64>,
    /// Input level (dBFS) of each leg that is decoded (calls with a supervisor).
    levels: DashMap<(CallId, LegId), f32>,
    /// The SIP/TCP listener's connections (docs/reliability/transport-http.md).
    pub sip_tcp: Arc<crate::net_guard::ListenerStats>,
    /// The HTTP listener's connections.
    pub http_conns: Arc<crate::net_guard::ListenerStats>,
    /// Event streams refused because their supervisor held the maximum.
    pub streams_refused: AtomicU64,
}

struct Hists {
    relay: Histogram<u64>,
    mix: Histogram<u64>,
}

impl Default for Hists {
    fn default() -> Self {
        Hists {
            relay: new_hist(),
            mix: new_hist(),
        }
    }
}

/// A copy of a processing-time histogram for exposition.
#[derive(Debug, Clone)]
pub struct HistSnapshot {
    pub count: u64,
    /// Sum of all recorded values, seconds.
    pub sum_s: f64,
    /// Cumulative buckets: (upper bound in seconds, count ≤ bound).
    pub buckets: Vec<(f64, u64)>,
    /// p50, p99, p99.9, max in microseconds.
    pub quantiles_us: [f64; 4],
}

/// Bucket bounds of the exposed histograms, seconds (5 µs .. 50 ms).
pub const BUCKETS_S: &[f64] = &[
    5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3,
];

fn snapshot(h: &Histogram<u64>) -> HistSnapshot {
    let buckets = BUCKETS_S
        .iter()
        .map(|b| {
            let ns = (b * 1e9) as u64;
            // A recorded value's bucket counts as ≤ the bound if its lowest equivalent is.
            let n: u64 = h
                .iter_recorded()
                .filter(|v| h.lowest_equivalent(v.value_iterated_to()) <= ns)
                .map(|v| v.count_at_value())
                .sum();
            (*b, n)
        })
        .collect();
    let q = |p: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(p) as f64 / 1e3
        }
    };
    HistSnapshot {
        count: h.len(),
        sum_s: h.mean() * h.len() as f64 / 1e9,
        buckets,
        quantiles_us: [q(0.5), q(0.99), q(0.999), h.max() as f64 / 1e3],
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Processing-time histograms (relay, mix).
    pub fn histograms(&self) -> (HistSnapshot, HistSnapshot) {
        let h = self.hist.lock().unwrap_or_else(|e| e.into_inner());
        (snapshot(&h.relay), snapshot(&h.mix))
    }

    /// The worst interarrival jitter of any live call, ms.
    pub fn jitter_max_ms(&self) -> f64 {
        self.jitter.iter().map(|e| *e.value()).fold(0.0, f64::max)
    }

    /// A leg's input level (dBFS), if it is decoded.
    pub fn level(&self, call: CallId, leg: LegId) -> Option<f32> {
        self.levels.get(&(call, leg)).map(|v| *v)
    }

    /// Publish a call's leg levels (more often than the counters: the console's meters move
    /// about five times a second). `None`: the leg is not decoded; its meter is cleared.
    pub(crate) fn publish_levels(&self, call: CallId, levels: &[(LegId, Option<f32>)]) {
        for (leg, level) in levels {
            match level {
                Some(l) => {
                    self.levels.insert((call, *leg), *l);
                }
                None => {
                    self.levels.remove(&(call, *leg));
                }
            }
        }
    }

    pub fn count_session_start(&self, mode: &str, origin: &str) {
        let mut m = self
            .session_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry((mode.to_string(), origin.to_string())).or_default() += 1;
    }

    pub fn count_refusal(&self, reason: &str) {
        let mut m = self
            .session_refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry(reason.to_string()).or_default() += 1;
    }

    /// A call's media ended: forget its gauges.
    pub(crate) fn forget_call(&self, call: CallId) {
        self.jitter.remove(&call);
        self.levels.retain(|(c, _), _| *c != call);
    }
}

/// One media task's own counters between flushes.
pub(crate) struct MediaTally {
    relay: Histogram<u64>,
    mix: Histogram<u64>,
    received: u64,
    relayed: u64,
    mixed: u64,
    foreign_rtp: u64,
    foreign_rtcp: u64,
    latched: u64,
}

impl MediaTally {
    pub(crate) fn new() -> Self {
        MediaTally {
            relay: new_hist(),
            mix: new_hist(),
            received: 0,
            relayed: 0,
            mixed: 0,
            foreign_rtp: 0,
            foreign_rtcp: 0,
            latched: 0,
        }
    }

    /// Record one packet's (or one tick's) processing time.
    pub(crate) fn record(&mut self, path: Path, took: Duration) {
        let ns = (took.as_nanos() as u64).clamp(1, HIST_MAX_NS);
        let h = match path {
            Path::Relay => &mut self.relay,
            Path::Mix => &mut self.mix,
        };
        // Clamped into the histogram's range: recording cannot fail.
        let _ = h.record(ns);
    }

    pub(crate) fn received(&mut self) {
        self.received += 1;
    }

    /// A packet from a source that is not the leg's was dropped (latching).
    pub(crate) fn foreign(&mut self, rtcp: bool) {
        if rtcp {
            self.foreign_rtcp += 1;
        } else {
            self.foreign_rtp += 1;
        }
    }

    /// A leg learned its source (learn mode).
    pub(crate) fn latched(&mut self) {
        self.latched += 1;
    }

    /// Packets relayed / frames mixed since the last flush.
    pub(crate) fn add_sent(&mut self, relayed: u64, mixed: u64) {
        self.relayed += relayed;
        self.mixed += mixed;
    }

    /// Fold into the shared metrics and start over.
    pub(crate) fn flush(&mut self, m: &Metrics, call: CallId, lost_delta: u64, jitter_ms: f64) {
        m.rtp_received.fetch_add(self.received, Ordering::Relaxed);
        m.rtp_relayed.fetch_add(self.relayed, Ordering::Relaxed);
        m.rtp_mixed.fetch_add(self.mixed, Ordering::Relaxed);
        m.rtp_lost.fetch_add(lost_delta, Ordering::Relaxed);
        if self.foreign_rtp + self.foreign_rtcp > 0 {
            // One line per call and second at most, however hard the ports are sprayed.
            tracing::debug!(
                call,
                rtp = self.foreign_rtp,
                rtcp = self.foreign_rtcp,
                "packets from foreign sources dropped"
            );
        }
        m.rtp_foreign.fetch_add(self.foreign_rtp, Ordering::Relaxed);
        m.rtcp_foreign
            .fetch_add(self.foreign_rtcp, Ordering::Relaxed);
        m.latch_events.fetch_add(self.latched, Ordering::Relaxed);
        (self.foreign_rtp, self.foreign_rtcp, self.latched) = (0, 0, 0);
        (self.received, self.relayed, self.mixed) = (0, 0, 0);
        if !self.relay.is_empty() || !self.mix.is_empty() {
            let mut h = m.hist.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds on both sides: adding cannot fail.
            let _ = h.relay.add(&self.relay);
            let _ = h.mix.add(&self.mix);
            drop(h);
            self.relay.reset();
            self.mix.reset();
        }
        m.jitter.insert(call, jitter_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_fold_into_shared_histograms_and_counters() {
        let m = Metrics::new();
        let mut t = MediaTally::new();
        for us in [3u64, 4, 5, 40] {
            t.record(Path::Relay, Duration::from_micros(us));
            t.received();
        }
        t.record(Path::Mix, Duration::from_micros(300));
        t.add_sent(4, 1);
        t.flush(&m, 7, 2, 1.5);
        m.publish_levels(7, &[(0, Some(-20.0)), (1, None)]);
        let (relay, mix) = m.histograms();
        assert_eq!((relay.count, mix.count), (4, 1));
        // 3 of 4 relay samples are ≤ 5 µs; all ≤ 50 µs.
        assert_eq!(relay.buckets[0], (5e-6, 3));
        assert_eq!(relay.buckets[3].1, 4);
        // 2 significant digits: within 1 %.
        assert!(
            (relay.quantiles_us[3] - 40.0).abs() <= 0.4,
            "{:?}",
            relay.quantiles_us
        );
        assert_eq!(m.rtp_relayed.load(Ordering::Relaxed), 4);
        assert_eq!(m.rtp_lost.load(Ordering::Relaxed), 2);
        assert_eq!(m.level(7, 0), Some(-20.0));
        assert_eq!(m.level(7, 1), None);
        assert!((m.jitter_max_ms() - 1.5).abs() < 1e-9);
        // A second flush starts from zero: nothing is counted twice.
        t.flush(&m, 7, 0, 0.5);
        assert_eq!(m.histograms().0.count, 4);
        m.forget_call(7);
        assert_eq!(m.level(7, 0), None);
        assert_eq!(m.jitter_max_ms(), 0.0);
    }
}
