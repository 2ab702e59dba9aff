//! Calls and their legs: the per-call state (two dialogs, their media, the pending INVITEs)
//! and the call lifecycle (give up, end, cancel, remove).

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::info;

use super::media_plane::{MediaCommand, MediaRole};
use super::{ClientPurpose, Engine, Notice, Orphan};
use crate::ids::{CallId, SessionId, Side};
use crate::sdp::{AudioInfo, Origin};
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) call_id: String,
    pub(super) local_tag: String,
    pub(super) remote_tag: Option<String>,
    /// Our name-addr on this leg, without tag.
    pub(super) local_uri: String,
    /// The peer's name-addr, without tag.
    pub(super) remote_uri: String,
    pub(super) remote_target: String,
    pub(super) route_set: Vec<String>,
    pub(super) local_cseq: u32,
    pub(super) remote_cseq: Option<u32>,
    /// Where requests to this leg go: for A the address its INVITE came from (works through NAT),
    /// for B the binding's source address, static contact or trunk.
    pub(super) peer: SocketAddr,
    pub(super) transport: Transport,
    pub(super) rtp_port: u16,
    pub(super) origin: Origin,
    pub(super) last_sdp_sent: Option<Vec<u8>>,
    pub(super) remote_media: Option<AudioInfo>,
}

impl Leg {
    /// Record the CSeq of an incoming in-dialog request; false if it is out of order
    /// (RFC 3261 §12.2.2: lower than, or for non-ACK equal to, the last one).
    pub(super) fn accept_cseq(&mut self, req: &rsip::Request) -> bool {
        let cseq = message::cseq(&req.headers).map(|(n, _)| n).unwrap_or(0);
        let is_ack = req.method == rsip::Method::Ack;
        if self
            .remote_cseq
            .is_some_and(|last| cseq < last || (cseq == last && !is_ack))
        {
            return false;
        }
        self.remote_cseq = Some(cseq);
        true
    }

    pub(super) fn local_party(&self) -> String {
        format!("{};tag={}", self.local_uri, self.local_tag)
    }
    pub(super) fn remote_party(&self) -> String {
        match &self.remote_tag {
            Some(t) => format!("{};tag={}", self.remote_uri, t),
            None => self.remote_uri.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// B's INVITE is outstanding.
    Routing,
    /// 2xx relayed to A.
    Connected,
}

#[derive(Debug)]
pub(super) struct Reinvite {
    pub(super) from: Side,
    pub(super) server: TxKey,
    /// Our relayed request's client transaction: only its final response completes this one.
    pub(super) client: TxKey,
    /// The offerer's new media, applied once the offer is accepted (RFC 3264 §8: a rejected
    /// re-offer leaves the session as it was).
    pub(super) offer: Option<AudioInfo>,
    pub(super) request: rsip::Request,
    pub(super) method_is_invite: bool,
}

#[derive(Debug)]
pub(super) struct Call {
    pub(super) span: tracing::Span,
    pub(super) a: Leg,
    pub(super) b: Leg,
    pub(super) state: CallState,
    /// A's INVITE server transaction, until its final response.
    pub(super) a_invite: Option<(TxKey, rsip::Request)>,
    /// B's INVITE client transaction and the INVITE (CANCEL is built from it).
    pub(super) b_invite: Option<(TxKey, rsip::Request)>,
    pub(super) b_provisional_seen: bool,
    pub(super) cancel_pending: bool,
    /// What we offered to B (to restrict its answer), or `None` for a late-offer call.
    pub(super) offer_to_b: Option<AudioInfo>,
    /// A's offer (restricted to what we support): A's answer must come from it.
    pub(super) a_offer: Option<Vec<u8>>,
    /// Late offer: A sent no SDP; B's 2xx carried the offer; B's ACK waits for A's ACK (answer).
    pub(super) late_offer_ack_pending: bool,
    /// Last ACK sent to B, re-sent when B retransmits its 2xx.
    pub(super) ack_b: Option<rsip::Request>,
    pub(super) reinvite: Option<Reinvite>,
    pub(super) connected_at: Option<Instant>,
    pub(super) hold: [bool; 2],
    /// Which leg is the agent (a local user with the agent role), if any: sessions attach here.
    pub(super) agent_side: Option<Side>,
    /// The agent's extension.
    pub(super) agent_user: Option<String>,
    /// Supervisor sessions attached to this call.
    pub(super) sessions: Vec<SessionId>,
    /// Barge promotion: the agent hung up while this supervisor barged; the supervisor now talks
    /// with the customer in the agent's place.
    pub(super) promoted: Option<SessionId>,
    /// B's INVITE (offer, Max-Forwards) waiting for the media plane to bind the ports.
    pub(super) pending_b_invite: Option<(Option<Vec<u8>>, u32)>,
    /// How many times the call's ports were opened.
    pub(super) open_attempts: u32,
    /// Media roles of legs A and B.
    pub(super) roles: [MediaRole; 2],
    /// When the call is given up if still unanswered.
    pub(super) answer_deadline: Instant,
}

impl Call {
    pub(super) fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }
    pub(super) fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }
}

impl Engine {
    /// Answer the caller's still pending INVITE with a final error (with our To-tag on leg A);
    /// nothing if it was answered already.
    pub(super) fn reject_a_invite(
        &mut self,
        now: Instant,
        call_id: CallId,
        code: u16,
        reason: &str,
    ) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if let Some((key, req)) = call.a_invite.take() {
            let tag = call.a.local_tag.clone();
            self.respond(now, (&key, &req), code, reason, Some(&tag), &[]);
        }
    }

    /// Nobody answered in time: 480 to the caller, CANCEL to the callee.
    pub(super) fn give_up_ringing(&mut self, now: Instant, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if call.state != CallState::Routing {
            return;
        }
        self.reject_a_invite(now, call_id, 480, "Temporarily Unavailable (no answer)");
        self.cancel_b(now, call_id);
        self.remove_call(now, call_id, "no answer");
    }

    /// Terminate a call from our side: final error to a pending A INVITE, CANCEL/BYE to B, BYE to A.
    pub(super) fn end_call(&mut self, now: Instant, call_id: CallId, reason: &str) {
        let Some(call) = self.calls.get(&call_id) else {
            return;
        };
        let state = call.state;
        {
            let _s = call.span.enter();
            info!(reason, "call ending");
        }
        match state {
            CallState::Connected => {
                // After barge promotion the agent's dialog is already gone.
                let gone = call.promoted.and(call.agent_side);
                for side in [Side::A, Side::B] {
                    if gone != Some(side) {
                        self.send_in_dialog(now, call_id, side, "BYE", None, ClientPurpose::Bye);
                    }
                }
            }
            CallState::Routing => {
                self.reject_a_invite(now, call_id, 503, "Service Unavailable");
                self.cancel_b(now, call_id);
            }
        }
        self.remove_call(now, call_id, reason);
    }

    /// CANCEL B's INVITE, or remember to once a provisional response arrives (RFC 3261 §9.1).
    pub(super) fn cancel_b(&mut self, now: Instant, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        if !call.b_provisional_seen {
            call.cancel_pending = true;
            return;
        }
        let Some((_, invite)) = call.b_invite.as_ref() else {
            return;
        };
        let invite = invite.clone();
        let (peer, transport) = (call.b.peer, call.b.transport);
        self.send_cancel(now, call_id, &invite, peer, transport);
    }

    /// CANCEL `invite` (RFC 3261 §9.1: same Request-URI, Call-ID, To, From, CSeq number, Route
    /// and top Via as the request it cancels).
    pub(super) fn send_cancel(
        &mut self,
        now: Instant,
        call_id: CallId,
        invite: &rsip::Request,
        peer: SocketAddr,
        transport: Transport,
    ) {
        let cancel = message::cancel_for(invite);
        let key = self.txl.send_request(now, cancel, peer, transport);
        self.client.insert(key, (call_id, ClientPurpose::Cancel));
    }

    pub(super) fn remove_call(&mut self, now: Instant, call_id: CallId, reason: &str) {
        // Every supervisor of the call gets a BYE (docs/design.md §4: the agent call ended).
        let sessions = self
            .calls
            .get(&call_id)
            .map(|c| c.sessions.clone())
            .unwrap_or_default();
        for sid in sessions {
            self.end_session(now, sid, "agent call ended", true);
        }
        // RFC 3261 §15.1.2: requests still pending in the call's dialogs get a final response
        // (487 recommended), else their server transactions wait forever: the caller's INVITE
        // when it hung up an early dialog, a re-INVITE/UPDATE we were relaying.
        self.reject_a_invite(now, call_id, 487, "Request Terminated");
        let Some(mut call) = self.calls.remove(&call_id) else {
            return;
        };
        if let Some(p) = call.reinvite.take() {
            self.respond(
                now,
                (&p.server, &p.request),
                487,
                "Request Terminated",
                None,
                &[],
            );
            // Our relayed re-INVITE may still be answered 2xx: it must be ACKed (RFC 3261
            // §13.2.2.4) even though the call is gone.
            let to = call.leg(p.from.other());
            let orphan = Orphan {
                peer: to.peer,
                transport: to.transport,
                cancel: None,
                hung_up: false,
            };
            self.orphans.insert(p.client, orphan);
        }
        if call.state == CallState::Routing {
            if let Some((key, invite)) = &call.b_invite {
                let orphan = Orphan {
                    peer: call.b.peer,
                    transport: call.b.transport,
                    cancel: call.cancel_pending.then(|| invite.clone()),
                    hung_up: false,
                };
                self.orphans.insert(key.clone(), orphan);
            }
        }
        for leg in [&call.a, &call.b] {
            let key = (leg.call_id.clone(), leg.local_tag.clone());
            self.dialogs.remove(&key);
            self.ended_dialogs.insert(key, now);
            self.pool.release(leg.rtp_port);
        }
        // Client transactions of the call keep running (BYE/CANCEL retransmissions); their
        // responses find no call and are ignored.
        self.media.push_back(MediaCommand::Close { call: call_id });
        let _s = call.span.enter();
        let duration = call.connected_at.map(|t| now.saturating_duration_since(t));
        info!(reason, ?duration, "call ended");
        self.notices.push_back(Notice::CallEnded {
            call: call_id,
            reason: reason.to_string(),
        });
    }
}
