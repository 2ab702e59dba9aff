//! The HTTP API end to end (docs/api.md): logins, listings, console sessions that call the
//! supervisor's phone, refusals, the event stream and `/metrics`, over real sockets.
//! Tones as in bib.rs: customer 440 Hz, agent 1000 Hz, supervisor A 2000 Hz, B 2600 Hz.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bibridge_b2bua::config::{Mode, Role};
use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::ua::{sdp_connection, sdp_offer, CallHandle, TestUa};
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

fn http_addr(lab: &Lab) -> SocketAddr {
    lab.server.http_addr().expect("HTTP enabled")
}

/// A supervisor's phone answering a console session: its dialog and RTP peer.
struct Phone {
    ua: TestUa,
    call: CallHandle,
    rtp: RtpPeer,
}

/// Wait for the auto-answer INVITE on `ua`, check its headers, answer with PCMU and start
/// sending `tone_hz`.
async fn answer_console_call(mut ua: TestUa, tone_hz: f64) -> Phone {
    let inc = ua.wait_invite(T).await.expect("the phone is called");
    let text = inc.request.to_string();
    assert!(
        text.lines()
            .any(|l| l.eq_ignore_ascii_case("Answer-Mode: Auto")),
        "no Answer-Mode: Auto in\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("Call-Info:") && l.contains("answer-after=0")),
        "no Call-Info answer-after=0 in\n{text}"
    );
    let anchor = sdp_connection(inc.sdp.as_deref().expect("INVITE has an offer")).unwrap();
    let rtp = RtpPeer::bind().await.unwrap();
    let call = ua
        .answer(&inc, &sdp_offer(rtp.local_addr(), &[0, 101], "sendrecv"))
        .await
        .expect("answer");
    rtp.start_sending(anchor, Some(tone_hz), LEVEL, 0);
    Phone { ua, call, rtp }
}

fn call_id_of(calls: &Value, agent: &str) -> String {
    calls["calls"]
        .as_array()
        .expect("calls array")
        .iter()
        .find(|c| c["agent"] == agent)
        .unwrap_or_else(|| panic!("no call of {agent} in {calls}"))["id"]
        .as_str()
        .expect("id is a string")
        .to_string()
}

/// Check a leg's audio against a row of docs/design.md §3 (wanted ±2 dB, the others silent).
fn row(who: &str, peer: &RtpPeer, wanted: &[f64], unwanted: &[f64]) {
    assert_hears(who, &peer.received_audio(), wanted, unwanted, 2.0);
}

/// Parse the exposition: every sample line is `name{labels} value`; returns (series, value).
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            let labels = &series[name_end..];
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels in {line:?}"
            );
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                    "{line:?}"
                );
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push((series.to_string(), v));
    }
    out
}

/// `/metrics` with the lab's metrics token (it is never anonymous).
async fn scrape(addr: SocketAddr) -> Vec<(String, f64)> {
    let token = bibridge_b2bua::config::Config::lab()
        .http
        .metrics_token
        .expect("the lab config sets a metrics token");
    let r = api(addr, &token, "GET", "/metrics", None).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.ends_with("# EOF\n"));
    parse_metrics(&r.body)
}

fn value(m: &[(String, f64)], series: &str) -> f64 {
    m.iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no series {series}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_accepts_supervisors_only_and_tokens_authorize() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);

    let ok = login_attempt(addr, "2001", "lab2001").await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let body = ok.json();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(body["extension"], "2001");
    assert_eq!(body["name"], "Supervisor 2001");
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        ok.header("set-cookie"),
        Some(format!("bibridge_session={token}; HttpOnly; SameSite=Strict; Path=/").as_str())
    );

    for (ext, pw) in [
        ("2001", "lab2002"),
        ("9999", "lab9999"),
        ("1001", "lab1001"),
    ] {
        let r = login_attempt(addr, ext, pw).await;
        assert_eq!(r.status, 401, "{ext}: {r:?}");
        assert_eq!(r.reason(), "invalid_credentials");
    }

    // The token works as a bearer token and as the cookie; nothing works without it.
    let me = api(addr, &token, "GET", "/api/me", None).await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["extension"], "2001");
    assert_eq!(me.json()["session"], Value::Null);
    assert!(!me.json()["legal_notice"].as_str().unwrap().is_empty());
    let cookie = format!("bibridge_session={token}");
    let me = http(addr, "GET", "/api/me", &[("Cookie", &cookie)], None).await;
    assert_eq!(me.status, 200, "{me:?}");
    for path in [
        "/api/me",
        "/api/agents",
        "/api/calls",
        "/api/events",
        "/api/sessions/1",
    ] {
        let r = http(addr, "GET", path, &[], None).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert_eq!(r.reason(), "unauthorized");
        let r = api(addr, "0123abcd", "GET", path, None).await;
        assert_eq!(r.status, 401, "{path} with a made-up token");
    }
    let r = http(
        addr,
        "POST",
        "/api/sessions",
        &[],
        Some(("application/json", r#"{"agent":"1001","mode":"monitor"}"#)),
    )
    .await;
    assert_eq!(r.status, 401);

    // State-changing requests must be JSON.
    let r = http(
        addr,
        "POST",
        "/api/login",
        &[],
        Some(("text/plain", r#"{"extension":"2001","password":"lab2001"}"#)),
    )
    .await;
    assert_eq!(r.status, 415, "{r:?}");
    let auth = format!("Bearer {token}");
    let r = http(
        addr,
        "POST",
        "/api/sessions",
        &[("Authorization", &auth)],
        Some(("text/plain", r#"{"agent":"1001","mode":"monitor"}"#)),
    )
    .await;
    assert_eq!(r.status, 415, "{r:?}");
    assert_eq!(r.reason(), "unsupported_media_type");
    let r = http(
        addr,
        "POST",
        "/api/sessions",
        &[("Authorization", &auth)],
        Some(("application/json", "{not json")),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1001", "mode": "spy"})),
    )
    .await;
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_mode"));
    let big = format!(
        "{{\"agent\":\"{}\",\"mode\":\"monitor\"}}",
        "1".repeat(20_000)
    );
    let r = http(
        addr,
        "POST",
        "/api/sessions",
        &[("Authorization", &auth)],
        Some(("application/json", &big)),
    )
    .await;
    assert_eq!(r.status, 413, "{r:?}");

    // The console's files, with the security headers and no CORS.
    for (path, ct) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let r = http(
            addr,
            "GET",
            path,
            &[("Origin", "http://evil.example")],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(ct),
            "{path}: {r:?}"
        );
        assert_eq!(
            r.header("content-security-policy"),
            Some("default-src 'self'; img-src 'self' data:")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert!(r.header("access-control-allow-origin").is_none());
        assert!(!r.body.is_empty());
    }

    // Logout forgets the token.
    let r = api(addr, &token, "POST", "/api/logout", None).await;
    assert_eq!(r.status, 204);
    let r = api(addr, &token, "GET", "/api/me", None).await;
    assert_eq!(r.status, 401);
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_throttled() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    for i in 0..5 {
        let r = login_attempt(addr, "2002", "wrong").await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    // Now even the right password has to wait.
    let r = login_attempt(addr, "2002", "lab2002").await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.reason(), "throttled");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "Retry-After {wait}");
    // After the wait the right password is accepted.
    tokio::time::sleep(Duration::from_millis(wait * 1000 + 100)).await;
    login(addr, "2002", "lab2002").await;
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_calls_list_the_agents_call() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let call = connect_call(&lab, "1001").await;
    let calls = api(addr, &token, "GET", "/api/calls", None).await;
    assert_eq!(calls.status, 200);
    let calls = calls.json();
    let id = call_id_of(&calls, "1001");
    let c = &calls["calls"][0];
    assert_eq!(c["state"], "connected");
    assert_eq!(c["customer"], "customer");
    assert!(c["connected_at"].as_str().unwrap().ends_with('Z'), "{c}");
    assert_eq!(c["sessions"], json!([]));
    let agents = api(addr, &token, "GET", "/api/agents", None).await.json();
    let a = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["extension"] == "1001")
        .expect("agent 1001 listed")
        .clone();
    assert_eq!(a["registered"], true);
    assert_eq!(a["builtin_bridge"], true);
    assert_eq!(a["calls"], json!([id]));
    assert_eq!(a["allowed_modes"], json!(["monitor", "coach", "barge"]));
    let other = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["extension"] == "1002")
        .expect("agent 1002 listed");
    assert_eq!(other["registered"], false);
    assert_eq!(other["calls"], json!([]));
    drop(call);
    lab.server.shutdown().await;
}

/// The whole console flow: events, auto-answer INVITE, monitor and coach by tones, DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_session_monitor_coach_stop() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let phone_ua = lab.registered("2001").await;
    let mut events = EventStream::open(addr, &token).await;
    let snap = events.next(T).await.expect("first event");
    assert_eq!(snap.name, "snapshot");
    assert_eq!(snap.data["me"]["extension"], "2001");
    assert!(snap.data["agents"].as_array().unwrap().len() >= 4);

    let metrics_before = scrape(addr).await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let started = events.wait_for("call.started", T, |_| true).await;
    assert_eq!(started.data["state"], "ringing");
    let connected = events.wait_for("call.connected", T, |_| true).await;
    let call_id = connected.data["id"].as_str().unwrap().to_string();

    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"call": call_id, "mode": "monitor"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let session = r.json();
    let sid = session["id"].as_str().unwrap().to_string();
    assert_eq!(session["state"], "calling");
    assert_eq!(session["agent"], "1001");
    assert_eq!(session["mode"], "monitor");
    assert_eq!(
        r.header("location"),
        Some(format!("/api/sessions/{sid}").as_str())
    );
    let ev = events.wait_for("session.calling", T, |_| true).await;
    assert_eq!(ev.data["id"], sid.as_str());
    assert_eq!(ev.data["origin"], "api");

    let phone = answer_console_call(phone_ua, SUP_A_HZ).await;
    let ev = events.wait_for("session.active", T, |_| true).await;
    assert_eq!(ev.data["id"], sid.as_str());
    let got = api(addr, &token, "GET", &format!("/api/sessions/{sid}"), None).await;
    assert_eq!(got.status, 200);
    let got = got.json();
    assert_eq!(
        (
            &got["state"],
            &got["origin"],
            &got["supervisor"],
            &got["mode"]
        ),
        (
            &json!("active"),
            &json!("api"),
            &json!("2001"),
            &json!("monitor")
        )
    );
    let me = api(addr, &token, "GET", "/api/me", None).await.json();
    assert_eq!(me["session"], sid.as_str());

    // docs/design.md §3, monitor row: the supervisor hears both, nobody hears the supervisor.
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &phone.rtp], 1200).await;
    row(
        "supervisor",
        &phone.rtp,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_A_HZ],
    );
    row(
        "agent",
        &call.agent_rtp,
        &[CUSTOMER_HZ],
        &[AGENT_HZ, SUP_A_HZ],
    );
    row(
        "customer",
        &call.customer_rtp,
        &[AGENT_HZ],
        &[CUSTOMER_HZ, SUP_A_HZ],
    );

    // Level meters for the viewer's own session: customer and agent talk at about −20 dBFS.
    let lv = events
        .wait_for("levels", T, |d| d["customer"].as_f64() > Some(-40.0))
        .await;
    assert_eq!(lv.data["session"], sid.as_str());
    assert!(lv.data["agent"].as_f64().unwrap() > -40.0, "{:?}", lv.data);
    assert!(lv.data["supervisor"].as_f64().is_some());

    // Coach: the agent hears the supervisor too, the customer still does not.
    let r = api(
        addr,
        &token,
        "PATCH",
        &format!("/api/sessions/{sid}"),
        Some(json!({"mode": "coach"})),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["mode"], "coach");
    let ev = events.wait_for("session.mode", T, |_| true).await;
    assert_eq!(ev.data, json!({"id": sid, "mode": "coach"}));
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &phone.rtp], 1200).await;
    row(
        "agent (coach)",
        &call.agent_rtp,
        &[CUSTOMER_HZ, SUP_A_HZ],
        &[AGENT_HZ],
    );
    row(
        "customer (coach)",
        &call.customer_rtp,
        &[AGENT_HZ],
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    row(
        "supervisor (coach)",
        &phone.rtp,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_A_HZ],
    );

    // The media counters moved, and the API start was counted.
    let metrics_after = scrape(addr).await;
    let relayed = "bibridge_rtp_packets_relayed_total";
    assert!(
        value(&metrics_after, relayed) > value(&metrics_before, relayed),
        "relayed packets did not increase: {metrics_before:?} -> {metrics_after:?}"
    );
    // With a supervisor attached the mixer works: frames and their processing times count.
    assert!(value(&metrics_after, "bibridge_rtp_frames_mixed_total") > 0.0);
    assert!(
        value(
            &metrics_after,
            "bibridge_media_processing_seconds_count{path=\"mix\"}"
        ) > 0.0
    );
    assert_eq!(
        value(
            &metrics_after,
            "bibridge_media_processing_seconds_bucket{le=\"+Inf\",path=\"mix\"}"
        ),
        value(
            &metrics_after,
            "bibridge_media_processing_seconds_count{path=\"mix\"}"
        )
    );
    assert_eq!(
        value(
            &metrics_after,
            "bibridge_session_starts_total{mode=\"monitor\",origin=\"api\"}"
        ),
        1.0
    );
    assert_eq!(value(&metrics_after, "bibridge_calls_active"), 1.0);
    assert_eq!(value(&metrics_after, "bibridge_legs_active"), 3.0);
    assert_eq!(
        value(&metrics_after, "bibridge_sessions_active{mode=\"coach\"}"),
        1.0
    );

    // Stop: the phone gets a BYE, the stream says ended, the session is gone.
    let r = api(
        addr,
        &token,
        "DELETE",
        &format!("/api/sessions/{sid}"),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let mut ua = phone.ua;
    ua.wait_request("BYE", T).await.expect("BYE to the phone");
    let ev = events.wait_for("session.ended", T, |_| true).await;
    assert_eq!(ev.data["id"], sid.as_str());
    let r = api(addr, &token, "GET", &format!("/api/sessions/{sid}"), None).await;
    assert_eq!((r.status, r.reason().as_str()), (404, "no_such_session"));
    let me = api(addr, &token, "GET", "/api/me", None).await.json();
    assert_eq!(me["session"], Value::Null);

    // Events came in the order things happened, with increasing ids.
    let names: Vec<&str> = events.seen.iter().map(|e| e.name.as_str()).collect();
    let wanted = [
        "snapshot",
        "call.started",
        "call.connected",
        "session.calling",
        "session.active",
        "session.mode",
        "session.ended",
    ];
    let mut pos = 0;
    for name in &names {
        if pos < wanted.len() && *name == wanted[pos] {
            pos += 1;
        }
    }
    assert_eq!(pos, wanted.len(), "events out of order: {names:?}");
    let ids: Vec<u64> = events
        .seen
        .iter()
        .map(|e| {
            e.id.as_deref()
                .expect("every event has an id")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    drop(call);
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_hanging_up_ends_the_session() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let phone_ua = lab.registered("2001").await;
    let call = connect_call(&lab, "1001").await;
    let mut events = EventStream::open(addr, &token).await;
    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1001", "mode": "barge"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let sid = r.json()["id"].as_str().unwrap().to_string();
    let mut phone = answer_console_call(phone_ua, SUP_A_HZ).await;
    events.wait_for("session.active", T, |_| true).await;
    let bye = phone.ua.bye(&phone.call).await.expect("BYE answered");
    assert_eq!(bye.status_code.code(), 200);
    let ev = events.wait_for("session.ended", T, |_| true).await;
    assert_eq!(ev.data["id"], sid.as_str());
    assert!(!ev.data["reason"].as_str().unwrap().is_empty());
    let r = api(addr, &token, "GET", &format!("/api/sessions/{sid}"), None).await;
    assert_eq!(r.status, 404);
    // The call itself goes on.
    let calls = api(addr, &token, "GET", "/api/calls", None).await.json();
    assert_eq!(calls["calls"][0]["sessions"], json!([]));
    drop(call);
    lab.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_phone_ends_the_session_as_busy() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let mut phone = lab.registered("2001").await;
    let call = connect_call(&lab, "1001").await;
    let mut events = EventStream::open(addr, &token).await;
    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1001", "mode": "monitor"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let sid = r.json()["id"].as_str().unwrap().to_string();
    let inc = phone.wait_invite(T).await.expect("the phone is called");
    phone.respond(&inc, 486, "Busy Here", None).await.unwrap();
    let ev = events.wait_for("session.ended", T, |_| true).await;
    assert_eq!(ev.data, json!({"id": sid, "reason": "busy"}));
    let r = api(addr, &token, "GET", &format!("/api/sessions/{sid}"), None).await;
    assert_eq!(r.status, 404);
    // The supervisor may start again.
    let r = api(
        addr,
        &token,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1001", "mode": "monitor"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    drop(call);
    lab.server.shutdown().await;
}

/// Every refusal of the table in docs/api.md, with its status and reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_refusals_follow_the_contract() {
    let lab = start(|cfg| {
        // 1002: Built-In-Bridge off. Barge is not allowed by policy. 1003 is agent and
        // supervisor at once (for the self check).
        for u in &mut cfg.users {
            match u.extension.as_str() {
                "1002" => u.builtin_bridge = false,
                "1003" => {
                    u.roles.push(Role::Supervisor);
                    u.groups.push("supervisors".into());
                }
                _ => {}
            }
        }
        for p in &mut cfg.policy {
            p.modes.retain(|m| *m != Mode::Barge);
        }
    })
    .await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let _phone = lab.registered("2001").await;
    let call = connect_call(&lab, "1001").await;
    let _idle = lab.registered("1004").await;
    let post = |body: Value| {
        let token = token.clone();
        async move { api(addr, &token, "POST", "/api/sessions", Some(body)).await }
    };

    let cases = [
        (
            json!({"agent": "1002", "mode": "monitor"}),
            403,
            "builtin_bridge_off",
        ),
        (
            json!({"agent": "1001", "mode": "barge"}),
            403,
            "not_allowed",
        ),
        (
            json!({"agent": "1004", "mode": "monitor"}),
            409,
            "agent_not_in_call",
        ),
        (
            json!({"agent": "1999", "mode": "monitor"}),
            404,
            "no_such_extension",
        ),
        (
            json!({"call": "999", "mode": "monitor"}),
            404,
            "no_such_call",
        ),
        (json!({"call": "x", "mode": "monitor"}), 404, "no_such_call"),
    ];
    for (body, status, reason) in cases {
        let r = post(body.clone()).await;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (status, reason),
            "{body}: {r:?}"
        );
        let p = r.json();
        assert_eq!(p["status"], status);
        assert_eq!(p["type"], "about:blank");
        assert!(!p["title"].as_str().unwrap().is_empty());
        assert!(!p["detail"].as_str().unwrap().is_empty());
    }
    let r = post(json!({"agent": "1002", "mode": "monitor"})).await;
    assert!(
        r.json()["detail"].as_str().unwrap().contains("1002"),
        "{r:?}"
    );
    let r = post(json!({"agent": "1001", "call": "1", "mode": "monitor"})).await;
    assert_eq!(r.status, 400, "both targets: {r:?}");

    // Self: 1003 is a supervisor too but cannot monitor themself.
    let t1003 = login(addr, "1003", "lab1003").await;
    let r = api(
        addr,
        &t1003,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1003", "mode": "monitor"})),
    )
    .await;
    assert_eq!((r.status, r.reason().as_str()), (403, "self"));

    // Phone not reachable: 2002 is not registered.
    let t2002 = login(addr, "2002", "lab2002").await;
    let r = api(
        addr,
        &t2002,
        "POST",
        "/api/sessions",
        Some(json!({"agent": "1001", "mode": "monitor"})),
    )
    .await;
    assert_eq!((r.status, r.reason().as_str()), (409, "phone_unreachable"));

    // A second console session for the same supervisor.
    let r = post(json!({"agent": "1001", "mode": "monitor"})).await;
    assert_eq!(r.status, 201, "{r:?}");
    let sid = r.json()["id"].as_str().unwrap().to_string();
    let r = post(json!({"agent": "1002", "mode": "monitor"})).await;
    assert_eq!(r.status, 403, "BIB is checked first: {r:?}");
    let r = post(json!({"agent": "1001", "mode": "coach"})).await;
    assert_eq!((r.status, r.reason().as_str()), (409, "session_exists"));

    // Another supervisor may not switch or stop it; the owner may not switch to a forbidden mode.
    let path = format!("/api/sessions/{sid}");
    let r = api(addr, &t2002, "PATCH", &path, Some(json!({"mode": "coach"}))).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "not_yours"));
    let r = api(addr, &t2002, "DELETE", &path, None).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "not_yours"));
    let r = api(addr, &token, "PATCH", &path, Some(json!({"mode": "barge"}))).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "not_allowed"));
    let r = api(
        addr,
        &token,
        "PATCH",
        "/api/sessions/4242",
        Some(json!({"mode": "coach"})),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = api(addr, &token, "DELETE", "/api/sessions/nope", None).await;
    assert_eq!(r.status, 404);

    // The refusals were counted by reason.
    let m = scrape(addr).await;
    assert!(
        value(
            &m,
            "bibridge_session_refusals_total{reason=\"builtin_bridge_off\"}"
        ) >= 2.0,
        "{m:?}"
    );
    assert!(
        value(
            &m,
            "bibridge_session_refusals_total{reason=\"session_exists\"}"
        ) >= 1.0
    );
    drop(call);
    lab.server.shutdown().await;
}

/// Two supervisors on one call through the API: 2001 monitors, 2002 coaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_supervisors_on_one_call() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let t1 = login(addr, "2001", "lab2001").await;
    let t2 = login(addr, "2002", "lab2002").await;
    let ua1 = lab.registered("2001").await;
    let ua2 = lab.registered("2002").await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let calls = api(addr, &t1, "GET", "/api/calls", None).await.json();
    let id = call_id_of(&calls, "1001");

    let r = api(
        addr,
        &t1,
        "POST",
        "/api/sessions",
        Some(json!({"call": id, "mode": "monitor"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let p1 = answer_console_call(ua1, SUP_A_HZ).await;
    let r = api(
        addr,
        &t2,
        "POST",
        "/api/sessions",
        Some(json!({"call": id, "mode": "coach"})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let p2 = answer_console_call(ua2, SUP_B_HZ).await;

    // Both attached.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let calls = api(addr, &t1, "GET", "/api/calls", None).await.json();
        let sessions = calls["calls"][0]["sessions"].as_array().unwrap().clone();
        if sessions.len() == 2 && sessions.iter().all(|s| s["state"] == "active") {
            let sups: Vec<&str> = sessions
                .iter()
                .map(|s| s["supervisor"].as_str().unwrap())
                .collect();
            assert_eq!(sups, ["2001", "2002"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions not active: {sessions:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    listen_fresh(
        &[&call.customer_rtp, &call.agent_rtp, &p1.rtp, &p2.rtp],
        1200,
    )
    .await;
    // The agent hears the customer and the coach; the customer only the agent.
    row(
        "agent",
        &call.agent_rtp,
        &[CUSTOMER_HZ, SUP_B_HZ],
        &[AGENT_HZ, SUP_A_HZ],
    );
    row(
        "customer",
        &call.customer_rtp,
        &[AGENT_HZ],
        &[CUSTOMER_HZ, SUP_A_HZ, SUP_B_HZ],
    );
    // The monitoring supervisor hears the customer and the agent.
    let a1 = p1.rtp.received_audio();
    assert_hears(
        "supervisor 2001",
        &a1,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_A_HZ],
        2.0,
    );
    let a2 = p2.rtp.received_audio();
    assert_hears(
        "supervisor 2002",
        &a2,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_B_HZ],
        2.0,
    );
    drop(call);
    lab.server.shutdown().await;
}

/// One login holds at most 8 event streams; a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_per_login_are_bounded() {
    let lab = start(|_| {}).await;
    let addr = http_addr(&lab);
    let token = login(addr, "2001", "lab2001").await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut s = EventStream::open(addr, &token).await;
        assert!(s.next(Duration::from_secs(5)).await.is_some(), "snapshot");
        open.push(s);
    }
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        api(addr, &token, "GET", "/api/events", None),
    )
    .await
    .expect("a 9th stream is refused at once, not opened");
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.reason(), "too_many_streams");
    // Another login is not affected.
    let other = login(addr, "2002", "lab2002").await;
    let mut s = EventStream::open(addr, &other).await;
    assert!(s.next(Duration::from_secs(5)).await.is_some());
    // Closing one stream frees its place (the server notices at its next write: an event or the
    // 15 s keep-alive).
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        // 429 comes back at once; an accepted stream never ends, so a timeout means "accepted".
        match tokio::time::timeout(
            Duration::from_secs(2),
            api(addr, &token, "GET", "/api/events", None),
        )
        .await
        {
            Err(_) => break,
            Ok(r) => assert_eq!(r.status, 429, "{r:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "place not freed");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    lab.server.shutdown().await;
}
