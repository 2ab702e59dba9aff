//! The audit log survives a crash: a real `bibridge` process connects a monitor session, is
//! killed with SIGKILL, and the start record is on disk and readable by `bibridge audit`; after a
//! restart the session the crash interrupted is closed on record (`stop`, `interrupted`) and the
//! log goes on (a refusal is appended after the old records).
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bibridge_testkit::ua::{sdp_offer, TestUa};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(sip: u16, trunk: SocketAddr, agent: SocketAddr, audit: &Path, rtp_min: u16) -> String {
    format!(
        r#"
[sip]
udp = "127.0.0.1:{sip}"
tcp = false
[rtp]
port_min = {rtp_min}
port_max = {}
[http]
listen = false
[compliance]
audit_log = "{}"
[[users]]
extension = "1001"
password = "pw1001"
roles = ["agent"]
groups = ["agents"]
builtin_bridge = true
contact = "sip:1001@{agent}"
[[users]]
extension = "1002"
password = "pw1002"
roles = ["agent"]
groups = ["agents"]
builtin_bridge = true
[[users]]
extension = "2001"
password = "pw2001"
roles = ["supervisor"]
groups = ["supervisors"]
[[trunks]]
name = "pstn"
address = "{trunk}"
[[routes]]
prefix = "1"
target = "users"
[[policy]]
supervisors = "supervisors"
agents = "agents"
modes = ["monitor", "coach", "barge"]
"#,
        rtp_min + 199,
        audit.display()
    )
}

fn spawn(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bibridge"))
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until bibridge answers OPTIONS.
async fn wait_up(sip: SocketAddr) {
    let mut probe = TestUa::bind("probe", "", sip).await.unwrap();
    probe.set_request_timeout(Duration::from_millis(300));
    for _ in 0..50 {
        if probe.options(&format!("sip:{sip}")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bibridge did not come up on {sip}");
}

fn audit_json(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_bibridge"))
        .args(["audit", "--file", path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_record_survives_kill_9_and_the_log_goes_on_after_restart() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("bibridge-durability-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let trunk_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut agent = TestUa::bind("1001", "pw1001", sip).await.unwrap();
    let rtp_min = 50_000 + (std::process::id() % 70) as u16 * 200;
    let cfg_path = dir.join("bibridge.toml");
    std::fs::write(
        &cfg_path,
        config(sip.port(), trunk_addr, agent.local_addr(), &audit, rtp_min),
    )
    .unwrap();

    let mut child = spawn(&cfg_path);
    wait_up(sip).await;

    // Customer → agent 1001, answered.
    let mut trunk = TestUa::bind_on(trunk_addr, "customer", "", sip)
        .await
        .unwrap();
    let offer = sdp_offer("127.0.0.1:45000".parse().unwrap(), &[0, 101], "sendrecv");
    let mut call = trunk.invite("1001", &offer, false).await.unwrap();
    let inc = agent.wait_invite(Duration::from_secs(5)).await.unwrap();
    let answer = sdp_offer("127.0.0.1:45002".parse().unwrap(), &[0, 101], "sendrecv");
    agent.answer(&inc, &answer).await.unwrap();
    let ok = trunk
        .wait_final(&mut call, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.status_code.code(), 200);

    // Supervisor 2001 monitors: 200 means the start record was fsync'd before.
    let mut sup = TestUa::bind("2001", "pw2001", sip).await.unwrap();
    let offer = sdp_offer("127.0.0.1:45004".parse().unwrap(), &[0, 101], "sendrecv");
    let mut s = sup.invite("*811001", &offer, true).await.unwrap();
    let r = sup
        .wait_final(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);

    // Crash: no shutdown path runs.
    child.kill().unwrap();
    child.wait().unwrap();

    let recs = audit_json(&audit);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["event"], "start");
    assert_eq!(recs[0]["supervisor"], "2001");
    assert_eq!(recs[0]["agent"], "1001");
    assert_eq!(recs[0]["mode"], "monitor");
    assert_eq!(recs[0]["origin"], "phone");

    // Restart: the log is appended to, not replaced; a refusal lands after the old record.
    let mut child = spawn(&cfg_path);
    wait_up(sip).await;
    let mut s = sup.invite("*811002", &offer, true).await.unwrap();
    let r = sup
        .wait_final(&mut s, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 480);
    child.kill().unwrap();
    child.wait().unwrap();
    let recs = audit_json(&audit);
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    // The session the crash left open is closed at start, before anything else.
    assert_eq!(events, ["start", "stop", "refusal"]);
    assert_eq!(recs[1]["reason"], "interrupted");
    for k in [
        "session",
        "supervisor",
        "agent",
        "mode",
        "origin",
        "call_id",
    ] {
        assert_eq!(recs[1][k], recs[0][k], "{k}");
    }
    assert!(recs[1]["time"].as_str().unwrap() >= recs[0]["time"].as_str().unwrap());
    assert_eq!(recs[2]["reason"], "agent_not_in_call");
    // Filters.
    let out = Command::new(env!("CARGO_BIN_EXE_bibridge"))
        .args([
            "audit",
            "--file",
            audit.to_str().unwrap(),
            "--agent",
            "1002",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("refusal") && text.contains("agent_not_in_call"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bibridge"))
        .args([
            "audit",
            "--file",
            audit.to_str().unwrap(),
            "--agent",
            "1001",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.contains("stop") && l.contains("(interrupted)")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
