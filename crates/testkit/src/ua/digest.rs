//! Digest credentials for the test phone: a thin layer over `bibridge_sip::auth`'s client side,
//! so the test phone and the server share one implementation of RFC 2617/7616/8760, tested
//! against the RFC vectors there. What a test phone adds is the choice of algorithm.

use bibridge_sip::auth::{client_authorization, client_authorization_with};

/// Which digest algorithm the phone answers with (`None` in [`authorize`]: the strongest offered).
pub use bibridge_sip::auth::Algorithm as AlgorithmPref;
/// Why no credentials could be built (no usable challenge, malformed header, ...).
pub use bibridge_sip::auth::AuthError as DigestError;

/// The value of an `Authorization` (for a 401) or `Proxy-Authorization` (for a 407) header.
///
/// `challenges` are the values of every `WWW-Authenticate`/`Proxy-Authenticate` header of the
/// response. With `pref = None` the strongest usable challenge wins (SHA-256 before MD5); with a
/// preference only a challenge of that algorithm is used. `uri` is the Request-URI of the request
/// being authorized.
#[allow(clippy::too_many_arguments)]
pub fn authorize(
    challenges: &[String],
    pref: Option<AlgorithmPref>,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, DigestError> {
    match pref {
        None => client_authorization(challenges, username, password, method, uri, cnonce, nc),
        Some(alg) => {
            client_authorization_with(challenges, alg, username, password, method, uri, cnonce, nc)
        }
    }
}
