//! HTTP digest authentication for SIP, server and client side.
//!
//! Implements RFC 2617 (MD5, `qop=auth`, and the legacy RFC 2069 form without qop), RFC 7616
//! (SHA-256) and RFC 8760 (several challenges, one per algorithm, strongest first).
//!
//! The server side ([`DigestServer`]) is sans-IO: nonces are derived from a caller-supplied secret
//! and a counter (no RNG), and their lifetime is measured against the `now` the caller passes in
//! (no clock). A nonce carries a MAC over its counter, so a nonce that was issued by this server but
//! has since been forgotten (expired and pruned, or evicted under memory pressure) is still
//! recognised as ours and answered with a `stale=true` re-challenge instead of a hard failure.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Upper bound on outstanding nonces; beyond it the oldest nonce is evicted. Bounded memory matters
/// because any unauthenticated peer can make us issue a challenge.
pub const MAX_OUTSTANDING_NONCES: usize = 10_000;

/// Hex characters of the counter part of a nonce (a `u64`).
const NONCE_COUNTER_HEX: usize = 16;
/// Hex characters of the MAC part of a nonce (128 bits of SHA-256).
const NONCE_MAC_HEX: usize = 32;

/// Errors from parsing digest headers or building client credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The header value does not follow the `auth-param` grammar.
    #[error("malformed digest header: {0}")]
    Malformed(&'static str),
    /// The authentication scheme is not `Digest`.
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// A required parameter is absent.
    #[error("missing digest parameter {0}")]
    MissingParam(&'static str),
    /// An algorithm we do not implement (e.g. `MD5-sess`, `SHA-512-256`).
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// A qop we do not implement (only `auth` is supported; `auth-int` is not).
    #[error("unsupported qop {0}")]
    UnsupportedQop(String),
    /// `userhash=true` (RFC 7616 §3.4.4) is not supported; we never offer it.
    #[error("userhash is not supported")]
    UserhashUnsupported,
    /// None of the offered challenges can be answered with the requested algorithm/qop.
    #[error("no usable digest challenge")]
    NoUsableChallenge,
}

/// Digest hash algorithm. The `-sess` variants are deliberately not supported: SIP clients do not
/// use them and they would need per-session state for HA1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (RFC 2617). Kept for older clients such as SIPp 3.6.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used in the `algorithm` parameter.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parse an `algorithm` token (case-insensitive). `-sess` and other variants are refused.
    pub fn parse(token: &str) -> Result<Self, AuthError> {
        if token.eq_ignore_ascii_case("MD5") {
            Ok(Algorithm::Md5)
        } else if token.eq_ignore_ascii_case("SHA-256") {
            Ok(Algorithm::Sha256)
        } else {
            Err(AuthError::UnsupportedAlgorithm(token.to_owned()))
        }
    }

    /// Lowercase hex digest of `data` (the `H()` / `KD()` building block of RFC 7616 §3.4).
    fn hex_digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Inputs of a digest `response` computation.
struct ResponseInput<'a> {
    algorithm: Algorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    method: &'a str,
    uri: &'a str,
    nonce: &'a str,
    /// `(nc, cnonce)` for `qop=auth`; `None` for the RFC 2069 form.
    qop_auth: Option<(&'a str, &'a str)>,
    /// The qop text as sent (`auth`, in whatever case the client used), hashed as is.
    qop: &'a str,
}

/// Compute the `response` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1, RFC 2069 when no qop).
fn compute_response(i: &ResponseInput<'_>) -> String {
    let alg = i.algorithm;
    let ha1 = alg.hex_digest(format!("{}:{}:{}", i.username, i.realm, i.password).as_bytes());
    let ha2 = alg.hex_digest(format!("{}:{}", i.method, i.uri).as_bytes());
    let kd = match i.qop_auth {
        Some((nc, cnonce)) => format!("{ha1}:{}:{nc}:{cnonce}:{}:{ha2}", i.nonce, i.qop),
        None => format!("{ha1}:{}:{ha2}", i.nonce),
    };
    alg.hex_digest(kd.as_bytes())
}

/// Compare without an early exit, so the time taken does not reveal how many leading bytes of a
/// guessed response were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// auth-param parsing (RFC 7235 §2.1, RFC 3261 §25.1)
// ---------------------------------------------------------------------------------------------

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Parse `Digest param=value, ...` into its parameters (names lowercased, values unquoted).
/// Duplicate parameter names are an error (RFC 7235 §2.1: each may occur only once).
fn parse_digest_header(value: &str) -> Result<Vec<(String, String)>, AuthError> {
    let value = value.trim();
    let scheme_end = value.find(|c: char| !is_tchar(c)).unwrap_or(value.len());
    let scheme = &value[..scheme_end];
    if scheme.is_empty() {
        return Err(AuthError::Malformed("missing scheme"));
    }
    let rest = &value[scheme_end..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(AuthError::Malformed(
            "scheme must be followed by whitespace",
        ));
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::UnsupportedScheme);
    }
    parse_params(rest)
}

fn skip_ows(it: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while matches!(it.peek(), Some(' ' | '\t' | '\r' | '\n')) {
        it.next();
    }
}

fn parse_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        // Empty list elements (`a=1, , b=2`) are allowed by the #rule.
        while matches!(it.peek(), Some(' ' | '\t' | '\r' | '\n' | ',')) {
            it.next();
        }
        if it.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(&c) = it.peek() {
            if !is_tchar(c) {
                break;
            }
            name.push(c.to_ascii_lowercase());
            it.next();
        }
        if name.is_empty() {
            return Err(AuthError::Malformed("expected parameter name"));
        }
        skip_ows(&mut it);
        if it.next() != Some('=') {
            return Err(AuthError::Malformed("expected '=' after parameter name"));
        }
        skip_ows(&mut it);
        let mut val = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(AuthError::Malformed("unterminated quoted string")),
                    Some('"') => break,
                    Some('\\') => match it.next() {
                        Some(c) => val.push(c),
                        None => return Err(AuthError::Malformed("dangling escape")),
                    },
                    Some(c) => val.push(c),
                }
            }
        } else {
            // Token (or token68-like: some clients send unquoted base64 nonces with '/', '=').
            while let Some(&c) = it.peek() {
                if matches!(c, ',' | ' ' | '\t' | '\r' | '\n' | '"') {
                    break;
                }
                val.push(c);
                it.next();
            }
            if val.is_empty() {
                return Err(AuthError::Malformed("empty parameter value"));
            }
        }
        skip_ows(&mut it);
        match it.peek() {
            None | Some(',') => {}
            Some(_) => return Err(AuthError::Malformed("expected ',' between parameters")),
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::Malformed("duplicate parameter"));
        }
        out.push((name, val));
    }
    Ok(out)
}

fn take(params: &mut Vec<(String, String)>, name: &str) -> Option<String> {
    let idx = params.iter().position(|(n, _)| n == name)?;
    Some(params.swap_remove(idx).1)
}

/// Escape a value for a quoted-string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Decode an RFC 8187 ext-value (`UTF-8''percent%20encoded`), used by `username*` (RFC 7616 §3.4.4).
fn decode_ext_value(v: &str) -> Result<String, AuthError> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next().unwrap_or_default();
    let _lang = parts.next().ok_or(AuthError::Malformed("bad ext-value"))?;
    let encoded = parts.next().ok_or(AuthError::Malformed("bad ext-value"))?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return Err(AuthError::Malformed("ext-value charset must be UTF-8"));
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hexpair = bytes
                .get(i + 1..i + 3)
                .ok_or(AuthError::Malformed("bad percent escape"))?;
            let mut buf = [0u8; 1];
            hex::decode_to_slice(hexpair, &mut buf)
                .map_err(|_| AuthError::Malformed("bad percent escape"))?;
            out.push(buf[0]);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AuthError::Malformed("ext-value is not UTF-8"))
}

/// True for a valid `nc-value`: 8 hex digits per RFC 2617; we accept 1–8 to be lenient.
fn valid_nc(nc: &str) -> bool {
    !nc.is_empty() && nc.len() <= 8 && nc.bytes().all(|b| b.is_ascii_hexdigit())
}

// ---------------------------------------------------------------------------------------------
// Credentials (Authorization / Proxy-Authorization)
// ---------------------------------------------------------------------------------------------

/// Parsed `Authorization` / `Proxy-Authorization` digest credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`, or the decoded `username*`.
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `digest-uri` exactly as sent; it (not the Request-URI) goes into HA2.
    pub uri: String,
    /// The `response` hex string as sent.
    pub response: String,
    /// `algorithm`, MD5 when absent (RFC 2617 §3.2.2).
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    /// `nc` exactly as sent (validated hex); the raw text enters the hash.
    pub nc: Option<String>,
    /// `qop`; when present it is `auth`.
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// The nonce count as a number, if present.
    pub fn nonce_count(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|nc| u32::from_str_radix(nc, 16).ok())
    }
}

/// Parse a digest `Authorization` / `Proxy-Authorization` header value. Never panics.
pub fn parse_credentials(header_value: &str) -> Result<Credentials, AuthError> {
    let mut p = parse_digest_header(header_value)?;
    if take(&mut p, "userhash").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(AuthError::UserhashUnsupported);
    }
    let username = match (take(&mut p, "username"), take(&mut p, "username*")) {
        (Some(_), Some(_)) => return Err(AuthError::Malformed("both username and username*")),
        (Some(u), None) => u,
        (None, Some(ext)) => decode_ext_value(&ext)?,
        (None, None) => return Err(AuthError::MissingParam("username")),
    };
    let realm = take(&mut p, "realm").ok_or(AuthError::MissingParam("realm"))?;
    let nonce = take(&mut p, "nonce").ok_or(AuthError::MissingParam("nonce"))?;
    let uri = take(&mut p, "uri").ok_or(AuthError::MissingParam("uri"))?;
    let response = take(&mut p, "response").ok_or(AuthError::MissingParam("response"))?;
    let algorithm = match take(&mut p, "algorithm") {
        Some(a) => Algorithm::parse(&a)?,
        None => Algorithm::Md5,
    };
    let qop = take(&mut p, "qop");
    let cnonce = take(&mut p, "cnonce");
    let nc = take(&mut p, "nc");
    let opaque = take(&mut p, "opaque");
    match &qop {
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc_ok = nc.as_deref().is_some_and(valid_nc);
            if cnonce.is_none() {
                return Err(AuthError::MissingParam("cnonce"));
            }
            if !nc_ok {
                return Err(AuthError::MissingParam("nc"));
            }
        }
        Some(q) => return Err(AuthError::UnsupportedQop(q.clone())),
        // RFC 2069 form: cnonce/nc are meaningless without qop (RFC 2617 §3.2.2).
        None if cnonce.is_some() || nc.is_some() => {
            return Err(AuthError::Malformed("cnonce/nc without qop"))
        }
        None => {}
    }
    Ok(Credentials {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        cnonce,
        nc,
        qop,
        opaque,
    })
}

// ---------------------------------------------------------------------------------------------
// Challenges (WWW-Authenticate / Proxy-Authenticate)
// ---------------------------------------------------------------------------------------------

/// A parsed digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// `algorithm`, MD5 when absent.
    pub algorithm: Algorithm,
    /// The raw `qop-options` list (e.g. `auth,auth-int`), `None` for an RFC 2069 challenge.
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub stale: bool,
}

impl Challenge {
    /// Whether the challenge offers `qop=auth`.
    fn offers_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }
}

/// Parse one digest `WWW-Authenticate` / `Proxy-Authenticate` header value. Never panics.
pub fn parse_challenge(header_value: &str) -> Result<Challenge, AuthError> {
    let mut p = parse_digest_header(header_value)?;
    let realm = take(&mut p, "realm").ok_or(AuthError::MissingParam("realm"))?;
    let nonce = take(&mut p, "nonce").ok_or(AuthError::MissingParam("nonce"))?;
    let algorithm = match take(&mut p, "algorithm") {
        Some(a) => Algorithm::parse(&a)?,
        None => Algorithm::Md5,
    };
    let qop = take(&mut p, "qop");
    let opaque = take(&mut p, "opaque");
    let stale = take(&mut p, "stale").is_some_and(|s| s.eq_ignore_ascii_case("true"));
    Ok(Challenge {
        realm,
        nonce,
        algorithm,
        qop,
        opaque,
        stale,
    })
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

/// Answer the best challenge among `challenges` (header values, in any order): SHA-256 is
/// preferred over MD5 (RFC 8760 §2.4), and `qop=auth` is used whenever offered. Challenges we
/// cannot parse or support (other schemes, `-sess`, `auth-int` only) are skipped.
pub fn client_authorization(
    challenges: &[String],
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    [Algorithm::Sha256, Algorithm::Md5]
        .into_iter()
        .find_map(|alg| {
            client_authorization_with(challenges, alg, username, password, method, uri, cnonce, nc)
                .ok()
        })
        .ok_or(AuthError::NoUsableChallenge)
}

/// Like [`client_authorization`] but answers only a challenge for `alg`.
#[allow(clippy::too_many_arguments)]
pub fn client_authorization_with(
    challenges: &[String],
    alg: Algorithm,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, AuthError> {
    let ch = challenges
        .iter()
        .filter_map(|c| parse_challenge(c).ok())
        .filter(|c| c.algorithm == alg)
        // Prefer qop=auth (replay protection) over the RFC 2069 form; skip auth-int-only offers.
        .filter(|c| c.qop.is_none() || c.offers_auth())
        .max_by_key(|c| c.offers_auth())
        .ok_or(AuthError::NoUsableChallenge)?;
    let nc_text = format!("{nc:08x}");
    let use_qop = ch.offers_auth();
    let response = compute_response(&ResponseInput {
        algorithm: alg,
        username,
        realm: &ch.realm,
        password,
        method,
        uri,
        nonce: &ch.nonce,
        qop_auth: use_qop.then_some((nc_text.as_str(), cnonce)),
        qop: "auth",
    });
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, response={}, algorithm={}",
        quote(username),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        quote(&response),
        alg.token()
    );
    if use_qop {
        let _ = write!(out, ", cnonce={}, qop=auth, nc={nc_text}", quote(cnonce));
    }
    if let Some(opaque) = &ch.opaque {
        let _ = write!(out, ", opaque={}", quote(opaque));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// Result of [`DigestServer::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials are valid.
    Ok { username: String },
    /// The digest was right but the nonce is no longer usable (expired, evicted, or a reused RFC 2069
    /// nonce): re-challenge with `stale=true` so the client retries without prompting the user.
    Stale,
    /// Authentication failed; re-challenge (without `stale`). `reason` is for logs, not for the wire.
    Failed { reason: &'static str },
}

/// Per-nonce state.
#[derive(Debug)]
struct NonceState {
    issued: Instant,
    /// Algorithms offered together with this nonce.
    algorithms: Vec<Algorithm>,
    /// Highest `nc` accepted so far (0: none).
    max_nc: u32,
    /// An RFC 2069 (no qop) request already used this nonce.
    legacy_used: bool,
}

/// Server side of digest authentication for one realm: issues challenges and verifies credentials.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    secret: [u8; 32],
    nonce_lifetime: Duration,
    algorithms: Vec<Algorithm>,
    opaque: String,
    counter: u64,
    nonces: HashMap<String, NonceState>,
    /// Nonces in issue order, for expiry and eviction of the oldest.
    order: VecDeque<String>,
}

impl DigestServer {
    /// `secret` seeds nonce generation (the server passes random bytes; tests a fixed value).
    /// It must be fresh per process start: nonces are a MAC over a counter that restarts at 0,
    /// so reusing a secret would make old nonces (and captured requests) valid again.
    /// Offers SHA-256 and MD5 by default.
    pub fn new(realm: &str, secret: [u8; 32], nonce_lifetime: Duration) -> Self {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(b"bibridge-opaque:");
        h.update(realm.as_bytes());
        let opaque = hex::encode(&h.finalize()[..16]);
        Self {
            realm: realm.to_owned(),
            secret,
            nonce_lifetime,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            opaque,
            counter: 0,
            nonces: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Restrict the offered algorithms (e.g. SHA-256 only). They are challenged in RFC 8760 order
    /// (SHA-256 first) whatever the order given; an empty list keeps the current set.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        let set: Vec<Algorithm> = [Algorithm::Sha256, Algorithm::Md5]
            .into_iter()
            .filter(|a| algorithms.contains(a))
            .collect();
        if !set.is_empty() {
            self.algorithms = set;
        }
        self
    }

    /// The realm this server challenges for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Number of nonces currently remembered.
    pub fn outstanding_nonces(&self) -> usize {
        self.nonces.len()
    }

    fn nonce_mac(&self, counter: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(b"bibridge-nonce:");
        h.update(self.realm.as_bytes());
        h.update(counter.to_be_bytes());
        hex::encode(&h.finalize()[..NONCE_MAC_HEX / 2])
    }

    /// True if `nonce` has our format and a valid MAC, i.e. we issued it at some point.
    fn is_our_nonce(&self, nonce: &str) -> bool {
        if nonce.len() != NONCE_COUNTER_HEX + NONCE_MAC_HEX || !nonce.is_ascii() {
            return false;
        }
        let (ctr, mac) = nonce.split_at(NONCE_COUNTER_HEX);
        let Ok(counter) = u64::from_str_radix(ctr, 16) else {
            return false;
        };
        counter < self.counter
            && constant_time_eq(self.nonce_mac(counter).as_bytes(), mac.as_bytes())
    }

    /// The WWW-Authenticate / Proxy-Authenticate header values to send, one per algorithm, SHA-256
    /// first (RFC 8760 §2.4: the client uses the first one it supports, so MD5-only clients still
    /// authenticate). All share one fresh nonce, remembered with its issue time.
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let algorithms = self.algorithms.clone();
        self.challenge_with(now, stale, &algorithms)
    }

    /// Like [`DigestServer::challenge`], restricted to `only` (intersected with the configured
    /// set; the configured set if that leaves nothing). For clients known to fail on SHA-256.
    pub fn challenge_with(&mut self, now: Instant, stale: bool, only: &[Algorithm]) -> Vec<String> {
        let mut algorithms: Vec<Algorithm> = self
            .algorithms
            .iter()
            .copied()
            .filter(|a| only.contains(a))
            .collect();
        if algorithms.is_empty() {
            algorithms = self.algorithms.clone();
        }
        self.prune(now);
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let nonce = format!("{counter:016x}{}", self.nonce_mac(counter));
        while self.nonces.len() >= MAX_OUTSTANDING_NONCES {
            match self.order.pop_front() {
                Some(old) => {
                    self.nonces.remove(&old);
                }
                None => break,
            }
        }
        self.nonces.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                algorithms: algorithms.clone(),
                max_nc: 0,
                legacy_used: false,
            },
        );
        self.order.push_back(nonce.clone());
        algorithms
            .iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm={}, nonce={}, opaque={}, algorithm={}, qop=\"auth\"",
                    quote(&self.realm),
                    quote(&nonce),
                    quote(&self.opaque),
                    alg.token()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Verify an Authorization / Proxy-Authorization header value for `method`.
    /// `password_for(username)` returns the cleartext password, `None` for an unknown user.
    ///
    /// The digest is checked before any nonce state changes, so unauthenticated requests can
    /// neither burn a nonce nor learn that it is stale.
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        header_value: &str,
        password_for: impl Fn(&str) -> Option<String>,
    ) -> AuthOutcome {
        self.prune(now);
        let creds = match parse_credentials(header_value) {
            Ok(c) => c,
            Err(AuthError::UnsupportedAlgorithm(_)) => {
                return AuthOutcome::Failed {
                    reason: "unsupported algorithm",
                }
            }
            Err(AuthError::UnsupportedQop(_)) => {
                return AuthOutcome::Failed {
                    reason: "unsupported qop",
                }
            }
            Err(_) => {
                return AuthOutcome::Failed {
                    reason: "malformed credentials",
                }
            }
        };
        if creds.realm != self.realm {
            return AuthOutcome::Failed {
                reason: "unknown realm",
            };
        }
        // Is the nonce live, ours-but-forgotten (stale), or not ours at all?
        let live = self.nonces.get(&creds.nonce);
        let stale = live.is_none();
        if stale && !self.is_our_nonce(&creds.nonce) {
            return AuthOutcome::Failed {
                reason: "unknown nonce",
            };
        }
        let issued_algs = live.map_or(&self.algorithms, |s| &s.algorithms);
        if !issued_algs.contains(&creds.algorithm) {
            return AuthOutcome::Failed {
                reason: "algorithm not offered with this nonce",
            };
        }
        if creds
            .opaque
            .as_deref()
            .is_some_and(|o| !constant_time_eq(o.as_bytes(), self.opaque.as_bytes()))
        {
            return AuthOutcome::Failed {
                reason: "opaque mismatch",
            };
        }
        let Some(password) = password_for(&creds.username) else {
            return AuthOutcome::Failed {
                reason: "unknown user",
            };
        };
        let qop_auth = match (&creds.nc, &creds.cnonce) {
            (Some(nc), Some(cnonce)) if creds.qop.is_some() => Some((nc.as_str(), cnonce.as_str())),
            _ => None,
        };
        let expected = compute_response(&ResponseInput {
            algorithm: creds.algorithm,
            username: &creds.username,
            realm: &self.realm,
            password: &password,
            method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            qop_auth,
            qop: creds.qop.as_deref().unwrap_or("auth"),
        });
        let given = creds.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            return AuthOutcome::Failed {
                reason: "bad response",
            };
        }
        let Some(state) = self.nonces.get_mut(&creds.nonce) else {
            // Right password, forgotten nonce: stale (RFC 7616 §3.3).
            return AuthOutcome::Stale;
        };
        if qop_auth.is_some() {
            let Some(nc) = creds.nonce_count() else {
                return AuthOutcome::Failed {
                    reason: "malformed credentials",
                };
            };
            if nc <= state.max_nc {
                return AuthOutcome::Failed {
                    reason: "replayed nonce count",
                };
            }
            state.max_nc = nc;
        } else {
            // RFC 2069 has no nonce count, so a nonce is good for a single request; a reuse gets a
            // stale re-challenge, which old clients answer without prompting.
            if state.legacy_used {
                return AuthOutcome::Stale;
            }
            state.legacy_used = true;
        }
        AuthOutcome::Ok {
            username: creds.username,
        }
    }

    /// Drop expired nonces; also done lazily by [`challenge`](Self::challenge) and
    /// [`verify`](Self::verify). Nonces expire `nonce_lifetime` after issue.
    pub fn prune(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            let expired = self
                .nonces
                .get(front)
                .is_none_or(|s| now.saturating_duration_since(s.issued) >= self.nonce_lifetime);
            if !expired {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.nonces.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SECRET: [u8; 32] = [7u8; 32];

    fn pw(user: &str) -> Option<String> {
        (user == "1001").then(|| "lab1001".to_owned())
    }

    fn server() -> DigestServer {
        DigestServer::new("bibridge", SECRET, Duration::from_secs(300))
    }

    #[test]
    fn rfc2617_worked_example() {
        let r = compute_response(&ResponseInput {
            algorithm: Algorithm::Md5,
            username: "Mufasa",
            realm: "testrealm@host.com",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop_auth: Some(("00000001", "0a4f113b")),
            qop: "auth",
        });
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");

        // And the same through the client path, with the RFC's challenge header.
        let ch = vec![r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#.to_owned()];
        let auth = client_authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        )
        .unwrap();
        let c = parse_credentials(&auth).unwrap();
        assert_eq!(c.response, "6629fae49393a05397450978507c4ef1");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(
            c.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
    }

    #[test]
    fn rfc7616_examples() {
        // RFC 7616 §3.9.1 (password "Circle of Life", method GET).
        let input = |algorithm| ResponseInput {
            algorithm,
            username: "Mufasa",
            realm: "http-auth@example.org",
            password: "Circle of Life",
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop_auth: Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
            qop: "auth",
        };
        assert_eq!(
            compute_response(&input(Algorithm::Md5)),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        assert_eq!(
            compute_response(&input(Algorithm::Sha256)),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sha256_matches_hand_composition() {
        // Compose HA1/HA2/KD by hand with the sha2 crate, independent of compute_response.
        let h = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
        let ha1 = h("1001:bibridge:lab1001");
        let ha2 = h("REGISTER:sip:127.0.0.1");
        let expected = h(&format!("{ha1}:abc:0000000a:xyz:auth:{ha2}"));
        let got = compute_response(&ResponseInput {
            algorithm: Algorithm::Sha256,
            username: "1001",
            realm: "bibridge",
            password: "lab1001",
            method: "REGISTER",
            uri: "sip:127.0.0.1",
            nonce: "abc",
            qop_auth: Some(("0000000a", "xyz")),
            qop: "auth",
        });
        assert_eq!(got, expected);
        assert_eq!(got.len(), 64);
    }

    #[test]
    fn challenge_order_and_format() {
        let t0 = Instant::now();
        let mut s = server();
        let v = s.challenge(t0, false);
        assert_eq!(v.len(), 2);
        let a = parse_challenge(&v[0]).unwrap();
        let b = parse_challenge(&v[1]).unwrap();
        assert_eq!(a.algorithm, Algorithm::Sha256);
        assert_eq!(b.algorithm, Algorithm::Md5);
        assert_eq!(a.realm, "bibridge");
        assert_eq!(a.qop.as_deref(), Some("auth"));
        assert!(a.opaque.is_some());
        assert!(!a.stale);
        assert_eq!(a.nonce, b.nonce);
        let v2 = s.challenge(t0, true);
        let c = parse_challenge(&v2[0]).unwrap();
        assert!(c.stale);
        assert_ne!(c.nonce, a.nonce, "every challenge gets a fresh nonce");

        let sha_only = server()
            .with_algorithms(&[Algorithm::Sha256])
            .challenge(t0, false);
        assert_eq!(sha_only.len(), 1);
        assert!(sha_only[0].contains("algorithm=SHA-256"));
    }

    fn round_trip(alg: Algorithm) {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        let uri = "sip:127.0.0.1:5060";
        let auth =
            client_authorization_with(&ch, alg, "1001", "lab1001", "REGISTER", uri, "c0ffee", 1)
                .unwrap();
        assert!(auth.contains(&format!("algorithm={}", alg.token())));
        let out = s.verify(t0 + Duration::from_secs(1), "REGISTER", &auth, pw);
        assert_eq!(
            out,
            AuthOutcome::Ok {
                username: "1001".into()
            }
        );
        // Next request on the same nonce with a higher nc is fine.
        let auth2 =
            client_authorization_with(&ch, alg, "1001", "lab1001", "INVITE", uri, "c0ffee", 2)
                .unwrap();
        assert_eq!(
            s.verify(t0 + Duration::from_secs(2), "INVITE", &auth2, pw),
            AuthOutcome::Ok {
                username: "1001".into()
            }
        );
    }

    #[test]
    fn round_trip_md5() {
        round_trip(Algorithm::Md5);
    }

    #[test]
    fn round_trip_sha256() {
        round_trip(Algorithm::Sha256);
    }

    #[test]
    fn client_prefers_sha256_whatever_the_order() {
        let t0 = Instant::now();
        let mut ch = server().challenge(t0, false);
        ch.reverse();
        let auth =
            client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        assert!(auth.contains("algorithm=SHA-256"));
        // Only MD5 offered: MD5 is used.
        let md5_only = vec![ch[0].clone()];
        assert!(md5_only[0].contains("MD5"));
        let auth = client_authorization(&md5_only, "1001", "lab1001", "REGISTER", "sip:x", "c", 1)
            .unwrap();
        assert!(auth.contains("algorithm=MD5"));
        // Nothing usable.
        let bad = vec![
            "Basic realm=\"x\"".to_owned(),
            "Digest realm=\"x\", nonce=\"n\", algorithm=MD5-sess, qop=\"auth\"".to_owned(),
            "Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"".to_owned(),
        ];
        assert_eq!(
            client_authorization(&bad, "u", "p", "REGISTER", "sip:x", "c", 1),
            Err(AuthError::NoUsableChallenge)
        );
    }

    #[test]
    fn wrong_password_unknown_user_wrong_method() {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        let bad = client_authorization(&ch, "1001", "nope", "REGISTER", "sip:x", "c", 1).unwrap();
        assert_eq!(
            s.verify(t0, "REGISTER", &bad, pw),
            AuthOutcome::Failed {
                reason: "bad response"
            }
        );
        let unknown =
            client_authorization(&ch, "9999", "lab9999", "REGISTER", "sip:x", "c", 1).unwrap();
        assert_eq!(
            s.verify(t0, "REGISTER", &unknown, pw),
            AuthOutcome::Failed {
                reason: "unknown user"
            }
        );
        let good =
            client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        // Digest for REGISTER does not authorise an INVITE (method is in HA2).
        assert_eq!(
            s.verify(t0, "INVITE", &good, pw),
            AuthOutcome::Failed {
                reason: "bad response"
            }
        );
        // Failed attempts did not burn nc=1.
        assert!(matches!(
            s.verify(t0, "REGISTER", &good, pw),
            AuthOutcome::Ok { .. }
        ));
    }

    #[test]
    fn replayed_nc_fails() {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        let a5 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 5).unwrap();
        let a3 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 3).unwrap();
        assert!(matches!(
            s.verify(t0, "REGISTER", &a5, pw),
            AuthOutcome::Ok { .. }
        ));
        assert_eq!(
            s.verify(t0, "REGISTER", &a5, pw),
            AuthOutcome::Failed {
                reason: "replayed nonce count"
            }
        );
        assert_eq!(
            s.verify(t0, "REGISTER", &a3, pw),
            AuthOutcome::Failed {
                reason: "replayed nonce count"
            }
        );
    }

    #[test]
    fn expired_nonce_is_stale_exactly_at_lifetime() {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        let a1 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        let a2 = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 2).unwrap();
        let just_before = t0 + Duration::from_secs(300) - Duration::from_millis(1);
        assert!(matches!(
            s.verify(just_before, "REGISTER", &a1, pw),
            AuthOutcome::Ok { .. }
        ));
        assert_eq!(
            s.verify(t0 + Duration::from_secs(300), "REGISTER", &a2, pw),
            AuthOutcome::Stale
        );
        assert_eq!(s.outstanding_nonces(), 0);
        // A stale nonce with a wrong password is a failure, not stale (RFC 2617 §3.2.1).
        let bad = client_authorization(&ch, "1001", "x", "REGISTER", "sip:x", "c", 3).unwrap();
        assert_eq!(
            s.verify(t0 + Duration::from_secs(301), "REGISTER", &bad, pw),
            AuthOutcome::Failed {
                reason: "bad response"
            }
        );
    }

    #[test]
    fn evicted_nonce_is_stale_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut s = server();
        let first = s.challenge(t0, false);
        for _ in 0..MAX_OUTSTANDING_NONCES {
            s.challenge(t0, false);
        }
        assert_eq!(s.outstanding_nonces(), MAX_OUTSTANDING_NONCES);
        let a =
            client_authorization(&first, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        assert_eq!(s.verify(t0, "REGISTER", &a, pw), AuthOutcome::Stale);
    }

    #[test]
    fn foreign_nonce_realm_opaque_and_algorithm_checks() {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        // A nonce from another server (different secret) is unknown, not stale.
        let mut other = DigestServer::new("bibridge", [1u8; 32], Duration::from_secs(300));
        let och = other.challenge(t0, false);
        let a = client_authorization(&och, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        let a = a.replace(
            &parse_challenge(&och[0]).unwrap().opaque.unwrap(),
            &parse_challenge(&ch[0]).unwrap().opaque.unwrap(),
        );
        assert_eq!(
            s.verify(t0, "REGISTER", &a, pw),
            AuthOutcome::Failed {
                reason: "unknown nonce"
            }
        );
        // Wrong realm.
        let mut r = parse_challenge(&ch[0]).unwrap();
        r.realm = "elsewhere".into();
        let forged = vec![format!(
            "Digest realm=\"elsewhere\", nonce=\"{}\", qop=\"auth\", algorithm=SHA-256",
            r.nonce
        )];
        let a =
            client_authorization(&forged, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        assert_eq!(
            s.verify(t0, "REGISTER", &a, pw),
            AuthOutcome::Failed {
                reason: "unknown realm"
            }
        );
        // Tampered opaque.
        let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        let opaque = parse_challenge(&ch[0]).unwrap().opaque.unwrap();
        let tampered = a.replace(&opaque, "00");
        assert_eq!(
            s.verify(t0, "REGISTER", &tampered, pw),
            AuthOutcome::Failed {
                reason: "opaque mismatch"
            }
        );
        // MD5 answer to a nonce that was only offered with SHA-256.
        let mut sha = server().with_algorithms(&[Algorithm::Sha256]);
        let ch = sha.challenge(t0, false);
        let md5_ch = vec![ch[0].replace("SHA-256", "MD5")];
        let a =
            client_authorization(&md5_ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        assert_eq!(
            sha.verify(t0, "REGISTER", &a, pw),
            AuthOutcome::Failed {
                reason: "algorithm not offered with this nonce"
            }
        );
        // -sess is refused clearly.
        let sess = a.replace("algorithm=MD5", "algorithm=MD5-sess");
        assert_eq!(
            sha.verify(t0, "REGISTER", &sess, pw),
            AuthOutcome::Failed {
                reason: "unsupported algorithm"
            }
        );
    }

    #[test]
    fn uri_is_used_as_sent() {
        let t0 = Instant::now();
        let mut s = server();
        let ch = s.challenge(t0, false);
        let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:a", "c", 1).unwrap();
        // Changing the uri parameter after the fact invalidates the digest.
        let forged = a.replace("uri=\"sip:a\"", "uri=\"sip:b\"");
        assert_eq!(
            s.verify(t0, "REGISTER", &forged, pw),
            AuthOutcome::Failed {
                reason: "bad response"
            }
        );
        assert!(matches!(
            s.verify(t0, "REGISTER", &a, pw),
            AuthOutcome::Ok { .. }
        ));
    }

    #[test]
    fn legacy_rfc2069_form() {
        let t0 = Instant::now();
        let mut s = server();
        let nonce = parse_challenge(&s.challenge(t0, false)[1]).unwrap().nonce;
        // A challenge as an RFC 2069 client sees it: no qop.
        let ch = vec![format!("Digest realm=\"bibridge\", nonce=\"{nonce}\"")];
        let a = client_authorization(&ch, "1001", "lab1001", "REGISTER", "sip:x", "c", 1).unwrap();
        assert!(!a.contains("qop"));
        assert!(!a.contains("nc="));
        assert_eq!(
            s.verify(t0, "REGISTER", &a, pw),
            AuthOutcome::Ok {
                username: "1001".into()
            }
        );
        // No nonce count to protect against replay: the nonce is single-use.
        assert_eq!(s.verify(t0, "REGISTER", &a, pw), AuthOutcome::Stale);
    }

    #[test]
    fn parse_credentials_edge_cases() {
        let c = parse_credentials(
            "digest  username = \"a\\\"b\\\\c\" ,realm=\"r, with comma\",nonce=\"n\",\turi=\"sip:x;a=b\", response=\"AB\", algorithm=sha-256, qop=auth, nc=00000001, cnonce=\"c\", extra=\"ignored\"",
        )
        .unwrap();
        assert_eq!(c.username, "a\"b\\c");
        assert_eq!(c.realm, "r, with comma");
        assert_eq!(c.uri, "sip:x;a=b");
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nonce_count(), Some(1));
        let c = parse_credentials(
            "Digest username*=UTF-8''J%C3%A4s%C3%B8n, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"",
        )
        .unwrap();
        assert_eq!(c.username, "Jäsøn");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert!(c.qop.is_none());

        let err = |s: &str| parse_credentials(s).unwrap_err();
        assert_eq!(err("Basic dXNlcjpwYXNz"), AuthError::UnsupportedScheme);
        assert_eq!(
            err("Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
            AuthError::MissingParam("username")
        );
        assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, cnonce=\"c\""),
            AuthError::MissingParam("nc")
        );
        assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth, cnonce=\"c\", nc=zz"),
            AuthError::MissingParam("nc")
        );
        assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", qop=auth-int, cnonce=\"c\", nc=1"),
            AuthError::UnsupportedQop("auth-int".into())
        );
        assert_eq!(
            err("Digest username=\"u\", username=\"v\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""),
            AuthError::Malformed("duplicate parameter")
        );
        assert_eq!(
            err("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\", userhash=true"),
            AuthError::UserhashUnsupported
        );
    }

    #[test]
    fn garbage_never_panics() {
        let t0 = Instant::now();
        let mut s = server();
        let cases = [
            "",
            " ",
            "Digest",
            "Digest ",
            "Digest ,,,",
            "Digest =",
            "Digest a",
            "Digest a=",
            "Digest a=\"",
            "Digest a=\"\\",
            "Digest a=b c=d",
            "Digest username=\"u\" realm=\"r\"",
            "Digest username*=UTF-8''%",
            "Digest username*=UTF-8''%C3",
            "Digest username*=x",
            "\u{0}\u{ffff}é=\"",
            "Digest nc=ffffffffffffffff",
            "Digest username=\"u\", realm=\"bibridge\", nonce=\"\u{e9}\u{e9}\u{e9}\", uri=\"u\", response=\"x\"",
            "Digest username=\"u\", realm=\"bibridge\", nonce=\"ffffffffffffffffffffffffffffffffffffffffffffffff\", uri=\"u\", response=\"x\"",
            "Digest username=\"1001\", realm=\"bibridge\", nonce=\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\", uri=\"u\", response=\"x\", qop=auth, nc=1, cnonce=\"\"",
        ];
        for c in cases {
            let _ = parse_challenge(c);
            let _ = client_authorization(&[c.to_owned()], "u", "p", "REGISTER", "sip:x", "c", 1);
            assert!(
                matches!(s.verify(t0, "REGISTER", c, pw), AuthOutcome::Failed { .. }),
                "{c:?}"
            );
        }
        // Every prefix of a valid header, and every single-byte corruption, is handled.
        let good = client_authorization(
            &s.challenge(t0, false),
            "1001",
            "lab1001",
            "REGISTER",
            "sip:x",
            "c",
            1,
        )
        .unwrap();
        for (i, _) in good.char_indices() {
            let _ = s.verify(t0, "REGISTER", &good[..i], pw);
            let mut bytes = good.clone().into_bytes();
            bytes[i] = b'"';
            let _ = s.verify(t0, "REGISTER", &String::from_utf8_lossy(&bytes), pw);
        }
    }
}
