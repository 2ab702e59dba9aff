//! New calls: an INVITE from the trunk or an authenticated user is routed to a user or a trunk,
//! its ports are opened, and the callee is invited once they are bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::{info, info_span, warn};

use super::auth::Caller;
use super::calls::{Call, CallState, Leg};
use super::media_plane::{LegCodec, LegSetup, MediaCommand, MediaRole};
use super::{request_on_leg, ClientPurpose, DialogRef, Engine, Notice, ReqOpts};
use crate::config::RouteTarget;
use crate::ids::{CallId, Side};
use crate::wire::{bare_uri, strip_tag};
use crate::{sdp, wire};

/// Where a call goes.
pub(super) struct Target {
    uri: String,
    to_uri: String,
    dest: SocketAddr,
    transport: Transport,
    label: String,
    /// The local user called, if any.
    user: Option<String>,
}

impl Engine {
    fn route(
        &self,
        now: Instant,
        dialled: &str,
        caller: &Caller,
    ) -> Result<Target, (u16, &'static str)> {
        if self.cfg.user(dialled).is_some() {
            if let Some(b) = self.registrar.lookup(now, dialled).first() {
                return Ok(Target {
                    // The binding's URI with its parameters (transport=, line=...): RFC 3261 §10.3.
                    uri: bare_uri(&b.contact).to_string(),
                    to_uri: format!("<sip:{dialled}@{}>", self.cfg.sip.domain),
                    dest: b.source,
                    transport: b.transport,
                    label: format!("user {dialled}"),
                    user: Some(dialled.to_string()),
                });
            }
            let contact = self.cfg.user(dialled).and_then(|u| u.contact.clone());
            if let Some((dest, transport)) = contact.as_deref().and_then(wire::uri_target) {
                return Ok(Target {
                    uri: contact.unwrap_or_default(),
                    to_uri: format!("<sip:{dialled}@{}>", self.cfg.sip.domain),
                    dest,
                    transport,
                    label: format!("user {dialled} (static contact)"),
                    user: Some(dialled.to_string()),
                });
            }
            return Err((480, "Temporarily Unavailable"));
        }
        match self.cfg.route(dialled) {
            Some((route, number)) => match &route.target {
                RouteTarget::Trunk(name) => {
                    if matches!(caller, Caller::Trunk(_)) {
                        // No hairpinning trunk to trunk: the number is simply not ours.
                        return Err((404, "Not Found"));
                    }
                    let Some(trunk) = self.cfg.trunk(name) else {
                        return Err((404, "Not Found"));
                    };
                    let transport = match trunk.transport {
                        crate::config::TrunkTransport::Udp => Transport::Udp,
                        crate::config::TrunkTransport::Tcp => Transport::Tcp,
                    };
                    Ok(Target {
                        uri: format!("sip:{number}@{}", trunk.address),
                        to_uri: format!("<sip:{number}@{}>", trunk.address),
                        dest: trunk.address,
                        transport,
                        label: format!("trunk {name}"),
                        user: None,
                    })
                }
                RouteTarget::Users => Err((404, "Not Found")),
            },
            None => Err((404, "Not Found")),
        }
    }

    pub(super) fn on_invite(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let local = self.local_addr(transport);
        // A request of ours coming back: a routing loop.
        let vias = message::headers_all(&req.headers, "Via");
        if vias.iter().skip(1).chain(vias.first()).any(|v| {
            v.contains(&local.to_string())
                && message::find_param(v, "branch")
                    .flatten()
                    .is_some_and(|b| b.starts_with(wire::BRANCH_MARK))
        }) {
            self.respond_new_dialog(now, (&key, &req), 482, "Loop Detected", &[]);
            return;
        }
        let max_forwards = message::max_forwards(&req.headers).unwrap_or(70);
        if max_forwards == 0 {
            self.respond_new_dialog(now, (&key, &req), 483, "Too Many Hops", &[]);
            return;
        }
        if !req.body.is_empty() {
            let ctype = message::header(&req.headers, "Content-Type").unwrap_or_default();
            if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
                self.respond_new_dialog(
                    now,
                    (&key, &req),
                    415,
                    "Unsupported Media Type",
                    &[("Accept", "application/sdp".into())],
                );
                return;
            }
        }
        // RFC 3261 §8.2.3 / RFC 4475 §3.3.15: our answers carry SDP; an Accept that lists types,
        // none of them SDP, gets 406 (an empty Accept is taken as no restriction).
        let accept = message::headers_all(&req.headers, "Accept");
        let mut types = accept
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|t| !t.is_empty())
            .peekable();
        if types.peek().is_some()
            && !types.any(|t| t == "application/sdp" || t == "application/*" || t == "*/*")
        {
            self.respond_new_dialog(
                now,
                (&key, &req),
                406,
                "Not Acceptable",
                &[(
                    "Warning",
                    "399 bibridge \"answers carry application/sdp\"".into(),
                )],
            );
            return;
        }
        let caller = match self.cfg.trunk_for_source(source) {
            Some(t) => Caller::Trunk(t.name.clone()),
            None => match self.authenticate(now, &key, &req) {
                Ok(user) => Caller::User(user),
                Err(failed) => {
                    if let Some(user) = failed {
                        self.refuse_unauthenticated(now, &req, &user, source);
                    }
                    return;
                }
            },
        };
        let dialled = message::uri_user(&req.uri).unwrap_or_default();
        let from = message::header(&req.headers, "From").unwrap_or_default();
        let caller_uri = message::addr_uri(&from).unwrap_or_default();
        let caller_user = caller_uri
            .strip_prefix("sip:")
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| u.to_string())
            .unwrap_or_else(|| "anonymous".into());
        let caller_label = match &caller {
            Caller::Trunk(t) => format!("{caller_user} via trunk {t}"),
            Caller::User(u) => format!("user {u}"),
        };
        // The offer, restricted to codecs we can handle.
        let offer = if req.body.is_empty() {
            None
        } else {
            match sdp::parse(&req.body).and_then(|mut s| sdp::restrict_offer(&mut s).map(|_| s)) {
                Ok(s) => Some(s),
                Err(e) => {
                    let (code, reason) = match e {
                        sdp::SdpError::Parse(_) => (400, "Bad Request (unparsable SDP)"),
                        _ => (488, "Not Acceptable Here"),
                    };
                    self.respond_new_dialog(now, (&key, &req), code, reason, &[]);
                    return;
                }
            }
        };
        self.respond(now, (&key, &req), 100, "Trying", None, &[]);
        if self.wants_session(&req, &dialled) {
            self.on_session_invite(now, key, req, &caller, &dialled, offer, source, transport);
            return;
        }
        let target = match self.route(now, &dialled, &caller) {
            Ok(t) => t,
            Err((code, reason)) => {
                info!(%dialled, caller = %caller_label, code, "call refused");
                self.respond_new_dialog(now, (&key, &req), code, reason, &[]);
                return;
            }
        };
        let Some((port_a, port_b)) = self.allocate_port_pair() else {
            warn!("RTP port pool exhausted");
            self.respond_new_dialog(
                now,
                (&key, &req),
                503,
                "Service Unavailable (no media ports)",
                &[("Retry-After", "5".into())],
            );
            return;
        };
        let id = self.next_call;
        self.next_call += 1;
        let a_call_id = message::call_id(&req.headers).unwrap_or_default();
        let span = info_span!("call", id, sip_call_id = %a_call_id);
        let a_contact = message::header(&req.headers, "Contact").unwrap_or_default();
        let to = message::header(&req.headers, "To").unwrap_or_default();
        let a = Leg {
            call_id: a_call_id,
            local_tag: self.ids.tag(),
            remote_tag: message::from_tag(&req.headers),
            local_uri: strip_tag(&to),
            remote_uri: strip_tag(&from),
            remote_target: message::addr_uri(&a_contact).unwrap_or_default(),
            route_set: message::headers_all(&req.headers, "Record-Route"),
            local_cseq: self.number() % 10_000 + 1,
            remote_cseq: message::cseq(&req.headers).map(|(n, _)| n),
            peer: source,
            transport,
            rtp_port: port_a,
            origin: self.fresh_origin(),
            last_sdp_sent: None,
            remote_media: None,
        };
        let display = wire::display_name(&from)
            .map(|d| format!("\"{d}\" "))
            .unwrap_or_default();
        let b = Leg {
            call_id: self
                .ids
                .call_id(&self.local_addr(target.transport).ip().to_string()),
            local_tag: self.ids.tag(),
            remote_tag: None,
            local_uri: format!("{display}<sip:{caller_user}@{}>", self.cfg.sip.domain),
            remote_uri: target.to_uri.clone(),
            remote_target: target.uri.clone(),
            route_set: Vec::new(),
            local_cseq: 0,
            remote_cseq: None,
            peer: target.dest,
            transport: target.transport,
            rtp_port: port_b,
            origin: self.fresh_origin(),
            last_sdp_sent: None,
            remote_media: None,
        };
        let offer_info = offer.as_ref().and_then(|s| sdp::audio_info(s).ok());
        // B is offered A's codecs plus the other ones bibridge can transcode from, so that the
        // two legs may end up on different codecs (the mixer then transcodes).
        let offer_b = offer.clone().map(|mut s| {
            sdp::add_transcodable(&mut s);
            s
        });
        self.dialogs.insert(
            (a.call_id.clone(), a.local_tag.clone()),
            DialogRef::Leg(id, Side::A),
        );
        self.dialogs.insert(
            (b.call_id.clone(), b.local_tag.clone()),
            DialogRef::Leg(id, Side::B),
        );
        self.server_invites
            .insert(key.clone(), DialogRef::Leg(id, Side::A));
        // The agent is the local user with the agent role: the callee first (customer calls in),
        // else the caller (agent calls out).
        let is_agent = |u: &str| {
            self.cfg
                .user(u)
                .is_some_and(|u| u.has_role(crate::config::Role::Agent))
        };
        let (agent_side, agent_user) = match (&target.user, &caller) {
            (Some(u), _) if is_agent(u) => (Some(Side::B), Some(u.clone())),
            (_, Caller::User(u)) if is_agent(u) => (Some(Side::A), Some(u.clone())),
            _ => (None, None),
        };
        let role = |side: Side| match agent_side {
            Some(s) if s == side => MediaRole::Agent,
            Some(_) => MediaRole::Customer,
            // No agent: nobody can attach; the roles only name the two directions.
            None if side == Side::A => MediaRole::Customer,
            None => MediaRole::Agent,
        };
        let (role_a, role_b) = (role(Side::A), role(Side::B));
        let answer_deadline = now + Duration::from_secs(self.cfg.sip.no_answer_timeout_s);
        {
            let _s = span.enter();
            info!(caller = %caller_label, %dialled, target = %target.label, "call started");
        }
        self.calls.insert(
            id,
            Call {
                span,
                a,
                b,
                state: CallState::Routing,
                a_invite: Some((key, req)),
                b_invite: None,
                b_provisional_seen: false,
                cancel_pending: false,
                offer_to_b: offer_b.as_ref().and_then(|s| sdp::audio_info(s).ok()),
                a_offer: offer.as_ref().map(|s| sdp::print(s).into_bytes()),
                late_offer_ack_pending: false,
                ack_b: None,
                reinvite: None,
                connected_at: None,
                hold: [false; 2],
                agent_side,
                agent_user: agent_user.clone(),
                sessions: Vec::new(),
                promoted: None,
                pending_b_invite: None,
                open_attempts: 0,
                roles: [role_a, role_b],
                answer_deadline,
            },
        );
        self.answer_deadlines.insert((answer_deadline, id));
        self.notices.push_back(Notice::CallStarted {
            call: id,
            caller: caller_label,
            callee: dialled,
        });
        self.media.push_back(MediaCommand::Open {
            call: id,
            legs: vec![
                LegSetup {
                    leg: Side::A.leg_id(),
                    port: port_a,
                    remote: offer_info.as_ref().and_then(|i| i.rtp_addr),
                    role: role_a,
                    codec: offer_info.as_ref().and_then(LegCodec::from_info),
                },
                LegSetup {
                    leg: Side::B.leg_id(),
                    port: port_b,
                    remote: None,
                    role: role_b,
                    codec: None,
                },
            ],
        });
        if let Some(info) = offer_info {
            self.set_remote_media(id, Side::A, info);
        }
        // B's INVITE goes out once the media plane has bound the ports we are about to put in
        // its SDP (MediaEvent::Opened); a port taken by another process is replaced first.
        if let Some(c) = self.calls.get_mut(&id) {
            c.pending_b_invite = Some((
                offer_b.map(|s| sdp::print(&s).into_bytes()),
                max_forwards.saturating_sub(1),
            ));
        }
    }

    /// The media plane bound the call's ports: send B's INVITE.
    pub(super) fn on_media_opened(&mut self, now: Instant, id: CallId) {
        let Some((offer, max_forwards)) = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.pending_b_invite.take())
        else {
            return;
        };
        let body = offer
            .and_then(|o| sdp::parse(&o).ok())
            .and_then(|s| self.anchored_sdp(id, Side::B, s));
        let Some(key) = self.send_in_dialog_mf(now, id, body, max_forwards) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.b_invite = Some(key);
        }
    }

    /// Some of the call's ports could not be bound (another process holds them): take them out
    /// of the pool and try fresh ones, a few times, before giving up with 503.
    pub(super) fn on_media_open_failed(&mut self, now: Instant, id: CallId, bad_ports: &[u16]) {
        for p in bad_ports {
            self.pool.mark_unusable(*p, now);
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.open_attempts += 1;
        if call.open_attempts >= 4 || call.pending_b_invite.is_none() {
            self.end_call(now, id, "media ports unavailable");
            return;
        }
        let Some((pa, pb)) = self.allocate_port_pair() else {
            self.end_call(now, id, "media ports unavailable");
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        for (leg, port) in [(&mut call.a, pa), (&mut call.b, pb)] {
            if !bad_ports.contains(&leg.rtp_port) {
                self.pool.release(leg.rtp_port);
            }
            leg.rtp_port = port;
        }
        warn!(
            call = id,
            ?bad_ports,
            "RTP ports busy, retrying with {pa} and {pb}"
        );
        let legs = vec![
            LegSetup {
                leg: Side::A.leg_id(),
                port: pa,
                remote: call.a.remote_media.as_ref().and_then(|i| i.rtp_addr),
                role: call.roles[0],
                codec: call.a.remote_media.as_ref().and_then(LegCodec::from_info),
            },
            LegSetup {
                leg: Side::B.leg_id(),
                port: pb,
                remote: None,
                role: call.roles[1],
                codec: None,
            },
        ];
        self.media.push_back(MediaCommand::Open { call: id, legs });
    }

    /// The initial INVITE on leg B (like `send_in_dialog`, but with our Max-Forwards and kept
    /// for CANCEL).
    fn send_in_dialog_mf(
        &mut self,
        now: Instant,
        id: CallId,
        body: Option<Vec<u8>>,
        max_forwards: u32,
    ) -> Option<(TxKey, rsip::Request)> {
        let call = self.calls.get_mut(&id)?;
        let opts = ReqOpts {
            cseq: None,
            max_forwards,
            ..ReqOpts::default()
        };
        let (req, peer, transport) = request_on_leg(
            &mut self.ids,
            &self.cfg.sip.user_agent,
            self.local,
            &mut call.b,
            "INVITE",
            body,
            opts,
        )?;
        let key = self.txl.send_request(now, req.clone(), peer, transport);
        self.client.insert(key.clone(), (id, ClientPurpose::Invite));
        Some((key, req))
    }
}
