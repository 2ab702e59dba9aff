//! The engine's contract with the media plane: what it asks the per-call media tasks to do
//! ([`MediaCommand`]) and what they report back ([`MediaEvent`]).

use std::net::SocketAddr;

use crate::config::Mode;
use crate::ids::{CallId, LegId};
use crate::sdp::AudioInfo;

/// What a leg is to the mixer (DESIGN §3 decides who hears whom from this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaRole {
    Customer,
    Agent,
    Supervisor(Mode),
}

/// The negotiated codec of a leg, as the mixer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegCodec {
    pub payload_type: u8,
    /// Encoding name from the SDP (`PCMU`, `opus`, ...).
    pub name: String,
    pub clock_rate: u32,
    /// RFC 4733 telephone-event payload type, if negotiated.
    pub dtmf_payload_type: Option<u8>,
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
        })
    }
}

/// Media-plane setup of one leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSetup {
    pub leg: LegId,
    /// Our RTP port for this leg (RTCP is port + 1).
    pub port: u16,
    /// Where the leg's party wants its RTP, from its SDP (the media task latches onto the actual
    /// source once packets arrive: symmetric RTP).
    pub remote: Option<SocketAddr>,
    pub role: MediaRole,
    pub codec: Option<LegCodec>,
}

/// Commands for the media plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Bind the legs' ports and start relaying.
    Open { call: CallId, legs: Vec<LegSetup> },
    /// A supervisor joins the call's media.
    AddLeg { call: CallId, setup: LegSetup },
    /// A leg's remote address, codec or the call's hold state changed (answer, re-INVITE).
    Update {
        call: CallId,
        leg: LegId,
        remote: Option<SocketAddr>,
        hold: bool,
        codec: Option<LegCodec>,
    },
    /// A leg's role changed: a mode switch, or barge promotion.
    SetRole {
        call: CallId,
        leg: LegId,
        role: MediaRole,
    },
    /// A supervisor left; its port is back in the pool.
    RemoveLeg { call: CallId, leg: LegId },
    /// Play a notification tone into what these legs hear (DESIGN §5).
    PlayTone {
        call: CallId,
        legs: Vec<LegId>,
        tone: crate::config::ToneSpec,
    },
    /// Stop relaying and close the sockets; the engine has already returned the ports to its pool.
    Close { call: CallId },
}

/// What the media plane reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP on any leg for the configured inactivity time (hold excluded).
    Inactive { call: CallId },
    /// The driver bound the call's ports (reply to [`MediaCommand::Open`]).
    Opened { call: CallId },
    /// The driver could not bind the call's ports; `bad_ports` are the ones in use elsewhere.
    OpenFailed { call: CallId, bad_ports: Vec<u16> },
    /// An RFC 4733 digit from a supervisor leg (consumed by the mixer, never forwarded).
    Dtmf {
        call: CallId,
        leg: LegId,
        digit: char,
    },
}
