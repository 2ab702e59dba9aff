//! Tests of the jitter buffer: ordering, loss, adaptation, re-anchoring.
#![allow(clippy::unwrap_used)]
use super::*;

const MS: u32 = 8; // clock units per millisecond at 8 kHz

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    P { seq: u16, ts: u32 },
    L { ts: u32, dur: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Pkt {
    at: Duration,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
}

fn pkt(at_ms: u64, seq: u16, ts: u32) -> Pkt {
    Pkt {
        at: Duration::from_millis(at_ms),
        seq,
        ts,
        ssrc: 0x1234,
        marker: false,
    }
}

/// A clean 20 ms stream: packet n arrives at 20n ms.
fn stream(n: u16, seq0: u16, ts0: u32) -> Vec<Pkt> {
    (0..n)
        .map(|i| {
            pkt(
                20 * u64::from(i),
                seq0.wrapping_add(i),
                ts0.wrapping_add(160 * u32::from(i)),
            )
        })
        .collect()
}

fn payload_of(seq: u16) -> [u8; 3] {
    let b = seq.to_be_bytes();
    [b[0], b[1], 0xAB]
}

/// Event-driven virtual-time driver: pushes each packet at its arrival time (in arrival
/// order, pushes before pops at equal instants) and pops at the instants `poll_timeout`
/// names. `check` runs after every step with the number of packets pushed so far.
fn run_with(
    jb: &mut JitterBuffer,
    t0: Instant,
    pkts: &[Pkt],
    mut check: impl FnMut(usize, &JitterBuffer),
) -> Vec<(Duration, Ev)> {
    let mut order: Vec<Pkt> = pkts.to_vec();
    order.sort_by_key(|p| p.at);
    let mut out = Vec::new();
    let mut i = 0;
    let mut last = t0;
    for _ in 0..1_000_000 {
        let next_arr = order.get(i).map(|p| t0 + p.at);
        let t = match (next_arr, jb.poll_timeout()) {
            (None, None) => return out,
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (Some(a), Some(d)) => a.min(d),
        }
        .max(last);
        last = t;
        while i < order.len() && t0 + order[i].at <= t {
            let p = order[i];
            jb.push(t, p.seq, p.ts, p.ssrc, p.marker, &payload_of(p.seq));
            i += 1;
            check(i, jb);
        }
        while let Some(o) = jb.pop(t) {
            let ev = match o {
                JbOut::Packet {
                    ts, seq, payload, ..
                } => {
                    assert_eq!(payload, payload_of(seq), "payload of seq {seq}");
                    Ev::P { seq, ts }
                }
                JbOut::Lost { ts, duration } => Ev::L { ts, dur: duration },
            };
            out.push((t - t0, ev));
        }
        check(i, jb);
    }
    panic!("driver made no progress");
}

fn run(jb: &mut JitterBuffer, t0: Instant, pkts: &[Pkt]) -> Vec<(Duration, Ev)> {
    run_with(jb, t0, pkts, |_, _| {})
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn played_seqs(evs: &[(Duration, Ev)]) -> Vec<u16> {
    evs.iter()
        .filter_map(|(_, e)| match e {
            Ev::P { seq, .. } => Some(*seq),
            Ev::L { .. } => None,
        })
        .collect()
}

fn lost(evs: &[(Duration, Ev)]) -> Vec<(Duration, u32, u32)> {
    evs.iter()
        .filter_map(|(t, e)| match e {
            Ev::L { ts, dur } => Some((*t, *ts, *dur)),
            Ev::P { .. } => None,
        })
        .collect()
}

/// Deterministic uniform integers in `lo..=hi` (xorshift), so tests need no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

#[test]
fn in_order_stream_plays_at_initial_delay() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &stream(50, 1000, 5000));
    assert_eq!(evs.len(), 50);
    for (n, (t, e)) in evs.iter().enumerate() {
        let n16 = n as u16;
        assert_eq!(
            *e,
            Ev::P {
                seq: 1000 + n16,
                ts: 5000 + 160 * n as u32
            }
        );
        assert_eq!(
            *t,
            ms(20 * n as u64 + 20),
            "packet {n} plays 20 ms after arrival"
        );
    }
    let s = jb.stats();
    assert_eq!((s.received, s.played, s.lost, s.late), (50, 50, 0, 0));
    assert_eq!(s.jitter, 0);
    assert_eq!(jb.current_delay(), ms(20));
}

#[test]
fn poll_timeout_names_the_next_due_instant() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    assert_eq!(jb.poll_timeout(), None);
    assert!(jb.pop(t0).is_none());
    jb.push(t0, 1, 0, 7, false, &[1, 2]);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(20)));
    assert!(jb.pop(t0 + ms(19)).is_none());
    assert_eq!(
        jb.pop(t0 + ms(20)),
        Some(JbOut::Packet {
            ts: 0,
            seq: 1,
            marker: false,
            payload: &[1, 2]
        })
    );
    assert_eq!(jb.poll_timeout(), None);
}

#[test]
fn reordered_pair_is_played_in_order() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    pkts[4].at = ms(95); // due at 100: late on the wire but in time for its slot
    pkts[5].at = ms(81);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(played_seqs(&evs), (0..10).collect::<Vec<_>>());
    assert!(lost(&evs).is_empty());
    let s = jb.stats();
    assert_eq!((s.reordered, s.late, s.lost), (1, 0, 0));
}

#[test]
fn missing_packet_yields_one_lost_at_its_due_time() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 300, 8000);
    pkts.remove(5);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(lost(&evs), vec![(ms(120), 8000 + 5 * 160, 160)]);
    assert_eq!(
        played_seqs(&evs),
        vec![300, 301, 302, 303, 304, 306, 307, 308, 309]
    );
    let after = evs
        .iter()
        .position(|(_, e)| matches!(e, Ev::L { .. }))
        .unwrap();
    assert_eq!(evs[after + 1], (ms(140), Ev::P { seq: 306, ts: 8960 }));
    assert_eq!(jb.stats().lost, 1);
}

#[test]
fn lost_duration_comes_from_timestamp_deltas() {
    // 10 ms packets (80 units); two consecutive ones missing.
    let t0 = Instant::now();
    let mut pkts: Vec<Pkt> = (0..12u16)
        .map(|i| pkt(10 * u64::from(i), i, 80 * u32::from(i)))
        .collect();
    pkts.retain(|p| p.seq != 6 && p.seq != 7);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    // due = arrival + 20 ms: seq 6 at 80 ms, seq 7 at 90 ms
    assert_eq!(lost(&evs), vec![(ms(80), 6 * 80, 80), (ms(90), 7 * 80, 80)]);
    assert_eq!(played_seqs(&evs).len(), 10);
}

#[test]
fn late_packet_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    pkts[5].at = ms(130); // due at 120, seq 6 is there at 120: concealed, then late
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(lost(&evs), vec![(ms(120), 800, 160)]);
    assert!(!played_seqs(&evs).contains(&5));
    let s = jb.stats();
    assert_eq!((s.late, s.lost, s.played, s.duplicates), (1, 1, 9, 0));
    // The late packet raised the target (30 ms late + margin) at once, but the applied
    // delay waits for an underflow or a talkspurt start.
    assert!(jb.target_delay() >= ms(40), "{:?}", jb.target_delay());
    assert_eq!(jb.current_delay(), ms(20));
}

#[test]
fn duplicates_are_dropped() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 65534, 0);
    let mut dup_buffered = pkts[3];
    dup_buffered.at = ms(65); // seq 1 (wrapped) still buffered (due at 80)
    let mut dup_played = pkts[2];
    dup_played.at = ms(100); // seq 0 played at 60
    pkts.push(dup_buffered);
    pkts.push(dup_played);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(
        played_seqs(&evs),
        (0..10u16)
            .map(|i| 65534u16.wrapping_add(i))
            .collect::<Vec<_>>()
    );
    let s = jb.stats();
    assert_eq!((s.duplicates, s.late, s.lost, s.received), (2, 0, 0, 12));
}

/// A stream whose packets arrive `15 ms ± 15 ms` after their nominal time.
fn jittery(rng: &mut Rng, n: u16, seq0: u16, ts0: u32, t_ms: u64, amp: i64) -> Vec<Pkt> {
    (0..n)
        .map(|i| {
            let e = rng.range(-amp, amp);
            let at = (t_ms as i64 + 20 * i64::from(i) + amp + e) as u64;
            pkt(
                at,
                seq0.wrapping_add(i),
                ts0.wrapping_add(160 * u32::from(i)),
            )
        })
        .collect()
}

#[test]
fn jitter_grows_the_delay_until_nothing_is_late() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut pkts = jittery(&mut rng, 1500, 40000, 1, 0, 15);
        jittery_stream_adapts(&pkts);
        // The schedule is anchored on the first packet; when that one came through
        // fastest, everything else is up to 30 ms behind it and the delay must grow.
        pkts[0].at = ms(0);
        let d = jittery_stream_adapts(&pkts);
        assert!(d >= ms(30), "seed {seed}: delay {d:?}");
    }
}

/// Plays a ±15 ms jittery stream; returns the final delay.
fn jittery_stream_adapts(pkts: &[Pkt]) -> Duration {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut at_500 = None;
    let (mut j_sum, mut j_n) = (0.0, 0.0);
    let evs = run_with(&mut jb, t0, pkts, |pushed, jb| {
        assert!(jb.current_delay() <= ms(60));
        j_sum += jb.stats().jitter_ms;
        j_n += 1.0;
        if pushed == 500 && at_500.is_none() {
            at_500 = Some(jb.stats());
        }
    });
    let at_500 = at_500.unwrap();
    let s = jb.stats();
    // In order, each at most once.
    let seqs = played_seqs(&evs);
    assert!(seqs
        .windows(2)
        .all(|w| (w[1].wrapping_sub(w[0]) as i16) > 0));
    // After adaptation: nothing late, nothing concealed.
    assert_eq!(s.late, at_500.late, "late packets after adaptation");
    let ts_500 = 1 + 500 * 160;
    assert!(
        lost(&evs).iter().all(|(_, ts, _)| *ts < ts_500),
        "{:?}",
        lost(&evs)
    );
    assert_eq!(s.played + s.late, 1500);
    let d = jb.current_delay();
    assert!(d <= ms(60), "delay {d:?}");
    // RFC 3550 J of uniform ±15 ms arrival noise is E|e1 - e2| = 10 ms (on average: J
    // itself is a 16-packet moving estimate and fluctuates).
    let j_mean = j_sum / j_n;
    assert!(j_mean > 9.0 && j_mean < 11.5, "mean J = {j_mean} ms");
    d
}

#[test]
fn delay_never_exceeds_max_and_respects_min() {
    let t0 = Instant::now();
    let mut rng = Rng(42);
    let pkts = jittery(&mut rng, 500, 0, 0, 0, 200);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut peak = Duration::ZERO;
    run_with(&mut jb, t0, &pkts, |_, jb| {
        assert!(jb.current_delay() <= ms(60));
        assert!(jb.target_delay() <= ms(60));
        peak = peak.max(jb.current_delay());
    });
    assert_eq!(peak, ms(60), "wild jitter drives the delay to the maximum");

    let cfg = JitterConfig {
        min_delay: ms(40),
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::new(cfg);
    let evs = run(&mut jb, t0, &stream(5, 0, 0));
    assert_eq!(evs[0].0, ms(40), "initial delay is clamped up to min_delay");
    assert_eq!(jb.target_delay(), ms(40));
}

#[test]
fn ssrc_change_resyncs_without_lost_storm() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 100, 0);
    for i in 0..10u16 {
        let mut p = pkt(
            210 + 20 * u64::from(i),
            9000 + i,
            777_777 + 160 * u32::from(i),
        );
        p.ssrc = 0xBEEF;
        pkts.push(p);
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert!(lost(&evs).is_empty());
    assert_eq!(evs.len(), 20);
    // The target drifted a little below 20 ms on the clean first stream.
    let d = jb.current_delay();
    assert!(d > ms(19) && d <= ms(20), "{d:?}");
    for (i, (t, e)) in evs[10..].iter().enumerate() {
        assert_eq!(
            *e,
            Ev::P {
                seq: 9000 + i as u16,
                ts: 777_777 + 160 * i as u32
            }
        );
        assert_eq!(
            *t,
            ms(210 + 20 * i as u64) + d,
            "new source plays at arrival + delay"
        );
    }
    let s = jb.stats();
    assert_eq!((s.resyncs, s.flushed, s.late), (1, 0, 0));
}

#[test]
fn ssrc_change_flushes_old_tail() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    jb.push(t0, 1, 0, 1, false, &[1]);
    jb.push(t0 + ms(5), 2, 160, 1, false, &[2]);
    jb.push(t0 + ms(10), 50, 99, 2, false, &[3]);
    assert_eq!(jb.buffered(), 1);
    let s = jb.stats();
    assert_eq!((s.flushed, s.resyncs), (2, 1));
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(30)));
    assert!(matches!(
        jb.pop(t0 + ms(30)),
        Some(JbOut::Packet {
            seq: 50,
            ts: 99,
            ..
        })
    ));
}

#[test]
fn sequence_wrap_with_reordering() {
    let t0 = Instant::now();
    let mut pkts = stream(20, 65530, 0);
    pkts[5].at = ms(105); // seq 65535 after seq 0
    pkts[6].at = ms(101);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    let want: Vec<u16> = (0..20u16).map(|i| 65530u16.wrapping_add(i)).collect();
    assert_eq!(played_seqs(&evs), want);
    let s = jb.stats();
    assert_eq!((s.lost, s.late, s.resyncs, s.reordered), (0, 0, 0, 1));
}

#[test]
fn timestamp_wrap_keeps_the_schedule() {
    let t0 = Instant::now();
    let ts0 = u32::MAX - 3 * 160 + 1;
    let mut pkts = stream(20, 7, ts0);
    pkts.remove(4); // a loss right across the wrap
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    for (t, e) in &evs {
        let (Ev::P { ts, .. } | Ev::L { ts, .. }) = *e;
        let n = ts.wrapping_sub(ts0) / 160;
        assert_eq!(*t, ms(20 * u64::from(n) + 20), "{e:?}");
    }
    assert_eq!(lost(&evs), vec![(ms(100), ts0.wrapping_add(640), 160)]);
    assert_eq!(jb.stats().resyncs, 0);
    assert_eq!(evs.len(), 20);
}

#[test]
fn timestamp_jump_resyncs() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    for i in 10..20u16 {
        // Same cadence, timestamps suddenly 5 s ahead (and then back, 5 s behind).
        pkts.push(pkt(20 * u64::from(i), i, 40_000 + 160 * u32::from(i)));
    }
    for i in 20..30u16 {
        pkts.push(pkt(20 * u64::from(i), i, 160 * u32::from(i)));
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(played_seqs(&evs), (0..30).collect::<Vec<_>>());
    assert!(lost(&evs).is_empty());
    for (n, (t, _)) in evs.iter().enumerate() {
        assert_eq!(*t, ms(20 * n as u64 + 20));
    }
    assert_eq!(jb.stats().resyncs, 2);
}

#[test]
fn long_silence_without_marker_resyncs_on_empty_buffer() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    // 3 s of silence suppression, sequence numbers continue, no marker bit, and the
    // packets now arrive 12 ms later relative to their timestamps.
    for i in 10..15u16 {
        let at = 3000 + 12 + 20 * u64::from(i);
        pkts.push(pkt(at, i, 24_000 + 160 * u32::from(i)));
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(played_seqs(&evs), (0..15).collect::<Vec<_>>());
    let s = jb.stats();
    assert_eq!((s.resyncs, s.flushed, s.late, s.lost), (1, 0, 0, 0));
    let d = jb.current_delay();
    assert_eq!(evs[10].0, ms(3212) + d);
    assert_eq!(
        evs[10].1,
        Ev::P {
            seq: 10,
            ts: 24_000 + 1600
        }
    );
}

#[test]
fn marker_on_empty_buffer_reanchors_the_talkspurt() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    // 400 ms of silence (timestamps advance), then the path got 35 ms slower.
    for i in 10..20u16 {
        let mut p = pkt(400 + 35 + 20 * u64::from(i), i, 3200 + 160 * u32::from(i));
        p.marker = i == 10;
        pkts.push(p);
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(played_seqs(&evs), (0..20).collect::<Vec<_>>());
    let s = jb.stats();
    assert_eq!((s.talkspurts, s.resyncs, s.late, s.lost), (1, 0, 0, 0));
    let d = jb.current_delay();
    assert!(d > ms(10) && d <= ms(20), "{d:?}");
    for (i, (t, _)) in evs[10..].iter().enumerate() {
        assert_eq!(
            *t,
            ms(635 + 20 * i as u64) + d,
            "plays at its arrival + delay"
        );
    }
}

#[test]
fn marker_with_buffered_audio_does_not_reanchor() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    pkts[5].marker = true; // arrives at 95 while seq 4 (due 100) is still buffered
    pkts[5].at = ms(95);
    pkts[4].at = ms(90);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    assert_eq!(jb.stats().talkspurts, 0);
    assert_eq!(evs[5], (ms(120), Ev::P { seq: 5, ts: 800 }));
}

#[test]
fn delay_shrinks_slowly_after_jitter_calms_down() {
    let t0 = Instant::now();
    let mut rng = Rng(7);
    let mut pkts = Vec::new();
    let mut t_ms = 0u64;
    let mut seq = 0u16;
    let mut ts = 0u32;
    for spurt in 0..40 {
        let amp = if spurt < 10 { 15 } else { 0 };
        let mut s = jittery(&mut rng, 50, seq, ts, t_ms, amp);
        s[0].marker = true;
        pkts.extend(s);
        // 50 packets, then 300 ms of silence
        t_ms += 50 * 20 + 300;
        ts = ts.wrapping_add(50 * 160 + 300 * MS);
        seq = seq.wrapping_add(50);
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut at_starts = Vec::new();
    let mut late_calm = None;
    run_with(&mut jb, t0, &pkts, |pushed, jb| {
        if pushed > 0 && (pushed - 1) % 50 == 0 && at_starts.len() * 50 < pushed {
            at_starts.push(jb.current_delay());
        }
        if pushed == 11 * 50 && late_calm.is_none() {
            late_calm = Some(jb.stats().late);
        }
    });
    assert_eq!(at_starts.len(), 40);
    let peak = *at_starts[..10].iter().max().unwrap();
    assert!(peak >= ms(30), "jitter raised the delay: {at_starts:?}");
    let calm = &at_starts[10..];
    // Slowly: no big step from one talkspurt to the next...
    assert!(
        calm.windows(2).all(|w| w[1] + ms(6) >= w[0]),
        "{at_starts:?}"
    );
    assert!(calm[1] >= ms(25), "{at_starts:?}");
    // ...but eventually down to about half a frame.
    assert!(*calm.last().unwrap() <= ms(12), "{at_starts:?}");
    assert!(calm.last().unwrap() < &peak);
    assert_eq!(
        jb.stats().late,
        late_calm.unwrap(),
        "nothing late while shrinking"
    );
    // A jittery talkspurt whose marker packet is overtaken by the next one starts on the
    // old anchor (the buffer is not empty when the marker arrives); calm ones all re-anchor.
    assert!(jb.stats().talkspurts >= 35, "{:?}", jb.stats());
}

#[test]
fn far_sequence_jump_needs_confirmation() {
    let t0 = Instant::now();
    let mut pkts = stream(10, 0, 0);
    pkts.push(pkt(95, 20_000, 880)); // one stray packet: ignored
    for i in 0..5u16 {
        // a restarted sender: confirmed by its second packet
        pkts.push(pkt(
            200 + 20 * u64::from(i),
            30_000 + i,
            1600 + 160 * u32::from(i),
        ));
    }
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let evs = run(&mut jb, t0, &pkts);
    let seqs = played_seqs(&evs);
    assert_eq!(&seqs[..10], &(0..10).collect::<Vec<_>>()[..]);
    assert_eq!(&seqs[10..], &[30_001, 30_002, 30_003, 30_004]);
    let s = jb.stats();
    assert_eq!((s.discarded, s.resyncs, s.lost), (2, 1, 0));
}

#[test]
fn oversized_payload_is_discarded() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    jb.push(t0, 1, 0, 1, false, &[0u8; MAX_PAYLOAD + 1]);
    jb.push(t0, 2, 160, 1, false, &[0u8; MAX_PAYLOAD]);
    assert_eq!(jb.stats().discarded, 1);
    assert_eq!(jb.buffered(), 1);
    assert!(
        matches!(jb.pop(t0 + ms(20)), Some(JbOut::Packet { seq: 2, payload, .. }) if payload.len() == MAX_PAYLOAD)
    );
}

#[test]
fn reset_forgets_everything() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut rng = Rng(3);
    run(&mut jb, t0, &jittery(&mut rng, 100, 0, 0, 0, 15));
    jb.push(t0 + ms(5000), 77, 1, 1, false, &[1]);
    jb.reset();
    assert_eq!(jb.stats(), JitterStats::default());
    assert_eq!(jb.poll_timeout(), None);
    assert_eq!(jb.buffered(), 0);
    assert_eq!(jb.current_delay(), ms(20));
    let t1 = t0 + ms(10_000);
    jb.push(t1, 5, 5, 9, false, &[9]);
    assert_eq!(jb.poll_timeout(), Some(t1 + ms(20)));
}

fn check_invariants(jb: &JitterBuffer) {
    let s = jb.stats();
    assert!(jb.buffered() <= RING_SLOTS);
    assert_eq!(
        s.received,
        s.played + s.late + s.duplicates + s.flushed + s.discarded + jb.buffered() as u64,
        "{s:?}"
    );
    assert!(jb.current_delay() <= ms(60));
    assert!(jb.target_delay() <= ms(60));
}

#[test]
fn random_input_never_panics() {
    let t0 = Instant::now();
    let mut rng = Rng(0xDEAD_BEEF);
    for clock_rate in [0u32, 1, 8000, 48000, u32::MAX] {
        let cfg = JitterConfig {
            clock_rate,
            ..JitterConfig::default()
        };
        let mut jb = JitterBuffer::new(cfg);
        let buf = [0x5Au8; 1600];
        let mut now = t0;
        for _ in 0..20_000 {
            match rng.range(0, 9) {
                0 => now += ms(rng.range(0, 3000) as u64),
                1 => now = t0 + ms(rng.range(0, 100) as u64), // clock going backwards
                2..=5 => now += ms(rng.range(0, 30) as u64),
                _ => {}
            }
            let seq = rng.next() as u16;
            let ts = rng.next() as u32;
            let ssrc = rng.range(0, 2) as u32;
            let len = rng.range(0, 1600) as usize;
            jb.push(now, seq, ts, ssrc, rng.range(0, 1) == 1, &buf[..len]);
            while let Some(o) = jb.pop(now) {
                if let JbOut::Packet { payload, .. } = o {
                    assert!(payload.len() <= MAX_PAYLOAD);
                }
            }
            let _ = jb.poll_timeout();
            check_invariants(&jb);
            if rng.range(0, 5000) == 0 {
                jb.reset();
            }
        }
    }
}

#[test]
fn perturbed_stream_stays_ordered() {
    // Mostly a real stream: losses, duplicates, reordering, marker bits, timestamp and
    // sequence jumps and SSRC flips; played packets stay in order between resyncs.
    let t0 = Instant::now();
    let mut rng = Rng(0x1234_5678);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let (mut seq, mut ts, mut ssrc) = (65000u16, u32::MAX - 100_000, 1u32);
    let mut t = t0;
    let mut held: Option<(u16, u32)> = None;
    let mut last_played: Option<(u64, u16)> = None;
    for _ in 0..50_000 {
        t += ms(rng.range(5, 35) as u64);
        match rng.range(0, 199) {
            0 => ts = ts.wrapping_add(rng.next() as u32),
            1 => seq = seq.wrapping_add(rng.range(64, 40_000) as u16),
            2 => ssrc ^= 1,
            _ => {}
        }
        let marker = rng.range(0, 30) == 0;
        let r = rng.range(0, 99);
        if r < 8 {
            // lost
        } else if r < 14 {
            held = Some((seq, ts)); // delivered after the next one
        } else {
            jb.push(t, seq, ts, ssrc, marker, &seq.to_be_bytes());
            if r < 18 {
                jb.push(t, seq, ts, ssrc, false, &seq.to_be_bytes());
            }
            if let Some((s, x)) = held.take() {
                jb.push(t, s, x, ssrc, false, &s.to_be_bytes());
            }
        }
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
        while let Some(o) = jb.pop(t) {
            if let JbOut::Packet {
                seq: s, payload, ..
            } = o
            {
                assert_eq!(payload, s.to_be_bytes());
                let epoch = jb.stats().resyncs;
                if let Some((e, prev)) = last_played {
                    if e == epoch {
                        assert!((s.wrapping_sub(prev) as i16) > 0, "{prev} then {s}");
                    }
                }
                last_played = Some((epoch, s));
            }
        }
        check_invariants(&jb);
    }
    let s = jb.stats();
    assert!(
        s.played > 40_000 && s.lost > 1000 && s.duplicates > 1000,
        "{s:?}"
    );
}
