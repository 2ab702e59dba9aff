//! The mixer's own clock: `handle_timeout` and the tick that pulls every jitter-buffered input
//! and produces the frames nobody's packets clock.

use std::time::Instant;

use super::leg::{Leg, Route};
use super::limits::{samples_in, SIDE_MAX_FRAMES};
use super::CallMixer;

/// Late handle_timeout: beyond this many missed ticks the clock is resynchronised instead
/// of producing a burst.
pub(super) const MAX_CATCH_UP_TICKS: u32 = 5;

impl CallMixer {
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
                self.counters.ticks_skipped += (late.as_micros() / ptime.as_micros().max(1)) as u64;
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

    /// One tick of the mixer's clock at `t`.
    pub(super) fn tick(&mut self, t: Instant) {
        self.counters.ticks += 1;
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
            self.scratch.acc.clear();
            self.scratch.acc.resize(fl, 0);
            for (i, l) in self.legs.iter().enumerate() {
                // `rule::hears` for a supervisor listener, as `replan` resolved it: the agent
                // and the supervisors the agent hears (the customer comes with its packets).
                let heard = Some(i) == self.agent || l.to_agent;
                if i == s || !heard || !l.jb_active {
                    continue;
                }
                if let Some(f) = l.frame_at(rate) {
                    for (a, &x) in self.scratch.acc.iter_mut().zip(f) {
                        *a += i32::from(x);
                    }
                }
            }
            let others = &mut self.legs[s].others;
            others.extend_from_slice(&self.scratch.acc);
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
            for (a, x) in self.scratch.acc.iter_mut().zip(others.drain(..k)) {
                *a = x;
            }
            self.scratch.acc[k..].fill(0);
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
            self.scratch.acc.clear();
            self.scratch.acc.resize(fl, 0);
            self.add_sides(to_agent, fl);
            self.emit(t, d);
        }
    }
}
