//! `bibridge-load`: see `bibridge-load --help` and crates/loadgen/README.md.
//!
//! # Layout
//! This file only turns the parsed command line ([`bibridge_loadgen::cli`]) into a config file,
//! a spawned server and a [`bibridge_loadgen::run::run`], and writes the outputs.

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command as Proc, ExitCode, Stdio};
use std::time::Duration;

use bibridge_b2bua::config::Config;
use bibridge_loadgen::cli::{self, Command, GenArgs, RunArgs, TargetKind};
use bibridge_loadgen::config::{generate, GenOptions, Parties};
use bibridge_loadgen::is_loopback;
use bibridge_loadgen::report::{plot, render};
use bibridge_loadgen::run::{
    free_udp_port, run, wait_ng_ready, wait_sip_ready, RunOptions, Target,
};

fn gen_config(g: &GenArgs) -> Result<(), String> {
    let ip = g.sip.ip();
    let o = GenOptions {
        agents: g.agents.min(bibridge_loadgen::MAX_CALLS),
        supervisors: g
            .supervisors
            .unwrap_or(g.agents)
            .min(bibridge_loadgen::MAX_CALLS),
        sip: g.sip,
        trunk: SocketAddr::new(ip, g.trunk_port),
        agent_contact: SocketAddr::new(ip, g.agent_port),
        rtp_min: g.rtp_ports.0,
        rtp_max: g.rtp_ports.1,
    };
    if !is_loopback(g.sip) {
        return Err(format!("{} is not a loopback address", g.sip));
    }
    std::fs::write(&g.out, generate(&o)).map_err(|e| format!("{}: {e}", g.out))?;
    eprintln!(
        "wrote {} ({} agents, {} supervisors)",
        g.out, o.agents, o.supervisors
    );
    Ok(())
}

/// A child process that is killed when this guard goes (also on an error path).
struct Spawned {
    child: Child,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_file(r: &RunArgs) -> Result<std::fs::File, String> {
    let path = r
        .log
        .clone()
        .unwrap_or_else(|| format!("/tmp/bibridge-load-{}.log", std::process::id()));
    eprintln!("spawned server output: {path}");
    std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))
}

fn spawn_bibridge(r: &RunArgs, bin: &str) -> Result<(Spawned, Parties), String> {
    let ip: IpAddr = r.sip.map_or(IpAddr::from([127, 0, 0, 1]), |s| s.ip());
    let port = |what: &str| free_udp_port(ip).map_err(|e| format!("{what} port: {e}"));
    let sip = match r.sip {
        Some(s) => s,
        None => SocketAddr::new(ip, port("SIP")?),
    };
    let o = GenOptions {
        agents: r.calls,
        supervisors: r.sessions,
        sip,
        trunk: SocketAddr::new(ip, port("trunk")?),
        agent_contact: SocketAddr::new(ip, port("agent")?),
        rtp_min: r.rtp_ports.0,
        rtp_max: r.rtp_ports.1,
    };
    let text = generate(&o);
    let path = r
        .keep_config
        .clone()
        .unwrap_or_else(|| format!("/tmp/bibridge-load-{}.toml", std::process::id()));
    std::fs::write(&path, &text).map_err(|e| format!("{path}: {e}"))?;
    let cfg = Config::from_toml(&text, &path).map_err(|e| e.to_string())?;
    let parties = Parties::from_config(&cfg)?;
    let log = log_file(r)?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child = Proc::new(bin)
        .arg("--config")
        .arg(&path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let guard = Spawned { child };
    if !wait_sip_ready(sip, Duration::from_secs(10)) {
        return Err(format!("{bin} did not answer SIP on {sip} within 10 s"));
    }
    eprintln!(
        "started {bin} (pid {}) on {sip} with {path}",
        guard.child.id()
    );
    Ok((guard, parties))
}

/// The userspace-only rtpengine command line this harness uses (no kernel forwarding table).
fn rtpengine_args(ng: SocketAddr) -> Vec<String> {
    vec![
        // Ignore /etc/rtpengine/rtpengine.conf: the command line is the whole configuration.
        "--config-file=none".into(),
        "--foreground".into(),
        "--table=-1".into(),
        format!("--interface={}", ng.ip()),
        format!("--listen-ng={ng}"),
        "--port-min=40000".into(),
        "--port-max=49999".into(),
        "--log-stderr".into(),
        "--log-level=4".into(),
    ]
}

fn spawn_rtpengine(r: &RunArgs, bin: &str, ng: SocketAddr) -> Result<Spawned, String> {
    let log = log_file(r)?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child = Proc::new(bin)
        .args(rtpengine_args(ng))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let guard = Spawned { child };
    if !wait_ng_ready(ng, Duration::from_secs(10)) {
        return Err(format!("{bin} did not answer NG ping on {ng} within 10 s"));
    }
    eprintln!("started {bin} (pid {}) with NG on {ng}", guard.child.id());
    Ok(guard)
}

fn run_cmd(r: &RunArgs) -> Result<(), String> {
    let mut guard = None;
    let (target, pid) = match r.target {
        TargetKind::Bibridge => match (&r.spawn, &r.config) {
            (Some(bin), _) => {
                let (g, parties) = spawn_bibridge(r, bin)?;
                let pid = g.child.id();
                guard = Some(g);
                (Target::Bibridge(parties), Some(pid))
            }
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
                let cfg = Config::from_toml(&text, file).map_err(|e| e.to_string())?;
                (Target::Bibridge(Parties::from_config(&cfg)?), r.pid)
            }
            (None, None) => return Err("run needs --config or --spawn".into()),
        },
        TargetKind::Rtpengine => {
            let ng = r.ng.ok_or("--ng is required")?;
            if !is_loopback(ng) {
                return Err(format!("{ng} is not a loopback address"));
            }
            match &r.spawn {
                Some(bin) => {
                    let g = spawn_rtpengine(r, bin, ng)?;
                    let pid = g.child.id();
                    guard = Some(g);
                    (Target::Rtpengine(ng), Some(pid))
                }
                None => (Target::Rtpengine(ng), r.pid),
            }
        }
    };
    let opts = RunOptions {
        target,
        calls: r.calls,
        sessions: r.sessions,
        mode: r.mode,
        duration: r.duration,
        cps: r.cps,
        pid,
        progress: !r.quiet,
    };
    let outcome = run(&opts);
    drop(guard);
    let outcome = outcome?;
    print!("{}", render(&outcome.report));
    if let Some(f) = &r.json {
        let text = serde_json::to_string_pretty(&outcome.report).map_err(|e| e.to_string())?;
        std::fs::write(f, text).map_err(|e| format!("{f}: {e}"))?;
        eprintln!("wrote {f}");
    }
    if let Some(f) = &r.plot {
        let title = format!(
            "{}: {} calls, {} {} sessions — added latency CDF",
            outcome.report.target,
            outcome.report.calls_up,
            outcome.report.sessions_up,
            r.mode.name()
        );
        plot(std::path::Path::new(f), &title, &outcome.measure)?;
        eprintln!("wrote {f}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match cli::parse(&args) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Ok(Command::GenConfig(g)) => gen_config(&g),
        Ok(Command::Run(r)) => run_cmd(&r),
        Err(e) => Err(format!("{e}\n(see bibridge-load --help)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bibridge-load: {e}");
            ExitCode::FAILURE
        }
    }
}
