//! The HTTP listener's bounds (docs/reliability/transport-http.md): header and body read
//! deadlines, connections per address, logins and event streams per supervisor, exact bearer
//! tokens, `/metrics` never anonymous, extensions validated.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn http_addr(lab: &Lab) -> SocketAddr {
    lab.server.http_addr().expect("HTTP enabled")
}

/// Read until the server closes `s` (EOF or reset) or `within` passes; what was read, and
/// whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&b[..n]),
        }
    }
}

/// Slowloris: a header sent one byte at a time is cut at the header timeout, while other
/// clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
    let lab = start(|c| c.http.header_timeout_s = 1).await;
    let addr = http_addr(&lab);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /api/me HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}",
        "a".repeat(200)
    );
    let start = Instant::now();
    let mut closed_at = None;
    for b in head.bytes() {
        if s.write_all(&[b]).await.is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        let (_, closed) = read_until_closed(&mut s, Duration::from_millis(100)).await;
        if closed {
            closed_at = Some(start.elapsed());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "still open after 6 s"
        );
    }
    let at = closed_at.expect("the slow header was cut");
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(3),
        "closed after {at:?}"
    );
    // Others are served meanwhile and after.
    let r = http(addr, "GET", "/api/me", &[], None).await;
    assert_eq!(r.status, 401);
    // The header deadline is for reading a request, not for a long answer: an event stream
    // outlives it.
    let token = login(addr, "2001", "lab2001").await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (text, closed) = read_until_closed(&mut s, Duration::from_millis(2500)).await;
    assert!(!closed, "the event stream was cut: {text}");
    assert!(text.contains("event: snapshot"), "{text}");
    lab.server.shutdown().await;
}

/// A body announced by Content-Length and never sent: 408 at the body timeout, then the
/// connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_and_not_sent_gets_408_at_the_body_timeout() {
    let lab = start(|c| c.http.body_timeout_s = 1).await;
    let addr = http_addr(&lab);
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"extens"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let start = Instant::now();
    let (text, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "connection still open after 5 s: {text:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("body_timeout"), "{text:?}");
    lab.server.shutdown().await;
}

/// Connections beyond the per-address bound are closed at once; a freed place is usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_per_address_are_bounded() {
    let lab = start(|c| c.http.max_connections_per_address = 4).await;
    let addr = http_addr(&lab);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut extra, Duration::from_secs(2)).await;
    assert!(closed, "the 5th connection is closed at once");
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = http(addr, "GET", "/api/me", &[], None).await;
    assert_eq!(r.status, 401);
    lab.server.shutdown().await;
}

/// A supervisor holds at most 8 login tokens: a 9th login evicts the oldest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_per_supervisor_are_bounded_and_the_oldest_is_evicted() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let mut tokens = Vec::new();
    for _ in 0..9 {
        tokens.push(login(addr, "2001", "lab2001").await);
        // Expiry instants must differ for "oldest" to mean something.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = api(addr, &tokens[0], "GET", "/api/me", None).await;
    assert_eq!(r.status, 401, "the oldest token was evicted: {r:?}");
    for t in &tokens[1..] {
        let r = api(addr, t, "GET", "/api/me", None).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Another supervisor is not affected.
    let other = login(addr, "2002", "lab2002").await;
    assert_eq!(api(addr, &other, "GET", "/api/me", None).await.status, 200);
    let token = lab.cfg.http.metrics_token.clone().unwrap();
    let m = api(addr, &token, "GET", "/metrics", None).await;
    assert!(
        m.body.contains("bibridge_http_logins_evicted_total 1"),
        "{}",
        m.body
    );
    lab.server.shutdown().await;
}

/// Event streams are bounded per supervisor, not per login: two logins share 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_per_supervisor_across_logins() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let a = login(addr, "2001", "lab2001").await;
    let b = login(addr, "2001", "lab2001").await;
    let mut open = Vec::new();
    for t in [&a, &b] {
        for _ in 0..4 {
            let mut s = EventStream::open(addr, t).await;
            assert!(s.next(Duration::from_secs(5)).await.is_some(), "snapshot");
            open.push(s);
        }
    }
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        api(addr, &b, "GET", "/api/events", None),
    )
    .await
    .expect("a 9th stream is refused at once");
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.reason(), "too_many_streams");
    lab.server.shutdown().await;
}

/// Tokens match exactly: whitespace in or around one is not trimmed away. (Whitespace at the
/// very end of a header line is not part of the field value, RFC 9110 §5.5: the HTTP parser
/// drops it before any handler sees the value, so `Bearer <token> ` is the same header as
/// `Bearer <token>`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_whitespace_are_refused() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    for auth in [
        format!("Bearer  {token}"),
        format!("Bearer \t{token}"),
        format!("Bearer {token} x"),
        format!("Bearer {token}\t "),
    ] {
        let r = http(addr, "GET", "/api/me", &[("Authorization", &auth)], None).await;
        if auth.ends_with(' ') {
            // Trailing whitespace: see above; sent to show what the server sees.
            continue;
        }
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
    }
    for cookie in [
        format!("bibridge_session= {token}"),
        format!("bibridge_session={token} ;a=b"),
    ] {
        let r = http(addr, "GET", "/api/me", &[("Cookie", &cookie)], None).await;
        assert_eq!(r.status, 401, "{cookie:?}: {r:?}");
    }
    let r = api(addr, &token, "GET", "/api/me", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    lab.server.shutdown().await;
}

/// `/metrics` needs the metrics token or a supervisor's login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_not_anonymous() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let r = http(addr, "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = api(addr, "not-the-metrics-token", "GET", "/metrics", None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let token = lab
        .cfg
        .http
        .metrics_token
        .clone()
        .expect("the lab sets one");
    let r = api(addr, &format!("{token}x"), "GET", "/metrics", None).await;
    assert_eq!(r.status, 401, "{r:?}");
    let r = api(addr, &token, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("bibridge_sip_tcp_connections "),
        "{}",
        r.body
    );
    assert!(r.body.contains("bibridge_http_connections "), "{}", r.body);
    let sup = login(addr, "2001", "lab2001").await;
    let r = api(addr, &sup, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    lab.server.shutdown().await;
}

/// Inputs naming extensions are digits only (1-16): anything else is 400 before it reaches the
/// engine, a log or the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_must_be_digits() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    for agent in [
        "10\n01\x1b[31m",
        "",
        "1001 ",
        "１００１",
        "12345678901234567",
    ] {
        let r = api(
            addr,
            &token,
            "POST",
            "/api/sessions",
            Some(json!({"agent": agent, "mode": "monitor"})),
        )
        .await;
        assert_eq!(r.status, 400, "{agent:?}: {r:?}");
        assert_eq!(r.reason(), "bad_extension");
        assert!(!r.body.contains('\u{1b}'), "not echoed: {}", r.body);
    }
    let r = login_attempt(addr, "20\n01", "lab2001").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.reason(), "bad_extension");
    // A well-formed unknown agent still gets the engine's answer.
    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "4242", "mode": "monitor"})),
    )
    .await;
    assert_eq!(r.reason(), "no_such_extension", "{r:?}");
    lab.server.shutdown().await;
}
