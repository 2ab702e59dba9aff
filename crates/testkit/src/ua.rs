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

mod digest;
mod msg;
mod sdp;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

/// One received datagram; `msg` is `None` when rsip could not parse it.
struct Datagram {
    raw: Vec<u8>,
    src: SocketAddr,
    msg: Option<rsip::SipMessage>,
}

impl Datagram {
    fn request(&self) -> Option<&rsip::Request> {
        match &self.msg {
            Some(rsip::SipMessage::Request(r)) => Some(r),
            _ => None,
        }
    }

    fn response(&self) -> Option<&rsip::Response> {
        match &self.msg {
            Some(rsip::SipMessage::Response(r)) => Some(r),
            _ => None,
        }
    }

    fn response_key(&self) -> Option<TxKey> {
        self.response().and_then(response_key)
    }
}

/// Transaction identity: top Via branch plus method (RFC 3261 §17.1.3 / §17.2.3; CANCEL and the
/// ACK of a non-2xx share the INVITE's branch but are separate transactions here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TxKey {
    branch: String,
    method: String,
}

fn request_key(req: &rsip::Request) -> TxKey {
    let method = req.method.to_string();
    // A pre-RFC 3261 peer (or a raw test client) may omit the branch: fall back to Call-ID + CSeq.
    let branch = msg::top_via_branch(&req.headers).unwrap_or_else(|| {
        let cid = msg::call_id(&req.headers).unwrap_or_default();
        let num = msg::cseq(&req.headers).map(|c| c.0).unwrap_or_default();
        format!("{cid}|{num}")
    });
    TxKey { branch, method }
}

fn response_key(resp: &rsip::Response) -> Option<TxKey> {
    Some(TxKey {
        branch: msg::top_via_branch(&resp.headers)?,
        method: msg::cseq(&resp.headers)?.1,
    })
}

fn status(resp: &rsip::Response) -> u16 {
    resp.status_code.code()
}

/// A server transaction: where the request came from and the last response we sent to it.
struct ServerTx {
    source: SocketAddr,
    last_response: Option<Vec<u8>>,
}

/// State shared with the receive task so it can absorb retransmissions on its own.
#[derive(Default)]
struct Shared {
    server_tx: HashMap<TxKey, ServerTx>,
    /// Client transactions whose final response the test has consumed, with the ACK to repeat if
    /// that final response is retransmitted (INVITE only).
    client_done: HashMap<TxKey, Option<(Vec<u8>, SocketAddr)>>,
    /// Retransmissions (of requests or final responses) handled without queueing them.
    absorbed: u64,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain maps behind, still usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the receive task does with a datagram.
enum Absorb {
    Queue,
    Drop,
    Resend(Vec<u8>, SocketAddr),
}

fn absorb(shared: &Mutex<Shared>, msg: &rsip::SipMessage, src: SocketAddr) -> Absorb {
    let mut sh = lock(shared);
    let verdict = classify(&mut sh, msg, src);
    if !matches!(verdict, Absorb::Queue) {
        sh.absorbed += 1;
    }
    verdict
}

fn classify(sh: &mut Shared, msg: &rsip::SipMessage, src: SocketAddr) -> Absorb {
    match msg {
        rsip::SipMessage::Request(req) => {
            let key = request_key(req);
            match sh.server_tx.get(&key) {
                Some(tx) => match &tx.last_response {
                    Some(resp) => Absorb::Resend(resp.clone(), tx.source),
                    None => Absorb::Drop,
                },
                None => {
                    sh.server_tx.insert(
                        key,
                        ServerTx {
                            source: src,
                            last_response: None,
                        },
                    );
                    Absorb::Queue
                }
            }
        }
        rsip::SipMessage::Response(resp) => {
            let Some(key) = response_key(resp) else {
                return Absorb::Queue;
            };
            match sh.client_done.get(&key) {
                Some(Some((ack, to))) if status(resp) >= 200 => Absorb::Resend(ack.clone(), *to),
                Some(_) => Absorb::Drop,
                None => Absorb::Queue,
            }
        }
    }
}

async fn recv_loop(
    socket: Arc<UdpSocket>,
    shared: Arc<Mutex<Shared>>,
    tx: mpsc::UnboundedSender<Datagram>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface on some platforms as recv errors; they are not fatal for UDP.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let raw = buf.get(..n).unwrap_or_default().to_vec();
        let msg = rsip::SipMessage::try_from(raw.as_slice()).ok();
        if let Some(m) = &msg {
            match absorb(&shared, m, src) {
                Absorb::Queue => {}
                Absorb::Drop => continue,
                Absorb::Resend(bytes, to) => {
                    // Best effort, like any UDP retransmission.
                    let _ = socket.send_to(&bytes, to).await;
                    continue;
                }
            }
        }
        if tx.send(Datagram { raw, src, msg }).is_err() {
            break;
        }
    }
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

/// The client INVITE transaction in progress on a call.
#[derive(Debug, Clone)]
struct InviteTx {
    req: OutRequest,
    bytes: Vec<u8>,
    dest: SocketAddr,
    /// Initial INVITE (route set is learnt from its 2xx) versus re-INVITE.
    initial: bool,
    /// Sent without SDP: the 2xx carries the offer and our ACK the answer.
    offerless: bool,
    got_response: bool,
    interval: Duration,
    next_retx: Instant,
    auth_tried: bool,
}

/// A call (dialog, or a dialog being set up) as seen by the test.
#[derive(Debug, Clone)]
pub struct CallHandle {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (From tag as caller, To tag as callee).
    pub local_tag: String,
    /// The peer's tag, once a response (or the INVITE, as callee) carried one.
    pub remote_tag: Option<String>,
    /// Our party (name-addr without tag) as used in From of our in-dialog requests.
    pub local_uri: String,
    /// The peer's party (name-addr without tag) as used in To of our in-dialog requests.
    pub remote_uri: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: String,
    /// Route set (Record-Route entries in the order used for Route headers).
    pub route_set: Vec<String>,
    /// CSeq of our last request in this dialog.
    pub local_cseq: u32,
    /// CSeq of the peer's INVITE (callee side).
    pub remote_cseq: Option<u32>,
    /// Our current SDP.
    pub local_sdp: Option<String>,
    /// The peer's last SDP (from a 1xx/2xx, or the INVITE as callee).
    pub remote_sdp: Option<String>,
    /// Status codes of the provisional responses received for the last INVITE, 100 included.
    pub provisionals: Vec<u16>,
    /// Status of the last INVITE's final response.
    pub final_status: Option<u16>,
    /// True when we answered this call.
    pub is_uas: bool,
    invite: Option<InviteTx>,
    auth: bool,
}

impl CallHandle {
    fn dialog_key(&self) -> DialogKey {
        DialogKey {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
        }
    }

    fn our_from(&self) -> String {
        format!("{};tag={}", self.local_uri, self.local_tag)
    }

    fn our_to(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("{};tag={t}", self.remote_uri),
            None => self.remote_uri.clone(),
        }
    }
}

/// An INVITE received by [`TestUa::wait_invite`].
#[derive(Debug, Clone)]
pub struct IncomingCall {
    /// The INVITE as received.
    pub request: rsip::Request,
    /// Where it came from (responses go there).
    pub source: SocketAddr,
    /// Its SDP body, if any.
    pub sdp: Option<String>,
    /// Its Call-ID.
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: Option<String>,
    /// The To tag we put on every response to this INVITE (stable, so all responses agree).
    pub to_tag: String,
    key: TxKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DialogKey {
    call_id: String,
    local_tag: String,
}

/// What the UA itself remembers about a dialog (the test holds the [`CallHandle`]).
#[derive(Debug, Clone, Default)]
struct DialogState {
    local_cseq: u32,
    local_sdp: Option<String>,
    established: bool,
    terminated: bool,
}

/// An INVITE we received, kept for CANCEL handling.
#[derive(Debug, Clone)]
struct UasInvite {
    request: rsip::Request,
    source: SocketAddr,
    to_tag: String,
    final_sent: bool,
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
    shared: Arc<Mutex<Shared>>,
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
        let shared = Arc::new(Mutex::new(Shared::default()));
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
        lock(&self.shared).absorbed
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
        let dest = {
            let mut sh = lock(&self.shared);
            let tx = sh.server_tx.entry(key.clone()).or_insert(ServerTx {
                source: fallback_dest,
                last_response: None,
            });
            tx.last_response = Some(bytes.clone());
            tx.source
        };
        self.send_to(&bytes, dest).await
    }

    /// Marks a client transaction finished and drops queued duplicates of its responses.
    fn complete_client(&mut self, key: TxKey, ack: Option<(Vec<u8>, SocketAddr)>) {
        self.pending
            .retain(|d| d.response_key().as_ref() != Some(&key));
        lock(&self.shared).client_done.insert(key, ack);
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

    /// Request-URI, Route headers and next hop for an in-dialog request (RFC 3261 §12.2.1.1).
    async fn dialog_target(
        &self,
        call: &CallHandle,
    ) -> Result<(String, Vec<String>, SocketAddr), UaError> {
        let Some(first) = call.route_set.first() else {
            let dest = self.resolve(&call.remote_target).await?;
            return Ok((call.remote_target.clone(), Vec::new(), dest));
        };
        let first_uri = uri_of(first);
        if uri_has_lr(&first_uri) {
            let dest = self.resolve(&first_uri).await?;
            Ok((call.remote_target.clone(), call.route_set.clone(), dest))
        } else {
            // Strict router: it becomes the Request-URI, the remote target goes last in Route.
            let mut routes: Vec<String> = call.route_set.iter().skip(1).cloned().collect();
            routes.push(format!("<{}>", call.remote_target));
            let dest = self.resolve(&first_uri).await?;
            Ok((first_uri, routes, dest))
        }
    }

    fn next_cseq(&mut self, call: &CallHandle) -> u32 {
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(call.local_cseq) + 1;
        st.local_cseq
    }

    // ---------------------------------------------------------------- client transactions

    /// Runs one non-INVITE client transaction (Timer E retransmissions, §17.1.2) to its final
    /// response.
    async fn non_invite_tx(
        &mut self,
        bytes: &[u8],
        dest: SocketAddr,
        key: TxKey,
    ) -> Result<Response, UaError> {
        self.send_to(bytes, dest).await?;
        let deadline = Instant::now() + self.request_timeout;
        let mut interval = T1;
        let mut next = Instant::now() + interval;
        loop {
            let k = key.clone();
            let got = self
                .next_matching(next.min(deadline), move |d| {
                    d.response_key().as_ref() == Some(&k)
                })
                .await;
            match got.as_ref().and_then(Datagram::response) {
                Some(resp) if status(resp) < 200 => interval = T2,
                Some(resp) => {
                    let resp = resp.clone();
                    self.complete_client(key, None);
                    return Ok(resp);
                }
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(UaError::Timeout(format!("response to {}", key.method)));
                    }
                    if now >= next {
                        self.send_to(bytes, dest).await?;
                        interval = (interval * 2).min(T2);
                        next = now + interval;
                    }
                }
            }
        }
    }

    /// Sends a non-INVITE request; with `auth`, answers up to two 401/407 challenges (the second
    /// for a `stale=true` re-challenge). Returns the final response and the request as last sent.
    async fn send_non_invite(
        &mut self,
        mut req: OutRequest,
        dest: SocketAddr,
        auth: bool,
        pref: Option<AlgorithmPref>,
    ) -> Result<(Response, OutRequest), UaError> {
        let mut attempts = 0;
        loop {
            let bytes = self.render(&req);
            let key = TxKey {
                branch: req.branch.clone(),
                method: req.method.clone(),
            };
            let resp = self.non_invite_tx(&bytes, dest, key).await?;
            let code = status(&resp);
            if auth && (code == 401 || code == 407) && attempts < 2 {
                self.add_credentials(&mut req, &resp, pref)?;
                attempts += 1;
                continue;
            }
            return Ok((resp, req));
        }
    }

    /// Turns `req` into its authenticated retry: credentials for the challenge in `resp`, CSeq+1,
    /// fresh branch (§22.2).
    fn add_credentials(
        &self,
        req: &mut OutRequest,
        resp: &Response,
        pref: Option<AlgorithmPref>,
    ) -> Result<(), UaError> {
        let (challenge_hdr, auth_hdr) = if status(resp) == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenges = header_values(&resp.headers, challenge_hdr);
        let value = authorize(
            &challenges,
            pref,
            &self.user,
            &self.password,
            &req.method,
            &req.ruri,
            &random_token(16),
            1,
        )?;
        req.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(auth_hdr));
        req.headers.push((auth_hdr.to_string(), value));
        req.cseq += 1;
        req.branch = new_branch();
        Ok(())
    }

    /// REGISTERs our Contact for `expires` seconds (0 unregisters), answering a digest challenge
    /// with the preferred algorithm. Returns the final response (a 401/407 if auth failed).
    pub async fn register(
        &mut self,
        expires: u32,
        alg: Option<AlgorithmPref>,
    ) -> Result<Response, UaError> {
        self.reg_cseq += 1;
        let party = self.local_party();
        let req = OutRequest {
            method: "REGISTER".into(),
            ruri: format!("sip:{}", self.server),
            branch: new_branch(),
            from: format!("{party};tag={}", new_tag()),
            to: party,
            call_id: self.reg_call_id.clone(),
            cseq: self.reg_cseq,
            routes: Vec::new(),
            contact: true,
            headers: vec![("Expires".into(), expires.to_string())],
            body: None,
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        let (resp, sent) = self.send_non_invite(req, dest, true, alg).await?;
        self.reg_cseq = sent.cseq;
        Ok(resp)
    }

    /// Sends an out-of-dialog OPTIONS to `uri` via the server.
    pub async fn options(&mut self, uri: &str) -> Result<Response, UaError> {
        let req = OutRequest {
            method: "OPTIONS".into(),
            ruri: uri.to_string(),
            branch: new_branch(),
            from: format!("{};tag={}", self.local_party(), new_tag()),
            to: format!("<{uri}>"),
            call_id: format!("{}@{}", random_token(20), self.local.ip()),
            cseq: 1,
            routes: Vec::new(),
            contact: true,
            headers: vec![("Accept".into(), "application/sdp".into())],
            body: None,
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        Ok(self.send_non_invite(req, dest, false, None).await?.0)
    }

    /// Sends an INVITE for `to_user` at the server with `sdp` as offer. Does not wait for the
    /// final response (see [`TestUa::wait_final`]).
    ///
    /// With `auth`, waits for the first response: a 401/407 is ACKed and the INVITE re-sent with
    /// credentials; any other response stays queued for `wait_final` (which also answers a
    /// challenge that comes after a 100 Trying).
    pub async fn invite(
        &mut self,
        to_user: &str,
        sdp: &str,
        auth: bool,
    ) -> Result<CallHandle, UaError> {
        self.invite_with(to_user, sdp, auth, &[]).await
    }

    /// [`TestUa::invite`] with extra headers (e.g. `Join`, RFC 3911).
    pub async fn invite_with(
        &mut self,
        to_user: &str,
        sdp: &str,
        auth: bool,
        extra_headers: &[(&str, &str)],
    ) -> Result<CallHandle, UaError> {
        let local_uri = self.local_party();
        let remote_uri = format!("<sip:{to_user}@{}>", host_of(self.server));
        let local_tag = new_tag();
        let req = OutRequest {
            method: "INVITE".into(),
            ruri: format!("sip:{to_user}@{}", self.server),
            branch: new_branch(),
            from: format!("{local_uri};tag={local_tag}"),
            to: remote_uri.clone(),
            call_id: format!("{}@{}", random_token(20), self.local.ip()),
            cseq: 1,
            routes: Vec::new(),
            contact: true,
            headers: std::iter::once(("Allow".to_string(), ALLOW.to_string()))
                .chain(
                    extra_headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                )
                .collect(),
            body: Some(("application/sdp".into(), sdp.to_string())),
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        let mut call = CallHandle {
            call_id: req.call_id.clone(),
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: req.ruri.clone(),
            route_set: Vec::new(),
            local_cseq: req.cseq,
            remote_cseq: None,
            local_sdp: Some(sdp.to_string()),
            remote_sdp: None,
            provisionals: Vec::new(),
            final_status: None,
            is_uas: false,
            invite: None,
            auth,
        };
        self.dialogs.insert(
            call.dialog_key(),
            DialogState {
                local_cseq: req.cseq,
                local_sdp: Some(sdp.to_string()),
                ..DialogState::default()
            },
        );
        self.start_invite(&mut call, req, dest, true).await?;
        if auth {
            let deadline = Instant::now() + self.request_timeout;
            let dg = self.next_invite_response(&mut call, deadline).await?;
            match dg.response() {
                Some(r) if matches!(status(r), 401 | 407) => {
                    let r = r.clone();
                    self.answer_challenge(&mut call, &r).await?;
                }
                _ => self.pending.push_front(dg),
            }
        }
        Ok(call)
    }

    async fn start_invite(
        &mut self,
        call: &mut CallHandle,
        req: OutRequest,
        dest: SocketAddr,
        initial: bool,
    ) -> Result<(), UaError> {
        let bytes = self.render(&req);
        self.send_to(&bytes, dest).await?;
        call.provisionals.clear();
        call.final_status = None;
        call.invite = Some(InviteTx {
            offerless: req.body.is_none(),
            req,
            bytes,
            dest,
            initial,
            got_response: false,
            interval: T1,
            next_retx: Instant::now() + T1,
            auth_tried: false,
        });
        Ok(())
    }

    /// The next response to the call's INVITE, retransmitting it (Timer A) until one arrives.
    async fn next_invite_response(
        &mut self,
        call: &mut CallHandle,
        deadline: Instant,
    ) -> Result<Datagram, UaError> {
        loop {
            let inv = call
                .invite
                .as_ref()
                .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
            let key = TxKey {
                branch: inv.req.branch.clone(),
                method: "INVITE".into(),
            };
            let until = if inv.got_response {
                deadline
            } else {
                inv.next_retx.min(deadline)
            };
            let got = self
                .next_matching(until, move |d| d.response_key().as_ref() == Some(&key))
                .await;
            let inv = call
                .invite
                .as_mut()
                .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
            if let Some(dg) = got {
                inv.got_response = true;
                return Ok(dg);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UaError::Timeout("response to INVITE".into()));
            }
            if !inv.got_response && now >= inv.next_retx {
                self.socket.send_to(&inv.bytes, inv.dest).await?;
                inv.interval *= 2;
                inv.next_retx = now + inv.interval;
            }
        }
    }

    /// ACKs a non-2xx final response to the call's INVITE (§17.1.1.3: same branch, To of the
    /// response) and closes the transaction.
    async fn ack_non_2xx(&mut self, call: &CallHandle, resp: &Response) -> Result<(), UaError> {
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        let ack = OutRequest {
            method: "ACK".into(),
            to: header_value(&resp.headers, "To").unwrap_or_else(|| inv.req.to.clone()),
            contact: false,
            headers: Vec::new(),
            body: None,
            ..inv.req.clone()
        };
        let bytes = self.render(&ack);
        let dest = inv.dest;
        let key = TxKey {
            branch: inv.req.branch.clone(),
            method: "INVITE".into(),
        };
        self.send_to(&bytes, dest).await?;
        self.complete_client(key, Some((bytes, dest)));
        Ok(())
    }

    async fn answer_challenge(
        &mut self,
        call: &mut CallHandle,
        resp: &Response,
    ) -> Result<(), UaError> {
        self.ack_non_2xx(call, resp).await?;
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        let mut req = inv.req.clone();
        let (dest, initial) = (inv.dest, inv.initial);
        self.add_credentials(&mut req, resp, None)?;
        call.local_cseq = req.cseq;
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(req.cseq);
        self.start_invite(call, req, dest, initial).await?;
        if let Some(inv) = call.invite.as_mut() {
            inv.auth_tried = true;
        }
        Ok(())
    }

    /// Waits for the final response to the call's (re-)INVITE.
    ///
    /// Provisional responses are recorded in `call.provisionals` (and a tagged one sets up the
    /// early dialog). A 2xx is ACKed to its Contact through the route set; a non-2xx is ACKed on
    /// the INVITE's branch. With `auth`, one 401/407 is answered and the wait goes on.
    pub async fn wait_final(
        &mut self,
        call: &mut CallHandle,
        timeout: Duration,
    ) -> Result<Response, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let dg = self.next_invite_response(call, deadline).await?;
            let Some(resp) = dg.response().cloned() else {
                continue;
            };
            let code = status(&resp);
            let initial = call.invite.as_ref().is_some_and(|i| i.initial);
            if code < 200 {
                call.provisionals.push(code);
                if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
                    call.remote_tag = Some(tag);
                    if initial {
                        self.learn_target(call, &resp, true);
                    }
                }
                if let Some(sdp) = body_text(&resp.headers, &resp.body) {
                    call.remote_sdp = Some(sdp);
                }
                continue;
            }
            let auth_tried = call.invite.as_ref().is_some_and(|i| i.auth_tried);
            if matches!(code, 401 | 407) && call.auth && !auth_tried {
                self.answer_challenge(call, &resp).await?;
                continue;
            }
            call.final_status = Some(code);
            if code >= 300 {
                self.ack_non_2xx(call, &resp).await?;
                return Ok(resp);
            }
            self.on_invite_2xx(call, &resp, initial).await?;
            return Ok(resp);
        }
    }

    /// Takes remote target (Contact) and, for the initial INVITE, the route set (Record-Route
    /// reversed, §12.1.2) from a dialog-creating response.
    fn learn_target(&self, call: &mut CallHandle, resp: &Response, initial: bool) {
        if let Some(c) = header_list(&resp.headers, "Contact").first() {
            call.remote_target = uri_of(c);
        }
        if initial {
            let mut rr = header_list(&resp.headers, "Record-Route");
            rr.reverse();
            call.route_set = rr;
        }
    }

    async fn on_invite_2xx(
        &mut self,
        call: &mut CallHandle,
        resp: &Response,
        initial: bool,
    ) -> Result<(), UaError> {
        if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
            call.remote_tag = Some(tag);
        }
        self.learn_target(call, resp, initial);
        if let Some(sdp) = body_text(&resp.headers, &resp.body) {
            call.remote_sdp = Some(sdp);
        }
        let inv = call
            .invite
            .clone()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        // Offerless INVITE: the 2xx holds the offer, our ACK the answer (RFC 3261 §13.2.1).
        let body = if inv.offerless {
            call.local_sdp
                .clone()
                .map(|s| ("application/sdp".to_string(), s))
        } else {
            None
        };
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        let ack = OutRequest {
            method: "ACK".into(),
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq: inv.req.cseq,
            routes,
            contact: false,
            headers: Vec::new(),
            body,
        };
        let bytes = self.render(&ack);
        self.send_to(&bytes, dest).await?;
        let key = TxKey {
            branch: inv.req.branch.clone(),
            method: "INVITE".into(),
        };
        self.complete_client(key, Some((bytes, dest)));
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.established = true;
        st.local_sdp = call.local_sdp.clone();
        Ok(())
    }

    /// Waits for the next provisional response to the call's INVITE and records it. A final
    /// response is left queued for [`TestUa::wait_final`] and reported as a protocol error.
    pub async fn wait_provisional(
        &mut self,
        call: &mut CallHandle,
        timeout: Duration,
    ) -> Result<Response, UaError> {
        let deadline = Instant::now() + timeout;
        let dg = self.next_invite_response(call, deadline).await?;
        let resp = dg
            .response()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a response".into()))?;
        let code = status(&resp);
        if code >= 200 {
            self.pending.push_front(dg);
            return Err(UaError::Protocol(format!(
                "final response {code} instead of a provisional one"
            )));
        }
        call.provisionals.push(code);
        if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
            call.remote_tag = Some(tag);
            let initial = call.invite.as_ref().is_some_and(|i| i.initial);
            if initial {
                self.learn_target(call, &resp, true);
            }
        }
        if let Some(sdp) = body_text(&resp.headers, &resp.body) {
            call.remote_sdp = Some(sdp);
        }
        Ok(resp)
    }

    /// CANCELs the call's pending INVITE (§9.1: same Request-URI, Call-ID, From, To, CSeq number
    /// and branch) and returns the response to the CANCEL. The INVITE's 487 then arrives through
    /// [`TestUa::wait_final`]. RFC 3261 wants a provisional response first; that is the test's
    /// business, so that a test can also cancel too early on purpose.
    pub async fn cancel(&mut self, call: &CallHandle) -> Result<Response, UaError> {
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE to cancel".into()))?;
        let req = OutRequest {
            method: "CANCEL".into(),
            contact: false,
            headers: Vec::new(),
            body: None,
            ..inv.req.clone()
        };
        let dest = inv.dest;
        Ok(self.send_non_invite(req, dest, false, None).await?.0)
    }

    /// Sends a re-INVITE in the call's dialog (`sdp = None`: offerless, our last SDP goes in the
    /// ACK) and waits for its final response, ACKing it.
    pub async fn reinvite(
        &mut self,
        call: &mut CallHandle,
        sdp: Option<&str>,
    ) -> Result<Response, UaError> {
        if let Some(s) = sdp {
            call.local_sdp = Some(s.to_string());
        }
        let cseq = self.next_cseq(call);
        call.local_cseq = cseq;
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        let req = OutRequest {
            method: "INVITE".into(),
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq,
            routes,
            contact: true,
            headers: vec![("Allow".into(), ALLOW.into())],
            body: sdp.map(|s| ("application/sdp".to_string(), s.to_string())),
        };
        self.start_invite(call, req, dest, false).await?;
        let timeout = self.request_timeout;
        self.wait_final(call, timeout).await
    }

    /// Sends BYE in the call's dialog and returns its final response.
    pub async fn bye(&mut self, call: &CallHandle) -> Result<Response, UaError> {
        self.send_request_in_dialog(call, "BYE", &[], None).await
    }

    /// Sends a non-INVITE request (INFO, UPDATE, OPTIONS, BYE...) in the call's dialog with extra
    /// headers and an optional `(content type, body)`; returns its final response.
    pub async fn send_request_in_dialog(
        &mut self,
        call: &CallHandle,
        method: &str,
        extra_headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<Response, UaError> {
        let method = method.to_ascii_uppercase();
        let cseq = self.next_cseq(call);
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        if method == "BYE" {
            let st = self.dialogs.entry(call.dialog_key()).or_default();
            st.terminated = true;
        }
        let req = OutRequest {
            contact: method == "UPDATE",
            method,
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq,
            routes,
            headers: extra_headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.map(|(t, b)| (t.to_string(), b.to_string())),
        };
        let (resp, sent) = self.send_non_invite(req, dest, call.auth, None).await?;
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(sent.cseq);
        Ok(resp)
    }

    // ---------------------------------------------------------------- server side

    /// Waits for a new incoming INVITE (one without To tag).
    pub async fn wait_invite(&mut self, timeout: Duration) -> Result<IncomingCall, UaError> {
        let deadline = Instant::now() + timeout;
        let dg = self
            .next_matching(deadline, |d| {
                d.request().is_some_and(|r| {
                    r.method == rsip::Method::Invite
                        && header_value(&r.headers, "To")
                            .and_then(|t| tag_of(&t))
                            .is_none()
                })
            })
            .await
            .ok_or_else(|| UaError::Timeout("INVITE".into()))?;
        let request = dg
            .request()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a request".into()))?;
        Ok(self.register_incoming(request, dg.src))
    }

    fn register_incoming(&mut self, request: rsip::Request, source: SocketAddr) -> IncomingCall {
        let key = request_key(&request);
        let to_tag = new_tag();
        self.uas_invites.insert(
            key.branch.clone(),
            UasInvite {
                request: request.clone(),
                source,
                to_tag: to_tag.clone(),
                final_sent: false,
            },
        );
        IncomingCall {
            sdp: body_text(&request.headers, &request.body),
            call_id: msg::call_id(&request.headers).unwrap_or_default(),
            from_tag: header_value(&request.headers, "From").and_then(|f| tag_of(&f)),
            request,
            source,
            to_tag,
            key,
        }
    }

    /// Sends a response to an incoming INVITE: our stable To tag, Contact on 101–299, Record-Route
    /// copied. A 2xx is sent once; [`TestUa::wait_ack`] retransmits it until the ACK arrives.
    pub async fn respond(
        &mut self,
        inc: &IncomingCall,
        code: u16,
        reason: &str,
        sdp: Option<&str>,
    ) -> Result<(), UaError> {
        let body = sdp.map(|s| ("application/sdp", s));
        let contact = (101..300).contains(&code);
        let bytes = self.render_response(
            &inc.request,
            code,
            reason,
            Some(&inc.to_tag),
            contact,
            &[],
            body,
        );
        self.send_response(&inc.key, bytes, inc.source).await?;
        if code >= 200 {
            if let Some(u) = self.uas_invites.get_mut(&inc.key.branch) {
                u.final_sent = true;
            }
        }
        if (200..300).contains(&code) {
            let st = self
                .dialogs
                .entry(DialogKey {
                    call_id: inc.call_id.clone(),
                    local_tag: inc.to_tag.clone(),
                })
                .or_default();
            st.established = true;
            if let Some(s) = sdp {
                st.local_sdp = Some(s.to_string());
            }
        }
        Ok(())
    }

    /// Waits for the ACK of our final response to `inc`, retransmitting that response at T1,
    /// 2·T1... capped at T2 (§13.3.1.4 / §17.2.1) until it comes.
    pub async fn wait_ack(
        &mut self,
        inc: &IncomingCall,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let cseq = msg::cseq(&inc.request.headers)
            .ok_or_else(|| UaError::Malformed("INVITE without CSeq".into()))?
            .0;
        self.await_ack(&inc.key, &inc.call_id, cseq, timeout).await
    }

    async fn await_ack(
        &mut self,
        key: &TxKey,
        call_id: &str,
        cseq: u32,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let deadline = Instant::now() + timeout;
        let mut interval = T1;
        let mut next = Instant::now() + interval;
        loop {
            let cid = call_id.to_string();
            let got = self
                .next_matching(next.min(deadline), move |d| {
                    d.request().is_some_and(|r| {
                        r.method == rsip::Method::Ack
                            && msg::call_id(&r.headers).as_deref() == Some(cid.as_str())
                            && msg::cseq(&r.headers).map(|c| c.0) == Some(cseq)
                    })
                })
                .await;
            if let Some(req) = got.as_ref().and_then(Datagram::request) {
                return Ok(req.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UaError::Timeout(format!("ACK for {call_id} CSeq {cseq}")));
            }
            if now >= next {
                let last = {
                    let sh = lock(&self.shared);
                    sh.server_tx
                        .get(key)
                        .and_then(|t| t.last_response.clone().map(|r| (r, t.source)))
                };
                if let Some((bytes, to)) = last {
                    self.send_to(&bytes, to).await?;
                }
                interval = (interval * 2).min(T2);
                next = now + interval;
            }
        }
    }

    /// Rings (180) and answers (200 with `sdp`), waits for the ACK, and returns the dialog.
    pub async fn answer(&mut self, inc: &IncomingCall, sdp: &str) -> Result<CallHandle, UaError> {
        self.respond(inc, 180, "Ringing", None).await?;
        self.respond(inc, 200, "OK", Some(sdp)).await?;
        let timeout = self.request_timeout;
        let ack = self.wait_ack(inc, timeout).await?;
        let h = &inc.request.headers;
        let from = header_value(h, "From").unwrap_or_default();
        let to = header_value(h, "To").unwrap_or_default();
        let remote_target = header_list(h, "Contact")
            .first()
            .map(|c| uri_of(c))
            .unwrap_or_else(|| uri_of(&from));
        let local_cseq = self
            .dialogs
            .get(&DialogKey {
                call_id: inc.call_id.clone(),
                local_tag: inc.to_tag.clone(),
            })
            .map(|d| d.local_cseq)
            .unwrap_or_default();
        Ok(CallHandle {
            call_id: inc.call_id.clone(),
            local_tag: inc.to_tag.clone(),
            remote_tag: tag_of(&from),
            local_uri: strip_tag(&to),
            remote_uri: strip_tag(&from),
            remote_target,
            // §12.1.1: the callee keeps Record-Route in received order.
            route_set: header_list(h, "Record-Route"),
            local_cseq,
            remote_cseq: msg::cseq(h).map(|c| c.0),
            local_sdp: Some(sdp.to_string()),
            // An offerless INVITE gets its answer in the ACK.
            remote_sdp: inc
                .sdp
                .clone()
                .or_else(|| body_text(&ack.headers, &ack.body)),
            provisionals: Vec::new(),
            final_status: Some(200),
            is_uas: true,
            invite: None,
            auth: true,
        })
    }

    /// Waits for a request of `method` (`"INVITE"` means an in-dialog re-INVITE; new calls come
    /// through [`TestUa::wait_invite`]).
    ///
    /// With auto-reply on (default): BYE, INFO, UPDATE, OPTIONS get 200 (481 when in a dialog we
    /// do not know or have ended); CANCEL gets 200 and its INVITE 487 unless already answered
    /// (481 if no such INVITE); a re-INVITE gets 200 with the SDP set by
    /// [`TestUa::set_auto_answer_reinvite`] or our last SDP, and its ACK is awaited.
    pub async fn wait_request(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let want = method.to_ascii_uppercase();
        let deadline = Instant::now() + timeout;
        let m = want.clone();
        let dg = self
            .next_matching(deadline, move |d| {
                d.request().is_some_and(|r| {
                    r.method.to_string() == m
                        && (m != "INVITE"
                            || header_value(&r.headers, "To")
                                .and_then(|t| tag_of(&t))
                                .is_some())
                })
            })
            .await
            .ok_or_else(|| UaError::Timeout(want.clone()))?;
        let req = dg
            .request()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a request".into()))?;
        if self.auto_reply {
            self.auto_respond(&req, dg.src).await?;
        }
        Ok(req)
    }

    /// Answers a request returned by [`TestUa::wait_request`] (or any request the UA received)
    /// by hand, with extra headers (a challenge, a Retry-After...). A missing To tag is filled in
    /// (the INVITE's stable tag for a new call). The response is re-sent on retransmissions.
    pub async fn reply(
        &mut self,
        req: &rsip::Request,
        code: u16,
        reason: &str,
        extra_headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<(), UaError> {
        let key = request_key(req);
        let source = lock(&self.shared)
            .server_tx
            .get(&key)
            .map(|t| t.source)
            .ok_or_else(|| UaError::Protocol("reply to a request we never received".into()))?;
        let to_tag = self
            .uas_invites
            .get(&key.branch)
            .filter(|_| req.method == rsip::Method::Invite)
            .map(|u| u.to_tag.clone())
            .unwrap_or_else(new_tag);
        let contact = matches!(req.method, rsip::Method::Invite | rsip::Method::Update)
            && (101..300).contains(&code);
        let bytes = self.render_response(
            req,
            code,
            reason,
            Some(&to_tag),
            contact,
            extra_headers,
            body,
        );
        self.send_response(&key, bytes, source).await?;
        if req.method == rsip::Method::Invite && code >= 200 {
            if let Some(u) = self.uas_invites.get_mut(&key.branch) {
                u.final_sent = true;
            }
        }
        Ok(())
    }

    async fn auto_respond(&mut self, req: &rsip::Request, src: SocketAddr) -> Result<(), UaError> {
        let key = request_key(req);
        if req.method == rsip::Method::Cancel {
            return self.handle_cancel(req, src).await;
        }
        if !matches!(
            req.method,
            rsip::Method::Bye
                | rsip::Method::Info
                | rsip::Method::Update
                | rsip::Method::Options
                | rsip::Method::Invite
        ) {
            return Ok(());
        }
        let to_tag = header_value(&req.headers, "To").and_then(|t| tag_of(&t));
        let dkey = to_tag.as_ref().map(|t| DialogKey {
            call_id: msg::call_id(&req.headers).unwrap_or_default(),
            local_tag: t.clone(),
        });
        let dialog = dkey.as_ref().and_then(|k| self.dialogs.get(k).cloned());
        // §12.2.2: a request for a dialog we do not have (or a mid-dialog method without To tag)
        // gets 481. Only OPTIONS makes sense outside a dialog.
        let dialog_ok = dialog
            .as_ref()
            .is_some_and(|d| d.established && !d.terminated);
        let outside_ok = dkey.is_none() && req.method == rsip::Method::Options;
        if !dialog_ok && !outside_ok {
            let bytes = self.render_response(
                req,
                481,
                "Call/Transaction Does Not Exist",
                None,
                false,
                &[],
                None,
            );
            return self.send_response(&key, bytes, src).await;
        }
        let out_tag = to_tag.clone().unwrap_or_else(new_tag);
        match req.method {
            rsip::Method::Bye => {
                if let Some(d) = dkey.as_ref().and_then(|k| self.dialogs.get_mut(k)) {
                    d.terminated = true;
                }
                let bytes = self.render_response(req, 200, "OK", Some(&out_tag), false, &[], None);
                self.send_response(&key, bytes, src).await
            }
            rsip::Method::Invite | rsip::Method::Update => {
                let has_offer = body_text(&req.headers, &req.body).is_some();
                let is_invite = req.method == rsip::Method::Invite;
                let sdp = self
                    .reinvite_sdp
                    .clone()
                    .or_else(|| dialog.as_ref().and_then(|d| d.local_sdp.clone()));
                // An UPDATE without offer gets no SDP; a re-INVITE always carries one (offer or
                // answer).
                let body = sdp.filter(|_| is_invite || has_offer);
                if let (Some(k), Some(s)) = (&dkey, &body) {
                    if let Some(d) = self.dialogs.get_mut(k) {
                        d.local_sdp = Some(s.clone());
                    }
                }
                let bytes = self.render_response(
                    req,
                    200,
                    "OK",
                    Some(&out_tag),
                    true,
                    &[],
                    body.as_deref().map(|s| ("application/sdp", s)),
                );
                self.send_response(&key, bytes, src).await?;
                if is_invite {
                    let call_id = msg::call_id(&req.headers).unwrap_or_default();
                    let cseq = msg::cseq(&req.headers).map(|c| c.0).unwrap_or_default();
                    let timeout = self.request_timeout;
                    self.await_ack(&key, &call_id, cseq, timeout).await?;
                }
                Ok(())
            }
            _ => {
                let extra: &[(&str, &str)] = if req.method == rsip::Method::Options {
                    &[("Allow", ALLOW), ("Accept", "application/sdp")]
                } else {
                    &[]
                };
                let bytes =
                    self.render_response(req, 200, "OK", Some(&out_tag), false, extra, None);
                self.send_response(&key, bytes, src).await
            }
        }
    }

    /// §9.2: 200 to the CANCEL, then 487 to the INVITE if it has no final response yet.
    async fn handle_cancel(&mut self, req: &rsip::Request, src: SocketAddr) -> Result<(), UaError> {
        let key = request_key(req);
        if !self.uas_invites.contains_key(&key.branch) {
            // The INVITE may still be queued, not yet picked by wait_invite.
            let branch = key.branch.clone();
            let pos = self.pending.iter().position(|d| {
                d.request().is_some_and(|r| {
                    r.method == rsip::Method::Invite && request_key(r).branch == branch
                })
            });
            if let Some(dg) = pos.and_then(|i| self.pending.remove(i)) {
                if let Some(r) = dg.request().cloned() {
                    self.register_incoming(r, dg.src);
                }
            }
        }
        let Some(inv) = self.uas_invites.get(&key.branch).cloned() else {
            let bytes = self.render_response(
                req,
                481,
                "Call/Transaction Does Not Exist",
                None,
                false,
                &[],
                None,
            );
            return self.send_response(&key, bytes, src).await;
        };
        let ok = self.render_response(req, 200, "OK", Some(&inv.to_tag), false, &[], None);
        self.send_response(&key, ok, src).await?;
        if !inv.final_sent {
            let bytes = self.render_response(
                &inv.request,
                487,
                "Request Terminated",
                Some(&inv.to_tag),
                false,
                &[],
                None,
            );
            self.send_response(&request_key(&inv.request), bytes, inv.source)
                .await?;
            if let Some(u) = self.uas_invites.get_mut(&key.branch) {
                u.final_sent = true;
            }
        }
        Ok(())
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
