//! Client side: REGISTER, OPTIONS and in-dialog non-INVITE transactions, INVITE / re-INVITE with
//! retransmissions, digest challenges, ACK, CANCEL and BYE.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::absorb::{status, Datagram, TxKey};
use super::dialog::{CallHandle, DialogState, InviteTx};
use super::{
    authorize, body_text, header_list, header_value, header_values, host_of, new_branch, new_tag,
    random_token, tag_of, uri_of, AlgorithmPref, OutRequest, Response, TestUa, UaError, ALLOW, T1,
    T2,
};

impl TestUa {
    /// Runs one non-INVITE client transaction (Timer E retransmissions, §17.1.2) to its final
    /// response.
    async fn non_invite_tx(
        &mut self,
        bytes: &[u8],
        dest: SocketAddr,
        key: TxKey,
    ) -> Result<Response, UaError> {
        self.send_to(bytes, dest).await?;
        let deadline = Instant::now() + self.request_timeout;
        let mut interval = T1;
        let mut next = Instant::now() + interval;
        loop {
            let k = key.clone();
            let got = self
                .next_matching(next.min(deadline), move |d| {
                    d.response_key().as_ref() == Some(&k)
                })
                .await;
            match got.as_ref().and_then(Datagram::response) {
                Some(resp) if status(resp) < 200 => interval = T2,
                Some(resp) => {
                    let resp = resp.clone();
                    self.complete_client(key, None);
                    return Ok(resp);
                }
                None => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(UaError::Timeout(format!("response to {}", key.method)));
                    }
                    if now >= next {
                        self.send_to(bytes, dest).await?;
                        interval = (interval * 2).min(T2);
                        next = now + interval;
                    }
                }
            }
        }
    }

    /// Sends a non-INVITE request; with `auth`, answers up to two 401/407 challenges (the second
    /// for a `stale=true` re-challenge). Returns the final response and the request as last sent.
    async fn send_non_invite(
        &mut self,
        mut req: OutRequest,
        dest: SocketAddr,
        auth: bool,
        pref: Option<AlgorithmPref>,
    ) -> Result<(Response, OutRequest), UaError> {
        let mut attempts = 0;
        loop {
            let bytes = self.render(&req);
            let key = TxKey {
                branch: req.branch.clone(),
                method: req.method.clone(),
            };
            let resp = self.non_invite_tx(&bytes, dest, key).await?;
            let code = status(&resp);
            if auth && (code == 401 || code == 407) && attempts < 2 {
                self.add_credentials(&mut req, &resp, pref)?;
                attempts += 1;
                continue;
            }
            return Ok((resp, req));
        }
    }

    /// Turns `req` into its authenticated retry: credentials for the challenge in `resp`, CSeq+1,
    /// fresh branch (§22.2).
    fn add_credentials(
        &self,
        req: &mut OutRequest,
        resp: &Response,
        pref: Option<AlgorithmPref>,
    ) -> Result<(), UaError> {
        let (challenge_hdr, auth_hdr) = if status(resp) == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenges = header_values(&resp.headers, challenge_hdr);
        let value = authorize(
            &challenges,
            pref,
            &self.user,
            &self.password,
            &req.method,
            &req.ruri,
            &random_token(16),
            1,
        )?;
        req.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(auth_hdr));
        req.headers.push((auth_hdr.to_string(), value));
        req.cseq += 1;
        req.branch = new_branch();
        Ok(())
    }

    /// REGISTERs our Contact for `expires` seconds (0 unregisters), answering a digest challenge
    /// with the preferred algorithm. Returns the final response (a 401/407 if auth failed).
    pub async fn register(
        &mut self,
        expires: u32,
        alg: Option<AlgorithmPref>,
    ) -> Result<Response, UaError> {
        self.reg_cseq += 1;
        let party = self.local_party();
        let req = OutRequest {
            method: "REGISTER".into(),
            ruri: format!("sip:{}", self.server),
            branch: new_branch(),
            from: format!("{party};tag={}", new_tag()),
            to: party,
            call_id: self.reg_call_id.clone(),
            cseq: self.reg_cseq,
            routes: Vec::new(),
            contact: true,
            headers: vec![("Expires".into(), expires.to_string())],
            body: None,
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        let (resp, sent) = self.send_non_invite(req, dest, true, alg).await?;
        self.reg_cseq = sent.cseq;
        Ok(resp)
    }

    /// Sends an out-of-dialog OPTIONS to `uri` via the server.
    pub async fn options(&mut self, uri: &str) -> Result<Response, UaError> {
        let req = OutRequest {
            method: "OPTIONS".into(),
            ruri: uri.to_string(),
            branch: new_branch(),
            from: format!("{};tag={}", self.local_party(), new_tag()),
            to: format!("<{uri}>"),
            call_id: format!("{}@{}", random_token(20), self.local.ip()),
            cseq: 1,
            routes: Vec::new(),
            contact: true,
            headers: vec![("Accept".into(), "application/sdp".into())],
            body: None,
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        Ok(self.send_non_invite(req, dest, false, None).await?.0)
    }

    /// Sends an INVITE for `to_user` at the server with `sdp` as offer. Does not wait for the
    /// final response (see [`TestUa::wait_final`]).
    ///
    /// With `auth`, waits for the first response: a 401/407 is ACKed and the INVITE re-sent with
    /// credentials; any other response stays queued for `wait_final` (which also answers a
    /// challenge that comes after a 100 Trying).
    pub async fn invite(
        &mut self,
        to_user: &str,
        sdp: &str,
        auth: bool,
    ) -> Result<CallHandle, UaError> {
        self.invite_with(to_user, sdp, auth, &[]).await
    }

    /// [`TestUa::invite`] with extra headers (e.g. `Join`, RFC 3911).
    pub async fn invite_with(
        &mut self,
        to_user: &str,
        sdp: &str,
        auth: bool,
        extra_headers: &[(&str, &str)],
    ) -> Result<CallHandle, UaError> {
        let local_uri = self.local_party();
        let remote_uri = format!("<sip:{to_user}@{}>", host_of(self.server));
        let local_tag = new_tag();
        let req = OutRequest {
            method: "INVITE".into(),
            ruri: format!("sip:{to_user}@{}", self.server),
            branch: new_branch(),
            from: format!("{local_uri};tag={local_tag}"),
            to: remote_uri.clone(),
            call_id: format!("{}@{}", random_token(20), self.local.ip()),
            cseq: 1,
            routes: Vec::new(),
            contact: true,
            headers: std::iter::once(("Allow".to_string(), ALLOW.to_string()))
                .chain(
                    extra_headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                )
                .collect(),
            body: Some(("application/sdp".into(), sdp.to_string())),
        };
        let dest = self.outbound_proxy.unwrap_or(self.server);
        let mut call = CallHandle {
            call_id: req.call_id.clone(),
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: req.ruri.clone(),
            route_set: Vec::new(),
            local_cseq: req.cseq,
            remote_cseq: None,
            local_sdp: Some(sdp.to_string()),
            remote_sdp: None,
            provisionals: Vec::new(),
            final_status: None,
            is_uas: false,
            invite: None,
            auth,
        };
        self.dialogs.insert(
            call.dialog_key(),
            DialogState {
                local_cseq: req.cseq,
                local_sdp: Some(sdp.to_string()),
                ..DialogState::default()
            },
        );
        self.start_invite(&mut call, req, dest, true).await?;
        if auth {
            let deadline = Instant::now() + self.request_timeout;
            let dg = self.next_invite_response(&mut call, deadline).await?;
            match dg.response() {
                Some(r) if matches!(status(r), 401 | 407) => {
                    let r = r.clone();
                    self.answer_challenge(&mut call, &r).await?;
                }
                _ => self.pending.push_front(dg),
            }
        }
        Ok(call)
    }

    async fn start_invite(
        &mut self,
        call: &mut CallHandle,
        req: OutRequest,
        dest: SocketAddr,
        initial: bool,
    ) -> Result<(), UaError> {
        let bytes = self.render(&req);
        self.send_to(&bytes, dest).await?;
        call.provisionals.clear();
        call.final_status = None;
        call.invite = Some(InviteTx {
            offerless: req.body.is_none(),
            req,
            bytes,
            dest,
            initial,
            got_response: false,
            interval: T1,
            next_retx: Instant::now() + T1,
            auth_tried: false,
        });
        Ok(())
    }

    /// The next response to the call's INVITE, retransmitting it (Timer A) until one arrives.
    async fn next_invite_response(
        &mut self,
        call: &mut CallHandle,
        deadline: Instant,
    ) -> Result<Datagram, UaError> {
        loop {
            let inv = call
                .invite
                .as_ref()
                .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
            let key = TxKey {
                branch: inv.req.branch.clone(),
                method: "INVITE".into(),
            };
            let until = if inv.got_response {
                deadline
            } else {
                inv.next_retx.min(deadline)
            };
            let got = self
                .next_matching(until, move |d| d.response_key().as_ref() == Some(&key))
                .await;
            let inv = call
                .invite
                .as_mut()
                .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
            if let Some(dg) = got {
                inv.got_response = true;
                return Ok(dg);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(UaError::Timeout("response to INVITE".into()));
            }
            if !inv.got_response && now >= inv.next_retx {
                self.socket.send_to(&inv.bytes, inv.dest).await?;
                inv.interval *= 2;
                inv.next_retx = now + inv.interval;
            }
        }
    }

    /// ACKs a non-2xx final response to the call's INVITE (§17.1.1.3: same branch, To of the
    /// response) and closes the transaction.
    async fn ack_non_2xx(&mut self, call: &CallHandle, resp: &Response) -> Result<(), UaError> {
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        let ack = OutRequest {
            method: "ACK".into(),
            to: header_value(&resp.headers, "To").unwrap_or_else(|| inv.req.to.clone()),
            contact: false,
            headers: Vec::new(),
            body: None,
            ..inv.req.clone()
        };
        let bytes = self.render(&ack);
        let dest = inv.dest;
        let key = TxKey {
            branch: inv.req.branch.clone(),
            method: "INVITE".into(),
        };
        self.send_to(&bytes, dest).await?;
        self.complete_client(key, Some((bytes, dest)));
        Ok(())
    }

    async fn answer_challenge(
        &mut self,
        call: &mut CallHandle,
        resp: &Response,
    ) -> Result<(), UaError> {
        self.ack_non_2xx(call, resp).await?;
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        let mut req = inv.req.clone();
        let (dest, initial) = (inv.dest, inv.initial);
        self.add_credentials(&mut req, resp, None)?;
        call.local_cseq = req.cseq;
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(req.cseq);
        self.start_invite(call, req, dest, initial).await?;
        if let Some(inv) = call.invite.as_mut() {
            inv.auth_tried = true;
        }
        Ok(())
    }

    /// Waits for the final response to the call's (re-)INVITE.
    ///
    /// Provisional responses are recorded in `call.provisionals` (and a tagged one sets up the
    /// early dialog). A 2xx is ACKed to its Contact through the route set; a non-2xx is ACKed on
    /// the INVITE's branch. With `auth`, one 401/407 is answered and the wait goes on.
    pub async fn wait_final(
        &mut self,
        call: &mut CallHandle,
        timeout: Duration,
    ) -> Result<Response, UaError> {
        let deadline = Instant::now() + timeout;
        loop {
            let dg = self.next_invite_response(call, deadline).await?;
            let Some(resp) = dg.response().cloned() else {
                continue;
            };
            let code = status(&resp);
            let initial = call.invite.as_ref().is_some_and(|i| i.initial);
            if code < 200 {
                call.provisionals.push(code);
                if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
                    call.remote_tag = Some(tag);
                    if initial {
                        self.learn_target(call, &resp, true);
                    }
                }
                if let Some(sdp) = body_text(&resp.headers, &resp.body) {
                    call.remote_sdp = Some(sdp);
                }
                continue;
            }
            let auth_tried = call.invite.as_ref().is_some_and(|i| i.auth_tried);
            if matches!(code, 401 | 407) && call.auth && !auth_tried {
                self.answer_challenge(call, &resp).await?;
                continue;
            }
            call.final_status = Some(code);
            if code >= 300 {
                self.ack_non_2xx(call, &resp).await?;
                return Ok(resp);
            }
            self.on_invite_2xx(call, &resp, initial).await?;
            return Ok(resp);
        }
    }

    /// Takes remote target (Contact) and, for the initial INVITE, the route set (Record-Route
    /// reversed, §12.1.2) from a dialog-creating response.
    fn learn_target(&self, call: &mut CallHandle, resp: &Response, initial: bool) {
        if let Some(c) = header_list(&resp.headers, "Contact").first() {
            call.remote_target = uri_of(c);
        }
        if initial {
            let mut rr = header_list(&resp.headers, "Record-Route");
            rr.reverse();
            call.route_set = rr;
        }
    }

    async fn on_invite_2xx(
        &mut self,
        call: &mut CallHandle,
        resp: &Response,
        initial: bool,
    ) -> Result<(), UaError> {
        if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
            call.remote_tag = Some(tag);
        }
        self.learn_target(call, resp, initial);
        if let Some(sdp) = body_text(&resp.headers, &resp.body) {
            call.remote_sdp = Some(sdp);
        }
        let inv = call
            .invite
            .clone()
            .ok_or_else(|| UaError::Protocol("no INVITE in progress".into()))?;
        // Offerless INVITE: the 2xx holds the offer, our ACK the answer (RFC 3261 §13.2.1).
        let body = if inv.offerless {
            call.local_sdp
                .clone()
                .map(|s| ("application/sdp".to_string(), s))
        } else {
            None
        };
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        let ack = OutRequest {
            method: "ACK".into(),
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq: inv.req.cseq,
            routes,
            contact: false,
            headers: Vec::new(),
            body,
        };
        let bytes = self.render(&ack);
        self.send_to(&bytes, dest).await?;
        let key = TxKey {
            branch: inv.req.branch.clone(),
            method: "INVITE".into(),
        };
        self.complete_client(key, Some((bytes, dest)));
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.established = true;
        st.local_sdp = call.local_sdp.clone();
        Ok(())
    }

    /// Waits for the next provisional response to the call's INVITE and records it. A final
    /// response is left queued for [`TestUa::wait_final`] and reported as a protocol error.
    pub async fn wait_provisional(
        &mut self,
        call: &mut CallHandle,
        timeout: Duration,
    ) -> Result<Response, UaError> {
        let deadline = Instant::now() + timeout;
        let dg = self.next_invite_response(call, deadline).await?;
        let resp = dg
            .response()
            .cloned()
            .ok_or_else(|| UaError::Malformed("not a response".into()))?;
        let code = status(&resp);
        if code >= 200 {
            self.pending.push_front(dg);
            return Err(UaError::Protocol(format!(
                "final response {code} instead of a provisional one"
            )));
        }
        call.provisionals.push(code);
        if let Some(tag) = header_value(&resp.headers, "To").and_then(|t| tag_of(&t)) {
            call.remote_tag = Some(tag);
            let initial = call.invite.as_ref().is_some_and(|i| i.initial);
            if initial {
                self.learn_target(call, &resp, true);
            }
        }
        if let Some(sdp) = body_text(&resp.headers, &resp.body) {
            call.remote_sdp = Some(sdp);
        }
        Ok(resp)
    }

    /// CANCELs the call's pending INVITE (§9.1: same Request-URI, Call-ID, From, To, CSeq number
    /// and branch) and returns the response to the CANCEL. The INVITE's 487 then arrives through
    /// [`TestUa::wait_final`]. RFC 3261 wants a provisional response first; that is the test's
    /// business, so that a test can also cancel too early on purpose.
    pub async fn cancel(&mut self, call: &CallHandle) -> Result<Response, UaError> {
        let inv = call
            .invite
            .as_ref()
            .ok_or_else(|| UaError::Protocol("no INVITE to cancel".into()))?;
        let req = OutRequest {
            method: "CANCEL".into(),
            contact: false,
            headers: Vec::new(),
            body: None,
            ..inv.req.clone()
        };
        let dest = inv.dest;
        Ok(self.send_non_invite(req, dest, false, None).await?.0)
    }

    /// Sends a re-INVITE in the call's dialog (`sdp = None`: offerless, our last SDP goes in the
    /// ACK) and waits for its final response, ACKing it.
    pub async fn reinvite(
        &mut self,
        call: &mut CallHandle,
        sdp: Option<&str>,
    ) -> Result<Response, UaError> {
        if let Some(s) = sdp {
            call.local_sdp = Some(s.to_string());
        }
        let cseq = self.next_cseq(call);
        call.local_cseq = cseq;
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        let req = OutRequest {
            method: "INVITE".into(),
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq,
            routes,
            contact: true,
            headers: vec![("Allow".into(), ALLOW.into())],
            body: sdp.map(|s| ("application/sdp".to_string(), s.to_string())),
        };
        self.start_invite(call, req, dest, false).await?;
        let timeout = self.request_timeout;
        self.wait_final(call, timeout).await
    }

    /// Sends BYE in the call's dialog and returns its final response.
    pub async fn bye(&mut self, call: &CallHandle) -> Result<Response, UaError> {
        self.send_request_in_dialog(call, "BYE", &[], None).await
    }

    /// Sends a non-INVITE request (INFO, UPDATE, OPTIONS, BYE...) in the call's dialog with extra
    /// headers and an optional `(content type, body)`; returns its final response.
    pub async fn send_request_in_dialog(
        &mut self,
        call: &CallHandle,
        method: &str,
        extra_headers: &[(&str, &str)],
        body: Option<(&str, &str)>,
    ) -> Result<Response, UaError> {
        let method = method.to_ascii_uppercase();
        let cseq = self.next_cseq(call);
        let (ruri, routes, dest) = self.dialog_target(call).await?;
        if method == "BYE" {
            let st = self.dialogs.entry(call.dialog_key()).or_default();
            st.terminated = true;
        }
        let req = OutRequest {
            contact: method == "UPDATE",
            method,
            ruri,
            branch: new_branch(),
            from: call.our_from(),
            to: call.our_to(),
            call_id: call.call_id.clone(),
            cseq,
            routes,
            headers: extra_headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.map(|(t, b)| (t.to_string(), b.to_string())),
        };
        let (resp, sent) = self.send_non_invite(req, dest, call.auth, None).await?;
        let st = self.dialogs.entry(call.dialog_key()).or_default();
        st.local_cseq = st.local_cseq.max(sent.cseq);
        Ok(resp)
    }
}
