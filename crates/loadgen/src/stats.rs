//! Measurement building blocks: RTP sequence-based loss, the per-stream send-time table that
//! relayed packets are looked up in, and latency histograms with their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

/// RFC 3550 §A.1-style loss accounting for one received stream: extended highest sequence
/// number versus packets received. Reordered and duplicated packets are counted as received;
/// a jump of more than 3000 is taken as a restart of the sequence (new base).
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    base: Option<u64>,
    max_ext: u64,
    received: u64,
    /// Expected packets of earlier numbering runs (before a restart).
    carried: u64,
}

impl SeqTracker {
    /// Counts one packet with RTP sequence number `seq`.
    pub fn on_packet(&mut self, seq: u16) {
        self.received += 1;
        let Some(base) = self.base else {
            let ext = u64::from(seq) + (1 << 16);
            self.base = Some(ext);
            self.max_ext = ext;
            return;
        };
        let cycle = self.max_ext & !0xFFFF;
        // The extended number closest to the current maximum.
        let candidates = [
            cycle.saturating_sub(1 << 16) | u64::from(seq),
            cycle | u64::from(seq),
            (cycle + (1 << 16)) | u64::from(seq),
        ];
        let ext = candidates
            .into_iter()
            .min_by_key(|c| c.abs_diff(self.max_ext))
            .unwrap_or(cycle | u64::from(seq));
        if ext.abs_diff(self.max_ext) > 3_000 {
            // The sender restarted its numbering: close the old run, start a new one.
            self.carried += self.max_ext + 1 - base;
            self.base = Some(ext);
            self.max_ext = ext;
        } else if ext > self.max_ext {
            self.max_ext = ext;
        } else if ext < base {
            self.base = Some(ext);
        }
    }

    /// Packets the sequence numbers say were sent.
    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.carried + self.max_ext + 1 - b)
    }

    /// Packets received (duplicates included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// `expected - received`, never negative (duplicates can make it so).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

/// Send times of one stream's recent packets, indexed by the packet counter carried in the
/// payload key. A ring: only the last [`SendTable::SLOTS`] packets (5 s at 50 pps) can be
/// looked up, which bounds memory per stream and rejects keys that are stale or from elsewhere.
#[derive(Debug, Clone)]
pub struct SendTable {
    entries: Vec<(u32, i64)>,
}

impl Default for SendTable {
    fn default() -> Self {
        Self {
            entries: vec![(u32::MAX, 0); Self::SLOTS],
        }
    }
}

impl SendTable {
    /// Packets remembered.
    pub const SLOTS: usize = 256;

    /// Remembers that packet `counter` left at `sent_ns` (CLOCK_REALTIME nanoseconds).
    pub fn record(&mut self, counter: u32, sent_ns: i64) {
        if let Some(e) = self.entries.get_mut(counter as usize % Self::SLOTS) {
            *e = (counter, sent_ns);
        }
    }

    /// Send time of packet `counter`, if it is still in the ring.
    pub fn lookup(&self, counter: u32) -> Option<i64> {
        match self.entries.get(counter as usize % Self::SLOTS) {
            Some(&(c, t)) if c == counter => Some(t),
            _ => None,
        }
    }
}

/// A latency histogram in microseconds, 1 µs .. 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

/// Records a latency given in nanoseconds (negative values, from clock steps, count as 0).
pub fn record_ns(h: &mut Histogram<u64>, ns: i64) {
    let us = (ns.max(0) / 1_000).max(1) as u64;
    h.saturating_record(us);
}

/// Percentiles of one latency path, in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summary of a histogram (all zero when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            samples: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// The empirical CDF of a histogram as `(latency ms, fraction <= it)` points, for plotting.
pub fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let total = h.len();
    if total == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut seen = 0u64;
    for v in h.iter_recorded() {
        seen += v.count_since_last_iteration();
        out.push((
            h.highest_equivalent(v.value_iterated_to()) as f64 / 1_000.0,
            seen as f64 / total as f64,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_counts_gaps_wraps_and_reordering() {
        let mut t = SeqTracker::default();
        for s in [65_530u16, 65_531, 65_533, 65_535, 0, 1, 3] {
            t.on_packet(s);
        }
        // 65530..=3 across the wrap is 10 numbers, 7 received.
        assert_eq!(t.expected(), 10);
        assert_eq!(t.lost(), 3);
        // A late packet fills a hole.
        t.on_packet(2);
        assert_eq!(t.lost(), 2);
        // An earlier packet than the first one seen extends the base.
        t.on_packet(65_529);
        assert_eq!(t.expected(), 11);
        assert_eq!(t.lost(), 2);
    }

    #[test]
    fn seq_tracker_survives_a_restart() {
        let mut t = SeqTracker::default();
        for s in 100u16..110 {
            t.on_packet(s);
        }
        for s in 40_000u16..40_005 {
            t.on_packet(s);
        }
        assert_eq!(t.expected(), 15);
        assert_eq!(t.lost(), 0);
        assert_eq!(SeqTracker::default().expected(), 0);
    }

    #[test]
    fn send_table_finds_recent_and_rejects_stale() {
        let mut t = SendTable::default();
        for c in 0..1000u32 {
            t.record(c, i64::from(c) * 20_000_000);
        }
        assert_eq!(t.lookup(999), Some(999 * 20_000_000));
        assert_eq!(
            t.lookup(1000 - SendTable::SLOTS as u32),
            Some(744 * 20_000_000)
        );
        assert_eq!(t.lookup(10), None, "overwritten by a newer packet");
        assert_eq!(t.lookup(5000), None, "never sent");
    }

    #[test]
    fn summary_and_cdf() {
        let mut h = new_histogram();
        assert_eq!(LatencySummary::of(&h).samples, 0);
        for us in 1..=1000i64 {
            record_ns(&mut h, us * 1000);
        }
        record_ns(&mut h, -5);
        let s = LatencySummary::of(&h);
        assert_eq!(s.samples, 1001);
        assert_eq!(s.min_us, 1);
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((989..=991).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.max_us, 1000);
        let cdf = cdf_points(&h);
        assert!((cdf.last().map(|p| p.1).unwrap_or(0.0) - 1.0).abs() < 1e-9);
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
