//! Server side: challenges and verification of credentials ([`DigestServer`]); the nonces
//! themselves are kept by `nonce.rs`.

use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::digest::{compute_response, constant_time_eq, ResponseInput};
use super::nonce::Nonces;
use super::params::{parse_credentials, quote};
use super::{Algorithm, AuthError};

/// Result of [`DigestServer::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials are valid.
    Ok {
        /// The authenticated user.
        username: String,
    },
    /// The digest was right but the nonce is no longer usable (expired, evicted, or a reused RFC 2069
    /// nonce): re-challenge with `stale=true` so the client retries without prompting the user.
    Stale,
    /// Authentication failed; re-challenge (without `stale`). `reason` is for logs, not for the wire.
    Failed {
        /// Why, for logs.
        reason: &'static str,
    },
}

/// Server side of digest authentication for one realm: issues challenges and verifies credentials.
#[derive(Debug)]
pub struct DigestServer {
    realm: String,
    algorithms: Vec<Algorithm>,
    opaque: String,
    nonces: Nonces,
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
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            opaque,
            nonces: Nonces::new(secret, realm, nonce_lifetime),
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
        let nonce = self.nonces.issue(now, algorithms.clone());
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
        if stale && !self.nonces.is_ours(&creds.nonce) {
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
        self.nonces.prune(now);
    }
}
