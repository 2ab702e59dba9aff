//! The results of a run: a serialisable [`Report`], its text form, and the latency CDF plot.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rtp::{Measure, Path, Role};
use crate::stats::{cdf_points, LatencySummary};

#[derive(Debug, Clone, Serialize)]
pub struct PacketStats {
    /// Packets we sent from this role's socket in the window.
    pub sent: u64,
    /// Packets this role's socket received in the window.
    pub received: u64,
    /// From RTP sequence numbers of the received streams.
    pub seq_expected: u64,
    pub seq_lost: u64,
    pub loss_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PathStats {
    pub latency: LatencySummary,
    pub packets: u64,
    /// Relayed paths: packets whose payload key was not intact (payload altered).
    pub unkeyed: u64,
    /// Relayed paths: packets carrying another call's key (cross-talk).
    pub misrouted: u64,
    /// Mixed paths: probes detected (probes sent are in `checks.probes_sent`).
    pub probes_seen: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuStats {
    pub pid: u32,
    pub cpu_s: f64,
    pub cpu_pct_of_one_core: f64,
    pub us_per_call_second: f64,
    /// CPU per packet received by the target (what we sent to it).
    pub us_per_packet_in: f64,
    /// CPU per packet the target sent (what we received).
    pub us_per_packet_out: f64,
    pub packets_in: u64,
    pub packets_out_relayed: u64,
    pub packets_out_mixed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub mode: Option<String>,
    pub calls_requested: u32,
    pub calls_up: usize,
    pub calls_failed: usize,
    pub call_failures: BTreeMap<String, u64>,
    pub sessions_requested: u32,
    pub sessions_up: usize,
    pub sessions_failed: usize,
    pub session_failures: BTreeMap<String, u64>,
    pub remote_hangups: usize,
    pub cps: u32,
    pub window_s: f64,
    /// INVITE sent → 200 OK received (digest round trip included for sessions).
    pub call_setup: LatencySummary,
    pub session_setup: LatencySummary,
    pub packets: BTreeMap<String, PacketStats>,
    pub latency: BTreeMap<String, PathStats>,
    pub probes_sent: u64,
    pub stale_keys: u64,
    pub unknown_source: u64,
    pub send_errors: u64,
    /// 1 ms send slots the generator skipped after stalling (0 = it kept its pace).
    pub skipped_slots: u64,
    pub cpu: Option<CpuStats>,
    /// The generator's own CPU, % of one core: near 100 means it may be the bottleneck.
    pub loadgen_cpu_pct: f64,
    pub teardown_open_dialogs: usize,
}

/// Packet and latency sections from a window's [`Measure`].
pub fn fill_media(r: &mut Report, m: &Measure) {
    for role in Role::ALL {
        let i = role as usize;
        let (exp, lost) = m.seq_loss[i];
        r.packets.insert(
            role.name().to_string(),
            PacketStats {
                sent: m.sent[i],
                received: m.received[i],
                seq_expected: exp,
                seq_lost: lost,
                loss_pct: if exp == 0 {
                    0.0
                } else {
                    (lost as f64 * 1e5 / exp as f64).round() / 1e3
                },
            },
        );
    }
    for p in Path::ALL {
        let i = p as usize;
        if m.path_packets[i] == 0 {
            continue;
        }
        r.latency.insert(
            p.key().to_string(),
            PathStats {
                latency: LatencySummary::of(&m.latency[i]),
                packets: m.path_packets[i],
                unkeyed: m.unkeyed[i],
                misrouted: m.misrouted[i],
                probes_seen: m.probes_seen[i],
            },
        );
    }
    r.probes_sent = m.probes_sent;
    r.stale_keys = m.stale_keys;
    r.unknown_source = m.unknown_source;
    r.send_errors = m.send_errors;
    r.skipped_slots = m.skipped_slots;
}

fn us(v: u64) -> String {
    if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1000.0)
    } else {
        format!("{v} µs")
    }
}

/// The human-readable report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let mode = r.mode.as_deref().unwrap_or("none");
    s.push_str(&format!(
        "== bibridge-load: target {}, {} calls, {} sessions ({mode}), window {:.1} s ==\n",
        r.target, r.calls_requested, r.sessions_requested, r.window_s
    ));
    s.push_str(&format!(
        "calls:    {} up, {} failed {:?}, {} hung up by the far end; setup p50 {} p99 {} (at {} cps)\n",
        r.calls_up,
        r.calls_failed,
        r.call_failures,
        r.remote_hangups,
        us(r.call_setup.p50_us),
        us(r.call_setup.p99_us),
        r.cps
    ));
    if r.sessions_requested > 0 {
        s.push_str(&format!(
            "sessions: {} up, {} failed {:?}; setup p50 {} p99 {}\n",
            r.sessions_up,
            r.sessions_failed,
            r.session_failures,
            us(r.session_setup.p50_us),
            us(r.session_setup.p99_us)
        ));
    }
    s.push_str("\npackets (window)   sent        received    seq-expected  seq-lost   loss\n");
    for (k, p) in &r.packets {
        if p.sent == 0 && p.received == 0 {
            continue;
        }
        s.push_str(&format!(
            "  {:<16} {:<11} {:<11} {:<13} {:<10} {:.3}%\n",
            k, p.sent, p.received, p.seq_expected, p.seq_lost, p.loss_pct
        ));
    }
    s.push_str(
        "\nlatency (added by the target)           samples    p50       p99       p99.9     max\n",
    );
    for p in Path::ALL {
        let Some(x) = r.latency.get(p.key()) else {
            continue;
        };
        let l = &x.latency;
        s.push_str(&format!(
            "  {:<38} {:<10} {:<9} {:<9} {:<9} {}\n",
            p.name(),
            l.samples,
            us(l.p50_us),
            us(l.p99_us),
            us(l.p999_us),
            us(l.max_us)
        ));
        if x.unkeyed + x.misrouted > 0 {
            s.push_str(&format!(
                "    !! {} packets with altered payload, {} from another call\n",
                x.unkeyed, x.misrouted
            ));
        }
        if !p.is_relay() {
            s.push_str(&format!(
                "    probes detected {} of {} sent by the customers of these calls\n",
                x.probes_seen, r.probes_sent
            ));
        }
    }
    if r.stale_keys + r.unknown_source + r.send_errors > 0 {
        s.push_str(&format!(
            "  (keys older than 5 s: {}, packets from unknown ports: {}, send errors: {})\n",
            r.stale_keys, r.unknown_source, r.send_errors
        ));
    }
    if r.skipped_slots > 0 {
        s.push_str(&format!(
            "  !! the generator stalled and skipped {} ms of sending: it was short of CPU\n",
            r.skipped_slots
        ));
    }
    match &r.cpu {
        Some(c) => s.push_str(&format!(
            "\nCPU of {} (pid {}): {:.2} s = {:.1}% of one core; {:.1} µs per call-second; \
             {:.2} µs per packet in, {:.2} µs per packet out ({} relayed, {} mixed out)\n",
            r.target,
            c.pid,
            c.cpu_s,
            c.cpu_pct_of_one_core,
            c.us_per_call_second,
            c.us_per_packet_in,
            c.us_per_packet_out,
            c.packets_out_relayed,
            c.packets_out_mixed
        )),
        None => s.push_str("\nCPU: no --pid given, not measured\n"),
    }
    s.push_str(&format!(
        "load generator CPU: {:.1}% of one core\n",
        r.loadgen_cpu_pct
    ));
    if r.teardown_open_dialogs > 0 {
        s.push_str(&format!(
            "!! {} dialogs still open after teardown\n",
            r.teardown_open_dialogs
        ));
    }
    s
}

/// Writes the latency CDF of every path with samples as an SVG (log-scaled milliseconds).
pub fn plot(path: &std::path::Path, title: &str, m: &Measure) -> Result<(), String> {
    use plotters::prelude::*;
    let series: Vec<(Path, Vec<(f64, f64)>)> = Path::ALL
        .iter()
        .map(|&p| (p, cdf_points(&m.latency[p as usize])))
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let max_ms = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        * 1.5;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((0.01f64..max_ms).log_scale(), 0f64..1.0f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("added latency (ms, log scale)")
        .y_desc("fraction of packets / probes")
        .draw()
        .map_err(|x| e(&x))?;
    let colors = [BLUE, GREEN, MAGENTA, RED, BLACK];
    for (i, (p, pts)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                pts.into_iter().map(|(x, y)| (x.max(0.01), y)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(p.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
