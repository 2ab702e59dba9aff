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

//! # Layout
//! - `digest`: the `response` computation shared by both sides.
//! - `params`: the `auth-param` grammar: [`parse_credentials`], [`parse_challenge`].
//! - `client`: [`client_authorization`] answers a challenge.
//! - `nonce`: the nonces the server issued: MAC, per-nonce state, expiry and eviction.
//! - `server`: [`DigestServer`] issues challenges and verifies credentials.

mod client;
mod digest;
mod nonce;
mod params;
mod server;

pub use client::{client_authorization, client_authorization_with};
pub use nonce::MAX_OUTSTANDING_NONCES;
pub use params::{parse_challenge, parse_credentials, Challenge, Credentials};
pub use server::{AuthOutcome, DigestServer};

/// Errors from parsing digest headers or building client credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The header value does not follow the `auth-param` grammar.
    #[error("malformed digest header: {0}")]
    Malformed(Malformation),
    /// The authentication scheme is not `Digest`.
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// A required parameter is absent.
    #[error("missing digest parameter {0}")]
    MissingParam(DigestParam),
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

/// How a digest header value breaks the `auth-param` grammar (the payload of
/// [`AuthError::Malformed`]; its `Display` is the human reason, e.g. `duplicate parameter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformation {
    /// No scheme token at the start.
    #[error("missing scheme")]
    MissingScheme,
    /// The scheme is not followed by whitespace.
    #[error("scheme must be followed by whitespace")]
    NoSpaceAfterScheme,
    /// A parameter name was expected.
    #[error("expected parameter name")]
    ExpectedParamName,
    /// A parameter name is not followed by `=`.
    #[error("expected '=' after parameter name")]
    ExpectedEquals,
    /// A quoted string does not end.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// A backslash ends the value.
    #[error("dangling escape")]
    DanglingEscape,
    /// A parameter has an empty token value.
    #[error("empty parameter value")]
    EmptyValue,
    /// Parameters are not separated by commas.
    #[error("expected ',' between parameters")]
    ExpectedComma,
    /// A parameter occurs twice (RFC 7235 §2.1).
    #[error("duplicate parameter")]
    DuplicateParam,
    /// A `username*` value is not an RFC 8187 ext-value.
    #[error("bad ext-value")]
    BadExtValue,
    /// A `username*` value names a charset other than UTF-8.
    #[error("ext-value charset must be UTF-8")]
    ExtValueCharset,
    /// A `username*` value has a bad percent escape.
    #[error("bad percent escape")]
    BadPercentEscape,
    /// A decoded `username*` value is not UTF-8.
    #[error("ext-value is not UTF-8")]
    ExtValueNotUtf8,
    /// Both `username` and `username*` are present.
    #[error("both username and username*")]
    BothUsernames,
    /// `cnonce` or `nc` without `qop` (RFC 2617 §3.2.2).
    #[error("cnonce/nc without qop")]
    CnonceNcWithoutQop,
}

/// A digest parameter that must be present (the payload of [`AuthError::MissingParam`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestParam {
    /// `username`.
    Username,
    /// `realm`.
    Realm,
    /// `nonce`.
    Nonce,
    /// `uri`.
    Uri,
    /// `response`.
    Response,
    /// `cnonce`.
    Cnonce,
    /// `nc`.
    Nc,
}

impl DigestParam {
    /// The parameter name as it appears in the header.
    pub fn name(self) -> &'static str {
        match self {
            DigestParam::Username => "username",
            DigestParam::Realm => "realm",
            DigestParam::Nonce => "nonce",
            DigestParam::Uri => "uri",
            DigestParam::Response => "response",
            DigestParam::Cnonce => "cnonce",
            DigestParam::Nc => "nc",
        }
    }
}

impl std::fmt::Display for DigestParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
}

#[cfg(test)]
mod tests;
