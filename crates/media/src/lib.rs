//! Sans-IO media for bibridge.
//!
//! # Layout
//! - [`rtp`]: RTP/RTCP packet views (`header`), the output stream rewriter keeping
//!   SSRC/sequence/timestamp continuity of what we send (`rewrite`), symmetric RTP latching
//!   (`latch`), the media inactivity timer (`inactivity`), RFC 3550 receiver statistics
//!   (`stats`).
//! - [`g711`]: PCMU/PCMA encode and decode (ITU-T G.711).
//! - [`port_pool`]: the RTP port pool (even RTP port, RTCP on port+1), a pure allocator.
//! - [`codec`]: decoders/encoders per codec (G.711, G.722, Opus behind the `opus` feature) with
//!   packet loss concealment.
//! - [`plc`]: packet loss concealment for G.711/G.722 (G.711 Appendix I style pitch-period
//!   repetition, without its added delay); Opus conceals with its own decoder.
//! - [`resample`]: low-delay (≤ 1 ms) polyphase resampling between 8, 16 and 48 kHz.
//! - [`dtmf`]: RFC 4733 telephone-events and SIP INFO dtmf-relay bodies.
//! - [`jitter`]: the adaptive jitter buffer (0–60 ms) of each mixed input.
//! - [`mixer`]: the per-call mixer: who hears whom (docs/design.md §3), relay or mix per
//!   output leg, input level meters, notification tones; its run loop is shown there. One
//!   file per job (routing, legs, relay, mixing, clock, transmit queue, meter), see its
//!   "Layout".
//! - [`tone`]: notification tones (compliance beeps) the mixer plays to one leg.
//! - [`MediaError`]: this crate's error; its reasons are typed ([`rtp::RtpError`],
//!   [`codec::CodecError`], [`mixer::MixerError`]).
//!
//! No sockets and no clock reads: the server's per-call media task owns the sockets and feeds
//! packets and `now` in.

#![warn(missing_docs, unreachable_pub)]

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod plc;
pub mod port_pool;
pub mod resample;
pub mod rtp;
pub mod tone;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// No free RTP port pair is left in the pool.
    #[error("RTP port pool exhausted")]
    PoolExhausted,
    /// A received packet is not valid RTP; the reason names the failed check.
    #[error("not an RTP packet: {0}")]
    BadPacket(crate::rtp::RtpError),
    /// The codec is not compiled into this build (Opus needs the cargo feature `opus`).
    #[error("codec {0:?} not available in this build")]
    CodecUnavailable(crate::codec::CodecKind),
    /// A codec rejected its input or output buffer; the reason says which.
    #[error("codec error: {0}")]
    Codec(crate::codec::CodecError),
    /// The resampler does not support this pair of sampling rates.
    #[error("unsupported resampling {from} Hz -> {to} Hz")]
    UnsupportedRate {
        /// Input rate, Hz.
        from: u32,
        /// Output rate, Hz.
        to: u32,
    },
    /// A call mixer operation was refused; the reason says why.
    #[error("mixer: {0}")]
    Mixer(crate::mixer::MixerError),
}
