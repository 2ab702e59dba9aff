//! HTTP API, SSE event stream, operator console and `/metrics` on one listener (docs/api.md).
//!
//! # Layout
//! - this file: the router, shared state, the JSON endpoints (login, agents, calls, sessions),
//!   problem documents, the static console and the security headers every answer carries.
//! - `auth`: password check, tokens, throttling of failed logins.
//! - `sse`: `GET /api/events` (snapshot, lifecycle events, level meters).
//! - `prom`: `GET /metrics` in the Prometheus/OpenMetrics text format.
//! - `serve`: the accept loop (connection limits, header read timeout) and the body deadline.
//!
//! Every engine request goes through [`ControlHandle`]; handlers never touch engine state. Input
//! is never trusted: bodies are size-limited and parsed by hand into problem documents, so no
//! request can panic a handler.

pub mod auth;
mod prom;
mod refusal;
mod serve;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};
use bibridge_b2bua::config::{Config, Mode};
use bibridge_b2bua::engine::{ApiRefusal, SessionTarget};
use bytes::Bytes;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::control::{
    agent_json, call_json, parse_id, rfc3339, session_json, ControlError, ControlHandle, Snapshot,
};
use crate::metrics::Metrics;
use crate::ServerError;

use auth::{Auth, LoginError};
use refusal::refusal_status;

/// Largest request body accepted (logins and session requests are tiny).
const BODY_LIMIT: usize = 16 * 1024;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
/// The console's entry module; it imports the modules of [`JS_MODULES`] (no build step).
const APP_JS: &str = include_str!("../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../assets/style.css");

/// The console's ES modules, served under `/js/<name>` (same origin, so the CSP's
/// `default-src 'self'` admits them). A file added to `assets/js/` is listed here.
const JS_MODULES: &[(&str, &str)] = &[
    ("api.js", include_str!("../../assets/js/api.js")),
    ("dom.js", include_str!("../../assets/js/dom.js")),
    ("feedback.js", include_str!("../../assets/js/feedback.js")),
    ("grid.js", include_str!("../../assets/js/grid.js")),
    ("legal.js", include_str!("../../assets/js/legal.js")),
    ("login.js", include_str!("../../assets/js/login.js")),
    ("menu.js", include_str!("../../assets/js/menu.js")),
    ("render.js", include_str!("../../assets/js/render.js")),
    ("ribbon.js", include_str!("../../assets/js/ribbon.js")),
    ("session.js", include_str!("../../assets/js/session.js")),
    ("state.js", include_str!("../../assets/js/state.js")),
    ("stream.js", include_str!("../../assets/js/stream.js")),
];

/// What every handler shares.
pub(crate) struct AppState {
    cfg: Arc<Config>,
    control: ControlHandle,
    metrics: Arc<Metrics>,
    auth: Auth,
    /// Open event streams per supervisor (bounded: each one is a task and a subscription).
    streams: dashmap::DashMap<String, usize>,
    /// The last `/metrics` exposition and when it was made: scrapes within a second share it.
    metrics_cache: tokio::sync::Mutex<Option<(Instant, String)>>,
}

type St = Arc<AppState>;

/// Bind the HTTP listener and serve.
pub async fn start(
    addr: SocketAddr,
    cfg: Arc<Config>,
    control: ControlHandle,
    metrics: Arc<Metrics>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            what: "HTTP",
            addr,
            source,
        })?;
    let local = l.local_addr().unwrap_or(addr);
    let max = crate::net_guard::cap_by_nofile(
        cfg.http.max_connections,
        crate::net_guard::nofile_limit(),
        8,
    );
    if max < cfg.http.max_connections {
        warn!(
            configured = cfg.http.max_connections,
            capped = max,
            "http.max_connections capped at an eighth of the open-file limit (RLIMIT_NOFILE)"
        );
    }
    let limiter = crate::net_guard::ConnLimiter::new(
        max,
        cfg.http.max_connections_per_address,
        metrics.http_conns.clone(),
    );
    if cfg.http.metrics_token.as_deref() == Config::lab().http.metrics_token.as_deref() {
        warn!("http.metrics_token is the lab's public token: for labs and tests only");
    }
    let header_timeout = Duration::from_secs(cfg.http.header_timeout_s);
    let state = Arc::new(AppState {
        auth: Auth::new(
            Duration::from_secs(cfg.http.token_ttl_s),
            cfg.http.max_logins_per_user,
        ),
        cfg,
        control,
        metrics,
        streams: dashmap::DashMap::new(),
        metrics_cache: tokio::sync::Mutex::new(None),
    });
    let app = router(state);
    info!(http = %local, max_connections = max, "HTTP API, console and metrics listening");
    let task = tokio::spawn(serve::serve(l, app, limiter, header_timeout));
    Ok((local, task))
}

fn router(state: St) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/js/{name}", get(js_module))
        .route("/style.css", get(style_css))
        .route("/metrics", get(prom::metrics))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/agents", get(agents))
        .route("/api/calls", get(calls))
        .route("/api/sessions", post(create_session))
        .route(
            "/api/sessions/{id}",
            get(get_session).patch(patch_session).delete(delete_session),
        )
        .route("/api/events", get(sse::events))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            serve::body_deadline,
        ))
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every answer: the console loads only its own files (plus `data:` images: its
/// favicon is an inline `data:` URL, which stops the browser asking for /favicon.ico), nothing
/// is sniffed or framed; API answers are not cached. No CORS headers: the API is same-origin only.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

// ------------------------------------------------------------------------------ problems

/// An RFC 9457 problem document (`application/problem+json`) with a stable `reason`.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    reason: &'static str,
    title: String,
    detail: String,
    retry_after: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, reason: &'static str, title: &str, detail: String) -> Problem {
        Problem {
            status,
            reason,
            title: title.to_string(),
            detail,
            retry_after: None,
        }
    }

    fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Login required",
            "Log in with POST /api/login; send the token as the cookie or as a Bearer token".into(),
        )
    }

    fn bad_request(reason: &'static str, detail: String) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, reason, "Bad request", detail)
    }

    fn engine(_: ControlError) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "bibridge is shutting down",
            "The engine is not running".into(),
        )
    }

    /// A refused session request, with a detail naming who and what.
    fn refusal(r: ApiRefusal, ctx: &Ctx<'_>) -> Problem {
        let agent = ctx.agent.unwrap_or("the agent");
        let sup = ctx.supervisor;
        let detail = match r.key() {
            "no_such_extension" => format!("There is no agent with extension {agent}"),
            "no_such_call" => format!("There is no call {} with an agent", ctx.id.unwrap_or("?")),
            "no_such_session" => format!("There is no session {}", ctx.id.unwrap_or("?")),
            "agent_not_in_call" => format!("{agent} has no connected call"),
            "builtin_bridge_off" => format!("Built-In-Bridge is off on {agent}'s device"),
            "not_allowed" => match ctx.mode {
                Some(m) => format!("Policy does not allow {sup} to {} {agent}", m.as_str()),
                None => format!("Policy does not allow {sup} this on {agent}"),
            },
            "self" => format!("{sup} cannot monitor their own calls"),
            "session_exists" => {
                format!("{sup} already holds a console session; stop it first")
            }
            "phone_unreachable" => {
                format!("{sup}'s phone is not registered and has no static contact")
            }
            "not_yours" => format!(
                "Session {} belongs to another supervisor",
                ctx.id.unwrap_or("?")
            ),
            "no_media_ports" => "The RTP port range is exhausted".to_string(),
            _ => r.title().to_string(),
        };
        Problem::new(refusal_status(r), r.key(), r.title(), detail)
    }
}

/// What a refusal's detail may mention.
#[derive(Default)]
struct Ctx<'a> {
    supervisor: &'a str,
    agent: Option<&'a str>,
    id: Option<&'a str>,
    mode: Option<Mode>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "reason": self.reason,
            "detail": self.detail,
        });
        let mut res = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body.to_string(),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bibridge\""),
            );
        }
        res
    }
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "Not found",
        "No such resource".into(),
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        "This resource does not support that method".into(),
    )
}

// ------------------------------------------------------------------------------ helpers

/// The logged-in supervisor behind a request's token.
pub(crate) struct Supervisor {
    pub extension: String,
    pub token: String,
}

impl FromRequestParts<St> for Supervisor {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &St) -> Result<Self, Problem> {
        st.auth
            .check(&parts.headers, Instant::now())
            .map(|(token, l)| Supervisor {
                extension: l.extension,
                token,
            })
            .ok_or_else(Problem::unauthorized)
    }
}

/// The JSON object of a state-changing request: `application/json` only (a cross-site form
/// cannot send it), within the size limit, an object.
fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the request body as Content-Type: application/json".into(),
        ));
    }
    let body = body.map_err(|e| {
        Problem::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "bad_body"
            },
            "Unreadable request body",
            e.body_text(),
        )
    })?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Problem::bad_request(
            "bad_json",
            "The body must be a JSON object".into(),
        )),
        Err(e) => Err(Problem::bad_request(
            "bad_json",
            format!("Invalid JSON: {e}"),
        )),
    }
}

/// A string field of a request object.
fn str_field<'a>(
    m: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, Problem> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Problem::bad_request(
            "bad_field",
            format!("\"{name}\" must be a string"),
        )),
    }
}

/// Longest extension accepted at the API.
const MAX_EXTENSION_DIGITS: usize = 16;

/// An extension named by a request: 1 to 16 ASCII digits, or 400 (the value is not echoed: it
/// may hold control characters meant for a log or a terminal).
fn extension_field<'a>(name: &str, v: &'a str) -> Result<&'a str, Problem> {
    if (1..=MAX_EXTENSION_DIGITS).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(v)
    } else {
        Err(Problem::bad_request(
            "bad_extension",
            format!("\"{name}\" must be an extension: 1 to {MAX_EXTENSION_DIGITS} digits"),
        ))
    }
}

fn mode_field(m: &serde_json::Map<String, Value>) -> Result<Mode, Problem> {
    let s = str_field(m, "mode")?.ok_or_else(|| {
        Problem::bad_request(
            "bad_mode",
            "\"mode\" is required: monitor, coach or barge".into(),
        )
    })?;
    s.parse().map_err(|_| {
        Problem::bad_request(
            "bad_mode",
            format!("Unknown mode {s:?}: monitor, coach or barge"),
        )
    })
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

/// `GET /api/me` body: who, the console session they hold, the legal notice.
fn me_json(st: &AppState, ext: &str, snap: &Snapshot) -> Value {
    let session = snap
        .calls
        .iter()
        .flat_map(|c| &c.sessions)
        .find(|s| s.supervisor == ext && s.origin == bibridge_b2bua::engine::SessionOrigin::Api)
        .map(|s| s.id.to_string());
    json!({
        "extension": ext,
        "name": st.cfg.user(ext).map(|u| u.name.as_str()).unwrap_or(ext),
        "session": session,
        "legal_notice": st.cfg.http.legal_notice,
    })
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------------------------ handlers

async fn index() -> Response {
    static_file("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    static_file("text/javascript; charset=utf-8", APP_JS)
}

/// One of the console's modules, or 404 for a name not in [`JS_MODULES`].
async fn js_module(Path(name): Path<String>) -> Response {
    match JS_MODULES.iter().find(|(n, _)| *n == name) {
        Some((_, body)) => static_file("text/javascript; charset=utf-8", body),
        None => not_found().await.into_response(),
    }
}

async fn style_css() -> Response {
    static_file("text/css; charset=utf-8", STYLE_CSS)
}

async fn login(
    State(st): State<St>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let m = json_body(&headers, body)?;
    let ext = extension_field("extension", str_field(&m, "extension")?.unwrap_or(""))?;
    let password = str_field(&m, "password")?.unwrap_or("");
    match st
        .auth
        .login(&st.cfg, ext, password, peer.ip(), Instant::now())
    {
        Ok((token, login)) => {
            info!(supervisor = %ext, from = %peer.ip(), "console login");
            let mut res = json_response(
                StatusCode::OK,
                json!({
                    "token": token,
                    "extension": login.extension,
                    "name": st.cfg.user(ext).map(|u| u.name.as_str()).unwrap_or(ext),
                    "expires_at": rfc3339(login.expires_wall),
                }),
            );
            if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&token)) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(res)
        }
        Err(LoginError::Invalid) => {
            // The extension is logged only if it exists: a typed password must not end up here.
            let known = st.cfg.user(ext).is_some();
            warn!(extension = %if known { ext } else { "(unknown)" }, from = %peer.ip(), "console login failed");
            Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Login failed",
                "Wrong extension or password, or not a supervisor".into(),
            ))
        }
        Err(LoginError::Throttled(wait)) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "Too many failed logins",
                format!("Try again in {secs} s"),
            );
            p.retry_after = Some(secs.max(1));
            Err(p)
        }
    }
}

async fn logout(State(st): State<St>, sup: Supervisor) -> Response {
    st.auth.logout(&sup.token);
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn me(State(st): State<St>, sup: Supervisor) -> Result<Response, Problem> {
    let snap = st
        .control
        .snapshot(Some(&sup.extension))
        .await
        .map_err(Problem::engine)?;
    Ok(json_response(
        StatusCode::OK,
        me_json(&st, &sup.extension, &snap),
    ))
}

async fn agents(State(st): State<St>, sup: Supervisor) -> Result<Response, Problem> {
    let snap = st
        .control
        .snapshot(Some(&sup.extension))
        .await
        .map_err(Problem::engine)?;
    let agents: Vec<Value> = snap.agents.iter().map(agent_json).collect();
    Ok(json_response(StatusCode::OK, json!({ "agents": agents })))
}

async fn calls(State(st): State<St>, sup: Supervisor) -> Result<Response, Problem> {
    let snap = st
        .control
        .snapshot(Some(&sup.extension))
        .await
        .map_err(Problem::engine)?;
    let calls: Vec<Value> = snap
        .calls
        .iter()
        .map(|c| call_json(c, &st.control.clock))
        .collect();
    Ok(json_response(StatusCode::OK, json!({ "calls": calls })))
}

async fn create_session(
    State(st): State<St>,
    sup: Supervisor,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let m = json_body(&headers, body)?;
    let mode = mode_field(&m)?;
    // `call` may come as a string (as the API returns ids) or as a number.
    let call = match m.get("call") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(Problem::bad_request(
                "bad_field",
                "\"call\" must be a call id".into(),
            ))
        }
    };
    let agent = match str_field(&m, "agent")? {
        Some(a) => Some(extension_field("agent", a)?),
        None => None,
    };
    let target = match (&call, agent) {
        (Some(c), None) => match parse_id(c) {
            Some(id) => SessionTarget::Call(id),
            None => {
                let ctx = Ctx {
                    supervisor: &sup.extension,
                    id: Some(c),
                    ..Ctx::default()
                };
                return Err(Problem::refusal(ApiRefusal::NoSuchCall, &ctx));
            }
        },
        (None, Some(a)) => SessionTarget::Agent(a.to_string()),
        _ => {
            return Err(Problem::bad_request(
                "bad_target",
                "Give exactly one of \"call\" and \"agent\"".into(),
            ))
        }
    };
    let r = st
        .control
        .start_session(&sup.extension, target.clone(), mode)
        .await
        .map_err(Problem::engine)?;
    match r {
        Ok(view) => {
            let id = view.id.to_string();
            let mut res = json_response(StatusCode::CREATED, session_json(&view));
            if let Ok(v) = HeaderValue::from_str(&format!("/api/sessions/{id}")) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            Ok(res)
        }
        Err(refusal) => {
            // Name the agent in the detail, also when the target was a call id.
            let agent_of_call = match &target {
                SessionTarget::Call(id) => st
                    .control
                    .snapshot(None)
                    .await
                    .ok()
                    .and_then(|s| s.calls.into_iter().find(|c| c.id == *id))
                    .map(|c| c.agent),
                SessionTarget::Agent(_) => None,
            };
            let ctx = Ctx {
                supervisor: &sup.extension,
                agent: agent.or(agent_of_call.as_deref()),
                id: call.as_deref(),
                mode: Some(mode),
            };
            Err(Problem::refusal(refusal, &ctx))
        }
    }
}

/// A session id from the path; one that cannot exist is reported like an unknown one.
fn session_id(sup: &Supervisor, id: &str) -> Result<u64, Problem> {
    parse_id(id).ok_or_else(|| {
        let ctx = Ctx {
            supervisor: &sup.extension,
            id: Some(id),
            ..Ctx::default()
        };
        Problem::refusal(ApiRefusal::NoSuchSession, &ctx)
    })
}

async fn get_session(
    State(st): State<St>,
    sup: Supervisor,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let sid = session_id(&sup, &id)?;
    match st.control.session(sid).await.map_err(Problem::engine)? {
        Some(view) => Ok(json_response(StatusCode::OK, session_json(&view))),
        None => {
            let ctx = Ctx {
                supervisor: &sup.extension,
                id: Some(&id),
                ..Ctx::default()
            };
            Err(Problem::refusal(ApiRefusal::NoSuchSession, &ctx))
        }
    }
}

async fn patch_session(
    State(st): State<St>,
    sup: Supervisor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let m = json_body(&headers, body)?;
    let mode = mode_field(&m)?;
    let sid = session_id(&sup, &id)?;
    match st
        .control
        .switch_mode(&sup.extension, sid, mode)
        .await
        .map_err(Problem::engine)?
    {
        Ok(view) => Ok(json_response(StatusCode::OK, session_json(&view))),
        Err(refusal) => {
            let agent = st
                .control
                .session(sid)
                .await
                .ok()
                .flatten()
                .map(|s| s.agent);
            let ctx = Ctx {
                supervisor: &sup.extension,
                agent: agent.as_deref(),
                id: Some(&id),
                mode: Some(mode),
            };
            Err(Problem::refusal(refusal, &ctx))
        }
    }
}

async fn delete_session(
    State(st): State<St>,
    sup: Supervisor,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let sid = session_id(&sup, &id)?;
    match st
        .control
        .stop_session(&sup.extension, sid)
        .await
        .map_err(Problem::engine)?
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(refusal) => {
            let ctx = Ctx {
                supervisor: &sup.extension,
                id: Some(&id),
                ..Ctx::default()
            };
            Err(Problem::refusal(refusal, &ctx))
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every file in `assets/js/` is served (a module missing from the table would be a 404 in
    /// the browser, and the console would not start).
    #[test]
    fn every_console_module_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/js");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("assets/js")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let served: Vec<&str> = super::JS_MODULES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, served);
    }
}
