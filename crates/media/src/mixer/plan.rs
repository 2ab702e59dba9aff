//! Routing: `replan` decides who hears whom and how each output is produced (relay,
//! packet-clocked mix, supervisor mix), and sizes every buffer that plan needs.

use std::time::Instant;

use super::convert::{Conv, View};
use super::leg::{JbPath, Leg, Route};
use super::limits::{ensure_capacity, samples_in, MAX_EVENTS, SIDE_MAX_FRAMES};
use super::meter::PeakMeter;
use super::rule::hears;
use super::tx_queue::TX_SLOTS;
use super::types::{LegId, LegRole};
use super::CallMixer;
use crate::codec::{Decoder, Encoder};
use crate::MediaError;

impl CallMixer {
    /// Recompute who hears whom and make sure every buffer and resampler the plan needs
    /// exists. Runs on configuration changes only.
    pub(super) fn replan(&mut self, now: Instant) -> Result<(), MediaError> {
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

        // Which supervisors the parties hear. The parties' own voices reach each other by
        // relay or the packet-clocked paths, and the supervisors by the customer's packets
        // and the supervisor mix (see `others` below).
        for l in &mut self.legs {
            let sup = l.is_supervisor();
            l.to_agent = sup && hears(LegRole::Agent, l.params.role, false);
            l.to_customer = sup && hears(LegRole::Customer, l.params.role, false);
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
                        .filter(|o| {
                            o.is_supervisor() && hears(l.params.role, o.params.role, o.id == l.id)
                        })
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

    /// Size the scratch buffers and the transmit queue for mixing (once; they are kept).
    pub(super) fn reserve_for_mixing(&mut self) {
        self.scratch.reserve(self.cfg.ptime);
        self.tx.grow(TX_SLOTS);
    }
}
