//! Console logins: password check, tokens and the throttling of failed attempts (docs/api.md
//! "Authentication").
//!
//! Tokens live in memory only (a restart logs everybody out). Passwords are compared as SHA-256
//! digests with a constant-time equality, and an unknown extension is checked against a dummy
//! digest, so the answer time tells nothing about which part was wrong.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::http::HeaderMap;
use bibridge_b2bua::config::{Config, Role, User};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Name of the session cookie.
pub const COOKIE: &str = "bibridge_session";

/// Failures within this window count towards throttling.
const WINDOW: Duration = Duration::from_secs(300);
/// Failures tolerated within [`WINDOW`] before attempts have to wait.
const FREE_FAILURES: usize = 5;
/// The first wait, doubled on every further failure up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_secs(1);
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Bound on remembered throttling entries: beyond it, entries without recent failures go.
const MAX_THROTTLE_ENTRIES: usize = 10_000;

/// A logged-in supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub extension: String,
    pub expires: Instant,
    pub expires_wall: SystemTime,
}

/// What throttling is keyed by: the extension tried and the client address, separately.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Extension(String),
    Address(IpAddr),
}

#[derive(Debug, Default)]
struct Failures {
    /// Times of recent failures (within [`WINDOW`]).
    times: VecDeque<Instant>,
    /// The last wait imposed (zero: none yet).
    last_wait: Duration,
    /// No attempt is checked before this.
    blocked_until: Option<Instant>,
}

impl Failures {
    fn prune(&mut self, now: Instant) {
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.times.pop_front();
        }
        if self.times.len() < FREE_FAILURES {
            // The burst is over: the next one starts again at the first wait.
            self.last_wait = Duration::ZERO;
        }
    }

    fn record(&mut self, now: Instant) {
        self.prune(now);
        self.times.push_back(now);
        if self.times.len() >= FREE_FAILURES {
            let wait = if self.last_wait.is_zero() {
                FIRST_WAIT
            } else {
                (self.last_wait * 2).min(MAX_WAIT)
            };
            self.last_wait = wait;
            self.blocked_until = Some(now + wait);
        }
        // Only the last FREE_FAILURES matter for the decision: keep the queue bounded.
        while self.times.len() > FREE_FAILURES {
            self.times.pop_front();
        }
    }
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong password, unknown extension or not a supervisor (not told apart).
    Invalid,
    /// Throttled: try again after this long.
    Throttled(Duration),
}

/// Tokens and throttling state, shared by all requests.
pub struct Auth {
    tokens: DashMap<String, Login>,
    throttle: Mutex<HashMap<Key, Failures>>,
    ttl: Duration,
    /// Live tokens per supervisor; a further login evicts the oldest.
    max_per_user: usize,
    /// Tokens evicted so (for `/metrics`).
    pub evicted: AtomicU64,
    /// Compared against when the extension is unknown, to take the same time.
    dummy: [u8; 32],
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

impl Auth {
    pub fn new(ttl: Duration, max_per_user: usize) -> Auth {
        let salt: [u8; 16] = rand::random();
        Auth {
            tokens: DashMap::new(),
            throttle: Mutex::new(HashMap::new()),
            ttl,
            max_per_user: max_per_user.max(1),
            evicted: AtomicU64::new(0),
            dummy: Sha256::digest(salt).into(),
        }
    }

    /// Check a login attempt; on success a new token and its login.
    pub fn login(
        &self,
        cfg: &Config,
        extension: &str,
        password: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(String, Login), LoginError> {
        let user = cfg.user(extension);
        // Throttling by extension only for configured users: random names must not grow the map.
        let ext_key = user.map(|u| Key::Extension(u.extension.clone()));
        let ip_key = Key::Address(throttle_address(from));
        // One critical section for check, verify and record: parallel guesses cannot all pass the
        // check before the first failure is recorded. The password check is one SHA-256: short.
        let mut t = self.throttle.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for k in [Some(&ip_key), ext_key.as_ref()].into_iter().flatten() {
            if let Some(f) = t.get_mut(k) {
                f.prune(now);
                let w = f.blocked_until.filter(|b| *b > now).map(|b| b - now);
                wait = wait.max(w);
            }
        }
        if let Some(w) = wait {
            return Err(LoginError::Throttled(w));
        }
        if !self.password_ok(user, password) {
            if t.len() >= MAX_THROTTLE_ENTRIES {
                t.retain(|_, f| {
                    f.prune(now);
                    !f.times.is_empty()
                });
            }
            for k in [Some(ip_key), ext_key].into_iter().flatten() {
                t.entry(k).or_default().record(now);
            }
            return Err(LoginError::Invalid);
        }
        if let Some(k) = ext_key {
            t.remove(&k);
        }
        drop(t);
        self.tokens.retain(|_, l| l.expires > now);
        // At most `max_per_user` live tokens per supervisor: the oldest ones go (a forgotten tab
        // or a lost cookie must not lock the supervisor out; a script looping over logins must
        // not grow the table).
        let mut mine: Vec<(Instant, String)> = self
            .tokens
            .iter()
            .filter(|e| e.value().extension == extension)
            .map(|e| (e.value().expires, e.key().clone()))
            .collect();
        if mine.len() >= self.max_per_user {
            mine.sort();
            for (_, t) in &mine[..=mine.len() - self.max_per_user] {
                self.tokens.remove(t);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        let login = Login {
            extension: extension.to_string(),
            expires: now + self.ttl,
            expires_wall: SystemTime::now() + self.ttl,
        };
        self.tokens.insert(token.clone(), login.clone());
        Ok((token, login))
    }

    /// Constant-time password check; only supervisors pass.
    fn password_ok(&self, user: Option<&User>, password: &str) -> bool {
        let want = user.map(|u| digest(&u.password)).unwrap_or(self.dummy);
        let same: bool = digest(password).ct_eq(&want).into();
        same && user.is_some_and(|u| u.has_role(Role::Supervisor))
    }

    /// The login behind a request's token (cookie or bearer), if valid.
    pub fn check(&self, headers: &HeaderMap, now: Instant) -> Option<(String, Login)> {
        let token = token_of(headers)?;
        let login = self.tokens.get(&token).map(|l| l.clone())?;
        if login.expires <= now {
            self.tokens.remove(&token);
            return None;
        }
        Some((token, login))
    }

    /// Whether a token is still valid (an open event stream ends when it is not).
    pub fn valid(&self, token: &str, now: Instant) -> bool {
        self.tokens.get(token).is_some_and(|l| l.expires > now)
    }

    pub fn logout(&self, token: &str) {
        self.tokens.remove(token);
    }
}

/// The address a client's failures count against: an IPv4 client seen on a dual-stack socket
/// (`::ffff:a.b.c.d`) is its IPv4 address, and an IPv6 client its /64, since any host can pick
/// fresh addresses within its /64 at will and would otherwise never be throttled.
fn throttle_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// The bearer token of `Authorization: Bearer <token>`, exactly as sent: one space after the
/// scheme, nothing around the token (a token with whitespace in or around it matches nothing).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let ok = scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(token)
}

/// The token from `Authorization: Bearer` or the session cookie, matched exactly.
fn token_of(headers: &HeaderMap) -> Option<String> {
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        return bearer(headers).map(str::to_string);
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        // RFC 6265 §4.2.1: pairs are separated by "; ".
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim_start().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
}

/// `Set-Cookie` value for a new token.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
}

/// `Set-Cookie` value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn only_supervisors_with_the_right_password_log_in() {
        let cfg = Config::lab();
        let a = Auth::new(Duration::from_secs(60), 8);
        let now = Instant::now();
        let (token, login) = a
            .login(&cfg, "2001", "lab2001", ip(), now)
            .expect("supervisor logs in");
        assert_eq!(token.len(), 64);
        assert_eq!(login.extension, "2001");
        for (ext, pw) in [("2001", "lab2002"), ("1001", "lab1001"), ("9999", "x")] {
            assert_eq!(
                a.login(&cfg, ext, pw, IpAddr::from([10, 0, 0, 1]), now),
                Err(LoginError::Invalid),
                "{ext}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            format!("a=b; {COOKIE}={token}").parse().expect("header"),
        );
        assert!(a.check(&h, now).is_some());
        assert!(a.check(&h, now + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn throttling_doubles_the_wait_and_success_clears_the_extension() {
        let cfg = Config::lab();
        let a = Auth::new(Duration::from_secs(60), 8);
        let mut now = Instant::now();
        for _ in 0..4 {
            assert_eq!(
                a.login(&cfg, "2001", "bad", ip(), now),
                Err(LoginError::Invalid)
            );
        }
        // The fifth failure imposes the first wait.
        assert_eq!(
            a.login(&cfg, "2001", "bad", ip(), now),
            Err(LoginError::Invalid)
        );
        assert_eq!(
            a.login(&cfg, "2001", "lab2001", ip(), now),
            Err(LoginError::Throttled(Duration::from_secs(1)))
        );
        now += Duration::from_secs(1);
        assert_eq!(
            a.login(&cfg, "2001", "bad", ip(), now),
            Err(LoginError::Invalid)
        );
        assert_eq!(
            a.login(&cfg, "2001", "bad", ip(), now),
            Err(LoginError::Throttled(Duration::from_secs(2)))
        );
        // From another address the extension is still throttled.
        assert!(matches!(
            a.login(&cfg, "2001", "lab2001", IpAddr::from([10, 0, 0, 2]), now),
            Err(LoginError::Throttled(_))
        ));
        now += Duration::from_secs(2);
        // Success (from another address, whose own counter is clean) clears the extension.
        assert!(a
            .login(&cfg, "2001", "lab2001", IpAddr::from([10, 0, 0, 2]), now)
            .is_ok());
        assert!(a
            .login(&cfg, "2001", "lab2001", IpAddr::from([10, 0, 0, 3]), now)
            .is_ok());
        // The first address is still throttled on its own account (its count was not cleared).
        assert_eq!(
            a.login(&cfg, "2001", "bad", ip(), now),
            Err(LoginError::Invalid)
        );
        assert!(matches!(
            a.login(&cfg, "2001", "lab2001", ip(), now),
            Err(LoginError::Throttled(_))
        ));
        // After the window the burst is forgotten.
        now += WINDOW + Duration::from_secs(301);
        assert!(a.login(&cfg, "2001", "lab2001", ip(), now).is_ok());
    }

    #[test]
    fn fresh_ipv6_addresses_of_one_prefix_and_mapped_ipv4_are_one_address() {
        let cfg = Config::lab();
        let a = Auth::new(Duration::from_secs(60), 8);
        let now = Instant::now();
        // Unknown extensions: only the address counts.
        for i in 0..5u16 {
            let from = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1]);
            assert_eq!(
                a.login(&cfg, "9999", "x", from, now),
                Err(LoginError::Invalid)
            );
        }
        let next = IpAddr::from([0x2001, 0xdb8, 0, 1, 0xdead, 0, 0, 99]);
        assert!(matches!(
            a.login(&cfg, "9999", "x", next, now),
            Err(LoginError::Throttled(_))
        ));
        // Another /64 is another client.
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(
            a.login(&cfg, "9999", "x", other, now),
            Err(LoginError::Invalid)
        );
        for _ in 0..5 {
            let _ = a.login(&cfg, "9999", "x", ip(), now);
        }
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        assert!(matches!(
            a.login(&cfg, "2001", "lab2001", mapped, now),
            Err(LoginError::Throttled(_))
        ));
    }

    #[test]
    fn the_wait_is_capped() {
        let mut f = Failures::default();
        let mut now = Instant::now();
        for _ in 0..20 {
            f.record(now);
            now += Duration::from_secs(1);
        }
        assert_eq!(f.last_wait, MAX_WAIT);
    }
}
