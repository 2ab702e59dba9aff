//! PCMU (µ-law) and PCMA (A-law) per ITU-T G.711.
//!
//! Samples are 16-bit linear PCM. G.711 itself works on 14-bit (µ-law) and 13-bit (A-law)
//! linear values; we scale by 4 and 8 respectively, so that e.g. the largest µ-law level,
//! 8031 in G.711's 14-bit scale, reads 32124 here, and the largest A-law level, 4032 in
//! 13-bit scale, reads 32256.
//!
//! Both laws are segmented: eight segments (chords), each doubling the quantisation step of
//! the previous one, and 16 uniform steps (mantissa) within a segment. Decoding returns the
//! middle of the quantisation interval, so the round-trip error is at most half a step.
//!
//! Decoding is a lookup in 256-entry tables computed at compile time (`const fn`), encoding is
//! a handful of integer operations (a leading-zeros count finds the segment).

/// µ-law bias (in 16-bit scale): 33 in G.711's 14-bit scale times 4. Adding it makes the
/// segment boundaries fall on powers of two, so the segment is a bit position.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law can represent (before bias) without overflowing segment 7.
const ULAW_CLIP: i32 = 32635;

/// The RTP static payload type of PCMU (RFC 3551).
pub const PT_PCMU: u8 = 0;
/// The RTP static payload type of PCMA (RFC 3551).
pub const PT_PCMA: u8 = 8;

/// Encode one linear sample to a µ-law byte.
#[inline]
pub const fn ulaw_encode(s: i16) -> u8 {
    let s = s as i32;
    // Sign bit: set (before the final inversion) for negative values.
    let (sign, mag) = if s < 0 { (0x80, -s) } else { (0x00, s) };
    let mag = if mag > ULAW_CLIP { ULAW_CLIP } else { mag };
    let biased = (mag + ULAW_BIAS) as u32; // 132..=32767: bit 7 is the lowest possible top bit
    let top_bit = 31 - biased.leading_zeros(); // 7..=14
    let segment = top_bit - 7;
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    // G.711 transmits µ-law code words with all bits inverted.
    !((sign as u32 | (segment << 4) | mantissa) as u8)
}

/// Decode one µ-law byte (computed; [`ulaw_decode`] uses the table built from this).
const fn ulaw_decode_calc(b: u8) -> i16 {
    let v = !b;
    let segment = ((v >> 4) & 0x07) as u32;
    let mantissa = (v & 0x0F) as i32;
    // Middle of the interval in the biased domain, then remove the bias.
    let t = (((mantissa << 3) + ULAW_BIAS) << segment) - ULAW_BIAS;
    if v & 0x80 != 0 {
        -t as i16
    } else {
        t as i16
    }
}

/// Encode one linear sample to an A-law byte.
#[inline]
pub const fn alaw_encode(s: i16) -> u8 {
    let s = s as i32;
    // A-law has no zero level: negative values are coded from |s| - 1 (one's complement of
    // the 13-bit value), which makes the code symmetric around -0.5 LSB.
    let (sign, mag) = if s < 0 {
        (0x00u32, ((-s - 1) >> 3) as u32)
    } else {
        (0x80u32, (s >> 3) as u32)
    }; // mag: 13-bit magnitude 0..=4095, never needs clipping
    let code = if mag < 32 {
        // Segment 0 (levels 0..=31) has the same step as segment 1 (2 in 13-bit scale).
        (mag >> 1) & 0x0F
    } else {
        let top_bit = 31 - mag.leading_zeros(); // 5..=11
        let segment = top_bit - 4; // 1..=7
        (segment << 4) | ((mag >> segment) & 0x0F)
    };
    // G.711 transmits A-law with the even bits inverted.
    ((sign | code) ^ 0x55) as u8
}

/// Decode one A-law byte (computed; [`alaw_decode`] uses the table built from this).
const fn alaw_decode_calc(b: u8) -> i16 {
    let v = b ^ 0x55;
    let segment = ((v >> 4) & 0x07) as u32;
    let mantissa = (v & 0x0F) as i32;
    // 16-bit scale: step = 16 << (segment - 1) (16 in segment 0), plus half a step.
    let t = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if v & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

const fn build_table(law_a: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if law_a {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    table
}

/// µ-law byte -> linear sample.
static ULAW_TABLE: [i16; 256] = build_table(false);
/// A-law byte -> linear sample.
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Decode one µ-law byte to a linear sample.
#[inline]
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_TABLE[b as usize]
}

/// Decode one A-law byte to a linear sample.
#[inline]
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_TABLE[b as usize]
}

/// Encode `src` to µ-law into `dst`; converts `min(src.len(), dst.len())` samples and returns
/// that count.
pub fn encode_ulaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = ulaw_encode(s);
    }
    n
}

/// Decode µ-law `src` into `dst`; converts `min(src.len(), dst.len())` bytes and returns that
/// count.
pub fn decode_ulaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = ULAW_TABLE[b as usize];
    }
    n
}

/// Encode `src` to A-law into `dst`; converts `min(src.len(), dst.len())` samples and returns
/// that count.
pub fn encode_alaw(src: &[i16], dst: &mut [u8]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = alaw_encode(s);
    }
    n
}

/// Decode A-law `src` into `dst`; converts `min(src.len(), dst.len())` bytes and returns that
/// count.
pub fn decode_alaw(src: &[u8], dst: &mut [i16]) -> usize {
    let n = src.len().min(dst.len());
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = ALAW_TABLE[b as usize];
    }
    n
}

/// One of the two G.711 companding laws, for code that picks the law at run time (from the
/// negotiated payload type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711Law {
    /// µ-law, RTP "PCMU" (static payload type 0).
    Ulaw,
    /// A-law, RTP "PCMA" (static payload type 8).
    Alaw,
}

impl G711Law {
    /// The law of a static RTP payload type (0 = PCMU, 8 = PCMA), if it is one.
    pub fn from_static_payload_type(pt: u8) -> Option<Self> {
        match pt {
            PT_PCMU => Some(Self::Ulaw),
            PT_PCMA => Some(Self::Alaw),
            _ => None,
        }
    }

    /// The static RTP payload type of this law.
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Ulaw => PT_PCMU,
            Self::Alaw => PT_PCMA,
        }
    }

    /// The code word of digital silence (linear 0): 0xFF for µ-law, 0xD5 for A-law.
    pub fn silence(self) -> u8 {
        match self {
            Self::Ulaw => ulaw_encode(0),
            Self::Alaw => alaw_encode(0),
        }
    }

    /// Encode one sample.
    #[inline]
    pub fn encode_sample(self, s: i16) -> u8 {
        match self {
            Self::Ulaw => ulaw_encode(s),
            Self::Alaw => alaw_encode(s),
        }
    }

    /// Decode one code word.
    #[inline]
    pub fn decode_sample(self, b: u8) -> i16 {
        match self {
            Self::Ulaw => ulaw_decode(b),
            Self::Alaw => alaw_decode(b),
        }
    }

    /// Slice encode; see [`encode_ulaw`].
    pub fn encode(self, src: &[i16], dst: &mut [u8]) -> usize {
        match self {
            Self::Ulaw => encode_ulaw(src, dst),
            Self::Alaw => encode_alaw(src, dst),
        }
    }

    /// Slice decode; see [`decode_ulaw`].
    pub fn decode(self, src: &[u8], dst: &mut [i16]) -> usize {
        match self {
            Self::Ulaw => decode_ulaw(src, dst),
            Self::Alaw => decode_alaw(src, dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_reference_values() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0); // "negative zero"
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        // First step of segment 0 is 8 (2 in 14-bit scale): decision level at 4.
        assert_eq!(ulaw_encode(3), 0xFF);
        assert_eq!(ulaw_encode(4), 0xFE);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_encode(-4), 0x7E);
        assert_eq!(ulaw_decode(0x7E), -8);
        // Segment boundary: 14-bit level 31 -> code 0x8F range end; G.711 table 2a:
        // decoder output of code 0xF0 (inverted 0x0F) is 30 in 14-bit units -> 120.
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0xEF), 132); // first level of segment 1 (33 in 14-bit)
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(-1), 0x55);
        // Segment 0 and 1 step is 16; segment 1 starts at 13-bit level 32 (256 here).
        assert_eq!(alaw_decode(0xD4), 24);
        assert_eq!(alaw_encode(255), 0xDA); // 0x8F ^ 0x55: last code of segment 0/1 pair
        assert_eq!(alaw_encode(256), 0xC5); // 0x90 ^ 0x55
        assert_eq!(alaw_decode(0xC5), 264);
    }

    /// Half of the quantisation step of the segment a µ-law code belongs to.
    fn ulaw_half_step(code: u8) -> i32 {
        let segment = ((!code >> 4) & 0x07) as i32;
        1 << (segment + 2)
    }

    /// Half of the quantisation step of the segment an A-law code belongs to.
    fn alaw_half_step(code: u8) -> i32 {
        let segment = (((code ^ 0x55) >> 4) & 0x07) as i32;
        if segment <= 1 {
            8
        } else {
            1 << (segment + 2)
        }
    }

    #[test]
    fn ulaw_round_trip_error_within_half_step_for_all_samples() {
        for s in i16::MIN..=i16::MAX {
            let code = ulaw_encode(s);
            let d = ulaw_decode(code) as i32;
            let s = s as i32;
            let err = (d - s).abs();
            if s.abs() > ULAW_CLIP {
                // Beyond the overload point the output is the largest level.
                assert_eq!(d.abs(), 32124, "sample {s}");
                assert_eq!(d.signum(), s.signum(), "sample {s}");
            } else {
                assert!(
                    err <= ulaw_half_step(code),
                    "sample {s}: decoded {d}, err {err}"
                );
            }
            // Sign is kept (zero may decode from either sign).
            assert!(d == 0 || d.signum() == s.signum(), "sample {s} -> {d}");
        }
    }

    #[test]
    fn alaw_round_trip_error_within_half_step_for_all_samples() {
        for s in i16::MIN..=i16::MAX {
            let code = alaw_encode(s);
            let d = alaw_decode(code) as i32;
            let s = s as i32;
            let err = (d - s).abs();
            assert!(
                err <= alaw_half_step(code),
                "sample {s}: decoded {d}, err {err}"
            );
        }
    }

    #[test]
    fn encode_is_monotonic_and_decode_inverts_every_code() {
        let mut prev_u = i32::MIN;
        let mut prev_a = i32::MIN;
        for s in i16::MIN..=i16::MAX {
            let du = ulaw_decode(ulaw_encode(s)) as i32;
            let da = alaw_decode(alaw_encode(s)) as i32;
            assert!(du >= prev_u && da >= prev_a, "non-monotonic at {s}");
            prev_u = du;
            prev_a = da;
        }
        for b in 0..=255u8 {
            // Decoded levels are reproduction values: re-encoding gives the same code
            // (except µ-law's negative zero, which encodes as positive zero).
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law code {b:#04x}");
            if b != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "µ-law code {b:#04x}");
            }
        }
    }

    #[test]
    fn slice_versions_match_scalar_and_stop_at_shorter() {
        let src: Vec<i16> = (0..400)
            .map(|i| ((i * 163) % 65536 - 32768) as i16)
            .collect();
        let mut u = vec![0u8; 400];
        let mut a = vec![0u8; 400];
        assert_eq!(encode_ulaw(&src, &mut u), 400);
        assert_eq!(encode_alaw(&src, &mut a), 400);
        for (i, &s) in src.iter().enumerate() {
            assert_eq!(u[i], ulaw_encode(s));
            assert_eq!(a[i], alaw_encode(s));
        }
        let mut out = vec![0i16; 300];
        assert_eq!(decode_ulaw(&u, &mut out), 300);
        assert_eq!(out[299], ulaw_decode(u[299]));
        assert_eq!(decode_alaw(&a[..10], &mut out), 10);
        assert_eq!(out[9], alaw_decode(a[9]));
        assert_eq!(G711Law::Alaw.encode(&src[..5], &mut u), 5);
        assert_eq!(u[..5], a[..5]);
    }

    #[test]
    fn law_helpers() {
        assert_eq!(G711Law::from_static_payload_type(0), Some(G711Law::Ulaw));
        assert_eq!(G711Law::from_static_payload_type(8), Some(G711Law::Alaw));
        assert_eq!(G711Law::from_static_payload_type(9), None);
        assert_eq!(G711Law::Ulaw.silence(), 0xFF);
        assert_eq!(G711Law::Alaw.silence(), 0xD5);
        assert_eq!(G711Law::Alaw.payload_type(), 8);
        assert_eq!(G711Law::Ulaw.decode_sample(0x80), 32124);
    }
}
