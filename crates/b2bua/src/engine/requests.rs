//! Incoming requests: dispatch (out of dialog, in dialog, sessions), OPTIONS, and the in-dialog
//! ones (BYE, re-INVITE, UPDATE, INFO), CANCEL and ACK. New INVITEs are in [`super::invite`],
//! REGISTER in [`super::registration`], digest checks in [`super::auth`].

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::{debug, info};

use super::calls::{CallState, Reinvite};
use super::{request_on_leg, ClientPurpose, DialogRef, Engine, ReqOpts};
use crate::ids::{CallId, Side};
use crate::{sdp, wire};
/// Methods we know but do not serve: 405 with Allow (RFC 3261 §8.2.1) rather than 501.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "REFER",
    "PUBLISH",
    "PRACK",
];

impl Engine {
    /// 405 with `Allow` for methods we know but do not serve here (RFC 3261 §8.2.1), 501 for
    /// the rest.
    pub(super) fn respond_unsupported(&mut self, now: Instant, tx: (&TxKey, &rsip::Request)) {
        let method = tx.1.method.to_string();
        let allow = [("Allow", wire::ALLOW.to_string())];
        if KNOWN_UNSUPPORTED.contains(&method.as_str()) {
            self.respond_new_dialog(now, tx, 405, "Method Not Allowed", &allow);
        } else {
            self.respond_new_dialog(now, tx, 501, "Not Implemented", &allow);
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
            // An unparsable Contact keeps the target we have: an empty one would break every
            // later request on the dialog.
            if let Some(uri) =
                message::header(&req.headers, "Contact").and_then(|c| message::addr_uri(&c))
            {
                leg.remote_target = uri;
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
        // A feature-code INVITE waiting for its audit record: 487 once the record is back.
        if invite
            .as_ref()
            .is_some_and(|k| self.cancel_parked_feature_code(k))
        {
            self.respond(now, (&key, &req), 200, "OK", None, &[]);
            return;
        }
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
            ..ReqOpts::default()
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
