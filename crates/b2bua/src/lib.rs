//! The bibridge call logic: configuration model, routing, SDP offer/answer and the B2BUA engine.
//!
//! # Layout
//! - [`config`]: the configuration model (`model`), the policy queries the engine asks
//!   (`policy`), the span-aware TOML reader with errors naming file/key/expectation (`parse`,
//!   `sections`), and the embedded lab config.
//! - [`engine`]: the sans-IO B2BUA: registrar, digest authentication, routing, call/leg state,
//!   supervisor sessions (feature codes, refusals, DTMF mode switches, barge promotion), the
//!   operator API's views and sessions, compliance (audit records, tones); emits SIP transmits
//!   and media commands for the server driver. Its module docs list its files.
//! - [`ids`]: the ids shared by the engine and the audit log (calls, sessions, legs, sides,
//!   who started a session).
//! - [`audit`]: audit records and the sink trait the engine hands them to.
//! - [`sdp`]: SDP parsing/rewriting for media anchoring and RFC 3264 codec negotiation.
//! - [`wire`]: composing requests from dialog state and small header-value parsers.
//!
//! # Run loop
//! The [`engine::Engine`] does no I/O and reads no clock: the driver (the server, or a test)
//! feeds it what arrived with the time it arrived (`handle_*`), sends what it asks for
//! (`poll_transmit`, `poll_media`), and wakes it at `poll_timeout`. Time is whatever the driver
//! says it is, so tests run in virtual time:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//!
//! use bibridge_b2bua::config::Config;
//! use bibridge_b2bua::engine::{Engine, LocalAddrs};
//! use bibridge_sip::Transport;
//!
//! let sip: SocketAddr = "127.0.0.1:5060".parse().unwrap();
//! let phone: SocketAddr = "127.0.0.1:5070".parse().unwrap();
//! let mut now = Instant::now();
//! let local = LocalAddrs { udp: Some(sip), tcp: None };
//! let mut engine = Engine::new(Config::lab(), local, [7; 32], now);
//!
//! // A datagram arrives on the SIP socket.
//! let options = "OPTIONS sip:bibridge@127.0.0.1:5060 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-doc-1\r\n\
//!     Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: <sip:bibridge@127.0.0.1>\r\n\
//!     Call-ID: doc-1@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
//! engine.handle_datagram(now, options.as_bytes(), phone, Transport::Udp);
//!
//! let mut sent = Vec::new();
//! for _ in 0..3 {
//!     // Drain everything the engine wants done...
//!     while let Some(t) = engine.poll_transmit() {
//!         sent.push(t.data); // the server: socket.send_to(&t.data, t.dest)
//!     }
//!     while let Some(cmd) = engine.poll_media() {
//!         drop(cmd); // the server: hand it to the call's media task
//!     }
//!     while let Some(notice) = engine.poll_notice() {
//!         drop(notice); // the server: logs, metrics, the console's events
//!     }
//!     // ...then sleep until its next deadline (or the next datagram or media event).
//!     let Some(deadline) = engine.poll_timeout() else { break };
//!     now = now.max(deadline); // virtual time: jump straight there
//!     engine.handle_timeout(now);
//! }
//! assert!(sent[0].starts_with(b"SIP/2.0 200 OK"));
//! ```

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod config;
pub mod engine;
pub mod ids;
pub mod sdp;
pub mod wire;
