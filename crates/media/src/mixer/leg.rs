//! One leg of the call: its input paths (packet-clocked decoder, jitter-buffered path), the
//! state of its output, and pulling its tick frame from the jitter buffer.

use std::time::{Duration, Instant};

use super::convert::{Conv, View};
use super::limits::{samples_in, vec_bytes, MAX_PCM};
use super::meter::PeakMeter;
use super::types::{LegId, LegParams, LegRole, LegStats, MixerConfig};
use crate::codec::{CodecKind, Decoder, Encoder};
use crate::dtmf::DtmfDetector;
use crate::jitter::{JbOut, JitterBuffer, JitterConfig};
use crate::rtp::StreamRewriter;
use crate::tone::ToneGen;
use crate::MediaError;

/// How a customer or agent leg's output is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Not produced (an extra customer/agent leg).
    Idle,
    /// Packets of the opposite party relayed.
    Relay,
    /// Packet-clocked mix (see the module documentation).
    Mixed,
    /// Supervisor mix: clocked by the customer's packets, by the mixer's clock while the
    /// customer is silent (see the module documentation).
    Clocked,
}

/// What was last sent to a leg.
#[derive(Clone, Copy, Debug)]
pub(super) struct LastTx {
    pub(super) at: Instant,
    pub(super) generated: bool,
}

/// The jitter-buffered input path of a leg that feeds a clocked mix. Boxed and created on
/// first use: the buffer alone holds about 96 KiB, which a relayed leg never needs.
pub(super) struct JbPath {
    pub(super) jb: JitterBuffer,
    /// Decoder of this path (its own state: it sees a different sequence than the
    /// packet-clocked path).
    pub(super) dec: Decoder,
    /// Decoded output not yet taken into a tick frame (native rate).
    pub(super) pcm: Vec<i16>,
}

impl JbPath {
    pub(super) fn new(cfg: &MixerConfig, kind: CodecKind) -> Result<Self, MediaError> {
        let frame_len = samples_in(cfg.ptime, kind.sample_rate());
        Ok(Self {
            dec: Decoder::new(kind)?,
            jb: JitterBuffer::new(jitter_config(cfg, kind)),
            pcm: Vec::with_capacity(frame_len * 4 + MAX_PCM * 2),
        })
    }
}

/// Heap a codec's decoder holds: its concealment history (`crate::plc`) and the boxed G.722
/// state. libopus' own state is not counted.
pub(super) fn decoder_heap(kind: CodecKind) -> usize {
    let g722 = match kind {
        CodecKind::G722 => std::mem::size_of::<crate::codec::g722::G722Decoder>(),
        _ => 0,
    };
    crate::plc::Plc::heap_bytes_at(crate::codec::plc_rate(kind)) + g722
}

/// Heap a codec's encoder holds: the boxed G.722 state (libopus' own is not counted).
pub(super) fn encoder_heap(kind: CodecKind) -> usize {
    match kind {
        CodecKind::G722 => std::mem::size_of::<crate::codec::g722::G722Encoder>(),
        _ => 0,
    }
}

pub(super) struct Leg {
    pub(super) id: LegId,
    pub(super) params: LegParams,
    /// Audio sample rate of the codec.
    pub(super) rate: u32,
    /// RTP clock rate of the codec.
    pub(super) rtp_clock: u32,

    // ---- input side ----
    // The codec state and buffers below are created by `replan` when the routing first
    // needs them, and kept (see the module documentation).
    /// Decoder of the packet-clocked path (packets in arrival order): while this leg clocks a
    /// mixed output.
    pub(super) dec_direct: Option<Decoder>,
    /// Jitter-buffered path: while this leg feeds a clocked mix.
    pub(super) jbp: Option<Box<JbPath>>,
    /// Whether this input feeds a clocked mix (its jitter buffer is fed and drained).
    pub(super) jb_active: bool,
    /// This tick's frame at the native rate.
    pub(super) frame: Vec<i16>,
    /// This tick's frame at the other rates that mixes need.
    pub(super) views: Vec<View>,
    pub(super) dtmf: DtmfDetector,
    /// Level of the decoded input.
    pub(super) meter: PeakMeter,
    /// Last (seq) handled on the packet-clocked path.
    pub(super) last_direct_seq: Option<u16>,
    /// Arrival of the last audio packet (for hold/DTX detection).
    pub(super) last_rx: Option<Instant>,
    /// Native rate -> the mix rate of the output this leg clocks.
    pub(super) direct_conv: Option<Conv>,
    /// Supervisor: contributes to the agent's / customer's mix.
    pub(super) to_agent: bool,
    pub(super) to_customer: bool,
    /// Supervisor audio waiting for the agent's / customer's packet-clocked mix, at that
    /// mix's rate.
    pub(super) side_agent: Vec<i16>,
    pub(super) side_agent_rate: u32,
    pub(super) side_customer: Vec<i16>,
    pub(super) side_customer_rate: u32,
    /// Supervisor output: the sum of the agent and the supervisors the agent hears, at this
    /// output's mix rate, waiting for the customer's next packet (or the hold tick). Kept as
    /// a sum so it saturates once, when mixed with the customer.
    pub(super) others: Vec<i32>,
    pub(super) others_rate: u32,
    /// Supervisor output: the customer's rate -> this output's mix rate.
    pub(super) cust_conv: Option<Conv>,

    // ---- output side ----
    pub(super) route: Route,
    /// Rate of the mix this leg hears.
    pub(super) mix_rate: u32,
    /// Mix rate -> codec rate.
    pub(super) out_conv: Option<Conv>,
    /// While this output is mixed.
    pub(super) encoder: Option<Encoder>,
    pub(super) rewriter: Option<StreamRewriter>,
    pub(super) last_tx: Option<LastTx>,
    /// The next generated packet starts a talkspurt.
    pub(super) force_marker: bool,
    /// Leg whose packets clock/relay this output.
    pub(super) source: Option<LegId>,
    /// Telephone-event passed through while mixed: input event timestamp -> output one.
    pub(super) dtmf_map: Option<(u32, u32)>,
    /// Notification tone playing on this output, at its mix rate.
    pub(super) tone: Option<ToneGen>,
    pub(super) stats: LegStats,
}

/// Jitter buffer settings of a clocked input.
///
/// A tick at `t` fills the frame `[t, t + ptime)`, so it asks the buffer for every packet whose
/// audio starts before `t + ptime` (`pop(t + ptime)`): a 30 ms packet is then never missing
/// in the middle of a 20 ms frame. That request runs one ptime ahead of the buffer's
/// schedule, so its delay range is shifted by one ptime: the delay the audio actually gets
/// (on top of waiting for the tick) stays within 0..`jitter_max`.
pub(super) fn jitter_config(cfg: &MixerConfig, kind: CodecKind) -> JitterConfig {
    JitterConfig {
        clock_rate: kind.rtp_clock_rate(),
        min_delay: cfg.ptime,
        max_delay: cfg.jitter_max + cfg.ptime,
        initial_delay: cfg.ptime,
    }
}

impl Leg {
    pub(super) fn new(id: LegId, params: LegParams) -> Result<Self, MediaError> {
        let kind = params.codec;
        // Its codec state is made later, when needed: find out now whether it can be.
        if !kind.is_available() {
            return Err(MediaError::CodecUnavailable(kind));
        }
        let rate = kind.sample_rate();
        Ok(Self {
            id,
            rate,
            rtp_clock: kind.rtp_clock_rate(),
            dec_direct: None,
            jbp: None,
            jb_active: false,
            frame: Vec::new(),
            views: Vec::new(),
            dtmf: DtmfDetector::new(),
            meter: PeakMeter::default(),
            last_direct_seq: None,
            last_rx: None,
            direct_conv: None,
            to_agent: false,
            to_customer: false,
            side_agent: Vec::new(),
            side_agent_rate: 0,
            side_customer: Vec::new(),
            side_customer_rate: 0,
            others: Vec::new(),
            others_rate: 0,
            cust_conv: None,
            route: Route::Idle,
            mix_rate: rate,
            out_conv: None,
            encoder: None,
            rewriter: None,
            last_tx: None,
            force_marker: false,
            source: None,
            dtmf_map: None,
            tone: None,
            stats: LegStats::default(),
            params,
        })
    }

    pub(super) fn is_supervisor(&self) -> bool {
        matches!(self.params.role, LegRole::Supervisor(_))
    }

    /// Heap held by this leg's state (not counting the `Leg` itself).
    pub(super) fn heap_bytes(&self) -> usize {
        let kind = self.params.codec;
        let views: usize = self
            .views
            .iter()
            .map(|v| vec_bytes(&v.buf) + v.conv.heap_bytes())
            .sum();
        let jbp = self.jbp.as_ref().map_or(0, |p| {
            std::mem::size_of::<JbPath>()
                + p.jb.heap_bytes()
                + decoder_heap(kind)
                + vec_bytes(&p.pcm)
        });
        vec_bytes(&self.frame)
            + vec_bytes(&self.views)
            + views
            + vec_bytes(&self.side_agent)
            + vec_bytes(&self.side_customer)
            + vec_bytes(&self.others)
            + self.cust_conv.as_ref().map_or(0, Conv::heap_bytes)
            + self.direct_conv.as_ref().map_or(0, Conv::heap_bytes)
            + self.out_conv.as_ref().map_or(0, Conv::heap_bytes)
            + self.dec_direct.as_ref().map_or(0, |_| decoder_heap(kind))
            + self.encoder.as_ref().map_or(0, |_| encoder_heap(kind))
            + jbp
    }

    /// This tick's frame at `rate`, if this input has one at that rate.
    pub(super) fn frame_at(&self, rate: u32) -> Option<&[i16]> {
        if rate == self.rate {
            return Some(&self.frame);
        }
        self.views
            .iter()
            .find(|v| v.conv.to == rate)
            .map(|v| v.buf.as_slice())
    }

    /// Take one tick frame (`frame_len` samples) from the jitter buffer into `frame`.
    ///
    /// An input that sent within `talking_within` but whose next packet is not there yet (it is
    /// late: sender or network jitter beyond the buffer's current delay) is concealed for the
    /// missing part rather than padded with silence; an input quiet for longer (hold, DTX, hang
    /// up) contributes silence, never comfort noise.
    pub(super) fn pull_frame(
        &mut self,
        t: Instant,
        ptime: Duration,
        frame_len: usize,
        talking_within: Duration,
    ) {
        let Leg {
            jbp,
            frame,
            stats,
            rate,
            rtp_clock,
            last_rx,
            meter,
            ..
        } = self;
        let Some(p) = jbp.as_deref_mut() else {
            // Not reached: `replan` gives every clocked input its path.
            frame.clear();
            frame.resize(frame_len, 0);
            return;
        };
        let JbPath {
            jb,
            dec: dec_jb,
            pcm: jb_pcm,
        } = p;
        // A frame may need several packets (10 ms ptime); bounded in case of a storm of
        // tiny packets.
        for _ in 0..16 {
            if jb_pcm.len() >= frame_len {
                break;
            }
            match jb.pop(t + ptime) {
                Some(JbOut::Packet { payload, .. }) => {
                    let old = jb_pcm.len();
                    jb_pcm.resize(old + dec_jb.max_samples(payload).min(MAX_PCM), 0);
                    match dec_jb.decode(payload, &mut jb_pcm[old..]) {
                        Ok(n) => jb_pcm.truncate(old + n),
                        Err(_) => {
                            jb_pcm.truncate(old);
                            stats.decode_errors += 1;
                        }
                    }
                }
                Some(JbOut::Lost { duration, .. }) => {
                    stats.concealed += 1;
                    let want = (u64::from(duration) * u64::from(*rate)
                        / u64::from((*rtp_clock).max(1))) as usize;
                    // More than a few frames of loss is an outage: the fade has ended anyway.
                    let want = want.min(frame_len * 3).max(1);
                    let old = jb_pcm.len();
                    jb_pcm.resize(old + want, 0);
                    dec_jb.conceal(&mut jb_pcm[old..]);
                }
                None => break,
            }
        }
        let talking = last_rx.is_some_and(|at| t.saturating_duration_since(at) <= talking_within);
        if jb_pcm.len() < frame_len && talking {
            stats.concealed += 1;
            let old = jb_pcm.len();
            jb_pcm.resize(frame_len, 0);
            dec_jb.conceal(&mut jb_pcm[old..]);
        }
        frame.clear();
        let take = frame_len.min(jb_pcm.len());
        frame.extend(jb_pcm.drain(..take));
        frame.resize(frame_len, 0);
        meter.feed(frame, *rate);
        // Packets longer than a tick leave a remainder; more than that is clock drift.
        let keep = frame_len * 3 + MAX_PCM;
        if jb_pcm.len() > keep {
            let excess = jb_pcm.len() - keep;
            jb_pcm.drain(..excess);
        }
    }
}
