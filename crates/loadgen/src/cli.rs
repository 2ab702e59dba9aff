//! The `bibridge-load` command line.

use std::net::SocketAddr;
use std::time::Duration;

use crate::SessionMode;

pub const USAGE: &str = "\
bibridge-load: load generator and latency/CPU harness for bibridge (loopback only)

USAGE:
  bibridge-load gen-config --agents N [--supervisors M] --out FILE
                [--sip 127.0.0.1:5060] [--trunk-port 5080] [--agent-port 5090]
                [--rtp-ports 20000-39999]
      Write a bibridge config: agents 10000.. with static contacts at --agent-port, supervisors
      20000.. (password load-<ext>), trunk \"load\" = 127.0.0.1:<trunk-port>, policy allowing
      every mode. --supervisors defaults to --agents.

  bibridge-load run (--config FILE | --spawn BIBRIDGE_BIN) [options]
      Play the trunk's customers, the agents and the supervisors of FILE (a config written by
      gen-config, or any config whose agents have one common static contact) against a running
      bibridge. With --spawn, write a config for this run, start BIBRIDGE_BIN on it, measure it,
      and stop it again.

  bibridge-load run --target rtpengine --ng 127.0.0.1:2223 [--spawn RTPENGINE_BIN] [options]
      Baseline: the same customer/agent RTP legs set up through rtpengine's NG protocol.

RUN OPTIONS:
  --calls N            concurrent calls (1..=5000)                        [default 100]
  --sessions M         supervisor sessions, on the first M calls (<= N)  [default 0]
  --mode MODE          monitor | coach | barge                            [default monitor]
  --duration D         measurement window: 30s, 2m, 500ms (<= 600s)      [default 30s]
  --cps R              call and session setup rate per second            [default 200]
  --pid PID            process whose CPU is measured (set by --spawn)
  --json FILE          write the report as JSON
  --plot FILE.svg      write the latency CDF per path as SVG
  --quiet              no progress lines on stderr
  --sip ADDR           with --spawn: bibridge's SIP address [default 127.0.0.1:<free port>]
  --rtp-ports MIN-MAX  with --spawn: bibridge's RTP range       [default 20000-39999]
  --keep-config FILE   with --spawn: write the generated config here (kept)
  --log FILE           with --spawn: the spawned process's output [default /tmp/bibridge-load-<pid>.log]

Every address must be loopback (127.0.0.0/8 or ::1). Media: PCMU, 20 ms, one socket per role.
";

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Bibridge,
    Rtpengine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenArgs {
    pub agents: u32,
    pub supervisors: Option<u32>,
    pub out: String,
    pub sip: SocketAddr,
    pub trunk_port: u16,
    pub agent_port: u16,
    pub rtp_ports: (u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    pub target: TargetKind,
    pub config: Option<String>,
    pub spawn: Option<String>,
    pub ng: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    pub calls: u32,
    pub sessions: u32,
    pub mode: SessionMode,
    pub duration: Duration,
    pub cps: u32,
    pub pid: Option<u32>,
    pub json: Option<String>,
    pub plot: Option<String>,
    pub quiet: bool,
    pub rtp_ports: (u16, u16),
    pub keep_config: Option<String>,
    pub log: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    GenConfig(GenArgs),
    Run(Box<RunArgs>),
    Help,
}

/// `30s`, `2m`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {s:?} (examples: 30s, 2m, 500ms)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| bad())?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        _ => Err(bad()),
    }
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("bad port range {s:?} (MIN-MAX)"))?;
    let a: u16 = a.parse().map_err(|_| format!("bad port {a:?}"))?;
    let b: u16 = b.parse().map_err(|_| format!("bad port {b:?}"))?;
    if a & 1 != 0 || a >= b {
        return Err(format!("port range {s}: MIN must be even and below MAX"));
    }
    Ok((a, b))
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: expected a number, found {v:?}"))
}

fn addr(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{flag}: expected IP:port, found {v:?}"))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    if matches!(cmd.as_str(), "-h" | "--help" | "help")
        || rest.iter().any(|a| a == "--help" || a == "-h")
    {
        return Ok(Command::Help);
    }
    let mut flags: Vec<(String, Option<String>)> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        if !a.starts_with("--") {
            return Err(format!("unexpected argument {a:?}"));
        }
        if a == "--quiet" {
            flags.push((a.clone(), None));
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        flags.push((a.clone(), Some(v.clone())));
    }
    let get = |name: &str| {
        flags
            .iter()
            .rev()
            .find(|(f, _)| f == name)
            .and_then(|(_, v)| v.clone())
    };
    let known: &[&str] = match cmd.as_str() {
        "gen-config" => &[
            "--agents",
            "--supervisors",
            "--out",
            "--sip",
            "--trunk-port",
            "--agent-port",
            "--rtp-ports",
        ],
        "run" => &[
            "--target",
            "--config",
            "--spawn",
            "--ng",
            "--sip",
            "--calls",
            "--sessions",
            "--mode",
            "--duration",
            "--cps",
            "--pid",
            "--json",
            "--plot",
            "--quiet",
            "--rtp-ports",
            "--keep-config",
            "--log",
        ],
        other => {
            return Err(format!(
                "unknown command {other:?} (gen-config, run, --help)"
            ))
        }
    };
    if let Some((f, _)) = flags.iter().find(|(f, _)| !known.contains(&f.as_str())) {
        return Err(format!("{cmd}: unknown option {f}"));
    }
    let rtp_ports = get("--rtp-ports")
        .map(|s| parse_range(&s))
        .transpose()?
        .unwrap_or((20_000, 39_999));
    if cmd == "gen-config" {
        return Ok(Command::GenConfig(GenArgs {
            agents: num(
                "--agents",
                &get("--agents").ok_or("gen-config needs --agents N")?,
            )?,
            supervisors: get("--supervisors")
                .map(|v| num("--supervisors", &v))
                .transpose()?,
            out: get("--out").ok_or("gen-config needs --out FILE")?,
            sip: get("--sip")
                .map(|v| addr("--sip", &v))
                .transpose()?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060))),
            trunk_port: get("--trunk-port")
                .map(|v| num("--trunk-port", &v))
                .transpose()?
                .unwrap_or(5080),
            agent_port: get("--agent-port")
                .map(|v| num("--agent-port", &v))
                .transpose()?
                .unwrap_or(5090),
            rtp_ports,
        }));
    }
    let target = match get("--target").as_deref() {
        None | Some("bibridge") => TargetKind::Bibridge,
        Some("rtpengine") => TargetKind::Rtpengine,
        Some(t) => return Err(format!("--target: bibridge or rtpengine, found {t:?}")),
    };
    let r = RunArgs {
        target,
        config: get("--config"),
        spawn: get("--spawn"),
        ng: get("--ng").map(|v| addr("--ng", &v)).transpose()?,
        sip: get("--sip").map(|v| addr("--sip", &v)).transpose()?,
        calls: get("--calls")
            .map(|v| num("--calls", &v))
            .transpose()?
            .unwrap_or(100),
        sessions: get("--sessions")
            .map(|v| num("--sessions", &v))
            .transpose()?
            .unwrap_or(0),
        mode: match get("--mode") {
            None => SessionMode::Monitor,
            Some(m) => SessionMode::parse(&m)
                .ok_or_else(|| format!("--mode: monitor, coach or barge, found {m:?}"))?,
        },
        duration: get("--duration")
            .map(|v| parse_duration(&v))
            .transpose()?
            .unwrap_or(Duration::from_secs(30)),
        cps: get("--cps")
            .map(|v| num("--cps", &v))
            .transpose()?
            .unwrap_or(200),
        pid: get("--pid").map(|v| num("--pid", &v)).transpose()?,
        json: get("--json"),
        plot: get("--plot"),
        quiet: flags.iter().any(|(f, _)| f == "--quiet"),
        rtp_ports,
        keep_config: get("--keep-config"),
        log: get("--log"),
    };
    match r.target {
        TargetKind::Bibridge if r.config.is_some() == r.spawn.is_some() => {
            return Err("run needs exactly one of --config FILE or --spawn BIBRIDGE_BIN".into())
        }
        TargetKind::Rtpengine if r.ng.is_none() => {
            return Err("--target rtpengine needs --ng IP:PORT".into())
        }
        _ => {}
    }
    Ok(Command::Run(Box::new(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_run_and_gen_config() {
        let Ok(Command::Run(r)) = parse(&args(
            "run --config x.toml --calls 5 --sessions 2 --mode coach --duration 2s --json o.json --quiet",
        )) else {
            panic!("run parses");
        };
        assert_eq!((r.calls, r.sessions, r.mode), (5, 2, SessionMode::Coach));
        assert_eq!(r.duration, Duration::from_secs(2));
        assert!(r.quiet);
        assert_eq!(r.cps, 200);
        let Ok(Command::GenConfig(g)) =
            parse(&args("gen-config --agents 10 --out f --trunk-port 6000"))
        else {
            panic!("gen-config parses");
        };
        assert_eq!((g.agents, g.trunk_port, g.agent_port), (10, 6000, 5090));
        assert_eq!(parse(&args("run --help")), Ok(Command::Help));
        assert_eq!(parse(&[]), Ok(Command::Help));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "run --calls 5",
            "run --config a --spawn b",
            "run --config a --mode spy",
            "run --config a --bogus 1",
            "run --target rtpengine",
            "gen-config --out f",
            "gen-config --agents x --out f",
            "run --config a --rtp-ports 3-9",
            "frobnicate",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad} must fail");
        }
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
    }
}
