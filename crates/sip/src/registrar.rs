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
    Ok { bindings: Vec<(String, u32)> },
    /// 423 Interval Too Brief with `Min-Expires: min_expires`.
    IntervalTooBrief { min_expires: u32 },
    /// 400 Bad Request; `reason` may go into the reason phrase.
    Invalid { reason: &'static str },
    /// Same Call-ID with a lower or equal CSeq than a stored binding: the request is out of order
    /// and nothing was changed. RFC 3261 §10.3 step 7 says to fail it; answer 500.
    OutOfOrder,
}

/// A Contact header element after parsing.
#[derive(Debug)]
struct ContactSpec {
    uri: String,
    key: String,
    expires: Option<u32>,
    q: Option<f32>,
}

#[derive(Debug)]
enum ContactElem {
    Wildcard,
    Contact(ContactSpec),
}

/// The registrar's binding table.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    /// AOR user -> bindings, most recently registered first.
    users: HashMap<String, Vec<Binding>>,
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
            index: BTreeMap::new(),
        }
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

/// `delta-seconds`: digits only; values beyond 2^32-1 saturate (RFC 3261 §20.19, §20.10).
fn parse_delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so the only possible parse error is overflow.
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 3261 §25.1).
fn parse_qvalue(s: &str) -> Option<f32> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => s.parse().ok(),
        "1" if frac.bytes().all(|b| b == b'0') => Some(1.0),
        _ => None,
    }
}

/// Split a header value on commas that are not inside a quoted string or `<...>`.
fn split_list(value: &str) -> Vec<&str> {
    crate::message::split_outside_quotes(value, ',')
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Split on `;` outside quoted strings (for Contact header parameters).
fn split_params(s: &str) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == ';' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return Err("unterminated quoted string in Contact");
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Parse one Contact element: `*`, `["Name"] <uri>;params`, `Name <uri>;params` or a bare
/// `uri;params` (where, per §20.10, the `;params` belong to the header, not the URI).
fn parse_contact(raw: &str) -> Result<ContactElem, &'static str> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(ContactElem::Wildcard);
    }
    let (uri, params) = match find_unquoted(raw, '<') {
        Some(lt) => {
            let display = raw[..lt].trim();
            if display.starts_with('"') && !(display.len() >= 2 && display.ends_with('"')) {
                return Err("malformed display name in Contact");
            }
            let after = &raw[lt + 1..];
            let gt = after.find('>').ok_or("unterminated '<' in Contact")?;
            (after[..gt].trim(), &after[gt + 1..])
        }
        None => match raw.find(';') {
            Some(semi) => (raw[..semi].trim(), &raw[semi..]),
            None => (raw, ""),
        },
    };
    if !has_scheme(uri) {
        return Err("Contact is not a URI");
    }
    let params = params.trim();
    let mut expires = None;
    let mut q = None;
    if !params.is_empty() {
        let rest = params
            .strip_prefix(';')
            .ok_or("unexpected text after Contact URI")?;
        for p in split_params(rest)? {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p.trim(), None),
            };
            if name.is_empty() {
                return Err("empty Contact parameter");
            }
            if name.eq_ignore_ascii_case("expires") {
                let v = value.and_then(parse_delta_seconds);
                expires = Some(v.ok_or("malformed Contact expires parameter")?);
            } else if name.eq_ignore_ascii_case("q") {
                let v = value.and_then(parse_qvalue);
                q = Some(v.ok_or("malformed Contact q parameter")?);
            }
        }
    }
    Ok(ContactElem::Contact(ContactSpec {
        uri: uri.to_owned(),
        key: uri_key(uri),
        expires,
        q,
    }))
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == needle {
            return Some(i);
        }
    }
    None
}

/// `scheme ":" something`, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn has_scheme(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.contains(char::is_whitespace)
}

/// Comparison key approximating RFC 3261 §19.1.4 URI equality: scheme and host are
/// case-insensitive, user info is case-sensitive, the port counts as written, and of the URI
/// parameters only those that must match when present in either URI (`transport`, `user`, `ttl`,
/// `method`, `maddr`) are compared, case-insensitively. Escapes are not decoded.
fn uri_key(uri: &str) -> String {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
    let rest = rest.split('?').next().unwrap_or_default();
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let mut parts = hostpart.split(';');
    let hostport = parts.next().unwrap_or_default().to_ascii_lowercase();
    let mut params: Vec<String> = parts
        .map(str::to_ascii_lowercase)
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            matches!(name, "transport" | "user" | "ttl" | "method" | "maddr")
        })
        .collect();
    params.sort();
    format!(
        "{}:{}@{}|{}",
        scheme.to_ascii_lowercase(),
        userinfo,
        hostport,
        params.join(";")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn src() -> SocketAddr {
        "127.0.0.1:5071".parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn reg(
        r: &mut Registrar,
        now: Instant,
        contacts: &[&str],
        expires: Option<&str>,
        call_id: &str,
        cseq: u32,
    ) -> RegisterOutcome {
        let contacts: Vec<String> = contacts.iter().map(|s| s.to_string()).collect();
        r.register(
            now,
            "1001",
            &contacts,
            expires,
            call_id,
            cseq,
            src(),
            Transport::Udp,
        )
    }

    fn ok(bindings: &[(&str, u32)]) -> RegisterOutcome {
        RegisterOutcome::Ok {
            bindings: bindings.iter().map(|(c, s)| (c.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn register_lookup_and_expire_exactly_at_deadline() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        assert_eq!(r.poll_timeout(), None);
        let out = reg(
            &mut r,
            t0,
            &["<sip:1001@127.0.0.1:5071;transport=udp>"],
            Some("120"),
            "c1",
            1,
        );
        assert_eq!(out, ok(&[("sip:1001@127.0.0.1:5071;transport=udp", 120)]));
        let b = r.lookup(t0, "1001");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].source, src());
        assert_eq!(b[0].transport, Transport::Udp);
        assert_eq!(b[0].call_id, "c1");
        assert_eq!(b[0].expires_at, t0 + secs(120));
        assert_eq!(r.poll_timeout(), Some(t0 + secs(120)));
        assert!(r.is_registered(t0 + secs(120) - Duration::from_millis(1), "1001"));
        assert!(!r.is_registered(t0 + secs(120), "1001"));
        assert!(r.lookup(t0 + secs(120), "1001").is_empty());
        assert!(!r.is_registered(t0, "1002"));

        assert!(r.expire(t0 + secs(119)).is_empty());
        assert_eq!(r.expire(t0 + secs(120)), vec!["1001".to_string()]);
        assert_eq!(r.poll_timeout(), None);
        assert!(r.expire(t0 + secs(500)).is_empty());
    }

    #[test]
    fn remaining_seconds_round_up() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c", 1);
        let out = reg(&mut r, t0 + Duration::from_millis(1500), &[], None, "c", 2);
        assert_eq!(out, ok(&[("sip:a@h", 99)]));
    }

    #[test]
    fn contact_expires_param_overrides_header_and_default_applies() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let out = reg(
            &mut r,
            t0,
            &[
                "<sip:1001@127.0.0.1:5071>;expires=60",
                "<sip:1001@10.0.0.1>",
            ],
            Some("300"),
            "c1",
            1,
        );
        // Most recently registered first: in a single request, later contacts come first.
        assert_eq!(
            out,
            ok(&[("sip:1001@10.0.0.1", 300), ("sip:1001@127.0.0.1:5071", 60)])
        );
        let mut r = Registrar::new(RegistrarConfig::default());
        assert_eq!(
            reg(&mut r, t0, &["sip:1001@host"], None, "c1", 1),
            ok(&[("sip:1001@host", 3600)])
        );
    }

    #[test]
    fn clamps_above_max_and_refuses_below_min() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        assert_eq!(
            reg(&mut r, t0, &["<sip:a@h>"], Some("999999999999"), "c", 1),
            ok(&[("sip:a@h", 3600)])
        );
        assert_eq!(
            reg(&mut r, t0, &["<sip:b@h>;expires=59"], Some("3600"), "c", 2),
            RegisterOutcome::IntervalTooBrief { min_expires: 60 }
        );
        // 423 for one contact means no change for the others either.
        assert_eq!(
            reg(
                &mut r,
                t0,
                &["<sip:c@h>", "<sip:d@h>;expires=1"],
                None,
                "c",
                3
            ),
            RegisterOutcome::IntervalTooBrief { min_expires: 60 }
        );
        assert_eq!(r.lookup(t0, "1001").len(), 1);
        assert_eq!(
            reg(&mut r, t0, &["<sip:c@h>"], Some("60"), "c", 4),
            ok(&[("sip:c@h", 60), ("sip:a@h", 3600)])
        );
    }

    #[test]
    fn refresh_updates_expiry_and_order() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c1", 1);
        reg(&mut r, t0, &["<sip:b@h>"], Some("100"), "c2", 1);
        assert_eq!(r.lookup(t0, "1001")[0].contact, "sip:b@h");
        // Refresh of a (same URI, different spelling of the host case) at t0+50.
        let out = reg(&mut r, t0 + secs(50), &["<sip:a@H>"], Some("100"), "c1", 2);
        assert_eq!(out, ok(&[("sip:a@H", 100), ("sip:b@h", 50)]));
        assert_eq!(r.lookup(t0 + secs(50), "1001").len(), 2);
        assert_eq!(r.poll_timeout(), Some(t0 + secs(100)));
        // b expires at t0+100, a survives until t0+150: user still registered.
        assert!(r.expire(t0 + secs(100)).is_empty());
        assert_eq!(r.lookup(t0 + secs(100), "1001").len(), 1);
        assert_eq!(r.poll_timeout(), Some(t0 + secs(150)));
        assert_eq!(r.expire(t0 + secs(150)), vec!["1001".to_string()]);
    }

    #[test]
    fn expires_zero_removes_one_binding() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        reg(&mut r, t0, &["<sip:a@h>", "<sip:b@h>"], None, "c1", 1);
        assert_eq!(
            reg(&mut r, t0, &["<sip:a@h>"], Some("0"), "c1", 2),
            ok(&[("sip:b@h", 3600)])
        );
        assert_eq!(
            reg(&mut r, t0, &["<sip:b@h>;expires=0"], Some("3600"), "c1", 3),
            ok(&[])
        );
        assert!(!r.is_registered(t0, "1001"));
        assert_eq!(r.poll_timeout(), None);
        // Removing an unknown contact is a harmless no-op.
        assert_eq!(reg(&mut r, t0, &["<sip:z@h>"], Some("0"), "c1", 4), ok(&[]));
    }

    #[test]
    fn wildcard_rules() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        reg(&mut r, t0, &["<sip:a@h>, <sip:b@h>"], None, "c1", 1);
        reg(&mut r, t0, &["<sip:c@h>"], None, "c2", 1);
        assert_eq!(
            reg(&mut r, t0, &["*"], Some("60"), "c3", 1),
            RegisterOutcome::Invalid {
                reason: "wildcard Contact requires Expires: 0"
            }
        );
        assert_eq!(
            reg(&mut r, t0, &["*"], None, "c3", 1),
            RegisterOutcome::Invalid {
                reason: "wildcard Contact requires Expires: 0"
            }
        );
        assert_eq!(
            reg(&mut r, t0, &["*", "<sip:a@h>"], Some("0"), "c3", 1),
            RegisterOutcome::Invalid {
                reason: "wildcard Contact with other contacts"
            }
        );
        // Same Call-ID as a stored binding with a CSeq not higher: out of order, nothing removed.
        assert_eq!(
            reg(&mut r, t0, &["*"], Some("0"), "c1", 1),
            RegisterOutcome::OutOfOrder
        );
        assert_eq!(r.lookup(t0, "1001").len(), 3);
        assert_eq!(reg(&mut r, t0, &["*"], Some("0"), "c9", 1), ok(&[]));
        assert!(!r.is_registered(t0, "1001"));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn out_of_order_cseq() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c1", 5);
        assert_eq!(
            reg(&mut r, t0 + secs(10), &["<sip:a@h>"], Some("200"), "c1", 5),
            RegisterOutcome::OutOfOrder
        );
        assert_eq!(
            reg(
                &mut r,
                t0 + secs(10),
                &["<sip:a@h>", "<sip:n@h>"],
                Some("0"),
                "c1",
                4
            ),
            RegisterOutcome::OutOfOrder
        );
        // Nothing changed: still expires at t0+100, no new binding.
        let b = r.lookup(t0 + secs(10), "1001");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].expires_at, t0 + secs(100));
        // A different Call-ID (e.g. a rebooted phone) may replace it whatever its CSeq.
        assert_eq!(
            reg(&mut r, t0 + secs(10), &["<sip:a@h>"], Some("200"), "c2", 1),
            ok(&[("sip:a@h", 200)])
        );
        assert_eq!(r.lookup(t0, "1001")[0].call_id, "c2");
    }

    #[test]
    fn query_without_contact() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        assert_eq!(reg(&mut r, t0, &[], None, "c", 1), ok(&[]));
        reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c", 2);
        // A query does not refresh anything, even with an Expires header.
        assert_eq!(
            reg(&mut r, t0 + secs(40), &[], Some("3600"), "c", 3),
            ok(&[("sip:a@h", 60)])
        );
        assert_eq!(r.poll_timeout(), Some(t0 + secs(100)));
    }

    #[test]
    fn contact_forms() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let out = reg(
            &mut r,
            t0,
            &[
                "\"Smith, John <boss>\" <sip:a@h:5071;transport=tcp>;q=0.5;+sip.instance=\"<urn:uuid:1;2>\"",
                "Bob <sip:b@h>;expires=120, sip:c@h;expires=90;q=1.0",
            ],
            None,
            "c",
            1,
        );
        assert_eq!(
            out,
            ok(&[
                ("sip:c@h", 90),
                ("sip:b@h", 120),
                ("sip:a@h:5071;transport=tcp", 3600)
            ])
        );
        let b = r.lookup(t0, "1001");
        assert_eq!(b[0].q, Some(1.0));
        assert_eq!(b[1].q, None);
        assert_eq!(b[2].q, Some(0.5));
    }

    #[test]
    fn invalid_contacts_and_expires() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let bad = |r: &mut Registrar, c: &str, e: Option<&str>| {
            matches!(reg(r, t0, &[c], e, "c", 1), RegisterOutcome::Invalid { .. })
        };
        assert!(bad(&mut r, "<sip:a@h>", Some("soon")));
        assert!(bad(&mut r, "<sip:a@h>", Some("-1")));
        assert!(bad(&mut r, "<sip:a@h>;expires=abc", None));
        assert!(bad(&mut r, "<sip:a@h>;q=2", None));
        assert!(bad(&mut r, "<sip:a@h>;q=0.1234", None));
        assert!(bad(&mut r, "<sip:a@h", None));
        assert!(bad(&mut r, "<>", None));
        assert!(bad(&mut r, "not a uri", None));
        assert!(bad(&mut r, "<sip:a@h> junk", None));
        assert!(bad(&mut r, "<sip:a@h>;x=\"unterminated", None));
        assert!(bad(&mut r, "\"unterminated <sip:a@h>", None));
        assert!(bad(&mut r, "*;expires=0", Some("0")));
        let many: Vec<String> = (0..=MAX_BINDINGS_PER_USER)
            .map(|i| format!("<sip:{i}@h>"))
            .collect();
        assert!(bad(&mut r, &many.join(","), None));
        assert!(r.lookup(t0, "1001").is_empty());
        // Garbage never panics.
        for s in [
            "",
            ",",
            ",,,",
            "<",
            ">",
            "\"",
            "é<é>;é",
            "sip:",
            ";;;",
            "<sip:x>;;=;",
        ] {
            let _ = reg(&mut r, t0, &[s], Some(s), "c", 1);
        }
    }

    #[test]
    fn per_user_binding_cap_drops_oldest() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        for i in 0..MAX_BINDINGS_PER_USER + 2 {
            reg(
                &mut r,
                t0 + secs(i as u64),
                &[&format!("<sip:{i}@h>")],
                None,
                &format!("c{i}"),
                1,
            );
        }
        let b = r.lookup(t0 + secs(100), "1001");
        assert_eq!(b.len(), MAX_BINDINGS_PER_USER);
        assert_eq!(b[0].contact, format!("sip:{}@h", MAX_BINDINGS_PER_USER + 1));
        assert!(b
            .iter()
            .all(|b| b.contact != "sip:0@h" && b.contact != "sip:1@h"));
        // The index forgot the dropped ones too.
        assert_eq!(r.poll_timeout(), Some(t0 + secs(2 + 3600)));
    }

    #[test]
    fn users_are_independent() {
        let t0 = Instant::now();
        let mut r = Registrar::new(RegistrarConfig::default());
        let c = vec!["<sip:2001@h>".to_string()];
        r.register(t0, "2001", &c, Some("60"), "x", 1, src(), Transport::Tcp);
        reg(&mut r, t0, &["<sip:a@h>"], Some("120"), "c", 1);
        assert_eq!(r.lookup(t0, "2001")[0].transport, Transport::Tcp);
        assert_eq!(r.expire(t0 + secs(60)), vec!["2001".to_string()]);
        assert!(r.is_registered(t0 + secs(60), "1001"));
    }

    #[test]
    fn uri_equality_rules() {
        assert_eq!(
            uri_key("SIP:a@HOST;Transport=UDP"),
            uri_key("sip:a@host;transport=udp")
        );
        assert_ne!(uri_key("sip:A@host"), uri_key("sip:a@host"));
        assert_ne!(uri_key("sip:a@host"), uri_key("sip:a@host:5060"));
        assert_ne!(uri_key("sip:a@host;transport=tcp"), uri_key("sip:a@host"));
        assert_eq!(uri_key("sip:a@host;ob"), uri_key("sip:a@host"));
    }

    #[test]
    fn config_is_normalised() {
        let r = Registrar::new(RegistrarConfig {
            min_expires: 120,
            max_expires: 60,
            default_expires: 10,
        });
        assert_eq!(
            r.config(),
            RegistrarConfig {
                min_expires: 120,
                max_expires: 120,
                default_expires: 120
            }
        );
    }
}
