//! The `auth-param` grammar (RFC 7235 §2.1, RFC 3261 §25.1): parsing digest credentials
//! (`Authorization`) and challenges (`WWW-Authenticate`), quoting values.

use super::{Algorithm, AuthError, DigestParam, Malformation};

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
        return Err(AuthError::Malformed(Malformation::MissingScheme));
    }
    let rest = &value[scheme_end..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err(AuthError::Malformed(Malformation::NoSpaceAfterScheme));
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
            return Err(AuthError::Malformed(Malformation::ExpectedParamName));
        }
        skip_ows(&mut it);
        if it.next() != Some('=') {
            return Err(AuthError::Malformed(Malformation::ExpectedEquals));
        }
        skip_ows(&mut it);
        let mut val = String::new();
        if it.peek() == Some(&'"') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(AuthError::Malformed(Malformation::UnterminatedQuote)),
                    Some('"') => break,
                    Some('\\') => match it.next() {
                        Some(c) => val.push(c),
                        None => return Err(AuthError::Malformed(Malformation::DanglingEscape)),
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
                return Err(AuthError::Malformed(Malformation::EmptyValue));
            }
        }
        skip_ows(&mut it);
        match it.peek() {
            None | Some(',') => {}
            Some(_) => return Err(AuthError::Malformed(Malformation::ExpectedComma)),
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::Malformed(Malformation::DuplicateParam));
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
pub(super) fn quote(s: &str) -> String {
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
    let _lang = parts
        .next()
        .ok_or(AuthError::Malformed(Malformation::BadExtValue))?;
    let encoded = parts
        .next()
        .ok_or(AuthError::Malformed(Malformation::BadExtValue))?;
    if !charset.eq_ignore_ascii_case("UTF-8") {
        return Err(AuthError::Malformed(Malformation::ExtValueCharset));
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hexpair = bytes
                .get(i + 1..i + 3)
                .ok_or(AuthError::Malformed(Malformation::BadPercentEscape))?;
            let mut buf = [0u8; 1];
            hex::decode_to_slice(hexpair, &mut buf)
                .map_err(|_| AuthError::Malformed(Malformation::BadPercentEscape))?;
            out.push(buf[0]);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AuthError::Malformed(Malformation::ExtValueNotUtf8))
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
    /// `realm`.
    pub realm: String,
    /// `nonce`, as issued by the server.
    pub nonce: String,
    /// The `digest-uri` exactly as sent; it (not the Request-URI) goes into HA2.
    pub uri: String,
    /// The `response` hex string as sent.
    pub response: String,
    /// `algorithm`, MD5 when absent (RFC 2617 §3.2.2).
    pub algorithm: Algorithm,
    /// `cnonce` (with `qop=auth`).
    pub cnonce: Option<String>,
    /// `nc` exactly as sent (validated hex); the raw text enters the hash.
    pub nc: Option<String>,
    /// `qop`; when present it is `auth`.
    pub qop: Option<String>,
    /// `opaque`, if sent.
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
        (Some(_), Some(_)) => return Err(AuthError::Malformed(Malformation::BothUsernames)),
        (Some(u), None) => u,
        (None, Some(ext)) => decode_ext_value(&ext)?,
        (None, None) => return Err(AuthError::MissingParam(DigestParam::Username)),
    };
    let realm = take(&mut p, "realm").ok_or(AuthError::MissingParam(DigestParam::Realm))?;
    let nonce = take(&mut p, "nonce").ok_or(AuthError::MissingParam(DigestParam::Nonce))?;
    let uri = take(&mut p, "uri").ok_or(AuthError::MissingParam(DigestParam::Uri))?;
    let response =
        take(&mut p, "response").ok_or(AuthError::MissingParam(DigestParam::Response))?;
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
                return Err(AuthError::MissingParam(DigestParam::Cnonce));
            }
            if !nc_ok {
                return Err(AuthError::MissingParam(DigestParam::Nc));
            }
        }
        Some(q) => return Err(AuthError::UnsupportedQop(q.clone())),
        // RFC 2069 form: cnonce/nc are meaningless without qop (RFC 2617 §3.2.2).
        None if cnonce.is_some() || nc.is_some() => {
            return Err(AuthError::Malformed(Malformation::CnonceNcWithoutQop))
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
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm`, MD5 when absent.
    pub algorithm: Algorithm,
    /// The raw `qop-options` list (e.g. `auth,auth-int`), `None` for an RFC 2069 challenge.
    pub qop: Option<String>,
    /// `opaque`, to be echoed.
    pub opaque: Option<String>,
    /// `stale=true`: the credentials were right, the nonce is no longer valid.
    pub stale: bool,
}

impl Challenge {
    /// Whether the challenge offers `qop=auth`.
    pub(super) fn offers_auth(&self) -> bool {
        self.qop
            .as_deref()
            .is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")))
    }
}

/// Parse one digest `WWW-Authenticate` / `Proxy-Authenticate` header value. Never panics.
pub fn parse_challenge(header_value: &str) -> Result<Challenge, AuthError> {
    let mut p = parse_digest_header(header_value)?;
    let realm = take(&mut p, "realm").ok_or(AuthError::MissingParam(DigestParam::Realm))?;
    let nonce = take(&mut p, "nonce").ok_or(AuthError::MissingParam(DigestParam::Nonce))?;
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
