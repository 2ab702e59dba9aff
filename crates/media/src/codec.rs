//! Audio codecs behind one interface: PCMU, PCMA (G.711), G.722 and, with the cargo feature
//! `opus`, Opus.
//!
//! A [`Decoder`] turns one RTP payload into linear 16-bit PCM at the codec's audio rate
//! ([`CodecKind::sample_rate`]) and conceals lost packets; an [`Encoder`] does the reverse for
//! one frame. Both are enums over the concrete codecs (no boxing), keep all their state inline
//! or in buffers sized in `new`, and never allocate while coding.

pub mod g722;

use crate::g711::G711Law;
use crate::plc::Plc;
use crate::MediaError;
use g722::{G722Decoder, G722Encoder};

/// The codecs the media plane can transcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, RTP "PCMU/8000".
    Pcmu,
    /// G.711 A-law, RTP "PCMA/8000".
    Pcma,
    /// G.722 at 64 kbit/s, RTP "G722/8000" (16 kHz audio).
    G722,
    /// Opus, RTP "opus/48000/2" (we code mono at 48 kHz).
    Opus,
}

impl CodecKind {
    /// The codec named by an SDP `a=rtpmap` encoding name and clock rate (name compared
    /// case-insensitively, RFC 4855 §3). `None` for anything else, including a known name at the
    /// wrong clock rate.
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<CodecKind> {
        let kind = if name.eq_ignore_ascii_case("PCMU") {
            CodecKind::Pcmu
        } else if name.eq_ignore_ascii_case("PCMA") {
            CodecKind::Pcma
        } else if name.eq_ignore_ascii_case("G722") {
            CodecKind::G722
        } else if name.eq_ignore_ascii_case("opus") {
            CodecKind::Opus
        } else {
            return None;
        };
        (kind.rtp_clock_rate() == clock_rate).then_some(kind)
    }

    /// The sampling rate of the audio (what `decode` produces and `encode` takes), in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8000,
            CodecKind::G722 => 16000,
            CodecKind::Opus => 48000,
        }
    }

    /// The RTP timestamp clock rate, in Hz. For G.722 this is 8000 although the audio is
    /// sampled at 16 kHz: RFC 3551 §4.5.2 kept the erroneous value for compatibility.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => 8000,
            CodecKind::Opus => 48000,
        }
    }

    /// Whether this build can code it (Opus needs the cargo feature `opus`).
    pub fn is_available(self) -> bool {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 => true,
            CodecKind::Opus => cfg!(feature = "opus"),
        }
    }
}

/// The rate of a decoder's [`Plc`]: the codec's, but for Opus (which conceals by itself and
/// gets a token one).
pub(crate) fn plc_rate(kind: CodecKind) -> u32 {
    match kind {
        CodecKind::Opus => 1000,
        k => k.sample_rate(),
    }
}

/// Why a codec refused its input or output buffer ([`MediaError::Codec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The output buffer cannot hold the result.
    #[error("output buffer too small")]
    OutputTooSmall,
    /// G.722 encodes pairs of samples; the frame had an odd number.
    #[error("G.722 needs an even number of samples")]
    OddSampleCount,
    /// libopus: the packet is not valid Opus.
    #[error("opus: invalid packet")]
    OpusInvalidPacket,
    /// libopus refused an argument, most often a frame size Opus does not have.
    #[error("opus: bad argument (frame size?)")]
    OpusBadArgument,
    /// libopus: an empty or oversized packet.
    #[error("opus: bad packet length")]
    OpusPacketLength,
    /// libopus: the signal buffer is too large.
    #[error("opus: signal buffer too large")]
    OpusSignalTooLarge,
    /// libopus: any other failure.
    #[error("opus: codec error")]
    Opus,
}

/// Map an Opus library error to ours.
#[cfg(feature = "opus")]
fn opus_err(e: audiopus::Error) -> MediaError {
    use audiopus::error::{Error, ErrorCode};
    MediaError::Codec(match e {
        Error::Opus(ErrorCode::BufferTooSmall) => CodecError::OutputTooSmall,
        Error::Opus(ErrorCode::InvalidPacket) => CodecError::OpusInvalidPacket,
        Error::Opus(ErrorCode::BadArgument) => CodecError::OpusBadArgument,
        Error::EmptyPacket | Error::PacketTooLarge => CodecError::OpusPacketLength,
        Error::SignalsTooLarge => CodecError::OpusSignalTooLarge,
        _ => CodecError::Opus,
    })
}

#[derive(Debug)]
enum DecoderInner {
    G711(G711Law),
    G722(Box<G722Decoder>),
    #[cfg(feature = "opus")]
    Opus(audiopus::coder::Decoder),
}

/// Decodes RTP payloads of one codec to linear PCM at [`CodecKind::sample_rate`].
#[derive(Debug)]
pub struct Decoder {
    kind: CodecKind,
    inner: DecoderInner,
    /// Concealment of G.711/G.722 (Opus conceals with its own decoder).
    plc: Plc,
}

impl Decoder {
    /// A decoder for `kind`; [`MediaError::CodecUnavailable`] if this build lacks it.
    pub fn new(kind: CodecKind) -> Result<Decoder, MediaError> {
        let inner = match kind {
            CodecKind::Pcmu => DecoderInner::G711(G711Law::Ulaw),
            CodecKind::Pcma => DecoderInner::G711(G711Law::Alaw),
            CodecKind::G722 => DecoderInner::G722(Box::default()),
            #[cfg(feature = "opus")]
            CodecKind::Opus => DecoderInner::Opus(
                audiopus::coder::Decoder::new(
                    audiopus::SampleRate::Hz48000,
                    audiopus::Channels::Mono,
                )
                .map_err(opus_err)?,
            ),
            #[cfg(not(feature = "opus"))]
            CodecKind::Opus => return Err(MediaError::CodecUnavailable(kind)),
        };
        Ok(Decoder {
            kind,
            inner,
            plc: Plc::new(plc_rate(kind)),
        })
    }

    /// Decode one RTP payload into `out` (audio samples at `kind().sample_rate()`); returns the
    /// number of samples written.
    ///
    /// G.711 and G.722 decode as much as fits in `out`; Opus fails with [`MediaError::Codec`]
    /// if the packet's frames do not fit (a 120 ms packet is 5760 samples) or are corrupt.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, MediaError> {
        let n = match &mut self.inner {
            DecoderInner::G711(law) => law.decode(payload, out),
            DecoderInner::G722(dec) => dec.decode(payload, out),
            #[cfg(feature = "opus")]
            DecoderInner::Opus(dec) => {
                let packet = audiopus::packet::Packet::try_from(payload).map_err(opus_err)?;
                let signals = audiopus::MutSignals::try_from(&mut out[..]).map_err(opus_err)?;
                return dec.decode(Some(packet), signals, false).map_err(opus_err);
            }
        };
        if let Some(good) = out.get_mut(..n) {
            self.plc.good(good);
        }
        Ok(n)
    }

    /// An upper bound of the samples [`Decoder::decode`] writes for `payload`: the buffer to
    /// offer it. Sizing that buffer per packet (instead of for the longest possible packet)
    /// keeps the per-packet path from zeroing kilobytes it never uses.
    pub fn max_samples(&self, payload: &[u8]) -> usize {
        match self.kind {
            // One byte per sample; G.722 packs two 16 kHz samples per byte.
            CodecKind::Pcmu | CodecKind::Pcma => payload.len(),
            CodecKind::G722 => payload.len() * 2,
            // Up to 120 ms at 48 kHz.
            CodecKind::Opus => 5760,
        }
    }

    /// The number of samples `payload` decodes to, without decoding it (`None` if Opus cannot
    /// tell: a corrupt packet).
    pub fn samples_in(&self, payload: &[u8]) -> Option<usize> {
        match &self.inner {
            DecoderInner::G711(_) => Some(payload.len()),
            DecoderInner::G722(_) => Some(payload.len() * 2),
            #[cfg(feature = "opus")]
            DecoderInner::Opus(dec) => audiopus::packet::Packet::try_from(payload)
                .and_then(|p| dec.nb_samples(p))
                .ok(),
        }
    }

    /// Conceal the audio lost just before `next` (the payload that arrived after the gap):
    /// Opus recovers it from `next`'s in-band FEC when the sender put some there (otherwise
    /// libopus conceals as [`conceal`](Self::conceal) does); the others just conceal.
    pub fn conceal_before(&mut self, next: &[u8], out: &mut [i16]) -> usize {
        #[cfg(feature = "opus")]
        if let DecoderInner::Opus(dec) = &mut self.inner {
            let n = out.len() / 120 * 120;
            if n > 0 {
                let done = audiopus::packet::Packet::try_from(next)
                    .and_then(|p| {
                        audiopus::MutSignals::try_from(&mut out[..n])
                            .and_then(|s| dec.decode(Some(p), s, true))
                    })
                    .ok();
                if let Some(done) = done {
                    let len = out.len();
                    out[done.min(len)..].fill(0);
                    return len;
                }
            }
        }
        let _ = next;
        self.conceal(out)
    }

    /// Packet loss concealment: fill all of `out` (the length of the lost audio) and return its
    /// length.
    ///
    /// Opus uses its decoder's PLC (for a whole number of 2.5 ms; any remainder is silence);
    /// G.711 and G.722 use [`Plc`]: the last pitch periods repeated with overlap-add at the
    /// joins, full level for 10 ms, then fading 20 % per 10 ms to silence at 60 ms; the next
    /// good packet is merged in smoothly.
    pub fn conceal(&mut self, out: &mut [i16]) -> usize {
        match &mut self.inner {
            #[cfg(feature = "opus")]
            DecoderInner::Opus(dec) => {
                // 120 samples = 2.5 ms at 48 kHz, Opus' smallest frame.
                let n = out.len() / 120 * 120;
                let done = if n == 0 {
                    0
                } else {
                    audiopus::MutSignals::try_from(&mut out[..n])
                        .and_then(|s| dec.decode(None, s, false))
                        .unwrap_or(0)
                };
                let len = out.len();
                out[done.min(len)..].fill(0);
                len
            }
            _ => {
                self.plc.conceal(out);
                out.len()
            }
        }
    }

    /// The codec this decoder decodes.
    pub fn kind(&self) -> CodecKind {
        self.kind
    }
}

#[derive(Debug)]
enum EncoderInner {
    G711(G711Law),
    G722(Box<G722Encoder>),
    #[cfg(feature = "opus")]
    Opus(audiopus::coder::Encoder),
}

/// Encodes frames of linear PCM at [`CodecKind::sample_rate`] into RTP payloads of one codec.
#[derive(Debug)]
pub struct Encoder {
    kind: CodecKind,
    inner: EncoderInner,
}

impl Encoder {
    /// An encoder for `kind`; [`MediaError::CodecUnavailable`] if this build lacks it.
    /// Opus is set up for speech: 48 kHz mono, VoIP application, complexity 5.
    pub fn new(kind: CodecKind) -> Result<Encoder, MediaError> {
        let inner = match kind {
            CodecKind::Pcmu => EncoderInner::G711(G711Law::Ulaw),
            CodecKind::Pcma => EncoderInner::G711(G711Law::Alaw),
            CodecKind::G722 => EncoderInner::G722(Box::default()),
            #[cfg(feature = "opus")]
            CodecKind::Opus => {
                let mut enc = audiopus::coder::Encoder::new(
                    audiopus::SampleRate::Hz48000,
                    audiopus::Channels::Mono,
                    audiopus::Application::Voip,
                )
                .map_err(opus_err)?;
                enc.set_complexity(5).map_err(opus_err)?;
                EncoderInner::Opus(enc)
            }
            #[cfg(not(feature = "opus"))]
            CodecKind::Opus => return Err(MediaError::CodecUnavailable(kind)),
        };
        Ok(Encoder { kind, inner })
    }

    /// Encode one frame (e.g. 20 ms: 160, 320 or 960 samples) into `out`; returns the number
    /// of bytes written.
    ///
    /// Fails with [`MediaError::Codec`] if `out` is too small for the frame, if a G.722 frame
    /// has an odd number of samples, or if an Opus frame is not 2.5, 5, 10, 20, 40 or 60 ms.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, MediaError> {
        match &mut self.inner {
            EncoderInner::G711(law) => {
                if out.len() < pcm.len() {
                    return Err(MediaError::Codec(CodecError::OutputTooSmall));
                }
                Ok(law.encode(pcm, out))
            }
            EncoderInner::G722(enc) => {
                if pcm.len() & 1 != 0 {
                    return Err(MediaError::Codec(CodecError::OddSampleCount));
                }
                if out.len() < pcm.len() / 2 {
                    return Err(MediaError::Codec(CodecError::OutputTooSmall));
                }
                Ok(enc.encode(pcm, out))
            }
            #[cfg(feature = "opus")]
            EncoderInner::Opus(enc) => enc.encode(pcm, out).map_err(opus_err),
        }
    }

    /// The codec this encoder produces.
    pub fn kind(&self) -> CodecKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The buffer bound is enough for a whole packet, and exactly what G.711/G.722 produce.
    #[test]
    fn max_samples_bounds_what_decode_writes() {
        for (kind, frame) in [
            (CodecKind::Pcmu, 160),
            (CodecKind::Pcma, 160),
            (CodecKind::G722, 320),
        ] {
            let mut enc = Encoder::new(kind).unwrap();
            let pcm: Vec<i16> = (0..frame)
                .map(|i| ((i * 97) % 2000) as i16 - 1000)
                .collect();
            let mut payload = vec![0u8; 1500];
            let n = enc.encode(&pcm, &mut payload).unwrap();
            let mut dec = Decoder::new(kind).unwrap();
            let bound = dec.max_samples(&payload[..n]);
            assert_eq!(bound, frame, "{kind:?}");
            let mut out = vec![0i16; bound];
            assert_eq!(
                dec.decode(&payload[..n], &mut out).unwrap(),
                frame,
                "{kind:?}"
            );
        }
    }

    /// Level (RMS) of `x` at `freq` by the Goertzel algorithm, as the amplitude of a sine.
    fn goertzel_amplitude(x: &[i16], freq: f64, rate: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.sqrt() / x.len() as f64
    }

    fn tone(freq: f64, rate: f64, amp: f64, n: usize, phase0: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + phase0) as f64 / rate;
                (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
            })
            .collect()
    }

    fn db(a: f64, b: f64) -> f64 {
        20.0 * (a / b).log10()
    }

    #[test]
    fn rtpmap_names_and_rates() {
        assert_eq!(CodecKind::from_rtpmap("PCMU", 8000), Some(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_rtpmap("pcma", 8000), Some(CodecKind::Pcma));
        assert_eq!(CodecKind::from_rtpmap("g722", 8000), Some(CodecKind::G722));
        assert_eq!(CodecKind::from_rtpmap("OPUS", 48000), Some(CodecKind::Opus));
        // G.722 is announced at 8000 (RFC 3551), never at its real 16 kHz.
        assert_eq!(CodecKind::from_rtpmap("G722", 16000), None);
        assert_eq!(CodecKind::from_rtpmap("opus", 8000), None);
        assert_eq!(CodecKind::from_rtpmap("GSM", 8000), None);
        assert_eq!(CodecKind::G722.sample_rate(), 16000);
        assert_eq!(CodecKind::G722.rtp_clock_rate(), 8000);
        assert_eq!(CodecKind::Opus.rtp_clock_rate(), 48000);
        assert_eq!(CodecKind::Opus.is_available(), cfg!(feature = "opus"));
        assert!(CodecKind::Pcma.is_available());
    }

    #[cfg(not(feature = "opus"))]
    #[test]
    fn opus_unavailable_without_feature() {
        assert!(matches!(
            Decoder::new(CodecKind::Opus),
            Err(MediaError::CodecUnavailable(CodecKind::Opus))
        ));
        assert!(matches!(
            Encoder::new(CodecKind::Opus),
            Err(MediaError::CodecUnavailable(CodecKind::Opus))
        ));
    }

    #[test]
    fn g711_round_trip_through_codec_api() {
        for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
            let mut enc = Encoder::new(kind).unwrap();
            let mut dec = Decoder::new(kind).unwrap();
            let pcm = tone(1000.0, 8000.0, 10000.0, 160, 0);
            let mut payload = [0u8; 160];
            assert_eq!(enc.encode(&pcm, &mut payload).unwrap(), 160);
            let mut out = [0i16; 160];
            assert_eq!(dec.decode(&payload, &mut out).unwrap(), 160);
            let level = db(goertzel_amplitude(&out, 1000.0, 8000.0), 10000.0);
            assert!(level.abs() < 0.2, "{kind:?}: {level} dB");
            assert!(enc.encode(&pcm, &mut [0u8; 100]).is_err());
            assert_eq!(enc.kind(), kind);
            assert_eq!(dec.kind(), kind);
        }
    }

    /// Encode `input` in 20 ms frames with G.722 and decode it again.
    fn g722_round_trip(input: &[i16]) -> Vec<i16> {
        let mut enc = Encoder::new(CodecKind::G722).unwrap();
        let mut dec = Decoder::new(CodecKind::G722).unwrap();
        let mut decoded = Vec::new();
        for frame in input.chunks(320) {
            let mut payload = [0u8; 160];
            let n = enc.encode(frame, &mut payload).unwrap();
            assert_eq!(n, frame.len() / 2);
            let mut out = [0i16; 320];
            let m = dec.decode(&payload[..n], &mut out).unwrap();
            assert_eq!(m, frame.len());
            decoded.extend_from_slice(&out[..m]);
        }
        decoded
    }

    #[test]
    fn g722_tone_keeps_level_and_frequency() {
        // One second of 1 kHz at -10 dBFS; measure after 100 ms of adaptation.
        let amp = 10362.0;
        let input = tone(1000.0, 16000.0, amp, 16000, 0);
        let out = g722_round_trip(&input);
        let tail = &out[1600..];
        let at_1k = goertzel_amplitude(tail, 1000.0, 16000.0);
        assert!(db(at_1k, amp).abs() < 1.0, "level {} dB", db(at_1k, amp));
        // The energy is at 1 kHz, not next to it or at the QMF alias (7 kHz).
        for f in [700.0, 1300.0, 3000.0, 7000.0] {
            let other = goertzel_amplitude(tail, f, 16000.0);
            assert!(
                db(other, at_1k) < -30.0,
                "{f} Hz at {} dB",
                db(other, at_1k)
            );
        }
    }

    #[test]
    fn g722_high_band_tone_survives() {
        // 6 kHz lies in the higher sub-band, coded with only 2 bits: level within 3 dB.
        let amp = 8000.0;
        let out = g722_round_trip(&tone(6000.0, 16000.0, amp, 16000, 0));
        let level = db(goertzel_amplitude(&out[3200..], 6000.0, 16000.0), amp);
        assert!(level.abs() < 3.0, "level {level} dB");
    }

    #[test]
    fn g722_silence_stays_silent_and_odd_frames_fail() {
        let out = g722_round_trip(&[0i16; 3200]);
        assert!(out.iter().all(|&s| s.abs() <= 4), "idle noise too loud");
        let mut enc = Encoder::new(CodecKind::G722).unwrap();
        assert!(enc.encode(&[0i16; 321], &mut [0u8; 200]).is_err());
        assert!(enc.encode(&[0i16; 320], &mut [0u8; 159]).is_err());
    }

    #[test]
    fn g722_decoder_takes_any_octets() {
        // Every code word (including the never-sent lower-band codes 0..=3) decodes without
        // panicking, and the output stays bounded.
        let mut dec = Decoder::new(CodecKind::G722).unwrap();
        let payload: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let mut out = vec![0i16; 8192];
        assert_eq!(dec.decode(&payload, &mut out).unwrap(), 8192);
        // A too-small output buffer truncates instead of panicking.
        assert_eq!(dec.decode(&payload, &mut out[..3]).unwrap(), 2);
    }

    #[test]
    fn conceal_continues_the_tone_then_fades_to_silence() {
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
        let mut good = [0i16; 160];
        let mut payload = [0u8; 160];
        for k in 0..5 {
            let pcm = tone(500.0, 8000.0, 8000.0, 160, k * 160);
            enc.encode(&pcm, &mut payload).unwrap();
            dec.decode(&payload, &mut good).unwrap();
        }

        let mut lost = [[0i16; 160]; 4];
        for frame in lost.iter_mut() {
            assert_eq!(dec.conceal(frame), 160);
        }
        let energy = |x: &[i16]| x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        // First concealed frame: the tone continued, full level for 10 ms then fading 20 %.
        let level = db(goertzel_amplitude(&lost[0], 500.0, 8000.0), 8000.0);
        assert!(level > -3.0 && level < 0.5, "first frame at {level:.2} dB");
        assert!(energy(&lost[1]) < energy(&lost[0]));
        assert!(energy(&lost[2]) < energy(&lost[1]));
        assert!(energy(&lost[2]) > 0.0);
        // After 60 ms: silence.
        assert!(lost[3].iter().all(|&s| s == 0));
        // The first concealed sample continues from the last good one: no jump beyond the
        // tone's own steps.
        let own = good
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        let join = (i32::from(lost[0][0]) - i32::from(good[159])).abs();
        assert!(
            join * 5 <= own * 6,
            "join step {join}, tone steps up to {own}"
        );
        // A good frame ends the concealment; the next loss starts at full level again.
        dec.decode(&payload, &mut good).unwrap();
        let mut again = [0i16; 160];
        dec.conceal(&mut again);
        assert!(energy(&again) > 0.7 * energy(&good));
    }

    #[test]
    fn conceal_before_any_frame_is_silence() {
        let mut dec = Decoder::new(CodecKind::G722).unwrap();
        let mut out = [7i16; 320];
        assert_eq!(dec.conceal(&mut out), 320);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_tone_keeps_level() {
        let amp = 10000.0;
        let mut enc = Encoder::new(CodecKind::Opus).unwrap();
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        let mut decoded = Vec::new();
        for k in 0..10 {
            let frame = tone(1000.0, 48000.0, amp, 960, k * 960);
            let mut payload = [0u8; 1500];
            let n = enc.encode(&frame, &mut payload).unwrap();
            assert!(n > 0 && n < 400, "{n} bytes");
            let mut out = [0i16; 960];
            assert_eq!(dec.decode(&payload[..n], &mut out).unwrap(), 960);
            decoded.extend_from_slice(&out);
        }
        // Skip 5 frames of warm-up.
        let level = db(goertzel_amplitude(&decoded[4800..], 1000.0, 48000.0), amp);
        assert!(level.abs() < 2.0, "level {level} dB");

        // PLC produces a full frame that continues the tone at a plausible level.
        let mut lost = [0i16; 960];
        assert_eq!(dec.conceal(&mut lost), 960);
        assert!(lost.iter().any(|&s| s.abs() > 1000));
        // Concealment of a frame lost before a packet (in-band FEC when there is some, libopus
        // PLC otherwise): a full frame continuing the tone.
        let frame = tone(1000.0, 48000.0, amp, 960, 11 * 960);
        let mut payload = [0u8; 1500];
        let n = enc.encode(&frame, &mut payload).unwrap();
        let mut lost = [0i16; 960];
        assert_eq!(dec.conceal_before(&payload[..n], &mut lost), 960);
        assert!(lost.iter().any(|&s| s.abs() > 1000));
        assert_eq!(dec.samples_in(&payload[..n]), Some(960));
        assert_eq!(dec.conceal_before(&[0xFF; 3], &mut lost), 960);
        // Bad input is an error, not a panic.
        assert!(dec.decode(&[], &mut [0i16; 960]).is_err());
        assert!(dec.decode(&[0xFF; 3], &mut [0i16; 10]).is_err());
        assert!(enc.encode(&[0i16; 100], &mut [0u8; 1500]).is_err());
    }
}
