//! The input level meter and the counters.

use super::*;

/// The input level of `leg`, which must be metered.
fn input_level(sim: &Sim, leg: LegId) -> f32 {
    sim.mixer
        .input_level(leg)
        .unwrap_or_else(|| panic!("leg {leg} should be metered"))
}

#[test]
fn input_level_on_the_packet_clocked_path() {
    // PCMU customer, PCMA agent: no supervisor, but each side's packets are decoded for the
    // other's packet-clocked mix.
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_AGENT, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcma, F_CUST, 7);
    assert_eq!(sim.mixer.input_level(CUST), None, "nothing received yet");
    sim.run_until(500);
    assert_eq!(sim.mixer.poll_timeout(), None, "no clock: the direct path");
    for leg in [CUST, AGENT] {
        let l = input_level(&sim, leg);
        assert!(
            (f64::from(l) - LEVEL_DB).abs() <= 1.0,
            "leg {leg}: {l:.2} dBFS for a {LEVEL_DB} dBFS tone"
        );
    }
    // The customer goes silent (still sending packets): the reading falls to the floor
    // within the meter's 200 ms, while the agent's stays.
    sim.senders.get_mut(&CUST).expect("customer sender").freq = 0.0;
    sim.run_until(560);
    assert!(
        input_level(&sim, CUST) > -21.0,
        "60 ms of silence are within the meter's window"
    );
    sim.run_until(800);
    assert_eq!(input_level(&sim, CUST), LEVEL_FLOOR_DBFS);
    assert!((f64::from(input_level(&sim, AGENT)) - LEVEL_DB).abs() <= 1.0);
    assert_eq!(sim.mixer.input_level(99), None, "unknown leg");
}

#[test]
fn input_level_of_a_monitor_and_of_relayed_legs() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(300);
    // Plain relay decodes nothing.
    assert_eq!(sim.mixer.input_level(CUST), None);
    assert_eq!(sim.mixer.input_level(AGENT), None);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1000);
    // A monitor is heard by nobody, yet its input is decoded on the mixer's clock and metered;
    // customer and agent are metered from their jitter buffers while it is present.
    for leg in [CUST, AGENT, SUP_A] {
        let l = input_level(&sim, leg);
        assert!(
            (f64::from(l) - LEVEL_DB).abs() <= 1.0,
            "leg {leg}: {l:.2} dBFS for a {LEVEL_DB} dBFS tone"
        );
    }
    // The supervisor stops sending: concealment, then silence on the ticks.
    sim.senders.get_mut(&SUP_A).expect("supervisor sender").on = false;
    sim.run_until(1400);
    assert_eq!(input_level(&sim, SUP_A), LEVEL_FLOOR_DBFS);
    assert!((f64::from(input_level(&sim, CUST)) - LEVEL_DB).abs() <= 1.0);
    // It leaves: back to relay, no reading (not a frozen one).
    let now = sim.now();
    sim.mixer.remove_leg(now, SUP_A);
    sim.senders.remove(&SUP_A);
    sim.run_until(1500);
    assert_eq!(sim.mixer.input_level(CUST), None);
    assert_eq!(sim.mixer.input_level(AGENT), None);
}

#[test]
fn counters_match_stats() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(200);
    let c = sim.mixer.counters();
    assert_eq!((c.relayed_packets, c.mixed_frames, c.ticks), (20, 0, 0));
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(600);
    let c = sim.mixer.counters();
    let st = sim.mixer.stats();
    assert!(c.mixed_frames > 20 && c.ticks >= 19, "{c:?}");
    assert_eq!(c, st.counters);
}
