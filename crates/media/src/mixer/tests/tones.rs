//! Notification tones.

use super::*;

/// Runs of `true` in `v`, as lengths.
fn runs(v: &[bool]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut n = 0;
    for &b in v {
        if b {
            n += 1;
        } else if n > 0 {
            out.push(n);
            n = 0;
        }
    }
    if n > 0 {
        out.push(n);
    }
    out
}

#[test]
fn tone_to_the_agent_only_in_a_monitor_session() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, tone_ms(400, 1, 0));
    assert!(sim.mixer.tone_playing(AGENT));
    assert!(!sim.mixer.tone_playing(CUST));
    sim.run_until(1500);
    assert!(!sim.mixer.tone_playing(AGENT));

    // The agent: the tone at its level, and the customer still heard through it.
    let pcm = sim.heard_between(AGENT, 540, 880);
    assert!(pcm.len() >= 2400, "{} samples", pcm.len());
    let tone = level_dbfs(&pcm, F_TONE, 8000);
    assert!(
        (tone - LEVEL_DB).abs() <= 1.5,
        "agent hears the tone at {tone:.1} dBFS"
    );
    let cust = level_dbfs(&pcm, F_CUST, 8000);
    assert!(
        (cust - LEVEL_DB).abs() <= 2.0,
        "agent hears the customer at {cust:.1} dBFS during the tone"
    );
    for f in [F_AGENT, F_A] {
        assert!(level_dbfs(&pcm, f, 8000) < -60.0);
    }
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
    // Before and after: a relay again.
    sim.assert_same_payloads(AGENT, CUST, 0, 500);
    sim.assert_same_payloads(AGENT, CUST, 1000, 1500);

    // The customer: untouched relay throughout, no tone.
    sim.assert_relayed_identical(CUST, AGENT, 0);
    let pcm = sim.heard_between(CUST, 0, 1500);
    assert!(level_dbfs(&pcm, F_TONE, 8000) < -60.0);

    // The supervisor hears what the parties send, not what they receive: no tone.
    let pcm = sim.heard_between(SUP_A, 540, 880);
    assert!(pcm.len() >= 2400);
    let l = level_dbfs(&pcm, F_TONE, 8000);
    assert!(
        l < -60.0,
        "supervisor hears the agent's tone at {l:.1} dBFS"
    );
    assert!((level_dbfs(&pcm, F_CUST, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!((level_dbfs(&pcm, F_AGENT, 8000) - LEVEL_DB).abs() <= 2.0);
}

#[test]
fn tone_to_both_parties_returns_to_relay_on_one_stream() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let ssrc_before = [CUST, AGENT].map(|l| sim.mixer.output_ssrc(l));
    let now = sim.now();
    for leg in [AGENT, CUST] {
        sim.mixer.play_tone(now, leg, Tone::default());
    }
    sim.run_until(1200);
    assert_eq!(ssrc_before, [CUST, AGENT].map(|l| sim.mixer.output_ssrc(l)));

    for (leg, other) in [(AGENT, F_CUST), (CUST, F_AGENT)] {
        let pcm = sim.heard_between(leg, 530, 690);
        assert!(pcm.len() >= 1120, "{} samples", pcm.len());
        let tone = level_dbfs(&pcm, F_TONE, 8000);
        assert!(
            (tone - LEVEL_DB).abs() <= 1.5,
            "leg {leg} hears the tone at {tone:.1} dBFS"
        );
        assert!((level_dbfs(&pcm, other, 8000) - LEVEL_DB).abs() <= 2.0);
        assert!(!sim.mixer.tone_playing(leg));
        // One stream across relay -> mix -> relay.
        sim.assert_continuous(leg);
        sim.assert_timestamps_continuous(leg);
        assert!(sim.tone_packets(leg, 900, 1200).iter().all(|on| !on));
    }
    // Relay before and after the tone: the payloads untouched.
    sim.assert_same_payloads(CUST, AGENT, 0, 500);
    sim.assert_same_payloads(CUST, AGENT, 760, 1200);
    sim.assert_same_payloads(AGENT, CUST, 760, 1200);
    let st = sim.mixer.stats();
    let cust = st
        .legs
        .iter()
        .find(|(id, _)| *id == CUST)
        .expect("customer")
        .1;
    assert!(
        (10..=11).contains(&cust.tx_mixed),
        "{} mixed packets to the customer for a 200 ms tone",
        cust.tx_mixed
    );
}

#[test]
fn tone_lasts_its_duration_and_beeps_are_separate_bursts() {
    // No supervisor: both outputs are relays and nothing is clocked, until the tone.
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(300);
    assert_eq!(sim.mixer.poll_timeout(), None);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, Tone::default());
    assert!(
        sim.mixer.poll_timeout().is_some(),
        "the tone runs the clock"
    );
    sim.run_until(900);
    let on = sim.tone_packets(AGENT, 300, 900);
    let r = runs(&on);
    assert_eq!(r.len(), 1, "one burst: {on:?}");
    assert!(
        (9..=11).contains(&r[0]),
        "200 ms tone over {} packets",
        r[0]
    );
    assert!(!on[on.len() - 10..].iter().any(|&b| b), "gone afterwards");
    assert_eq!(
        sim.mixer.poll_timeout(),
        None,
        "clock stopped with the tone"
    );
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_same_payloads(AGENT, CUST, 600, 900);

    // Two beeps of 100 ms, 100 ms apart.
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, tone_ms(100, 2, 100));
    sim.run_until(1500);
    let on = sim.tone_packets(AGENT, 900, 1500);
    let r = runs(&on);
    assert_eq!(r.len(), 2, "two bursts: {on:?}");
    assert!(r.iter().all(|n| (4..=6).contains(n)), "bursts {r:?}");
    let first_end = on.iter().position(|&b| b).expect("a burst") + r[0];
    let gap = on[first_end..].iter().take_while(|&&b| !b).count();
    assert!((4..=6).contains(&gap), "gap of {gap} packets: {on:?}");
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
}

#[test]
fn tone_on_an_idle_call_is_produced_by_the_clock() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    for s in sim.senders.values_mut() {
        s.on = false;
    }
    sim.run_until(100);
    let now = sim.now();
    sim.mixer.play_tone(now, AGENT, Tone::default());
    sim.run_until(600);
    assert!(!sim.mixer.tone_playing(AGENT));
    assert_eq!(sim.mixer.poll_timeout(), None);
    let on = sim.tone_packets(AGENT, 0, 600);
    assert!(
        (10..=11).contains(&on.len()),
        "{} packets on the clock",
        on.len()
    );
    assert!(on.iter().filter(|&&b| b).count() >= 9, "{on:?}");
    let pcm = sim.heard_between(AGENT, 0, 600);
    let core = &pcm[160..1440];
    let l = level_dbfs(core, F_TONE, 8000);
    assert!((l - LEVEL_DB).abs() <= 1.5, "tone at {l:.1} dBFS");
    // One packet per 20 ms, on one stream.
    let ms: Vec<u64> = sim.outputs[&AGENT].iter().map(|s| s.ms).collect();
    assert!(ms.windows(2).all(|w| w[1] - w[0] == 20), "{ms:?}");
    sim.assert_continuous(AGENT);
    sim.assert_timestamps_continuous(AGENT);
    assert!(!sim.outputs.contains_key(&CUST), "nothing for the customer");
}

#[test]
fn tone_to_a_supervisor_and_replacing_a_tone() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(400);
    let now = sim.now();
    // A long tone, replaced after 100 ms by a 200 ms one at another frequency.
    sim.mixer.play_tone(now, SUP_A, tone_ms(2000, 1, 0));
    sim.run_until(500);
    let now = sim.now();
    let replacement = Tone {
        freq_hz: 1800.0,
        ..Tone::default()
    };
    sim.mixer.play_tone(now, SUP_A, replacement);
    sim.run_until(1000);
    assert!(!sim.mixer.tone_playing(SUP_A));
    let first = sim.heard_between(SUP_A, 420, 500);
    assert!((level_dbfs(&first, F_TONE, 8000) - LEVEL_DB).abs() <= 2.0);
    let second = sim.heard_between(SUP_A, 520, 700);
    // Three tones in one PCMU stream leave intermodulation products near -60 dBFS; the old
    // tone would read -20.
    let l = level_dbfs(&second, F_TONE, 8000);
    assert!(l < -50.0, "replaced, yet {l:.1} dBFS");
    assert!((level_dbfs(&second, 1800.0, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!((level_dbfs(&second, F_CUST, 8000) - LEVEL_DB).abs() <= 2.0);
    let after = sim.heard_between(SUP_A, 720, 1000);
    assert!(level_dbfs(&after, 1800.0, 8000) < -60.0, "ended");
    // Nobody else hears it.
    for leg in [CUST, AGENT] {
        let pcm = sim.heard_between(leg, 400, 1000);
        assert!(level_dbfs(&pcm, F_TONE, 8000) < -60.0);
        assert!(level_dbfs(&pcm, 1800.0, 8000) < -60.0);
    }
    sim.assert_continuous(SUP_A);
}
