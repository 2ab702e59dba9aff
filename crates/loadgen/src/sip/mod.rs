//! The signalling side against bibridge: the trunk's customers (UAC), the agents' phones (UAS,
//! one socket for all agents) and the supervisors (UAC with digest auth), each socket driven by
//! its own sans-IO [`TransactionLayer`] (retransmissions, 2xx retransmission until ACK, ACK of
//! non-2xx finals). Media starts as soon as a leg is confirmed: the customer's on the 200 OK, the
//! agent's on the ACK, the supervisor's on the 200 OK of the feature-code call.
//!
//! `mod.rs` holds the driver, its state and the requests it starts (calls, sessions, BYEs, the
//! poll loop); `events` what it does with incoming requests and responses; `sdp` the SDP and
//! URI helpers.

mod events;
mod sdp;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use bibridge_sip::message;
use bibridge_sip::rsip::SipMessage;
use bibridge_sip::transaction::{TransactionLayer, TxKey};
use bibridge_sip::{TimerConfig, Transport};
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::rtp::{Ctl, Role};
use crate::stats::new_histogram;
use crate::SessionMode;

pub use sdp::{sdp, sdp_media_addr, uri_addr};

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
