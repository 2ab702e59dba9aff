//! Supervisor outputs clocked by the customer's packets.

use super::*;

// ---- Supervisor outputs clocked by the customer's packets ----

/// Customer 440 Hz at `cust_phase` ms in the 20 ms grid (off the clock's ticks, which fall on
/// multiples of 20 ms from the first supervisor's join at 0 ms), agent 1000 Hz, all PCMU, and
/// supervisor A in `mode` (added at 0 ms).
fn clocking_call(cust_phase: u64, mode: SessionMode) -> Sim {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, cust_phase);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcmu, F_AGENT, 7);
    sim.add(SUP_A, LegRole::Supervisor(mode), CodecKind::Pcmu, F_A, 3);
    sim
}

/// Send times of the packets sent to `leg` (or received from it, `inputs`) in `[from, to)`.
fn times(v: &[Sent], from_ms: u64, to_ms: u64) -> Vec<u64> {
    v.iter()
        .map(|s| s.ms)
        .filter(|ms| (from_ms..to_ms).contains(ms))
        .collect()
}

/// The customer reaches a supervisor with no added delay: the supervisor's frame carrying the
/// start of a customer burst comes out of the `handle_rtp` call of the packet that carries it,
/// with the burst at full level from its first packet; the agent, jitter-buffered, is heard
/// too, within the jitter buffer's delay.
#[test]
fn a_customer_burst_reaches_a_monitor_in_the_same_call() {
    let mut sim = clocking_call(11, SessionMode::Monitor);
    sim.senders.get_mut(&CUST).expect("customer").freq = 0.0;
    sim.senders.get_mut(&AGENT).expect("agent").freq = 0.0;
    sim.run_until(600);
    // The burst's first packet, handed over alone: no tick runs in between.
    let cust = sim.senders.get_mut(&CUST).expect("customer");
    cust.freq = F_CUST;
    let burst = cust.packet();
    sim.ms = 611;
    let now = sim.now();
    assert!(
        sim.mixer.poll_timeout().is_some_and(|t| t > now),
        "no tick is due"
    );
    let before = sim.outputs.get(&SUP_A).map_or(0, Vec::len);
    sim.inject(CUST, burst);
    let out = &sim.outputs[&SUP_A];
    assert_eq!(
        out.len(),
        before + 1,
        "one supervisor frame per customer packet"
    );
    let s = out.last().expect("a frame");
    let l = packet_level(&sim, SUP_A, s, F_CUST);
    assert!(
        (l - LEVEL_DB).abs() <= 2.0,
        "the burst is in that very frame, at full level: {l:.1} dBFS"
    );
    // Agent burst from its packet at 627 ms on: heard once its jitter buffer lets it out.
    sim.senders.get_mut(&AGENT).expect("agent").freq = F_AGENT;
    sim.run_until(1200);
    let first_agent = sim.outputs[&SUP_A]
        .iter()
        .find(|s| s.ms >= 611 && packet_level(&sim, SUP_A, s, F_AGENT) > -30.0)
        .expect("the agent is heard")
        .ms;
    let delay = first_agent - 627;
    eprintln!("agent -> monitor: {delay} ms");
    let jitter_max = MixerConfig::default().jitter_max.as_millis() as u64;
    assert!(
        delay <= jitter_max,
        "agent heard {delay} ms after sending, more than the jitter buffer's {jitter_max} ms"
    );
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_continuous(SUP_A);
    sim.assert_timestamps_continuous(SUP_A);
}

/// docs/design.md §3 rows with the supervisor's output clocked by the customer: every supervisor
/// packet leaves when a customer packet arrives (one each), never on the mixer's ticks.
#[test]
fn supervisor_rows_hold_when_clocked_by_the_customer() {
    for (mode, agent_hears, cust_hears) in [
        (SessionMode::Monitor, &[F_CUST][..], &[F_AGENT][..]),
        (SessionMode::Coach, &[F_CUST, F_A][..], &[F_AGENT][..]),
        (SessionMode::Barge, &[F_CUST, F_A][..], &[F_AGENT, F_A][..]),
    ] {
        let mut sim = clocking_call(11, mode);
        sim.run_until(1600);
        sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
        sim.assert_hears(AGENT, 400, agent_hears);
        sim.assert_hears(CUST, 400, cust_hears);
        for leg in [CUST, AGENT, SUP_A] {
            sim.assert_continuous(leg);
        }
        sim.assert_timestamps_continuous(SUP_A);
        assert_eq!(
            times(&sim.outputs[&SUP_A], 0, 1600),
            times(&sim.inputs[&CUST], 0, 1600),
            "{mode:?}: supervisor frames are sent as the customer's packets arrive"
        );
    }
}

/// The customer is put on hold: the supervisor keeps hearing the agent, on the mixer's clock,
/// in the same stream; when the customer comes back their packets clock it again.
#[test]
fn supervisor_hears_the_agent_while_the_customer_is_on_hold() {
    let mut sim = clocking_call(11, SessionMode::Monitor);
    sim.run_until(500);
    sim.senders.get_mut(&CUST).expect("customer").on = false;
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).expect("customer").on = true;
    sim.run_until(2700);

    // One SSRC, no sequence gap, each timestamp one 20 ms frame after the previous.
    sim.assert_continuous(SUP_A);
    sim.assert_timestamps_continuous(SUP_A);
    // The last customer packet was at 491 ms: the clock takes over after 3 ptime, one frame
    // per tick (ticks fall on multiples of 20 ms).
    let held = times(&sim.outputs[&SUP_A], 560, 1500);
    assert!(
        (46..=48).contains(&held.len()),
        "{} packets on hold",
        held.len()
    );
    assert!(held.iter().all(|ms| ms % 20 == 0), "on the clock: {held:?}");
    let pcm = sim.heard_between(SUP_A, 560, 1500);
    assert!((level_dbfs(&pcm, F_AGENT, 8000) - LEVEL_DB).abs() <= 2.0);
    for f in [F_CUST, F_A] {
        assert!(level_dbfs(&pcm, f, 8000) < -60.0, "{f} Hz heard on hold");
    }
    // Back: clocked by the customer's packets, who is heard again.
    assert_eq!(
        times(&sim.outputs[&SUP_A], 1520, 2700),
        times(&sim.inputs[&CUST], 1520, 2700)
    );
    sim.assert_hears(SUP_A, 1600, &[F_CUST, F_AGENT]);
    // No frame without the agent, at the switches either (an empty FIFO would insert
    // silence: a click).
    for s in sim.outputs[&SUP_A].iter().filter(|s| s.ms >= 100) {
        let l = packet_level(&sim, SUP_A, s, F_AGENT);
        assert!(
            l > LEVEL_DB - 3.0,
            "agent at {l:.1} dBFS in the frame at {} ms",
            s.ms
        );
    }
}

/// Two supervisors, A coaching and B monitoring: B hears A (the agent does), A does not hear
/// B; both with the customer's clock while they send and the mixer's while they are on hold.
#[test]
fn two_supervisors_hear_each_other_as_the_agent_does() {
    let mut sim = clocking_call(11, SessionMode::Coach);
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_B,
        13,
    );
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).expect("customer").on = false;
    sim.run_until(2600);
    sim.senders.get_mut(&CUST).expect("customer").on = true;
    sim.run_until(3800);

    sim.assert_hears(SUP_A, 300, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 300, &[F_CUST, F_AGENT, F_A]);
    sim.assert_hears(AGENT, 300, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 300, &[F_AGENT]);
    for (leg, wanted) in [(SUP_A, &[F_AGENT][..]), (SUP_B, &[F_AGENT, F_A][..])] {
        assert_eq!(
            times(&sim.outputs[&leg], 0, 1500),
            times(&sim.inputs[&CUST], 0, 1500),
            "leg {leg}: clocked by the customer"
        );
        // On hold: the mixer's clock, the same voices but the customer.
        let pcm = sim.heard_between(leg, 1600, 2600);
        assert!(
            pcm.len() >= 4000,
            "leg {leg}: {} samples on hold",
            pcm.len()
        );
        for f in ALL {
            let l = level_dbfs(&pcm, f, 8000);
            if wanted.contains(&f) {
                assert!(
                    (l - LEVEL_DB).abs() <= 2.0,
                    "leg {leg}, {f} Hz on hold: {l:.1}"
                );
            } else {
                assert!(l < -60.0, "leg {leg} must not hear {f} Hz on hold: {l:.1}");
            }
        }
        sim.assert_hears(
            leg,
            2700,
            if leg == SUP_A {
                &[F_CUST, F_AGENT]
            } else {
                &[F_CUST, F_AGENT, F_A]
            },
        );
        sim.assert_continuous(leg);
        sim.assert_timestamps_continuous(leg);
    }
}
