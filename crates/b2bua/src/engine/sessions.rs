//! Supervisor sessions (DESIGN §3, §4): a supervisor dials a feature code (`*81<ext>` monitor,
//! `*82<ext>` coach, `*83<ext>` barge), bibridge answers and attaches the supervisor's leg to the
//! agent's active call. DTMF (RFC 4733 from the mixer, or SIP INFO `application/dtmf-relay`)
//! switches the mode; the supervisor's BYE, or the end of the agent's call, stops it.
//!
//! A session is one dialog (the supervisor called us: we are its UAS) plus one leg in the agent
//! call's media plane. Who hears whom follows from the leg's [`MediaRole`] in the mixer.

use super::auth::Caller;
use super::control::SessionState;
use super::*;
use crate::audit::AuditEvent;
use crate::config::Role;
use bibridge_media::dtmf::parse_dtmf_relay;

#[derive(Debug)]
pub(crate) struct Session {
    pub(super) call: CallId,
    pub(super) supervisor: String,
    pub(super) agent: String,
    pub(super) mode: Mode,
    pub(super) leg: Leg,
    pub(super) media_leg: LegId,
    pub(super) span: tracing::Span,
    pub(super) state: SessionState,
    pub(super) origin: SessionOrigin,
    /// API sessions while calling: our INVITE to the phone (CANCEL is built from it).
    pub(super) invite: Option<(TxKey, rsip::Request)>,
    pub(super) provisional_seen: bool,
    /// API sessions: the ACK of the phone's 2xx, re-sent if the 2xx is retransmitted.
    pub(super) ack: Option<rsip::Request>,
    /// API sessions: when a phone still ringing is given up.
    pub(super) ring_deadline: Option<Instant>,
}

/// The media plane's leg id of a session (0 and 1 are the call's own legs).
pub(super) fn media_leg_of(sid: SessionId) -> LegId {
    (sid % u64::from(u32::MAX - 2)) as LegId + 2
}

/// Why a session request is refused (DESIGN §4): a SIP code and reason phrase each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Trunk,
    NoSuchExtension,
    SelfMonitoring,
    BuiltInBridgeOff,
    NotAllowed,
    AgentNotInCall,
    NoOffer,
    /// The agent's calls are private (CUCM Privacy): no barge.
    Privacy,
    /// Digest credentials were given but wrong.
    Unauthenticated,
}

impl Refusal {
    pub fn code(self) -> u16 {
        match self {
            Refusal::NoSuchExtension => 404,
            Refusal::AgentNotInCall => 480,
            Refusal::Unauthenticated => 401,
            Refusal::NoOffer => 488,
            _ => 403,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Trunk => "Forbidden (trunks cannot start sessions)",
            Refusal::NoSuchExtension => "Not Found (no such extension)",
            Refusal::SelfMonitoring => "Forbidden (cannot monitor yourself)",
            Refusal::BuiltInBridgeOff => "Built-In-Bridge off",
            Refusal::NotAllowed => "Forbidden (not allowed for this agent or mode)",
            Refusal::AgentNotInCall => "Temporarily Unavailable (agent not in a call)",
            Refusal::NoOffer => "Not Acceptable Here (SDP offer required)",
            Refusal::Privacy => "Forbidden (agent privacy: barge not allowed)",
            Refusal::Unauthenticated => "Unauthorized",
        }
    }

    /// Stable machine-readable key (API problem documents, metrics labels, audit).
    pub fn key(self) -> &'static str {
        match self {
            Refusal::Trunk => "trunk",
            Refusal::NoSuchExtension => "no_such_extension",
            Refusal::SelfMonitoring => "self",
            Refusal::BuiltInBridgeOff => "builtin_bridge_off",
            Refusal::NotAllowed => "not_allowed",
            Refusal::AgentNotInCall => "agent_not_in_call",
            Refusal::NoOffer => "no_offer",
            Refusal::Privacy => "privacy",
            Refusal::Unauthenticated => "unauthenticated",
        }
    }

    /// Short human-readable title.
    pub fn title(self) -> &'static str {
        match self {
            Refusal::Trunk => "Trunks cannot start sessions",
            Refusal::NoSuchExtension => "No such extension",
            Refusal::SelfMonitoring => "You cannot monitor yourself",
            Refusal::BuiltInBridgeOff => "Built-In-Bridge off on this device",
            Refusal::NotAllowed => "Not allowed by policy",
            Refusal::AgentNotInCall => "Agent not in a call",
            Refusal::NoOffer => "SDP offer required",
            Refusal::Privacy => "Agent privacy: barge not allowed",
            Refusal::Unauthenticated => "Not authenticated",
        }
    }
}

fn role_of(mode: Mode) -> MediaRole {
    MediaRole::Supervisor(mode)
}

impl Engine {
    /// Check a session request; on success, the agent call to attach to.
    pub(super) fn authorize_session(
        &self,
        caller: &Caller,
        mode: Mode,
        ext: &str,
        call: Option<CallId>,
    ) -> Result<CallId, Refusal> {
        let supervisor = match caller {
            Caller::Trunk(_) => return Err(Refusal::Trunk),
            Caller::User(u) => u,
        };
        let Some(agent) = self.cfg.user(ext) else {
            return Err(Refusal::NoSuchExtension);
        };
        if supervisor == ext {
            return Err(Refusal::SelfMonitoring);
        }
        let Some(sup) = self.cfg.user(supervisor) else {
            return Err(Refusal::NotAllowed);
        };
        if !agent.builtin_bridge {
            return Err(Refusal::BuiltInBridgeOff);
        }
        if !sup.has_role(Role::Supervisor) || !self.cfg.may(sup, agent, mode) {
            return Err(Refusal::NotAllowed);
        }
        if mode == Mode::Barge && agent.privacy {
            return Err(Refusal::Privacy);
        }
        match call {
            // A Join names the call itself: it must still be the agent's, connected, unpromoted.
            Some(id) => self
                .calls
                .get(&id)
                .filter(|c| {
                    c.state == CallState::Connected
                        && c.promoted.is_none()
                        && c.agent_user.as_deref() == Some(ext)
                })
                .map(|_| id)
                .ok_or(Refusal::AgentNotInCall),
            None => self.active_call_of(ext).ok_or(Refusal::AgentNotInCall),
        }
    }

    /// The call and agent a `Join` header (RFC 3911) names: `call-id;to-tag=..;from-tag=..`, the
    /// tags as seen by us (to-tag = our tag on that dialog).
    pub(super) fn join_target(&self, join: &str) -> Option<(CallId, String)> {
        let mut parts = join.split(';');
        let call_id = parts.next()?.trim();
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            match p.split_once('=') {
                Some((k, v)) if k.trim().eq_ignore_ascii_case("to-tag") => to_tag = Some(v.trim()),
                Some((k, v)) if k.trim().eq_ignore_ascii_case("from-tag") => {
                    from_tag = Some(v.trim())
                }
                _ => {}
            }
        }
        let key = (call_id.to_string(), to_tag?.to_string());
        let Some(&DialogRef::Leg(id, side)) = self.dialogs.get(&key) else {
            return None;
        };
        let call = self.calls.get(&id)?;
        if from_tag.is_some_and(|f| call.leg(side).remote_tag.as_deref() != Some(f)) {
            return None;
        }
        Some((id, call.agent_user.clone()?))
    }

    /// The agent's active, connected call; the most recently connected if several (DESIGN §4).
    pub(super) fn active_call_of(&self, ext: &str) -> Option<CallId> {
        self.calls
            .iter()
            .filter(|(_, c)| {
                c.state == CallState::Connected
                    && c.promoted.is_none()
                    && c.agent_user.as_deref() == Some(ext)
            })
            .max_by_key(|(id, c)| (c.connected_at, **id))
            .map(|(id, _)| *id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_feature_code(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        caller: &Caller,
        mode: Mode,
        ext: &str,
        offer: Option<rtc_sdp::description::session::SessionDescription>,
        source: SocketAddr,
        transport: Transport,
        call: Option<CallId>,
    ) {
        let who = match caller {
            Caller::Trunk(t) => format!("trunk {t}"),
            Caller::User(u) => u.clone(),
        };
        let attach = self
            .authorize_session(caller, mode, ext, call)
            .and_then(|call| match offer {
                Some(o) => Ok((call, o)),
                None => Err(Refusal::NoOffer),
            });
        let (call_id, offer) = match attach {
            Ok(x) => x,
            Err(refusal) => {
                info!(supervisor = %who, agent = %ext, mode = mode.as_str(), code = refusal.code(), reason = refusal.reason(), "session refused");
                let target = call.or_else(|| self.active_call_of(ext));
                self.refuse_session(&who, ext, target, mode, refusal.key(), SessionOrigin::Phone);
                self.respond_new_dialog(now, (&key, &req), refusal.code(), refusal.reason(), &[]);
                return;
            }
        };
        let Ok(port) = self.pool.allocate() else {
            info!(supervisor = %who, agent = %ext, mode = mode.as_str(), reason = "no_media_ports", "session refused");
            self.refuse_session(
                &who,
                ext,
                Some(call_id),
                mode,
                "no_media_ports",
                SessionOrigin::Phone,
            );
            self.respond_new_dialog(
                now,
                (&key, &req),
                503,
                "Service Unavailable (no media ports)",
                &[],
            );
            return;
        };
        let sid = self.next_session;
        self.next_session += 1;
        // DESIGN §5: the start is on record before the supervisor hears anything.
        let start = self.audit_record(
            AuditEvent::Start,
            &who,
            ext,
            Some(call_id),
            sid,
            mode,
            None,
            SessionOrigin::Phone,
        );
        if self.audit_write(start).is_err() {
            self.pool.release(port);
            self.respond_new_dialog(
                now,
                (&key, &req),
                500,
                "Server Internal Error (audit log unavailable)",
                &[],
            );
            return;
        }
        let media_leg = media_leg_of(sid);
        let from = message::header(&req.headers, "From").unwrap_or_default();
        let to = message::header(&req.headers, "To").unwrap_or_default();
        let contact = message::header(&req.headers, "Contact").unwrap_or_default();
        let sip_call_id = message::call_id(&req.headers).unwrap_or_default();
        let leg = Leg {
            call_id: sip_call_id,
            local_tag: self.ids.tag(),
            remote_tag: message::from_tag(&req.headers),
            local_uri: wire::strip_tag(&to),
            remote_uri: wire::strip_tag(&from),
            remote_target: message::addr_uri(&contact).unwrap_or_default(),
            route_set: message::headers_all(&req.headers, "Record-Route"),
            local_cseq: self.number() % 10_000 + 1,
            remote_cseq: message::cseq(&req.headers).map(|(n, _)| n),
            peer: source,
            transport,
            rtp_port: port,
            origin: Origin {
                session_id: u64::from(self.number()),
                version: 1,
            },
            last_sdp_sent: None,
            remote_media: None,
        };
        let supervisor = match caller {
            Caller::User(u) => u.clone(),
            Caller::Trunk(_) => String::new(),
        };
        let call_span = self
            .calls
            .get(&call_id)
            .map(|c| c.span.clone())
            .unwrap_or_else(tracing::Span::none);
        let span = info_span!(parent: &call_span, "session", id = sid, supervisor = %supervisor, agent = %ext);
        let (body, info, codec) = session_answer(offer, self.cfg.rtp.address, port, &leg.origin);
        let mut leg = leg;
        leg.last_sdp_sent = Some(body.clone());
        leg.remote_media = info.clone();
        let local_tag = leg.local_tag.clone();
        self.server_invites
            .insert(key.clone(), DialogRef::Session(sid));
        let remote = info.as_ref().and_then(|i| i.rtp_addr);
        self.insert_session(
            sid,
            Session {
                call: call_id,
                supervisor: supervisor.clone(),
                agent: ext.to_string(),
                mode,
                leg,
                media_leg,
                span: span.clone(),
                state: SessionState::Active,
                origin: SessionOrigin::Phone,
                invite: None,
                provisional_seen: false,
                ack: None,
                ring_deadline: None,
            },
            LegSetup {
                leg: media_leg,
                port,
                remote,
                role: role_of(mode),
                codec,
            },
        );
        {
            let _s = span.enter();
            info!(mode = mode.as_str(), call = call_id, "session started");
        }
        self.notices.push_back(Notice::SessionStarted {
            session: sid,
            call: call_id,
            supervisor,
            agent: ext.to_string(),
            mode,
            origin: SessionOrigin::Phone,
        });
        self.play_notification(sid, mode == Mode::Barge);
        self.respond_sdp(
            now,
            (&key, &req),
            (200, "OK"),
            &local_tag,
            transport,
            Some(body),
        );
    }

    /// In-dialog requests from a supervisor.
    pub(super) fn on_session_request(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        sid: SessionId,
    ) {
        let method = req.method.to_string();
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if !s.leg.accept_cseq(&req) {
            self.respond_out_of_order(now, (&key, &req));
            return;
        }
        match method.as_str() {
            "BYE" => {
                self.respond(now, (&key, &req), 200, "OK", None, &[]);
                self.end_session_and_promoted_call(now, sid, "supervisor hung up", false);
            }
            "INFO" => {
                let ctype = message::header(&req.headers, "Content-Type")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let digit = if ctype.starts_with("application/dtmf-relay")
                    || ctype.starts_with("application/dtmf")
                {
                    std::str::from_utf8(&req.body)
                        .ok()
                        .and_then(parse_dtmf_relay)
                } else {
                    None
                };
                self.respond(now, (&key, &req), 200, "OK", None, &[]);
                if let Some(d) = digit {
                    self.on_session_digit(now, sid, d, "SIP INFO");
                }
            }
            "INVITE" | "UPDATE" => {
                let Some(s) = self.sessions.get_mut(&sid) else {
                    return;
                };
                // A re-offer (hold, codec or address change) is answered here: the supervisor's
                // leg ends at bibridge, nothing to forward.
                let local_tag = s.leg.local_tag.clone();
                let transport = s.leg.transport;
                if req.method == rsip::Method::Invite {
                    self.server_invites
                        .insert(key.clone(), DialogRef::Session(sid));
                }
                if let Some(uri) =
                    message::header(&req.headers, "Contact").and_then(|c| message::addr_uri(&c))
                {
                    s.leg.remote_target = uri;
                }
                let mut body = s.leg.last_sdp_sent.clone();
                if !req.body.is_empty() {
                    // A new offer: answered like the first one, from what it offers now.
                    let offer = sdp::parse(&req.body)
                        .and_then(|mut o| sdp::restrict_offer(&mut o).map(|_| o));
                    let Ok(offer) = offer else {
                        self.respond(now, (&key, &req), 488, "Not Acceptable Here", None, &[]);
                        return;
                    };
                    s.leg.origin.version += 1;
                    let (answer, info, codec) =
                        session_answer(offer, self.cfg.rtp.address, s.leg.rtp_port, &s.leg.origin);
                    s.leg.last_sdp_sent = Some(answer.clone());
                    s.leg.remote_media = info.clone();
                    body = Some(answer);
                    let (call, leg) = (s.call, s.media_leg);
                    // The call's own hold state stays as it is: a supervisor holding changes
                    // nothing for the customer and agent.
                    let hold = self
                        .calls
                        .get(&call)
                        .is_some_and(|c| c.hold[0] || c.hold[1]);
                    self.media.push_back(MediaCommand::Update {
                        call,
                        leg,
                        remote: info.as_ref().and_then(|i| i.rtp_addr),
                        hold,
                        codec,
                    });
                }
                self.respond_sdp(now, (&key, &req), (200, "OK"), &local_tag, transport, body);
            }
            "OPTIONS" => self.respond(now, (&key, &req), 200, "OK", None, &[]),
            _ => self.respond_unsupported(now, (&key, &req)),
        }
    }

    /// A digit from the supervisor: switch mode if it maps to one and policy allows it.
    pub(super) fn on_session_digit(
        &mut self,
        _now: Instant,
        sid: SessionId,
        digit: char,
        via: &str,
    ) {
        let Some(mode) = self.cfg.features.dtmf_mode(digit) else {
            debug!(%digit, "DTMF digit without meaning consumed");
            return;
        };
        self.switch_mode(sid, mode, via);
    }

    /// Change a session's mode (DTMF, later the operator console).
    pub fn switch_mode(&mut self, sid: SessionId, mode: Mode, via: &str) -> bool {
        self.try_switch_mode(sid, mode, via).is_ok()
    }

    /// [`Engine::switch_mode`], saying why a switch was refused.
    pub(super) fn try_switch_mode(
        &mut self,
        sid: SessionId,
        mode: Mode,
        via: &str,
    ) -> Result<(), Refusal> {
        let Some(s) = self.sessions.get(&sid) else {
            return Err(Refusal::NotAllowed);
        };
        let refusal = match (self.cfg.user(&s.supervisor), self.cfg.user(&s.agent)) {
            (Some(sup), Some(agent)) if !self.cfg.may(sup, agent, mode) => {
                Some(Refusal::NotAllowed)
            }
            (Some(_), Some(agent)) if mode == Mode::Barge && agent.privacy => {
                Some(Refusal::Privacy)
            }
            (Some(_), Some(_)) => None,
            _ => Some(Refusal::NotAllowed),
        };
        let _e = s.span.enter();
        if let Some(r) = refusal {
            info!(
                mode = mode.as_str(),
                via,
                reason = r.key(),
                "mode change refused"
            );
            let (sup, agent, call, origin) =
                (s.supervisor.clone(), s.agent.clone(), s.call, s.origin);
            drop(_e);
            self.refuse_session(&sup, &agent, Some(call), mode, r.key(), origin);
            return Err(r);
        }
        if s.mode == mode {
            return Ok(());
        }
        info!(
            from = s.mode.as_str(),
            to = mode.as_str(),
            via,
            "session mode changed"
        );
        let (call, leg) = (s.call, s.media_leg);
        drop(_e);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.mode = mode;
        }
        let rec = self.session_record(AuditEvent::Mode, sid, Some(format!("via {via}")));
        if let Some(rec) = rec {
            // A mode change is already in effect on the phone's side: a failed write is logged
            // (by audit_write) but does not undo it.
            let _ = self.audit_write(rec);
        }
        self.media.push_back(MediaCommand::SetRole {
            call,
            leg,
            role: role_of(mode),
        });
        self.notices
            .push_back(Notice::SessionMode { session: sid, mode });
        if mode == Mode::Barge
            && self
                .sessions
                .get(&sid)
                .is_some_and(|s| s.state == SessionState::Active)
        {
            self.play_notification(sid, true);
        }
        Ok(())
    }

    /// A DTMF digit the mixer took from a supervisor's RTP.
    pub(super) fn on_media_dtmf(&mut self, now: Instant, call: CallId, leg: LegId, digit: char) {
        let sid = self.calls.get(&call).and_then(|c| {
            c.sessions
                .iter()
                .copied()
                .find(|s| self.sessions.get(s).is_some_and(|s| s.media_leg == leg))
        });
        if let Some(sid) = sid {
            self.on_session_digit(now, sid, digit, "RFC 4733");
        }
    }

    /// Stop a session: media leg removed, port returned, BYE to the supervisor if `bye`.
    pub(super) fn end_session(&mut self, now: Instant, sid: SessionId, reason: &str, bye: bool) {
        if let Some(rec) = self.session_record(AuditEvent::Stop, sid, Some(reason.to_string())) {
            let _ = self.audit_write(rec);
        }
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
        if let Some(at) = s.ring_deadline {
            self.ring_deadlines.remove(&(at, sid));
        }
        if s.state == SessionState::Calling {
            // No dialog yet: the phone is still ringing (or never answered).
            self.abandon_session_invite(now, &s);
        } else if bye {
            self.keep_acking_session_invite(sid, &s);
            if let Some((req, peer, transport)) = request_on_leg(
                &mut self.ids,
                &self.cfg.sip.user_agent,
                self.local,
                &mut s.leg,
                "BYE",
                None,
                ReqOpts::default(),
            ) {
                let key = self.txl.send_request(now, req, peer, transport);
                self.client.insert(key, (s.call, ClientPurpose::Bye));
            }
        }
        let dkey = (s.leg.call_id.clone(), s.leg.local_tag.clone());
        self.dialogs.remove(&dkey);
        self.ended_dialogs.insert(dkey, now);
        self.pool.release(s.leg.rtp_port);
        if let Some(c) = self.calls.get_mut(&s.call) {
            c.sessions.retain(|x| *x != sid);
        }
        self.media.push_back(MediaCommand::RemoveLeg {
            call: s.call,
            leg: s.media_leg,
        });
        let _e = s.span.enter();
        info!(reason, mode = s.mode.as_str(), "session ended");
        self.notices.push_back(Notice::SessionEnded {
            session: sid,
            reason: reason.to_string(),
        });
    }

    /// The supervisor never ACKed our 2xx (RFC 3261 §13.3.1.4): its dialog ends with a BYE. Only
    /// a promoted supervisor, who took the agent's place, takes the customer's call with it.
    pub(super) fn end_session_no_ack(&mut self, now: Instant, sid: SessionId) {
        self.end_session_and_promoted_call(now, sid, "no ACK for 2xx", true);
    }

    /// End a session; if its supervisor had taken the agent's place (barge promotion), nobody is
    /// left for the customer, so the customer's call ends with it (`reason` for both).
    pub(super) fn end_session_and_promoted_call(
        &mut self,
        now: Instant,
        sid: SessionId,
        reason: &str,
        bye: bool,
    ) {
        let Some(call) = self.sessions.get(&sid).map(|s| s.call) else {
            return;
        };
        let promoted = self
            .calls
            .get(&call)
            .is_some_and(|c| c.promoted == Some(sid));
        self.end_session(now, sid, reason, bye);
        if promoted {
            self.end_call(now, call, &format!("promoted supervisor: {reason}"));
        }
    }

    /// The agent hung up. A supervisor in barge takes the agent's place (CUCM's barge promotion);
    /// returns true if that happened, false if the call should end.
    pub(super) fn try_barge_promotion(&mut self, call_id: CallId, side: Side) -> bool {
        let Some(call) = self.calls.get(&call_id) else {
            return false;
        };
        if call.agent_side != Some(side) || call.promoted.is_some() {
            return false;
        }
        // Only a supervisor already in the call: a phone still ringing for a console session
        // could not take the customer over (and might never answer).
        let barger = call.sessions.iter().copied().find(|sid| {
            self.sessions
                .get(sid)
                .is_some_and(|s| s.mode == Mode::Barge && s.state == SessionState::Active)
        });
        let Some(sid) = barger else { return false };
        let Some(s) = self.sessions.get(&sid) else {
            return false;
        };
        let leg = s.media_leg;
        {
            let _e = s.span.enter();
            info!("barge promotion: agent left, supervisor stays with the customer");
        }
        let agent_leg = side.leg_id();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return false;
        };
        call.promoted = Some(sid);
        let agent_dialog = (
            call.leg(side).call_id.clone(),
            call.leg(side).local_tag.clone(),
        );
        self.dialogs.remove(&agent_dialog);
        self.media.push_back(MediaCommand::RemoveLeg {
            call: call_id,
            leg: agent_leg,
        });
        self.media.push_back(MediaCommand::SetRole {
            call: call_id,
            leg,
            role: MediaRole::Agent,
        });
        true
    }

    /// Register a new session: its dialog, its place in the call and its media leg (bound now;
    /// mixed once `setup` has a codec).
    pub(super) fn insert_session(&mut self, sid: SessionId, s: Session, setup: LegSetup) {
        let call = s.call;
        self.dialogs.insert(
            (s.leg.call_id.clone(), s.leg.local_tag.clone()),
            DialogRef::Session(sid),
        );
        self.sessions.insert(sid, s);
        if let Some(c) = self.calls.get_mut(&call) {
            c.sessions.push(sid);
        }
        self.media.push_back(MediaCommand::AddLeg { call, setup });
    }
}

/// Our answer to a supervisor's (restricted) offer: one voice codec plus telephone-event, the
/// direction mirrored, anchored on the session's port. Returns the body, the offer's media and
/// the codec chosen.
fn session_answer(
    mut answer: rtc_sdp::description::session::SessionDescription,
    ip: std::net::IpAddr,
    port: u16,
    origin: &Origin,
) -> (Vec<u8>, Option<AudioInfo>, Option<LegCodec>) {
    let info = sdp::audio_info(&answer).ok();
    let codec = info.as_ref().and_then(LegCodec::from_info);
    if let Some(c) = &codec {
        sdp::keep_payload_types(&mut answer, &[Some(c.payload_type), c.dtmf_payload_type]);
    }
    let dir = info
        .as_ref()
        .map(|i| i.direction)
        .unwrap_or(sdp::Direction::SendRecv);
    sdp::set_direction(&mut answer, dir.answer());
    sdp::anchor(&mut answer, ip, port, origin);
    (sdp::print(&answer).into_bytes(), info, codec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_design_codes() {
        assert_eq!(Refusal::NoSuchExtension.code(), 404);
        assert_eq!(Refusal::AgentNotInCall.code(), 480);
        for r in [
            Refusal::BuiltInBridgeOff,
            Refusal::NotAllowed,
            Refusal::SelfMonitoring,
            Refusal::Trunk,
        ] {
            assert_eq!(r.code(), 403);
        }
        assert_eq!(Refusal::BuiltInBridgeOff.reason(), "Built-In-Bridge off");
    }
}
