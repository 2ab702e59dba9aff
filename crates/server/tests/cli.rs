//! The `bibridge` binary's command line, run as a real process.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bibridge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bibridge"))
}

fn repo_file(rel: &str) -> String {
    format!("{}/../../{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_lab_config() {
    let out = bibridge()
        .args(["check-config", &repo_file("config/bibridge.toml")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": OK\n"));
}

#[test]
fn check_config_reports_every_error_with_file_and_key() {
    let dir = std::env::temp_dir().join(format!("bibridge-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[rtp]\nport_min = 30000\nport_max = 20000\n\n[[users]]\nextension = 1001\npassword = \"x\"\n\n[sip]\nt1_msec = 5\n",
    )
    .unwrap();
    let out = bibridge()
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("bad.toml")).collect();
    assert!(
        lines.len() >= 3,
        "every error reported, each naming the file: {err}"
    );
    assert!(err.contains("users[0].extension"), "{err}");
    assert!(err.contains("t1_msec"), "unknown key named: {err}");
    assert!(err.contains("port_m"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_arguments_exit_2_with_usage() {
    let out = bibridge().arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("USAGE"));
}

#[test]
fn missing_config_file_is_named() {
    let out = bibridge()
        .args(["--config", "/nonexistent/x.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}
