//! SIP/TCP floods against a real `bibridge` process with a small open-file limit (`ulimit -n`
//! in the child only): the listener must neither spin nor flood the log when accept fails
//! (EMFILE), and the HTTP API must keep answering while SIP/TCP is saturated
//! (docs/reliability/transport-http.md).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Bibridge {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Bibridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// bibridge with `nofile` as its open-file limit, on fresh ports, logging warnings to a file (the log goes to stdout).
fn spawn(nofile: u32, name: &str) -> Bibridge {
    let dir = std::env::temp_dir().join(format!("bibridge-fd-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = dir.join("bibridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"{sip}\"\ntcp = \"{sip}\"\n[http]\nlisten = \"{http}\"\n[compliance]\naudit_log = false\n"
        ),
    )
    .unwrap();
    let log = dir.join("bibridge.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n \"$0\" && exec \"$1\" --config \"$2\"",
            &nofile.to_string(),
            env!("CARGO_BIN_EXE_bibridge"),
            cfg.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let b = Bibridge {
        child,
        sip,
        http,
        log,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(http).is_err() {
        assert!(Instant::now() < deadline, "bibridge did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    b
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are the 12th and
    // 13th of them.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

/// An HTTP answer's status line, if one comes within `within`.
fn http_status(addr: SocketAddr, within: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, within).ok()?;
    s.set_read_timeout(Some(within)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().map(str::to_string)
}

/// Open up to `n` connections to `addr` (fewer if the client runs out of descriptors).
fn flood(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let _ = bibridge::net_guard::raise_nofile_limit();
    (0..n)
        // A SYN dropped on a full backlog is sent again after 1 s: wait for that.
        .map_while(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(4)).ok())
        .collect()
}

fn log_lines(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// 400 SIP/TCP connections against a 128-descriptor process: the SIP listener takes at most
/// half of them, so the HTTP API still accepts and answers, and nothing spins.
#[test]
fn http_answers_while_sip_tcp_is_flooded() {
    let b = spawn(128, "flood");
    let conns = flood(b.sip, 400);
    assert!(conns.len() >= 200, "{} connections opened", conns.len());
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(b.child.id());
    let t0 = Instant::now();
    let status = http_status(b.http, Duration::from_secs(3));
    assert!(
        status
            .as_deref()
            .is_some_and(|s| s.starts_with("HTTP/1.1 ")),
        "no HTTP answer while SIP/TCP is flooded: {status:?}"
    );
    std::thread::sleep(Duration::from_secs(2).saturating_sub(t0.elapsed()));
    let cpu = (cpu_seconds(b.child.id()) - cpu0) / t0.elapsed().as_secs_f64();
    assert!(
        cpu < 0.25,
        "bibridge used {:.0} % CPU while flooded",
        cpu * 100.0
    );
    let accept_lines = log_lines(&b.log, "accept");
    assert!(accept_lines <= 2, "{accept_lines} accept log lines");
    drop(conns);
}

/// A process with too few descriptors for even its capped SIP/TCP share: accept fails with
/// EMFILE. The listener backs off (no spinning) and logs one line per 10 s with the count.
#[test]
fn accept_errors_back_off_and_are_logged_once_per_interval() {
    let b = spawn(24, "emfile");
    let conns = flood(b.sip, 100);
    assert!(conns.len() >= 50, "{} connections opened", conns.len());
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(b.child.id());
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = (cpu_seconds(b.child.id()) - cpu0) / t0.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    let accept_lines = log_lines(&b.log, "accept");
    assert!(
        (1..=2).contains(&accept_lines),
        "{accept_lines} accept log lines in 3.5 s (one expected):\n{}",
        &log[..log.len().min(2000)]
    );
    assert!(
        log.contains("Too many open files") || log.contains("os error 24"),
        "{}",
        &log[..log.len().min(2000)]
    );
    assert!(
        cpu < 0.25,
        "bibridge used {:.0} % CPU in an accept-error storm",
        cpu * 100.0
    );
    drop(conns);
}
