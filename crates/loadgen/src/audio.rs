//! What the generated RTP payloads contain, and how received ones are read back.
//!
//! Every 160-byte PCMU payload starts with a *key* that names the sending stream and a per-stream
//! packet counter. The key is written with quiet µ-law codes only (one nibble per byte, codes
//! `0xF0..=0xFF`, i.e. |sample| <= 120 of 32767, about -50 dBFS), so it survives as a key on
//! relayed paths (bibridge relays payloads byte for byte) and stays inaudible where a mixer adds
//! it to someone else's voice. The rest of the frame is silence (`0xFF`), except for the
//! customer's *probe* frames: a loud 1 kHz tone, detectable by its energy after decoding,
//! mixing and re-encoding, which is what the mixed paths are timed with.

/// Bytes of an RTP payload (PCMU, 20 ms at 8 kHz).
pub const FRAME: usize = 160;
/// Length of the key at the start of every payload: 2 magic bytes, 8 nibbles of stream id, 8
/// nibbles of counter.
pub const KEY_LEN: usize = 18;
const MAGIC: [u8; 2] = [0xFA, 0xF5];
/// Mean absolute sample value above which a decoded frame counts as carrying the probe. The
/// probe frame averages about 5 600; silence plus keys stay below 20.
pub const PROBE_THRESHOLD: u32 = 1_500;
/// µ-law silence (positive zero).
pub const SILENCE: u8 = 0xFF;

/// Encodes one linear 16-bit sample as G.711 µ-law (ITU-T G.711, bias 0x84, clip 32635).
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    // The segment (exponent) is the position of the highest set bit above bit 7.
    let exponent = (x >> 7).max(1).ilog2().min(7) as i32;
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one G.711 µ-law byte to a linear 16-bit sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0F);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let v = if b & 0x80 != 0 { -magnitude } else { magnitude };
    v as i16
}

/// Mean absolute decoded sample value of a µ-law payload (0 for an empty one).
pub fn mean_abs(payload: &[u8]) -> u32 {
    if payload.is_empty() {
        return 0;
    }
    let sum: u64 = payload
        .iter()
        .map(|&b| u64::from(ulaw_decode(b).unsigned_abs()))
        .sum();
    (sum / payload.len() as u64) as u32
}

/// Whether a received µ-law payload carries the probe tone.
pub fn is_probe(payload: &[u8]) -> bool {
    mean_abs(payload) > PROBE_THRESHOLD
}

/// The loud part of a probe frame: 1 kHz at about -10 dBFS, starting at phase 0.
pub fn probe_body() -> [u8; FRAME] {
    let mut out = [SILENCE; FRAME];
    for (i, o) in out.iter_mut().enumerate() {
        let phase = 2.0 * std::f64::consts::PI * 1_000.0 * i as f64 / 8_000.0;
        *o = ulaw_encode((10_000.0 * phase.sin()) as i16);
    }
    out
}

fn put_nibbles(out: &mut [u8], v: u32) {
    for (i, o) in out.iter_mut().take(8).enumerate() {
        *o = 0xF0 | ((v >> (28 - 4 * i)) & 0x0F) as u8;
    }
}

fn get_nibbles(inp: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in inp.get(..8)? {
        if b & 0xF0 != 0xF0 {
            return None;
        }
        v = (v << 4) | u32::from(b & 0x0F);
    }
    Some(v)
}

/// Writes the key of packet `counter` of stream `stream` into the first [`KEY_LEN`] bytes.
pub fn write_key(payload: &mut [u8], stream: u32, counter: u32) {
    if payload.len() < KEY_LEN {
        return;
    }
    payload[..2].copy_from_slice(&MAGIC);
    put_nibbles(&mut payload[2..10], stream);
    put_nibbles(&mut payload[10..18], counter);
}

/// Reads `(stream, counter)` back from a payload, `None` when it carries no intact key (a mixed
/// frame, or someone else's packet).
pub fn read_key(payload: &[u8]) -> Option<(u32, u32)> {
    if payload.get(..2)? != MAGIC {
        return None;
    }
    Some((
        get_nibbles(payload.get(2..10)?)?,
        get_nibbles(payload.get(10..18)?)?,
    ))
}

/// Fills a whole payload for packet `counter` of `stream`: key, then silence or the probe tone.
pub fn fill_payload(out: &mut [u8; FRAME], stream: u32, counter: u32, probe: Option<&[u8; FRAME]>) {
    match probe {
        Some(p) => out.copy_from_slice(p),
        None => out.fill(SILENCE),
    }
    write_key(out, stream, counter);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_is_close() {
        for s in [-32_000i16, -1000, -1, 0, 1, 100, 1000, 12_345, 32_000] {
            let d = ulaw_decode(ulaw_encode(s));
            let err = (i32::from(d) - i32::from(s)).abs();
            assert!(
                err <= (i32::from(s).abs() / 16).max(8),
                "{s} -> {d} (err {err})"
            );
        }
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_encode(0), 0xFF);
    }

    #[test]
    fn key_round_trips_and_is_quiet() {
        let mut p = [SILENCE; FRAME];
        write_key(&mut p, 0xDEAD_BEEF, 42);
        assert_eq!(read_key(&p), Some((0xDEAD_BEEF, 42)));
        assert!(mean_abs(&p) < 20, "key must stay quiet: {}", mean_abs(&p));
        assert!(!is_probe(&p));
        p[5] = 0x12;
        assert_eq!(read_key(&p), None, "a non-nibble byte breaks the key");
        assert_eq!(read_key(&[0xFA]), None);
    }

    #[test]
    fn probe_is_detected_and_silence_is_not() {
        let body = probe_body();
        let mut p = [0u8; FRAME];
        fill_payload(&mut p, 7, 25, Some(&body));
        assert!(is_probe(&p), "probe mean {}", mean_abs(&p));
        assert_eq!(read_key(&p), Some((7, 25)));
        fill_payload(&mut p, 7, 26, None);
        assert!(!is_probe(&p));
        // A probe mixed with a quiet party (sum of linear samples, re-encoded) is still a probe.
        let mixed: Vec<u8> = body
            .iter()
            .map(|&b| ulaw_encode(ulaw_decode(b).saturating_add(ulaw_decode(0xF3))))
            .collect();
        assert!(is_probe(&mixed));
        // Half a probe (split across two mixer frames) is still detected in the first half.
        let mut half = [SILENCE; FRAME];
        half[..80].copy_from_slice(&body[..80]);
        assert!(is_probe(&half));
    }
}
