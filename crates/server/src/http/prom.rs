//! `GET /metrics`: the series of docs/api.md in the OpenMetrics text format (which Prometheus
//! scrapes natively).
//!
//! Never anonymous: a scrape needs `http.metrics_token` as a bearer token or a supervisor's
//! login. A registry is built from the current values at most once a second (scrapes within a
//! second share the text, so scraping cannot load the engine task): the engine's counts (calls,
//! legs, sessions by mode) come from one stats request and one snapshot, the media counters and
//! histograms from [`Metrics`]. The processing-time histogram is already bucketed by the media
//! tasks, so it is written through a custom [`Collector`] rather than a live `Histogram`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bibridge_b2bua::config::Mode;
use bibridge_b2bua::engine::{EngineStats, SessionState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use subtle::ConstantTimeEq;

use super::{Problem, St};
use crate::control::Snapshot;
use crate::metrics::{HistSnapshot, Metrics};
use crate::net_guard::ListenerStats;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long one exposition is served to every scraper.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The metrics token (compared in constant time) or a supervisor's login.
fn authorized(st: &St, headers: &HeaderMap) -> bool {
    if let (Some(want), Some(got)) = (&st.cfg.http.metrics_token, super::auth::bearer(headers)) {
        if bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
            return true;
        }
    }
    st.auth.check(headers, Instant::now()).is_some()
}

pub(super) async fn metrics(State(st): State<St>, headers: HeaderMap) -> Result<Response, Problem> {
    if !authorized(&st, &headers) {
        return Err(Problem::unauthorized());
    }
    let mut cache = st.metrics_cache.lock().await;
    let text = match &*cache {
        Some((at, text)) if at.elapsed() < CACHE_FOR => Ok(text.clone()),
        _ => {
            let stats = st.control.stats().await.map_err(Problem::engine)?;
            let snap = st.control.snapshot(None).await.map_err(Problem::engine)?;
            let r = render(
                &st.metrics,
                &stats,
                &snap,
                st.auth.evicted.load(Ordering::Relaxed),
            );
            if let Ok(text) = &r {
                *cache = Some((Instant::now(), text.clone()));
            }
            r
        }
    };
    drop(cache);
    match text {
        Ok(text) => Ok((
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response()),
        Err(_) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding",
            "Cannot encode metrics",
            "The metrics exposition failed".into(),
        )),
    }
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

/// The whole exposition.
pub(super) fn render(
    m: &Metrics,
    stats: &EngineStats,
    snap: &Snapshot,
    logins_evicted: u64,
) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    r.register(
        "bibridge_calls_active",
        "Calls in progress (ringing or connected)",
        gauge(stats.calls as i64),
    );
    r.register(
        "bibridge_legs_active",
        "Call legs in progress: two per call plus one per supervisor session",
        gauge((2 * stats.calls + stats.sessions) as i64),
    );
    let by_mode = Family::<Vec<(String, String)>, Gauge>::default();
    for (name, mode) in Mode::ALL {
        let n = snap
            .calls
            .iter()
            .flat_map(|c| &c.sessions)
            .filter(|s| s.mode == mode && s.state == SessionState::Active)
            .count();
        by_mode
            .get_or_create(&vec![("mode".to_string(), name.to_string())])
            .set(n as i64);
    }
    r.register(
        "bibridge_sessions_active",
        "Supervisor sessions attached to a call, by mode",
        by_mode,
    );
    let starts = Family::<Vec<(String, String)>, Counter>::default();
    {
        let map = m.session_starts.lock().unwrap_or_else(|e| e.into_inner());
        for ((mode, origin), n) in map.iter() {
            starts
                .get_or_create(&vec![
                    ("mode".to_string(), mode.clone()),
                    ("origin".to_string(), origin.clone()),
                ])
                .inc_by(*n);
        }
    }
    r.register(
        "bibridge_session_starts",
        "Supervisor sessions started, by mode and origin (phone or api)",
        starts,
    );
    let refusals = Family::<Vec<(String, String)>, Counter>::default();
    {
        let map = m.session_refusals.lock().unwrap_or_else(|e| e.into_inner());
        for (reason, n) in map.iter() {
            refusals
                .get_or_create(&vec![("reason".to_string(), reason.clone())])
                .inc_by(*n);
        }
    }
    r.register(
        "bibridge_session_refusals",
        "Session requests refused, by reason",
        refusals,
    );
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    r.register(
        "bibridge_rtp_packets_relayed",
        "RTP packets forwarded untouched",
        counter(load(&m.rtp_relayed)),
    );
    r.register(
        "bibridge_rtp_frames_mixed",
        "RTP frames produced by the mixer",
        counter(load(&m.rtp_mixed)),
    );
    r.register(
        "bibridge_rtp_packets_received",
        "RTP packets received on all legs",
        counter(load(&m.rtp_received)),
    );
    r.register(
        "bibridge_rtp_packets_lost",
        "RTP packets lost (sequence gaps) on all legs",
        counter(load(&m.rtp_lost)),
    );
    r.register(
        "bibridge_sip_queue_dropped",
        "SIP/UDP datagrams dropped because the engine's SIP queue was full",
        counter(load(&m.sip_queue_dropped)),
    );
    r.register(
        "bibridge_audit_queue_failed",
        "Audit records that could not be queued for the writer (backlog full or writer gone)",
        counter(load(&m.audit_failed)),
    );
    let foreign = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, n) in [("rtp", &m.rtp_foreign), ("rtcp", &m.rtcp_foreign)] {
        foreign
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc_by(load(n));
    }
    r.register(
        "bibridge_media_foreign_packets",
        "RTP/RTCP packets dropped because they came from a source that is not the leg's (latching)",
        foreign,
    );
    r.register(
        "bibridge_media_latch_events",
        "Legs that learned their media source ([rtp] latching = \"learn\")",
        counter(load(&m.latch_events)),
    );
    r.register(
        "bibridge_media_tasks_failed",
        "Per-call media tasks that died (their calls were ended)",
        counter(load(&m.media_tasks_failed)),
    );
    let jitter = Gauge::<f64, AtomicU64>::default();
    jitter.set(m.jitter_max_ms());
    r.register(
        "bibridge_rtp_jitter_ms",
        "Worst interarrival jitter of any live leg, milliseconds",
        jitter,
    );
    listener(&mut r, "sip_tcp", "SIP/TCP", &m.sip_tcp, "idle", "message");
    listener(&mut r, "http", "HTTP", &m.http_conns, "header", "body");
    r.register(
        "bibridge_http_logins_evicted",
        "Login tokens evicted by a further login of their supervisor (http.max_logins_per_user)",
        counter(logins_evicted),
    );
    r.register(
        "bibridge_http_streams_refused",
        "Event streams refused: the supervisor held http.max_streams_per_user",
        counter(load(&m.streams_refused)),
    );
    let (relay, mix) = m.histograms();
    r.register_collector(Box::new(ProcessingTime { relay, mix }));
    let mut out = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut out, &r)?;
    Ok(out)
}

/// A listener's connection series: open, refused by reason, accept errors, timeouts.
fn listener(r: &mut Registry, prefix: &str, what: &str, s: &ListenerStats, idle: &str, slow: &str) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    r.register(
        format!("bibridge_{prefix}_connections"),
        format!("{what} connections open"),
        gauge(load(&s.open) as i64),
    );
    let refused = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, v) in [
        ("limit", &s.refused_total),
        ("per_address", &s.refused_per_address),
    ] {
        refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc_by(load(v));
    }
    r.register(
        format!("bibridge_{prefix}_connections_refused"),
        format!("{what} connections accepted and closed at once: listener full (limit) or its address full (per_address)"),
        refused,
    );
    r.register(
        format!("bibridge_{prefix}_accept_errors"),
        format!("{what} accept calls that failed (EMFILE and the like)"),
        counter(load(&s.accept_errors)),
    );
    let closed = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, v) in [(idle, &s.idle_closed), (slow, &s.slow_closed)] {
        closed
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc_by(load(v));
    }
    r.register(
        format!("bibridge_{prefix}_timeouts"),
        format!("{what} connections closed by a timeout, by what was late"),
        closed,
    );
}

/// `bibridge_media_processing_seconds{path}` from the media tasks' pre-bucketed histograms.
#[derive(Debug)]
struct ProcessingTime {
    relay: HistSnapshot,
    mix: HistSnapshot,
}

/// A pre-bucketed histogram as an OpenMetrics histogram.
#[derive(Debug)]
struct Bucketed<'a>(&'a HistSnapshot);

impl EncodeMetric for Bucketed<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        // The encoder accumulates per-bucket counts itself; ours are cumulative already.
        let h = self.0;
        let mut prev = 0u64;
        let mut buckets: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .map(|&(bound, cum)| {
                let n = cum.saturating_sub(prev);
                prev = prev.max(cum);
                (bound, n)
            })
            .collect();
        // f64::MAX is the encoder's spelling of the +Inf bucket.
        buckets.push((f64::MAX, h.count.saturating_sub(prev)));
        encoder.encode_histogram::<NoLabelSet>(h.sum_s, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for ProcessingTime {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "bibridge_media_processing_seconds",
            "Time to process one RTP packet (relay) or one mixer frame (mix), seconds",
            None,
            MetricType::Histogram,
        )?;
        for (path, h) in [("relay", &self.relay), ("mix", &self.mix)] {
            let labels = [("path", path)];
            Bucketed(h).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_parses_and_histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        m.count_session_start("monitor", "api");
        m.count_refusal("builtin_bridge_off");
        let stats = EngineStats::default();
        let snap = Snapshot {
            seq: 0,
            agents: Vec::new(),
            calls: Vec::new(),
        };
        let text = render(&m, &stats, &snap, 0).expect("encodes");
        assert!(text.ends_with("# EOF\n"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(name.starts_with("bibridge_"), "{line}");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("bibridge_session_starts_total{mode=\"monitor\",origin=\"api\"} 1"));
        assert!(text.contains("bibridge_session_refusals_total{reason=\"builtin_bridge_off\"} 1"));
        assert!(
            text.contains("bibridge_media_processing_seconds_bucket{le=\"+Inf\",path=\"relay\"} 0")
                || text.contains(
                    "bibridge_media_processing_seconds_bucket{path=\"relay\",le=\"+Inf\"} 0"
                ),
            "{text}"
        );
        assert!(
            text.contains("bibridge_sessions_active{mode=\"barge\"} 0"),
            "{text}"
        );
    }
}
