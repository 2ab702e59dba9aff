//! The mixer's public vocabulary: leg ids, roles and session modes, leg parameters, the
//! configuration, events and counters.

use std::time::Duration;

use crate::codec::CodecKind;

/// Identifies a leg within one [`CallMixer`](crate::mixer::CallMixer) (chosen by the
/// caller).
pub type LegId = u32;

/// A supervisor's session mode: named by who hears the supervisor (docs/design.md §3).
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

/// The scalar counters of the whole mixer, see
/// [`CallMixer::counters`](crate::mixer::CallMixer::counters) (no allocation, unlike
/// [`CallMixer::stats`](crate::mixer::CallMixer::stats)).
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

/// Counters of the whole mixer and of each leg, see
/// [`CallMixer::stats`](crate::mixer::CallMixer::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MixerStats {
    /// The mixer-wide counters (also cheaply available from
    /// [`CallMixer::counters`](crate::mixer::CallMixer::counters)).
    pub counters: MixerCounters,
    /// Per-leg counters, in the order the legs were added.
    pub legs: Vec<(LegId, LegStats)>,
}

/// Why a call mixer operation was refused ([`MediaError::Mixer`](crate::MediaError::Mixer)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MixerError {
    /// [`add_leg`](crate::mixer::CallMixer::add_leg) with an id another leg of the call has.
    #[error("leg id {0} already in use")]
    LegIdInUse(LegId),
    /// [`update_leg`](crate::mixer::CallMixer::update_leg) of a leg the call does not have.
    #[error("no such leg {0}")]
    NoSuchLeg(LegId),
}
