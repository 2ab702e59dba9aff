//! Client side: answering a digest challenge with an `Authorization` header value.

use std::fmt::Write as _;

use super::digest::{compute_response, ResponseInput};
use super::params::{parse_challenge, quote};
use super::{Algorithm, AuthError};

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
