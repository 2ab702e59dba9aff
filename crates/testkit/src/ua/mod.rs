//! A scripted SIP user agent over UDP for end-to-end tests.
//!
//! [`TestUa`] is a test phone: every step (register, invite, answer, re-INVITE, BYE...) is an
//! explicit async call made by the test, so a test reads like a call-flow diagram. It speaks real
//! RFC 3261 over UDP (retransmissions with T1/T2 timers, ACK rules for 2xx and non-2xx, CANCEL,
//! route sets, digest authentication) and can also act as a raw or misbehaving client through
//! [`TestUa::send_raw`] / [`TestUa::recv_raw`].
//!
//! # Message queue
//! A background task owns the receive side of the socket. It answers retransmissions by itself,
//! the way a phone's transaction layer would: a request we already answered gets the same answer
//! again, a repeated final response to a finished INVITE gets the same ACK again, duplicates of
//! requests not yet answered are dropped. Everything else is queued; each `wait_*` picks the first
//! queued message it is interested in and leaves the others, so nothing that arrives while the
//! test waits for something else is lost.
//!
//! # Layout
//! - `mod.rs`: [`TestUa`] itself: binding, settings, rendering and sending messages.
//! - `absorb`: the receive task and the retransmission absorber it shares state with.
//! - `client`: client transactions (REGISTER, OPTIONS, INVITE, CANCEL, BYE, in-dialog requests).
//! - `server`: server transactions (incoming INVITEs and requests, responses, ACK waits).
//! - `dialog`: [`CallHandle`], [`IncomingCall`] and the per-dialog state the UA keeps.
//! - `digest`, `msg`, `sdp`: digest answers, header helpers, SDP offers and queries.

mod absorb;
mod client;
mod dialog;
mod digest;
mod msg;
mod sdp;
mod server;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use absorb::{recv_loop, Absorber, Datagram, TxKey};
pub use dialog::{CallHandle, IncomingCall};
use dialog::{DialogKey, DialogState, UasInvite};
pub use digest::{authorize, AlgorithmPref, DigestError};
pub use msg::{
    body_text, header_list, header_param, header_value, header_values, split_list, strip_tag,
    tag_of, uri_host_port, uri_of,
};
pub use sdp::{sdp_connection, sdp_direction, sdp_offer, sdp_offer_v, sdp_payload_types};

/// A SIP response as parsed by rsip.
pub type Response = rsip::Response;

/// RFC 3261 T1: RTT estimate, first retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: cap of the retransmission interval for non-INVITE requests and 2xx responses.
const T2: Duration = Duration::from_secs(4);
/// Value of the User-Agent / Server headers.
const USER_AGENT: &str = "bibridge-testkit";
/// Methods this phone understands, advertised in Allow.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// Errors of the test UA.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// Nothing matching arrived in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A challenge could not be answered.
    #[error("cannot answer digest challenge: {0}")]
    Auth(#[from] DigestError),
    /// A message lacks something the UA needs (Call-ID, CSeq, Via branch...).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The call is not in a state where this operation makes sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A URI's host could not be turned into a socket address.
    #[error("cannot resolve {0}")]
    Resolve(String),
}

fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh RFC 3261 branch (magic cookie `z9hG4bK` plus randomness).
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// A fresh From/To tag.
pub fn new_tag() -> String {
    random_token(10)
}

/// An outgoing request, kept as fields so a challenge or a CANCEL/ACK can reuse them.
#[derive(Debug, Clone)]
struct OutRequest {
    method: String,
    ruri: String,
    branch: String,
    /// Full From value including the tag.
    from: String,
    /// Full To value (with a tag in-dialog).
    to: String,
    call_id: String,
    cseq: u32,
    routes: Vec<String>,
    contact: bool,
    headers: Vec<(String, String)>,
    /// `(content type, body)`.
    body: Option<(String, String)>,
}

/// The scripted test phone. See the module docs.
pub struct TestUa {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    server: SocketAddr,
    user: String,
    password: String,
    rx: mpsc::UnboundedReceiver<Datagram>,
    recv_task: JoinHandle<()>,
    shared: Absorber,
    pending: VecDeque<Datagram>,
    uas_invites: HashMap<String, UasInvite>,
    dialogs: HashMap<DialogKey, DialogState>,
    reg_call_id: String,
    reg_cseq: u32,
    reinvite_sdp: Option<String>,
    auto_reply: bool,
    request_timeout: Duration,
    outbound_proxy: Option<SocketAddr>,
}

impl Drop for TestUa {
    fn drop(&mut self) {
        self.recv_task.abort();
    }
}

impl TestUa {
    /// Binds an ephemeral UDP port on the loopback address of `server`'s family.
    ///
    /// `user` is the extension (`"1001"`), `server` the registrar / proxy all out-of-dialog
    /// requests go to.
    pub async fn bind(user: &str, password: &str, server: SocketAddr) -> io::Result<TestUa> {
        let ip: IpAddr = if server.is_ipv6() {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        Self::bind_on(SocketAddr::new(ip, 0), user, password, server).await
    }

    /// Binds a specific address (a trunk peer on a fixed port, for instance).
    pub async fn bind_on(
        addr: SocketAddr,
        user: &str,
        password: &str,
        server: SocketAddr,
    ) -> io::Result<TestUa> {
        let socket = Arc::new(UdpSocket::bind(addr).await?);
        let local = socket.local_addr()?;
        let shared = Absorber::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let recv_task = tokio::spawn(recv_loop(socket.clone(), shared.clone(), tx));
        Ok(TestUa {
            socket,
            local,
            server,
            user: user.to_string(),
            password: password.to_string(),
            rx,
            recv_task,
            shared,
            pending: VecDeque::new(),
            uas_invites: HashMap::new(),
            dialogs: HashMap::new(),
            // RFC 3261 §10.2: one Call-ID for all registrations of this UA.
            reg_call_id: format!("{}@{}", random_token(20), local.ip()),
            reg_cseq: 0,
            reinvite_sdp: None,
            auto_reply: true,
            request_timeout: Duration::from_secs(8),
            outbound_proxy: None,
        })
    }

    /// Our socket address (Via sent-by and Contact host).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server address given at bind time.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// How many retransmissions the UA has absorbed so far (re-answered requests, re-ACKed final
    /// responses, dropped duplicates): lets a test check that a peer retransmits.
    pub fn absorbed_retransmissions(&self) -> u64 {
        self.shared.absorbed()
    }

    /// Our user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Our Contact value, `<sip:user@ip:port>`.
    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.local)
    }

    /// The SDP answered to re-INVITEs by [`TestUa::wait_request`]; `None` repeats our last SDP of
    /// that dialog (an unchanged answer, RFC 3264 §8).
    pub fn set_auto_answer_reinvite(&mut self, sdp: Option<String>) {
        self.reinvite_sdp = sdp;
    }

    /// Whether [`TestUa::wait_request`] answers requests itself (default true). With false the test
    /// answers with [`TestUa::reply`].
    pub fn set_auto_reply(&mut self, on: bool) {
        self.auto_reply = on;
    }

    /// How long a non-INVITE transaction (and answer's ACK wait) may take; default 8 s.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.request_timeout = timeout;
    }

    /// Send every request to this address instead of following Contact / Route (like a phone
    /// with an outbound proxy). `None` (default) follows RFC 3261 routing.
    pub fn set_outbound_proxy(&mut self, proxy: Option<SocketAddr>) {
        self.outbound_proxy = proxy;
    }

    /// `<sip:user@server-ip>`: our address-of-record, used in From and in REGISTER's To.
    fn local_party(&self) -> String {
        format!("<sip:{}@{}>", self.user, host_of(self.server))
    }

    // ---------------------------------------------------------------- wire helpers

    /// Sends bytes as they are, from our socket.
    pub async fn send_raw(&self, data: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(data, to).await.map(|_| ())
    }

    /// The next queued datagram, parsed or not, exactly as received.
    ///
    /// Retransmissions the UA absorbed on its own never show up here.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        if let Some(dg) = self.pending.pop_front() {
            return Some((dg.raw, dg.src));
        }
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(dg)) => Some((dg.raw, dg.src)),
            _ => None,
        }
    }

    /// The next queued message that parses as SIP (unparsable datagrams stay queued).
    pub async fn recv_message(
        &mut self,
        timeout: Duration,
    ) -> Option<(rsip::SipMessage, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        let dg = self.next_matching(deadline, |d| d.msg.is_some()).await?;
        dg.msg.map(|m| (m, dg.src))
    }

    /// First queued datagram matching `pred`, else the first one to arrive before `until`.
    async fn next_matching(
        &mut self,
        until: Instant,
        pred: impl Fn(&Datagram) -> bool,
    ) -> Option<Datagram> {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i);
        }
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(dg)) if pred(&dg) => return Some(dg),
                Ok(Some(dg)) => self.pending.push_back(dg),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn send_to(&self, bytes: &[u8], dest: SocketAddr) -> Result<(), UaError> {
        self.socket.send_to(bytes, dest).await?;
        Ok(())
    }

    fn render(&self, r: &OutRequest) -> Vec<u8> {
        let mut s = format!("{} {} SIP/2.0\r\n", r.method, r.ruri);
        s.push_str(&format!(
            "Via: SIP/2.0/UDP {};branch={};rport\r\n",
            self.local, r.branch
        ));
        s.push_str("Max-Forwards: 70\r\n");
        for route in &r.routes {
            s.push_str(&format!("Route: {route}\r\n"));
        }
        s.push_str(&format!("From: {}\r\n", r.from));
        s.push_str(&format!("To: {}\r\n", r.to));
        s.push_str(&format!("Call-ID: {}\r\n", r.call_id));
        s.push_str(&format!("CSeq: {} {}\r\n", r.cseq, r.method));
        if r.contact {
            s.push_str(&format!("Contact: {}\r\n", self.contact()));
        }
        s.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
        for (name, value) in &r.headers {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        finish_body(
            &mut s,
            r.body.as_ref().map(|(t, b)| (t.as_str(), b.as_str())),
        );
        s.into_bytes()
    }

    #[allow(clippy::too_many_arguments)]
    fn render_response(
        &self,
        req: &rsip::Request,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        contact: bool,
        extra: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let h = &req.headers;
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        // RFC 3261 §8.2.6.2: Via (all, in order), From, Call-ID and CSeq are copied.
        for via in header_values(h, "Via") {
            s.push_str(&format!("Via: {via}\r\n"));
        }
        if let Some(from) = header_value(h, "From") {
            s.push_str(&format!("From: {from}\r\n"));
        }
        if let Some(to) = header_value(h, "To") {
            match to_tag {
                Some(tag) if code > 100 && tag_of(&to).is_none() => {
                    s.push_str(&format!("To: {to};tag={tag}\r\n"))
                }
                _ => s.push_str(&format!("To: {to}\r\n")),
            }
        }
        if let Some(cid) = header_value(h, "Call-ID") {
            s.push_str(&format!("Call-ID: {cid}\r\n"));
        }
        if let Some(cseq) = header_value(h, "CSeq") {
            s.push_str(&format!("CSeq: {cseq}\r\n"));
        }
        // §12.1.1: the UAS copies Record-Route into dialog-creating responses.
        if req.method == rsip::Method::Invite && (101..300).contains(&code) {
            for rr in header_values(h, "Record-Route") {
                s.push_str(&format!("Record-Route: {rr}\r\n"));
            }
        }
        if contact {
            s.push_str(&format!("Contact: {}\r\n", self.contact()));
        }
        if (200..300).contains(&code)
            && matches!(req.method, rsip::Method::Invite | rsip::Method::Options)
        {
            s.push_str(&format!("Allow: {ALLOW}\r\n"));
        }
        s.push_str(&format!("Server: {USER_AGENT}\r\n"));
        for (name, value) in extra {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        finish_body(&mut s, body);
        s.into_bytes()
    }

    /// Sends a response and remembers it so the receive task re-sends it on retransmission.
    async fn send_response(
        &self,
        key: &TxKey,
        bytes: Vec<u8>,
        fallback_dest: SocketAddr,
    ) -> Result<(), UaError> {
        let dest = self
            .shared
            .record_response(key, bytes.clone(), fallback_dest);
        self.send_to(&bytes, dest).await
    }

    /// Marks a client transaction finished and drops queued duplicates of its responses.
    fn complete_client(&mut self, key: TxKey, ack: Option<(Vec<u8>, SocketAddr)>) {
        self.pending
            .retain(|d| d.response_key().as_ref() != Some(&key));
        self.shared.complete_client(key, ack);
    }

    async fn resolve(&self, uri: &str) -> Result<SocketAddr, UaError> {
        if let Some(p) = self.outbound_proxy {
            return Ok(p);
        }
        let (host, port) =
            msg::uri_host_port(uri).ok_or_else(|| UaError::Resolve(uri.to_string()))?;
        let port = port.unwrap_or(5060);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let mut addrs = tokio::net::lookup_host(format!("{host}:{port}")).await?;
        addrs
            .next()
            .ok_or_else(|| UaError::Resolve(uri.to_string()))
    }
}

/// Appends Content-Type (when there is a body), Content-Length and the body.
fn finish_body(s: &mut String, body: Option<(&str, &str)>) {
    match body {
        Some((ctype, b)) => {
            s.push_str(&format!("Content-Type: {ctype}\r\n"));
            s.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            s.push_str(b);
        }
        None => s.push_str("Content-Length: 0\r\n\r\n"),
    }
}

/// The host part for a URI: the IP, bracketed for IPv6.
fn host_of(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

fn uri_has_lr(uri: &str) -> bool {
    uri.split(';').skip(1).any(|p| {
        let name = p.split('=').next().unwrap_or("").trim();
        name.eq_ignore_ascii_case("lr")
    })
}

#[cfg(test)]
mod tests;
