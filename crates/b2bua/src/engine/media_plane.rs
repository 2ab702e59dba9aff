//! The engine's contract with the media plane: what it asks the per-call media tasks to do
//! ([`MediaCommand`]) and what they report back ([`MediaEvent`]).

use std::net::SocketAddr;

use crate::config::Mode;
use crate::ids::{CallId, LegId};
use crate::sdp::AudioInfo;

/// What a leg is to the mixer (docs/design.md §3 decides who hears whom from this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRole {
    /// The party that is neither agent nor supervisor (the caller from outside, say).
    Customer,
    /// The agent (or a supervisor promoted to the agent's place).
    Agent,
    /// A supervisor in this mode.
    Supervisor(Mode),
}

/// The negotiated codec of a leg, as the mixer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegCodec {
    /// RTP payload type of the voice codec.
    pub payload_type: u8,
    /// Encoding name from the SDP (`PCMU`, `opus`, ...).
    pub name: String,
    /// RTP clock rate of the voice codec.
    pub clock_rate: u32,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub dtmf_payload_type: Option<u8>,
    /// Every payload type the leg's SDP lists: what its party may send (a learning latch
    /// accepts a first packet only with one of these).
    pub payload_types: Vec<u8>,
}

impl LegCodec {
    /// The first voice codec of an SDP (the one in use after offer/answer) and its telephone-event.
    pub fn from_info(info: &AudioInfo) -> Option<LegCodec> {
        let voice = info
            .codecs
            .iter()
            .find(|c| !c.name.eq_ignore_ascii_case("telephone-event"))?;
        let dtmf = info
            .codecs
            .iter()
            .find(|c| {
                c.name.eq_ignore_ascii_case("telephone-event") && c.clock_rate == voice.clock_rate
            })
            .or_else(|| {
                info.codecs
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case("telephone-event"))
            });
        Some(LegCodec {
            payload_type: voice.payload_type,
            name: voice.name.clone(),
            clock_rate: voice.clock_rate,
            dtmf_payload_type: dtmf.map(|d| d.payload_type),
            payload_types: info.codecs.iter().map(|c| c.payload_type).collect(),
        })
    }
}

/// Media-plane setup of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSetup {
    /// The leg's id within the call.
    pub leg: LegId,
    /// Our RTP port for this leg (RTCP is port + 1).
    pub port: u16,
    /// Where the leg's party wants its RTP, from its SDP (the media task latches onto the actual
    /// source once packets arrive: symmetric RTP).
    pub remote: Option<SocketAddr>,
    /// What the leg is to the mixer.
    pub role: MediaRole,
    /// The negotiated codec; `None` until known (an API session's phone has not answered).
    pub codec: Option<LegCodec>,
}

/// Commands for the media plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind the legs' ports and start relaying.
    Open {
        /// The call.
        call: CallId,
        /// Its legs (A and B).
        legs: Vec<LegSetup>,
    },
    /// A supervisor joins the call's media.
    AddLeg {
        /// The call.
        call: CallId,
        /// The supervisor's leg.
        setup: LegSetup,
    },
    /// A leg's remote address, codec or the call's hold state changed (answer, re-INVITE).
    Update {
        /// The call.
        call: CallId,
        /// The leg.
        leg: LegId,
        /// Where the leg's party now wants its RTP.
        remote: Option<SocketAddr>,
        /// Whether the call is on hold (either side).
        hold: bool,
        /// The leg's codec after this offer/answer.
        codec: Option<LegCodec>,
    },
    /// A leg's role changed: a mode switch, or barge promotion.
    SetRole {
        /// The call.
        call: CallId,
        /// The leg.
        leg: LegId,
        /// Its new role.
        role: MediaRole,
    },
    /// A supervisor left; its port is back in the pool.
    RemoveLeg {
        /// The call.
        call: CallId,
        /// The leg.
        leg: LegId,
    },
    /// Play a notification tone into what these legs hear (docs/design.md §5).
    PlayTone {
        /// The call.
        call: CallId,
        /// The legs that hear the tone.
        legs: Vec<LegId>,
        /// The tone.
        tone: crate::config::ToneSpec,
    },
    /// Stop relaying and close the sockets; the engine has already returned the ports to its pool.
    Close {
        /// The call.
        call: CallId,
    },
}

/// What the media plane reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP on any leg for the configured inactivity time (hold excluded).
    Inactive {
        /// The call.
        call: CallId,
    },
    /// The driver bound the call's ports (reply to [`MediaCommand::Open`]).
    Opened {
        /// The call.
        call: CallId,
    },
    /// The driver could not bind the call's ports; `bad_ports` are the ones in use elsewhere.
    OpenFailed {
        /// The call.
        call: CallId,
        /// Ports in use by another program: not handed out again.
        bad_ports: Vec<u16>,
    },
    /// The call's media task ended unexpectedly (it panicked or failed): no media flows any
    /// more, so the engine ends the call (BYE to every leg, sessions stopped and audited,
    /// ports released).
    MediaFailed {
        /// The call.
        call: CallId,
    },
    /// An RFC 4733 digit from a supervisor leg (consumed by the mixer, never forwarded).
    Dtmf {
        /// The call.
        call: CallId,
        /// The leg the digit came from.
        leg: LegId,
        /// The digit (`0`-`9`, `*`, `#`, `A`-`D`).
        digit: char,
    },
}
