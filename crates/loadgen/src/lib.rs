//! bibridge-load: a load generator and measurement harness for bibridge, with an rtpengine
//! baseline.
//!
//! # Layout
//! - [`cli`]: command line of the `bibridge-load` binary (`gen-config`, `run`).
//! - [`config`]: writes a bibridge config for a load run and reads the parties back from one.
//! - [`run`]: orchestration of a run: call setup at a bounded rate, sessions, the measurement
//!   window, teardown; spawning bibridge or rtpengine on request.
//! - [`sip`]: the customers, agents and supervisors over UDP on bibridge's sans-IO SIP stack
//!   (`sip/mod.rs` the driver and the requests it starts, `sip/events.rs` incoming requests and
//!   responses, `sip/sdp.rs` SDP and URI helpers).
//! - [`ng`]: rtpengine's NG control protocol (the baseline's call setup); [`bencode`] its
//!   encoding.
//! - [`rtp`]: the media thread: G.711 streams on three sockets with `sendmmsg`/`recvmmsg`,
//!   loss and latency measurement.
//! - [`audio`]: payload contents: the quiet key that times relayed packets, the probe tone that
//!   times mixed ones.
//! - [`stats`]: sequence-number loss, send-time table, histograms.
//! - [`cpu`]: process CPU time from `/proc`.
//! - [`report`]: the human-readable report, JSON and the latency plot.

pub mod audio;
pub mod bencode;
pub mod cli;
pub mod config;
pub mod cpu;
pub mod ng;
pub mod report;
pub mod rtp;
pub mod run;
pub mod sip;
pub mod stats;

/// A supervisor session's mode (docs/design.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    Monitor,
    Coach,
    Barge,
}

impl SessionMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "monitor" => Some(Self::Monitor),
            "coach" => Some(Self::Coach),
            "barge" => Some(Self::Barge),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Monitor => "monitor",
            Self::Coach => "coach",
            Self::Barge => "barge",
        }
    }
}

/// Hard limits, so that a typo cannot turn a benchmark into a flood.
pub const MAX_CALLS: u32 = 5_000;
pub const MAX_DURATION_S: u64 = 600;
pub const MAX_CPS: u32 = 2_000;

/// Whether `addr` is on this machine's loopback (127.0.0.0/8 or ::1): the only targets allowed.
pub fn is_loopback(addr: std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
