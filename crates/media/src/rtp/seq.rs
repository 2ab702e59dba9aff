//! RTP sequence-number arithmetic (RFC 3550 appendix A.1) shared by the rewriter and the
//! receiver statistics.

/// RFC 3550 appendix A.1: a sequence number further ahead than this is not a loss but a
/// discontinuity of the sender.
pub(super) const MAX_DROPOUT: i32 = 3000;
/// RFC 3550 appendix A.1: a packet further behind than this is not reordering but a sender
/// restart.
pub(super) const MAX_MISORDER: i32 = 100;

/// Signed distance from sequence number `b` to `a`, modulo 2^16.
pub(super) fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}
