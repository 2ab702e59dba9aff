//! REGISTER: the registrar's bindings, after digest authentication (`auth`).

use std::net::SocketAddr;
use std::time::Instant;

use bibridge_sip::registrar::{RegisterOutcome, SavedBinding};
use bibridge_sip::transaction::TxKey;
use bibridge_sip::{message, Transport};
use tracing::info;

use super::{Engine, Notice};
use crate::wire::bare_uri;

impl Engine {
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
        // RFC 3261 §10.3 item 5: the address of record is a SIP or SIPS URI (RFC 4475 §3.3.4).
        let scheme = aor.split(':').next().unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            let reason = "Bad Request (To is not a SIP URI)";
            self.respond_new_dialog(now, (key, req), 400, reason, &[]);
            return;
        }
        let user = aor
            .strip_prefix("sip:")
            .or_else(|| aor.strip_prefix("sips:"))
            .and_then(|r| r.split_once('@'))
            .map(|(u, _)| u.to_string());
        let Some(user) = user.filter(|u| self.cfg.user(u).is_some()) else {
            self.respond_new_dialog(now, (key, req), 404, "Not Found", &[]);
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

impl Engine {
    /// Changes REGISTERs (and imports) made to the registrar's bindings so far: when it moves,
    /// the server saves [`export_registrations`](Self::export_registrations) again.
    pub fn registrations_version(&self) -> u64 {
        self.registrar.version()
    }

    /// The live bindings as data, to keep across a restart.
    pub fn export_registrations(&self, now: Instant) -> Vec<SavedBinding> {
        self.registrar.export(now)
    }

    /// Restore bindings saved before a restart (still live, of users still configured).
    /// Returns how many were restored.
    pub fn import_registrations(&mut self, now: Instant, saved: Vec<SavedBinding>) -> usize {
        let cfg = &self.cfg;
        let n = self
            .registrar
            .import(now, saved, |user| cfg.user(user).is_some());
        if n > 0 {
            info!(bindings = n, "registrations restored");
        }
        n
    }
}
