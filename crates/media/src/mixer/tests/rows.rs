//! The rows of the who-hears-whom table, mode switches, DTMF, codecs, gain and robustness.

use super::*;

#[test]
fn no_supervisor_is_plain_relay() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.run_until(1000);
    assert_eq!(
        sim.mixer.poll_timeout(),
        None,
        "nothing is clocked without supervisors"
    );
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    let st = sim.mixer.stats();
    assert_eq!(st.counters.mixed_frames, 0);
    assert_eq!(st.counters.relayed_packets, 100);
}

#[test]
fn monitor_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST]);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_relayed_identical(CUST, AGENT, 0);
    sim.assert_relayed_identical(AGENT, CUST, 0);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // The supervisor's stream is one mix, clocked by the customer: one packet per 20 ms.
    let n = sim.outputs[&SUP_A].len();
    assert!((78..=80).contains(&n), "{n} supervisor packets in 1.6 s");
}

#[test]
fn coach_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_relayed_identical(CUST, AGENT, 0);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // The agent's frames are clocked by the customer's packets: sent in the same
    // millisecond as each customer packet arrived, one per packet.
    let cust_ms: Vec<u64> = sim.inputs[&CUST].iter().map(|s| s.ms).collect();
    let agent_ms: Vec<u64> = sim.outputs[&AGENT].iter().map(|s| s.ms).collect();
    assert_eq!(agent_ms, cust_ms);
}

#[test]
fn barge_row() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 400, &[F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
}

#[test]
fn two_supervisors_in_different_modes() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_B,
        13,
    );
    sim.run_until(1600);
    sim.assert_hears(CUST, 400, &[F_AGENT]);
    sim.assert_hears(AGENT, 400, &[F_CUST, F_A]);
    // A coach is heard by the agent, so the other supervisor hears it; a monitor is not.
    sim.assert_hears(SUP_A, 400, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 400, &[F_CUST, F_AGENT, F_A]);

    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
    sim.mixer.set_mode(now, SUP_B, SessionMode::Coach);
    sim.run_until(3200);
    sim.assert_hears(CUST, 2000, &[F_AGENT, F_A]);
    sim.assert_hears(AGENT, 2000, &[F_CUST, F_A, F_B]);
    sim.assert_hears(SUP_A, 2000, &[F_CUST, F_AGENT, F_B]);
    sim.assert_hears(SUP_B, 2000, &[F_CUST, F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A, SUP_B] {
        sim.assert_continuous(leg);
    }
}

#[test]
fn mode_switches_take_effect_within_one_packet() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Coach);
    sim.run_until(1005);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Barge);
    sim.run_until(1505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Monitor);
    sim.run_until(2005);

    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
    // Agent: supervisor absent before 505, present from the first packet after the switch
    // (the customer's at 520) until 1505, then gone at once.
    for s in &sim.outputs[&AGENT] {
        let l = packet_level(&sim, AGENT, s, F_A);
        let coach = (520..1505).contains(&s.ms);
        if coach {
            assert!(
                l > LEVEL_DB - 3.0,
                "agent packet at {} ms: coach at {l:.1}",
                s.ms
            );
        } else if s.ms > 60 {
            assert!(
                l < -50.0,
                "agent packet at {} ms: coach leaked at {l:.1}",
                s.ms
            );
        }
    }
    // Customer: supervisor only between the barge switch and the monitor switch.
    for s in &sim.outputs[&CUST] {
        let l = packet_level(&sim, CUST, s, F_A);
        if (1007..1505).contains(&s.ms) {
            assert!(
                l > LEVEL_DB - 3.0,
                "customer packet at {} ms: barge at {l:.1}",
                s.ms
            );
        } else {
            assert!(
                l < -50.0,
                "customer packet at {} ms: supervisor leaked",
                s.ms
            );
        }
    }
    // Back in monitor: plain relay again (payload bytes untouched).
    let relayed: Vec<&[u8]> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 1520)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = sim.inputs[&CUST]
        .iter()
        .filter(|s| s.ms >= 1520)
        .map(|s| &s.pkt[12..])
        .collect();
    assert_eq!(relayed, sent);
    // Marker bit: first generated packet after relay, and first relayed after generated.
    let marker_at = |leg: LegId| -> Vec<u64> {
        sim.outputs[&leg]
            .iter()
            .filter(|s| RtpHeader::parse(&s.pkt).unwrap().marker)
            .map(|s| s.ms)
            .collect()
    };
    assert_eq!(marker_at(AGENT), vec![20, 520, 1520]);
    assert_eq!(marker_at(CUST), vec![7, 1007, 1507]);
}

#[test]
fn agent_hears_coach_while_customer_is_on_hold() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    sim.senders.get_mut(&CUST).unwrap().on = false;
    sim.run_until(1500);
    sim.senders.get_mut(&CUST).unwrap().on = true;
    sim.run_until(2700);

    sim.assert_continuous(AGENT);
    let pkts = &sim.outputs[&AGENT];
    // One packet per 20 ms throughout, and timestamps advancing by one frame each.
    let held: Vec<&Sent> = pkts
        .iter()
        .filter(|s| (560..1500).contains(&s.ms))
        .collect();
    assert!(
        (46..=48).contains(&held.len()),
        "{} packets during hold",
        held.len()
    );
    let hs: Vec<RtpHeader> = pkts
        .iter()
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 160);
    }
    // The coach is heard during the hold; the customer's tone is not (it sends nothing).
    let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
    let mut pcm = Vec::new();
    let mut buf = [0i16; 160];
    for s in &held {
        let n = dec.decode(&s.pkt[12..], &mut buf).unwrap();
        pcm.extend_from_slice(&buf[..n]);
    }
    assert!((level_dbfs(&pcm, F_A, 8000) - LEVEL_DB).abs() <= 2.0);
    assert!(level_dbfs(&pcm, F_CUST, 8000) < -60.0);
    // After the hold the customer clocks the agent's output again.
    sim.assert_hears(AGENT, 1600, &[F_CUST, F_A]);
    let last: Vec<u64> = pkts
        .iter()
        .filter(|s| s.ms >= 1600)
        .map(|s| s.ms % 20)
        .collect();
    assert!(
        last.iter().all(|&m| m == 0),
        "clocked by the customer again"
    );
}

#[test]
fn supervisor_dtmf_is_consumed_and_reported_once() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(300);
    let pkts = sim.senders.get_mut(&SUP_A).unwrap().dtmf_packets(2);
    for p in pkts {
        sim.inject(SUP_A, p);
        sim.run_until(sim.ms + 10);
    }
    sim.run_until(600);
    assert_eq!(
        sim.mixer.poll_event(),
        Some(MixerEvent::Dtmf {
            leg: SUP_A,
            digit: '2'
        })
    );
    assert_eq!(sim.mixer.poll_event(), None);
    assert_eq!(sim.mixer.stats().counters.dtmf_consumed, 1);
    for (leg, pkts) in &sim.outputs {
        for s in pkts {
            let h = RtpHeader::parse(&s.pkt).unwrap();
            assert_ne!(h.payload_type, DTMF_PT, "digit forwarded to leg {leg}");
        }
    }
}

#[test]
fn customer_dtmf_reaches_the_agent_as_packets() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    // Relay: telephone-events relayed untouched.
    sim.run_until(200);
    let ev = sim.senders.get_mut(&CUST).unwrap().dtmf_packets(5);
    for p in &ev {
        sim.inject(CUST, p.clone());
    }
    let relayed: Vec<Vec<u8>> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| s.pkt.clone())
        .collect();
    assert_eq!(relayed, ev);

    // Mixed (coach present): passed through as packets, payload untouched, one timestamp.
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(500);
    let ev = sim.senders.get_mut(&CUST).unwrap().dtmf_packets(9);
    for p in &ev {
        sim.inject(CUST, p.clone());
        sim.run_until(sim.ms + 5);
    }
    sim.run_until(700);
    let passed: Vec<RtpHeader> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 500 && s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    assert_eq!(passed.len(), ev.len());
    assert!(passed.iter().all(|h| h.timestamp == passed[0].timestamp));
    assert!(passed[0].marker && !passed[1].marker);
    let payloads: Vec<&[u8]> = sim.outputs[&AGENT]
        .iter()
        .filter(|s| s.ms >= 500 && s.pkt[1] & 0x7F == DTMF_PT)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = ev.iter().map(|p| &p[12..]).collect();
    assert_eq!(payloads, sent);
    sim.assert_continuous(AGENT);
    // The digits are the customer's: no event for the owner.
    assert_eq!(sim.mixer.poll_event(), None);
}

#[test]
fn mixed_codecs_satisfy_the_table() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcma, F_AGENT, 7);
    sim.run_until(600);
    // Different codecs: transcoded, still clocked by the sender's packets.
    sim.assert_hears(AGENT, 100, &[F_CUST]);
    sim.assert_hears(CUST, 100, &[F_AGENT]);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::G722,
        F_A,
        3,
    );
    sim.run_until(1800);
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 700, &[F_CUST]);
    sim.assert_hears(CUST, 700, &[F_AGENT]);
    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Coach);
    sim.run_until(3000);
    sim.assert_hears(SUP_A, 1900, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 1900, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 1900, &[F_AGENT]);
    let now = sim.now();
    sim.mixer.set_mode(now, SUP_A, SessionMode::Barge);
    sim.run_until(4200);
    sim.assert_hears(SUP_A, 3100, &[F_CUST, F_AGENT]);
    sim.assert_hears(AGENT, 3100, &[F_CUST, F_A]);
    sim.assert_hears(CUST, 3100, &[F_AGENT, F_A]);
    for leg in [CUST, AGENT, SUP_A] {
        sim.assert_continuous(leg);
    }
}

#[cfg(feature = "opus")]
#[test]
fn opus_legs_satisfy_the_table() {
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Opus, F_AGENT, 7);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Opus,
        F_A,
        3,
    );
    sim.add(
        SUP_B,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::G722,
        F_B,
        13,
    );
    sim.run_until(1800);
    sim.assert_hears(CUST, 700, &[F_AGENT, F_A]);
    sim.assert_hears(AGENT, 700, &[F_CUST, F_A]);
    sim.assert_hears(SUP_A, 700, &[F_CUST, F_AGENT]);
    sim.assert_hears(SUP_B, 700, &[F_CUST, F_AGENT, F_A]);
}

#[test]
fn coach_gain_applies_to_the_agent_mix_only() {
    let cfg = MixerConfig {
        coach_gain_db: -6.0,
        ..MixerConfig::default()
    };
    let mut sim = Sim::new(cfg);
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Pcmu, F_AGENT, 7);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(1600);
    let (pcm, rate) = sim.heard(AGENT, 400);
    let x = &pcm[..8000];
    assert!((level_dbfs(x, F_A, rate) - (LEVEL_DB - 6.0)).abs() <= 1.0);
    assert!(
        (level_dbfs(x, F_CUST, rate) - LEVEL_DB).abs() <= 1.0,
        "customer not attenuated"
    );
    let (pcm, rate) = sim.heard(CUST, 400);
    assert!((level_dbfs(&pcm[..8000], F_A, rate) - LEVEL_DB).abs() <= 1.0);
}

#[test]
fn barge_promotion_keeps_the_customer_stream() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Barge),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(800);
    let now = sim.now();
    sim.mixer.remove_leg(now, AGENT);
    sim.senders.remove(&AGENT);
    sim.mixer
        .update_leg(now, SUP_A, params(LegRole::Agent, CodecKind::Pcmu))
        .unwrap();
    sim.run_until(2000);
    sim.assert_continuous(CUST);
    sim.assert_continuous(SUP_A);
    sim.assert_hears(CUST, 900, &[F_A]);
    sim.assert_hears(SUP_A, 900, &[F_CUST]);
    // Two parties left: plain relay again, and nothing clocked.
    assert_eq!(sim.mixer.poll_timeout(), None);
    let tail: Vec<&[u8]> = sim.outputs[&CUST]
        .iter()
        .filter(|s| s.ms > 900)
        .map(|s| &s.pkt[12..])
        .collect();
    let sent: Vec<&[u8]> = sim.inputs[&SUP_A]
        .iter()
        .filter(|s| s.ms > 900)
        .map(|s| &s.pkt[12..])
        .collect();
    assert_eq!(tail, sent);
}

#[test]
fn mix_saturates_instead_of_wrapping() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(100);
    // Customer and coach send a constant near full scale: the sum is far beyond it.
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let mut payload = [0u8; 160];
    enc.encode(&[30000i16; 160], &mut payload).unwrap();
    for _ in 0..20 {
        for id in [SUP_A, CUST] {
            let s = sim.senders.get_mut(&id).unwrap();
            let mut p = Vec::new();
            write_packet(&mut p, false, 0, s.seq, s.ts, s.ssrc, &payload);
            s.seq = s.seq.wrapping_add(1);
            s.ts = s.ts.wrapping_add(160);
            s.on = false;
            sim.inject(id, p);
        }
        sim.run_until(sim.ms + 20);
    }
    let (pcm, _) = sim.heard(AGENT, 260);
    assert!(pcm.len() >= 800);
    // 30000 + 30000 clips at full scale; a wrap-around would turn negative.
    assert!(pcm[..800].iter().all(|&x| x > 25000), "wrapped around");
    let clipped = pcm[..800].iter().filter(|&&x| x > 32000).count();
    assert!(
        clipped >= 720,
        "only {clipped} of 800 samples at full scale"
    );
}

#[test]
fn garbage_and_unknown_legs_are_ignored() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(100);
    let now = sim.now();
    for junk in [
        &[][..],
        &[0x80][..],
        &[0x40; 40][..],
        &[0x80, 200, 0, 1, 0, 0, 0, 0][..],
    ] {
        sim.mixer.handle_rtp(now, CUST, junk);
        sim.mixer.handle_rtp(now, 99, junk);
    }
    // A PCMU payload type the leg did not negotiate, and a huge packet.
    let mut p = Vec::new();
    write_packet(&mut p, false, 96, 1, 2, 3, &[0; 100]);
    sim.mixer.handle_rtp(now, SUP_A, &p);
    let mut big = Vec::new();
    write_packet(&mut big, false, 0, 60000, 2, 0x1017, &[0xFF; 1400]);
    sim.mixer.handle_rtp(now, CUST, &big);
    sim.run_until(1400);
    sim.assert_hears(AGENT, 300, &[F_CUST, F_A]);
    let st = sim.mixer.stats();
    let cust = st.legs.iter().find(|(id, _)| *id == CUST).unwrap().1;
    assert_eq!(cust.rx_invalid, 3);
    assert!(matches!(
        sim.mixer
            .add_leg(now, CUST, params(LegRole::Customer, CodecKind::Pcmu)),
        Err(MediaError::Mixer(_))
    ));
}

#[test]
fn quick_coach_monitor_coach_toggle_keeps_agent_sequence() {
    // Coach, then monitor for two customer packets (relayed), then coach again: the
    // packet-clocked path must not take the relayed packets for lost ones.
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Coach),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(505);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Monitor);
    sim.run_until(545);
    let t = sim.now();
    sim.mixer.set_mode(t, SUP_A, SessionMode::Coach);
    sim.run_until(1000);
    sim.assert_continuous(AGENT);
    let hs: Vec<RtpHeader> = sim.outputs[&AGENT]
        .iter()
        .map(|s| RtpHeader::parse(&s.pkt).unwrap())
        .collect();
    for w in hs.windows(2) {
        assert_eq!(w[1].timestamp.wrapping_sub(w[0].timestamp), 160);
    }
}

#[cfg(feature = "opus")]
#[test]
fn opus_agent_gets_30ms_pcmu_customer_packets() {
    // A 30 ms packet time is common on PCMU trunks, but Opus has no 30 ms frame.
    let mut sim = Sim::new(MixerConfig::default());
    sim.add(CUST, LegRole::Customer, CodecKind::Pcmu, F_CUST, 0);
    sim.add(AGENT, LegRole::Agent, CodecKind::Opus, F_AGENT, 7);
    sim.senders.get_mut(&CUST).unwrap().on = false;
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let (mut seq, mut ts, mut n) = (100u16, 5000u32, 0u64);
    for k in 0..40u64 {
        let pcm: Vec<i16> = (0..240u64)
            .map(|i| {
                let t = (n + i) as f64 / 8000.0;
                (AMP * (2.0 * PI * F_CUST * t).sin()).round() as i16
            })
            .collect();
        n += 240;
        let mut payload = [0u8; 240];
        enc.encode(&pcm, &mut payload).unwrap();
        let mut p = Vec::new();
        write_packet(&mut p, k == 0, 0, seq, ts, 0x1234, &payload);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(240);
        sim.inject(CUST, p);
        sim.run_until(sim.ms + 30);
    }
    let st = sim.mixer.stats();
    let agent = st.legs.iter().find(|(id, _)| *id == AGENT).unwrap().1;
    assert_eq!(agent.encode_errors, 0);
    let (pcm, rate) = sim.heard(AGENT, 300);
    assert!(
        pcm.len() >= 48_000 / 2,
        "agent got only {} samples",
        pcm.len()
    );
    assert!((level_dbfs(&pcm, F_CUST, rate) - LEVEL_DB).abs() <= 2.0);
    sim.assert_continuous(AGENT);
}

/// A customer packet that arrives late (scheduling jitter on the sender's side): the customer
/// never drops to silence in a supervisor frame (heard as a click and a level dip). The
/// supervisor's output is clocked by the customer's packets, so the late one makes its frame
/// when it arrives, and no frame is made without the customer in the meantime.
#[test]
fn a_late_packet_is_concealed_in_the_supervisor_mix() {
    let mut sim = Sim::call(CodecKind::Pcmu);
    sim.add(
        SUP_A,
        LegRole::Supervisor(SessionMode::Monitor),
        CodecKind::Pcmu,
        F_A,
        3,
    );
    sim.run_until(800);
    // The customer's packet for 820 ms is held back and arrives 45 ms late.
    sim.senders.get_mut(&CUST).unwrap().on = false;
    sim.run_until(821);
    let late = sim.senders.get_mut(&CUST).unwrap().packet();
    sim.run_until(865);
    sim.inject(CUST, late);
    sim.senders.get_mut(&CUST).unwrap().on = true;
    sim.run_until(1200);
    let frames: Vec<f64> = sim.outputs[&SUP_A]
        .iter()
        .filter(|s| (780..1000).contains(&s.ms))
        .map(|s| packet_level(&sim, SUP_A, s, F_CUST))
        .collect();
    // Concealment fades over a few frames (codec PLC), but never drops to silence.
    assert!(
        frames.iter().all(|l| *l > -60.0),
        "the customer never drops out of the supervisor's mix: {frames:?}"
    );
}

/// Customer packets lost in the network (one alone, then two in a row): the packet-clocked
/// outputs (the supervisor's monitor mix, the coached agent's mix) conceal them, one frame per
/// lost packet, instead of passing the gap on. The stream stays continuous and every frame
/// carries the customer's tone near its level, agent and coach included.
#[test]
fn lost_customer_packets_are_concealed_in_the_packet_clocked_mixes() {
    for mode in [SessionMode::Monitor, SessionMode::Coach] {
        let mut sim = Sim::call(CodecKind::Pcmu);
        sim.add(SUP_A, LegRole::Supervisor(mode), CodecKind::Pcmu, F_A, 3);
        sim.run_until(800);
        // The customer sends at every 20 ms; the packets of 820, 920 and 940 ms are lost.
        for (from, lost) in [(801u64, 1u64), (901, 2)] {
            sim.run_until(from);
            sim.senders.get_mut(&CUST).unwrap().on = false;
            for _ in 0..lost {
                let _dropped = sim.senders.get_mut(&CUST).unwrap().packet();
            }
            sim.run_until(from + 20 * lost);
            sim.senders.get_mut(&CUST).unwrap().on = true;
        }
        sim.run_until(1300);
        let out = if mode == SessionMode::Monitor {
            SUP_A
        } else {
            AGENT
        };
        sim.assert_continuous(out);
        let frames: Vec<f64> = sim.outputs[&out]
            .iter()
            .filter(|s| (760..1100).contains(&s.ms))
            .map(|s| packet_level(&sim, out, s, F_CUST))
            .collect();
        assert!(frames.len() >= 16, "{mode:?}: {} frames", frames.len());
        // Within 3 dB in every frame, but the second of two lost in a row: concealment fades
        // 20 % per 10 ms after the first 10 ms (G.711 Appendix I), about −4 dB there.
        let low = frames
            .iter()
            .filter(|l| (*l - LEVEL_DB).abs() > 3.0)
            .count();
        assert!(
            low <= 1 && frames.iter().all(|l| (*l - LEVEL_DB).abs() <= 6.0),
            "{mode:?}: the customer's tone in every frame: {frames:?}"
        );
        let other = if mode == SessionMode::Monitor {
            F_AGENT
        } else {
            F_A
        };
        let frames: Vec<f64> = sim.outputs[&out]
            .iter()
            .filter(|s| (760..1100).contains(&s.ms))
            .map(|s| packet_level(&sim, out, s, other))
            .collect();
        assert!(
            frames.iter().all(|l| (l - LEVEL_DB).abs() <= 3.0),
            "{mode:?}: {other} Hz within 3 dB in every frame: {frames:?}"
        );
    }
}
