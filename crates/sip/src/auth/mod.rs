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
//! - `server`: [`DigestServer`] issues nonces and challenges and verifies credentials.

mod client;
mod digest;
mod params;
mod server;

pub use client::{client_authorization, client_authorization_with};
pub use params::{parse_challenge, parse_credentials, Challenge, Credentials};
pub use server::{AuthOutcome, DigestServer, MAX_OUTSTANDING_NONCES};

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
}
