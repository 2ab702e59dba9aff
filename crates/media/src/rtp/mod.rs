//! RTP packet views and the per-leg relay state.
//!
//! - [`RtpHeader`]: validation and a zero-copy view of an RTP packet (RFC 3550 §5.1).
//! - [`is_rtcp`]: RTP/RTCP demultiplexing on one port (RFC 5761 §4).
//! - [`StreamRewriter`]: keeps what we send on an output leg one continuous RTP stream (one
//!   SSRC, continuous sequence numbers and timestamps) whatever happens to its input.
//! - [`LegMedia`]: which sources a leg accepts media from (strict, or learning for NAT; never
//!   re-latched on silence), where to send, and counters.
//! - [`InactivityTimer`]: media timeout that does not count while the leg is on hold.
//! - [`ReceiveStats`]: RFC 3550 receiver statistics of an incoming stream (expected, lost,
//!   interarrival jitter); [`rtp_seq_ts_ssrc`] reads what it needs from a datagram.
//!
//! One file per job: `header` (parsing and demultiplexing), `rewrite` (the output stream
//! rewriter), `latch` (symmetric-RTP latching and the leg's counters), `inactivity` (the media
//! timeout), `stats` (RFC 3550 receiver statistics); `seq` holds the sequence-number
//! arithmetic `rewrite` and `stats` share.

mod header;
mod inactivity;
mod latch;
mod rewrite;
mod seq;
mod stats;

pub use header::{is_rtcp, rtp_seq_ts_ssrc, RtpError, RtpHeader, RTP_FIXED_HEADER_LEN};
pub use inactivity::InactivityTimer;
pub use latch::{Latch, LatchMode, LegCounters, LegMedia, DEFAULT_LEARN_WINDOW, SSRC_CHANGE_AFTER};
pub use rewrite::{Rewrite, StreamRewriter};
pub use stats::ReceiveStats;

#[cfg(test)]
mod tests;
