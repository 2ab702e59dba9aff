//! RTP header validation and views (RFC 3550 §5.1), RTP/RTCP demultiplexing (RFC 5761 §4).

use std::ops::Range;

use crate::MediaError;

/// Why a datagram is not a valid RTP packet ([`MediaError::BadPacket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("shorter than the RTP fixed header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version is not 2")]
    BadVersion,
    /// The CSRC count points past the end of the packet.
    #[error("CSRC list truncated")]
    CsrcTruncated,
    /// The header extension does not fit in the packet.
    #[error("header extension truncated")]
    ExtensionTruncated,
    /// The padding bit is set but there is no byte to hold the padding count.
    #[error("padding bit set but no padding")]
    MissingPadding,
    /// The padding count is zero or larger than what follows the header.
    #[error("invalid padding length")]
    BadPaddingLength,
}

/// Length of the fixed RTP header.
pub const RTP_FIXED_HEADER_LEN: usize = 12;

/// A validated RTP header: the fixed fields and where the payload is.
///
/// It holds no reference to the packet (so it can be kept while the buffer is rewritten); the
/// payload is a range into the buffer it was parsed from, see [`RtpHeader::payload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Marker bit (audio: first packet of a talkspurt).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRC identifiers after the fixed header.
    pub csrc_count: u8,
    /// Header extension: the 16-bit profile-defined value and the range of its data.
    pub extension: Option<(u16, Range<usize>)>,
    /// Number of padding bytes at the end (0 without the P bit; includes the count byte).
    pub padding_len: u8,
    /// Range of the payload in the packet (between header and padding).
    pub payload: Range<usize>,
}

impl RtpHeader {
    /// Validate `pkt` as an RTP packet and return its header.
    ///
    /// Checks version 2, that the CSRC list, the header extension and the padding fit in the
    /// buffer, and that the padding count is not zero. It does not reject RTCP: on a
    /// multiplexed port (RFC 5761) call [`is_rtcp`] first.
    pub fn parse(pkt: &[u8]) -> Result<RtpHeader, MediaError> {
        let fixed = pkt
            .get(..RTP_FIXED_HEADER_LEN)
            .ok_or(MediaError::BadPacket(RtpError::TooShort))?;
        let b0 = fixed[0];
        if b0 >> 6 != 2 {
            return Err(MediaError::BadPacket(RtpError::BadVersion));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0F;
        let mut offset = RTP_FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if offset > pkt.len() {
            return Err(MediaError::BadPacket(RtpError::CsrcTruncated));
        }
        let extension = if has_extension {
            let ext = pkt
                .get(offset..offset + 4)
                .ok_or(MediaError::BadPacket(RtpError::ExtensionTruncated))?;
            let profile = u16::from_be_bytes([ext[0], ext[1]]);
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            let start = offset + 4;
            let end = start + 4 * words;
            if end > pkt.len() {
                return Err(MediaError::BadPacket(RtpError::ExtensionTruncated));
            }
            offset = end;
            Some((profile, start..end))
        } else {
            None
        };
        let padding_len = if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let count = *pkt
                .last()
                .filter(|_| pkt.len() > offset)
                .ok_or(MediaError::BadPacket(RtpError::MissingPadding))?;
            if count == 0 || usize::from(count) > pkt.len() - offset {
                return Err(MediaError::BadPacket(RtpError::BadPaddingLength));
            }
            count
        } else {
            0
        };
        Ok(RtpHeader {
            payload_type: fixed[1] & 0x7F,
            marker: fixed[1] & 0x80 != 0,
            seq: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
            csrc_count,
            extension,
            padding_len,
            payload: offset..pkt.len() - usize::from(padding_len),
        })
    }

    /// Length of the header (fixed part, CSRCs and extension): the payload offset.
    pub fn header_len(&self) -> usize {
        self.payload.start
    }

    /// The payload within `pkt`, the buffer this header was parsed from (empty if `pkt` is
    /// too short, i.e. a different buffer).
    pub fn payload<'a>(&self, pkt: &'a [u8]) -> &'a [u8] {
        pkt.get(self.payload.clone()).unwrap_or(&[])
    }
}

/// Whether a packet received on an RTP port is RTCP (RFC 5761 §4): version 2 and a second
/// octet (marker bit + payload type in RTP, packet type in RTCP) in 192..=223, the range that
/// RTCP packet types occupy and RTP payload types must avoid when multiplexed.
pub fn is_rtcp(pkt: &[u8]) -> bool {
    // An RTCP header is at least 4 octets (V/P/count, type, length).
    pkt.len() >= 4 && pkt[0] >> 6 == 2 && (192..=223).contains(&pkt[1])
}

/// Overwrite SSRC, sequence number and timestamp (and set the marker bit if asked) of a
/// packet already validated by [`RtpHeader::parse`].
pub(super) fn write_header(pkt: &mut [u8], seq: u16, ts: u32, ssrc: u32, set_marker: bool) {
    if let Some(h) = pkt.get_mut(..RTP_FIXED_HEADER_LEN) {
        if set_marker {
            h[1] |= 0x80;
        }
        h[2..4].copy_from_slice(&seq.to_be_bytes());
        h[4..8].copy_from_slice(&ts.to_be_bytes());
        h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// SSRC, sequence number and timestamp of an RTP packet: `(seq, timestamp, ssrc)`.
///
/// `None` for RTCP (RFC 5761 demultiplexing, see [`is_rtcp`]) and for anything
/// [`RtpHeader::parse`] rejects.
pub fn rtp_seq_ts_ssrc(packet: &[u8]) -> Option<(u16, u32, u32)> {
    if is_rtcp(packet) {
        return None;
    }
    let h = RtpHeader::parse(packet).ok()?;
    Some((h.seq, h.timestamp, h.ssrc))
}
