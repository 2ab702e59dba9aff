//! The per-call mixer: who hears whom (DESIGN §3), sans-IO.
//!
//! One [`CallMixer`] per call. It takes every RTP packet received on the call's legs
//! ([`CallMixer::handle_rtp`]) and the passing of time ([`CallMixer::handle_timeout`]), and
//! queues the packets to send ([`CallMixer::poll_transmit`]).
//!
//! # Paths
//! - **Relay** (customer <-> agent with nobody mixed in and the same codec on both sides): the
//!   packet is copied, its header rewritten by the output's [`StreamRewriter`] and sent at once;
//!   the payload is untouched. The rewriter of an output is created from the first packet it
//!   relays (same SSRC, offset 0), so a plain relay is byte-identical end to end.
//! - **Packet-clocked mix** (the agent's output while a coach or barge supervisor is present,
//!   the customer's while a barge supervisor is; also a codec mismatch between customer and
//!   agent): each packet of the opposite party is decoded on arrival — never jitter-buffered, so
//!   its timing is kept — the supervisors' audio for the same span is added from their FIFOs,
//!   and the result is encoded and sent at once. When that party has sent nothing for more than
//!   3 ptime (hold, DTX), the mixer's own clock produces the frames (supervisors only).
//! - **Supervisor mix** (every supervisor's output: customer + agent + the other supervisors
//!   the agent hears): clocked by the customer's packets too, so the customer reaches a
//!   supervisor with no added delay. Each customer packet is decoded on arrival (the same
//!   decoding as for the agent's packet-clocked mix: once per packet, whoever needs it), and
//!   the rest of the mix for the same span is added from the supervisor's FIFO: on each tick
//!   of the mixer's own clock (one ptime), one frame of the agent and of every supervisor
//!   heard by the agent is taken from its jitter buffer, summed at the supervisor's mix rate
//!   and queued there (at most 3 frames, as for the agent's mix). When the customer has sent
//!   nothing for more than 3 ptime (hold, DTX, no customer leg), the tick sends that frame
//!   itself; when the customer's packets resume they clock the output again. Both switches
//!   keep one stream (one SSRC, sequence numbers continuous, timestamps advancing by each
//!   packet's length), exactly like the agent's output. As there, the packets follow the
//!   customer's packet time (10 or 30 ms customer packets make 10 or 30 ms supervisor
//!   packets; Opus outputs split spans it has no frame size for), a customer packet lost in
//!   sequence is passed on as the same gap, and the customer's telephone-events reach no
//!   supervisor. The customer's jitter buffer feeds only its level meter.
//!
//! Every mix runs at the highest sample rate among the legs taking part in it; inputs are
//! resampled up to it and the sum down to the output codec's rate. Sums saturate.
//!
//! # Notification tones
//! [`CallMixer::play_tone`] mixes a [`Tone`] into what one leg receives, and into nothing else:
//! - a clocked or packet-clocked mix gets the tone added to its frames;
//! - a relayed output becomes a packet-clocked mix for as long as the tone plays (the relayed
//!   party is decoded into it, so it is heard throughout) and a relay again afterwards. Both
//!   switches are the ones a mode change makes: same SSRC, continuous sequence numbers and
//!   timestamps.
//!
//! While a tone plays the mixer's clock runs, so a tone is produced on its own clock when the
//! clocking party is silent or nobody sends at all. Supervisors hear what the parties send,
//! never their outputs, so a tone played to the agent or customer does not reach them.
//!
//! # Input level meter
//! [`CallMixer::input_level`] reads the level of what a leg sends, for an operator console: the
//! sample peak over the last 100–200 ms of its decoded audio, in dBFS (0 dBFS = a full-scale
//! sine's peak; silence reads [`LEVEL_FLOOR_DBFS`]). A peak meter is instant on attack, and
//! the sliding window lets it fall to the floor within 200 ms of audio once the leg is quiet.
//! It is fed where the mixer decodes the leg anyway, never by extra decoding:
//! - a leg with a jitter buffer (every supervisor, whatever its mode: its input is pulled
//!   and decoded on each tick even in monitor mode, when nobody hears it; customer and agent
//!   while a supervisor is present): the tick frames, concealment and the silence of a quiet
//!   leg included;
//! - otherwise a customer or agent whose packets are decoded for a packet-clocked mix (a
//!   codec mismatch): the decoded packets. The meter moves with the packets only; when they
//!   stop (hold, DTX) it keeps its last value.
//!
//! A leg whose packets are only relayed (no supervisor, same codec) is not decoded: `None`.
//!
//! # Buffers
//! A call that is only relayed holds what relaying needs and no more: its legs, their
//! rewriters and a small transmit queue. The mixing state — decoders and encoders, jitter
//! buffers, PCM and scratch buffers, resamplers, the full transmit queue — is created when
//! the routing first needs it (a supervisor joins, a tone plays, the codecs differ), per
//! leg and per part (a codec mismatch alone needs no jitter buffer), and kept afterwards: a
//! supervisor who leaves and comes back costs nothing more. [`CallMixer::heap_bytes`]
//! estimates what a mixer holds.
//!
//! All of it is sized when a leg is added or the routing changes (a tone starting or ending
//! changes the routing); handling a packet or a tick does not allocate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::{CodecKind, Decoder, Encoder};
use crate::dtmf::DtmfDetector;
use crate::jitter::{JbOut, JitterBuffer, JitterConfig};
use crate::resample::Resampler;
use crate::rtp::{is_rtcp, Rewrite, RtpHeader, StreamRewriter};
use crate::tone::ToneGen;
use crate::MediaError;

pub use crate::tone::Tone;

/// Identifies a leg within one [`CallMixer`] (chosen by the caller).
pub type LegId = u32;

/// A supervisor's session mode: named by who hears the supervisor (DESIGN §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// Silent monitoring: heard by nobody.
    Monitor,
    /// Whisper: heard by the agent only.
    Coach,
    /// Three-way: heard by agent and customer.
    Barge,
}

/// What a leg is in the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegRole {
    /// The outside party. Only the first customer leg added takes part.
    Customer,
    /// The agent. Only the first agent leg added takes part.
    Agent,
    /// A supervisor in a session mode.
    Supervisor(SessionMode),
}

/// Media parameters of a leg, from its negotiated SDP.
#[derive(Clone, Debug)]
pub struct LegParams {
    /// Role of the leg.
    pub role: LegRole,
    /// Payload type of the negotiated audio codec (in both directions).
    pub payload_type: u8,
    /// The negotiated audio codec.
    pub codec: CodecKind,
    /// Payload type of telephone-event (RFC 4733), if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// Packet time the leg asked for (`a=ptime`), in ms. Informational: generated frames follow
    /// the mixer's clock ([`MixerConfig::ptime`]) or the packets they are clocked by.
    pub ptime_ms: u32,
}

/// Mixer settings.
#[derive(Clone, Debug)]
pub struct MixerConfig {
    /// Gain applied to supervisor voices in the agent's mix, dB (0 = unchanged).
    pub coach_gain_db: f32,
    /// Upper bound of the adaptive jitter buffer of each clocked input.
    pub jitter_max: Duration,
    /// The mixer's own clock period, and the length of the frames it generates.
    pub ptime: Duration,
}

impl Default for MixerConfig {
    fn default() -> Self {
        Self {
            coach_gain_db: 0.0,
            jitter_max: Duration::from_millis(60),
            ptime: Duration::from_millis(20),
        }
    }
}

/// Something the owner of the mixer must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MixerEvent {
    /// A supervisor pressed a key (RFC 4733 telephone-event); it was not forwarded.
    Dtmf {
        /// The supervisor's leg.
        leg: LegId,
        /// The digit: `0`-`9`, `*`, `#`, `A`-`D`.
        digit: char,
    },
}

/// Counters of one leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    /// RTP packets received on the leg.
    pub rx_packets: u64,
    /// Received packets that failed RTP validation.
    pub rx_invalid: u64,
    /// Received packets not used: unknown payload type, late or duplicate on a
    /// packet-clocked path, or implausibly long.
    pub rx_discarded: u64,
    /// Payloads the decoder rejected.
    pub decode_errors: u64,
    /// Lost packets concealed on the jitter-buffered path.
    pub concealed: u64,
    /// Packets relayed to this leg (payload untouched).
    pub tx_relayed: u64,
    /// Mixed (generated) packets sent to this leg.
    pub tx_mixed: u64,
    /// Telephone-event packets passed through to this leg while its output was mixed.
    pub tx_dtmf_passed: u64,
    /// Frames the encoder of this leg rejected (not sent).
    pub encode_errors: u64,
    /// Telephone-event digits consumed from this (supervisor) leg.
    pub dtmf_consumed: u64,
}

/// The scalar counters of the whole mixer, see [`CallMixer::counters`] (no allocation, unlike
/// [`CallMixer::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixerCounters {
    /// Packets relayed (all legs).
    pub relayed_packets: u64,
    /// Mixed frames sent (all legs).
    pub mixed_frames: u64,
    /// Supervisor digits consumed.
    pub dtmf_consumed: u64,
    /// Ticks of the mixer's clock.
    pub ticks: u64,
    /// Ticks skipped because `handle_timeout` came too late.
    pub ticks_skipped: u64,
    /// Packets dropped because the transmit queue was full or `poll_transmit`'s buffer too
    /// small.
    pub tx_dropped: u64,
}

/// What [`CallMixer::input_level`] reads for silence, dBFS: about one LSB of 16-bit audio.
pub const LEVEL_FLOOR_DBFS: f32 = -90.0;

/// Counters of the whole mixer and of each leg, see [`CallMixer::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MixerStats {
    /// The mixer-wide counters (also cheaply available from [`CallMixer::counters`]).
    pub counters: MixerCounters,
    /// Per-leg counters, in the order the legs were added.
    pub legs: Vec<(LegId, LegStats)>,
}

/// The longest audio one packet may carry on a packet-clocked path: 120 ms.
const MAX_PACKET_MS: u32 = 120;
/// The highest sample rate of any codec, and so of any mix.
const MAX_RATE: u32 = 48_000;
/// Samples of [`MAX_PACKET_MS`] at 48 kHz, the highest rate: decode buffer size.
const MAX_PCM: usize = (MAX_RATE / 1000 * MAX_PACKET_MS) as usize;
/// Largest encoded payload we produce (Opus' maximum for 120 ms is below this).
const MAX_ENCODED: usize = 4000;
/// Packets the transmit queue holds before the oldest is dropped, once anything is mixed.
const TX_SLOTS: usize = 64;
/// The same while the call is only relayed: a relay sends at most one packet per packet
/// received, and the owner drains the queue after each; the spare slots cover an owner that
/// handles a few packets before draining.
const TX_SLOTS_RELAY: usize = 4;
/// Initial capacity of a transmit slot (grows once for larger relayed datagrams).
const TX_SLOT_BYTES: usize = 1500;
/// Events queued before the oldest is dropped (the owner polls after every call).
const MAX_EVENTS: usize = 32;
/// A supervisor FIFO feeding a packet-clocked mix holds at most this many frames: the two
/// clocks drift, and the excess is dropped rather than becoming delay.
const SIDE_MAX_FRAMES: usize = 3;
/// On a packet-clocked path a sequence gap up to this many packets is passed on as the same
/// gap in the output (the receiver conceals it); a larger jump is a restart, not loss.
const MAX_GAP_PASSED: i32 = 5;
/// Late handle_timeout: beyond this many missed ticks the clock is resynchronised instead
/// of producing a burst.
const MAX_CATCH_UP_TICKS: u32 = 5;

/// The input level meter's window, ms: the level is the peak of the current window and the
/// previous one, i.e. of the last 100–200 ms.
const METER_WINDOW_MS: u32 = 100;

/// Sliding-window sample peak of a leg's decoded input (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
struct PeakMeter {
    /// Peak |sample| of the window being filled and of the one before it.
    cur: u16,
    prev: u16,
    /// Samples in the window being filled.
    filled: u32,
    /// Something was fed since the leg became metered.
    fed: bool,
}

impl PeakMeter {
    /// Take `pcm` (at `rate` Hz): one pass for the block's peak, then window bookkeeping.
    fn feed(&mut self, pcm: &[i16], rate: u32) {
        let peak = pcm.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
        self.cur = self.cur.max(peak);
        self.filled = self.filled.saturating_add(pcm.len() as u32);
        self.fed = true;
        if self.filled >= rate * METER_WINDOW_MS / 1000 {
            self.prev = self.cur;
            self.cur = 0;
            self.filled = 0;
        }
    }

    fn level_dbfs(&self) -> Option<f32> {
        if !self.fed {
            return None;
        }
        let peak = self.cur.max(self.prev);
        if peak == 0 {
            return Some(LEVEL_FLOOR_DBFS);
        }
        Some((20.0 * (f32::from(peak) / 32768.0).log10()).max(LEVEL_FLOOR_DBFS))
    }
}

/// Signed distance from sequence number `b` to `a`, modulo 2^16.
fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// Samples in `d` at `rate` Hz.
fn samples_in(d: Duration, rate: u32) -> usize {
    (u128::from(rate) * d.as_micros() / 1_000_000) as usize
}

/// `s` with `gain` (Q16) applied, saturated to the i32 accumulator's useful range.
fn apply_gain(s: i16, gain_q16: i64) -> i32 {
    ((i64::from(s) * gain_q16) >> 16).clamp(-(1 << 20), 1 << 20) as i32
}

/// A resampling stage that always yields exactly `len * to / from` samples per call, so
/// frames stay aligned whatever the resampler's own latency (its start is zero-padded).
struct Conv {
    from: u32,
    to: u32,
    rs: Option<Resampler>,
    /// Output of the resampler not yet handed out.
    carry: Vec<i16>,
}

impl Conv {
    fn new(from: u32, to: u32) -> Result<Self, MediaError> {
        let (rs, carry) = if from == to {
            // A plain copy: nothing is carried over.
            (None, Vec::new())
        } else {
            (
                Some(Resampler::new(from, to)?),
                Vec::with_capacity(MAX_PCM * 2),
            )
        };
        Ok(Self {
            from,
            to,
            rs,
            carry,
        })
    }

    /// Heap held (the resampler's filter tables, under 1 KiB, are not counted).
    fn heap_bytes(&self) -> usize {
        vec_bytes(&self.carry)
    }

    /// Append `input` converted to `to` Hz onto `out`.
    fn run(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let Some(rs) = self.rs.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        let want = (input.len() as u64 * u64::from(self.to) / u64::from(self.from)) as usize;
        rs.process(input, &mut self.carry);
        let take = want.min(self.carry.len());
        out.extend(self.carry.drain(..take));
        out.resize(out.len() + (want - take), 0);
        // A resampler that ran ahead (it should not) must not turn into growing delay.
        if self.carry.len() > want {
            let excess = self.carry.len() - want;
            self.carry.drain(..excess);
        }
    }
}

/// One input's current tick frame converted to a mix rate.
struct View {
    conv: Conv,
    buf: Vec<i16>,
}

/// How a customer or agent leg's output is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
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
struct LastTx {
    at: Instant,
    generated: bool,
}

/// The jitter-buffered input path of a leg that feeds a clocked mix. Boxed and created on
/// first use: the buffer alone holds about 96 KiB, which a relayed leg never needs.
struct JbPath {
    jb: JitterBuffer,
    /// Decoder of this path (its own state: it sees a different sequence than the
    /// packet-clocked path).
    dec: Decoder,
    /// Decoded output not yet taken into a tick frame (native rate).
    pcm: Vec<i16>,
}

impl JbPath {
    fn new(cfg: &MixerConfig, kind: CodecKind) -> Result<Self, MediaError> {
        let frame_len = samples_in(cfg.ptime, kind.sample_rate());
        Ok(Self {
            dec: Decoder::new(kind)?,
            jb: JitterBuffer::new(jitter_config(cfg, kind)),
            pcm: Vec::with_capacity(frame_len * 4 + MAX_PCM * 2),
        })
    }
}

/// Heap a codec's decoder holds: the concealment history of codec.rs (1920 samples) and the
/// boxed G.722 state. libopus' own state is not counted.
fn decoder_heap(kind: CodecKind) -> usize {
    let g722 = match kind {
        CodecKind::G722 => std::mem::size_of::<crate::codec::g722::G722Decoder>(),
        _ => 0,
    };
    1920 * std::mem::size_of::<i16>() + g722
}

/// Heap a codec's encoder holds: the boxed G.722 state (libopus' own is not counted).
fn encoder_heap(kind: CodecKind) -> usize {
    match kind {
        CodecKind::G722 => std::mem::size_of::<crate::codec::g722::G722Encoder>(),
        _ => 0,
    }
}

/// Bytes of a vector's capacity.
fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

/// Make `v` hold at least `cap` elements without growing later.
fn ensure_capacity<T>(v: &mut Vec<T>, cap: usize) {
    if v.capacity() < cap {
        v.reserve(cap - v.len());
    }
}

struct Leg {
    id: LegId,
    params: LegParams,
    /// Audio sample rate of the codec.
    rate: u32,
    /// RTP clock rate of the codec.
    rtp_clock: u32,

    // ---- input side ----
    // The codec state and buffers below are created by `replan` when the routing first
    // needs them, and kept (see the module documentation).
    /// Decoder of the packet-clocked path (packets in arrival order): while this leg clocks a
    /// mixed output.
    dec_direct: Option<Decoder>,
    /// Jitter-buffered path: while this leg feeds a clocked mix.
    jbp: Option<Box<JbPath>>,
    /// Whether this input feeds a clocked mix (its jitter buffer is fed and drained).
    jb_active: bool,
    /// This tick's frame at the native rate.
    frame: Vec<i16>,
    /// This tick's frame at the other rates that mixes need.
    views: Vec<View>,
    dtmf: DtmfDetector,
    /// Level of the decoded input.
    meter: PeakMeter,
    /// Last (seq) handled on the packet-clocked path.
    last_direct_seq: Option<u16>,
    /// Arrival of the last audio packet (for hold/DTX detection).
    last_rx: Option<Instant>,
    /// Native rate -> the mix rate of the output this leg clocks.
    direct_conv: Option<Conv>,
    /// Supervisor: contributes to the agent's / customer's mix.
    to_agent: bool,
    to_customer: bool,
    /// Supervisor audio waiting for the agent's / customer's packet-clocked mix, at that
    /// mix's rate.
    side_agent: Vec<i16>,
    side_agent_rate: u32,
    side_customer: Vec<i16>,
    side_customer_rate: u32,
    /// Supervisor output: the sum of the agent and the supervisors the agent hears, at this
    /// output's mix rate, waiting for the customer's next packet (or the hold tick). Kept as
    /// a sum so it saturates once, when mixed with the customer.
    others: Vec<i32>,
    others_rate: u32,
    /// Supervisor output: the customer's rate -> this output's mix rate.
    cust_conv: Option<Conv>,

    // ---- output side ----
    route: Route,
    /// Rate of the mix this leg hears.
    mix_rate: u32,
    /// Mix rate -> codec rate.
    out_conv: Option<Conv>,
    /// While this output is mixed.
    encoder: Option<Encoder>,
    rewriter: Option<StreamRewriter>,
    last_tx: Option<LastTx>,
    /// The next generated packet starts a talkspurt.
    force_marker: bool,
    /// Leg whose packets clock/relay this output.
    source: Option<LegId>,
    /// Telephone-event passed through while mixed: input event timestamp -> output one.
    dtmf_map: Option<(u32, u32)>,
    /// Notification tone playing on this output, at its mix rate.
    tone: Option<ToneGen>,
    stats: LegStats,
}

/// Jitter buffer settings of a clocked input.
///
/// A tick at `t` fills the frame `[t, t + ptime)`, so it asks the buffer for every packet whose
/// audio starts before `t + ptime` (`pop(t + ptime)`): a 30 ms packet is then never missing
/// in the middle of a 20 ms frame. That request runs one ptime ahead of the buffer's
/// schedule, so its delay range is shifted by one ptime: the delay the audio actually gets
/// (on top of waiting for the tick) stays within 0..`jitter_max`.
fn jitter_config(cfg: &MixerConfig, kind: CodecKind) -> JitterConfig {
    JitterConfig {
        clock_rate: kind.rtp_clock_rate(),
        min_delay: cfg.ptime,
        max_delay: cfg.jitter_max + cfg.ptime,
        initial_delay: cfg.ptime,
    }
}

impl Leg {
    fn new(id: LegId, params: LegParams) -> Result<Self, MediaError> {
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

    fn is_supervisor(&self) -> bool {
        matches!(self.params.role, LegRole::Supervisor(_))
    }

    /// Heap held by this leg's state (not counting the `Leg` itself).
    fn heap_bytes(&self) -> usize {
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
    fn frame_at(&self, rate: u32) -> Option<&[i16]> {
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
    fn pull_frame(
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

/// A ring of transmit slots: [`TX_SLOTS_RELAY`] while the call is relayed, [`TX_SLOTS`] once
/// anything is mixed (grown by `replan`, never shrunk).
struct TxQueue {
    slots: Vec<(LegId, bool, Vec<u8>)>,
    head: usize,
    len: usize,
    dropped: u64,
}

impl TxQueue {
    fn new() -> Self {
        let mut q = Self {
            slots: Vec::new(),
            head: 0,
            len: 0,
            dropped: 0,
        };
        q.grow(TX_SLOTS_RELAY);
        q
    }

    /// Hold at least `slots` packets; the queued ones stay queued, in order.
    fn grow(&mut self, slots: usize) {
        if self.slots.len() >= slots {
            return;
        }
        // Unwrap the ring so the new slots land after its last packet.
        self.slots.rotate_left(self.head);
        self.head = 0;
        self.slots.reserve_exact(slots - self.slots.len());
        self.slots
            .resize_with(slots, || (0, false, Vec::with_capacity(TX_SLOT_BYTES)));
    }

    fn heap_bytes(&self) -> usize {
        vec_bytes(&self.slots) + self.slots.iter().map(|s| s.2.capacity()).sum::<usize>()
    }

    /// The buffer of the next slot, emptied; the packet is queued by [`commit`](Self::commit).
    /// A full queue drops its oldest packet.
    fn reserve(&mut self, leg: LegId) -> &mut Vec<u8> {
        let cap = self.slots.len();
        if self.len == cap {
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            self.dropped += 1;
        }
        let i = (self.head + self.len) % cap;
        let slot = &mut self.slots[i];
        slot.0 = leg;
        slot.1 = true;
        slot.2.clear();
        &mut slot.2
    }

    fn commit(&mut self) {
        self.len += 1;
    }

    /// Forget the packets queued for `leg`.
    fn cancel(&mut self, leg: LegId) {
        let cap = self.slots.len();
        for k in 0..self.len {
            let slot = &mut self.slots[(self.head + k) % cap];
            if slot.0 == leg {
                slot.1 = false;
            }
        }
    }

    fn pop_into(&mut self, buf: &mut [u8]) -> Option<(LegId, usize)> {
        let cap = self.slots.len();
        while self.len > 0 {
            let (leg, live, data) = &self.slots[self.head];
            let (leg, live) = (*leg, *live);
            let n = data.len();
            let fits = n <= buf.len();
            if live && fits {
                buf[..n].copy_from_slice(data);
            }
            self.head = (self.head + 1) % cap;
            self.len -= 1;
            if live {
                if fits {
                    return Some((leg, n));
                }
                self.dropped += 1;
            }
        }
        None
    }
}

/// Write a fixed RTP header (no CSRC, no extension, no padding) followed by `payload`.
fn write_packet(
    out: &mut Vec<u8>,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
) {
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (pt & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The per-call mixer. See the module documentation.
pub struct CallMixer {
    cfg: MixerConfig,
    /// Coach gain as a Q16 factor.
    gain_q16: i64,
    /// splitmix64 state for SSRCs and initial sequence numbers/timestamps.
    rng: u64,
    legs: Vec<Leg>,
    customer: Option<usize>,
    agent: Option<usize>,
    next_tick: Option<Instant>,
    tx: TxQueue,
    events: VecDeque<MixerEvent>,
    relayed: u64,
    mixed: u64,
    dtmf_consumed: u64,
    ticks: u64,
    ticks_skipped: u64,
    /// A tone finished while producing a frame: the routing is redone once that is over.
    tone_ended: bool,
    // Scratch buffers, reused for every packet and tick.
    s_pcm: Vec<i16>,
    s_rs: Vec<i16>,
    s_acc: Vec<i32>,
    s_mix: Vec<i16>,
    s_out: Vec<i16>,
    s_enc: Vec<u8>,
}

impl CallMixer {
    /// A mixer without legs. `ssrc_seed` seeds the SSRCs and initial sequence numbers and
    /// timestamps of generated streams (RFC 3550 wants them random; the caller supplies the
    /// randomness so this stays deterministic under test).
    pub fn new(cfg: MixerConfig, ssrc_seed: u64) -> Self {
        let gain = 10f64.powf(f64::from(cfg.coach_gain_db) / 20.0);
        let gain_q16 = (gain * 65536.0).round().clamp(0.0, 65536.0 * 64.0) as i64;
        Self {
            cfg,
            gain_q16,
            rng: ssrc_seed,
            legs: Vec::new(),
            customer: None,
            agent: None,
            next_tick: None,
            tx: TxQueue::new(),
            // Only supervisors raise events: sized when the first one joins.
            events: VecDeque::new(),
            relayed: 0,
            mixed: 0,
            dtmf_consumed: 0,
            ticks: 0,
            ticks_skipped: 0,
            tone_ended: false,
            // Sized by `replan` when something is first mixed.
            s_pcm: Vec::new(),
            s_rs: Vec::new(),
            s_acc: Vec::new(),
            s_mix: Vec::new(),
            s_out: Vec::new(),
            s_enc: Vec::new(),
        }
    }

    /// An estimate of the heap memory this mixer holds, bytes: the capacity of every buffer
    /// it owns (legs, jitter buffers, PCM and scratch buffers, transmit queue, events) and
    /// the boxed state of G.711/G.722 codecs. Not counted: libopus' codec state and the
    /// resamplers' filter tables (under 1 KiB each).
    pub fn heap_bytes(&self) -> usize {
        let scratch = vec_bytes(&self.s_pcm)
            + vec_bytes(&self.s_rs)
            + vec_bytes(&self.s_acc)
            + vec_bytes(&self.s_mix)
            + vec_bytes(&self.s_out)
            + vec_bytes(&self.s_enc);
        vec_bytes(&self.legs)
            + self.legs.iter().map(Leg::heap_bytes).sum::<usize>()
            + self.tx.heap_bytes()
            + self.events.capacity() * std::mem::size_of::<MixerEvent>()
            + scratch
    }

    /// Size the scratch buffers and the transmit queue for mixing (once; they are kept).
    ///
    /// A packet-clocked frame is at most [`MAX_PACKET_MS`] of audio (longer packets are
    /// discarded) at a mix rate of at most [`MAX_RATE`]; a clocked frame is one ptime at that
    /// rate. Every scratch buffer holds one such frame at most.
    fn reserve_for_mixing(&mut self) {
        let cap = MAX_PCM.max(samples_in(self.cfg.ptime, MAX_RATE));
        ensure_capacity(&mut self.s_pcm, MAX_PCM);
        ensure_capacity(&mut self.s_rs, cap);
        ensure_capacity(&mut self.s_acc, cap);
        ensure_capacity(&mut self.s_mix, cap);
        ensure_capacity(&mut self.s_out, cap);
        if self.s_enc.len() < MAX_ENCODED {
            self.s_enc.resize(MAX_ENCODED, 0);
        }
        self.tx.grow(TX_SLOTS);
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn find(&self, id: LegId) -> Option<usize> {
        self.legs.iter().position(|l| l.id == id)
    }

    /// Add a leg. Fails if the id is taken or its codec is not available in this build.
    pub fn add_leg(
        &mut self,
        now: Instant,
        id: LegId,
        params: LegParams,
    ) -> Result<(), MediaError> {
        if self.find(id).is_some() {
            return Err(MediaError::Mixer("leg id already in use"));
        }
        let leg = Leg::new(id, params)?;
        // Legs come one at a time and are few: no spare room.
        self.legs.reserve_exact(1);
        self.legs.push(leg);
        if let Err(e) = self.replan(now) {
            self.legs.pop();
            // Restore the plan without the leg; it worked before.
            let _ = self.replan(now);
            return Err(e);
        }
        Ok(())
    }

    /// Change a leg's parameters: a re-INVITE changing its codec, or a role change (barge
    /// promotion: the agent leg was removed and a supervisor becomes the agent). The leg's
    /// output stream stays one stream (same SSRC, continuous sequence numbers).
    pub fn update_leg(
        &mut self,
        now: Instant,
        id: LegId,
        params: LegParams,
    ) -> Result<(), MediaError> {
        let i = self.find(id).ok_or(MediaError::Mixer("no such leg"))?;
        let leg = &mut self.legs[i];
        if leg.params.codec != params.codec {
            let kind = params.codec;
            // Checked first so a failure leaves the leg as it was.
            if !kind.is_available() {
                return Err(MediaError::CodecUnavailable(kind));
            }
            // The codec state of the new codec is made by `replan`, as far as the routing
            // needs it.
            leg.dec_direct = None;
            leg.jbp = None;
            leg.encoder = None;
            leg.rate = kind.sample_rate();
            leg.rtp_clock = kind.rtp_clock_rate();
            leg.frame.clear();
            leg.views.clear();
            leg.direct_conv = None;
            leg.out_conv = None;
            leg.last_direct_seq = None;
            leg.side_agent.clear();
            leg.side_customer.clear();
            leg.side_agent_rate = 0;
            leg.side_customer_rate = 0;
            leg.others.clear();
            leg.others_rate = 0;
            leg.cust_conv = None;
            leg.meter = PeakMeter::default();
        }
        if leg.params.role != params.role {
            leg.dtmf = DtmfDetector::new();
            leg.last_direct_seq = None;
        }
        leg.params = params;
        self.replan(now)
    }

    /// Set a supervisor's session mode; effective from the next packet or tick. Ignored for
    /// a leg that is not a supervisor.
    pub fn set_mode(&mut self, now: Instant, id: LegId, mode: SessionMode) {
        let Some(i) = self.find(id) else { return };
        let leg = &mut self.legs[i];
        if !leg.is_supervisor() {
            tracing::debug!(leg = id, "set_mode on a leg that is not a supervisor");
            return;
        }
        leg.params.role = LegRole::Supervisor(mode);
        if let Err(e) = self.replan(now) {
            tracing::warn!(leg = id, error = %e, "mixer: replanning after a mode change failed");
        }
    }

    /// Remove a leg; packets still queued for it are discarded.
    pub fn remove_leg(&mut self, now: Instant, id: LegId) {
        let Some(i) = self.find(id) else { return };
        self.legs.remove(i);
        self.tx.cancel(id);
        if let Err(e) = self.replan(now) {
            tracing::warn!(leg = id, error = %e, "mixer: replanning after a leg removal failed");
        }
    }

    /// Recompute who hears whom and make sure every buffer and resampler the plan needs
    /// exists. Runs on configuration changes only.
    fn replan(&mut self, now: Instant) -> Result<(), MediaError> {
        let ptime = self.cfg.ptime;
        self.customer = self
            .legs
            .iter()
            .position(|l| l.params.role == LegRole::Customer);
        self.agent = self
            .legs
            .iter()
            .position(|l| l.params.role == LegRole::Agent);
        let any_sup = self.legs.iter().any(Leg::is_supervisor);
        let (cust, agent) = (self.customer, self.agent);
        let rate_of = |i: Option<usize>, legs: &[Leg]| i.map_or(0, |i| legs[i].rate);

        for l in &mut self.legs {
            let (a, c) = match l.params.role {
                LegRole::Supervisor(SessionMode::Coach) => (true, false),
                LegRole::Supervisor(SessionMode::Barge) => (true, true),
                _ => (false, false),
            };
            l.to_agent = a;
            l.to_customer = c;
        }
        let legs = &self.legs;
        let sup_max = |pred: &dyn Fn(&Leg) -> bool| {
            legs.iter()
                .filter(|l| pred(l))
                .map(|l| l.rate)
                .max()
                .unwrap_or(0)
        };
        let agent_contrib = legs.iter().any(|l| l.to_agent);
        let customer_contrib = legs.iter().any(|l| l.to_customer);
        let rate_a = rate_of(agent, legs)
            .max(rate_of(cust, legs))
            .max(sup_max(&|l| l.to_agent));
        let rate_c = rate_of(cust, legs)
            .max(rate_of(agent, legs))
            .max(sup_max(&|l| l.to_customer));
        let same_codec = match (cust, agent) {
            (Some(c), Some(a)) => legs[c].params.codec == legs[a].params.codec,
            _ => true,
        };
        let cust_id = cust.map(|i| legs[i].id);
        let agent_id = agent.map(|i| legs[i].id);
        let base_rate = rate_of(cust, legs).max(rate_of(agent, legs));
        let cust_rate = rate_of(cust, legs);

        // Routes, mix rates and sources of every output.
        let mut sup_rates: Vec<(LegId, u32)> = Vec::new();
        for idx in 0..self.legs.len() {
            let (route, mix_rate, source) = {
                let l = &self.legs[idx];
                // A tone can only be added to a mix.
                let tone_on = l.tone.is_some();
                if Some(idx) == agent {
                    let r = if !agent_contrib && same_codec && !tone_on {
                        Route::Relay
                    } else {
                        Route::Mixed
                    };
                    (r, rate_a, cust_id)
                } else if Some(idx) == cust {
                    let r = if !customer_contrib && same_codec && !tone_on {
                        Route::Relay
                    } else {
                        Route::Mixed
                    };
                    (r, rate_c, agent_id)
                } else if l.is_supervisor() {
                    let others = self
                        .legs
                        .iter()
                        .filter(|o| o.id != l.id && o.to_agent)
                        .map(|o| o.rate)
                        .max()
                        .unwrap_or(0);
                    let r = l.rate.max(base_rate).max(others);
                    sup_rates.push((l.id, r));
                    (Route::Clocked, r, None)
                } else {
                    (Route::Idle, l.rate, None)
                }
            };
            let l = &mut self.legs[idx];
            if route == Route::Mixed || route == Route::Clocked {
                if l.out_conv.as_ref().map(|c| (c.from, c.to)) != Some((mix_rate, l.rate)) {
                    l.out_conv = Some(Conv::new(mix_rate, l.rate)?);
                }
                if l.encoder.is_none() {
                    l.encoder = Some(Encoder::new(l.params.codec)?);
                }
            } else {
                l.out_conv = None;
            }
            // A supervisor's output is clocked by the customer's packets: their audio is
            // converted to its mix rate on arrival.
            if route == Route::Clocked && cust.is_some() {
                if l.cust_conv.as_ref().map(|c| (c.from, c.to)) != Some((cust_rate, mix_rate)) {
                    l.cust_conv = Some(Conv::new(cust_rate, mix_rate)?);
                }
            } else {
                l.cust_conv = None;
            }
            if l.source != source {
                if let Some(rw) = l.rewriter.as_mut() {
                    rw.note_source_switch();
                }
                l.source = source;
                l.dtmf_map = None;
            }
            if l.route == Route::Relay && route != Route::Relay {
                // First generated packet after relay starts a talkspurt.
                l.force_marker = true;
            }
            l.route = route;
            l.mix_rate = mix_rate;
            if route == Route::Idle {
                // Nothing would ever play it, and it would keep the clock running.
                l.tone = None;
            }
            if let Some(t) = l.tone.as_mut() {
                t.set_rate(mix_rate);
            }
        }

        // Direct (packet-clocked) converters: the source's rate -> the output's mix rate.
        // The customer's packets are decoded on arrival for the supervisors' mixes too.
        for (src, dst, clocks_sups) in [(cust, agent, any_sup), (agent, cust, false)] {
            let Some(s) = src else { continue };
            let want = match dst {
                Some(d) if self.legs[d].route == Route::Mixed => Some(self.legs[d].mix_rate),
                _ => None,
            };
            let l = &mut self.legs[s];
            if clocks_sups && l.dec_direct.is_none() {
                l.dec_direct = Some(Decoder::new(l.params.codec)?);
            }
            if want.is_none() && !clocks_sups {
                // Not mixing: packets of this source go by relay (or nowhere), so the last
                // sequence number seen by the packet-clocked path goes stale; kept, the next
                // mixed period would take the relayed packets for lost ones.
                l.last_direct_seq = None;
            }
            match want {
                Some(to) => {
                    if l.direct_conv.as_ref().map(|c| (c.from, c.to)) != Some((l.rate, to)) {
                        l.direct_conv = Some(Conv::new(l.rate, to)?);
                    }
                    if l.dec_direct.is_none() {
                        l.dec_direct = Some(Decoder::new(l.params.codec)?);
                    }
                }
                None => l.direct_conv = None,
            }
        }

        // Jitter buffers, tick views and supervisor FIFOs.
        let frame_at = |rate: u32| samples_in(ptime, rate);
        for idx in 0..self.legs.len() {
            let l = &mut self.legs[idx];
            let is_party = Some(idx) == cust || Some(idx) == agent;
            let jb_active = l.is_supervisor() || (is_party && any_sup);
            if !jb_active && l.jb_active {
                if let Some(p) = l.jbp.as_deref_mut() {
                    p.jb.reset();
                    p.pcm.clear();
                }
            }
            if jb_active && l.jbp.is_none() {
                l.jbp = Some(Box::new(JbPath::new(&self.cfg, l.params.codec)?));
            }
            l.jb_active = jb_active;

            let mut needed: Vec<u32> = Vec::new();
            // The customer reaches the supervisors' mixes by the packet-clocked path: its tick
            // frame only feeds its meter, no views.
            if Some(idx) == agent {
                needed.extend(sup_rates.iter().map(|&(_, r)| r));
            } else if l.is_supervisor() {
                if l.to_agent {
                    needed.extend(
                        sup_rates
                            .iter()
                            .filter(|(id, _)| *id != l.id)
                            .map(|&(_, r)| r),
                    );
                }
                if l.to_agent && agent.is_some() {
                    needed.push(rate_a);
                }
                if l.to_customer && cust.is_some() {
                    needed.push(rate_c);
                }
            }
            needed.retain(|&r| r != l.rate);
            needed.sort_unstable();
            needed.dedup();
            l.views.retain(|v| needed.contains(&v.conv.to));
            for &r in &needed {
                if !l.views.iter().any(|v| v.conv.to == r) {
                    l.views.push(View {
                        conv: Conv::new(l.rate, r)?,
                        buf: Vec::with_capacity(frame_at(r)),
                    });
                }
            }

            let side_a = if l.to_agent && agent.is_some() {
                rate_a
            } else {
                0
            };
            let side_c = if l.to_customer && cust.is_some() {
                rate_c
            } else {
                0
            };
            let Leg {
                side_agent,
                side_agent_rate,
                side_customer,
                side_customer_rate,
                views,
                frame,
                rate,
                ..
            } = l;
            for (want, have, side) in [
                (side_a, side_agent_rate, side_agent),
                (side_c, side_customer_rate, side_customer),
            ] {
                if want == *have {
                    continue;
                }
                side.clear();
                side.reserve(frame_at(want) * (SIDE_MAX_FRAMES + 1));
                *have = want;
                if want == 0 {
                    continue;
                }
                // Starts being heard: prime with the latest tick frame, so the very next
                // packet-clocked frame already carries this voice (a switch takes effect
                // within one packet, not two).
                if want == *rate {
                    side.extend_from_slice(frame);
                } else if let Some(v) = views.iter_mut().find(|v| v.conv.to == want) {
                    v.conv.run(frame, side);
                }
            }
            // A supervisor output's FIFO of the rest of its mix.
            let others_want = if l.route == Route::Clocked {
                l.mix_rate
            } else {
                0
            };
            if l.others_rate != others_want {
                l.others.clear();
                l.others_rate = others_want;
                if others_want != 0 {
                    // A tick appends one frame before trimming to SIDE_MAX_FRAMES.
                    ensure_capacity(&mut l.others, frame_at(others_want) * (SIDE_MAX_FRAMES + 1));
                }
            }
            if l.jb_active {
                ensure_capacity(&mut l.frame, frame_at(l.rate));
            }
            // Back to plain relay: nothing decodes this leg any more, and a frozen reading
            // would look live.
            if !l.jb_active && l.direct_conv.is_none() {
                l.meter = PeakMeter::default();
            }
        }

        if any_sup && self.events.capacity() < MAX_EVENTS {
            self.events.reserve(MAX_EVENTS - self.events.len());
        }
        if self
            .legs
            .iter()
            .any(|l| matches!(l.route, Route::Mixed | Route::Clocked))
        {
            self.reserve_for_mixing();
        }

        // A tone needs the clock too: it must be heard when nobody sends.
        let clocked = any_sup || self.legs.iter().any(|l| l.tone.is_some());
        self.next_tick = match (clocked, self.next_tick) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(now + ptime),
        };
        Ok(())
    }

    /// One RTP packet received on leg `from` (the whole datagram). RTCP, invalid packets and
    /// packets of unknown legs are ignored (and counted where a leg is known).
    pub fn handle_rtp(&mut self, now: Instant, from: LegId, packet: &[u8]) {
        let Some(i) = self.find(from) else { return };
        if is_rtcp(packet) {
            return;
        }
        let h = match RtpHeader::parse(packet) {
            Ok(h) => h,
            Err(_) => {
                self.legs[i].stats.rx_invalid += 1;
                return;
            }
        };
        let leg = &mut self.legs[i];
        leg.stats.rx_packets += 1;
        let payload = h.payload(packet);
        let is_audio = h.payload_type == leg.params.payload_type;
        let is_dtmf = Some(h.payload_type) == leg.params.dtmf_payload_type;

        if leg.is_supervisor() {
            if is_dtmf {
                // Consumed: a supervisor's digits control the session and reach nobody.
                if let Some(digit) = leg.dtmf.on_packet(h.timestamp, payload) {
                    leg.stats.dtmf_consumed += 1;
                    self.dtmf_consumed += 1;
                    if self.events.len() >= MAX_EVENTS {
                        self.events.pop_front();
                    }
                    self.events.push_back(MixerEvent::Dtmf { leg: from, digit });
                }
            } else if is_audio {
                if let Some(p) = leg.jbp.as_deref_mut() {
                    p.jb.push(now, h.seq, h.timestamp, h.ssrc, h.marker, payload);
                }
                leg.last_rx = Some(now);
            } else {
                leg.stats.rx_discarded += 1;
            }
            return;
        }

        let is_customer = Some(i) == self.customer;
        let dst = if is_customer {
            self.agent
        } else if Some(i) == self.agent {
            self.customer
        } else {
            leg.stats.rx_discarded += 1;
            return;
        };
        if is_audio {
            if let (true, Some(p)) = (leg.jb_active, leg.jbp.as_deref_mut()) {
                p.jb.push(now, h.seq, h.timestamp, h.ssrc, h.marker, payload);
            }
            leg.last_rx = Some(now);
        }
        // The customer's audio clocks every supervisor's output.
        let to_sups =
            is_audio && is_customer && self.legs.iter().any(|l| l.route == Route::Clocked);
        let dst = dst.map(|d| (d, self.legs[d].route));
        match dst {
            Some((d, Route::Relay)) => self.relay(now, i, d, &h, packet, is_audio, is_dtmf),
            Some((d, Route::Mixed)) if is_dtmf => self.pass_dtmf(now, d, &h, packet),
            Some((_, Route::Mixed)) if is_audio => {}
            Some(_) if !to_sups => self.legs[i].stats.rx_discarded += 1,
            _ => {}
        }
        let to_dst = match dst {
            Some((d, Route::Mixed)) if is_audio => Some(d),
            _ => None,
        };
        if to_dst.is_some() || to_sups {
            // Decoded once, for the opposite party's mix and the supervisors' alike.
            if let Some(missing) = self.decode_direct(i, &h, packet) {
                if let Some(d) = to_dst {
                    self.direct_mix(now, i, d, missing);
                }
                if to_sups {
                    self.supervisor_mix(now, missing);
                }
            }
        }
        self.finish_tones(now);
    }

    /// Relay a packet of leg `src` to leg `dst`: header rewritten, payload untouched.
    #[allow(clippy::too_many_arguments)]
    fn relay(
        &mut self,
        now: Instant,
        src: usize,
        dst: usize,
        h: &RtpHeader,
        packet: &[u8],
        is_audio: bool,
        is_dtmf: bool,
    ) {
        let out_pt = if is_audio {
            Some(self.legs[dst].params.payload_type)
        } else if is_dtmf {
            match self.legs[dst].params.dtmf_payload_type {
                Some(pt) => Some(pt),
                // The other side did not negotiate telephone-event: nothing to send it as.
                None => {
                    self.legs[src].stats.rx_discarded += 1;
                    return;
                }
            }
        } else {
            None
        };
        let d = &mut self.legs[dst];
        let rw = d
            .rewriter
            .get_or_insert_with(|| StreamRewriter::new(h.ssrc, h.seq, h.timestamp));
        let buf = self.tx.reserve(d.id);
        buf.extend_from_slice(packet);
        if let (Some(pt), Some(b1)) = (out_pt, buf.get_mut(1)) {
            *b1 = (*b1 & 0x80) | (pt & 0x7F);
        }
        match rw.rewrite_in_place(buf, d.rtp_clock) {
            Ok(Rewrite::Forward { .. }) => {
                self.tx.commit();
                d.stats.tx_relayed += 1;
                d.last_tx = Some(LastTx {
                    at: now,
                    generated: false,
                });
                d.force_marker = false;
                self.relayed += 1;
            }
            Ok(Rewrite::Drop) | Err(_) => {
                self.legs[src].stats.rx_discarded += 1;
            }
        }
    }

    /// A telephone-event packet of the source of `dst` while `dst`'s output is mixed: passed
    /// on as it is (payload untouched), numbered within the generated stream. All packets of
    /// one event keep one output timestamp (RFC 4733 §2.5.1.2).
    fn pass_dtmf(&mut self, now: Instant, dst: usize, h: &RtpHeader, packet: &[u8]) {
        let seed = self.next_random();
        let d = &mut self.legs[dst];
        let Some(pt) = d.params.dtmf_payload_type else {
            return;
        };
        let rw = d.rewriter.get_or_insert_with(|| new_rewriter(seed));
        // A zero-length step: the event occupies no audio time of its own; the next audio
        // frame continues at the timestamp the event got.
        let (seq, next_ts) = rw.next_generated(0);
        let ts = match d.dtmf_map {
            Some((in_ts, out_ts)) if in_ts == h.timestamp => out_ts,
            _ => {
                d.dtmf_map = Some((h.timestamp, next_ts));
                next_ts
            }
        };
        let ssrc = rw.ssrc();
        let buf = self.tx.reserve(d.id);
        write_packet(buf, h.marker, pt, seq, ts, ssrc, h.payload(packet));
        self.tx.commit();
        d.stats.tx_dtmf_passed += 1;
        d.last_tx = Some(LastTx {
            at: now,
            generated: true,
        });
    }

    /// Decode an audio packet of `src` on the packet-clocked path into `s_pcm` (native rate).
    /// Returns the number of packets of `src` lost just before it (passed on as a gap), or
    /// `None` if it is not to be mixed (late, duplicate, undecodable, implausibly long).
    fn decode_direct(&mut self, src: usize, h: &RtpHeader, packet: &[u8]) -> Option<usize> {
        let max_samples = |rate: u32| (rate * MAX_PACKET_MS / 1000) as usize;
        let s = &mut self.legs[src];
        let mut missing = 0usize;
        if let Some(last) = s.last_direct_seq {
            let d = seq_diff(h.seq, last);
            if d <= 0 && d > -100 {
                // Late or duplicate: its place in the output has passed (no buffering here).
                s.stats.rx_discarded += 1;
                return None;
            }
            if (2..=MAX_GAP_PASSED + 1).contains(&d) {
                missing = (d - 1) as usize;
            }
        }
        let Some(dec) = s.dec_direct.as_mut() else {
            // Not reached: `replan` gives the source of every mixed output its decoder.
            s.stats.rx_discarded += 1;
            return None;
        };
        self.s_pcm.clear();
        let bound = dec.max_samples(h.payload(packet)).min(MAX_PCM);
        self.s_pcm.resize(bound, 0);
        let n = match dec.decode(h.payload(packet), &mut self.s_pcm) {
            Ok(n) => n,
            Err(_) => {
                s.stats.decode_errors += 1;
                return None;
            }
        };
        if n == 0 || n > max_samples(s.rate) {
            // Longer than any sane packet time: not sent on (it would stall the mix).
            s.stats.rx_discarded += 1;
            return None;
        }
        s.last_direct_seq = Some(h.seq);
        self.s_pcm.truncate(n);
        if !s.jb_active {
            // Metered here only without a jitter buffer: with one, its tick frames feed the
            // meter (the same audio; fed twice it would fill the window twice as fast).
            s.meter.feed(&self.s_pcm, s.rate);
        }
        Some(missing)
    }

    /// Packet-clocked mix: the audio packet of `src` decoded into `s_pcm` makes one frame for
    /// `dst`; `missing` packets of `src` were lost just before it.
    fn direct_mix(&mut self, now: Instant, src: usize, dst: usize, missing: usize) {
        let s = &mut self.legs[src];
        self.s_rs.clear();
        match s.direct_conv.as_mut() {
            Some(c) => c.run(&self.s_pcm, &mut self.s_rs),
            None => self.s_rs.extend_from_slice(&self.s_pcm),
        }
        let len = self.s_rs.len();
        let to_agent = Some(dst) == self.agent;

        // Lost packets of the source: pass the gap on (sequence and timestamp), and let the
        // supervisor audio of that span go.
        if missing > 0 {
            let d = &mut self.legs[dst];
            if let Some(rw) = d.rewriter.as_mut() {
                let step = (len as u64 * u64::from(d.rtp_clock) / u64::from(d.mix_rate)) as u32;
                for _ in 0..missing {
                    rw.next_generated(step);
                }
            }
            // The tone keeps time with the stream: the lost span's part of it is gone.
            if let Some(t) = d.tone.as_mut() {
                t.skip(len * missing);
            }
            for l in &mut self.legs {
                let side = if to_agent {
                    &mut l.side_agent
                } else {
                    &mut l.side_customer
                };
                let k = (len * missing).min(side.len());
                side.drain(..k);
            }
        }

        self.s_acc.clear();
        self.s_acc.extend(self.s_rs.iter().map(|&x| i32::from(x)));
        self.add_sides(to_agent, len);
        self.emit(now, dst);
    }

    /// The customer's audio packet decoded into `s_pcm` makes one frame for every supervisor:
    /// the customer as received, plus the same span of the supervisor's FIFO (agent and
    /// the supervisors the agent hears); `missing` customer packets were lost just before it.
    fn supervisor_mix(&mut self, now: Instant, missing: usize) {
        for s in 0..self.legs.len() {
            let l = &mut self.legs[s];
            if l.route != Route::Clocked {
                continue;
            }
            let Some(conv) = l.cust_conv.as_mut() else {
                // Not reached: `replan` gives every supervisor output a converter while
                // there is a customer.
                continue;
            };
            self.s_rs.clear();
            conv.run(&self.s_pcm, &mut self.s_rs);
            let len = self.s_rs.len();
            if missing > 0 {
                // As for the agent's mix: the gap is passed on and the rest of the mix for
                // that span goes with it.
                if let Some(rw) = l.rewriter.as_mut() {
                    let step = (len as u64 * u64::from(l.rtp_clock) / u64::from(l.mix_rate)) as u32;
                    for _ in 0..missing {
                        rw.next_generated(step);
                    }
                }
                if let Some(t) = l.tone.as_mut() {
                    t.skip(len * missing);
                }
                let k = (len * missing).min(l.others.len());
                l.others.drain(..k);
            }
            self.s_acc.clear();
            self.s_acc.extend(self.s_rs.iter().map(|&x| i32::from(x)));
            let k = len.min(l.others.len());
            for (a, &x) in self.s_acc.iter_mut().zip(&l.others[..k]) {
                *a += x;
            }
            l.others.drain(..k);
            self.emit(now, s);
        }
    }

    /// Add `len` samples of every contributing supervisor's FIFO (agent's or customer's mix)
    /// into the accumulator.
    fn add_sides(&mut self, to_agent: bool, len: usize) {
        let gain = if to_agent { self.gain_q16 } else { 1 << 16 };
        let acc = &mut self.s_acc;
        for l in &mut self.legs {
            let (on, side) = if to_agent {
                (l.to_agent, &mut l.side_agent)
            } else {
                (l.to_customer, &mut l.side_customer)
            };
            if !on {
                continue;
            }
            let k = len.min(side.len());
            if gain == 1 << 16 {
                for (a, &x) in acc.iter_mut().zip(side.iter().take(k)) {
                    *a += i32::from(x);
                }
            } else {
                for (a, &x) in acc.iter_mut().zip(side.iter().take(k)) {
                    *a += apply_gain(x, gain);
                }
            }
            side.drain(..k);
        }
    }

    /// Encode the accumulator (at `dst`'s mix rate) and queue it as the next generated packet
    /// of `dst`.
    fn emit(&mut self, now: Instant, dst: usize) {
        let seed = self.next_random();
        let silence_gap = self.cfg.ptime * 3;
        if let Some(t) = self.legs[dst].tone.as_mut() {
            t.add_to(&mut self.s_acc);
            if t.done() {
                self.legs[dst].tone = None;
                self.tone_ended = true;
            }
        }
        self.s_mix.clear();
        self.s_mix.extend(
            self.s_acc
                .iter()
                .map(|&x| x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16),
        );
        let d = &mut self.legs[dst];
        self.s_out.clear();
        match d.out_conv.as_mut() {
            Some(c) => c.run(&self.s_mix, &mut self.s_out),
            None => self.s_out.extend_from_slice(&self.s_mix),
        }
        let mut marker = d.force_marker
            || match d.last_tx {
                None => true,
                Some(l) => !l.generated || now.saturating_duration_since(l.at) > silence_gap,
            };
        // One packet per frame the codec can encode: a span Opus has no frame size for (a
        // 30 ms PCMU packet clocking an Opus leg) goes out as several packets.
        let total = self.s_out.len();
        let mut off = 0;
        while off < total {
            let len = encodable_len(d.params.codec, total - off);
            if len == 0 {
                // An Opus remainder below 2.5 ms (odd-sized input): dropped.
                break;
            }
            let pcm = self.s_out.get(off..off + len).unwrap_or(&[]);
            off += len;
            let encoded = match d.encoder.as_mut() {
                Some(enc) => enc.encode(pcm, &mut self.s_enc),
                // Not reached: `replan` gives every mixed output its encoder.
                None => Err(MediaError::Mixer("no encoder")),
            };
            let n = match encoded {
                Ok(n) => n,
                Err(_) => {
                    d.stats.encode_errors += 1;
                    return;
                }
            };
            let step = (len as u64 * u64::from(d.rtp_clock) / u64::from(d.rate)) as u32;
            let rw = d.rewriter.get_or_insert_with(|| new_rewriter(seed));
            let (seq, ts) = rw.next_generated(step);
            let ssrc = rw.ssrc();
            let buf = self.tx.reserve(d.id);
            write_packet(
                buf,
                marker,
                d.params.payload_type,
                seq,
                ts,
                ssrc,
                self.s_enc.get(..n).unwrap_or(&[]),
            );
            self.tx.commit();
            marker = false;
            d.force_marker = false;
            d.last_tx = Some(LastTx {
                at: now,
                generated: true,
            });
            d.stats.tx_mixed += 1;
            self.mixed += 1;
        }
    }

    /// Advance the mixer's clock to `now`: one mixed frame per elapsed ptime.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ptime = self.cfg.ptime;
        while let Some(t) = self.next_tick {
            if t > now {
                break;
            }
            let late = now.saturating_duration_since(t);
            let t = if late > ptime * MAX_CATCH_UP_TICKS {
                // Called far too late: skip the lost ticks rather than send a burst.
                self.ticks_skipped += (late.as_micros() / ptime.as_micros().max(1)) as u64;
                for l in &mut self.legs {
                    l.force_marker = true;
                }
                now
            } else {
                t
            };
            self.tick(t);
            self.next_tick = Some(t + ptime);
        }
        self.finish_tones(now);
    }

    /// Back to the routing without the tones that ended while producing frames (a relay
    /// again, the clock stopped if nothing else needs it).
    fn finish_tones(&mut self, now: Instant) {
        if !std::mem::take(&mut self.tone_ended) {
            return;
        }
        if let Err(e) = self.replan(now) {
            tracing::warn!(error = %e, "mixer: replanning after a tone failed");
        }
    }

    /// Play `tone` to `leg` from now on: mixed into what the leg receives (never into what
    /// anybody else receives) for [`Tone::total`], then its output is as before. A relayed
    /// output is mixed meanwhile (see the module documentation). A tone still playing on the
    /// leg is replaced. Ignored for an unknown leg or one that receives nothing (an extra
    /// customer or agent leg).
    pub fn play_tone(&mut self, now: Instant, leg: LegId, tone: Tone) {
        let Some(i) = self.find(leg) else { return };
        let l = &mut self.legs[i];
        if l.route == Route::Idle {
            tracing::debug!(leg, "play_tone on a leg that receives nothing");
            return;
        }
        let g = ToneGen::new(tone, l.mix_rate);
        if g.done() {
            // Zero length: nothing to play; a tone playing is stopped.
            l.tone = None;
        } else {
            l.tone = Some(g);
        }
        if let Err(e) = self.replan(now) {
            tracing::warn!(leg, error = %e, "mixer: replanning for a tone failed");
        }
    }

    /// Whether a tone is playing on `leg`'s output.
    pub fn tone_playing(&self, leg: LegId) -> bool {
        self.find(leg).is_some_and(|i| self.legs[i].tone.is_some())
    }

    /// One tick of the mixer's clock at `t`.
    fn tick(&mut self, t: Instant) {
        self.ticks += 1;
        let ptime = self.cfg.ptime;
        // 1. One frame of every clocked input, at its own rate and at the mix rates.
        for l in &mut self.legs {
            if !l.jb_active {
                continue;
            }
            let fl = samples_in(ptime, l.rate);
            // A packet up to the jitter buffer's ceiling late still counts as talking.
            l.pull_frame(t, ptime, fl, self.cfg.jitter_max + ptime);
            let Leg { views, frame, .. } = l;
            for v in views.iter_mut() {
                v.buf.clear();
                v.conv.run(frame, &mut v.buf);
            }
            // 2. Supervisor audio for the packet-clocked mixes.
            for (on, rate, side) in [
                (l.to_agent, l.side_agent_rate, &mut l.side_agent),
                (l.to_customer, l.side_customer_rate, &mut l.side_customer),
            ] {
                if !on || rate == 0 {
                    continue;
                }
                let src: &[i16] = if rate == l.rate {
                    &l.frame
                } else {
                    match l.views.iter().find(|v| v.conv.to == rate) {
                        Some(v) => &v.buf,
                        None => continue,
                    }
                };
                side.extend_from_slice(src);
                let max = samples_in(ptime, rate) * SIDE_MAX_FRAMES;
                if side.len() > max {
                    let excess = side.len() - max;
                    side.drain(..excess);
                }
            }
        }

        // Three packet times (the jitter buffer's 60 ms ceiling at 20 ms): a customer packet that
        // is merely late must not get a generated frame in front of it (that would add 20 ms to
        // the agent's delay each time); a held or silent customer is noticed within 60 ms.
        let hold_after = ptime * 3;
        let idle = |legs: &[Leg], src: Option<usize>| match src.and_then(|s| legs[s].last_rx) {
            None => true,
            Some(at) => t.saturating_duration_since(at) > hold_after,
        };

        // 3. Every supervisor's mix but the customer (who clocks it): agent + the other
        //    supervisors heard by the agent, queued for the customer's next packet; sent on
        //    our clock while the customer is silent.
        let customer_idle = idle(&self.legs, self.customer);
        for s in 0..self.legs.len() {
            if self.legs[s].route != Route::Clocked {
                continue;
            }
            let rate = self.legs[s].mix_rate;
            let fl = samples_in(ptime, rate);
            self.s_acc.clear();
            self.s_acc.resize(fl, 0);
            for (i, l) in self.legs.iter().enumerate() {
                let heard = Some(i) == self.agent || l.to_agent;
                if i == s || !heard || !l.jb_active {
                    continue;
                }
                if let Some(f) = l.frame_at(rate) {
                    for (a, &x) in self.s_acc.iter_mut().zip(f) {
                        *a += i32::from(x);
                    }
                }
            }
            let others = &mut self.legs[s].others;
            others.extend_from_slice(&self.s_acc);
            let max = fl * SIDE_MAX_FRAMES;
            if others.len() > max {
                // The customer's clock is slower than ours: the excess goes rather than
                // becoming delay (as for the agent's mix).
                let excess = others.len() - max;
                others.drain(..excess);
            }
            if !customer_idle {
                continue;
            }
            let k = fl.min(others.len());
            for (a, x) in self.s_acc.iter_mut().zip(others.drain(..k)) {
                *a = x;
            }
            self.s_acc[k..].fill(0);
            self.emit(t, s);
        }

        // 4. Agent / customer outputs whose clocking party is silent: the supervisors they
        //    hear and their tone are produced on our clock, so a coach or a tone is always
        //    heard.
        for (dst, src, to_agent) in [
            (self.agent, self.customer, true),
            (self.customer, self.agent, false),
        ] {
            let Some(d) = dst else { continue };
            if self.legs[d].route != Route::Mixed {
                continue;
            }
            let contributors =
                self.legs
                    .iter()
                    .any(|l| if to_agent { l.to_agent } else { l.to_customer });
            if !contributors && self.legs[d].tone.is_none() {
                continue;
            }
            if !idle(&self.legs, src) {
                continue;
            }
            let fl = samples_in(ptime, self.legs[d].mix_rate);
            self.s_acc.clear();
            self.s_acc.resize(fl, 0);
            self.add_sides(to_agent, fl);
            self.emit(t, d);
        }
    }

    /// The next packet to send: copied into `buf`, returns the leg to send it on and its
    /// length. A packet larger than `buf` is dropped (counted in [`MixerCounters::tx_dropped`]).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(LegId, usize)> {
        self.tx.pop_into(buf)
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<MixerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next (`None`: nothing is
    /// clocked, i.e. no supervisor and no tone playing).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    /// The mixer-wide counters, without the per-leg list: cheap enough to read per packet.
    pub fn counters(&self) -> MixerCounters {
        MixerCounters {
            relayed_packets: self.relayed,
            mixed_frames: self.mixed,
            dtmf_consumed: self.dtmf_consumed,
            ticks: self.ticks,
            ticks_skipped: self.ticks_skipped,
            tx_dropped: self.tx.dropped,
        }
    }

    /// Level of what `leg` sends, dBFS (sample peak over the last 100–200 ms, at least
    /// [`LEVEL_FLOOR_DBFS`]); `None` for an unknown leg or one whose packets are only relayed.
    /// See the module documentation for where it is measured.
    pub fn input_level(&self, leg: LegId) -> Option<f32> {
        let i = self.find(leg)?;
        self.legs[i].meter.level_dbfs()
    }

    /// Counters (allocates the per-leg list; see [`counters`](Self::counters)).
    pub fn stats(&self) -> MixerStats {
        MixerStats {
            counters: self.counters(),
            legs: self.legs.iter().map(|l| (l.id, l.stats)).collect(),
        }
    }

    /// The SSRC of what is sent to `leg`, once something was.
    pub fn output_ssrc(&self, leg: LegId) -> Option<u32> {
        let i = self.find(leg)?;
        self.legs[i].rewriter.as_ref().map(StreamRewriter::ssrc)
    }
}

/// The longest prefix of `n` samples (at the codec's rate) that `kind` encodes as one frame.
/// Opus takes 2.5, 5, 10, 20, 40 or 60 ms only (RFC 6716 §2.1.4); the others take any length.
fn encodable_len(kind: CodecKind, n: usize) -> usize {
    match kind {
        CodecKind::Opus => [2880, 1920, 960, 480, 240, 120]
            .into_iter()
            .find(|&f| f <= n)
            .unwrap_or(0),
        _ => n,
    }
}

/// A rewriter for a stream that starts with a generated packet: random SSRC, sequence
/// number and timestamp (RFC 3550 §5.1).
fn new_rewriter(r: u64) -> StreamRewriter {
    StreamRewriter::new((r >> 32) as u32, (r >> 16) as u16, r as u32)
}

#[cfg(test)]
mod tests;
