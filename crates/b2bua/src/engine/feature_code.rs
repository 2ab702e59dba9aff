//! The feature-code path (docs/design.md §4): a supervisor's phone dials `*81<ext>` (monitor),
//! `*82<ext>` (coach) or `*83<ext>` (barge), or sends an INVITE with a `Join` header (RFC 3911,
//! barge). This file reads the request (the codes themselves are configured in
//! [`FeatureCodes`](crate::config::FeatureCodes)), authorizes it against the policy, and either
//! refuses it (on record) or answers and attaches the supervisor's leg to the agent's call.

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::{debug, info, info_span};

use super::auth::Caller;
use super::calls::{CallState, Leg};
use super::compliance::{Parked, Stored};
use super::media_plane::LegSetup;
use super::refusal::Refusal;
use super::sessions::{media_leg_of, role_of, session_answer, Session, SessionState};
use super::{DialogRef, Engine, Notice};
use crate::audit::AuditError;
use crate::config::{Mode, Role};
use crate::ids::{CallId, SessionId, SessionOrigin};
use crate::wire;

/// A feature-code session authorized, its port taken and its start record on its way to the
/// audit log: what it takes to answer once the record is stored.
pub(super) struct FeatureCodeStart {
    pub(super) key: TxKey,
    /// A CANCEL came while the record was being written: answer 487 when it is.
    pub(super) cancelled: bool,
    req: rsip::Request,
    /// Who asked, as the audit log names them (`trunk <name>` for a trunk).
    pub(super) who: String,
    supervisor: String,
    mode: Mode,
    pub(super) ext: String,
    offer: rtc_sdp::description::session::SessionDescription,
    source: SocketAddr,
    transport: Transport,
    call_id: CallId,
    port: u16,
    sid: SessionId,
}

impl Engine {
    /// Whether an INVITE asks for a session rather than a call: a `Join` header, or a dialled
    /// feature code.
    pub(super) fn wants_session(&self, req: &rsip::Request, dialled: &str) -> bool {
        message::header(&req.headers, "Join").is_some()
            || self.cfg.features.parse_dialled(dialled).is_some()
    }

    /// An INVITE that [`wants_session`](Self::wants_session): a Join names the call to barge
    /// into, a feature code the mode and the agent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_session_invite(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        caller: &Caller,
        dialled: &str,
        offer: Option<rtc_sdp::description::session::SessionDescription>,
        source: SocketAddr,
        transport: Transport,
    ) {
        // RFC 3911: joining a dialog we hold is a barge into its call (docs/design.md §4).
        if let Some(join) = message::header(&req.headers, "Join") {
            match self.join_target(&join) {
                Some((call, ext)) => self.on_feature_code(
                    now,
                    key,
                    req,
                    caller,
                    Mode::Barge,
                    &ext,
                    offer,
                    source,
                    transport,
                    Some(call),
                ),
                None => self.respond_new_dialog(
                    now,
                    (&key, &req),
                    481,
                    "Call/Transaction Does Not Exist",
                    &[],
                ),
            }
            return;
        }
        if let Some((mode, ext)) = self.cfg.features.parse_dialled(dialled) {
            let ext = ext.to_string();
            self.on_feature_code(
                now, key, req, caller, mode, &ext, offer, source, transport, None,
            );
        }
    }

    /// Wrong digest credentials on a feature code (the 401 is sent already): a refused
    /// session, on record, at most `[compliance] unauthenticated_refusals_per_minute` records per
    /// source address and minute (then one summary record): anybody can send these.
    pub(super) fn refuse_unauthenticated(
        &mut self,
        now: Instant,
        req: &rsip::Request,
        user: &str,
        source: SocketAddr,
    ) {
        let dialled = message::uri_user(&req.uri).unwrap_or_default();
        if let Some((mode, ext)) = self.cfg.features.parse_dialled(&dialled) {
            if !self.allow_unauthenticated_refusal(now, source.ip()) {
                debug!(%source, %user, "unauthenticated refusal not audited (rate limit)");
                return;
            }
            let ext = ext.to_string();
            let call = self.active_call_of(&ext);
            self.refuse_session(
                user,
                &ext,
                call,
                mode,
                Refusal::Unauthenticated.key(),
                SessionOrigin::Phone,
            );
        }
    }

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

    /// The agent's active, connected call; the most recently connected if several
    /// (docs/design.md §4).
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
        let sid = self.sessions.next_id();
        let supervisor = match caller {
            Caller::User(u) => u.clone(),
            Caller::Trunk(_) => String::new(),
        };
        // docs/design.md §5: the start is on record before the supervisor hears anything.
        let stored = self.audit_start(&who, ext, call_id, sid, mode, SessionOrigin::Phone);
        let ctx = FeatureCodeStart {
            key,
            cancelled: false,
            req,
            who,
            supervisor,
            mode,
            ext: ext.to_string(),
            offer,
            source,
            transport,
            call_id,
            port,
            sid,
        };
        match stored {
            Stored::Now(r) => self.resume_feature_code(now, ctx, r),
            Stored::Later(id) => self.park(id, Parked::FeatureCode(Box::new(ctx))),
        }
    }

    /// A CANCEL for a feature-code INVITE whose start record is still being written: marks it
    /// (answered 487 once the record is back). `false`: no such parked INVITE.
    pub(super) fn cancel_parked_feature_code(&mut self, invite: &TxKey) -> bool {
        for p in self.audit.parked.values_mut() {
            if let Parked::FeatureCode(ctx) = p {
                if ctx.key == *invite {
                    ctx.cancelled = true;
                    return true;
                }
            }
        }
        false
    }

    /// A feature-code session whose start record is stored (`Ok`: attach and answer 200) or
    /// could not be (`Err`: 500, the port goes back).
    pub(super) fn resume_feature_code(
        &mut self,
        now: Instant,
        ctx: FeatureCodeStart,
        stored: Result<(), AuditError>,
    ) {
        let FeatureCodeStart {
            key,
            cancelled,
            req,
            who,
            supervisor,
            mode,
            ext,
            offer,
            source,
            transport,
            call_id,
            port,
            sid,
        } = ctx;
        let ext = ext.as_str();
        if cancelled {
            self.pool.release(port);
            if stored.is_ok() {
                self.audit_abandoned_start(
                    &who,
                    ext,
                    call_id,
                    sid,
                    mode,
                    SessionOrigin::Phone,
                    "cancelled",
                );
            }
            self.respond_new_dialog(now, (&key, &req), 487, "Request Terminated", &[]);
            return;
        }
        if stored.is_err() {
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
        // While the record was being written the call may have ended.
        let still_there = self
            .calls
            .get(&call_id)
            .is_some_and(|c| c.state == CallState::Connected);
        if !still_there {
            self.pool.release(port);
            self.audit_abandoned_start(
                &who,
                ext,
                call_id,
                sid,
                mode,
                SessionOrigin::Phone,
                "call ended before the session connected",
            );
            let r = Refusal::AgentNotInCall;
            self.respond_new_dialog(now, (&key, &req), r.code(), r.reason(), &[]);
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
            origin: self.fresh_origin(),
            last_sdp_sent: None,
            remote_media: None,
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
}
