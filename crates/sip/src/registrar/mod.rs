//! Registrar bindings (RFC 3261 §10.3).
//!
//! The engine authenticates a REGISTER, extracts the address-of-record user from the To URI and
//! hands the Contact and Expires header values to [`Registrar::register`]. This module applies
//! §10.3 steps 6–8: wildcard removal, per-contact expiry, Call-ID/CSeq ordering, atomic commit, and
//! answers with the resulting binding list for the 200 OK. Sans-IO: time comes in as `now`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Transport;

mod contact;

use contact::{parse_contact, parse_delta_seconds, split_list, uri_key, ContactElem, ContactSpec};

/// Upper bound on bindings kept per address-of-record. A phone that changes its contact on every
/// re-registration (NAT rebinding, new Call-ID) would otherwise grow the list without bound; beyond
/// it the least recently registered binding is dropped.
pub const MAX_BINDINGS_PER_USER: usize = 16;

/// One contact bound to an address-of-record.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The Contact URI as sent, without angle brackets and header parameters,
    /// e.g. `sip:1001@127.0.0.1:5071;transport=udp`.
    pub contact: String,
    /// Where the REGISTER came from (for symmetric response routing / NAT).
    pub source: SocketAddr,
    /// Transport the REGISTER came in on.
    pub transport: Transport,
    /// The binding is live while `now < expires_at`.
    pub expires_at: Instant,
    /// Call-ID of the REGISTER that created or last refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The `q` Contact parameter, if given.
    pub q: Option<f32>,
}

/// A live binding as data, to keep across a restart (the caller stores it; see
/// [`Registrar::export`] and [`Registrar::import`]). Its lifetime is relative (`remaining`),
/// since an `Instant` means nothing to another process: the caller turns it into wall-clock
/// time and back.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedBinding {
    /// The address-of-record user.
    pub user: String,
    /// The Contact URI.
    pub contact: String,
    /// Where the REGISTER came from.
    pub source: SocketAddr,
    /// Transport the REGISTER came in on.
    pub transport: Transport,
    /// Lifetime left when exported.
    pub remaining: Duration,
    /// Call-ID of the REGISTER that created or refreshed it.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// The `q` Contact parameter, if given.
    pub q: Option<f32>,
}

/// Registrar policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest non-zero expiry accepted; shorter requests get 423 with Min-Expires (§10.3 step 7).
    pub min_expires: u32,
    /// Longest expiry granted; longer requests are shortened.
    pub max_expires: u32,
    /// Expiry used when neither the contact nor an Expires header says.
    pub default_expires: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
        }
    }
}

/// Result of [`Registrar::register`], mapped by the engine to a response.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    /// 200 OK listing all live bindings of the AOR (`Contact: <uri>;expires=<secs>`), most recent first.
    Ok {
        /// `(contact URI, remaining seconds)` per live binding.
        bindings: Vec<(String, u32)>,
    },
    /// 423 Interval Too Brief with `Min-Expires: min_expires`.
    IntervalTooBrief {
        /// The registrar's minimum expiry in seconds.
        min_expires: u32,
    },
    /// 400 Bad Request; `reason` may go into the reason phrase.
    Invalid {
        /// The human reason, sent as the 400's reason phrase.
        reason: &'static str,
    },
    /// Same Call-ID with a lower or equal CSeq than a stored binding: the request is out of order
    /// and nothing was changed. RFC 3261 §10.3 step 7 says to fail it; answer 500.
    OutOfOrder,
}

/// The registrar's binding table.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    /// AOR user -> bindings, most recently registered first.
    users: HashMap<String, Vec<Binding>>,
    /// Bumped on every change a REGISTER makes (not on expiry), so that a caller that keeps the
    /// bindings somewhere knows when to save them again.
    version: u64,
    /// Expiry index (deadline, user) -> number of bindings with that deadline, so that
    /// `poll_timeout` and `expire` do not scan every binding.
    index: BTreeMap<(Instant, String), usize>,
}

impl Registrar {
    /// Create a registrar. An inconsistent config is normalised rather than rejected:
    /// `max_expires` is raised to `min_expires` and `default_expires` is clamped into the range.
    pub fn new(cfg: RegistrarConfig) -> Self {
        let max_expires = cfg.max_expires.max(cfg.min_expires);
        let cfg = RegistrarConfig {
            min_expires: cfg.min_expires,
            max_expires,
            default_expires: cfg.default_expires.clamp(cfg.min_expires, max_expires),
        };
        Self {
            cfg,
            users: HashMap::new(),
            version: 0,
            index: BTreeMap::new(),
        }
    }

    /// Changes made by REGISTERs (and imports) so far; expiry does not count.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every live binding as data, most recently registered first per user.
    pub fn export(&self, now: Instant) -> Vec<SavedBinding> {
        let mut users: Vec<&String> = self.users.keys().collect();
        users.sort();
        let mut out = Vec::new();
        for user in users {
            for b in self.lookup(now, user) {
                out.push(SavedBinding {
                    user: user.clone(),
                    contact: b.contact.clone(),
                    source: b.source,
                    transport: b.transport,
                    remaining: b.expires_at.saturating_duration_since(now),
                    call_id: b.call_id.clone(),
                    cseq: b.cseq,
                    q: b.q,
                });
            }
        }
        out
    }

    /// Restore bindings saved by [`export`](Self::export): those still live (`remaining` > 0)
    /// and accepted by `keep` (e.g. users that still exist), lifetimes capped at `max_expires`,
    /// at most [`MAX_BINDINGS_PER_USER`] per user, never replacing a binding already there for
    /// the same contact. Returns how many were restored.
    pub fn import(
        &mut self,
        now: Instant,
        saved: Vec<SavedBinding>,
        keep: impl Fn(&str) -> bool,
    ) -> usize {
        let mut n = 0;
        // Saved most recent first per user: insert in reverse so the order survives.
        for s in saved.into_iter().rev() {
            if s.remaining.is_zero() || !keep(&s.user) {
                continue;
            }
            let key = uri_key(&s.contact);
            let list = self.users.entry(s.user.clone()).or_default();
            if list.len() >= MAX_BINDINGS_PER_USER
                || list.iter().any(|b| uri_key(&b.contact) == key)
            {
                continue;
            }
            let life = s
                .remaining
                .min(Duration::from_secs(u64::from(self.cfg.max_expires)));
            let expires_at = now + life;
            list.insert(
                0,
                Binding {
                    contact: s.contact,
                    source: s.source,
                    transport: s.transport,
                    expires_at,
                    call_id: s.call_id,
                    cseq: s.cseq,
                    q: s.q,
                },
            );
            self.index_add(expires_at, &s.user);
            n += 1;
        }
        self.users.retain(|_, l| !l.is_empty());
        if n > 0 {
            self.version += 1;
        }
        n
    }

    /// The effective configuration.
    pub fn config(&self) -> RegistrarConfig {
        self.cfg
    }

    /// Apply one REGISTER for AOR `user` (already authenticated by the engine).
    ///
    /// `contacts` are the raw Contact header values (several headers, comma-separated lists and
    /// `*` are all fine); `expires_header` is the Expires header value if any. Either every binding
    /// change of the request is applied or none is (§10.3 step 7).
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        now: Instant,
        user: &str,
        contacts: &[String],
        expires_header: Option<&str>,
        call_id: &str,
        cseq: u32,
        source: SocketAddr,
        transport: Transport,
    ) -> RegisterOutcome {
        let header_expires = match expires_header.map(parse_delta_seconds) {
            None => None,
            Some(Some(v)) => Some(v),
            Some(None) => {
                return RegisterOutcome::Invalid {
                    reason: "malformed Expires header",
                }
            }
        };
        let mut elems = Vec::new();
        for value in contacts {
            for raw in split_list(value) {
                match parse_contact(raw) {
                    Ok(e) => elems.push(e),
                    Err(reason) => return RegisterOutcome::Invalid { reason },
                }
            }
        }
        if elems.is_empty() {
            // No Contact: a query for the current bindings (§10.2.3).
            return RegisterOutcome::Ok {
                bindings: self.binding_list(now, user),
            };
        }

        if elems.iter().any(|e| matches!(e, ContactElem::Wildcard)) {
            // §10.3 step 6: `*` only alone and only with Expires: 0.
            if elems.len() > 1 {
                return RegisterOutcome::Invalid {
                    reason: "wildcard Contact with other contacts",
                };
            }
            if header_expires != Some(0) {
                return RegisterOutcome::Invalid {
                    reason: "wildcard Contact requires Expires: 0",
                };
            }
            let live = self.lookup(now, user);
            if live.iter().any(|b| b.call_id == call_id && cseq <= b.cseq) {
                return RegisterOutcome::OutOfOrder;
            }
            if let Some(bindings) = self.users.remove(user) {
                for b in &bindings {
                    self.index_remove(b.expires_at, user);
                }
                self.version += 1;
            }
            return RegisterOutcome::Ok {
                bindings: Vec::new(),
            };
        }

        let specs: Vec<ContactSpec> = elems
            .into_iter()
            .filter_map(|e| match e {
                ContactElem::Contact(c) => Some(c),
                ContactElem::Wildcard => None,
            })
            .collect();
        if specs.len() > MAX_BINDINGS_PER_USER {
            return RegisterOutcome::Invalid {
                reason: "too many contacts",
            };
        }

        // Validate everything before changing anything.
        let mut granted = Vec::with_capacity(specs.len());
        for spec in &specs {
            let requested = spec
                .expires
                .or(header_expires)
                .unwrap_or(self.cfg.default_expires);
            if requested != 0 && requested < self.cfg.min_expires {
                return RegisterOutcome::IntervalTooBrief {
                    min_expires: self.cfg.min_expires,
                };
            }
            granted.push(requested.min(self.cfg.max_expires));
        }
        if let Some(existing) = self.users.get(user) {
            let out_of_order = specs.iter().any(|spec| {
                existing.iter().any(|b| {
                    b.expires_at > now
                        && b.call_id == call_id
                        && cseq <= b.cseq
                        && uri_key(&b.contact) == spec.key
                })
            });
            if out_of_order {
                return RegisterOutcome::OutOfOrder;
            }
        }

        // Commit.
        self.version += 1;
        for (spec, secs) in specs.into_iter().zip(granted) {
            let old = self.users.get_mut(user).and_then(|list| {
                let pos = list.iter().position(|b| uri_key(&b.contact) == spec.key)?;
                Some(list.remove(pos))
            });
            if let Some(old) = old {
                self.index_remove(old.expires_at, user);
            }
            if secs == 0 {
                continue;
            }
            let expires_at = now + Duration::from_secs(u64::from(secs));
            let binding = Binding {
                contact: spec.uri,
                source,
                transport,
                expires_at,
                call_id: call_id.to_owned(),
                cseq,
                q: spec.q,
            };
            self.users
                .entry(user.to_owned())
                .or_default()
                .insert(0, binding);
            self.index_add(expires_at, user);
        }
        let mut dropped = Vec::new();
        if let Some(list) = self.users.get_mut(user) {
            if list.len() > MAX_BINDINGS_PER_USER {
                dropped = list.split_off(MAX_BINDINGS_PER_USER);
            }
            if list.is_empty() {
                self.users.remove(user);
            }
        }
        for b in dropped {
            self.index_remove(b.expires_at, user);
        }
        RegisterOutcome::Ok {
            bindings: self.binding_list(now, user),
        }
    }

    /// Live bindings of a user, most recently registered first.
    pub fn lookup(&self, now: Instant, user: &str) -> Vec<&Binding> {
        self.users
            .get(user)
            .map(|list| list.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default()
    }

    /// Whether `user` has at least one live binding.
    pub fn is_registered(&self, now: Instant, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|list| list.iter().any(|b| b.expires_at > now))
    }

    /// Remove expired bindings (a binding expires exactly at its deadline). Returns the users
    /// that lost their last binding, for registration events. Users that unregister with
    /// `Expires: 0` are not reported here: the engine sees that in the `register` outcome.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<(Instant, String)> = self
            .index
            .keys()
            .take_while(|(at, _)| *at <= now)
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for key in due {
            self.index.remove(&key);
            let user = key.1;
            if let Some(list) = self.users.get_mut(&user) {
                list.retain(|b| b.expires_at > now);
                if list.is_empty() {
                    self.users.remove(&user);
                    gone.push(user);
                }
            }
        }
        gone
    }

    /// The earliest binding deadline, when [`expire`](Self::expire) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.index.keys().next().map(|(at, _)| *at)
    }

    fn binding_list(&self, now: Instant, user: &str) -> Vec<(String, u32)> {
        self.lookup(now, user)
            .into_iter()
            .map(|b| (b.contact.clone(), remaining_secs(b.expires_at, now)))
            .collect()
    }

    fn index_add(&mut self, at: Instant, user: &str) {
        *self.index.entry((at, user.to_owned())).or_insert(0) += 1;
    }

    fn index_remove(&mut self, at: Instant, user: &str) {
        let key = (at, user.to_owned());
        if let Some(n) = self.index.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.index.remove(&key);
            }
        }
    }
}

/// Remaining lifetime in whole seconds, rounded up so a live binding never reports 0.
fn remaining_secs(expires_at: Instant, now: Instant) -> u32 {
    let d = expires_at.saturating_duration_since(now);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
