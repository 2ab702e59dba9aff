//! Server side: receiving INVITEs and requests, responding, answering, waiting for the ACK,
//! automatic replies and CANCEL handling.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::absorb::{request_key, Datagram, TxKey};
use super::dialog::{CallHandle, DialogKey, IncomingCall, UasInvite};
use super::{
    body_text, header_list, header_value, msg, new_tag, strip_tag, tag_of, uri_of, TestUa, UaError,
    ALLOW, T1, T2,
};

impl TestUa {
    /// Waits for a new incoming INVITE (one without To tag).
    pub async fn wait_invite(&mut self, timeout: Duration) -> Result<IncomingCall, UaError> {
        let deadline = Instant::now() + timeout;
        let dg = self
            .next_matching(deadline, |d| {
                d.request().is_some_and(|r| {
                    r.method == rsip::Method::Invite
                        && header_value(&r.headers, "To")
                            .and_then(|t| tag_of(&t))
                            .is_none()
                })
            })
            .await
            .ok_or_else(|| UaError::Timeout("INVITE".into()))?;
        let request = dg
            .request()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a request".into()))?;
        Ok(self.register_incoming(request, dg.src))
    }

    fn register_incoming(&mut self, request: rsip::Request, source: SocketAddr) -> IncomingCall {
        let key = request_key(&request);
        let to_tag = new_tag();
        self.uas_invites.insert(
            key.branch.clone(),
            UasInvite {
                request: request.clone(),
                source,
                to_tag: to_tag.clone(),
                final_sent: false,
            },
        );
        IncomingCall {
            sdp: body_text(&request.headers, &request.body),
            call_id: msg::call_id(&request.headers).unwrap_or_default(),
            from_tag: header_value(&request.headers, "From").and_then(|f| tag_of(&f)),
            request,
            source,
            to_tag,
            key,
        }
    }

    /// Sends a response to an incoming INVITE: our stable To tag, Contact on 101–299, Record-Route
    /// copied. A 2xx is sent once; [`TestUa::wait_ack`] retransmits it until the ACK arrives.
    pub async fn respond(
        &mut self,
        inc: &IncomingCall,
        code: u16,
        reason: &str,
        sdp: Option<&str>,
    ) -> Result<(), UaError> {
        let body = sdp.map(|s| ("application/sdp", s));
        let contact = (101..300).contains(&code);
        let bytes = self.render_response(
            &inc.request,
            code,
            reason,
            Some(&inc.to_tag),
            contact,
            &[],
            body,
        );
        self.send_response(&inc.key, bytes, inc.source).await?;
        if code >= 200 {
            if let Some(u) = self.uas_invites.get_mut(&inc.key.branch) {
                u.final_sent = true;
            }
        }
        if (200..300).contains(&code) {
            let st = self
                .dialogs
                .entry(DialogKey {
                    call_id: inc.call_id.clone(),
                    local_tag: inc.to_tag.clone(),
                })
                .or_default();
            st.established = true;
            if let Some(s) = sdp {
                st.local_sdp = Some(s.to_string());
            }
        }
        Ok(())
    }

    /// Waits for the ACK of our final response to `inc`, retransmitting that response at T1,
    /// 2·T1... capped at T2 (§13.3.1.4 / §17.2.1) until it comes.
    pub async fn wait_ack(
        &mut self,
        inc: &IncomingCall,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let cseq = msg::cseq(&inc.request.headers)
            .ok_or_else(|| UaError::Malformed("INVITE without CSeq".into()))?
            .0;
        self.await_ack(&inc.key, &inc.call_id, cseq, timeout).await
    }

    async fn await_ack(
        &mut self,
        key: &TxKey,
        call_id: &str,
        cseq: u32,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let deadline = Instant::now() + timeout;
        let mut interval = T1;
        let mut next = Instant::now() + interval;
        loop {
            let cid = call_id.to_string();
            let got = self
                .next_matching(next.min(deadline), move |d| {
                    d.request().is_some_and(|r| {
                        r.method == rsip::Method::Ack
                            && msg::call_id(&r.headers).as_deref() == Some(cid.as_str())
                            && msg::cseq(&r.headers).map(|c| c.0) == Some(cseq)
                    })
                })
                .await;
            if let Some(req) = got.as_ref().and_then(Datagram::request) {
                return Ok(req.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UaError::Timeout(format!("ACK for {call_id} CSeq {cseq}")));
            }
            if now >= next {
                let last = self.shared.last_response(key);
                if let Some((bytes, to)) = last {
                    self.send_to(&bytes, to).await?;
                }
                interval = (interval * 2).min(T2);
                next = now + interval;
            }
        }
    }

    /// Rings (180) and answers (200 with `sdp`), waits for the ACK, and returns the dialog.
    pub async fn answer(&mut self, inc: &IncomingCall, sdp: &str) -> Result<CallHandle, UaError> {
        self.respond(inc, 180, "Ringing", None).await?;
        self.respond(inc, 200, "OK", Some(sdp)).await?;
        let timeout = self.request_timeout;
        let ack = self.wait_ack(inc, timeout).await?;
        let h = &inc.request.headers;
        let from = header_value(h, "From").unwrap_or_default();
        let to = header_value(h, "To").unwrap_or_default();
        let remote_target = header_list(h, "Contact")
            .first()
            .map(|c| uri_of(c))
            .unwrap_or_else(|| uri_of(&from));
        let local_cseq = self
            .dialogs
            .get(&DialogKey {
                call_id: inc.call_id.clone(),
                local_tag: inc.to_tag.clone(),
            })
            .map(|d| d.local_cseq)
            .unwrap_or_default();
        Ok(CallHandle {
            call_id: inc.call_id.clone(),
            local_tag: inc.to_tag.clone(),
            remote_tag: tag_of(&from),
            local_uri: strip_tag(&to),
            remote_uri: strip_tag(&from),
            remote_target,
            // §12.1.1: the callee keeps Record-Route in received order.
            route_set: header_list(h, "Record-Route"),
            local_cseq,
            remote_cseq: msg::cseq(h).map(|c| c.0),
            local_sdp: Some(sdp.to_string()),
            // An offerless INVITE gets its answer in the ACK.
            remote_sdp: inc
                .sdp
                .clone()
                .or_else(|| body_text(&ack.headers, &ack.body)),
            provisionals: Vec::new(),
            final_status: Some(200),
            is_uas: true,
            invite: None,
            auth: true,
        })
    }

    /// Waits for a request of `method` (`"INVITE"` means an in-dialog re-INVITE; new calls come
    /// through [`TestUa::wait_invite`]).
    ///
    /// With auto-reply on (default): BYE, INFO, UPDATE, OPTIONS get 200 (481 when in a dialog we
    /// do not know or have ended); CANCEL gets 200 and its INVITE 487 unless already answered
    /// (481 if no such INVITE); a re-INVITE gets 200 with the SDP set by
    /// [`TestUa::set_auto_answer_reinvite`] or our last SDP, and its ACK is awaited.
    pub async fn wait_request(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Result<rsip::Request, UaError> {
        let want = method.to_ascii_uppercase();
        let deadline = Instant::now() + timeout;
        let m = want.clone();
        let dg = self
            .next_matching(deadline, move |d| {
                d.request().is_some_and(|r| {
                    r.method.to_string() == m
                        && (m != "INVITE"
                            || header_value(&r.headers, "To")
                                .and_then(|t| tag_of(&t))
                                .is_some())
                })
            })
            .await
            .ok_or_else(|| UaError::Timeout(want.clone()))?;
        let req = dg
            .request()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a request".into()))?;
        if self.auto_reply {
            self.auto_respond(&req, dg.src).await?;
        }
        Ok(req)
    }

    /// Answers a request returned by [`TestUa::wait_request`] (or any request the UA received)
    /// by hand, with extra headers (a challenge, a Retry-After...). A missing To tag is filled in
    /// (the INVITE's stable tag for a new call). The response is re-sent on retransmissions.
    pub async fn reply(
        &mut self,
        req: &rsip::Request,
        code: u16,
        reason: &str,
        extra_headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<(), UaError> {
        let key = request_key(req);
        let source = self
            .shared
            .source_of(&key)
            .ok_or_else(|| UaError::Protocol("reply to a request we never received".into()))?;
        let to_tag = self
            .uas_invites
            .get(&key.branch)
            .filter(|_| req.method == rsip::Method::Invite)
            .map(|u| u.to_tag.clone())
            .unwrap_or_else(new_tag);
        let contact = matches!(req.method, rsip::Method::Invite | rsip::Method::Update)
            && (101..300).contains(&code);
        let bytes = self.render_response(
            req,
            code,
            reason,
            Some(&to_tag),
            contact,
            extra_headers,
            body,
        );
        self.send_response(&key, bytes, source).await?;
        if req.method == rsip::Method::Invite && code >= 200 {
            if let Some(u) = self.uas_invites.get_mut(&key.branch) {
                u.final_sent = true;
            }
        }
        Ok(())
    }

    async fn auto_respond(&mut self, req: &rsip::Request, src: SocketAddr) -> Result<(), UaError> {
        let key = request_key(req);
        if req.method == rsip::Method::Cancel {
            return self.handle_cancel(req, src).await;
        }
        if !matches!(
            req.method,
            rsip::Method::Bye
                | rsip::Method::Info
                | rsip::Method::Update
                | rsip::Method::Options
                | rsip::Method::Invite
        ) {
            return Ok(());
        }
        let to_tag = header_value(&req.headers, "To").and_then(|t| tag_of(&t));
        let dkey = to_tag.as_ref().map(|t| DialogKey {
            call_id: msg::call_id(&req.headers).unwrap_or_default(),
            local_tag: t.clone(),
        });
        let dialog = dkey.as_ref().and_then(|k| self.dialogs.get(k).cloned());
        // §12.2.2: a request for a dialog we do not have (or a mid-dialog method without To tag)
        // gets 481. Only OPTIONS makes sense outside a dialog.
        let dialog_ok = dialog
            .as_ref()
            .is_some_and(|d| d.established && !d.terminated);
        let outside_ok = dkey.is_none() && req.method == rsip::Method::Options;
        if !dialog_ok && !outside_ok {
            let bytes = self.render_response(
                req,
                481,
                "Call/Transaction Does Not Exist",
                None,
                false,
                &[],
                None,
            );
            return self.send_response(&key, bytes, src).await;
        }
        let out_tag = to_tag.clone().unwrap_or_else(new_tag);
        match req.method {
            rsip::Method::Bye => {
                if let Some(d) = dkey.as_ref().and_then(|k| self.dialogs.get_mut(k)) {
                    d.terminated = true;
                }
                let bytes = self.render_response(req, 200, "OK", Some(&out_tag), false, &[], None);
                self.send_response(&key, bytes, src).await
            }
            rsip::Method::Invite | rsip::Method::Update => {
                let has_offer = body_text(&req.headers, &req.body).is_some();
                let is_invite = req.method == rsip::Method::Invite;
                let sdp = self
                    .reinvite_sdp
                    .clone()
                    .or_else(|| dialog.as_ref().and_then(|d| d.local_sdp.clone()));
                // An UPDATE without offer gets no SDP; a re-INVITE always carries one (offer or
                // answer).
                let body = sdp.filter(|_| is_invite || has_offer);
                if let (Some(k), Some(s)) = (&dkey, &body) {
                    if let Some(d) = self.dialogs.get_mut(k) {
                        d.local_sdp = Some(s.clone());
                    }
                }
                let bytes = self.render_response(
                    req,
                    200,
                    "OK",
                    Some(&out_tag),
                    true,
                    &[],
                    body.as_deref().map(|s| ("application/sdp", s)),
                );
                self.send_response(&key, bytes, src).await?;
                if is_invite {
                    let call_id = msg::call_id(&req.headers).unwrap_or_default();
                    let cseq = msg::cseq(&req.headers).map(|c| c.0).unwrap_or_default();
                    let timeout = self.request_timeout;
                    self.await_ack(&key, &call_id, cseq, timeout).await?;
                }
                Ok(())
            }
            _ => {
                let extra: &[(&str, &str)] = if req.method == rsip::Method::Options {
                    &[("Allow", ALLOW), ("Accept", "application/sdp")]
                } else {
                    &[]
                };
                let bytes =
                    self.render_response(req, 200, "OK", Some(&out_tag), false, extra, None);
                self.send_response(&key, bytes, src).await
            }
        }
    }

    /// §9.2: 200 to the CANCEL, then 487 to the INVITE if it has no final response yet.
    async fn handle_cancel(&mut self, req: &rsip::Request, src: SocketAddr) -> Result<(), UaError> {
        let key = request_key(req);
        if !self.uas_invites.contains_key(&key.branch) {
            // The INVITE may still be queued, not yet picked by wait_invite.
            let branch = key.branch.clone();
            let pos = self.pending.iter().position(|d| {
                d.request().is_some_and(|r| {
                    r.method == rsip::Method::Invite && request_key(r).branch == branch
                })
            });
            if let Some(dg) = pos.and_then(|i| self.pending.remove(i)) {
                if let Some(r) = dg.request().cloned() {
                    self.register_incoming(r, dg.src);
                }
            }
        }
        let Some(inv) = self.uas_invites.get(&key.branch).cloned() else {
            let bytes = self.render_response(
                req,
                481,
                "Call/Transaction Does Not Exist",
                None,
                false,
                &[],
                None,
            );
            return self.send_response(&key, bytes, src).await;
        };
        let ok = self.render_response(req, 200, "OK", Some(&inv.to_tag), false, &[], None);
        self.send_response(&key, ok, src).await?;
        if !inv.final_sent {
            let bytes = self.render_response(
                &inv.request,
                487,
                "Request Terminated",
                Some(&inv.to_tag),
                false,
                &[],
                None,
            );
            self.send_response(&request_key(&inv.request), bytes, inv.source)
                .await?;
            if let Some(u) = self.uas_invites.get_mut(&key.branch) {
                u.final_sent = true;
            }
        }
        Ok(())
    }
}
