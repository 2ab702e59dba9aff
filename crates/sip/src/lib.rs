//! Sans-IO SIP for bibridge.
//!
//! # Layout
//! - [`message`]: helpers over `rsip` messages: header access and Via (`message/headers.rs`),
//!   parsing with sanity checks and stream framing (`message/parse.rs`), status codes,
//!   serialisation, responses, ACK and CANCEL (`message/compose.rs`).
//! - [`ids`]: [`ids::IdGen`], branches, tags and Call-IDs (also re-exported as `message::IdGen`).
//! - [`transaction`]: RFC 3261 §17 transaction layer (INVITE/non-INVITE, client/server, timers A–K,
//!   RFC 6026 2xx handling). Driven with `handle_*(now, ..)`, `poll_*()`, `poll_timeout()`.
//!   Transaction keys in `transaction/key.rs`.
//! - [`auth`]: digest authentication (RFC 2617 / RFC 7616 / RFC 8760, MD5 and SHA-256), stale
//!   nonces: the `response` computation (`auth/digest.rs`), header grammar (`auth/params.rs`),
//!   nonce management (`auth/nonce.rs`), client (`auth/client.rs`) and server (`auth/server.rs`)
//!   sides.
//! - [`registrar`]: registrar bindings with expiry; Contact/Expires grammar in `registrar/contact.rs`.
//! - [`SipError`], [`Transport`], [`Transmit`], [`TimerConfig`]: shared by the modules above.
//!
//! Nothing here reads the clock, sleeps or touches a socket: time comes in as `now: Instant`,
//! bytes come in and go out as values. The tokio driver lives in the `bibridge` server crate.

#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod ids;
pub mod message;
pub mod registrar;
pub mod transaction;

use std::net::SocketAddr;
use std::time::Duration;

pub use rsip;

/// The transport a message came in on or must go out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: the transaction layer retransmits).
    Udp,
    /// TCP (reliable: no retransmissions).
    Tcp,
}

impl Transport {
    /// Reliable transports need no retransmissions (RFC 3261 §17.1.1.2, §17.1.2.2).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Bytes to put on the wire, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The transport to send on.
    pub transport: Transport,
    /// The destination address.
    pub dest: SocketAddr,
    /// The serialised message.
    pub data: bytes::Bytes,
}

/// RFC 3261 timer base values (Table 4). Configurable so that tests and labs can shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message will remain in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Errors of this crate. Protocol outcomes (timeouts, error responses) are events, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// A response's status code is outside 100–699.
    #[error("malformed SIP message: status code {0}")]
    InvalidStatusCode(u16),
    /// The transaction's state does not allow this response (e.g. a second final response).
    #[error("malformed SIP message: cannot send {code} in transaction state {state:?}")]
    ResponseNotAllowed {
        /// The status code the TU tried to send.
        code: u16,
        /// The state the transaction was in.
        state: transaction::TxState,
    },
    /// The key names no live server transaction.
    #[error("unknown transaction")]
    UnknownTransaction,
}
