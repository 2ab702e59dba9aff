//! Digest authentication of requests from users (RFC 3261 §22, RFC 8760) and who a trusted
//! caller is: REGISTER, INVITE and feature codes all ask here.

use std::time::Instant;

use bibridge_sip::auth::{Algorithm, AuthOutcome};
use bibridge_sip::message;
use bibridge_sip::transaction::TxKey;
use tracing::warn;

use super::Engine;
/// Who is calling, once trusted.
pub(super) enum Caller {
    Trunk(String),
    User(String),
}

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
}
