//! Sans-IO media for bibridge.
//!
//! # Layout
//! - [`rtp`]: RTP/RTCP packet views and the per-leg relay state (symmetric RTP latching,
//!   SSRC/sequence/timestamp continuity of what we send), RFC 3550 receiver statistics.
//! - [`g711`]: PCMU/PCMA encode and decode (ITU-T G.711).
//! - [`port_pool`]: the RTP port pool (even RTP port, RTCP on port+1), a pure allocator.
//! - [`codec`]: decoders/encoders per codec (G.711, G.722, Opus behind the `opus` feature) with
//!   packet loss concealment.
//! - [`resample`]: low-delay (≤ 1 ms) polyphase resampling between 8, 16 and 48 kHz.
//! - [`dtmf`]: RFC 4733 telephone-events and SIP INFO dtmf-relay bodies.
//! - [`jitter`]: the adaptive jitter buffer (0–60 ms) of each mixed input.
//! - [`mixer`]: the per-call mixer: who hears whom (DESIGN §3), relay or mix per output leg,
//!   input level meters.
//! - [`tone`]: notification tones (compliance beeps) the mixer plays to one leg.
//!
//! No sockets and no clock reads: the server's per-call media task owns the sockets and feeds
//! packets and `now` in.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod mixer;
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
