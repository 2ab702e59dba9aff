//! The per-call mixer: who hears whom (docs/design.md §3), sans-IO.
//!
//! One [`CallMixer`] per call. It takes every RTP packet received on the call's legs
//! ([`CallMixer::handle_rtp`]) and the passing of time ([`CallMixer::handle_timeout`]), and
//! queues the packets to send ([`CallMixer::poll_transmit`]) and the events for its owner
//! ([`CallMixer::poll_event`]).
//!
//! # Run loop
//! The mixer reads no clock and owns no socket: its owner (the server's per-call media task)
//! passes `now` into every call, sends what [`poll_transmit`](CallMixer::poll_transmit)
//! yields, and wakes it at [`poll_timeout`](CallMixer::poll_timeout). Here in virtual time,
//! with a customer sending 20 ms PCMU packets to an agent coached by a supervisor:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bibridge_media::codec::CodecKind;
//! use bibridge_media::mixer::{
//!     CallMixer, LegParams, LegRole, MixerConfig, MixerEvent, SessionMode,
//! };
//!
//! let (customer, agent, supervisor) = (1, 2, 3);
//! let params = |role| LegParams {
//!     role, payload_type: 0, codec: CodecKind::Pcmu, dtmf_payload_type: Some(101), ptime_ms: 20,
//! };
//! let start = Instant::now(); // the only clock read: time then advances by the loop alone
//! let mut mixer = CallMixer::new(MixerConfig::default(), 0x5eed);
//! mixer.add_leg(start, customer, params(LegRole::Customer))?;
//! mixer.add_leg(start, agent, params(LegRole::Agent))?;
//! mixer.add_leg(start, supervisor, params(LegRole::Supervisor(SessionMode::Coach)))?;
//!
//! let (mut buf, mut sent_to) = ([0u8; 1500], Vec::new());
//! let mut seq = 0u16; // the customer's next packet, due at start + seq * 20 ms
//! while seq < 50 {
//!     // 1. Drain everything the mixer wants done: datagrams to send, events to act on.
//!     while let Some((leg, len)) = mixer.poll_transmit(&mut buf) {
//!         sent_to.push(leg); // a real owner sends buf[..len] on leg's socket
//!     }
//!     while let Some(event) = mixer.poll_event() {
//!         match event {
//!             MixerEvent::Dtmf { leg, digit } => println!("supervisor {leg} pressed {digit}"),
//!         }
//!     }
//!     // 2. Wait for whichever comes first: the next datagram or the mixer's deadline.
//!     let arrival = start + Duration::from_millis(20) * u32::from(seq);
//!     match mixer.poll_timeout() {
//!         Some(deadline) if deadline < arrival => mixer.handle_timeout(deadline),
//!         _ => {
//!             let mut packet = vec![0x80, 0]; // RTP version 2, payload type 0 (PCMU)
//!             packet.extend_from_slice(&seq.to_be_bytes());
//!             packet.extend_from_slice(&(160 * u32::from(seq)).to_be_bytes()); // timestamp
//!             packet.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // SSRC
//!             packet.extend_from_slice(&[0xFF; 160]); // 20 ms of PCMU silence
//!             mixer.handle_rtp(arrival, customer, &packet);
//!             seq += 1;
//!         }
//!     }
//! }
//! // The agent hears the customer (and the coach); the supervisor hears the customer.
//! assert!(sent_to.contains(&agent) && sent_to.contains(&supervisor));
//! # Ok::<(), bibridge_media::MediaError>(())
//! ```
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
//!   and the result is encoded and sent at once. Packets of that party lost in sequence (up to
//!   5 in a row) are concealed when the next one arrives, one frame each, sent just before it:
//!   G.711/G.722 by [`crate::plc`] (pitch repetition, muted after 60 ms), Opus by its own PLC
//!   (the last one from the next packet's in-band FEC when there is some); the supervisors'
//!   audio of that span is mixed into them as usual. When that party has sent nothing for more
//!   than 3 ptime (hold, DTX), the mixer's own clock produces the frames (supervisors only),
//!   and nothing lost over that pause is concealed afterwards.
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
//!   sequence is concealed, and the customer's telephone-events reach no
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
//!
//! # Layout
//! This file holds [`CallMixer`] and its handle/poll API; the rest, one job per file:
//! - `types`: the public vocabulary (leg ids, roles, modes, parameters, config, events,
//!   counters, [`MixerError`]);
//! - `rule`: who hears whom, one pure function (docs/design.md §3);
//! - `plan`: routing (`replan`): each output's route, mix rate and source, and the buffers
//!   the plan needs;
//! - `leg`: a leg's input paths (packet-clocked decoder, jitter-buffered path) and output state;
//! - `relay`: relaying a packet, passing telephone-events into a mixed output;
//! - `mix`: the packet-clocked and supervisor mixes, encoding a mixed frame;
//! - `clock`: [`handle_timeout`](CallMixer::handle_timeout) and the tick;
//! - `tx_queue`: the transmit ring and writing a generated packet;
//! - `meter`: the input level meter; `convert`: rate conversion stages; `scratch`: the mixing
//!   scratch buffers; `limits`: shared bounds and buffer helpers.

mod clock;
mod convert;
mod leg;
mod limits;
mod meter;
mod mix;
mod plan;
mod relay;
mod rule;
mod scratch;
mod tx_queue;
mod types;

use std::collections::VecDeque;
use std::time::Instant;

use leg::{Leg, Route};
use limits::{vec_bytes, MAX_EVENTS};
use meter::PeakMeter;
pub use meter::LEVEL_FLOOR_DBFS;
use scratch::Scratch;
use tx_queue::TxQueue;
pub use types::{
    LegId, LegParams, LegRole, LegStats, MixerConfig, MixerCounters, MixerError, MixerEvent,
    MixerStats, SessionMode,
};

use crate::dtmf::DtmfDetector;
use crate::rtp::{is_rtcp, RtpHeader, StreamRewriter};
use crate::tone::ToneGen;
use crate::MediaError;

pub use crate::tone::Tone;

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
    /// The mixer-wide counters but `tx_dropped`, which the transmit queue keeps.
    counters: MixerCounters,
    /// A tone finished while producing a frame: the routing is redone once that is over.
    tone_ended: bool,
    scratch: Scratch,
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
            counters: MixerCounters::default(),
            tone_ended: false,
            // Sized by `replan` when something is first mixed.
            scratch: Scratch::default(),
        }
    }

    /// An estimate of the heap memory this mixer holds, bytes: the capacity of every buffer
    /// it owns (legs, jitter buffers, PCM and scratch buffers, transmit queue, events) and
    /// the boxed state of G.711/G.722 codecs. Not counted: libopus' codec state and the
    /// resamplers' filter tables (under 1 KiB each).
    pub fn heap_bytes(&self) -> usize {
        vec_bytes(&self.legs)
            + self.legs.iter().map(Leg::heap_bytes).sum::<usize>()
            + self.tx.heap_bytes()
            + self.events.capacity() * std::mem::size_of::<MixerEvent>()
            + self.scratch.heap_bytes()
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
            return Err(MediaError::Mixer(MixerError::LegIdInUse(id)));
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
        let i = self
            .find(id)
            .ok_or(MediaError::Mixer(MixerError::NoSuchLeg(id)))?;
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
                    self.counters.dtmf_consumed += 1;
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
        // The mixer's clock makes the frames of an input quiet for more than 3 ptime (see
        // `clock`): packets lost over such a pause are not concealed afterwards.
        let clocked_meanwhile = leg
            .last_rx
            .is_none_or(|at| now.saturating_duration_since(at) > self.cfg.ptime * 3);
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
            // Decoded once, for the opposite party's mix and the supervisors' alike; packets
            // lost just before it are concealed first, one frame each, so the outputs carry
            // the concealment instead of a gap.
            if let Some((missing, len)) = self.direct_gap(i, &h, packet, clocked_meanwhile) {
                for k in 0..missing {
                    let next = (k + 1 == missing).then_some(h.payload(packet));
                    self.conceal_direct(i, len, next);
                    self.mix_direct(now, i, to_dst, to_sups);
                }
                if missing > 0 {
                    // Concealed: if this packet does not decode, the next one conceals it
                    // alone, not the whole gap again.
                    self.legs[i].last_direct_seq = Some(h.seq.wrapping_sub(1));
                }
                if self.decode_direct(i, &h, packet) {
                    self.mix_direct(now, i, to_dst, to_sups);
                }
            }
        }
        self.finish_tones(now);
    }

    /// The frame of `src` in `s_pcm` into the opposite party's mix and the supervisors'.
    fn mix_direct(&mut self, now: Instant, src: usize, to_dst: Option<usize>, to_sups: bool) {
        if let Some(d) = to_dst {
            self.direct_mix(now, src, d);
        }
        if to_sups {
            self.supervisor_mix(now);
        }
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
            tx_dropped: self.tx.dropped,
            ..self.counters
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

#[cfg(test)]
mod tests;
