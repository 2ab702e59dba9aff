//! Responses to the requests bibridge originated: the B leg's INVITE, re-INVITEs/UPDATEs on either
//! leg, BYE and CANCEL; client transaction timeouts.

use std::time::Instant;

use bibridge_sip::message;
use bibridge_sip::transaction::TxKey;
use tracing::{debug, info};

use super::calls::{CallState, Reinvite};
use super::media_plane::LegCodec;
use super::{ClientPurpose, DialogRef, Engine, Notice};
use crate::ids::{CallId, Side};
use crate::sdp::AudioInfo;
use crate::wire::OutRequest;
use crate::{sdp, wire};
impl Engine {
    pub(super) fn on_response(&mut self, now: Instant, key: TxKey, resp: rsip::Response) {
        let Some(&(call_id, purpose)) = self.client.get(&key) else {
            return;
        };
        let code = resp.status_code.code();
        match purpose {
            ClientPurpose::Invite => {
                if !self.calls.contains_key(&call_id) {
                    match code {
                        100..=199 => self.cancel_orphan(now, call_id, &key),
                        200..=299 => self.ack_and_bye_orphan(now, &key, &resp),
                        _ => {}
                    }
                    return;
                }
                match code {
                    // 100 is a provisional response too: a CANCEL may go from now on (§9.1).
                    100 => {
                        if let Some(call) = self.calls.get_mut(&call_id) {
                            call.b_provisional_seen = true;
                        }
                    }
                    101..=199 => self.on_b_provisional(now, call_id, resp),
                    200..=299 => self.on_b_success(now, call_id, resp),
                    _ => self.on_b_failure(now, call_id, resp),
                }
            }
            ClientPurpose::Reinvite => {
                if !self.calls.contains_key(&call_id) {
                    if (200..300).contains(&code) {
                        self.ack_and_bye_orphan(now, &key, &resp);
                    }
                } else if code >= 200 {
                    self.on_reinvite_final(now, call_id, &key, resp);
                }
            }
            ClientPurpose::Relay => {
                if code >= 200 {
                    if let Some((skey, sreq)) = self.relayed.remove(&key) {
                        let reason = reason_phrase(&resp);
                        self.respond(now, (&skey, &sreq), code, &reason, None, &[]);
                    }
                }
            }
            ClientPurpose::SessionInvite(sid) => {
                self.on_session_invite_response(now, &key, call_id, sid, resp)
            }
            ClientPurpose::Bye | ClientPurpose::Cancel => {}
        }
    }

    fn on_b_provisional(&mut self, now: Instant, call_id: CallId, resp: rsip::Response) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.b_provisional_seen = true;
        if let Some(tag) = message::to_tag(&resp.headers) {
            call.b.remote_tag = Some(tag);
        }
        if call.cancel_pending {
            self.cancel_b(now, call_id);
            return;
        }
        let code = resp.status_code.code();
        // Early media: anchor B's answer towards A like a final one.
        let mut body = None;
        if !resp.body.is_empty() {
            if let Some(answer) = self.take_b_answer(call_id, &resp) {
                let answer = self.answer_for_a(call_id, answer);
                body = self.anchored_sdp(call_id, Side::A, answer);
            }
        }
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let Some((key, req)) = call.a_invite.clone() else {
            return;
        };
        let tag = call.a.local_tag.clone();
        let transport = call.a.transport;
        let reason = reason_phrase(&resp);
        {
            let _s = call.span.enter();
            debug!(code, "provisional response relayed");
        }
        self.respond_sdp(now, (&key, &req), (code, &reason), &tag, transport, body);
    }

    /// B's SDP in a response to our initial INVITE: an answer (restricted to the offer) or, for a
    /// late-offer call, an offer. Updates B's media either way.
    fn take_b_answer(
        &mut self,
        call_id: CallId,
        resp: &rsip::Response,
    ) -> Option<rtc_sdp::description::session::SessionDescription> {
        let call = self.calls.get(&call_id)?;
        let mut sdp = sdp::parse(&resp.body).ok()?;
        let ok = match &call.offer_to_b {
            Some(offer) => sdp::restrict_answer(&mut sdp, offer).is_ok(),
            None => sdp::restrict_offer(&mut sdp).is_ok(),
        };
        if !ok {
            return None;
        }
        let info = sdp::audio_info(&sdp).ok()?;
        self.set_remote_media(call_id, Side::B, info);
        Some(sdp)
    }

    /// A's answer from B's: B's own answer when B chose a codec A offered (pure relay), else
    /// A's offer narrowed to A's preferred codec (bibridge transcodes between the legs).
    fn answer_for_a(
        &self,
        call_id: CallId,
        b_answer: rtc_sdp::description::session::SessionDescription,
    ) -> rtc_sdp::description::session::SessionDescription {
        let Some(a_offer) = self.calls.get(&call_id).and_then(|c| c.a_offer.as_deref()) else {
            return b_answer;
        };
        let (Ok(a_sdp), Ok(b_info)) = (sdp::parse(a_offer), sdp::audio_info(&b_answer)) else {
            return b_answer;
        };
        let Ok(a_info) = sdp::audio_info(&a_sdp) else {
            return b_answer;
        };
        let mut relayed = b_answer.clone();
        if sdp::restrict_answer(&mut relayed, &a_info).is_ok() {
            return relayed;
        }
        let Some(codec) = LegCodec::from_info(&a_info) else {
            return b_answer;
        };
        let mut answer = a_sdp;
        sdp::keep_payload_types(
            &mut answer,
            &[Some(codec.payload_type), codec.dtmf_payload_type],
        );
        sdp::set_direction(&mut answer, b_info.direction);
        debug!(a = %codec.name, b = ?LegCodec::from_info(&b_info).map(|c| c.name), "legs on different codecs: transcoding");
        answer
    }

    fn on_b_success(&mut self, now: Instant, call_id: CallId, resp: rsip::Response) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let to_tag = message::to_tag(&resp.headers);
        if call.state == CallState::Connected {
            // A 2xx retransmission: our ACK was lost. Another To-tag would be a forked answer,
            // which a B2BUA leg to a single contact does not expect; re-ACK covers both.
            if let Some(ack) = call.ack_b.clone() {
                let (peer, transport) = (call.b.peer, call.b.transport);
                self.txl
                    .send_stateless(rsip::SipMessage::Request(ack), peer, transport);
            }
            return;
        }
        call.b.remote_tag = to_tag;
        if let Some(uri) =
            message::header(&resp.headers, "Contact").and_then(|c| message::addr_uri(&c))
        {
            call.b.remote_target = uri;
        }
        let mut rr = message::headers_all(&resp.headers, "Record-Route");
        rr.reverse();
        call.b.route_set = rr;
        let late_offer = call.offer_to_b.is_none();
        let answer = self.take_b_answer(call_id, &resp);
        if answer.is_none() && (late_offer || !resp.body.is_empty()) {
            // Nothing usable to give A: end the B dialog cleanly and fail the call.
            self.send_ack_b(now, call_id, None);
            self.reject_a_invite(now, call_id, 488, "Not Acceptable Here");
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.state = CallState::Connected;
            }
            self.send_in_dialog(now, call_id, Side::B, "BYE", None, ClientPurpose::Bye);
            self.remove_call(now, call_id, "no acceptable SDP from callee");
            return;
        }
        let answer = answer.map(|s| self.answer_for_a(call_id, s));
        let body = answer.and_then(|s| self.anchored_sdp(call_id, Side::A, s));
        if late_offer {
            if let Some(c) = self.calls.get_mut(&call_id) {
                c.late_offer_ack_pending = true;
            }
        } else {
            self.send_ack_b(now, call_id, None);
        }
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        call.state = CallState::Connected;
        let deadline = (call.answer_deadline, call_id);
        self.answer_deadlines.remove(&deadline);
        call.connected_at = Some(now);
        let a_invite = call.a_invite.take();
        let tag = call.a.local_tag.clone();
        let transport = call.a.transport;
        {
            let _s = call.span.enter();
            info!("call answered");
        }
        self.notices
            .push_back(Notice::CallAnswered { call: call_id });
        if let Some((key, req)) = a_invite {
            let reason = reason_phrase(&resp);
            self.respond_sdp(
                now,
                (&key, &req),
                (resp.status_code.code(), &reason),
                &tag,
                transport,
                body,
            );
        }
    }

    fn on_b_failure(&mut self, now: Instant, call_id: CallId, resp: rsip::Response) {
        if !self.calls.contains_key(&call_id) {
            return;
        }
        let code = resp.status_code.code();
        let reason = reason_phrase(&resp);
        // A redirect is for us, not for the caller: we do not recurse, so it is a failure.
        let (code, reason) = if (300..400).contains(&code) {
            (480, "Temporarily Unavailable".to_string())
        } else {
            (code, reason)
        };
        self.reject_a_invite(now, call_id, code, &reason);
        self.remove_call(now, call_id, &format!("callee answered {code} {reason}"));
    }

    fn on_reinvite_final(
        &mut self,
        now: Instant,
        call_id: CallId,
        key: &TxKey,
        resp: rsip::Response,
    ) {
        let code = resp.status_code.code();
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        let cseq = message::cseq(&resp.headers).map(|(n, _)| n).unwrap_or(0);
        // Only the response to the pending request completes it (RFC 6026 §8.1: 2xx
        // retransmissions of an earlier re-INVITE still reach us while a newer one is pending).
        let Some(pending) = call.reinvite.take_if(|p| p.client == *key) else {
            // A retransmitted 2xx of a re-INVITE we already completed: ACK again.
            if (200..300).contains(&code) && resp_is_invite(&resp) {
                let side = self.client_side_of(call_id, &resp);
                if let Some(side) = side {
                    self.send_ack(call_id, side, cseq, None);
                }
            }
            return;
        };
        let to_side = pending.from.other();
        let offer_info = pending_offer_info(&pending);
        if (200..300).contains(&code) {
            if pending.method_is_invite {
                self.send_ack(call_id, to_side, cseq, None);
            }
            if let Some(info) = pending.offer.clone() {
                self.set_remote_media(call_id, pending.from, info);
            }
            let mut body = None;
            if let Ok(mut answer) = sdp::parse(&resp.body) {
                let ok = offer_info
                    .as_ref()
                    .is_none_or(|o| sdp::restrict_answer(&mut answer, o).is_ok());
                if ok {
                    if let Ok(info) = sdp::audio_info(&answer) {
                        self.set_remote_media(call_id, to_side, info);
                    }
                    body = self.anchored_sdp(call_id, pending.from, answer);
                }
            }
            let Some(call) = self.calls.get(&call_id) else {
                return;
            };
            let tag = call.leg(pending.from).local_tag.clone();
            let transport = call.leg(pending.from).transport;
            self.respond_sdp(
                now,
                (&pending.server, &pending.request),
                (code, "OK"),
                &tag,
                transport,
                body,
            );
        } else {
            let reason = reason_phrase(&resp);
            let extra: Vec<(&str, String)> = message::header(&resp.headers, "Retry-After")
                .map(|v| vec![("Retry-After", v)])
                .unwrap_or_default();
            self.respond(
                now,
                (&pending.server, &pending.request),
                code,
                &reason,
                None,
                &extra,
            );
            if code == 408 || code == 481 {
                // RFC 3261 §14.1: the dialog is gone on the far side.
                self.end_call(now, call_id, "re-INVITE failed: dialog gone");
            }
        }
    }

    /// Which leg a response to one of our in-dialog requests came from.
    fn client_side_of(&self, call_id: CallId, resp: &rsip::Response) -> Option<Side> {
        let cid = message::call_id(&resp.headers)?;
        let call = self.calls.get(&call_id)?;
        if call.a.call_id == cid {
            Some(Side::A)
        } else if call.b.call_id == cid {
            Some(Side::B)
        } else {
            None
        }
    }

    pub(super) fn on_stray_response(&mut self, resp: rsip::Response) {
        // A 2xx to our INVITE after its transaction ended: re-send our ACK (RFC 6026 §8.1).
        if !(200..300).contains(&resp.status_code.code()) || !resp_is_invite(&resp) {
            return;
        }
        let (Some(cid), Some(tag)) = (
            message::call_id(&resp.headers),
            message::from_tag(&resp.headers),
        ) else {
            return;
        };
        let Some(&DialogRef::Leg(call_id, Side::B)) = self.dialogs.get(&(cid, tag)) else {
            return;
        };
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        if let Some(ack) = call.ack_b.clone() {
            let (peer, transport) = (call.b.peer, call.b.transport);
            self.txl
                .send_stateless(rsip::SipMessage::Request(ack), peer, transport);
        }
    }

    pub(super) fn on_client_timeout(&mut self, now: Instant, key: TxKey) {
        let Some((call_id, purpose)) = self.client.remove(&key) else {
            return;
        };
        match purpose {
            ClientPurpose::Invite => {
                self.reject_a_invite(now, call_id, 408, "Request Timeout");
                self.remove_call(now, call_id, "callee did not answer (timeout)");
            }
            ClientPurpose::Reinvite => {
                if let Some(p) = self.calls.get_mut(&call_id).and_then(|c| c.reinvite.take()) {
                    self.respond(
                        now,
                        (&p.server, &p.request),
                        408,
                        "Request Timeout",
                        None,
                        &[],
                    );
                }
                self.end_call(now, call_id, "re-INVITE timed out");
            }
            ClientPurpose::Relay => {
                if let Some((skey, sreq)) = self.relayed.remove(&key) {
                    self.respond(now, (&skey, &sreq), 408, "Request Timeout", None, &[]);
                }
            }
            ClientPurpose::SessionInvite(sid) => self.on_session_invite_timeout(now, sid),
            ClientPurpose::Bye | ClientPurpose::Cancel => {}
        }
    }

    /// B sent its first provisional response after the call was gone: the CANCEL decided back
    /// then may go now (RFC 3261 §9.1), so that B stops ringing.
    pub(super) fn cancel_orphan(&mut self, now: Instant, call_id: CallId, key: &TxKey) {
        let Some(orphan) = self.orphans.get_mut(key) else {
            return;
        };
        let Some(invite) = orphan.cancel.take() else {
            return;
        };
        let (peer, transport) = (orphan.peer, orphan.transport);
        self.send_cancel(now, call_id, &invite, peer, transport);
    }

    /// B answered 2xx after the call was gone (CANCEL crossed the 200): ACK it and hang up, built
    /// from the response alone (RFC 3261 §9.1: the CANCEL lost the race).
    pub(super) fn ack_and_bye_orphan(&mut self, now: Instant, key: &TxKey, resp: &rsip::Response) {
        let Some((peer, transport, hung_up)) = self
            .orphans
            .get(key)
            .map(|o| (o.peer, o.transport, o.hung_up))
        else {
            return;
        };
        let ua = self.cfg.sip.user_agent.clone();
        let via = self.local_addr(transport);
        let target = message::header(&resp.headers, "Contact")
            .map(|c| message::addr_uri(&c).unwrap_or_default());
        let (Some(target), Some(from), Some(to), Some(cid), Some((cseq, _))) = (
            target,
            message::header(&resp.headers, "From"),
            message::header(&resp.headers, "To"),
            message::call_id(&resp.headers),
            message::cseq(&resp.headers),
        ) else {
            return;
        };
        let mut rr = message::headers_all(&resp.headers, "Record-Route");
        rr.reverse();
        // The ACK for every copy of the 2xx (the transaction passes retransmissions up); the BYE
        // once.
        let bye = (!hung_up).then_some(("BYE", cseq.saturating_add(1)));
        for (method, num) in std::iter::once(("ACK", cseq)).chain(bye) {
            let branch = format!("{}{}", wire::BRANCH_MARK, self.ids.branch());
            let bytes = wire::build(
                &OutRequest {
                    method,
                    uri: &target,
                    from: &from,
                    to: &to,
                    call_id: &cid,
                    cseq: num,
                    contact: None,
                    routes: &rr,
                    max_forwards: 70,
                    extra: &[],
                    body: None,
                },
                via,
                transport,
                &branch,
                &ua,
            );
            match message::parse(&bytes) {
                Ok(rsip::SipMessage::Request(r)) if method == "ACK" => {
                    self.txl
                        .send_stateless(rsip::SipMessage::Request(r), peer, transport)
                }
                Ok(rsip::SipMessage::Request(r)) => {
                    self.txl.send_request(now, r, peer, transport);
                }
                _ => {}
            }
        }
        if let Some(o) = self.orphans.get_mut(key) {
            if !o.hung_up {
                o.hung_up = true;
                info!(call_id = %cid, "2xx for a call that is gone: acknowledged and hung up");
            }
        }
    }
}

fn reason_phrase(resp: &rsip::Response) -> String {
    let s = resp.status_code.to_string();
    s.split_once(' ')
        .map(|(_, r)| r.to_string())
        .unwrap_or_default()
}

fn resp_is_invite(resp: &rsip::Response) -> bool {
    matches!(
        message::cseq(&resp.headers),
        Some((_, rsip::Method::Invite))
    )
}

fn pending_offer_info(p: &Reinvite) -> Option<AudioInfo> {
    sdp::parse(&p.request.body)
        .ok()
        .and_then(|s| sdp::audio_info(&s).ok())
}
