//! SIP over TCP end to end (RFC 3261 §18): SIPp registering and answering over TCP, and raw TCP
//! connections exercising bibridge's stream framing (Content-Length, RFC 3261 §18.3) and its
//! keep-alive handling (double-CRLF ping, RFC 5626 §3.5.1).
//!
//! Every test starts its own bibridge in-process (`common::start`: UDP and TCP on ephemeral ports
//! of 127.0.0.1). SIPp processes are killed when their handle drops, also when a test panics.
//! Without `sipp` the SIPp tests print a skip notice and pass, unless `CI` is set.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "sipp/support.rs"]
mod sipp_support;

use std::net::SocketAddr;
use std::time::Duration;

use bibridge_testkit::rtp_peer::RtpPeer;
use bibridge_testkit::ua::{sdp_connection, sdp_offer};
use common::*;
use sipp_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// SIPp over TCP

/// A port free for TCP and UDP on 127.0.0.1 a moment ago (SIPp `-t t1` binds `-p` for TCP).
fn free_tcp_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn tcp_server(lab: &Lab) -> SocketAddr {
    lab.server.tcp_addr().expect("the lab listens on TCP")
}

/// register.xml over TCP (`-t t1`): SIPp binds its connection to `-p`, so bibridge sees the
/// REGISTER from `127.0.0.1:<port>` on TCP.
async fn register_over_tcp(
    lab: &Lab,
    logs: &LogDir,
    label: &str,
    password: &str,
    port: u16,
) -> SippOutcome {
    Sipp::spawn(
        logs,
        label,
        tcp_server(lab),
        "register.xml",
        &args(&[
            "-t",
            "t1",
            "-s",
            "1001",
            "-au",
            "1001",
            "-ap",
            password,
            "-p",
            &port.to_string(),
        ]),
    )
    .finish()
    .await
}

/// agent-uas.xml as 1001 over TCP, listening on `port` (where it registered from), RTP echo.
fn spawn_tcp_agent(logs: &LogDir, lab: &Lab, port: u16, media: u16) -> Sipp {
    Sipp::spawn(
        logs,
        "agent",
        tcp_server(lab),
        "agent-uas.xml",
        &args(&[
            "-t",
            "t1",
            "-s",
            "1001",
            "-p",
            &port.to_string(),
            "-mp",
            &media.to_string(),
            "-rtp_echo",
        ]),
    )
}

/// SIPp registers over TCP with digest auth; the 200 carries the TCP binding; a wrong password
/// is refused on the same transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_registers_over_tcp() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("tcp-register");

    let ok = register_over_tcp(&lab, &logs, "ok", "lab1001", free_tcp_port()).await;
    ok.assert_success();
    assert!(
        ok.messages.contains("SIP/2.0/TCP"),
        "the exchange ran over TCP\n{}",
        ok.report
    );

    let wrong = register_over_tcp(&lab, &logs, "wrong", "not-lab1001", free_tcp_port()).await;
    assert_eq!(
        wrong.code,
        Some(1),
        "a wrong password must fail the scenario\n{}",
        wrong.report
    );
    logs.cleanup();
    lab.server.shutdown().await;
}

/// The binding's URI is kept as registered, parameters included (RFC 3261 §10.3 step 8, §19.1.4:
/// `transport` must match when present): the 200 to REGISTER lists it with `transport=TCP`, and
/// the INVITE to the agent is addressed to it.
///
/// Fails today: the engine passes the stored (bare) contact URI through `wire::addr_uri`, which
/// cuts a bare URI at its first `;` (crates/b2bua/src/engine/requests.rs, the 200's Contact list
/// and `route()`'s `Target::uri`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_binding_keeps_its_uri_parameters() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("tcp-binding-uri");
    let agent_port = free_tcp_port();
    let reg = register_over_tcp(&lab, &logs, "agent-register", "lab1001", agent_port).await;
    reg.assert_success();
    let binding = format!("<sip:1001@127.0.0.1:{agent_port};transport=TCP>;expires=");
    assert!(
        reg.messages.contains(&binding),
        "the 200 lists `{binding}..`\n{}",
        reg.report
    );
    let agent = spawn_tcp_agent(&logs, &lab, agent_port, free_port_block(4));
    assert!(
        wait_tcp_listening(agent_port).await,
        "SIPp agent never listened"
    );
    let mut trunk = lab.trunk_ua().await;
    let rtp = RtpPeer::bind().await.unwrap();
    let offer = sdp_offer(rtp.local_addr(), &[0], "sendrecv");
    let mut call = trunk.invite("1001", &offer, false).await.unwrap();
    let ok = trunk.wait_final(&mut call, T).await.unwrap();
    assert_eq!(ok.status_code.code(), 200);
    trunk.bye(&call).await.unwrap();
    let agent = agent.finish().await;
    let rline = format!("INVITE sip:1001@127.0.0.1:{agent_port};transport=TCP SIP/2.0");
    assert!(
        agent.messages.contains(&rline),
        "the INVITE is addressed to the binding: `{rline}`\n{}",
        agent.report
    );
    logs.cleanup();
    lab.server.shutdown().await;
}

/// The agent registers over TCP (register.xml) and answers over TCP (agent-uas.xml, RTP echo) on
/// the same port, after the REGISTER connection is gone: bibridge must open a TCP connection to
/// the binding and send the INVITE there (not UDP). A test customer on the UDP trunk hears its
/// own tone back through bibridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_customer_reaches_tcp_registered_sipp_agent() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("tcp-agent-echo");
    let agent_port = free_tcp_port();
    register_over_tcp(&lab, &logs, "agent-register", "lab1001", agent_port)
        .await
        .assert_success();
    let agent_media = free_port_block(4);
    let agent = spawn_tcp_agent(&logs, &lab, agent_port, agent_media);
    assert!(
        wait_tcp_listening(agent_port).await,
        "SIPp agent never listened"
    );

    let mut trunk = lab.trunk_ua().await;
    let customer_rtp = RtpPeer::bind().await.unwrap();
    let offer = sdp_offer(customer_rtp.local_addr(), &[0, 101], "sendrecv");
    let mut call = trunk.invite("1001", &offer, false).await.unwrap();
    let ok = trunk.wait_final(&mut call, T).await.unwrap();
    if ok.status_code.code() != 200 {
        let a = agent.finish().await;
        panic!(
            "the TCP agent should answer, got {}\n{}",
            ok.status_code, a.report
        );
    }
    assert!(
        call.provisionals.contains(&180),
        "its 180 is relayed: {:?}",
        call.provisionals
    );
    let anchor = sdp_connection(call.remote_sdp.as_deref().unwrap()).unwrap();
    assert_ne!(anchor.port(), agent_media, "media must be anchored");

    customer_rtp.start_sending(anchor, Some(CUSTOMER_HZ), LEVEL, 0);
    assert!(
        customer_rtp.wait_for_packets(75, T).await,
        "no echo came back through bibridge"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audio = customer_rtp.received_audio();
    assert_hears("customer (echo)", &audio, &[CUSTOMER_HZ], &[AGENT_HZ], 1.0);
    customer_rtp.stop_sending();

    let bye = trunk.bye(&call).await.unwrap();
    assert_eq!(
        bye.status_code.code(),
        200,
        "the agent's 200 to BYE came back over TCP"
    );
    let agent = agent.finish().await;
    agent.assert_success();
    // bibridge's requests to the agent went over TCP, from its TCP listener's address.
    let via = format!("SIP/2.0/TCP {}", tcp_server(&lab));
    assert!(
        agent.messages.contains(&via),
        "the INVITE to the agent carries `Via: {via}`\n{}",
        agent.report
    );
    logs.cleanup();
    lab.server.shutdown().await;
}

/// The SIPp pair across transports: customer-uac.xml over UDP from the trunk port calls the SIPp
/// agent registered and answering over TCP; both scenarios complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_udp_customer_calls_sipp_tcp_agent() {
    if !tool_available("sipp", "-v") {
        return;
    }
    let lab = start(|_| {}).await;
    let logs = LogDir::new("tcp-call");
    let agent_port = free_tcp_port();
    register_over_tcp(&lab, &logs, "agent-register", "lab1001", agent_port)
        .await
        .assert_success();
    let agent = spawn_tcp_agent(&logs, &lab, agent_port, free_port_block(4));
    assert!(
        wait_tcp_listening(agent_port).await,
        "SIPp agent never listened"
    );
    let customer = spawn_customer_uac(&logs, &lab, "1001", free_port_block(4));

    let customer = customer.finish().await;
    let agent = agent.finish().await;
    customer.assert_success();
    agent.assert_success();
    // Media was anchored on both legs.
    assert_anchored(&lab, &[("customer", &customer), ("agent", &agent)]);
    logs.cleanup();
    lab.server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Raw TCP: framing and robustness

fn options(server: SocketAddr, local: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:bibridge@{server};transport=tcp SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK-tcp-{n}-{r:08x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=t{n}\r\n\
         To: <sip:bibridge@{server}>\r\n\
         Call-ID: tcp-{n}-{r:08x}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        r = rand::random::<u32>()
    )
}

/// A TCP connection to bibridge with a reader that frames responses by Content-Length.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    server: SocketAddr,
}

impl Conn {
    async fn open(server: SocketAddr) -> Conn {
        Conn {
            stream: TcpStream::connect(server).await.unwrap(),
            buf: Vec::new(),
            server,
        }
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    fn options(&self, n: u32) -> String {
        options(self.server, self.local(), n)
    }

    async fn write(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.unwrap();
    }

    /// Read more bytes; false on EOF, error or timeout.
    async fn fill(&mut self, timeout: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(timeout, self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// The next complete message, leading CRLFs dropped.
    async fn next_message(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let lead = self
                .buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.buf.drain(..lead);
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        let n = n.trim();
                        (n.eq_ignore_ascii_case("content-length") || n == "l")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .expect("bibridge sends Content-Length on TCP");
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return String::from_utf8(msg).unwrap();
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                self.fill(left).await,
                "no complete message from bibridge; have {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Send OPTIONS `n` and expect its 200 back on this connection.
    async fn ping_options(&mut self, n: u32) {
        let req = self.options(n);
        self.write(req.as_bytes()).await;
        let resp = self.next_message().await;
        assert_ok_to(&resp, n);
    }
}

fn assert_ok_to(resp: &str, n: u32) {
    assert!(
        resp.starts_with("SIP/2.0 200 "),
        "expected 200, got:\n{resp}"
    );
    assert!(
        resp.lines()
            .any(|l| l.starts_with("CSeq:") && l.contains(&format!(" {n} OPTIONS"))),
        "response to OPTIONS {n} expected, got:\n{resp}"
    );
}

/// Two requests in one write are two messages; each gets its answer, in order, on the same
/// connection, and the top Via of each answer carries `received`/`rport` of the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_in_one_write() {
    let lab = start(|_| {}).await;
    let mut c = Conn::open(tcp_server(&lab)).await;
    let both = format!("{}{}", c.options(1), c.options(2));
    c.write(both.as_bytes()).await;
    let first = c.next_message().await;
    let second = c.next_message().await;
    assert_ok_to(&first, 1);
    assert_ok_to(&second, 2);
    let via = first
        .lines()
        .find(|l| l.starts_with("Via:") || l.starts_with("v:"))
        .unwrap();
    assert!(via.contains("SIP/2.0/TCP"), "{via}");
    assert!(
        via.contains(&format!("rport={}", c.local().port())),
        "rport is the connection's port: {via}"
    );
    lab.server.shutdown().await;
}

/// A message split across writes (inside the header and inside the body) is reassembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_split_across_writes() {
    let lab = start(|_| {}).await;
    let mut c = Conn::open(tcp_server(&lab)).await;
    // Header split in the middle of a header line.
    let req = c.options(1);
    let (a, b) = req.split_at(req.len() / 2);
    c.write(a.as_bytes()).await;
    c.stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.write(b.as_bytes()).await;
    assert_ok_to(&c.next_message().await, 1);

    // Split between header and body, the body itself in two pieces.
    let body = "v=0\r\n";
    let req = c.options(2).replace(
        "Content-Length: 0\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
            body.len()
        ),
    );
    c.write(req.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.write(&body.as_bytes()[..2]).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.write(&body.as_bytes()[2..]).await;
    assert_ok_to(&c.next_message().await, 2);
    lab.server.shutdown().await;
}

/// A double-CRLF keep-alive ping is answered with a single CRLF pong (RFC 5626 §3.5.1), also
/// when it arrives in pieces, and the connection keeps serving requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_keepalive_gets_a_pong() {
    let lab = start(|_| {}).await;
    let mut c = Conn::open(tcp_server(&lab)).await;
    c.ping_options(1).await;
    assert!(c.buf.is_empty());

    c.write(b"\r\n\r\n").await;
    assert!(c.fill(Duration::from_secs(2)).await, "no pong to the ping");
    assert_eq!(c.buf, b"\r\n", "pong is one CRLF");
    c.buf.clear();

    c.write(b"\r\n").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c.write(b"\r\n").await;
    assert!(
        c.fill(Duration::from_secs(2)).await,
        "no pong to a split ping"
    );
    assert_eq!(c.buf, b"\r\n");
    c.buf.clear();

    c.ping_options(2).await;
    lab.server.shutdown().await;
}

/// Garbage without Content-Length cannot be framed: bibridge closes that connection, and keeps
/// serving another connection opened before and one opened after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_connection() {
    let lab = start(|_| {}).await;
    let server = tcp_server(&lab);
    let mut other = Conn::open(server).await;
    other.ping_options(1).await;

    let mut bad = Conn::open(server).await;
    bad.write(b"GET / HTTP/1.1\r\nHost: bibridge\r\n\r\n").await;
    // EOF (or a reset) within a few seconds, and no SIP answer before it.
    let mut chunk = [0u8; 1024];
    match tokio::time::timeout(Duration::from_secs(5), bad.stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "unexpected answer to garbage: {:?}",
            String::from_utf8_lossy(&chunk[..n])
        ),
        Err(_) => panic!("bibridge did not close the connection"),
    }

    other.ping_options(2).await;
    let mut after = Conn::open(server).await;
    after.ping_options(3).await;
    // UDP is unaffected too.
    let mut ua = bibridge_testkit::ua::TestUa::bind("probe", "", lab.sip)
        .await
        .unwrap();
    let r = ua
        .options(&format!("sip:bibridge@{}", lab.sip))
        .await
        .unwrap();
    assert_eq!(r.status_code.code(), 200);
    lab.server.shutdown().await;
}

/// A stopped server holds no SIP socket: its UDP and TCP ports (with a TCP connection still open
/// from a phone) can be bound again at once, as a restart in the same process needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_sip_ports() {
    let lab = start(|_| {}).await;
    let udp = lab.server.udp_addr().unwrap();
    let tcp = lab.server.tcp_addr().unwrap();
    let mut phone = tokio::net::TcpStream::connect(tcp).await.unwrap();
    // The connection is accepted and served before the shutdown.
    use tokio::io::AsyncWriteExt;
    phone.write_all(b"\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    lab.server.shutdown().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let (u, t) = (
            std::net::UdpSocket::bind(udp).is_ok(),
            std::net::TcpListener::bind(tcp).is_ok(),
        );
        if u && t {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after shutdown: UDP {udp} free {u}, TCP {tcp} free {t}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(phone);
}
