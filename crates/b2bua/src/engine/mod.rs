//! The sans-IO B2BUA engine.
//!
//! One [`Engine`] owns all signalling state: the transaction layer, the digest server, the
//! registrar, the port pool and the calls. The server driver feeds it datagrams, timeouts and
//! media events, and drains [`Engine::poll_transmit`] (bytes for the SIP sockets) and
//! [`Engine::poll_media`] (commands for the per-call media tasks).
//!
//! A call is two dialogs: leg **A** towards the caller (we are its UAS) and leg **B** towards the
//! callee (we are its UAC). Each leg has its own Call-ID, tags, CSeq space, route set and its own
//! RTP port on bibridge: SDP is rewritten so both parties send media to us (anchoring).
//!
//! Files: this one holds the engine's state and the driver-facing API (`handle_*`, `poll_*`) and
//! the helpers every part uses (responses, in-dialog requests, SDP anchoring); `calls` the
//! Call/Leg types and the call lifecycle (give up, end, cancel, remove); `requests` dispatches
//! incoming requests and handles in-dialog ones; `invite` routes new calls; `registration` does
//! REGISTER; `auth` digest checks and who a caller is; `responses` handles responses to what we
//! sent; `feature_code` the feature-code/Join path (parse, authorize, refuse or attach);
//! `refusal` why a session is refused; `sessions` the `Sessions` table
//! and what happens to a running session; `control` the operator API's sessions and views;
//! `compliance` audit records (built and written in one place) and notification tones;
//! `media_plane` the media commands/events. The ids live in [`crate::ids`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_media::port_pool::PortPool;
use bibridge_sip::auth::{Algorithm, DigestServer};
use bibridge_sip::message::{self, IdGen};
use bibridge_sip::registrar::{Registrar, RegistrarConfig};
use bibridge_sip::rsip;
use bibridge_sip::transaction::{TransactionLayer, TxEvent, TxKey};
use bibridge_sip::{TimerConfig, Transmit, Transport};
use tracing::{debug, info, warn};

use crate::config::{Config, Mode};
use crate::sdp::{self, AudioInfo, Origin};
use crate::wire::{self, OutRequest};

mod auth;
mod calls;
mod compliance;
mod control;
mod feature_code;
mod invite;
mod media_plane;
mod refusal;
mod registration;
mod requests;
mod responses;
mod sessions;

pub use crate::ids::{CallId, LegId, SessionId, SessionOrigin, Side};
use calls::{Call, Leg};
pub use control::{AgentView, ApiRefusal, ApiStart, CallView, SessionTarget, SessionView};
pub use media_plane::{LegCodec, LegSetup, MediaCommand, MediaEvent, MediaRole};
pub use refusal::Refusal;
pub use sessions::SessionState;
use sessions::Sessions;

/// Our addresses, as bound by the driver.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddrs {
    /// Our UDP address, if UDP is bound.
    pub udp: Option<SocketAddr>,
    /// Our TCP address, if TCP is bound.
    pub tcp: Option<SocketAddr>,
}

impl LocalAddrs {
    /// Our address for Via sent-by and Contact on `transport` (the other transport's if that
    /// one is not bound).
    pub fn sent_by(&self, transport: Transport) -> SocketAddr {
        let addr = match transport {
            Transport::Udp => self.udp.or(self.tcp),
            Transport::Tcp => self.tcp.or(self.udp),
        };
        addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)))
    }

    /// Our Contact header value on `transport`.
    pub fn contact(&self, transport: Transport) -> String {
        let addr = self.sent_by(transport);
        match transport {
            Transport::Udp => format!("<sip:bibridge@{addr}>"),
            Transport::Tcp => format!("<sip:bibridge@{addr};transport=tcp>"),
        }
    }
}

/// What a dialog of ours belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialogRef {
    Leg(CallId, Side),
    Session(SessionId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientPurpose {
    Invite,
    Reinvite,
    Bye,
    Cancel,
    /// An in-dialog request relayed from the other leg (INFO): its final response goes back.
    Relay,
    /// The INVITE that calls a supervisor's phone for an API session.
    SessionInvite(SessionId),
}

/// Table sizes of an [`Engine`] (see [`Engine::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Calls in progress.
    pub calls: usize,
    /// Supervisor sessions (calling or attached).
    pub sessions: usize,
    /// Dialogs of ours (call legs and sessions).
    pub dialogs: usize,
    /// Live SIP transactions (client and server).
    pub transactions: usize,
    /// Our client transactions the engine waits on.
    pub client_requests: usize,
    /// Server INVITE transactions (for CANCEL and a missing ACK).
    pub server_invites: usize,
    /// INVITEs of calls that are gone, still watched for a late 2xx.
    pub orphans: usize,
    /// In-dialog requests relayed to the other leg, awaiting their final response.
    pub relayed: usize,
    /// Dialogs remembered after their end, for crossing BYEs (pruned after 32 s).
    pub ended_dialogs: usize,
    /// RTP port pairs allocated.
    pub ports_in_use: usize,
    /// Console sessions whose phone is still ringing (with a give-up deadline).
    pub ringing_sessions: usize,
}

/// A lifecycle notice for observers (logs today; events API later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A user registered (first binding).
    Registered {
        /// The user's extension.
        user: String,
    },
    /// A user's last binding expired or was removed.
    Unregistered {
        /// The user's extension.
        user: String,
    },
    /// A call was routed and its callee is being invited.
    CallStarted {
        /// The call.
        call: CallId,
        /// Who calls (a user, or a number via a trunk).
        caller: String,
        /// Who is called.
        callee: String,
    },
    /// The callee answered.
    CallAnswered {
        /// The call.
        call: CallId,
    },
    /// The call ended.
    CallEnded {
        /// The call.
        call: CallId,
        /// Why, in words.
        reason: String,
    },
    /// An API session is calling the supervisor's phone.
    SessionCalling {
        /// The session.
        session: SessionId,
        /// The agent's call.
        call: CallId,
        /// The supervisor's extension.
        supervisor: String,
        /// The agent's extension.
        agent: String,
        /// The requested mode.
        mode: Mode,
    },
    /// A session is attached (active).
    SessionStarted {
        /// The session.
        session: SessionId,
        /// The agent's call.
        call: CallId,
        /// The supervisor's extension.
        supervisor: String,
        /// The agent's extension.
        agent: String,
        /// The mode.
        mode: Mode,
        /// Who started it.
        origin: SessionOrigin,
    },
    /// A session request was refused; `reason` is the stable key (docs/api.md).
    SessionRefused {
        /// The supervisor (or `trunk <name>`).
        supervisor: String,
        /// The agent's extension, as requested.
        agent: String,
        /// The requested mode.
        mode: Mode,
        /// The refusal's stable key.
        reason: String,
        /// Who asked.
        origin: SessionOrigin,
    },
    /// A session's mode changed.
    SessionMode {
        /// The session.
        session: SessionId,
        /// The new mode.
        mode: Mode,
    },
    /// A session ended.
    SessionEnded {
        /// The session.
        session: SessionId,
        /// Why, in words.
        reason: String,
    },
}

/// The sans-IO B2BUA.
pub struct Engine {
    cfg: Config,
    local: LocalAddrs,
    txl: TransactionLayer,
    digest: DigestServer,
    registrar: Registrar,
    ids: IdGen,
    pool: PortPool,
    calls: HashMap<CallId, Call>,
    next_call: CallId,
    /// (SIP Call-ID, our tag) → call and leg.
    dialogs: HashMap<(String, String), DialogRef>,
    /// Dialogs of calls that ended recently: a crossing BYE gets 200, not 481.
    ended_dialogs: HashMap<(String, String), Instant>,
    client: HashMap<TxKey, (CallId, ClientPurpose)>,
    /// Server INVITE transactions → the dialog they belong to (CANCEL matching; a missing ACK
    /// ends that dialog only, RFC 3261 §13.3.1.4).
    server_invites: HashMap<TxKey, DialogRef>,
    /// Relayed in-dialog requests: our client transaction → the server transaction to answer.
    relayed: HashMap<TxKey, (TxKey, rsip::Request)>,
    /// B-leg INVITEs of calls that are gone: a 2xx that still arrives is ACKed and hung up.
    orphans: HashMap<TxKey, Orphan>,
    sessions: Sessions,
    /// Where audit records go (docs/design.md §5), starts waiting for theirs, the refusal limiter.
    audit: compliance::AuditLog,
    transmits: VecDeque<Transmit>,
    media: VecDeque<MediaCommand>,
    notices: VecDeque<Notice>,
    next_housekeeping: Instant,
    /// Calls still ringing, by the time they are given up (`sip.no_answer_timeout_s`).
    answer_deadlines: std::collections::BTreeSet<(Instant, CallId)>,
}

/// A B-leg INVITE whose call is gone but whose client transaction still runs.
#[derive(Debug)]
struct Orphan {
    peer: SocketAddr,
    transport: Transport,
    /// The INVITE, when its CANCEL still has to be sent: the call ended before B sent any
    /// provisional response, and RFC 3261 §9.1 lets the CANCEL go only after one.
    cancel: Option<rsip::Request>,
    /// A late 2xx was ACKed and the dialog hung up; retransmissions of it only get the ACK again.
    hung_up: bool,
}

const HOUSEKEEPING: Duration = Duration::from_secs(5);
const ENDED_DIALOG_MEMORY: Duration = Duration::from_secs(32);

impl Engine {
    /// `seed` makes nonces, tags and branches unpredictable; the server passes random bytes.
    pub fn new(cfg: Config, local: LocalAddrs, seed: [u8; 32], now: Instant) -> Engine {
        let timers = TimerConfig {
            t1: Duration::from_millis(cfg.sip.t1_ms),
            t2: Duration::from_millis(cfg.sip.t2_ms),
            t4: Duration::from_millis(cfg.sip.t4_ms),
        };
        let registrar = Registrar::new(RegistrarConfig {
            min_expires: cfg.sip.registrar_min_expires,
            max_expires: cfg.sip.registrar_max_expires,
            default_expires: cfg.sip.registrar_default_expires,
        });
        let algorithms: Vec<Algorithm> = cfg
            .auth
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::parse(a).ok())
            .collect();
        let digest = DigestServer::new(
            &cfg.auth.realm,
            seed,
            Duration::from_secs(cfg.auth.nonce_lifetime_s),
        )
        .with_algorithms(&algorithms);
        let mut id_seed = [0u8; 8];
        id_seed.copy_from_slice(&seed[..8]);
        // The port pool's CSPRNG gets its own key, derived from (not equal to) the seed.
        let pool_seed = seed.map(|b| b ^ 0x5c);
        let pool = PortPool::new(cfg.rtp.port_min, cfg.rtp.port_max, pool_seed);
        Engine {
            txl: TransactionLayer::new(timers),
            digest,
            registrar,
            ids: IdGen::new(u64::from_le_bytes(id_seed)),
            pool,
            calls: HashMap::new(),
            next_call: 1,
            dialogs: HashMap::new(),
            ended_dialogs: HashMap::new(),
            client: HashMap::new(),
            server_invites: HashMap::new(),
            orphans: HashMap::new(),
            relayed: HashMap::new(),
            sessions: Sessions::new(),
            audit: compliance::AuditLog::default(),
            transmits: VecDeque::new(),
            media: VecDeque::new(),
            notices: VecDeque::new(),
            next_housekeeping: now + HOUSEKEEPING,
            answer_deadlines: std::collections::BTreeSet::new(),
            cfg,
            local,
        }
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Number of calls in progress.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Sizes of the engine's tables: for metrics, and for tests that prove nothing leaks.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            calls: self.calls.len(),
            sessions: self.sessions.len(),
            dialogs: self.dialogs.len(),
            transactions: self.txl.len(),
            client_requests: self.client.len(),
            server_invites: self.server_invites.len(),
            orphans: self.orphans.len(),
            relayed: self.relayed.len(),
            ended_dialogs: self.ended_dialogs.len(),
            ports_in_use: self.pool.in_use(),
            ringing_sessions: self.sessions.ringing(),
        }
    }

    /// One datagram (UDP) or one framed message (TCP) from the wire.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        data: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) {
        // Keep-alives (RFC 5626 CRLF) are not messages.
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return;
        }
        match message::parse(data) {
            // RFC 3261 §18.1.2: a response with more than one Via is not for us (we are never a
            // proxy); drop it.
            Ok(rsip::SipMessage::Response(r))
                if message::headers_all(&r.headers, "Via").len() > 1 =>
            {
                debug!(%source, "response with several Via headers dropped");
            }
            Ok(msg) => self.txl.handle_message(now, msg, source, transport),
            Err(e) => {
                debug!(%source, code = e.code, reason = %e.reason, "unparsable SIP message");
                let tag = self.ids.tag();
                if let Some(resp) = wire::raw_error_response(data, e.code, &e.reason, &tag) {
                    self.transmits.push_back(Transmit {
                        transport,
                        dest: source,
                        data: resp.into(),
                    });
                }
            }
        }
        self.process(now);
    }

    /// Drive timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txl.handle_timeout(now);
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.digest.prune(now);
            self.flush_refusal_summaries(now);
            self.pool.retry_failed(now);
            self.ended_dialogs
                .retain(|_, t| now.saturating_duration_since(*t) < ENDED_DIALOG_MEMORY);
        }
        for user in self.registrar.expire(now) {
            info!(%user, "registration expired");
            self.notices.push_back(Notice::Unregistered { user });
        }
        while let Some(&(at, call)) = self.answer_deadlines.first() {
            if at > now {
                break;
            }
            self.answer_deadlines.remove(&(at, call));
            self.give_up_ringing(now, call);
        }
        self.expire_ringing_sessions(now);
        self.process(now);
    }

    /// An event from the media plane.
    pub fn handle_media_event(&mut self, now: Instant, ev: MediaEvent) {
        match ev {
            MediaEvent::Inactive { call } => self.end_call(now, call, "RTP timeout"),
            MediaEvent::Opened { call } => self.on_media_opened(now, call),
            MediaEvent::OpenFailed { call, bad_ports } => {
                self.on_media_open_failed(now, call, &bad_ports)
            }
            MediaEvent::Dtmf { call, leg, digit } => self.on_media_dtmf(now, call, leg, digit),
            MediaEvent::MediaFailed { call } => {
                warn!(call, "media task failed: ending the call");
                self.end_call(now, call, "media failed")
            }
        }
        self.process(now);
    }

    /// End every call (BYE or final error) before the process exits.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for id in ids {
            self.end_call(now, id, "shutdown");
        }
        self.process(now);
    }

    /// The next datagram (or TCP message) to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.txl.poll_transmit())
    }

    /// The next command for the media plane, if any.
    pub fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media.pop_front()
    }

    /// The next lifecycle notice, if any.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// When [`Engine::handle_timeout`] must run next (`None`: nothing scheduled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.txl.poll_timeout(),
            self.registrar.poll_timeout(),
            Some(self.next_housekeeping),
            self.answer_deadlines.first().map(|(at, _)| *at),
            self.sessions.next_ring_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.txl.poll_event() {
            match ev {
                TxEvent::Request {
                    key,
                    request,
                    source,
                    transport,
                } => self.on_request(now, key, request, source, transport),
                TxEvent::Cancel {
                    key,
                    invite,
                    request,
                    ..
                } => self.on_cancel(now, key, invite, request),
                TxEvent::Ack { request, .. } => self.on_ack(now, request),
                TxEvent::Response { key, response } => self.on_response(now, key, response),
                TxEvent::StrayResponse { response, .. } => self.on_stray_response(response),
                TxEvent::Timeout { key } => self.on_client_timeout(now, key),
                TxEvent::AckTimeout { key } => match self.server_invites.remove(&key) {
                    Some(DialogRef::Leg(call, _)) => self.end_call(now, call, "no ACK for 2xx"),
                    Some(DialogRef::Session(sid)) => self.end_session_no_ack(now, sid),
                    None => {}
                },
                TxEvent::Terminated { key } => {
                    self.client.remove(&key);
                    self.orphans.remove(&key);
                    self.relayed.remove(&key);
                    self.server_invites.remove(&key);
                }
            }
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    /// A number for initial CSeqs and SDP session ids: unpredictable, from the id generator.
    fn number(&mut self) -> u32 {
        // FNV-1a over a fresh tag: IdGen's output is already unpredictable; this folds it.
        let tag = self.ids.tag();
        let mut h: u32 = 0x811c_9dc5;
        for b in tag.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        h & 0x7fff_ffff
    }

    /// The SDP origin of a new leg: an unpredictable session id, version 1.
    fn fresh_origin(&mut self) -> Origin {
        Origin {
            session_id: u64::from(self.number()),
            version: 1,
        }
    }

    /// RTP ports for a call's two legs, or none: when only one is free it goes back to the pool
    /// rather than leaking with the refused call.
    fn allocate_port_pair(&mut self) -> Option<(u16, u16)> {
        let a = self.pool.allocate().ok()?;
        match self.pool.allocate() {
            Ok(b) => Some((a, b)),
            Err(_) => {
                self.pool.release(a);
                None
            }
        }
    }

    fn local_addr(&self, transport: Transport) -> SocketAddr {
        self.local.sent_by(transport)
    }

    fn contact(&self, transport: Transport) -> String {
        self.local.contact(transport)
    }

    fn respond(
        &mut self,
        now: Instant,
        (key, req): (&TxKey, &rsip::Request),
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
    ) {
        let mut resp = message::response(req, code, reason, to_tag);
        for (k, v) in extra {
            resp.headers.push(message::make_header(k, v));
        }
        message::set_header(&mut resp.headers, "Server", &self.cfg.sip.user_agent);
        if let Err(e) = self.txl.send_response(now, key, resp) {
            debug!(error = %e, code, "response not sent");
        }
    }

    /// A final response to a request outside any dialog of ours (refusals, OPTIONS,
    /// REGISTER): it still needs a To-tag of its own (RFC 3261 §8.2.6.2).
    fn respond_new_dialog(
        &mut self,
        now: Instant,
        tx: (&TxKey, &rsip::Request),
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) {
        let tag = self.ids.tag();
        self.respond(now, tx, code, reason, Some(&tag), extra);
    }

    fn respond_sdp(
        &mut self,
        now: Instant,
        (key, req): (&TxKey, &rsip::Request),
        (code, reason): (u16, &str),
        to_tag: &str,
        transport: Transport,
        sdp: Option<Vec<u8>>,
    ) {
        let mut resp = message::response(req, code, reason, Some(to_tag));
        message::set_header(&mut resp.headers, "Contact", &self.contact(transport));
        message::set_header(&mut resp.headers, "Server", &self.cfg.sip.user_agent);
        if (200..300).contains(&code) {
            message::set_header(&mut resp.headers, "Allow", wire::ALLOW);
            message::set_header(&mut resp.headers, "Supported", wire::SUPPORTED);
        }
        if let Some(body) = sdp {
            message::set_header(&mut resp.headers, "Content-Type", "application/sdp");
            resp.body = body;
        }
        if let Err(e) = self.txl.send_response(now, key, resp) {
            debug!(error = %e, code, "response not sent");
        }
    }

    /// Originate a request on a leg (BYE, re-INVITE, CANCEL is separate). Returns its key.
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call_id: CallId,
        side: Side,
        method: &str,
        body: Option<Vec<u8>>,
        purpose: ClientPurpose,
    ) -> Option<TxKey> {
        let call = self.calls.get_mut(&call_id)?;
        let leg = call.leg_mut(side);
        let (req, peer, transport) = request_on_leg(
            &mut self.ids,
            &self.cfg.sip.user_agent,
            self.local,
            leg,
            method,
            body,
            ReqOpts::default(),
        )?;
        let key = self.txl.send_request(now, req, peer, transport);
        self.client.insert(key.clone(), (call_id, purpose));
        Some(key)
    }

    /// Anchor `sdp` on `side`'s port, bump that leg's origin version if it changed, remember it.
    fn anchored_sdp(
        &mut self,
        call_id: CallId,
        side: Side,
        mut sdp: rtc_sdp::description::session::SessionDescription,
    ) -> Option<Vec<u8>> {
        let ip = self.cfg.rtp.address;
        let call = self.calls.get_mut(&call_id)?;
        let leg = call.leg_mut(side);
        sdp::anchor(&mut sdp, ip, leg.rtp_port, &leg.origin);
        let text = sdp::print(&sdp).into_bytes();
        if leg.last_sdp_sent.as_deref() != Some(text.as_slice()) {
            if leg.last_sdp_sent.is_some() {
                leg.origin.version += 1;
                sdp::anchor(&mut sdp, ip, leg.rtp_port, &leg.origin);
            }
            let text = sdp::print(&sdp).into_bytes();
            leg.last_sdp_sent = Some(text.clone());
            return Some(text);
        }
        Some(text)
    }

    fn set_remote_media(&mut self, call_id: CallId, side: Side, info: AudioInfo) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let hold = info.direction.is_hold();
        let idx = if side == Side::A { 0 } else { 1 };
        call.hold[idx] = hold;
        let remote = info.rtp_addr;
        let codec = LegCodec::from_info(&info);
        call.leg_mut(side).remote_media = Some(info);
        let _span = call.span.enter();
        debug!(?side, ?remote, hold, "leg media updated");
        self.media.push_back(MediaCommand::Update {
            call: call_id,
            leg: side.leg_id(),
            remote,
            hold: call.hold[0] || call.hold[1],
            codec,
        });
    }
}

/// Options of [`request_on_leg`].
#[derive(Debug, Clone, Copy)]
struct ReqOpts<'a> {
    /// `None`: the next CSeq of the leg; `Some`: this one (ACK reuses its INVITE's).
    cseq: Option<u32>,
    max_forwards: u32,
    /// Extra headers (auto-answer indication).
    extra: &'a [(&'a str, String)],
}

impl Default for ReqOpts<'_> {
    fn default() -> Self {
        ReqOpts {
            cseq: None,
            max_forwards: 70,
            extra: &[],
        }
    }
}

/// Build a request on `leg`'s dialog (route set, remote target, tags), and say where it goes.
fn request_on_leg(
    ids: &mut IdGen,
    user_agent: &str,
    local: LocalAddrs,
    leg: &mut Leg,
    method: &str,
    body: Option<Vec<u8>>,
    opts: ReqOpts<'_>,
) -> Option<(rsip::Request, SocketAddr, Transport)> {
    let branch = format!("{}{}", wire::BRANCH_MARK, ids.branch());
    let cseq = match opts.cseq {
        Some(n) => n,
        None => {
            leg.local_cseq += 1;
            leg.local_cseq
        }
    };
    let transport = leg.transport;
    let via = local.sent_by(transport);
    let contact = local.contact(transport);
    let from = leg.local_party();
    let to = leg.remote_party();
    let bytes = wire::build(
        &OutRequest {
            method,
            uri: &leg.remote_target,
            from: &from,
            to: &to,
            call_id: &leg.call_id,
            cseq,
            contact: (method == "INVITE" || method == "UPDATE").then_some(contact.as_str()),
            routes: &leg.route_set,
            max_forwards: opts.max_forwards,
            extra: opts.extra,
            body: body.as_deref().map(|b| ("application/sdp", b)),
        },
        via,
        transport,
        &branch,
        user_agent,
    );
    match message::parse(&bytes) {
        Ok(rsip::SipMessage::Request(r)) => Some((r, leg.peer, transport)),
        _ => {
            warn!(method, "internal error: could not build request");
            None
        }
    }
}
