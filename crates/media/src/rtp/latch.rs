//! Symmetric RTP (RFC 4961) latching of a leg's remote addresses, and the leg's counters.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the latched address must be silent before another source may take over.
pub const RELATCH_AFTER: Duration = Duration::from_secs(1);

/// Outcome of a received packet for the symmetric-RTP latch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latch {
    /// First packet: its source is now the send target.
    Latched,
    /// From the latched address.
    Current,
    /// From a new address after the latched one was silent for [`RELATCH_AFTER`]: the target
    /// moved there (a NAT rebinding, a device change).
    Relatched {
        /// The address latched before.
        previous: SocketAddr,
    },
    /// From another address while the latched one is alive. Not latched, and should be
    /// dropped: it is either a stray or an attempt to hijack the stream.
    Foreign,
}

#[derive(Debug, Clone, Default)]
struct LatchState {
    addr: Option<SocketAddr>,
    last_seen: Option<Instant>,
}

impl LatchState {
    fn on_packet(&mut self, now: Instant, src: SocketAddr) -> Latch {
        match (self.addr, self.last_seen) {
            (None, _) => {
                self.addr = Some(src);
                self.last_seen = Some(now);
                Latch::Latched
            }
            (Some(a), _) if a == src => {
                self.last_seen = Some(self.last_seen.map_or(now, |l| l.max(now)));
                Latch::Current
            }
            (Some(a), last) => {
                let silent = last.is_none_or(|l| now.saturating_duration_since(l) >= RELATCH_AFTER);
                if silent {
                    self.addr = Some(src);
                    self.last_seen = Some(now);
                    Latch::Relatched { previous: a }
                } else {
                    Latch::Foreign
                }
            }
        }
    }
}

/// Packet and byte counters of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets accepted from the remote.
    pub rtp_packets_in: u64,
    /// Bytes of those packets (UDP payload).
    pub rtp_bytes_in: u64,
    /// RTCP packets accepted from the remote.
    pub rtcp_packets_in: u64,
    /// Bytes of those packets.
    pub rtcp_bytes_in: u64,
    /// Packets (RTP or RTCP) from a source other than the latched one, not accepted.
    pub foreign_packets_in: u64,
    /// RTP packets sent to the remote.
    pub rtp_packets_out: u64,
    /// Bytes of those packets.
    pub rtp_bytes_out: u64,
    /// RTCP packets sent to the remote.
    pub rtcp_packets_out: u64,
    /// Bytes of those packets.
    pub rtcp_bytes_out: u64,
}

/// Per-leg media state for symmetric RTP (RFC 4961) behind NAT.
///
/// We send to the address the remote's packets come from, not (only) to what its SDP says:
/// a phone behind NAT announces a private address. Before any packet arrives the SDP
/// address is used. The first packet latches its source; a packet from another source
/// re-latches only after the latched address was silent for [`RELATCH_AFTER`], so a stray
/// or forged packet cannot steal the stream and two sources cannot make it flap. RTCP has its
/// own latch (its NAT mapping is a different one).
#[derive(Debug, Clone, Default)]
pub struct LegMedia {
    sdp_rtp: Option<SocketAddr>,
    sdp_rtcp: Option<SocketAddr>,
    rtcp_mux: bool,
    rtp_latch: LatchState,
    rtcp_latch: LatchState,
    last_rx: Option<Instant>,
    counters: LegCounters,
}

/// An SDP address we can send to: `c=` 0.0.0.0 (RFC 2543 hold) or port 0 (stream
/// rejected) give none.
fn usable(addr: Option<SocketAddr>) -> Option<SocketAddr> {
    addr.filter(|a| !a.ip().is_unspecified() && a.port() != 0)
}

impl LegMedia {
    /// State for a leg whose SDP names `sdp_remote` as RTP address (None: not known yet).
    pub fn new(sdp_remote: Option<SocketAddr>) -> Self {
        Self {
            sdp_rtp: sdp_remote,
            ..Self::default()
        }
    }

    /// New SDP RTP address (offer/answer of a re-INVITE or UPDATE). If it differs from the
    /// previous one the remote moved: both latches are reset, so the next packet latches at
    /// once instead of waiting for the old address to be silent.
    pub fn set_sdp_remote(&mut self, sdp_remote: Option<SocketAddr>) {
        if sdp_remote != self.sdp_rtp {
            self.sdp_rtp = sdp_remote;
            self.rtp_latch = LatchState::default();
            self.rtcp_latch = LatchState::default();
        }
    }

    /// Explicit RTCP address from SDP `a=rtcp` (RFC 3605); None: RTP port + 1.
    pub fn set_sdp_rtcp(&mut self, sdp_rtcp: Option<SocketAddr>) {
        self.sdp_rtcp = sdp_rtcp;
    }

    /// RTCP multiplexed on the RTP port (RFC 5761, `a=rtcp-mux` negotiated).
    pub fn set_rtcp_mux(&mut self, mux: bool) {
        self.rtcp_mux = mux;
    }

    /// An RTP packet of `len` bytes arrived from `src`. Counts it unless it is
    /// [`Latch::Foreign`], which the caller should drop.
    pub fn on_rtp(&mut self, now: Instant, src: SocketAddr, len: usize) -> Latch {
        let l = self.rtp_latch.on_packet(now, src);
        if l == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
        } else {
            self.counters.rtp_packets_in += 1;
            self.counters.rtp_bytes_in += len as u64;
            self.last_rx = Some(self.last_rx.map_or(now, |t| t.max(now)));
        }
        l
    }

    /// An RTCP packet of `len` bytes arrived from `src` (on the RTCP port, or demultiplexed
    /// with [`is_rtcp`](super::is_rtcp) on the RTP port). Same rules as
    /// [`on_rtp`](Self::on_rtp), own latch.
    pub fn on_rtcp(&mut self, now: Instant, src: SocketAddr, len: usize) -> Latch {
        let l = self.rtcp_latch.on_packet(now, src);
        if l == Latch::Foreign {
            self.counters.foreign_packets_in += 1;
        } else {
            self.counters.rtcp_packets_in += 1;
            self.counters.rtcp_bytes_in += len as u64;
        }
        l
    }

    /// Where to send RTP: the latched source, else the SDP address (if usable).
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr.or_else(|| usable(self.sdp_rtp))
    }

    /// Where to send RTCP: the RTP target with rtcp-mux; else the latched RTCP source, else
    /// the SDP `a=rtcp` address, else the RTP target's port + 1.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.rtp_target();
        }
        self.rtcp_latch
            .addr
            .or_else(|| usable(self.sdp_rtcp))
            .or_else(|| {
                let mut a = self.rtp_target()?;
                a.set_port(a.port().checked_add(1)?);
                Some(a)
            })
    }

    /// The latched RTP source, if any packet arrived.
    pub fn latched_rtp(&self) -> Option<SocketAddr> {
        self.rtp_latch.addr
    }

    /// Arrival time of the last accepted RTP packet.
    pub fn last_rx(&self) -> Option<Instant> {
        self.last_rx
    }

    /// Count an RTP packet of `len` bytes sent to the remote.
    pub fn note_sent(&mut self, len: usize) {
        self.counters.rtp_packets_out += 1;
        self.counters.rtp_bytes_out += len as u64;
    }

    /// Count an RTCP packet of `len` bytes sent to the remote.
    pub fn note_sent_rtcp(&mut self, len: usize) {
        self.counters.rtcp_packets_out += 1;
        self.counters.rtcp_bytes_out += len as u64;
    }

    /// The counters.
    pub fn counters(&self) -> &LegCounters {
        &self.counters
    }
}
