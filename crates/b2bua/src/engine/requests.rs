//! Incoming requests: out-of-dialog (OPTIONS, REGISTER, new INVITE) and in-dialog (BYE, re-INVITE,
//! UPDATE, INFO), CANCEL and ACK.

use super::*;

/// Methods we know but do not serve: 405 with Allow (RFC 3261 §8.2.1) rather than 501.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "REFER",
    "PUBLISH",
    "PRACK",
];

/// Who is calling, once trusted.
pub(super) enum Caller {
    Trunk(String),
    User(String),
}

/// Where a call goes.
struct Target {
    uri: String,
    to_uri: String,
    dest: SocketAddr,
    transport: Transport,
    label: String,
    /// The local user called, if any.
    user: Option<String>,
}

impl Engine {
    /// 405 with `Allow` for methods we know but do not serve here (RFC 3261 §8.2.1), 501 for
    /// the rest.
    pub(super) fn respond_unsupported(&mut self, now: Instant, tx: (&TxKey, &rsip::Request)) {
        let method = tx.1.method.to_string();
        let allow = [("Allow", wire::ALLOW.to_string())];
        if KNOWN_UNSUPPORTED.contains(&method.as_str()) {
            self.respond(now, tx, 405, "Method Not Allowed", None, &allow);
        } else {
            self.respond(now, tx, 501, "Not Implemented", None, &allow);
        }
    }

    /// 481: no such dialog or transaction (RFC 3261 §12.2.2, §9.2).
    pub(super) fn respond_no_dialog(&mut self, now: Instant, tx: (&TxKey, &rsip::Request)) {
        self.respond(now, tx, 481, "Call/Transaction Does Not Exist", None, &[]);
    }

    /// RFC 3261 §12.2.2: a request with a lower CSeq than the last one is out of order.
    pub(super) fn respond_out_of_order(&mut self, now: Instant, tx: (&TxKey, &rsip::Request)) {
        self.respond(
            now,
            tx,
            500,
            "Server Internal Error (CSeq out of order)",
            None,
            &[],
        );
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let method = req.method.to_string();
        // RFC 3261 §8.2.2.3: an extension the request requires and we do not support → 420.
        let unsupported: Vec<String> = message::headers_all(&req.headers, "Require")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_string())
            .filter(|t| {
                !t.is_empty()
                    && !wire::SUPPORTED
                        .split(',')
                        .any(|s| s.trim().eq_ignore_ascii_case(t))
            })
            .collect();
        if !unsupported.is_empty() && method != "CANCEL" {
            self.respond_new_dialog(
                now,
                (&key, &req),
                420,
                "Bad Extension",
                &[("Unsupported", unsupported.join(", "))],
            );
            return;
        }
        // In-dialog requests carry our tag in To.
        if let Some(tag) = message::to_tag(&req.headers) {
            let call_id = message::call_id(&req.headers).unwrap_or_default();
            let dkey = (call_id, tag);
            if let Some(&DialogRef::Leg(call, side)) = self.dialogs.get(&dkey) {
                self.on_in_dialog(now, key, req, call, side);
            } else if let Some(&DialogRef::Session(sid)) = self.dialogs.get(&dkey) {
                self.on_session_request(now, key, req, sid);
            } else if method == "BYE" && self.ended_dialogs.contains_key(&dkey) {
                // BYEs crossed: the call is already gone on our side.
                self.respond(now, (&key, &req), 200, "OK", None, &[]);
            } else if method == "OPTIONS" {
                self.on_options(now, &key, &req);
            } else {
                self.respond_no_dialog(now, (&key, &req));
            }
            return;
        }
        match method.as_str() {
            "OPTIONS" => self.on_options(now, &key, &req),
            "REGISTER" => self.on_register(now, &key, &req, source, transport),
            "INVITE" => self.on_invite(now, key, req, source, transport),
            "BYE" | "INFO" | "UPDATE" => self.respond_no_dialog(now, (&key, &req)),
            _ => self.respond_unsupported(now, (&key, &req)),
        }
    }

    fn on_options(&mut self, now: Instant, key: &TxKey, req: &rsip::Request) {
        let extra = [
            ("Allow", wire::ALLOW.to_string()),
            ("Accept", wire::ACCEPT.to_string()),
            ("Supported", wire::SUPPORTED.to_string()),
        ];
        self.respond_new_dialog(now, (key, req), 200, "OK", &extra);
    }

    /// Check digest credentials. `Ok(user)` when authenticated; otherwise the 401 challenge has
    /// been sent and `Err(())` returned.
    fn authenticate(
        &mut self,
        now: Instant,
        key: &TxKey,
        req: &rsip::Request,
    ) -> Result<String, ()> {
        let method = req.method.to_string();
        let header = message::header(&req.headers, "Authorization")
            .or_else(|| message::header(&req.headers, "Proxy-Authorization"));
        let stale = match header {
            None => false,
            Some(value) => {
                let users = &self.cfg.users;
                let outcome = self.digest.verify(now, &method, &value, |name| {
                    users
                        .iter()
                        .find(|u| u.extension == name)
                        .map(|u| u.password.clone())
                });
                match outcome {
                    AuthOutcome::Ok { username } => return Ok(username),
                    AuthOutcome::Stale => true,
                    AuthOutcome::Failed { reason } => {
                        warn!(%method, reason, "digest authentication failed");
                        false
                    }
                }
            }
        };
        let ua = message::header(&req.headers, "User-Agent")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let md5_only = self
            .cfg
            .auth
            .md5_only_user_agents
            .iter()
            .any(|q| !q.is_empty() && ua.contains(&q.to_ascii_lowercase()));
        let challenges = if md5_only {
            self.digest.challenge_with(now, stale, &[Algorithm::Md5])
        } else {
            self.digest.challenge(now, stale)
        };
        let extra: Vec<(&str, String)> = challenges
            .into_iter()
            .map(|c| ("WWW-Authenticate", c))
            .collect();
        self.respond_new_dialog(now, (key, req), 401, "Unauthorized", &extra);
        Err(())
    }

    fn on_register(
        &mut self,
        now: Instant,
        key: &TxKey,
        req: &rsip::Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let to = message::header(&req.headers, "To").unwrap_or_default();
        let aor = message::addr_uri(&to).unwrap_or_default();
        let user = aor
            .strip_prefix("sip:")
            .or_else(|| aor.strip_prefix("sips:"))
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| u.to_string());
        let Some(user) = user.filter(|u| self.cfg.user(u).is_some()) else {
            self.respond(now, (key, req), 404, "Not Found", None, &[]);
            return;
        };
        let Ok(authed) = self.authenticate(now, key, req) else {
            return;
        };
        if authed != user {
            self.respond(
                now,
                (key, req),
                403,
                "Forbidden (credentials do not match the address of record)",
                None,
                &[],
            );
            return;
        }
        let contacts = message::headers_all(&req.headers, "Contact");
        let expires = message::header(&req.headers, "Expires");
        let call_id = message::call_id(&req.headers).unwrap_or_default();
        let cseq = message::cseq(&req.headers).map(|(n, _)| n).unwrap_or(0);
        let was = self.registrar.is_registered(now, &user);
        let outcome = self.registrar.register(
            now,
            &user,
            &contacts,
            expires.as_deref(),
            &call_id,
            cseq,
            source,
            transport,
        );
        match outcome {
            RegisterOutcome::Ok { bindings } => {
                let extra: Vec<(&str, String)> = bindings
                    .iter()
                    .map(|(c, secs)| ("Contact", format!("<{}>;expires={secs}", bare_uri(c))))
                    .collect();
                self.respond_new_dialog(now, (key, req), 200, "OK", &extra);
                let is = self.registrar.is_registered(now, &user);
                if is && !was {
                    info!(%user, %source, "registered");
                    self.notices.push_back(Notice::Registered { user });
                } else if was && !is {
                    info!(%user, "unregistered");
                    self.notices.push_back(Notice::Unregistered { user });
                }
            }
            RegisterOutcome::IntervalTooBrief { min_expires } => self.respond_new_dialog(
                now,
                (key, req),
                423,
                "Interval Too Brief",
                &[("Min-Expires", min_expires.to_string())],
            ),
            RegisterOutcome::Invalid { reason } => {
                self.respond_new_dialog(now, (key, req), 400, reason, &[])
            }
            RegisterOutcome::OutOfOrder => self.respond_new_dialog(
                now,
                (key, req),
                500,
                "Server Internal Error (out-of-order REGISTER)",
                &[],
            ),
        }
    }

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

    fn on_invite(
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
            self.respond(now, (&key, &req), 482, "Loop Detected", None, &[]);
            return;
        }
        let max_forwards = message::max_forwards(&req.headers).unwrap_or(70);
        if max_forwards == 0 {
            self.respond(now, (&key, &req), 483, "Too Many Hops", None, &[]);
            return;
        }
        if !req.body.is_empty() {
            let ctype = message::header(&req.headers, "Content-Type").unwrap_or_default();
            if !ctype.to_ascii_lowercase().starts_with("application/sdp") {
                self.respond(
                    now,
                    (&key, &req),
                    415,
                    "Unsupported Media Type",
                    None,
                    &[("Accept", "application/sdp".into())],
                );
                return;
            }
        }
        let caller = match self.cfg.trunk_for_source(source) {
            Some(t) => Caller::Trunk(t.name.clone()),
            None => match self.authenticate(now, &key, &req) {
                Ok(user) => Caller::User(user),
                Err(()) => return,
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
        // RFC 3911: joining a dialog we hold is a barge into its call (DESIGN §4).
        if let Some(join) = message::header(&req.headers, "Join") {
            match self.join_target(&join) {
                Some((call, ext)) => self.on_feature_code(
                    now,
                    key,
                    req,
                    &caller,
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
        if let Some((mode, ext)) = self.cfg.features.parse_dialled(&dialled) {
            let ext = ext.to_string();
            self.on_feature_code(
                now, key, req, &caller, mode, &ext, offer, source, transport, None,
            );
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
            origin: Origin {
                session_id: self.number() as u64,
                version: 1,
            },
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
            origin: Origin {
                session_id: self.number() as u64,
                version: 1,
            },
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
            self.pool.mark_unusable(*p);
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

    fn on_in_dialog(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        call_id: CallId,
        side: Side,
    ) {
        let method = req.method.to_string();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let leg = call.leg_mut(side);
        if !leg.accept_cseq(&req) {
            self.respond_out_of_order(now, (&key, &req));
            return;
        }
        // A refresh of the remote target (RFC 3261 §12.2.2, target refresh requests).
        if method == "INVITE" || method == "UPDATE" {
            if let Some(c) = message::header(&req.headers, "Contact") {
                leg.remote_target = message::addr_uri(&c).unwrap_or_default();
            }
        }
        let span = call.span.clone();
        let _s = span.enter();
        // A span per leg inside the call's: which dialog a line is about.
        let leg_span = tracing::info_span!("leg", ?side, sip_call_id = %call.leg(side).call_id);
        let _l = leg_span.enter();
        match method.as_str() {
            "BYE" => {
                info!(?side, "BYE received");
                self.respond(now, (&key, &req), 200, "OK", None, &[]);
                if self.try_barge_promotion(call_id, side) {
                    return;
                }
                let state = self.calls.get(&call_id).map(|c| c.state);
                let promoted = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.promoted.is_some());
                match state {
                    // After promotion the other side is the agent's dialog, already gone; the
                    // promoted supervisor gets its BYE with the other sessions in remove_call.
                    Some(CallState::Connected) if promoted => {}
                    Some(CallState::Connected) => {
                        self.send_in_dialog(
                            now,
                            call_id,
                            side.other(),
                            "BYE",
                            None,
                            ClientPurpose::Bye,
                        );
                    }
                    Some(CallState::Routing) => {
                        // Only B can be in a dialog early (it answered while we were still routing).
                        self.cancel_b(now, call_id);
                    }
                    None => {}
                }
                let reason = match side {
                    Side::A => "caller hung up",
                    Side::B => "callee hung up",
                };
                self.remove_call(now, call_id, reason);
            }
            "INVITE" | "UPDATE" => self.on_reinvite(now, key, req, call_id, side),
            "INFO"
                if self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.state == CallState::Connected && c.promoted.is_none()) =>
            {
                // INFO (DTMF relay to an IVR, for instance) belongs to the other party: relay it
                // and answer with its answer.
                let ctype = message::header(&req.headers, "Content-Type");
                let body = (!req.body.is_empty()).then(|| req.body.clone());
                match self.relay_in_dialog(now, call_id, side.other(), "INFO", ctype, body) {
                    Some(ck) => {
                        self.relayed.insert(ck, (key, req));
                    }
                    None => {
                        self.respond(now, (&key, &req), 500, "Server Internal Error", None, &[])
                    }
                }
            }
            "INFO" | "OPTIONS" => {
                // Keep-alives, and INFO while there is nobody to relay it to.
                self.respond(now, (&key, &req), 200, "OK", None, &[]);
            }
            _ => self.respond_unsupported(now, (&key, &req)),
        }
    }

    fn on_reinvite(
        &mut self,
        now: Instant,
        key: TxKey,
        req: rsip::Request,
        call_id: CallId,
        side: Side,
    ) {
        let is_invite = req.method == rsip::Method::Invite;
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if call.state != CallState::Connected || call.reinvite.is_some() {
            // RFC 3261 §14.2: an offer while ours is pending → 491; before the call is up → 500
            // with Retry-After would also do, 491 makes the peer retry after a random delay.
            self.respond(now, (&key, &req), 491, "Request Pending", None, &[]);
            return;
        }
        let local_tag = call.leg(side).local_tag.clone();
        let transport = call.leg(side).transport;
        if call.promoted.is_some() {
            // The far side is a promoted supervisor, whose leg ends at bibridge: answer here.
            if let Ok(info) = sdp::parse(&req.body).and_then(|o| sdp::audio_info(&o)) {
                self.set_remote_media(call_id, side, info);
            }
            let sdp = call_sdp_answer(
                self.calls
                    .get(&call_id)
                    .and_then(|c| c.leg(side).last_sdp_sent.clone()),
                &req.body,
            );
            if is_invite {
                self.server_invites
                    .insert(key.clone(), DialogRef::Leg(call_id, side));
            }
            self.respond_sdp(now, (&key, &req), (200, "OK"), &local_tag, transport, sdp);
            return;
        }
        if req.body.is_empty() {
            // No offer: a session refresh or an offer-less re-INVITE. Answer with the SDP this leg
            // already has from us (unchanged version), without disturbing the other leg.
            let sdp = call.leg(side).last_sdp_sent.clone();
            if is_invite {
                self.server_invites
                    .insert(key.clone(), DialogRef::Leg(call_id, side));
            }
            self.respond_sdp(now, (&key, &req), (200, "OK"), &local_tag, transport, sdp);
            return;
        }
        let offer =
            match sdp::parse(&req.body).and_then(|mut s| sdp::restrict_offer(&mut s).map(|_| s)) {
                Ok(s) => s,
                Err(_) => {
                    self.respond(now, (&key, &req), 488, "Not Acceptable Here", None, &[]);
                    return;
                }
            };
        let offer_info = sdp::audio_info(&offer).ok();
        debug!(?side, direction = ?offer_info.as_ref().map(|i| i.direction), "re-offer");
        let Some(body) = self.anchored_sdp(call_id, side.other(), offer) else {
            return;
        };
        let method = if is_invite { "INVITE" } else { "UPDATE" };
        let purpose = ClientPurpose::Reinvite;
        let Some(client) =
            self.send_in_dialog(now, call_id, side.other(), method, Some(body), purpose)
        else {
            self.respond(now, (&key, &req), 500, "Server Internal Error", None, &[]);
            return;
        };
        if is_invite {
            self.server_invites
                .insert(key.clone(), DialogRef::Leg(call_id, side));
        }
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.reinvite = Some(Reinvite {
                from: side,
                server: key,
                client,
                offer: offer_info,
                request: req,
                method_is_invite: is_invite,
            });
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        now: Instant,
        key: TxKey,
        invite: Option<TxKey>,
        req: rsip::Request,
    ) {
        let target = invite
            .as_ref()
            .and_then(|k| self.server_invites.get(k).copied());
        let Some(target) = target else {
            self.respond_no_dialog(now, (&key, &req));
            return;
        };
        self.respond(now, (&key, &req), 200, "OK", None, &[]);
        // A supervisor's INVITE is answered at once: its CANCEL always comes too late.
        let DialogRef::Leg(call_id, _) = target else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        // Only the initial INVITE of a call still routing is cancelled; a CANCEL racing our 2xx
        // (or for a re-INVITE) changes nothing (RFC 3261 §9.2).
        if call.state != CallState::Routing {
            return;
        }
        {
            let _s = call.span.enter();
            info!("caller cancelled");
        }
        self.reject_a_invite(now, call_id, 487, "Request Terminated");
        self.cancel_b(now, call_id);
        self.remove_call(now, call_id, "cancelled");
    }

    pub(super) fn on_ack(&mut self, now: Instant, req: rsip::Request) {
        let (Some(cid), Some(tag)) = (
            message::call_id(&req.headers),
            message::to_tag(&req.headers),
        ) else {
            return;
        };
        let Some(&DialogRef::Leg(call_id, side)) = self.dialogs.get(&(cid, tag)) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if side != Side::A || !call.late_offer_ack_pending {
            // An answer in the ACK to the offer in our 2xx (an offer-less re-INVITE we
            // answered ourselves, RFC 3264 §5): the leg's media may have moved.
            if !req.body.is_empty() {
                if let Ok(info) = sdp::parse(&req.body).and_then(|s| sdp::audio_info(&s)) {
                    self.set_remote_media(call_id, side, info);
                }
            }
            return;
        }
        call.late_offer_ack_pending = false;
        // Late offer: A's ACK carries the answer to B's offer; it completes B's ACK.
        let answer = sdp::parse(&req.body).ok();
        if let Some(s) = answer.as_ref() {
            if let Ok(info) = sdp::audio_info(s) {
                self.set_remote_media(call_id, Side::A, info);
            }
        }
        let body = answer.and_then(|s| self.anchored_sdp(call_id, Side::B, s));
        self.send_ack_b(now, call_id, body);
    }

    /// Send a non-INVITE request with an arbitrary body on a leg (relaying INFO).
    fn relay_in_dialog(
        &mut self,
        now: Instant,
        call_id: CallId,
        side: Side,
        method: &str,
        content_type: Option<String>,
        body: Option<Vec<u8>>,
    ) -> Option<TxKey> {
        let call = self.calls.get_mut(&call_id)?;
        let (mut req, peer, transport) = request_on_leg(
            &mut self.ids,
            &self.cfg.sip.user_agent,
            self.local,
            call.leg_mut(side),
            method,
            None,
            ReqOpts::default(),
        )?;
        if let Some(b) = body {
            message::set_header(
                &mut req.headers,
                "Content-Type",
                content_type
                    .as_deref()
                    .unwrap_or("application/octet-stream"),
            );
            req.body = b;
        }
        let key = self.txl.send_request(now, req, peer, transport);
        self.client
            .insert(key.clone(), (call_id, ClientPurpose::Relay));
        Some(key)
    }

    /// ACK B's 2xx (RFC 3261 §13.2.2.4): a new request outside any transaction, CSeq of the INVITE.
    /// Kept, to be re-sent when B retransmits its 2xx.
    pub(super) fn send_ack_b(&mut self, _now: Instant, call_id: CallId, body: Option<Vec<u8>>) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let cseq = call
            .b_invite
            .as_ref()
            .and_then(|(_, r)| message::cseq(&r.headers))
            .map(|(n, _)| n)
            .unwrap_or(call.b.local_cseq);
        if let Some(ack) = self.send_ack(call_id, Side::B, cseq, body) {
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.ack_b = Some(ack);
            }
        }
    }

    /// ACK a 2xx to an INVITE we sent on `side` (CSeq `cseq`), optionally with an SDP answer.
    pub(super) fn send_ack(
        &mut self,
        call_id: CallId,
        side: Side,
        cseq: u32,
        body: Option<Vec<u8>>,
    ) -> Option<rsip::Request> {
        let call = self.calls.get_mut(&call_id)?;
        let opts = ReqOpts {
            cseq: Some(cseq),
            max_forwards: 70,
        };
        let (ack, peer, transport) = request_on_leg(
            &mut self.ids,
            &self.cfg.sip.user_agent,
            self.local,
            call.leg_mut(side),
            "ACK",
            body,
            opts,
        )?;
        self.txl
            .send_stateless(rsip::SipMessage::Request(ack.clone()), peer, transport);
        Some(ack)
    }
}

/// A registered contact's URI with its URI parameters: a name-addr's `<...>` content, or the
/// value as is (a bare URI's `;params` belong to the URI).
fn bare_uri(contact: &str) -> &str {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if a < b => &contact[a + 1..b],
        _ => contact.trim(),
    }
}

/// A From/To value without its tag parameter (we put our own).
pub(super) fn strip_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (addr, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => match value.find(';') {
            Some(i) => value.split_at(i),
            None => (value, ""),
        },
    };
    out.push_str(addr.trim());
    for p in params.split(';').filter(|p| !p.trim().is_empty()) {
        if !p.trim().to_ascii_lowercase().starts_with("tag=") {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// Our previous SDP on a leg, turned into an answer to a new offer's direction (used where
/// bibridge answers a re-INVITE itself).
fn call_sdp_answer(prev: Option<Vec<u8>>, offer: &[u8]) -> Option<Vec<u8>> {
    let prev = prev?;
    let Ok(info) = sdp::parse(offer).and_then(|o| sdp::audio_info(&o)) else {
        return Some(prev);
    };
    let Ok(mut answer) = sdp::parse(&prev) else {
        return Some(prev);
    };
    sdp::set_direction(&mut answer, info.direction.answer());
    answer.origin.session_version += 1;
    Some(sdp::print(&answer).into_bytes())
}

#[cfg(test)]
mod tests {
    use super::strip_tag;

    #[test]
    fn strip_tag_keeps_other_params() {
        assert_eq!(
            strip_tag("\"A\" <sip:a@b>;tag=123;x=y"),
            "\"A\" <sip:a@b>;x=y"
        );
        assert_eq!(strip_tag("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(strip_tag("<sip:a@b>"), "<sip:a@b>");
    }
}
