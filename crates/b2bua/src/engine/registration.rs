//! REGISTER and digest authentication of requests from users.

use super::*;

impl Engine {
    /// Check digest credentials. `Ok(user)` when authenticated; otherwise the 401 challenge has
    /// been sent and `Err` returned, with the claimed user name when credentials were given and
    /// were wrong (not merely missing or stale).
    pub(super) fn authenticate(
        &mut self,
        now: Instant,
        key: &TxKey,
        req: &rsip::Request,
    ) -> Result<String, Option<String>> {
        let mut failed_user = None;
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
                        failed_user = Some(
                            bibridge_sip::auth::parse_credentials(&value)
                                .map(|c| c.username)
                                .unwrap_or_default(),
                        );
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
        Err(failed_user)
    }

    pub(super) fn on_register(
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
}

/// A registered contact's URI with its URI parameters: a name-addr's `<...>` content, or the
/// value as is (a bare URI's `;params` belong to the URI).
pub(super) fn bare_uri(contact: &str) -> &str {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if a < b => &contact[a + 1..b],
        _ => contact.trim(),
    }
}
