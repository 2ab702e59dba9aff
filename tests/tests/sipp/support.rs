//! Running SIPp and baresip from tests: ports, processes (killed on drop), logs.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bibridge_testkit::tone::ToneGen;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::common::Lab;

/// Upper bound for one SIPp run; the scenarios themselves run with `-timeout 20s`.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// The tone baresip plays (from a WAV file written by the test).
pub const BARESIP_TONE_HZ: f64 = 1000.0;

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Whether `tool` can be started. Missing: a skip notice, or a panic when `CI` is set (a CI
/// run must not pass silently without the interop tests).
pub fn tool_available(tool: &str, probe_arg: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg(probe_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{tool}` is not installed but CI is set: install it"
        );
        eprintln!("SKIP: `{tool}` is not installed; this interop test did not run");
    }
    found
}

/// `sipp-scenarios/` at the repository root.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sipp-scenarios")
}

/// A per-test directory for SIPp traces and baresip's config. Removed by [`LogDir::cleanup`]
/// at the end of a passing test; a failing test leaves it for inspection (its path is printed).
pub struct LogDir {
    pub path: PathBuf,
}

impl LogDir {
    pub fn new(label: &str) -> LogDir {
        let path = std::env::temp_dir().join(format!(
            "bibridge-interop-{label}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        LogDir { path }
    }

    pub fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A base port B such that B..B+n were all free a moment ago, B even (RTP convention), taken
/// from 10000-19999: below the lab's RTP range, the tests' RTP ranges (20000-31999) and the
/// kernel's ephemeral ports (32768+), so other tests' sockets do not land there.
pub fn free_port_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 10_000 + 2 * (rand::random::<u16>() % 4_900);
        let held: Vec<_> = (base..base + n)
            .map_while(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            .collect();
        if held.len() == usize::from(n) {
            return base;
        }
    }
    panic!("no block of {n} free UDP ports in 10000-19999");
}

/// Wait (up to 5 s) until some process holds `port` of 127.0.0.1 or 0.0.0.0 in `table`
/// (`/proc/net/udp` or `/proc/net/tcp`), in `state` if given (TCP `0A` = LISTEN). Reading the
/// table instead of probing keeps us from stealing the port or looking like a peer.
/// Elsewhere than Linux, wait half a second.
async fn wait_proc_net(table: &str, port: u16, state: Option<&str>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    loop {
        let Ok(text) = std::fs::read_to_string(table) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return true;
        };
        let found = text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && want.iter().any(|w| w == f[1]) && state.is_none_or(|st| f[3] == st)
        });
        if found {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until some process has bound UDP `port` (see [`wait_proc_net`]).
pub async fn wait_udp_bound(port: u16) -> bool {
    wait_proc_net("/proc/net/udp", port, None).await
}

/// Wait until some process listens on TCP `port` (see [`wait_proc_net`]).
pub async fn wait_tcp_listening(port: u16) -> bool {
    wait_proc_net("/proc/net/tcp", port, Some("0A")).await
}

/// Media was anchored: each SIPp side saw an SDP with a port of bibridge's RTP range.
pub fn assert_anchored(lab: &Lab, sides: &[(&str, &SippOutcome)]) {
    let rtp = lab.cfg.rtp.port_min..=lab.cfg.rtp.port_max;
    for (who, outcome) in sides {
        let ports = sdp_audio_ports(&outcome.messages);
        assert!(
            ports.iter().any(|p| rtp.contains(p)),
            "{who} never got an SDP with a port of bibridge's range {rtp:?} (saw {ports:?})\n{}",
            outcome.report
        );
    }
}

/// The ports of all `m=audio` lines in a SIPp message trace.
pub fn sdp_audio_ports(trace: &str) -> Vec<u16> {
    trace
        .lines()
        .filter_map(|l| l.trim().strip_prefix("m=audio "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// One running SIPp. Killed if dropped before [`Sipp::finish`].
pub struct Sipp {
    label: String,
    child: Child,
    errors: PathBuf,
    messages: PathBuf,
    command: String,
}

/// How a SIPp run ended.
pub struct SippOutcome {
    /// Exit code: 0 all calls succeeded, 1 some call failed, 97/99 other ends, 255/254 fatal.
    pub code: Option<i32>,
    /// SIPp's `-trace_err` log.
    pub errors: String,
    /// SIPp's `-trace_msg` log.
    pub messages: String,
    /// Everything useful for a failure message.
    pub report: String,
}

impl SippOutcome {
    pub fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "SIPp failed\n{}", self.report);
    }
}

impl Sipp {
    /// Start `sipp <server> -sf <scenario>` from `sipp-scenarios/` (the audio path in
    /// customer-uac.xml is relative), on 127.0.0.1 for SIP and media, one call, 20 s at most,
    /// with message and error traces in `logs`.
    pub fn spawn(
        logs: &LogDir,
        label: &str,
        server: std::net::SocketAddr,
        scenario: &str,
        extra: &[String],
    ) -> Sipp {
        let errors = logs.path.join(format!("{label}_errors.log"));
        let messages = logs.path.join(format!("{label}_messages.log"));
        let mut a = args(&[
            &server.to_string(),
            "-sf",
            scenario,
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            errors.to_str().unwrap(),
            "-trace_msg",
            "-message_file",
            messages.to_str().unwrap(),
        ]);
        a.extend_from_slice(extra);
        let command = format!("sipp {}", a.join(" "));
        let child = Command::new("sipp")
            .args(&a)
            .current_dir(scenarios_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        Sipp {
            label: label.to_string(),
            child,
            errors,
            messages,
            command,
        }
    }

    /// Wait for SIPp to exit (killing it after 30 s) and collect its traces.
    pub async fn finish(self) -> SippOutcome {
        let Sipp {
            label,
            child,
            errors,
            messages,
            command,
        } = self;
        let (code, stderr) =
            match tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output()).await {
                Ok(Ok(out)) => (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ),
                Ok(Err(e)) => (None, format!("waiting for SIPp failed: {e}")),
                // Dropping the future dropped the child: kill_on_drop ended it.
                Err(_) => (
                    None,
                    format!("SIPp still running after {PROCESS_TIMEOUT:?}: killed"),
                ),
            };
        let errors_text = std::fs::read_to_string(&errors).unwrap_or_default();
        let messages_text = std::fs::read_to_string(&messages).unwrap_or_default();
        let tail: String = {
            let start = messages_text.len().saturating_sub(6000);
            let start = (start..messages_text.len())
                .find(|&i| messages_text.is_char_boundary(i))
                .unwrap_or(0);
            messages_text[start..].to_string()
        };
        let report = format!(
            "[{label}] exit code {code:?}\ncommand: {command}\n--- stderr:\n{stderr}\n--- {} :\n{errors_text}\n--- end of {} :\n{tail}",
            errors.display(),
            messages.display()
        );
        SippOutcome {
            code,
            errors: errors_text,
            messages: messages_text,
            report,
        }
    }
}

/// register.xml for `ext` from 127.0.0.1:`port`, to completion.
pub async fn register_with_sipp(
    lab: &Lab,
    logs: &LogDir,
    label: &str,
    ext: &str,
    password: &str,
    port: u16,
) -> SippOutcome {
    let port = port.to_string();
    Sipp::spawn(
        logs,
        label,
        lab.sip,
        "register.xml",
        &args(&["-s", ext, "-au", ext, "-ap", password, "-p", &port]),
    )
    .finish()
    .await
}

/// agent-uas.xml as 1001 on SIP port `port` (where it registered), media on `media`.
pub fn spawn_agent_uas(logs: &LogDir, lab: &Lab, port: u16, media: u16, echo: bool) -> Sipp {
    let mut a = args(&[
        "-s",
        "1001",
        "-p",
        &port.to_string(),
        "-mp",
        &media.to_string(),
    ]);
    if echo {
        a.push("-rtp_echo".into());
    }
    Sipp::spawn(logs, "agent", lab.sip, "agent-uas.xml", &a)
}

/// customer-uac.xml from the trunk's address, calling `ext`, media on `media`.
pub fn spawn_customer_uac(logs: &LogDir, lab: &Lab, ext: &str, media: u16) -> Sipp {
    let a = args(&[
        "-s",
        ext,
        "-p",
        &lab.trunk_addr.port().to_string(),
        "-mp",
        &media.to_string(),
        "-d",
        "4000",
    ]);
    Sipp::spawn(logs, "customer", lab.sip, "customer-uac.xml", &a)
}

/// baresip's module directory, if baresip is installed (see [`tool_available`] for CI).
pub fn baresip_modules() -> Option<PathBuf> {
    if !tool_available("baresip", "-h") {
        return None;
    }
    let candidates = [
        std::env::var_os("BARESIP_MODULES").map(PathBuf::from),
        Some(PathBuf::from("/usr/lib/baresip/modules")),
        Some(PathBuf::from("/usr/local/lib/baresip/modules")),
        Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/baresip/modules")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("g711.so").exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "baresip is installed but its modules (g711.so) are not found"
        );
        eprintln!("SKIP: baresip modules not found (set BARESIP_MODULES)");
    }
    found
}

/// A baresip with a throwaway config: account 1002, auto-answer, PCMU, plays a 1000 Hz tone at
/// -20 dBFS from a WAV file, discards what it receives. Killed (and its directory removed)
/// on drop.
pub struct Baresip {
    child: Child,
    dir: LogDir,
    output: Arc<Mutex<String>>,
}

impl Baresip {
    pub fn spawn(modules: &Path, lab: &Lab, sip_port: u16, register: bool) -> Baresip {
        let dir = LogDir::new("baresip");
        let wav = dir.path.join("tone.wav");
        // 10 s: baresip hangs up when its source file ends.
        write_wav(
            &wav,
            &ToneGen::new(BARESIP_TONE_HZ, crate::common::LEVEL, 8000).samples(80_000),
        );
        let rtp = free_port_block(20);
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{sip_port}\n\
             audio_player\taufile,/dev/null\n\
             audio_alert\taufile,/dev/null\n\
             audio_source\taufile,{wav}\n\
             rtp_ports\t{rtp}-{}\n\
             module_path\t{modules}\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n",
            rtp + 19,
            wav = wav.display(),
            modules = modules.display(),
        );
        std::fs::write(dir.path.join("config"), config).unwrap();
        let regint = if register { 600 } else { 0 };
        let account = format!(
            "<sip:1002@{}>;auth_pass=lab1002;regint={regint};answermode=auto\n",
            lab.sip
        );
        std::fs::write(dir.path.join("accounts"), account).unwrap();
        let mut child = Command::new("baresip")
            .args(["-f", dir.path.to_str().unwrap(), "-t", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut o = out.lock().unwrap();
                    // baresip prints call statistics many times a second: keep the start only.
                    if o.len() < 64 * 1024 {
                        o.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        Baresip { child, dir, output }
    }

    /// What baresip printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.dir.cleanup();
    }
}

/// A 16-bit mono 8 kHz PCM WAV file.
fn write_wav(path: &Path, samples: &[i16]) {
    let data_len = u32::try_from(samples.len() * 2).unwrap();
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    b.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    b.extend_from_slice(&2u16.to_le_bytes()); // block align
    b.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}
