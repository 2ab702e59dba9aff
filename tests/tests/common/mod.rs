//! Shared harness for end-to-end tests: a bibridge started in-process on ephemeral ports, with the
//! lab config (docs/design.md §2) adjusted only where a test needs it (trunk port, RTP range).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bibridge::Server;
use bibridge_b2bua::config::Config;
use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::tone::tone_level_dbfs;
use bibridge_testkit::ua::{sdp_connection, TestUa};

pub const CUSTOMER_HZ: f64 = 440.0;
pub const AGENT_HZ: f64 = 1000.0;
pub const LEVEL: f64 = -20.0;

pub struct Lab {
    pub server: Server,
    pub sip: SocketAddr,
    pub trunk_addr: SocketAddr,
    pub cfg: Config,
}

/// A path in the temp dir that no other lab of any test process uses.
pub fn unique_temp_path(what: &str, ext: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "bibridge-test-{what}-{}-{n}.{ext}",
        std::process::id()
    ))
}

/// A free UDP port on 127.0.0.1 (the socket is closed again; a tiny race we accept in tests).
pub fn free_udp_addr() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// An RTP range of 200 ports for one test's bibridge, in 20000–31999: above SIPp's media blocks
/// (10000–19999) and below the kernel's ephemeral ports (32768+, where test RTP peers bind).
/// Tests run in parallel as threads (cargo test) or processes (nextest): the slot starts from the
/// process id and a per-process counter, and a block is only taken if all its ports are free now.
fn rtp_range() -> (u16, u16) {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const SLOTS: u16 = 60;
    let start = (std::process::id() as u16)
        .wrapping_mul(7)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for k in 0..SLOTS {
        let base = 20_000 + 200 * ((start.wrapping_add(k)) % SLOTS);
        let free = (base..base + 200).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if free {
            return (base, base + 199);
        }
    }
    panic!("no free block of 200 RTP ports in 20000-31999");
}

pub async fn start(tweak: impl FnOnce(&mut Config)) -> Lab {
    let mut cfg = Config::lab();
    cfg.sip.udp = Some("127.0.0.1:0".parse().unwrap());
    cfg.sip.tcp = Some("127.0.0.1:0".parse().unwrap());
    // An ephemeral HTTP port too: tests run side by side.
    cfg.http.listen = Some("127.0.0.1:0".parse().unwrap());
    // Each lab its own audit log (the default is a file in the working directory).
    cfg.compliance.audit_log = Some(unique_temp_path("audit", "jsonl"));
    let trunk_addr = free_udp_addr();
    for t in &mut cfg.trunks {
        if t.name == "pstn" {
            t.address = trunk_addr;
        }
    }
    let (lo, hi) = rtp_range();
    cfg.rtp.port_min = lo;
    cfg.rtp.port_max = hi;
    tweak(&mut cfg);
    let server = Server::start(cfg.clone()).await.unwrap();
    let sip = server.udp_addr().unwrap();
    Lab {
        server,
        sip,
        trunk_addr,
        cfg,
    }
}

/// A lab whose server was shut down, ready to start again ([`StoppedLab::restart`]).
pub struct StoppedLab {
    cfg: Config,
    trunk_addr: SocketAddr,
}

impl StoppedLab {
    /// A new server with the same config and on the same HTTP address, as after a restart of
    /// the process: calls and console tokens (in memory) start empty; registrations come back
    /// from the state directory next to the lab's audit log. SIP gets
    /// fresh ephemeral ports, as in [`start`]: the stopped server's SIP/TCP accept task outlives
    /// `shutdown` and keeps its port.
    pub async fn restart(self) -> Lab {
        // The old HTTP listener goes with its task, which `shutdown` aborts without waiting:
        // wait (bounded) until the address is free again.
        if let Some(addr) = self.cfg.http.listen {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::net::TcpListener::bind(addr).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "HTTP address {addr} still taken 5 s after shutdown"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let server = Server::start(self.cfg.clone()).await.unwrap();
        let sip = server.udp_addr().unwrap();
        Lab {
            server,
            sip,
            trunk_addr: self.trunk_addr,
            cfg: self.cfg,
        }
    }
}

impl Lab {
    /// Shut the server down, keeping what [`StoppedLab::restart`] needs to start it again.
    pub async fn stop(self) -> StoppedLab {
        let mut cfg = self.cfg;
        cfg.http.listen = self.server.http_addr();
        cfg.sip.udp = cfg.sip.udp.map(|_| "127.0.0.1:0".parse().unwrap());
        cfg.sip.tcp = cfg.sip.tcp.map(|_| "127.0.0.1:0".parse().unwrap());
        self.server.shutdown().await;
        StoppedLab {
            cfg,
            trunk_addr: self.trunk_addr,
        }
    }

    /// The trunk's UA (the "customer" side of calls from the PSTN), on the trusted address.
    pub async fn trunk_ua(&self) -> TestUa {
        TestUa::bind_on(self.trunk_addr, "customer", "", self.sip)
            .await
            .unwrap()
    }

    /// A user's phone, registered with its lab password.
    pub async fn registered(&self, ext: &str) -> TestUa {
        let mut ua = TestUa::bind(ext, &format!("lab{ext}"), self.sip)
            .await
            .unwrap();
        let r = ua.register(3600, None).await.unwrap();
        assert_eq!(r.status_code.code(), 200, "REGISTER {ext}");
        ua
    }
}

/// A connected customer (trunk) → agent call with RTP peers on both sides.
pub struct ConnectedCall {
    pub trunk: TestUa,
    pub agent: TestUa,
    pub trunk_call: bibridge_testkit::ua::CallHandle,
    pub agent_call: bibridge_testkit::ua::CallHandle,
    pub customer_rtp: RtpPeer,
    pub agent_rtp: RtpPeer,
    /// bibridge's RTP address on the customer leg (from the 200 OK SDP).
    pub anchor_customer: SocketAddr,
    /// bibridge's RTP address on the agent leg (from the INVITE SDP).
    pub anchor_agent: SocketAddr,
}

pub async fn connect_call(lab: &Lab, agent_ext: &str) -> ConnectedCall {
    let mut agent = lab.registered(agent_ext).await;
    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let agent_rtp = RtpPeer::bind().await.unwrap();
    let offer =
        bibridge_testkit::ua::sdp_offer(customer_rtp.local_addr(), &[0, 8, 101], "sendrecv");
    let mut trunk_call = trunk.invite(agent_ext, &offer, false).await.unwrap();
    let incoming = agent.wait_invite(Duration::from_secs(5)).await.unwrap();
    let anchor_agent = sdp_connection(incoming.sdp.as_deref().unwrap()).unwrap();
    assert_ne!(
        anchor_agent,
        customer_rtp.local_addr(),
        "media must be anchored"
    );
    let answer = bibridge_testkit::ua::sdp_offer(agent_rtp.local_addr(), &[0, 101], "sendrecv");
    let agent_call = agent.answer(&incoming, &answer).await.unwrap();
    let ok = trunk
        .wait_final(&mut trunk_call, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ok.status_code.code(), 200);
    let anchor_customer = sdp_connection(trunk_call.remote_sdp.as_deref().unwrap()).unwrap();
    assert_ne!(
        anchor_customer,
        agent_rtp.local_addr(),
        "media must be anchored"
    );
    ConnectedCall {
        trunk,
        agent,
        trunk_call,
        agent_call,
        customer_rtp,
        agent_rtp,
        anchor_customer,
        anchor_agent,
    }
}

impl ConnectedCall {
    /// Both parties talk: customer 440 Hz, agent 1000 Hz, PCMU, −20 dBFS.
    pub fn talk(&self) {
        self.customer_rtp
            .start_sending(self.anchor_customer, Some(CUSTOMER_HZ), LEVEL, 0);
        self.agent_rtp
            .start_sending(self.anchor_agent, Some(AGENT_HZ), LEVEL, 0);
    }
}

/// Assert who hears what: `wanted` at `LEVEL` ± `tol` dB, every `unwanted` below −60 dBFS.
/// Only the last second of audio is analysed (the start may hold silence before the latch).
pub fn assert_hears(who: &str, audio: &[i16], wanted: &[f64], unwanted: &[f64], tol: f64) {
    assert!(
        audio.len() >= 8000,
        "{who}: only {} samples received",
        audio.len()
    );
    let tail = &audio[audio.len() - 8000..];
    for &f in wanted {
        let l = tone_level_dbfs(tail, f, 8000);
        assert!(
            (l - LEVEL).abs() <= tol,
            "{who} should hear {f} Hz at {LEVEL} dBFS ±{tol}, got {l:.2}"
        );
    }
    for &f in unwanted {
        let l = tone_level_dbfs(tail, f, 8000);
        assert!(l < -60.0, "{who} must not hear {f} Hz, got {l:.2} dBFS");
    }
}

pub const SUP_A_HZ: f64 = 2000.0;
pub const SUP_B_HZ: f64 = 2600.0;

/// A supervisor's phone in a session: its UA, dialog, RTP peer and bibridge's RTP address.
pub struct Supervisor {
    pub ua: TestUa,
    pub call: bibridge_testkit::ua::CallHandle,
    pub rtp: RtpPeer,
    pub anchor: SocketAddr,
}

/// Dial a feature code (e.g. `*811001`) as supervisor `ext`, authenticated; returns the final
/// response code and, on 200, the session with its RTP peer sending `tone_hz`.
pub async fn dial_session(
    lab: &Lab,
    ext: &str,
    dialled: &str,
    tone_hz: f64,
    pts: &[u8],
) -> Result<Supervisor, u16> {
    let mut ua = TestUa::bind(ext, &format!("lab{ext}"), lab.sip)
        .await
        .unwrap();
    let rtp = RtpPeer::bind().await.unwrap();
    let offer = bibridge_testkit::ua::sdp_offer(rtp.local_addr(), pts, "sendrecv");
    let mut call = ua.invite(dialled, &offer, true).await.unwrap();
    let r = ua
        .wait_final(&mut call, Duration::from_secs(5))
        .await
        .unwrap();
    let code = r.status_code.code();
    if code != 200 {
        return Err(code);
    }
    let anchor = sdp_connection(call.remote_sdp.as_deref().unwrap()).unwrap();
    let pt = bibridge_testkit::ua::sdp_payload_types(call.remote_sdp.as_deref().unwrap())[0];
    rtp.start_sending(anchor, Some(tone_hz), LEVEL, pt);
    Ok(Supervisor {
        ua,
        call,
        rtp,
        anchor,
    })
}

/// Forget what everybody heard so far, let `settle` pass, then collect ~1 s more.
pub async fn listen_fresh(peers: &[&RtpPeer], ms: u64) {
    for p in peers {
        p.clear_received();
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Per-packet level of `freq` in the audio of each received packet (G.711 payloads).
pub fn per_packet_levels(peer: &RtpPeer, freq: f64) -> Vec<(std::time::Instant, u16, u32, f64)> {
    peer.received_packets()
        .iter()
        .filter(|p| p.payload_type == 0 || p.payload_type == 8)
        .map(|p| {
            let pcm: Vec<i16> = p
                .payload
                .iter()
                .map(|&b| {
                    if p.payload_type == 0 {
                        bibridge_media::g711::ulaw_decode(b)
                    } else {
                        bibridge_media::g711::alaw_decode(b)
                    }
                })
                .collect();
            (p.at, p.seq, p.ssrc, tone_level_dbfs(&pcm, freq, 8000))
        })
        .collect()
}

/// An RTP endpoint for any codec bibridge mixes (G.722, Opus, ...): sends a tone encoded with
/// `bibridge_media::codec` every 20 ms and decodes what it receives.
pub struct CodecPeer {
    pub socket: std::sync::Arc<tokio::net::UdpSocket>,
    heard: std::sync::Arc<std::sync::Mutex<Vec<i16>>>,
    pub kind: bibridge_media::codec::CodecKind,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CodecPeer {
    pub async fn bind(kind: bibridge_media::codec::CodecKind) -> CodecPeer {
        let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, h) = (socket.clone(), heard.clone());
        let rx = tokio::spawn(async move {
            let mut dec = bibridge_media::codec::Decoder::new(kind).unwrap();
            let mut buf = [0u8; 2048];
            let mut pcm = vec![0i16; 5760];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                let Ok(h_) = bibridge_media::rtp::RtpHeader::parse(&buf[..n]) else {
                    continue;
                };
                if h_.payload_type >= 96 && h_.payload_type != 111 {
                    continue;
                }
                if let Ok(k) = dec.decode(&buf[h_.payload.clone()], &mut pcm) {
                    h.lock().unwrap().extend_from_slice(&pcm[..k]);
                }
            }
        });
        CodecPeer {
            socket,
            heard,
            kind,
            tasks: vec![rx],
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn start_sending(&mut self, target: SocketAddr, tone_hz: f64, pt: u8) {
        let (s, kind) = (self.socket.clone(), self.kind);
        self.tasks.push(tokio::spawn(async move {
            let rate = kind.sample_rate();
            let frame = (rate / 50) as usize;
            let ts_step = kind.rtp_clock_rate() / 50;
            let mut tone = bibridge_testkit::tone::ToneGen::new(tone_hz, LEVEL, rate);
            let mut enc = bibridge_media::codec::Encoder::new(kind).unwrap();
            let mut pcm = vec![0i16; frame];
            let mut out = vec![0u8; 1500];
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let (mut seq, mut ts) = (1000u16, 5000u32);
            loop {
                tick.tick().await;
                tone.fill(&mut pcm);
                let n = enc.encode(&pcm, &mut out[12..]).unwrap();
                out[0] = 0x80;
                out[1] = pt;
                out[2..4].copy_from_slice(&seq.to_be_bytes());
                out[4..8].copy_from_slice(&ts.to_be_bytes());
                out[8..12].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
                let _ = s.send_to(&out[..12 + n], target).await;
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(ts_step);
            }
        }));
    }

    pub fn clear(&self) {
        self.heard.lock().unwrap().clear();
    }

    /// Levels of the given tones in the last second heard.
    pub fn assert_hears(&self, who: &str, wanted: &[f64], unwanted: &[f64], tol: f64) {
        let rate = self.kind.sample_rate() as usize;
        let audio = self.heard.lock().unwrap().clone();
        assert!(audio.len() >= rate, "{who}: only {} samples", audio.len());
        let tail = &audio[audio.len() - rate..];
        for &f in wanted {
            let l = tone_level_dbfs(tail, f, rate as u32);
            assert!(
                (l - LEVEL).abs() <= tol,
                "{who} should hear {f} Hz at {LEVEL} ±{tol}, got {l:.2}"
            );
        }
        for &f in unwanted {
            let l = tone_level_dbfs(tail, f, rate as u32);
            assert!(l < -60.0, "{who} must not hear {f} Hz, got {l:.2}");
        }
    }
}

impl Drop for CodecPeer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

// ------------------------------------------------------------------------------ HTTP client

/// An HTTP answer as the tests see it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// A header by name (case-insensitive), the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    /// The `reason` of a problem document (checking that it is one).
    pub fn reason(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Read the status line and headers of an HTTP/1.1 response.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> (u16, Vec<(String, String)>) {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    r.read_line(&mut line).await.expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').expect("header has a colon");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

/// Read one chunk of a chunked body; `None` at the last chunk or the end of the stream.
async fn read_chunk<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut line = String::new();
    if r.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut data = vec![0u8; size + 2];
    r.read_exact(&mut data).await.ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); `body` is (content type,
/// text).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect HTTP");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some((ct, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some((_, b)) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes())
        .await
        .expect("send HTTP request");
    let mut r = BufReader::new(s);
    let (status, headers) = tokio::time::timeout(Duration::from_secs(10), read_head(&mut r))
        .await
        .expect("HTTP answer in time");
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut raw = Vec::new();
    if chunked {
        while let Some(c) = read_chunk(&mut r).await {
            raw.extend_from_slice(&c);
        }
    } else {
        tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut raw))
            .await
            .expect("HTTP body in time")
            .expect("read HTTP body");
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    }
}

/// A request with a bearer token and an optional JSON body.
pub async fn api(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let text = body.map(|b| b.to_string());
    http(
        addr,
        method,
        path,
        &[("Authorization", &auth)],
        text.as_deref().map(|t| ("application/json", t)),
    )
    .await
}

/// Log in a console user; returns the token (asserting success).
pub async fn login(addr: SocketAddr, ext: &str, password: &str) -> String {
    let r = login_attempt(addr, ext, password).await;
    assert_eq!(r.status, 200, "login {ext}: {r:?}");
    r.json()["token"].as_str().expect("token").to_string()
}

pub async fn login_attempt(addr: SocketAddr, ext: &str, password: &str) -> HttpResponse {
    let body = serde_json::json!({"extension": ext, "password": password}).to_string();
    http(
        addr,
        "POST",
        "/api/login",
        &[],
        Some(("application/json", &body)),
    )
    .await
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub name: String,
    pub id: Option<String>,
    pub data: serde_json::Value,
}

/// A client of `GET /api/events`, reading the chunked stream event by event.
pub struct EventStream {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    pending: String,
    /// Every event read so far except `levels`, in order.
    pub seen: Vec<SseEvent>,
}

impl EventStream {
    pub async fn open(addr: SocketAddr, token: &str) -> EventStream {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect HTTP");
        let req = format!(
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("send");
        let mut reader = tokio::io::BufReader::new(s);
        let (status, headers) = read_head(&mut reader).await;
        assert_eq!(status, 200, "event stream: {headers:?}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case("content-type")
                    && v.starts_with("text/event-stream")),
            "{headers:?}"
        );
        EventStream {
            reader,
            pending: String::new(),
            seen: Vec::new(),
        }
    }

    /// The next event (comments skipped), or `None` on timeout or end of stream.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                let ev = SseEvent {
                    name,
                    id,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                };
                if ev.name != "levels" {
                    self.seen.push(ev.clone());
                }
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, read_chunk(&mut self.reader))
                .await
                .ok()??;
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skip events until one named `name` whose data passes `pred` arrives.
    pub async fn wait_for(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> SseEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(ev) if ev.name == name && pred(&ev.data) => return ev,
                Some(_) => {}
                None => panic!("no {name} event within {timeout:?}; seen {:?}", self.seen),
            }
        }
    }
}
