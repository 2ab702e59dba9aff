//! Operator control (docs/design.md §4 "Operator control"): what the HTTP API and the console see
//! (agents, calls, sessions) and sessions the API starts.
//!
//! An API session is the feature-code session turned around: instead of the supervisor's phone
//! calling `*81<ext>`, bibridge calls the phone (its registered or static contact) with an
//! auto-answer indication and attaches the leg when the phone answers. Until then the session is
//! `Calling`; a failure final response, a timeout or no answer within `http.answer_timeout_s` ends
//! it with a reason. The same authorization rules apply as for feature codes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::{info, info_span};

use super::auth::Caller;
use super::calls::{CallState, Leg};
use super::compliance::{Parked, Stored};
use super::media_plane::{LegCodec, LegSetup, MediaCommand, MediaRole};
use super::refusal::Refusal;
use super::sessions::{Session, SessionState};
use super::{request_on_leg, sessions, ClientPurpose, Engine, Notice, ReqOpts};
use crate::audit::{AuditError, AuditId};
use crate::config::{Mode, Role};
use crate::ids::{CallId, LegId, SessionId, SessionOrigin};
use crate::sdp::Origin;
use crate::{sdp, wire};

/// What an API session attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTarget {
    /// A call by its id.
    Call(CallId),
    /// An agent's active call (the most recently connected, as with feature codes).
    Agent(String),
}

/// Why an API request about a session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiRefusal {
    /// The feature-code rules (BIB off, not allowed, self, no such extension, not in a call).
    Policy(Refusal),
    /// No call with that id (or it has no agent).
    NoSuchCall,
    /// No session with that id.
    NoSuchSession,
    /// The session belongs to another supervisor.
    NotYours,
    /// The supervisor already holds a console session.
    SessionExists,
    /// The supervisor's phone is neither registered nor has a static contact.
    PhoneUnreachable,
    /// The RTP port pool is exhausted.
    NoMediaPorts,
    /// The start could not be written to the audit log (docs/design.md §5: no record, no session).
    AuditUnavailable,
}

impl ApiRefusal {
    /// Stable machine-readable reason (docs/api.md).
    pub fn key(self) -> &'static str {
        match self {
            ApiRefusal::Policy(r) => r.key(),
            ApiRefusal::NoSuchCall => "no_such_call",
            ApiRefusal::NoSuchSession => "no_such_session",
            ApiRefusal::NotYours => "not_yours",
            ApiRefusal::SessionExists => "session_exists",
            ApiRefusal::PhoneUnreachable => "phone_unreachable",
            ApiRefusal::NoMediaPorts => "no_media_ports",
            ApiRefusal::AuditUnavailable => "audit_unavailable",
        }
    }

    /// Human-readable title.
    pub fn title(self) -> &'static str {
        match self {
            ApiRefusal::Policy(r) => r.title(),
            ApiRefusal::NoSuchCall => "No such call",
            ApiRefusal::NoSuchSession => "No such session",
            ApiRefusal::NotYours => "Another supervisor's session",
            ApiRefusal::SessionExists => "You already hold a session; stop it first",
            ApiRefusal::PhoneUnreachable => {
                "Your phone is not registered (and has no static contact)"
            }
            ApiRefusal::NoMediaPorts => "No media ports available",
            ApiRefusal::AuditUnavailable => {
                "The audit log cannot be written; no session without it"
            }
        }
    }
}

/// The outcome of [`Engine::begin_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiStart {
    /// Answered at once (the start record was stored, or the request refused).
    Done(Result<SessionView, ApiRefusal>),
    /// Waiting for the start record to be durable: the answer comes from
    /// [`Engine::poll_api_reply`] with this id.
    Pending(AuditId),
}

/// What `start_session_inner` got to.
enum InnerStart {
    /// On record; the phone is being called.
    Calling(SessionView),
    /// Waiting for the record.
    Parked(AuditId),
}

/// An API session authorized, its port taken and its start record on its way to the log.
pub(super) struct ApiStartCtx {
    pub(super) supervisor: String,
    pub(super) ext: String,
    pub(super) call_id: CallId,
    pub(super) mode: Mode,
    pub(super) port: u16,
    pub(super) sid: SessionId,
}

/// An agent as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    /// The agent's extension.
    pub extension: String,
    /// The agent's display name.
    pub name: String,
    /// A live REGISTER binding or a static contact.
    pub registered: bool,
    /// Whether the agent's device allows monitoring (CUCM's Built-In-Bridge).
    pub builtin_bridge: bool,
    /// The agent's calls in progress.
    pub calls: Vec<CallId>,
    /// Modes the viewing supervisor may use on this agent (empty without a viewer, or with
    /// Built-In-Bridge off).
    pub allowed_modes: Vec<Mode>,
}

/// A call with an agent on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// bibridge's id of the call.
    pub id: CallId,
    /// The agent's extension.
    pub agent: String,
    /// The other party: user part of its URI.
    pub customer: String,
    /// When the call was answered.
    pub connected_at: Option<Instant>,
    /// Whether the call is answered (else still ringing).
    pub connected: bool,
    /// Supervisor sessions on the call, by id.
    pub sessions: Vec<SessionView>,
    /// Media leg ids of the agent and the customer (for level meters).
    pub agent_leg: LegId,
    /// The customer's media leg id.
    pub customer_leg: LegId,
}

/// A supervisor session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// bibridge's id of the session.
    pub id: SessionId,
    /// The call the session is attached to.
    pub call: CallId,
    /// The agent's extension.
    pub agent: String,
    /// The supervisor's extension.
    pub supervisor: String,
    /// Who hears the supervisor (docs/design.md §3).
    pub mode: Mode,
    /// Calling the phone, or attached.
    pub state: SessionState,
    /// Feature code/Join from a phone, or the API.
    pub origin: SessionOrigin,
    /// The supervisor's media leg (for level meters).
    pub media_leg: LegId,
}

impl Engine {
    /// Agents (users with the agent role), in config order, as seen by `viewer` (a supervisor).
    pub fn agents(&self, now: Instant, viewer: Option<&str>) -> Vec<AgentView> {
        let sup = viewer.and_then(|v| self.cfg.user(v));
        self.cfg
            .users
            .iter()
            .filter(|u| u.has_role(Role::Agent))
            .map(|u| {
                let mut calls: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| c.agent_user.as_deref() == Some(&u.extension))
                    .map(|(id, _)| *id)
                    .collect();
                calls.sort_unstable();
                let allowed_modes = match sup {
                    Some(s) if u.builtin_bridge && s.extension != u.extension => {
                        [Mode::Monitor, Mode::Coach, Mode::Barge]
                            .into_iter()
                            .filter(|m| s.has_role(Role::Supervisor) && self.cfg.may(s, u, *m))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                AgentView {
                    extension: u.extension.clone(),
                    name: u.name.clone(),
                    registered: u.contact.is_some()
                        || self.registrar.is_registered(now, &u.extension),
                    builtin_bridge: u.builtin_bridge,
                    calls,
                    allowed_modes,
                }
            })
            .collect()
    }

    /// Calls with an agent, oldest first.
    pub fn calls(&self) -> Vec<CallView> {
        let mut ids: Vec<CallId> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.call_view(id))
            .collect()
    }

    /// One call with an agent.
    pub fn call_view(&self, id: CallId) -> Option<CallView> {
        let c = self.calls.get(&id)?;
        let agent_side = c.agent_side?;
        let agent = c.agent_user.clone()?;
        let other = c.leg(agent_side.other());
        let customer = message::addr_uri(&other.remote_uri)
            .as_deref()
            .and_then(|u| u.strip_prefix("sip:").or(u.strip_prefix("sips:")))
            .map(|r| r.split(['@', ';']).next().unwrap_or(r).to_string())
            .or_else(|| wire::display_name(&other.remote_uri).map(str::to_string))
            .unwrap_or_else(|| "anonymous".into());
        let mut sessions: Vec<SessionView> = c
            .sessions
            .iter()
            .filter_map(|s| self.session_view(*s))
            .collect();
        sessions.sort_by_key(|s| s.id);
        Some(CallView {
            id,
            agent,
            customer,
            connected_at: c.connected_at,
            connected: c.state == CallState::Connected,
            sessions,
            agent_leg: agent_side.leg_id(),
            customer_leg: agent_side.other().leg_id(),
        })
    }

    /// One session.
    pub fn session_view(&self, sid: SessionId) -> Option<SessionView> {
        let s = self.sessions.get(&sid)?;
        Some(SessionView {
            id: sid,
            call: s.call,
            agent: s.agent.clone(),
            supervisor: s.supervisor.clone(),
            mode: s.mode,
            state: s.state,
            origin: s.origin,
            media_leg: s.media_leg,
        })
    }

    /// Start a session for `supervisor` from the API: call their phone, attach when it answers.
    ///
    /// For an engine whose audit records are stored at once (an in-process sink, or none): the
    /// answer is immediate. With the asynchronous log ([`use_audit_queue`](Self::use_audit_queue))
    /// use [`begin_session`](Self::begin_session); here a start that would have to wait for its
    /// record is abandoned (its port returned, a stop record written) and refused with
    /// `AuditUnavailable`.
    pub fn start_session(
        &mut self,
        now: Instant,
        supervisor: &str,
        target: SessionTarget,
        mode: Mode,
    ) -> Result<SessionView, ApiRefusal> {
        match self.begin_session(now, supervisor, target, mode) {
            ApiStart::Done(r) => r,
            ApiStart::Pending(id) => {
                if let Some(Parked::Api(ctx)) = self.audit.parked.remove(&id) {
                    self.pool.release(ctx.port);
                    self.audit_abandoned_start(
                        &ctx.supervisor,
                        &ctx.ext,
                        ctx.call_id,
                        ctx.sid,
                        ctx.mode,
                        SessionOrigin::Api,
                        "abandoned",
                    );
                }
                Err(ApiRefusal::AuditUnavailable)
            }
        }
    }

    /// Start a session for `supervisor` from the API: call their phone, attach when it answers.
    /// [`ApiStart::Pending`]: the start waits for its audit record; its answer comes from
    /// [`poll_api_reply`](Self::poll_api_reply) after [`handle_audit_done`](Self::handle_audit_done).
    pub fn begin_session(
        &mut self,
        now: Instant,
        supervisor: &str,
        target: SessionTarget,
        mode: Mode,
    ) -> ApiStart {
        let r = match self.start_session_inner(now, supervisor, &target, mode) {
            Ok(InnerStart::Parked(id)) => {
                self.process(now);
                return ApiStart::Pending(id);
            }
            Ok(InnerStart::Calling(v)) => Ok(v),
            Err(e) => Err(e),
        };
        if let Err(refusal) = r {
            let (agent, call) = match &target {
                SessionTarget::Agent(a) => (a.clone(), self.active_call_of(a)),
                SessionTarget::Call(id) => (
                    self.calls
                        .get(id)
                        .and_then(|c| c.agent_user.clone())
                        .unwrap_or_default(),
                    self.calls.contains_key(id).then_some(*id),
                ),
            };
            self.record_api_refusal(supervisor, &agent, call, mode, refusal);
        }
        self.process(now);
        ApiStart::Done(r)
    }

    /// Log a refused API start and put it on record (not `AuditUnavailable`: nothing can be).
    fn record_api_refusal(
        &mut self,
        supervisor: &str,
        agent: &str,
        call: Option<CallId>,
        mode: Mode,
        refusal: ApiRefusal,
    ) {
        info!(%supervisor, %agent, mode = mode.as_str(), reason = refusal.key(), origin = "api", "session refused");
        if refusal != ApiRefusal::AuditUnavailable {
            self.refuse_session(
                supervisor,
                agent,
                call,
                mode,
                refusal.key(),
                SessionOrigin::Api,
            );
        }
    }

    fn start_session_inner(
        &mut self,
        now: Instant,
        supervisor: &str,
        target: &SessionTarget,
        mode: Mode,
    ) -> Result<InnerStart, ApiRefusal> {
        let (ext, call) = match target {
            SessionTarget::Agent(a) => (a.clone(), None),
            SessionTarget::Call(id) => {
                let agent = self
                    .calls
                    .get(id)
                    .and_then(|c| c.agent_user.clone())
                    .ok_or(ApiRefusal::NoSuchCall)?;
                (agent, Some(*id))
            }
        };
        let caller = Caller::User(supervisor.to_string());
        let call_id = self
            .authorize_session(&caller, mode, &ext, call)
            .map_err(ApiRefusal::Policy)?;
        let parked_start = self
            .audit
            .parked
            .values()
            .any(|p| matches!(p, Parked::Api(a) if a.supervisor == supervisor));
        if parked_start
            || self
                .sessions
                .values()
                .any(|s| s.supervisor == supervisor && s.origin == SessionOrigin::Api)
        {
            return Err(ApiRefusal::SessionExists);
        }
        self.phone_of(now, supervisor)
            .ok_or(ApiRefusal::PhoneUnreachable)?;
        let port = self.pool.allocate().map_err(|_| ApiRefusal::NoMediaPorts)?;
        let sid = self.sessions.next_id();
        // docs/design.md §5: on record before the phone is even called.
        let stored = self.audit_start(supervisor, &ext, call_id, sid, mode, SessionOrigin::Api);
        let ctx = ApiStartCtx {
            supervisor: supervisor.to_string(),
            ext,
            call_id,
            mode,
            port,
            sid,
        };
        match stored {
            Stored::Now(Ok(())) => self.api_call_phone(now, ctx).map(InnerStart::Calling),
            Stored::Now(Err(_)) => {
                self.pool.release(port);
                Err(ApiRefusal::AuditUnavailable)
            }
            Stored::Later(id) => {
                self.park(id, Parked::Api(Box::new(ctx)));
                Ok(InnerStart::Parked(id))
            }
        }
    }

    /// An API start whose record has been written (`Ok`: call the phone) or could not be.
    pub(super) fn resume_api_start(
        &mut self,
        now: Instant,
        ctx: ApiStartCtx,
        stored: Result<(), AuditError>,
    ) -> Result<SessionView, ApiRefusal> {
        if stored.is_err() {
            self.pool.release(ctx.port);
            info!(supervisor = %ctx.supervisor, agent = %ctx.ext, mode = ctx.mode.as_str(), reason = "audit_unavailable", origin = "api", "session refused");
            return Err(ApiRefusal::AuditUnavailable);
        }
        let (supervisor, ext, call_id, mode, sid) = (
            ctx.supervisor.clone(),
            ctx.ext.clone(),
            ctx.call_id,
            ctx.mode,
            ctx.sid,
        );
        // While the record was being written the call may have ended.
        let still_there = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.state == CallState::Connected);
        let r = if still_there {
            self.api_call_phone(now, ctx)
        } else {
            self.pool.release(ctx.port);
            Err(ApiRefusal::Policy(Refusal::AgentNotInCall))
        };
        if let Err(refusal) = r {
            self.audit_abandoned_start(
                &supervisor,
                &ext,
                call_id,
                sid,
                mode,
                SessionOrigin::Api,
                refusal.key(),
            );
            self.record_api_refusal(&supervisor, &ext, Some(call_id), mode, refusal);
        }
        r
    }

    /// Call the supervisor's phone for an API session whose start is on record.
    fn api_call_phone(
        &mut self,
        now: Instant,
        ctx: ApiStartCtx,
    ) -> Result<SessionView, ApiRefusal> {
        let ApiStartCtx {
            supervisor,
            ext,
            call_id,
            mode,
            port,
            sid,
        } = ctx;
        let supervisor = supervisor.as_str();
        let Some(phone) = self.phone_of(now, supervisor) else {
            self.pool.release(port);
            return Err(ApiRefusal::PhoneUnreachable);
        };
        let media_leg = sessions::media_leg_of(sid);
        let domain = self.cfg.sip.domain.clone();
        let mut leg = Leg {
            call_id: self
                .ids
                .call_id(&self.local_addr(phone.transport).ip().to_string()),
            local_tag: self.ids.tag(),
            remote_tag: None,
            local_uri: format!("\"{} {ext}\" <sip:bibridge@{domain}>", mode_label(mode)),
            remote_uri: format!("<sip:{supervisor}@{domain}>"),
            remote_target: phone.uri,
            route_set: Vec::new(),
            local_cseq: 0,
            remote_cseq: None,
            peer: phone.dest,
            transport: phone.transport,
            rtp_port: port,
            origin: self.fresh_origin(),
            last_sdp_sent: None,
            remote_media: None,
        };
        let offer = session_offer(self.cfg.rtp.address, port, &leg.origin);
        leg.last_sdp_sent = Some(offer.clone());
        let headers = self.cfg.http.auto_answer_headers.clone();
        let extra: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let Some((req, peer, transport)) = request_on_leg(
            &mut self.ids,
            &self.cfg.sip.user_agent,
            self.local,
            &mut leg,
            "INVITE",
            Some(offer),
            ReqOpts {
                extra: &extra,
                ..ReqOpts::default()
            },
        ) else {
            self.pool.release(port);
            return Err(ApiRefusal::PhoneUnreachable);
        };
        let key = self.txl.send_request(now, req.clone(), peer, transport);
        self.client
            .insert(key.clone(), (call_id, ClientPurpose::SessionInvite(sid)));

        let call_span = self
            .calls
            .get(&call_id)
            .map(|c| c.span.clone())
            .unwrap_or_else(tracing::Span::none);
        let span = info_span!(parent: &call_span, "session", id = sid, supervisor = %supervisor, agent = %ext, origin = "api");
        let ring_deadline = now + Duration::from_secs(self.cfg.http.answer_timeout_s);
        // The ports are bound now; the leg joins the mixer once the answer names its codec.
        self.insert_session(
            sid,
            Session {
                call: call_id,
                supervisor: supervisor.to_string(),
                agent: ext.clone(),
                mode,
                leg,
                media_leg,
                span: span.clone(),
                state: SessionState::Calling,
                origin: SessionOrigin::Api,
                invite: Some((key, req)),
                provisional_seen: false,
                ack: None,
                ring_deadline: Some(ring_deadline),
            },
            LegSetup {
                leg: media_leg,
                port,
                remote: None,
                role: MediaRole::Supervisor(mode),
                codec: None,
            },
        );
        {
            let _e = span.enter();
            info!(
                mode = mode.as_str(),
                call = call_id,
                "calling the supervisor's phone"
            );
        }
        self.notices.push_back(Notice::SessionCalling {
            session: sid,
            call: call_id,
            supervisor: supervisor.to_string(),
            agent: ext,
            mode,
        });
        self.session_view(sid).ok_or(ApiRefusal::NoSuchSession)
    }

    /// Switch a session's mode from the API (same rules as DTMF).
    pub fn api_switch_mode(
        &mut self,
        now: Instant,
        supervisor: &str,
        sid: SessionId,
        mode: Mode,
    ) -> Result<SessionView, ApiRefusal> {
        let s = self.sessions.get(&sid).ok_or(ApiRefusal::NoSuchSession)?;
        if s.supervisor != supervisor {
            return Err(ApiRefusal::NotYours);
        }
        // A refusal is recorded (audit, notice) by switch_mode itself.
        let r = self.try_switch_mode(sid, mode, "API");
        self.process(now);
        r.map_err(ApiRefusal::Policy)?;
        self.session_view(sid).ok_or(ApiRefusal::NoSuchSession)
    }

    /// Stop a session from the API: BYE to the phone, or CANCEL while it rings.
    pub fn stop_session(
        &mut self,
        now: Instant,
        supervisor: &str,
        sid: SessionId,
    ) -> Result<(), ApiRefusal> {
        let s = self.sessions.get(&sid).ok_or(ApiRefusal::NoSuchSession)?;
        if s.supervisor != supervisor {
            return Err(ApiRefusal::NotYours);
        }
        self.end_session_and_promoted_call(now, sid, "stopped by the operator", true);
        self.process(now);
        Ok(())
    }

    /// Where a user's phone is: a live binding first, else the static contact.
    fn phone_of(&self, now: Instant, user: &str) -> Option<Phone> {
        if let Some(b) = self.registrar.lookup(now, user).first() {
            return Some(Phone {
                uri: wire::bare_uri(&b.contact).to_string(),
                dest: b.source,
                transport: b.transport,
            });
        }
        let contact = self.cfg.user(user)?.contact.clone()?;
        let (dest, transport) = wire::uri_target(&contact)?;
        Some(Phone {
            uri: contact,
            dest,
            transport,
        })
    }

    /// A response to the INVITE that calls a supervisor's phone.
    pub(super) fn on_session_invite_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        call: CallId,
        sid: SessionId,
        resp: rsip::Response,
    ) {
        let code = resp.status_code.code();
        let Some(s) = self.sessions.get_mut(&sid) else {
            // Stopped while ringing: a late 1xx lets the CANCEL go, a late 2xx is hung up.
            match code {
                100..=199 => self.cancel_orphan(now, call, key),
                200..=299 => self.ack_and_bye_orphan(now, key, &resp),
                _ => {}
            }
            return;
        };
        match code {
            100..=199 => {
                s.provisional_seen = true;
                if let (Some(tag), 101..) = (message::to_tag(&resp.headers), code) {
                    s.leg.remote_tag = Some(tag);
                }
            }
            200..=299 => {
                if s.state == SessionState::Active {
                    // A retransmitted 2xx: our ACK got lost.
                    if let Some(ack) = s.ack.clone() {
                        let (peer, transport) = (s.leg.peer, s.leg.transport);
                        self.txl
                            .send_stateless(rsip::SipMessage::Request(ack), peer, transport);
                    }
                    return;
                }
                self.on_session_answered(now, sid, &resp);
            }
            _ => {
                let reason = match code {
                    486 | 600 => "busy".to_string(),
                    408 | 480 => "no answer".to_string(),
                    487 => "cancelled".to_string(),
                    _ => format!(
                        "rejected ({code} {})",
                        resp.status_code
                            .to_string()
                            .trim_start_matches(char::is_numeric)
                            .trim()
                    ),
                };
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.invite = None;
                }
                self.end_session(now, sid, &reason, false);
            }
        }
    }

    /// The supervisor's phone answered: ACK, attach the leg with the answer's codec.
    fn on_session_answered(&mut self, now: Instant, sid: SessionId, resp: &rsip::Response) {
        let hold = self
            .sessions
            .get(&sid)
            .and_then(|s| self.calls.get(&s.call))
            .is_some_and(|c| c.hold[0] || c.hold[1]);
        let user_agent = self.cfg.sip.user_agent.clone();
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        s.leg.remote_tag = message::to_tag(&resp.headers);
        if let Some(contact) = message::header(&resp.headers, "Contact") {
            if let Some(uri) = message::addr_uri(&contact) {
                s.leg.remote_target = uri;
            }
        }
        let mut rr = message::headers_all(&resp.headers, "Record-Route");
        rr.reverse();
        s.leg.route_set = rr;
        let cseq = s
            .invite
            .as_ref()
            .and_then(|(_, r)| message::cseq(&r.headers))
            .map(|(n, _)| n)
            .unwrap_or(s.leg.local_cseq);
        let ack = request_on_leg(
            &mut self.ids,
            &user_agent,
            self.local,
            &mut s.leg,
            "ACK",
            None,
            ReqOpts {
                cseq: Some(cseq),
                ..ReqOpts::default()
            },
        );
        if let Some((ack, peer, transport)) = ack {
            self.txl
                .send_stateless(rsip::SipMessage::Request(ack.clone()), peer, transport);
            s.ack = Some(ack);
        }
        s.invite = None;
        // The dialog is confirmed from here on: whatever ends the session now ends it with a BYE.
        s.state = SessionState::Active;
        // The answer: restricted to what we offered; without a usable one the phone gets a BYE.
        let offered = s
            .leg
            .last_sdp_sent
            .as_deref()
            .and_then(|b| sdp::parse(b).ok())
            .and_then(|o| sdp::audio_info(&o).ok());
        let answer = sdp::parse(&resp.body).ok().and_then(|mut a| {
            let offered = offered.as_ref()?;
            sdp::restrict_answer(&mut a, offered).ok()?;
            sdp::audio_info(&a).ok()
        });
        let codec = answer.as_ref().and_then(LegCodec::from_info);
        // Answered: no longer given up for ringing.
        self.sessions.stop_ringing(sid);
        let Some(codec) = codec else {
            self.end_session(now, sid, "no usable SDP answer from the phone", true);
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        let remote = answer.as_ref().and_then(|i| i.rtp_addr);
        s.leg.remote_media = answer;
        let (call, leg, mode) = (s.call, s.media_leg, s.mode);
        {
            let _e = s.span.enter();
            info!(mode = mode.as_str(), "session started (phone answered)");
        }
        let (supervisor, agent) = (s.supervisor.clone(), s.agent.clone());
        self.media.push_back(MediaCommand::Update {
            call,
            leg,
            remote,
            hold,
            codec: Some(codec),
        });
        self.notices.push_back(Notice::SessionStarted {
            session: sid,
            call,
            supervisor,
            agent,
            mode,
            origin: SessionOrigin::Api,
        });
        self.play_notification(sid, mode == Mode::Barge);
    }

    /// The INVITE to a supervisor's phone timed out (Timer B).
    pub(super) fn on_session_invite_timeout(&mut self, now: Instant, sid: SessionId) {
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.invite = None;
        }
        self.end_session(now, sid, "no answer", false);
    }
}

/// Where a supervisor's phone is reached.
struct Phone {
    uri: String,
    dest: SocketAddr,
    transport: Transport,
}

fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Monitor => "Monitor",
        Mode::Coach => "Coach",
        Mode::Barge => "Barge",
    }
}

/// Our offer to a supervisor's phone: every voice codec bibridge mixes, plus telephone-event for
/// in-session DTMF. Opus only when this build can decode it.
fn session_offer(ip: std::net::IpAddr, port: u16, origin: &Origin) -> Vec<u8> {
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let text = format!(
        "v=0\r\no=bibridge {sid} {ver} IN {family} {ip}\r\ns=bibridge\r\nc=IN {family} {ip}\r\n\
         t=0 0\r\nm=audio {port} RTP/AVP 0 8 9 111 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:111 opus/48000/2\r\n\
         a=fmtp:111 minptime=20;useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        sid = origin.session_id,
        ver = origin.version,
    );
    match sdp::parse(text.as_bytes()) {
        Ok(mut s) => {
            if sdp::restrict_offer(&mut s).is_ok() {
                return sdp::print(&s).into_bytes();
            }
            text.into_bytes()
        }
        Err(_) => text.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_g711_and_telephone_event() {
        let origin = Origin {
            session_id: 7,
            version: 1,
        };
        let body = session_offer([127, 0, 0, 1].into(), 20_000, &origin);
        let s = sdp::parse(&body).expect("our offer parses");
        let info = sdp::audio_info(&s).expect("audio");
        let names: Vec<&str> = info.codecs.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"PCMU") && names.contains(&"PCMA"),
            "{names:?}"
        );
        assert!(names.contains(&"telephone-event"), "{names:?}");
        assert_eq!(
            info.rtp_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 20_000)))
        );
    }
}
