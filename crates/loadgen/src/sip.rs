//! The signalling side against bibridge: the trunk's customers (UAC), the agents' phones (UAS,
//! one socket for all agents) and the supervisors (UAC with digest auth), each socket driven by
//! its own sans-IO [`TransactionLayer`] (retransmissions, 2xx retransmission until ACK, ACK of
//! non-2xx finals). Media starts as soon as a leg is confirmed: the customer's on the 200 OK, the
//! agent's on the ACK, the supervisor's on the 200 OK of the feature-code call.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bibridge_sip::message;
use bibridge_sip::rsip::{self, SipMessage};
use bibridge_sip::transaction::{TransactionLayer, TxEvent, TxKey};
use bibridge_sip::{TimerConfig, Transport};
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::rtp::{Ctl, Role};
use crate::stats::new_histogram;
use crate::SessionMode;

/// Sent in User-Agent; the generated config lists it under `md5_only_user_agents` (SHA-256 is
/// answered as well, see [`bibridge_sip::auth::client_authorization`]).
pub const USER_AGENT: &str = "bibridge-load";
const TRUNK: usize = 0;
const AGENTS: usize = 1;
const SUPS: usize = 2;

/// Where a leg of ours is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    Idle,
    Inviting,
    Up,
    Failed(u16),
    Ending,
    Ended,
}

#[derive(Debug, Clone)]
struct Dialog {
    call_id: String,
    from_tag: String,
    to: String,
    to_tag: Option<String>,
    /// Request-URI and destination of in-dialog requests (the peer's Contact).
    target_uri: String,
    target: SocketAddr,
    cseq: u32,
    started: Instant,
}

#[derive(Debug)]
struct Call {
    agent: String,
    state: LegState,
    dialog: Option<Dialog>,
    /// bibridge's agent leg, from its INVITE: where the agent's RTP goes.
    agent_media: Option<SocketAddr>,
    agent_up: bool,
    agent_invite: Option<TxKey>,
}

#[derive(Debug)]
struct Session {
    call: u32,
    ext: String,
    password: String,
    state: LegState,
    dialog: Option<Dialog>,
    auth_tried: bool,
}

/// What the socket's layer is waiting on.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Invite(u32),
    Bye(u32),
}

/// The sockets and parties of a run.
pub struct SipSetup {
    /// bibridge's SIP address.
    pub server: SocketAddr,
    /// Bound to the trunk address configured in bibridge.
    pub trunk: UdpSocket,
    /// Bound to the port of every agent's static contact.
    pub agents: UdpSocket,
    /// Any port: supervisors authenticate.
    pub supervisors: UdpSocket,
    /// Our RTP sockets, for SDP: customer, agent, supervisor.
    pub rtp: [SocketAddr; 3],
    /// Agent extension of call `i`.
    pub agent_exts: Vec<String>,
    /// `(extension, password)` of the supervisor of session `j` (on call `j`).
    pub supervisors_creds: Vec<(String, String)>,
    /// Feature code of the session mode (`*81` ...).
    pub feature_code: String,
    pub mode: SessionMode,
}

/// Counts for the progress line and the report.
#[derive(Debug, Clone, Default)]
pub struct SipCounts {
    pub calls_started: usize,
    pub calls_up: usize,
    pub calls_failed: usize,
    pub sessions_started: usize,
    pub sessions_up: usize,
    pub sessions_failed: usize,
    pub calls_ended: usize,
    pub remote_hangups: usize,
}

/// The signalling driver. Single-threaded: call [`SipDriver::pump`] in a loop.
pub struct SipDriver {
    socks: [UdpSocket; 3],
    layers: [TransactionLayer; 3],
    pending: [HashMap<TxKey, Pending>; 3],
    setup: SipSetupInfo,
    calls: Vec<Call>,
    sessions: Vec<Session>,
    /// Call-ID → call index, for the trunk and the agent side.
    by_call_id: [HashMap<String, u32>; 3],
    ext_to_call: HashMap<String, u32>,
    rtp: Sender<Ctl>,
    ids: message::IdGen,
    /// Final status codes of failed calls and sessions (408 for timeouts).
    pub call_failures: BTreeMap<u16, u64>,
    pub session_failures: BTreeMap<u16, u64>,
    /// INVITE → 200 OK, in µs.
    pub call_setup: Histogram<u64>,
    pub session_setup: Histogram<u64>,
    pub counts: SipCounts,
    local: [SocketAddr; 3],
}

struct SipSetupInfo {
    server: SocketAddr,
    rtp: [SocketAddr; 3],
    supervisors: Vec<(String, String)>,
    feature_code: String,
    mode: SessionMode,
}

/// The `host:port` of a SIP URI (`sip:user@127.0.0.1:5060;transport=udp`), port 5060 if none.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let host = rest.rsplit('@').next()?;
    let host = host.split([';', '>', '?']).next()?.trim();
    host.parse()
        .ok()
        .or_else(|| format!("{host}:5060").parse().ok())
}

/// Where an SDP body wants audio: its `c=` address and first `m=audio` port.
pub fn sdp_media_addr(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = ip.or_else(|| c.split_whitespace().next().map(str::to_string));
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = port.or_else(|| m.split_whitespace().next()?.parse::<u16>().ok());
        }
    }
    format!("{}:{}", ip?, port?).parse().ok()
}

/// A PCMU-only audio SDP for `addr`.
pub fn sdp(addr: SocketAddr, session: u64) -> String {
    let ip = addr.ip();
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=bibridge-load\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        addr.port()
    )
}

fn body_of(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

impl SipDriver {
    pub fn new(setup: SipSetup, rtp: Sender<Ctl>) -> std::io::Result<Self> {
        let socks = [setup.trunk, setup.agents, setup.supervisors];
        let mut local = [setup.server; 3];
        for (l, s) in local.iter_mut().zip(&socks) {
            s.set_nonblocking(true)?;
            *l = s.local_addr()?;
        }
        let timers = TimerConfig::default();
        let calls = setup
            .agent_exts
            .iter()
            .map(|a| Call {
                agent: a.clone(),
                state: LegState::Idle,
                dialog: None,
                agent_media: None,
                agent_up: false,
                agent_invite: None,
            })
            .collect::<Vec<_>>();
        let ext_to_call = setup
            .agent_exts
            .iter()
            .enumerate()
            .map(|(i, e)| (e.clone(), i as u32))
            .collect();
        Ok(Self {
            socks,
            layers: std::array::from_fn(|_| TransactionLayer::new(timers)),
            pending: Default::default(),
            setup: SipSetupInfo {
                server: setup.server,
                rtp: setup.rtp,
                supervisors: setup.supervisors_creds,
                feature_code: setup.feature_code,
                mode: setup.mode,
            },
            calls,
            sessions: Vec::new(),
            by_call_id: Default::default(),
            ext_to_call,
            rtp,
            ids: message::IdGen::new(rand::random()),
            call_failures: BTreeMap::new(),
            session_failures: BTreeMap::new(),
            call_setup: new_histogram(),
            session_setup: new_histogram(),
            counts: SipCounts::default(),
            local,
        })
    }

    fn request_text(
        &mut self,
        sock: usize,
        method: &str,
        d: &Dialog,
        from: &str,
        extra: &[(&str, String)],
        body: Option<&str>,
    ) -> String {
        let local = self.local[sock];
        let mut s = format!("{method} {} SIP/2.0\r\n", d.target_uri);
        s.push_str(&format!(
            "Via: SIP/2.0/UDP {local};branch={};rport\r\n",
            self.ids.branch()
        ));
        s.push_str("Max-Forwards: 70\r\n");
        s.push_str(&format!("From: {from};tag={}\r\n", d.from_tag));
        match &d.to_tag {
            Some(t) => s.push_str(&format!("To: {};tag={t}\r\n", d.to)),
            None => s.push_str(&format!("To: {}\r\n", d.to)),
        }
        s.push_str(&format!("Call-ID: {}\r\n", d.call_id));
        let cseq_method = method;
        s.push_str(&format!("CSeq: {} {cseq_method}\r\n", d.cseq));
        s.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
        for (n, v) in extra {
            s.push_str(&format!("{n}: {v}\r\n"));
        }
        match body {
            Some(b) => {
                s.push_str("Content-Type: application/sdp\r\n");
                s.push_str(&format!("Content-Length: {}\r\n\r\n{b}", b.len()));
            }
            None => s.push_str("Content-Length: 0\r\n\r\n"),
        }
        s
    }

    fn send(&mut self, sock: usize, text: &str, dest: SocketAddr) -> Option<TxKey> {
        let Ok(SipMessage::Request(req)) = message::parse(text.as_bytes()) else {
            return None;
        };
        Some(self.layers[sock].send_request(Instant::now(), req, dest, Transport::Udp))
    }

    /// Places call `i`: the customer's INVITE from the trunk to agent `i`.
    pub fn start_call(&mut self, i: u32) {
        let Some(call) = self.calls.get(i as usize) else {
            return;
        };
        let server = self.setup.server;
        let agent = call.agent.clone();
        let local = self.local[TRUNK];
        let d = Dialog {
            call_id: self.ids.call_id("bibridge-load"),
            from_tag: self.ids.tag(),
            to: format!("<sip:{agent}@{server}>"),
            to_tag: None,
            target_uri: format!("sip:{agent}@{server}"),
            target: server,
            cseq: 1,
            started: Instant::now(),
        };
        let body = sdp(
            self.setup.rtp[Role::Customer as usize],
            100_000 + u64::from(i),
        );
        let text = self.request_text(
            TRUNK,
            "INVITE",
            &d,
            &format!("<sip:customer{i}@{local}>"),
            &[("Contact", format!("<sip:customer{i}@{local}>"))],
            Some(&body),
        );
        self.by_call_id[TRUNK].insert(d.call_id.clone(), i);
        self.counts.calls_started += 1;
        if let Some(key) = self.send(TRUNK, &text, server) {
            self.pending[TRUNK].insert(key, Pending::Invite(i));
            self.calls[i as usize].state = LegState::Inviting;
            self.calls[i as usize].dialog = Some(d);
        } else {
            self.fail_call(i, 500);
        }
    }

    /// Starts session `j`: supervisor `j` dials the feature code + agent of call `j`.
    pub fn start_session(&mut self, j: u32) {
        let Some((ext, password)) = self.setup.supervisors.get(j as usize).cloned() else {
            return;
        };
        let Some(agent) = self.calls.get(j as usize).map(|c| c.agent.clone()) else {
            return;
        };
        let server = self.setup.server;
        let target = format!("{}{agent}", self.setup.feature_code);
        let d = Dialog {
            call_id: self.ids.call_id("bibridge-load"),
            from_tag: self.ids.tag(),
            to: format!("<sip:{target}@{server}>"),
            to_tag: None,
            target_uri: format!("sip:{target}@{server}"),
            target: server,
            cseq: 1,
            started: Instant::now(),
        };
        self.by_call_id[SUPS].insert(d.call_id.clone(), self.sessions.len() as u32);
        self.sessions.push(Session {
            call: j,
            ext,
            password,
            state: LegState::Inviting,
            dialog: Some(d),
            auth_tried: false,
        });
        self.counts.sessions_started += 1;
        self.send_session_invite(self.sessions.len() as u32 - 1, None);
    }

    fn send_session_invite(&mut self, s: u32, authorization: Option<(String, String)>) {
        let server = self.setup.server;
        let local = self.local[SUPS];
        let Some(sess) = self.sessions.get(s as usize) else {
            return;
        };
        let Some(d) = sess.dialog.as_ref() else {
            return;
        };
        let ext = sess.ext.clone();
        let body = sdp(
            self.setup.rtp[Role::Supervisor as usize],
            200_000 + u64::from(s),
        );
        let mut extra = vec![("Contact", format!("<sip:{ext}@{local}>"))];
        if let Some((name, value)) = authorization {
            extra.push(if name == "Proxy" {
                ("Proxy-Authorization", value)
            } else {
                ("Authorization", value)
            });
        }
        let d = d.clone();
        let text = self.request_text(
            SUPS,
            "INVITE",
            &d,
            &format!("<sip:{ext}@{server}>"),
            &extra,
            Some(&body),
        );
        match self.send(SUPS, &text, server) {
            Some(key) => {
                self.pending[SUPS].insert(key, Pending::Invite(s));
            }
            None => self.fail_session(s, 500),
        }
    }

    /// Hangs up call `i` from the customer side (bibridge then BYEs the agent).
    pub fn bye_call(&mut self, i: u32) {
        let _ = self.rtp.send(Ctl::StopCall { call: i });
        let local = self.local[TRUNK];
        let Some(call) = self.calls.get_mut(i as usize) else {
            return;
        };
        if call.state != LegState::Up {
            return;
        }
        call.state = LegState::Ending;
        let Some(d) = call.dialog.as_mut() else {
            return;
        };
        d.cseq += 1;
        let d = d.clone();
        let text = self.request_text(
            TRUNK,
            "BYE",
            &d,
            &format!("<sip:customer{i}@{local}>"),
            &[],
            None,
        );
        if let Some(key) = self.send(TRUNK, &text, d.target) {
            self.pending[TRUNK].insert(key, Pending::Bye(i));
        }
    }

    /// Hangs up session `j`'s supervisor leg.
    pub fn bye_session(&mut self, s: u32) {
        let server = self.setup.server;
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return;
        };
        if sess.state != LegState::Up {
            return;
        }
        sess.state = LegState::Ending;
        let ext = sess.ext.clone();
        let Some(d) = sess.dialog.as_mut() else {
            return;
        };
        d.cseq += 1;
        let d = d.clone();
        let text = self.request_text(SUPS, "BYE", &d, &format!("<sip:{ext}@{server}>"), &[], None);
        if let Some(key) = self.send(SUPS, &text, d.target) {
            self.pending[SUPS].insert(key, Pending::Bye(s));
        }
    }

    /// Number of calls / sessions whose setup is still undecided.
    pub fn in_progress(&self) -> (usize, usize) {
        (
            self.calls
                .iter()
                .filter(|c| {
                    c.state == LegState::Inviting || (c.state == LegState::Up && !c.agent_up)
                })
                .count(),
            self.sessions
                .iter()
                .filter(|s| s.state == LegState::Inviting)
                .count(),
        )
    }

    /// Calls and sessions that still have a dialog up or ending.
    pub fn open_dialogs(&self) -> usize {
        self.calls
            .iter()
            .filter(|c| matches!(c.state, LegState::Up | LegState::Ending))
            .count()
            + self
                .sessions
                .iter()
                .filter(|s| matches!(s.state, LegState::Up | LegState::Ending))
                .count()
    }

    /// Indices of calls that are fully up (customer 200 OK and agent ACK).
    pub fn up_calls(&self) -> Vec<u32> {
        (0..self.calls.len() as u32)
            .filter(|&i| {
                let c = &self.calls[i as usize];
                c.state == LegState::Up && c.agent_up
            })
            .collect()
    }

    /// Indices of sessions that are up.
    pub fn up_sessions(&self) -> Vec<u32> {
        (0..self.sessions.len() as u32)
            .filter(|&i| self.sessions[i as usize].state == LegState::Up)
            .collect()
    }

    fn fail_call(&mut self, i: u32, code: u16) {
        if let Some(c) = self.calls.get_mut(i as usize) {
            if matches!(c.state, LegState::Inviting | LegState::Idle) {
                c.state = LegState::Failed(code);
                self.counts.calls_failed += 1;
                *self.call_failures.entry(code).or_default() += 1;
            }
        }
    }

    fn fail_session(&mut self, s: u32, code: u16) {
        if let Some(x) = self.sessions.get_mut(s as usize) {
            if matches!(x.state, LegState::Inviting | LegState::Idle) {
                x.state = LegState::Failed(code);
                self.counts.sessions_failed += 1;
                *self.session_failures.entry(code).or_default() += 1;
            }
        }
    }

    /// Handles I/O and timers until `until`.
    pub fn pump(&mut self, until: Instant) {
        loop {
            let now = Instant::now();
            self.flush();
            if now >= until {
                return;
            }
            let mut wake = until;
            for l in &self.layers {
                if let Some(t) = l.poll_timeout() {
                    wake = wake.min(t);
                }
            }
            let ms = wake
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(50) as u16;
            let ready: [bool; 3] = {
                let mut fds: Vec<PollFd<'_>> = self
                    .socks
                    .iter()
                    .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                    .collect();
                if nix::poll::poll(&mut fds, PollTimeout::from(ms)).is_err() {
                    [false; 3]
                } else {
                    std::array::from_fn(|i| {
                        fds[i]
                            .revents()
                            .is_some_and(|r| r.contains(PollFlags::POLLIN))
                    })
                }
            };
            for (i, r) in ready.iter().enumerate() {
                if *r {
                    self.read_socket(i);
                }
            }
            let now = Instant::now();
            for i in 0..3 {
                if self.layers[i].poll_timeout().is_some_and(|t| t <= now) {
                    self.layers[i].handle_timeout(now);
                }
                self.process_events(i);
            }
        }
    }

    fn read_socket(&mut self, i: usize) {
        let mut buf = [0u8; 65_535];
        // Bounded per wake-up so timers keep running under a flood.
        for _ in 0..1000 {
            let Ok((n, src)) = self.socks[i].recv_from(&mut buf) else {
                return;
            };
            if let Ok(msg) = message::parse(&buf[..n]) {
                self.layers[i].handle_message(Instant::now(), msg, src, Transport::Udp);
                self.process_events(i);
            }
        }
    }

    fn flush(&mut self) {
        for i in 0..3 {
            while let Some(t) = self.layers[i].poll_transmit() {
                let _ = self.socks[i].send_to(&t.data, t.dest);
            }
        }
    }

    fn process_events(&mut self, i: usize) {
        while let Some(ev) = self.layers[i].poll_event() {
            match ev {
                TxEvent::Request {
                    key,
                    request,
                    source,
                    ..
                } => self.on_request(i, key, request, source),
                TxEvent::Cancel { key, request, .. } => {
                    // Nothing here rings for long: just confirm the CANCEL.
                    let resp = message::response(&request, 200, "OK", None);
                    let _ = self.layers[i].send_response(Instant::now(), &key, resp);
                }
                TxEvent::Ack { request, .. } => {
                    if i == AGENTS {
                        self.on_agent_ack(&request);
                    }
                }
                TxEvent::Response { key, response } => self.on_response(i, key, response),
                TxEvent::StrayResponse { response, source } => {
                    // A 2xx retransmitted after the transaction ended: ACK it again.
                    if i != AGENTS && response.status_code.code() / 100 == 2 {
                        self.ack_2xx(i, &response, source);
                    }
                }
                TxEvent::Timeout { key } => {
                    if let Some(p) = self.pending[i].remove(&key) {
                        match (i, p) {
                            (TRUNK, Pending::Invite(c)) => self.fail_call(c, 408),
                            (SUPS, Pending::Invite(s)) => self.fail_session(s, 408),
                            (TRUNK, Pending::Bye(c)) => self.end_call(c),
                            (_, Pending::Bye(s)) => {
                                if let Some(x) = self.sessions.get_mut(s as usize) {
                                    x.state = LegState::Ended;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                TxEvent::AckTimeout { .. } => {}
                TxEvent::Terminated { key } => {
                    self.pending[i].remove(&key);
                }
            }
        }
    }

    fn end_call(&mut self, c: u32) {
        if let Some(call) = self.calls.get_mut(c as usize) {
            if call.state != LegState::Ended {
                call.state = LegState::Ended;
                self.counts.calls_ended += 1;
            }
        }
    }

    fn on_request(&mut self, i: usize, key: TxKey, req: rsip::Request, _source: SocketAddr) {
        let now = Instant::now();
        match (i, &req.method) {
            (AGENTS, rsip::Method::Invite) => self.on_agent_invite(key, req),
            (_, rsip::Method::Bye) => {
                let cid = message::call_id(&req.headers).unwrap_or_default();
                let resp = message::response(&req, 200, "OK", None);
                let _ = self.layers[i].send_response(now, &key, resp);
                if let Some(&c) = self.by_call_id[i].get(&cid) {
                    match i {
                        TRUNK => {
                            if self.calls.get(c as usize).map(|x| x.state) == Some(LegState::Up) {
                                self.counts.remote_hangups += 1;
                                let _ = self.rtp.send(Ctl::StopCall { call: c });
                            }
                            self.end_call(c);
                        }
                        SUPS => {
                            if let Some(x) = self.sessions.get_mut(c as usize) {
                                x.state = LegState::Ended;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                // OPTIONS, INFO, UPDATE, re-INVITE: not part of this load profile.
                let code = if req.method == rsip::Method::Options {
                    200
                } else {
                    501
                };
                let resp = message::response(&req, code, message::standard_reason(code), None);
                let _ = self.layers[i].send_response(now, &key, resp);
            }
        }
    }

    fn on_agent_invite(&mut self, key: TxKey, req: rsip::Request) {
        let now = Instant::now();
        let ext = message::uri_user(&req.uri).unwrap_or_default();
        let Some(&c) = self.ext_to_call.get(&ext) else {
            let resp = message::response(&req, 404, "Not Found", Some("x"));
            let _ = self.layers[AGENTS].send_response(now, &key, resp);
            return;
        };
        let media = body_of(&req.body).and_then(|b| sdp_media_addr(&b));
        let cid = message::call_id(&req.headers).unwrap_or_default();
        self.by_call_id[AGENTS].insert(cid, c);
        let tag = self.ids.tag();
        let ringing = message::response(&req, 180, "Ringing", Some(&tag));
        let _ = self.layers[AGENTS].send_response(now, &key, ringing);
        let Some(media) = media else {
            let resp = message::response(&req, 488, "Not Acceptable Here", Some(&tag));
            let _ = self.layers[AGENTS].send_response(now, &key, resp);
            return;
        };
        let local = self.local[AGENTS];
        let mut ok = message::response(&req, 200, "OK", Some(&tag));
        message::set_header(&mut ok.headers, "Contact", &format!("<sip:{ext}@{local}>"));
        message::set_header(&mut ok.headers, "Server", USER_AGENT);
        message::set_header(&mut ok.headers, "Content-Type", "application/sdp");
        let body = sdp(self.setup.rtp[Role::Agent as usize], 300_000 + u64::from(c));
        message::set_header(&mut ok.headers, "Content-Length", &body.len().to_string());
        ok.body = body.into_bytes();
        let _ = self.layers[AGENTS].send_response(now, &key, ok);
        if let Some(call) = self.calls.get_mut(c as usize) {
            call.agent_media = Some(media);
            call.agent_invite = Some(key);
        }
    }

    fn on_agent_ack(&mut self, req: &rsip::Request) {
        let cid = message::call_id(&req.headers).unwrap_or_default();
        let Some(&c) = self.by_call_id[AGENTS].get(&cid) else {
            return;
        };
        let Some(call) = self.calls.get_mut(c as usize) else {
            return;
        };
        if call.agent_up {
            return;
        }
        call.agent_up = true;
        if let Some(m) = call.agent_media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Agent,
                call: c,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Agent,
                call: c,
                src_port: m.port(),
            });
        }
        if call.state == LegState::Up {
            self.counts.calls_up += 1;
        }
    }

    fn ack_2xx(&mut self, i: usize, resp: &rsip::Response, fallback: SocketAddr) {
        let h = &resp.headers;
        let contact = message::header(h, "Contact")
            .and_then(|c| message::addr_uri(&c))
            .unwrap_or_else(|| format!("sip:{fallback}"));
        let dest = uri_addr(&contact).unwrap_or(fallback);
        let d = Dialog {
            call_id: message::call_id(h).unwrap_or_default(),
            from_tag: message::from_tag(h).unwrap_or_default(),
            to: message::header(h, "To")
                .map(|t| t.split(";tag=").next().unwrap_or_default().to_string())
                .unwrap_or_default(),
            to_tag: message::to_tag(h),
            target_uri: contact.clone(),
            target: dest,
            cseq: message::cseq(h).map_or(1, |c| c.0),
            started: Instant::now(),
        };
        let from = message::header(h, "From")
            .map(|f| f.split(";tag=").next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let text = self.request_text(i, "ACK", &d, &from, &[], None);
        self.send(i, &text, dest);
    }

    fn on_response(&mut self, i: usize, key: TxKey, resp: rsip::Response) {
        let code = resp.status_code.code();
        let Some(&p) = self.pending[i].get(&key) else {
            return;
        };
        if code < 200 {
            return;
        }
        match (i, p) {
            (TRUNK, Pending::Invite(c)) => self.on_call_final(c, code, &resp),
            (SUPS, Pending::Invite(s)) => self.on_session_final(s, code, &resp),
            (TRUNK, Pending::Bye(c)) => self.end_call(c),
            (SUPS, Pending::Bye(s)) => {
                if let Some(x) = self.sessions.get_mut(s as usize) {
                    x.state = LegState::Ended;
                }
            }
            _ => {}
        }
        if code >= 200 && !(200..300).contains(&code) {
            self.pending[i].remove(&key);
        }
    }

    fn learn_dialog(d: &mut Dialog, resp: &rsip::Response) {
        let h = &resp.headers;
        d.to_tag = message::to_tag(h);
        if let Some(uri) = message::header(h, "Contact").and_then(|c| message::addr_uri(&c)) {
            if let Some(a) = uri_addr(&uri) {
                d.target = a;
            }
            d.target_uri = uri;
        }
    }

    fn on_call_final(&mut self, c: u32, code: u16, resp: &rsip::Response) {
        let src = self.setup.server;
        if !(200..300).contains(&code) {
            self.fail_call(c, code);
            return;
        }
        let Some(call) = self.calls.get_mut(c as usize) else {
            return;
        };
        if call.state != LegState::Inviting {
            // Retransmitted 2xx: the ACK got lost.
            self.ack_2xx(TRUNK, resp, src);
            return;
        }
        let media = body_of(&resp.body).and_then(|b| sdp_media_addr(&b));
        if let Some(d) = call.dialog.as_mut() {
            Self::learn_dialog(d, resp);
            let us = d.started.elapsed().as_micros() as u64;
            self.call_setup.saturating_record(us.max(1));
        }
        call.state = LegState::Up;
        let agent_up = call.agent_up;
        self.ack_2xx(TRUNK, resp, src);
        if let Some(m) = media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Customer,
                call: c,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Customer,
                call: c,
                src_port: m.port(),
            });
        }
        if agent_up {
            self.counts.calls_up += 1;
        }
    }

    fn on_session_final(&mut self, s: u32, code: u16, resp: &rsip::Response) {
        let src = self.setup.server;
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return;
        };
        if matches!(code, 401 | 407) && !sess.auth_tried && sess.state == LegState::Inviting {
            sess.auth_tried = true;
            let hname = if code == 407 {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            };
            let challenges = message::headers_all(&resp.headers, hname);
            let Some(d) = sess.dialog.as_mut() else {
                return;
            };
            d.cseq += 1;
            let cnonce = format!("{:016x}", rand::random::<u64>());
            match bibridge_sip::auth::client_authorization(
                &challenges,
                &sess.ext,
                &sess.password,
                "INVITE",
                &d.target_uri,
                &cnonce,
                1,
            ) {
                Ok(a) => {
                    let kind = if code == 407 { "Proxy" } else { "WWW" };
                    self.send_session_invite(s, Some((kind.to_string(), a)));
                }
                Err(_) => self.fail_session(s, code),
            }
            return;
        }
        if !(200..300).contains(&code) {
            self.fail_session(s, code);
            return;
        }
        if sess.state != LegState::Inviting {
            self.ack_2xx(SUPS, resp, src);
            return;
        }
        let media = body_of(&resp.body).and_then(|b| sdp_media_addr(&b));
        if let Some(d) = sess.dialog.as_mut() {
            Self::learn_dialog(d, resp);
            let us = d.started.elapsed().as_micros() as u64;
            self.session_setup.saturating_record(us.max(1));
        }
        sess.state = LegState::Up;
        let call = sess.call;
        self.counts.sessions_up += 1;
        self.ack_2xx(SUPS, resp, src);
        let mode = self.setup.mode;
        if let Some(m) = media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Supervisor,
                call,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Supervisor,
                call,
                src_port: m.port(),
            });
        }
        let _ = self.rtp.send(Ctl::SetMode {
            call,
            mode: Some(mode),
        });
    }

    /// How many calls failed during setup, by status.
    pub fn failures(&self) -> &BTreeMap<u16, u64> {
        &self.call_failures
    }

    /// Wait helper: pump until `cond` holds or `timeout` passes.
    pub fn pump_until(&mut self, timeout: Duration, mut cond: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end && !cond(self) {
            self.pump((Instant::now() + Duration::from_millis(20)).min(end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_sdp_helpers() {
        assert_eq!(
            uri_addr("sip:1001@127.0.0.1:5071;transport=udp"),
            "127.0.0.1:5071".parse().ok()
        );
        assert_eq!(uri_addr("sip:127.0.0.1"), "127.0.0.1:5060".parse().ok());
        assert_eq!(uri_addr("sip:x@host.invalid:99"), None);
        let s = sdp("127.0.0.1:4000".parse().expect("addr"), 1);
        assert_eq!(sdp_media_addr(&s), "127.0.0.1:4000".parse().ok());
        assert_eq!(sdp_media_addr("v=0\r\nm=audio 5 RTP/AVP 0\r\n"), None);
    }
}
