//! Memory: mixing state only where the routing needs it.

use super::*;

// ---- Memory: mixing state only where the routing needs it ----

/// A call that is only relayed holds little; a supervisor joining allocates the mixing state
/// (at the join), and the relay stays byte-identical before, during and after the session.
#[test]
fn relay_only_call_is_small_and_mixing_state_comes_with_a_supervisor() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    let relay_bytes = sim.mixer.heap_bytes();
    assert!(
        relay_bytes < 16 * 1024,
        "relay-only call holds {relay_bytes} B"
    );
    sim.run_until(400);
    assert_eq!(
        sim.mixer.heap_bytes(),
        relay_bytes,
        "relaying allocates nothing"
    );
    assert!(sim
        .mixer
        .legs
        .iter()
        .all(|l| l.jbp.is_none() && l.dec_direct.is_none() && l.encoder.is_none()));

    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    let monitored = sim.mixer.heap_bytes();
    // Three jitter buffers alone are about 3 x 94 KiB.
    assert!(
        monitored > relay_bytes + 3 * crate::jitter::RING_SLOTS * crate::jitter::MAX_PAYLOAD,
        "{monitored} B while monitored"
    );
    sim.run_until(1400);
    sim.assert_hears(SUP_A, 600, &[F_CUST, F_AGENT]);
    let now = sim.now();
    sim.mixer.remove_leg(now, SUP_A);
    sim.senders.remove(&SUP_A);
    sim.run_until(2000);
    assert_eq!(sim.mixer.poll_timeout(), None);
    // Relayed untouched throughout, on one stream.
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    for leg in [CUST, AGENT] {
        sim.assert_continuous(leg);
    }
    assert_eq!(sim.mixer.counters().tx_dropped, 0);
}

/// Mixing allocates on the routing change (join, mode change, tone), never per packet or
/// tick: the estimate does not move over 500 ticks and their packets afterwards.
#[test]
fn mixing_allocates_on_routing_changes_only() {
    let mut cases = vec![
        (CodecKind::Pcmu, CodecKind::Pcmu, CodecKind::Pcmu),
        // 16 kHz mixes: resampling of the customer up and the mixes down.
        (CodecKind::Pcmu, CodecKind::G722, CodecKind::G722),
        (CodecKind::G722, CodecKind::Pcmu, CodecKind::Pcmu),
    ];
    if CodecKind::Opus.is_available() {
        cases.push((CodecKind::Pcmu, CodecKind::Pcmu, CodecKind::Opus));
    }
    for (cust, agent, sup) in cases {
        let mut sim = Sim::new(MixerConfig::default());
        sim.add(CUST, LegRole::Customer, cust, F_CUST, 0);
        sim.add(AGENT, LegRole::Agent, agent, F_AGENT, 7);
        sim.run_until(200);
        sim.add(
            SUP_A,
            LegRole::Supervisor(SessionMode::Monitor),
            sup,
            F_A,
            3,
        );
        let now = sim.now();
        sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
        sim.mixer.play_tone(now, AGENT, tone_ms(100, 1, 0));
        let joined = sim.mixer.heap_bytes();
        let ticks = sim.mixer.counters().ticks;
        sim.run_until(200 + 500 * 20);
        let c = sim.mixer.counters();
        assert!(c.ticks - ticks >= 500, "{c:?}");
        assert_eq!(
            sim.mixer.heap_bytes(),
            joined,
            "{cust:?}/{agent:?}/{sup:?}: grew while handling packets and ticks"
        );
        sim.assert_hears(AGENT, 2000, &[F_CUST, F_A]);
        sim.assert_hears(CUST, 2000, &[F_AGENT, F_A]);
        sim.assert_hears(SUP_A, 2000, &[F_CUST, F_AGENT]);
    }
}

/// A codec mismatch without supervisors mixes packet by packet: decoders and encoders, but no
/// jitter buffer.
#[test]
fn transcoding_alone_needs_no_jitter_buffer() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::G722, F_AGENT, 7);
    sim.run_until(1000);
    sim.assert_hears(AGENT, 200, &[F_CUST]);
    sim.assert_hears(CUST, 200, &[F_AGENT]);
    assert!(sim
        .mixer
        .legs
        .iter()
        .all(|l| l.jbp.is_none() && l.dec_direct.is_some() && l.encoder.is_some()));
}

/// Growing the transmit ring keeps the queued packets, in order, wherever the ring's head is.
#[test]
fn transmit_ring_grows_without_losing_packets() {
    let mut q = TxQueue::new();
    assert_eq!(q.slots.len(), TX_SLOTS_RELAY);
    let mut buf = [0u8; 16];
    // Move the head into the middle, then wrap: slots 2, 3, 0 hold packets 2, 3, 4.
    for k in 0..3u8 {
        q.reserve(1).push(k);
        q.commit();
    }
    for want in 0..2u8 {
        assert_eq!(q.pop_into(&mut buf), Some((1, 1)));
        assert_eq!(buf[0], want);
    }
    for k in 3..5u8 {
        q.reserve(1).push(k);
        q.commit();
    }
    assert_eq!((q.head, q.len), (2, 3));
    let queued = vec![2u8, 3, 4];
    q.grow(TX_SLOTS);
    assert_eq!(q.slots.len(), TX_SLOTS);
    q.reserve(2).push(99);
    q.commit();
    let mut got = Vec::new();
    while let Some((_, n)) = q.pop_into(&mut buf) {
        assert_eq!(n, 1);
        got.push(buf[0]);
    }
    let mut want = queued;
    want.push(99);
    assert_eq!(got, want);
    assert_eq!(q.dropped, 0);
}
