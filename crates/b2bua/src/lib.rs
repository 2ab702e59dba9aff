//! The bibridge call logic: configuration model, routing, SDP offer/answer and the B2BUA engine.
//!
//! # Layout
//! - [`config`]: the configuration model, TOML parsing with errors naming file/key/expectation,
//!   and the embedded lab config.
//! - [`sdp`]: SDP parsing/rewriting for media anchoring and RFC 3264 codec negotiation.
//! - [`engine`]: the sans-IO B2BUA: registrar, authentication, routing, call/leg state,
//!   supervisor sessions (feature codes, refusals, DTMF mode switches, barge promotion); emits
//!   SIP transmits and media commands for the server driver.
//! - [`wire`]: composing requests from dialog state and small header-value parsers.

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod config;
pub mod engine;
pub mod ids;
pub mod sdp;
pub mod wire;
