//! The `bibridge` command line.
//!
//! ```text
//! bibridge                       run with the embedded lab config (docs/design.md §2)
//! bibridge --config FILE         run with FILE
//! bibridge check-config FILE     validate FILE: exit 0, or print every error and exit 1
//! bibridge audit [OPTIONS]       print the audit log
//! ```

use std::path::Path;

use bibridge_b2bua::config::Config;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run { config: Option<String> },
    CheckConfig { file: String },
    Audit(AuditArgs),
    Help,
    Version,
}

/// Arguments of `bibridge audit`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AuditArgs {
    /// Config whose `[compliance] audit_log` names the log (default: the lab config's).
    pub config: Option<String>,
    /// The log file itself (overrides the config).
    pub file: Option<String>,
    pub since: Option<String>,
    pub agent: Option<String>,
    pub json: bool,
}

pub const USAGE: &str = "\
bibridge: a software Built-In-Bridge (SIP B2BUA with media anchoring)

USAGE:
    bibridge                        run with the embedded lab config
    bibridge --config FILE          run with the configuration in FILE
    bibridge check-config FILE      check FILE; print every error (file:line:col: key: expected ...)
    bibridge audit [--config FILE | --file LOG] [--since TIME] [--agent EXT] [--json]
                                    print the audit log (TIME: 2026-11-25 or 2026-11-25T14:03, UTC)
    bibridge --help | --version

Logging: RUST_LOG (default \"info\"), e.g. RUST_LOG=bibridge=debug,info
";

/// Parse arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Ok(Command::Run { config: None }),
        [flag] if flag == "-h" || flag == "--help" || flag == "help" => Ok(Command::Help),
        [flag] if flag == "-V" || flag == "--version" => Ok(Command::Version),
        [flag, file] if flag == "--config" || flag == "-c" => Ok(Command::Run {
            config: Some(file.clone()),
        }),
        [cmd, file] if cmd == "check-config" => Ok(Command::CheckConfig { file: file.clone() }),
        [cmd] if cmd == "check-config" => Err("check-config needs a FILE".into()),
        [cmd, rest @ ..] if cmd == "audit" => parse_audit(rest).map(Command::Audit),
        _ => Err(format!("unrecognised arguments: {}", args.join(" "))),
    }
}

fn parse_audit(args: &[String]) -> Result<AuditArgs, String> {
    let mut a = AuditArgs::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("audit: {name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => a.config = Some(value("--config")?),
            "--file" => a.file = Some(value("--file")?),
            "--since" => a.since = Some(value("--since")?),
            "--agent" => a.agent = Some(value("--agent")?),
            "--json" => a.json = true,
            other => return Err(format!("audit: unrecognised argument {other}")),
        }
    }
    Ok(a)
}

/// Read and validate a config file. The error text names the file, and for each problem the key
/// and what was expected.
pub fn load(file: &str) -> Result<Config, String> {
    let text = std::fs::read_to_string(Path::new(file))
        .map_err(|e| format!("{file}: cannot read: {e}"))?;
    Config::from_toml(&text, file).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&[]).unwrap(), Command::Run { config: None });
        assert_eq!(
            parse(&s(&["--config", "a.toml"])).unwrap(),
            Command::Run {
                config: Some("a.toml".into())
            }
        );
        assert_eq!(
            parse(&s(&["check-config", "a.toml"])).unwrap(),
            Command::CheckConfig {
                file: "a.toml".into()
            }
        );
        assert!(parse(&s(&["check-config"])).is_err());
        assert_eq!(
            parse(&s(&[
                "audit",
                "--since",
                "2026-11-25",
                "--agent",
                "1001",
                "--json"
            ]))
            .unwrap(),
            Command::Audit(AuditArgs {
                since: Some("2026-11-25".into()),
                agent: Some("1001".into()),
                json: true,
                ..AuditArgs::default()
            })
        );
        assert!(parse(&s(&["audit", "--agent"])).is_err());
        assert!(parse(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn load_names_the_file_when_missing() {
        let err = load("/nonexistent/bibridge.toml").unwrap_err();
        assert!(
            err.starts_with("/nonexistent/bibridge.toml: cannot read"),
            "{err}"
        );
    }
}
