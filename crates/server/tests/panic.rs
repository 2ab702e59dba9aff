//! A panic in the engine task ends the process (issue 12, finding 7): before, the task died and
//! the process stayed up with its SIP port bound, answering nothing, and no supervisor noticed.
//! The debug-only `BIBRIDGE_TEST_PANIC=engine` makes the engine task panic on its first SIP
//! message.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn an_engine_panic_aborts_the_process_and_frees_its_ports() {
    let sip = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("bibridge-panic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bibridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nudp = \"{sip}\"\ntcp = false\n[http]\nlisten = false\n[compliance]\naudit_log = \"{}\"\n",
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bibridge"))
        .args(["--config", cfg.to_str().unwrap()])
        .env("BIBRIDGE_TEST_PANIC", "engine")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Poke it until the engine gets a message (the socket may not be bound yet at first).
    let poke = UdpSocket::bind("127.0.0.1:0").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        let _ = poke.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", sip);
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(status) = status else {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("bibridge still running 10 s after its engine task panicked");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.signal(),
        Some(6),
        "aborted (SIGABRT): {status:?}\n{err}"
    );
    assert!(
        err.contains("panics on purpose"),
        "the panic is logged: {err}"
    );
    // Its port is free for the restarted process.
    UdpSocket::bind(sip).expect("SIP port released");
    let _ = std::fs::remove_dir_all(&dir);
}
