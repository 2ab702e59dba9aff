//! The operator console in a real browser (Debian `chromium` driven through `chromedriver`):
//! log in as 2001, see agent 1001's call appear live, start Monitoring (with the legal notice),
//! switch to Coaching, stop through the call's context menu. The supervisor's phone is a TestUa
//! whose audio is checked by tones at each step (docs/design.md §3), exactly as tests/api.rs
//! does through the API; a screenshot of each state goes to `<target>/browser/NN-name.png`.
//! A second test restarts bibridge under a logged-in console: the page shows that the connection
//! is lost, and once bibridge is back (its tokens, kept in memory, gone) asks to log in again.
//!
//! Without `/usr/bin/chromedriver` the test is skipped locally (a notice is printed) but fails in
//! CI (`CI` set), where `scripts/test` installs `chromium` and `chromium-driver`.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::ua::{sdp_connection, sdp_offer};
use common::*;
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_RIGHT};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// Every wait on the page or the phone.
const T: Duration = Duration::from_secs(10);

/// `<target>/browser`: CARGO_TARGET_DIR when set (relative to the workspace root, as cargo reads
/// it), else the workspace's `target/`.
fn shot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace.join(d),
        _ => workspace.join("target"),
    };
    target.join("browser")
}

/// Whether chromedriver is there; without it a test is skipped locally (with a notice) but fails
/// in CI.
fn have_chromedriver() -> bool {
    if Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{CHROMEDRIVER} is missing: the browser test needs Debian's chromium and \
             chromium-driver (scripts/test installs them with apt)"
        );
    }
    println!("skipped: no chromedriver ({CHROMEDRIVER}); apt-get install chromium chromium-driver");
    false
}

/// The screenshot directory, cleared of what an earlier run of the test `tag` left there: its
/// screenshots (names starting with `prefix`), its failure shot and chromedriver log. The tests
/// run side by side (nextest: as processes) and share the directory, so each owns its own names.
fn prepare_shots(tag: &str, prefix: &str) -> PathBuf {
    let dir = shot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let own = |name: &str| {
        name.starts_with(prefix) && name.ends_with(".png")
            || name == format!("failure-{tag}.png")
            || name == format!("chromedriver-{tag}.log")
    };
    for entry in std::fs::read_dir(&dir)
        .expect("read screenshot dir")
        .flatten()
    {
        if own(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    dir
}

/// chromedriver and the browsers it starts, plus the browser profile: all gone when this is
/// dropped, also when the test panics half-way.
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver runs in its own process group, which chromium and its helpers inherit:
        // one signal to the group ends them all, without touching anybody else's browser.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Start chromedriver on a free port (logging to `chromedriver-<tag>.log`) and open a headless
/// chromium session on it.
async fn launch(dir: &Path, tag: &str) -> (Driver, Client, SocketAddr) {
    use std::os::unix::process::CommandExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port();
    let profile = unique_temp_path("chromium-profile", "d");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let log_path = dir.join(format!("chromedriver-{tag}.log"));
    let log = std::fs::File::create(&log_path).expect("chromedriver log");
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, profile };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // chromedriver needs a moment before it listens.
    let deadline = tokio::time::Instant::now() + T;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen on {addr} within {T:?} (see {})",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        &format!("--user-data-dir={}", driver.profile.display()),
        "--window-size=1280,800",
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        // The page's console, read at the end: CSP violations and script errors land there.
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let Value::Object(caps) = caps else {
        unreachable!("a JSON object")
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = tokio::time::timeout(
        Duration::from_secs(30),
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://{addr}")),
    )
    .await
    .expect("chromium session within 30 s")
    .expect("chromium session");
    // --window-size counts the (invisible) browser frame too: grow the window so that the page
    // itself, and so every screenshot, is 1280x800.
    let frame = client
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .expect("window frame size");
    let extra = |i: usize| frame[i].as_u64().unwrap_or(0).min(400) as u32;
    client
        .set_window_size(1280 + extra(0), 800 + extra(1))
        .await
        .expect("resize the window");
    (driver, client, addr)
}

/// The browser's console messages so far: chromedriver's `se/log` endpoint, which fantoccini
/// does not wrap, asked directly. chromedriver keeps connections alive, so the answer is read by
/// its Content-Length rather than to the end of the stream.
async fn console_log(client: &Client, driver: SocketAddr) -> Vec<Value> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sid = client
        .session_id()
        .await
        .expect("session id")
        .expect("a session");
    let body = r#"{"type":"browser"}"#;
    let req = format!(
        "POST /session/{sid}/se/log HTTP/1.1\r\nHost: {driver}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(driver)
        .await
        .expect("connect chromedriver");
    s.write_all(req.as_bytes()).await.expect("send log request");
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let text = tokio::time::timeout(T, async {
        loop {
            let n = s.read(&mut buf).await.expect("read log answer");
            assert!(n > 0, "chromedriver closed the connection early");
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("log answer has a Content-Length");
            if raw.len() >= end + 4 + len {
                break String::from_utf8_lossy(&raw[end + 4..end + 4 + len]).into_owned();
            }
        }
    })
    .await
    .expect("browser log within the timeout");
    let v: Value = serde_json::from_str(&text).expect("log answer is JSON");
    v["value"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no log entries in {v}"))
}

/// The browser console's errors (level SEVERE) except those `expected` accepts.
async fn page_errors(
    client: &Client,
    driver: SocketAddr,
    expected: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    console_log(client, driver)
        .await
        .into_iter()
        .filter(|e| e["level"] == "SEVERE" && !expected(e))
        .collect()
}

/// The page under test plus where its screenshots go (`tag` names the test's failure shot).
struct Page {
    c: Client,
    dir: PathBuf,
    tag: &'static str,
}

impl Page {
    async fn shot(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.expect("screenshot");
        let path = self.dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    async fn js(&self, expr: &str) -> Value {
        self.c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap_or_else(|e| panic!("script {expr:?}: {e}"))
    }

    /// Poll `expr` until it is truthy, for up to [`T`].
    async fn wait(&self, what: &str, expr: &str) -> Value {
        self.wait_up_to(what, expr, T).await
    }

    /// Poll `expr` until it is truthy; after `limit` save `failure-<tag>.png` and panic with what
    /// the console shows (operator state, status toasts, ribbon hint, connection banner, login
    /// message).
    async fn wait_up_to(&self, what: &str, expr: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.js(expr).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                let path = self.shot(&format!("failure-{}", self.tag)).await;
                let seen = self
                    .js("[document.getElementById('operator').dataset.state, \
                          document.getElementById('operator').dataset.mode, \
                          document.getElementById('status').innerText, \
                          document.getElementById('ribbon-hint').innerText, \
                          document.getElementById('activity').innerText, \
                          document.getElementById('conn').hidden, \
                          document.getElementById('login-msg').innerText]")
                    .await;
                panic!(
                    "{what}: `{expr}` not true within {limit:?}; page shows {seen} (screenshot {})",
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Open the console and wait for the login form.
    async fn open_console(&self, http_addr: SocketAddr) {
        self.c
            .goto(&format!("http://{http_addr}/"))
            .await
            .expect("open the console");
        self.wait(
            "login form shown",
            "!document.getElementById('login-view').hidden",
        )
        .await;
    }

    /// Log in through the form and wait for the agents list (with agent 1001). The fields are
    /// emptied first: after a logout or an expired session the form keeps the extension typed.
    async fn log_in(&self, extension: &str, password: &str) {
        for (css, text) in [
            ("#login-extension", extension),
            ("#login-password", password),
        ] {
            let field = self
                .c
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("find {css}: {e}"));
            field
                .clear()
                .await
                .unwrap_or_else(|e| panic!("clear {css}: {e}"));
            field
                .send_keys(text)
                .await
                .unwrap_or_else(|e| panic!("type into {css}: {e}"));
        }
        self.click("#login-submit").await;
        self.wait(
            "console shown after login",
            "!document.getElementById('app').hidden",
        )
        .await;
        self.wait(
            "agent 1001 listed",
            "document.querySelector('#agents tr[data-ext=\"1001\"]')",
        )
        .await;
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// A real right click (pointer down/up with button 2) on the element's centre.
    async fn right_click(&self, css: &str) {
        let element = self
            .c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        let mouse = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element,
                duration: None,
                x: 0,
                y: 0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_RIGHT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_RIGHT,
            });
        self.c
            .perform_actions(mouse)
            .await
            .unwrap_or_else(|e| panic!("right click {css}: {e}"));
    }
}

/// Check one leg against a row of docs/design.md §3 (wanted at −20 dBFS ±2 dB, the others
/// silent).
fn row(who: &str, peer: &RtpPeer, wanted: &[f64], unwanted: &[f64]) {
    assert_hears(who, &peer.received_audio(), wanted, unwanted, 2.0);
}

const METERS_UP: &str = "['meter-customer', 'meter-agent', 'meter-you'].map((id) => \
     Number(document.getElementById(id).getAttribute('aria-valuenow')))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser_monitor_coach_stop() {
    if !have_chromedriver() {
        return;
    }
    let dir = prepare_shots("monitor", "0");

    let lab = start(|_| {}).await;
    let http_addr = lab.server.http_addr().expect("HTTP enabled");
    // The supervisor's desk phone, registered before anything happens in the console.
    let mut phone_ua = lab.registered("2001").await;

    let (driver, client, driver_addr) = launch(&dir, "monitor").await;
    let page = Page {
        c: client.clone(),
        dir: dir.clone(),
        tag: "monitor",
    };

    // 1. The login page.
    page.open_console(http_addr).await;
    page.shot("01-login").await;

    // 2. Logged in: the agents list, 1001 not in a call.
    page.log_in("2001", "lab2001").await;
    let in_call = page
        .js("document.querySelector('#agents tr[data-ext=\"1001\"] .incall').textContent")
        .await;
    assert_eq!(in_call, "—", "1001 is idle before the call");
    assert_eq!(
        page.js("document.getElementById('me-ext').textContent")
            .await,
        "Ext. 2001"
    );
    // Marks this document: if the page reloaded, the mark would be gone.
    page.js("window.bibridgeTestMark = 'no reload'").await;
    page.shot("02-logged-in").await;

    // 3. Select 1001, then the customer's call to 1001 connects and shows up live.
    page.click("#agents tr[data-ext=\"1001\"]").await;
    page.wait(
        "details of 1001 shown",
        "!document.getElementById('details').hidden && \
         !document.getElementById('calls-empty').hidden",
    )
    .await;
    let call = connect_call(&lab, "1001").await;
    call.talk();
    let call_id = page
        .wait(
            "the new call appears in 1001's calls",
            "(() => { const r = document.querySelector('#calls tr[data-call]'); \
               return r && r.querySelector('.cstate-connected') ? r.dataset.call : null; })()",
        )
        .await;
    let call_id = call_id.as_str().expect("call id").to_string();
    page.wait(
        "1001 shown in a call",
        "document.querySelector('#agents tr[data-ext=\"1001\"] .incall').textContent === 'Yes'",
    )
    .await;
    assert_eq!(
        page.js("window.bibridgeTestMark").await,
        "no reload",
        "the call must appear without a page reload"
    );
    page.wait(
        "Monitoring enabled",
        "!document.getElementById('btn-monitor').disabled",
    )
    .await;
    page.shot("03-call-live").await;

    // 4. Monitoring: the legal notice first, then bibridge calls the phone, which auto-answers.
    page.click("#btn-monitor").await;
    page.wait(
        "legal notice dialog",
        "document.getElementById('legal-ack').open",
    )
    .await;
    page.shot("04-legal-ack").await;
    page.click("#legal-ack-ok").await;
    let inc = phone_ua
        .wait_invite(T)
        .await
        .expect("the console calls the supervisor's phone");
    let text = inc.request.to_string();
    assert!(
        text.lines()
            .any(|l| l.eq_ignore_ascii_case("Answer-Mode: Auto")),
        "no Answer-Mode: Auto in\n{text}"
    );
    let anchor = sdp_connection(inc.sdp.as_deref().expect("INVITE has an offer"))
        .expect("offer has a connection address");
    let phone_rtp = RtpPeer::bind().await.expect("phone RTP");
    phone_ua
        .answer(
            &inc,
            &sdp_offer(phone_rtp.local_addr(), &[0, 101], "sendrecv"),
        )
        .await
        .expect("answer");
    phone_rtp.start_sending(anchor, Some(SUP_A_HZ), LEVEL, 0);
    page.wait(
        "operator pane active",
        "document.querySelector('#operator[data-state=\"active\"][data-mode=\"monitor\"]')",
    )
    .await;
    assert_eq!(
        page.js("document.getElementById('op-state').textContent")
            .await,
        "Active"
    );
    assert_eq!(
        page.js("document.getElementById('op-mode').textContent")
            .await,
        "Monitoring"
    );
    assert_eq!(
        page.js("document.getElementById('btn-monitor').getAttribute('aria-pressed')")
            .await,
        "true"
    );
    // docs/design.md §3, monitor row: the supervisor hears both, nobody hears the supervisor.
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &phone_rtp], 1200).await;
    row(
        "supervisor",
        &phone_rtp,
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
    // The meters follow the talkers (about −20 dBFS each, −40 is a generous floor).
    page.wait(
        "customer and agent meters up",
        &format!("(() => {{ const m = {METERS_UP}; return m[0] > -40 && m[1] > -40; }})()"),
    )
    .await;
    page.shot("05-monitoring").await;

    // 5. Coaching: the agent now hears the supervisor, the customer still does not.
    page.click("#btn-coach").await;
    page.wait(
        "operator pane in coach mode",
        "document.querySelector('#operator[data-state=\"active\"][data-mode=\"coach\"]')",
    )
    .await;
    assert_eq!(
        page.js("document.getElementById('op-mode').textContent")
            .await,
        "Coaching"
    );
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp, &phone_rtp], 1200).await;
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
        &phone_rtp,
        &[CUSTOMER_HZ, AGENT_HZ],
        &[SUP_A_HZ],
    );
    page.wait(
        "all three meters up",
        &format!("{METERS_UP}.every((v) => v > -40)"),
    )
    .await;
    page.shot("06-coaching").await;

    // 6. Stop through the call row's context menu: the phone gets a BYE, the pane goes idle.
    let row_css = format!("#calls tr[data-call=\"{call_id}\"]");
    page.right_click(&row_css).await;
    page.wait(
        "context menu open",
        "!document.getElementById('ctx-menu').hidden",
    )
    .await;
    assert_eq!(
        page.js("document.querySelector('#ctx-menu [data-action=\"stop\"]').getAttribute('aria-disabled')")
            .await,
        "false",
        "Stop is offered on the call being coached"
    );
    page.shot("07-context-menu").await;
    page.click("#ctx-menu [data-action=\"stop\"]").await;
    phone_ua
        .wait_request("BYE", T)
        .await
        .expect("BYE to the supervisor's phone");
    page.wait(
        "operator pane idle again",
        "document.querySelector('#operator[data-state=\"idle\"]')",
    )
    .await;
    page.wait(
        "ctx menu closed",
        "document.getElementById('ctx-menu').hidden",
    )
    .await;
    // The call itself goes on, and the customer still only hears the agent.
    listen_fresh(&[&call.customer_rtp, &call.agent_rtp], 1200).await;
    row(
        "agent (after stop)",
        &call.agent_rtp,
        &[CUSTOMER_HZ],
        &[AGENT_HZ, SUP_A_HZ],
    );
    row(
        "customer (after stop)",
        &call.customer_rtp,
        &[AGENT_HZ],
        &[CUSTOMER_HZ, SUP_A_HZ],
    );
    page.shot("08-stopped").await;

    // Nothing went wrong on the page itself: no script error, no CSP violation.
    // Before the login the console asks /api/me whether a session cookie is still valid; its
    // 401 is the expected "no", which Chrome logs like any failed request.
    let errors = page_errors(&client, driver_addr, |e| {
        let m = e["message"].as_str().unwrap_or_default();
        e["source"] == "network" && m.contains("/api/me ") && m.contains("401")
    })
    .await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");

    let _ = tokio::time::timeout(T, client.close()).await;
    drop(driver);
    drop(call);
    lab.server.shutdown().await;
}

/// The console survives a restart of bibridge: while bibridge is down it says the connection is
/// lost and keeps trying; once bibridge is back its tokens (kept in memory) are gone, so the
/// console returns to the login form with "Session expired", and logging in again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_survives_a_restart_of_bibridge() {
    if !have_chromedriver() {
        return;
    }
    let dir = prepare_shots("restart", "1");
    let lab = start(|_| {}).await;
    let http_addr = lab.server.http_addr().expect("HTTP enabled");
    let (driver, client, driver_addr) = launch(&dir, "restart").await;
    let page = Page {
        c: client.clone(),
        dir: dir.clone(),
        tag: "restart",
    };
    page.open_console(http_addr).await;
    page.log_in("2001", "lab2001").await;
    assert_eq!(
        page.js("document.getElementById('conn').hidden").await,
        true,
        "no connection banner while bibridge runs"
    );
    page.js("window.bibridgeTestMark = 'no reload'").await;

    // bibridge goes away: the event stream ends (it notices the stopped engine within 5 s).
    let stopped = lab.stop().await;
    page.wait(
        "connection-lost banner",
        "!document.getElementById('conn').hidden",
    )
    .await;
    assert_eq!(
        page.js("document.getElementById('conn-text').textContent")
            .await,
        "Connection lost. Reconnecting…"
    );
    page.shot("10-connection-lost").await;
    // An unreachable server is no reason to drop the session: a few failed attempts later the
    // console is still there, still trying.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        page.js("[document.getElementById('app').hidden, document.getElementById('conn').hidden]")
            .await,
        json!([false, false]),
        "console and banner stay while bibridge is down"
    );

    // bibridge is back on the same address, without the old token. The next reconnect attempt
    // (EventSource's own, or the console's backoff of 1, 2, 4… s while the server is down) meets
    // a 401 and the console asks to log in again. 20 s covers either.
    let lab = stopped.restart().await;
    assert_eq!(lab.server.http_addr(), Some(http_addr), "same HTTP address");
    page.wait_up_to(
        "login form with the session-expired message",
        "!document.getElementById('login-view').hidden && \
         document.getElementById('app').hidden && \
         document.getElementById('login-msg').textContent === \
           'Session expired, please log in again'",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        page.js("[sessionStorage.getItem('bibridge.token'), window.bibridgeTestMark]")
            .await,
        json!([null, "no reload"]),
        "the stale token is forgotten, without reloading the page"
    );
    assert_eq!(
        page.js("document.getElementById('conn').hidden").await,
        true,
        "no connection banner on the login form"
    );
    page.shot("11-session-expired").await;

    // Logging in again: the console works with the new server.
    page.log_in("2001", "lab2001").await;
    assert_eq!(
        page.js("document.getElementById('me-ext').textContent")
            .await,
        "Ext. 2001"
    );
    page.wait(
        "banner gone after the new login",
        "document.getElementById('conn').hidden",
    )
    .await;
    page.shot("12-relogin").await;

    // Failed requests while bibridge was down or had forgotten the token are expected (Chrome
    // logs them as network errors); anything else, a script error say, is not.
    let errors = page_errors(&client, driver_addr, |e| e["source"] == "network").await;
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");

    let _ = tokio::time::timeout(T, client.close()).await;
    drop(driver);
    lab.server.shutdown().await;
}
