//! What the driver does with its transaction layers' events: incoming requests (the agents'
//! INVITE and ACK, BYE), ACKs for 2xx, and the final responses of calls and sessions.

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_sip::message;
use bibridge_sip::rsip;
use bibridge_sip::transaction::{TxEvent, TxKey};

use super::sdp::{body_of, sdp, sdp_media_addr, uri_addr};
use super::{Dialog, LegState, Pending, SipDriver, AGENTS, SUPS, TRUNK, USER_AGENT};
use crate::rtp::{Ctl, Role};

impl SipDriver {
    pub(super) fn process_events(&mut self, i: usize) {
        while let Some(ev) = self.layers[i].poll_event() {
            match ev {
                TxEvent::Request {
                    key,
                    request,
                    source,
                    ..
                } => self.on_request(i, key, request, source),
                TxEvent::Cancel { key, request, .. } => {
                    // Nothing here rings for long: just confirm the CANCEL.
                    let resp = message::response(&request, 200, "OK", None);
                    let _ = self.layers[i].send_response(Instant::now(), &key, resp);
                }
                TxEvent::Ack { request, .. } => {
                    if i == AGENTS {
                        self.on_agent_ack(&request);
                    }
                }
                TxEvent::Response { key, response } => self.on_response(i, key, response),
                TxEvent::StrayResponse { response, source } => {
                    // A 2xx retransmitted after the transaction ended: ACK it again.
                    if i != AGENTS && response.status_code.code() / 100 == 2 {
                        self.ack_2xx(i, &response, source);
                    }
                }
                TxEvent::Timeout { key } => {
                    if let Some(p) = self.pending[i].remove(&key) {
                        match (i, p) {
                            (TRUNK, Pending::Invite(c)) => self.fail_call(c, 408),
                            (SUPS, Pending::Invite(s)) => self.fail_session(s, 408),
                            (TRUNK, Pending::Bye(c)) => self.end_call(c),
                            (_, Pending::Bye(s)) => {
                                if let Some(x) = self.sessions.get_mut(s as usize) {
                                    x.state = LegState::Ended;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                TxEvent::AckTimeout { .. } => {}
                TxEvent::Terminated { key } => {
                    self.pending[i].remove(&key);
                }
            }
        }
    }

    fn end_call(&mut self, c: u32) {
        if let Some(call) = self.calls.get_mut(c as usize) {
            if call.state != LegState::Ended {
                call.state = LegState::Ended;
                self.counts.calls_ended += 1;
            }
        }
    }

    fn on_request(&mut self, i: usize, key: TxKey, req: rsip::Request, _source: SocketAddr) {
        let now = Instant::now();
        match (i, &req.method) {
            (AGENTS, rsip::Method::Invite) => self.on_agent_invite(key, req),
            (_, rsip::Method::Bye) => {
                let cid = message::call_id(&req.headers).unwrap_or_default();
                let resp = message::response(&req, 200, "OK", None);
                let _ = self.layers[i].send_response(now, &key, resp);
                if let Some(&c) = self.by_call_id[i].get(&cid) {
                    match i {
                        TRUNK => {
                            if self.calls.get(c as usize).map(|x| x.state) == Some(LegState::Up) {
                                self.counts.remote_hangups += 1;
                                let _ = self.rtp.send(Ctl::StopCall { call: c });
                            }
                            self.end_call(c);
                        }
                        SUPS => {
                            if let Some(x) = self.sessions.get_mut(c as usize) {
                                x.state = LegState::Ended;
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                // OPTIONS, INFO, UPDATE, re-INVITE: not part of this load profile.
                let code = if req.method == rsip::Method::Options {
                    200
                } else {
                    501
                };
                let resp = message::response(&req, code, message::standard_reason(code), None);
                let _ = self.layers[i].send_response(now, &key, resp);
            }
        }
    }

    fn on_agent_invite(&mut self, key: TxKey, req: rsip::Request) {
        let now = Instant::now();
        let ext = message::uri_user(&req.uri).unwrap_or_default();
        let Some(&c) = self.ext_to_call.get(&ext) else {
            let resp = message::response(&req, 404, "Not Found", Some("x"));
            let _ = self.layers[AGENTS].send_response(now, &key, resp);
            return;
        };
        let media = body_of(&req.body).and_then(|b| sdp_media_addr(&b));
        let cid = message::call_id(&req.headers).unwrap_or_default();
        self.by_call_id[AGENTS].insert(cid, c);
        let tag = self.ids.tag();
        let ringing = message::response(&req, 180, "Ringing", Some(&tag));
        let _ = self.layers[AGENTS].send_response(now, &key, ringing);
        let Some(media) = media else {
            let resp = message::response(&req, 488, "Not Acceptable Here", Some(&tag));
            let _ = self.layers[AGENTS].send_response(now, &key, resp);
            return;
        };
        let local = self.local[AGENTS];
        let mut ok = message::response(&req, 200, "OK", Some(&tag));
        message::set_header(&mut ok.headers, "Contact", &format!("<sip:{ext}@{local}>"));
        message::set_header(&mut ok.headers, "Server", USER_AGENT);
        message::set_header(&mut ok.headers, "Content-Type", "application/sdp");
        let body = sdp(self.setup.rtp[Role::Agent as usize], 300_000 + u64::from(c));
        message::set_header(&mut ok.headers, "Content-Length", &body.len().to_string());
        ok.body = body.into_bytes();
        let _ = self.layers[AGENTS].send_response(now, &key, ok);
        if let Some(call) = self.calls.get_mut(c as usize) {
            call.agent_media = Some(media);
            call.agent_invite = Some(key);
        }
    }

    fn on_agent_ack(&mut self, req: &rsip::Request) {
        let cid = message::call_id(&req.headers).unwrap_or_default();
        let Some(&c) = self.by_call_id[AGENTS].get(&cid) else {
            return;
        };
        let Some(call) = self.calls.get_mut(c as usize) else {
            return;
        };
        if call.agent_up {
            return;
        }
        call.agent_up = true;
        if let Some(m) = call.agent_media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Agent,
                call: c,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Agent,
                call: c,
                src_port: m.port(),
            });
        }
        if call.state == LegState::Up {
            self.counts.calls_up += 1;
        }
    }

    fn ack_2xx(&mut self, i: usize, resp: &rsip::Response, fallback: SocketAddr) {
        let h = &resp.headers;
        let contact = message::header(h, "Contact")
            .and_then(|c| message::addr_uri(&c))
            .unwrap_or_else(|| format!("sip:{fallback}"));
        let dest = uri_addr(&contact).unwrap_or(fallback);
        let d = Dialog {
            call_id: message::call_id(h).unwrap_or_default(),
            from_tag: message::from_tag(h).unwrap_or_default(),
            to: message::header(h, "To")
                .map(|t| t.split(";tag=").next().unwrap_or_default().to_string())
                .unwrap_or_default(),
            to_tag: message::to_tag(h),
            target_uri: contact.clone(),
            target: dest,
            cseq: message::cseq(h).map_or(1, |c| c.0),
            started: Instant::now(),
        };
        let from = message::header(h, "From")
            .map(|f| f.split(";tag=").next().unwrap_or_default().to_string())
            .unwrap_or_default();
        let text = self.request_text(i, "ACK", &d, &from, &[], None);
        self.send(i, &text, dest);
    }

    fn on_response(&mut self, i: usize, key: TxKey, resp: rsip::Response) {
        let code = resp.status_code.code();
        let Some(&p) = self.pending[i].get(&key) else {
            return;
        };
        if code < 200 {
            return;
        }
        match (i, p) {
            (TRUNK, Pending::Invite(c)) => self.on_call_final(c, code, &resp),
            (SUPS, Pending::Invite(s)) => self.on_session_final(s, code, &resp),
            (TRUNK, Pending::Bye(c)) => self.end_call(c),
            (SUPS, Pending::Bye(s)) => {
                if let Some(x) = self.sessions.get_mut(s as usize) {
                    x.state = LegState::Ended;
                }
            }
            _ => {}
        }
        if code >= 200 && !(200..300).contains(&code) {
            self.pending[i].remove(&key);
        }
    }

    fn learn_dialog(d: &mut Dialog, resp: &rsip::Response) {
        let h = &resp.headers;
        d.to_tag = message::to_tag(h);
        if let Some(uri) = message::header(h, "Contact").and_then(|c| message::addr_uri(&c)) {
            if let Some(a) = uri_addr(&uri) {
                d.target = a;
            }
            d.target_uri = uri;
        }
    }

    fn on_call_final(&mut self, c: u32, code: u16, resp: &rsip::Response) {
        let src = self.setup.server;
        if !(200..300).contains(&code) {
            self.fail_call(c, code);
            return;
        }
        let Some(call) = self.calls.get_mut(c as usize) else {
            return;
        };
        if call.state != LegState::Inviting {
            // Retransmitted 2xx: the ACK got lost.
            self.ack_2xx(TRUNK, resp, src);
            return;
        }
        let media = body_of(&resp.body).and_then(|b| sdp_media_addr(&b));
        if let Some(d) = call.dialog.as_mut() {
            Self::learn_dialog(d, resp);
            let us = d.started.elapsed().as_micros() as u64;
            self.call_setup.saturating_record(us.max(1));
        }
        call.state = LegState::Up;
        let agent_up = call.agent_up;
        self.ack_2xx(TRUNK, resp, src);
        if let Some(m) = media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Customer,
                call: c,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Customer,
                call: c,
                src_port: m.port(),
            });
        }
        if agent_up {
            self.counts.calls_up += 1;
        }
    }

    fn on_session_final(&mut self, s: u32, code: u16, resp: &rsip::Response) {
        let src = self.setup.server;
        let Some(sess) = self.sessions.get_mut(s as usize) else {
            return;
        };
        if matches!(code, 401 | 407) && !sess.auth_tried && sess.state == LegState::Inviting {
            sess.auth_tried = true;
            let hname = if code == 407 {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            };
            let challenges = message::headers_all(&resp.headers, hname);
            let Some(d) = sess.dialog.as_mut() else {
                return;
            };
            d.cseq += 1;
            let cnonce = format!("{:016x}", rand::random::<u64>());
            match bibridge_sip::auth::client_authorization(
                &challenges,
                &sess.ext,
                &sess.password,
                "INVITE",
                &d.target_uri,
                &cnonce,
                1,
            ) {
                Ok(a) => {
                    let kind = if code == 407 { "Proxy" } else { "WWW" };
                    self.send_session_invite(s, Some((kind.to_string(), a)));
                }
                Err(_) => self.fail_session(s, code),
            }
            return;
        }
        if !(200..300).contains(&code) {
            self.fail_session(s, code);
            return;
        }
        if sess.state != LegState::Inviting {
            self.ack_2xx(SUPS, resp, src);
            return;
        }
        let media = body_of(&resp.body).and_then(|b| sdp_media_addr(&b));
        if let Some(d) = sess.dialog.as_mut() {
            Self::learn_dialog(d, resp);
            let us = d.started.elapsed().as_micros() as u64;
            self.session_setup.saturating_record(us.max(1));
        }
        sess.state = LegState::Up;
        let call = sess.call;
        self.counts.sessions_up += 1;
        self.ack_2xx(SUPS, resp, src);
        let mode = self.setup.mode;
        if let Some(m) = media {
            let _ = self.rtp.send(Ctl::AddTx {
                role: Role::Supervisor,
                call,
                dest: m,
            });
            let _ = self.rtp.send(Ctl::AddRx {
                role: Role::Supervisor,
                call,
                src_port: m.port(),
            });
        }
        let _ = self.rtp.send(Ctl::SetMode {
            call,
            mode: Some(mode),
        });
    }
}
