//! End to end: the load generator against a bibridge started in-process (ephemeral SIP port,
//! its own RTP block), a few calls and one session, a 2 s window.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bibridge_b2bua::config::Config;
use bibridge_loadgen::config::{generate, GenOptions, Parties};
use bibridge_loadgen::run::{free_udp_port, run, RunOptions, Target};
use bibridge_loadgen::SessionMode;

/// A block of 100 free RTP ports in 30000-31999 (below the kernel's ephemeral range, away from
/// the e2e tests' blocks that start at 20000), picked from the process id and a per-process
/// counter so that the tests of this file, running in parallel, never share a block.
fn rtp_block() -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 20) as u16 + NEXT.fetch_add(7, Ordering::Relaxed);
    for k in 0..20u16 {
        let base = 30_000 + 100 * ((start + k) % 20);
        if (base..base + 100).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return (base, base + 99);
        }
    }
    panic!("no free block of 100 RTP ports in 30000-31999");
}

async fn run_against_bibridge(calls: u32, sessions: u32, mode: SessionMode) -> serde_json::Value {
    let ip = "127.0.0.1".parse().expect("ip");
    let (rtp_min, rtp_max) = rtp_block();
    let text = generate(&GenOptions {
        agents: calls,
        supervisors: sessions,
        sip: SocketAddr::new(ip, 5060),
        trunk: SocketAddr::new(ip, free_udp_port(ip).expect("port")),
        agent_contact: SocketAddr::new(ip, free_udp_port(ip).expect("port")),
        rtp_min,
        rtp_max,
    });
    let mut cfg = Config::from_toml(&text, "generated").expect("generated config is valid");
    cfg.sip.udp = Some("127.0.0.1:0".parse().expect("addr"));
    // The default audit log is a file in the working directory: keep it out of the source tree.
    cfg.compliance.audit_log = Some(std::env::temp_dir().join(format!(
        "bibridge-load-test-audit-{}-{}.jsonl",
        std::process::id(),
        calls
    )));
    let server = bibridge::Server::start(cfg.clone())
        .await
        .expect("bibridge starts");
    cfg.sip.udp = server.udp_addr();
    let parties = Parties::from_config(&cfg).expect("parties");
    let opts = RunOptions {
        target: Target::Bibridge(parties),
        calls,
        sessions,
        mode,
        duration: Duration::from_secs(2),
        cps: 50,
        // In-process: the CPU measured is the test's own (server + generator).
        pid: Some(std::process::id()),
        progress: false,
    };
    let outcome = tokio::task::spawn_blocking(move || run(&opts))
        .await
        .expect("run thread")
        .expect("run succeeds");
    server.shutdown().await;
    let text = serde_json::to_string_pretty(&outcome.report).expect("report serialises");
    serde_json::from_str(&text).expect("report JSON is well-formed")
}

fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v:#}"))
}

fn assert_media_ok(r: &serde_json::Value, paths: &[&str]) {
    for role in ["customer", "agent", "supervisor"] {
        let p = &r["packets"][role];
        let exp = u(p, &["seq_expected"]);
        let lost = u(p, &["seq_lost"]);
        assert!(
            lost * 100 < exp.max(1),
            "{role}: lost {lost} of {exp} (>= 1%): {r:#}"
        );
    }
    for path in paths {
        let samples = u(r, &["latency", path, "latency", "samples"]);
        assert!(samples > 0, "no latency samples on {path}: {r:#}");
        assert_eq!(
            u(r, &["latency", path, "unkeyed"]),
            0,
            "{path} altered payloads"
        );
        assert_eq!(
            u(r, &["latency", path, "misrouted"]),
            0,
            "{path} cross-talk"
        );
        assert!(u(r, &["latency", path, "latency", "p50_us"]) > 0);
    }
    assert!(r["cpu"]["cpu_s"].as_f64().is_some(), "CPU measured: {r:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_load_through_in_process_bibridge() {
    let r = run_against_bibridge(5, 1, SessionMode::Monitor).await;
    assert_eq!(u(&r, &["calls_up"]), 5, "{r:#}");
    assert_eq!(u(&r, &["calls_failed"]), 0, "{r:#}");
    assert_eq!(u(&r, &["sessions_up"]), 1, "{r:#}");
    assert_eq!(u(&r, &["teardown_open_dialogs"]), 0, "{r:#}");
    // 4 calls without a session, 1 monitored: every path of a monitor run is timed.
    assert_media_ok(
        &r,
        &[
            "relay_c2a",
            "relay_c2a_monitored",
            "relay_a2c",
            "monitor_mix",
        ],
    );
    // 2 s at 50 pps per stream: about 100 packets per stream; 5 customer streams.
    let sent = u(&r, &["packets", "customer", "sent"]);
    assert!((400..=600).contains(&sent), "customer sent {sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coach_load_times_the_mixed_agent_path() {
    let r = run_against_bibridge(3, 1, SessionMode::Coach).await;
    assert_eq!(u(&r, &["calls_up"]), 3, "{r:#}");
    assert_eq!(u(&r, &["sessions_up"]), 1, "{r:#}");
    assert_media_ok(&r, &["relay_c2a", "relay_a2c", "mixed_c2a", "monitor_mix"]);
}
