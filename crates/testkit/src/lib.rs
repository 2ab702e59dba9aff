//! Test helpers for bibridge.
//!
//! # Layout
//! - [`impair`]: a seeded UDP impairment relay (loss, jitter with reordering, duplication, a
//!   burst outage) between a test phone and bibridge.
//! - [`tone`]: sine tone generator and a Goertzel detector for "who hears whom" assertions.
//! - [`rtp_peer`]: an RTP endpoint on 127.0.0.1 that sends a tone as G.711 and records what it hears.
//! - [`ua`]: a small scripted SIP user agent over UDP for end-to-end tests: the phone itself in
//!   `ua/mod.rs`, the retransmission-absorbing receive task in `ua/absorb.rs`, client and server
//!   transactions in `ua/client.rs` and `ua/server.rs`, call/dialog state in `ua/dialog.rs`.

pub mod impair;
pub mod rtp_peer;
pub mod tone;
pub mod ua;
