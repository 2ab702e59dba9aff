//! Digest computation: the `response` value (`H()` / `KD()` of RFC 7616 §3.4) and a
//! constant-time comparison.

use md5::Md5;
use sha2::{Digest as _, Sha256};

use super::Algorithm;

impl Algorithm {
    /// Lowercase hex digest of `data` (the `H()` / `KD()` building block of RFC 7616 §3.4).
    pub(super) fn hex_digest(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Inputs of a digest `response` computation.
pub(super) struct ResponseInput<'a> {
    pub(super) algorithm: Algorithm,
    pub(super) username: &'a str,
    pub(super) realm: &'a str,
    pub(super) password: &'a str,
    pub(super) method: &'a str,
    pub(super) uri: &'a str,
    pub(super) nonce: &'a str,
    /// `(nc, cnonce)` for `qop=auth`; `None` for the RFC 2069 form.
    pub(super) qop_auth: Option<(&'a str, &'a str)>,
    /// The qop text as sent (`auth`, in whatever case the client used), hashed as is.
    pub(super) qop: &'a str,
}

/// Compute the `response` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1, RFC 2069 when no qop).
pub(super) fn compute_response(i: &ResponseInput<'_>) -> String {
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
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
