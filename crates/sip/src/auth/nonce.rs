//! Nonce management for the digest server: issuing nonces (a counter plus a MAC over it),
//! remembering them with their per-nonce state, expiry, bounded eviction of the oldest, and
//! recognising a forgotten nonce as one of ours (so it is answered as stale).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::digest::constant_time_eq;
use super::Algorithm;

/// Upper bound on outstanding nonces; beyond it the oldest nonce is evicted. Bounded memory matters
/// because any unauthenticated peer can make us issue a challenge.
pub const MAX_OUTSTANDING_NONCES: usize = 10_000;

/// Hex characters of the counter part of a nonce (a `u64`).
const NONCE_COUNTER_HEX: usize = 16;
/// Hex characters of the MAC part of a nonce (128 bits of SHA-256).
const NONCE_MAC_HEX: usize = 32;

/// Per-nonce state.
#[derive(Debug)]
pub(super) struct NonceState {
    pub(super) issued: Instant,
    /// Algorithms offered together with this nonce.
    pub(super) algorithms: Vec<Algorithm>,
    /// Highest `nc` accepted so far (0: none).
    pub(super) max_nc: u32,
    /// An RFC 2069 (no qop) request already used this nonce.
    pub(super) legacy_used: bool,
}

/// The nonces a [`super::DigestServer`] has issued and still remembers.
#[derive(Debug)]
pub(super) struct Nonces {
    secret: [u8; 32],
    realm: String,
    lifetime: Duration,
    counter: u64,
    live: HashMap<String, NonceState>,
    /// Nonces in issue order, for expiry and eviction of the oldest.
    order: VecDeque<String>,
}

impl Nonces {
    pub(super) fn new(secret: [u8; 32], realm: &str, lifetime: Duration) -> Self {
        Self {
            secret,
            realm: realm.to_owned(),
            lifetime,
            counter: 0,
            live: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Number of nonces currently remembered.
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// The state of a remembered nonce.
    pub(super) fn get(&self, nonce: &str) -> Option<&NonceState> {
        self.live.get(nonce)
    }

    /// The state of a remembered nonce, to record a use.
    pub(super) fn get_mut(&mut self, nonce: &str) -> Option<&mut NonceState> {
        self.live.get_mut(nonce)
    }

    /// A fresh nonce offered with `algorithms`, remembered with its issue time. Expired nonces are
    /// dropped first; at [`MAX_OUTSTANDING_NONCES`] the oldest ones are evicted.
    pub(super) fn issue(&mut self, now: Instant, algorithms: Vec<Algorithm>) -> String {
        self.prune(now);
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(1);
        let nonce = format!("{counter:016x}{}", self.mac(counter));
        while self.live.len() >= MAX_OUTSTANDING_NONCES {
            match self.order.pop_front() {
                Some(old) => {
                    self.live.remove(&old);
                }
                None => break,
            }
        }
        self.live.insert(
            nonce.clone(),
            NonceState {
                issued: now,
                algorithms,
                max_nc: 0,
                legacy_used: false,
            },
        );
        self.order.push_back(nonce.clone());
        nonce
    }

    fn mac(&self, counter: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(b"bibridge-nonce:");
        h.update(self.realm.as_bytes());
        h.update(counter.to_be_bytes());
        hex::encode(&h.finalize()[..NONCE_MAC_HEX / 2])
    }

    /// True if `nonce` has our format and a valid MAC, i.e. we issued it at some point.
    pub(super) fn is_ours(&self, nonce: &str) -> bool {
        if nonce.len() != NONCE_COUNTER_HEX + NONCE_MAC_HEX || !nonce.is_ascii() {
            return false;
        }
        let (ctr, mac) = nonce.split_at(NONCE_COUNTER_HEX);
        let Ok(counter) = u64::from_str_radix(ctr, 16) else {
            return false;
        };
        counter < self.counter && constant_time_eq(self.mac(counter).as_bytes(), mac.as_bytes())
    }

    /// Drop expired nonces (`lifetime` after issue).
    pub(super) fn prune(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            let expired = self
                .live
                .get(front)
                .is_none_or(|s| now.saturating_duration_since(s.issued) >= self.lifetime);
            if !expired {
                break;
            }
            if let Some(old) = self.order.pop_front() {
                self.live.remove(&old);
            }
        }
    }
}
