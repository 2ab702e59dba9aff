//! Supervisor sessions (docs/design.md §3, §4) once started (by a feature code, see
//! `feature_code`, or by the API, see `control`): the [`Sessions`] table the engine owns, and
//! what happens to a session: DTMF (RFC 4733 from the mixer, or SIP INFO `application/dtmf-relay`)
//! switches the mode; the supervisor's BYE, or the end of the agent's call, stops it.
//!
//! A session is one dialog (the supervisor called us: we are its UAS) plus one leg in the agent
//! call's media plane. Who hears whom follows from the leg's [`MediaRole`] in the mixer.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use bibridge_media::dtmf::parse_dtmf_relay;
use bibridge_sip::message;
use bibridge_sip::transaction::TxKey;
use tracing::{debug, info};

use super::calls::Leg;
use super::media_plane::{LegCodec, LegSetup, MediaCommand, MediaRole};
use super::refusal::Refusal;
use super::{request_on_leg, ClientPurpose, DialogRef, Engine, Notice, Orphan, ReqOpts};
use crate::audit::AuditEvent;
use crate::config::Mode;
use crate::ids::{CallId, LegId, SessionId, SessionOrigin, Side};
use crate::sdp;
use crate::sdp::{AudioInfo, Origin};

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

/// A session's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// bibridge is calling the supervisor's phone (API sessions only).
    Calling,
    /// The supervisor's leg is attached to the call.
    Active,
}

impl SessionState {
    /// Stable name (API, events).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Calling => "calling",
            SessionState::Active => "active",
        }
    }
}

/// The engine's supervisor sessions: the table, the next id, and the ring deadlines of console
/// sessions whose phone is still ringing (kept in step with the table).
#[derive(Debug)]
pub(super) struct Sessions {
    table: HashMap<SessionId, Session>,
    next: SessionId,
    /// When a console session's still-ringing phone is given up (`http.answer_timeout_s`).
    ring_deadlines: BTreeSet<(Instant, SessionId)>,
}

impl Sessions {
    pub(super) fn new() -> Sessions {
        Sessions {
            table: HashMap::new(),
            next: 1,
            ring_deadlines: BTreeSet::new(),
        }
    }

    /// A fresh session id (never 0: audit records use 0 for "no session").
    pub(super) fn next_id(&mut self) -> SessionId {
        let sid = self.next;
        self.next += 1;
        sid
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Console sessions whose phone is still ringing.
    pub(super) fn ringing(&self) -> usize {
        self.ring_deadlines.len()
    }

    pub(super) fn get(&self, sid: &SessionId) -> Option<&Session> {
        self.table.get(sid)
    }

    pub(super) fn get_mut(&mut self, sid: &SessionId) -> Option<&mut Session> {
        self.table.get_mut(sid)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Session> {
        self.table.values()
    }

    /// Add a session; its ring deadline, if any, is watched from now on.
    pub(super) fn insert(&mut self, sid: SessionId, s: Session) {
        if let Some(at) = s.ring_deadline {
            self.ring_deadlines.insert((at, sid));
        }
        self.table.insert(sid, s);
    }

    /// Take a session out, with its ring deadline.
    pub(super) fn remove(&mut self, sid: &SessionId) -> Option<Session> {
        let s = self.table.remove(sid)?;
        if let Some(at) = s.ring_deadline {
            self.ring_deadlines.remove(&(at, *sid));
        }
        Some(s)
    }

    /// The phone answered: the session is no longer given up for ringing.
    pub(super) fn stop_ringing(&mut self, sid: SessionId) {
        if let Some(at) = self
            .table
            .get_mut(&sid)
            .and_then(|s| s.ring_deadline.take())
        {
            self.ring_deadlines.remove(&(at, sid));
        }
    }

    /// The earliest ring deadline of a console session.
    pub(super) fn next_ring_deadline(&self) -> Option<Instant> {
        self.ring_deadlines.first().map(|(at, _)| *at)
    }

    /// A session whose ring deadline is due (its entry leaves the set), if any.
    pub(super) fn pop_ring_deadline(&mut self, now: Instant) -> Option<SessionId> {
        let &(at, sid) = self.ring_deadlines.first()?;
        if at > now {
            return None;
        }
        self.ring_deadlines.remove(&(at, sid));
        Some(sid)
    }
}

/// The media plane's leg id of a session (0 and 1 are the call's own legs).
pub(super) fn media_leg_of(sid: SessionId) -> LegId {
    (sid % u64::from(u32::MAX - 2)) as LegId + 2
}

pub(super) fn role_of(mode: Mode) -> MediaRole {
    MediaRole::Supervisor(mode)
}

impl Engine {
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
        self.audit_session(AuditEvent::Mode, sid, format!("via {via}"));
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
        self.audit_session(AuditEvent::Stop, sid, reason.to_string());
        let Some(mut s) = self.sessions.remove(&sid) else {
            return;
        };
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

    /// Phones still ringing for a console session past `http.answer_timeout_s`: given up.
    pub(super) fn expire_ringing_sessions(&mut self, now: Instant) {
        while let Some(sid) = self.sessions.pop_ring_deadline(now) {
            self.end_session(now, sid, "no answer", true);
        }
    }

    /// An answered API session ends while its INVITE's client transaction still runs: a
    /// retransmitted 2xx (our ACK lost) must still be ACKed (RFC 3261 §13.2.2.4), without a
    /// second BYE, so the transaction becomes an orphan that has been hung up already.
    pub(super) fn keep_acking_session_invite(&mut self, sid: SessionId, s: &Session) {
        if s.origin != SessionOrigin::Api {
            return;
        }
        let key = self
            .client
            .iter()
            .find(|(_, (_, p))| *p == ClientPurpose::SessionInvite(sid))
            .map(|(k, _)| k.clone());
        if let Some(key) = key {
            self.orphans.insert(
                key,
                Orphan {
                    peer: s.leg.peer,
                    transport: s.leg.transport,
                    cancel: None,
                    hung_up: true,
                },
            );
        }
    }

    /// A session that is still calling ends: CANCEL the INVITE (after a provisional response,
    /// RFC 3261 §9.1), and keep its transaction as an orphan so that a late 2xx is hung up.
    pub(super) fn abandon_session_invite(&mut self, now: Instant, s: &Session) {
        let Some((key, invite)) = &s.invite else {
            return;
        };
        let orphan = Orphan {
            peer: s.leg.peer,
            transport: s.leg.transport,
            cancel: (!s.provisional_seen).then(|| invite.clone()),
            hung_up: false,
        };
        if s.provisional_seen {
            self.send_cancel(now, s.call, invite, s.leg.peer, s.leg.transport);
        }
        self.orphans.insert(key.clone(), orphan);
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
pub(super) fn session_answer(
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
