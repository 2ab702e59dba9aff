//! The adaptive jitter buffer of `bibridge_media::jitter`, driven by a sequence of packets
//! decoded from the input with `arbitrary`: (arrival time delta, sequence number, timestamp,
//! SSRC choice, marker, payload length), interleaved with pops at the mixer's tick and resets.
//!
//! Input layout (read with `arbitrary::Unstructured`, so any bytes decode): a config header
//! (clock rate choice, min/max/initial delay in ms), then operations until the input is used
//! up: `op:u8` (low 2 bits: 0/1 push, 2 pop, 3 push+pop), `dt_us:u16`, then for a push
//! `seq:u16 ts:u32 flags:u8 len:u8`.
//!
//! Invariants besides "no panic": every received packet is counted exactly once (played, late,
//! duplicate, flushed, discarded, or still buffered); the applied delay stays within
//! [min_delay, max_delay]; a popped packet was pushed with that sequence number; `pop` ends
//! (bounded by the sequence space).
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use bibridge_media::jitter::{JbOut, JitterBuffer, JitterConfig, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

const CLOCKS: [u32; 8] = [8000, 8000, 16000, 48000, 8000, 0, 1, 90000];

fn check(jb: &JitterBuffer, cfg: &JitterConfig) {
    let s = jb.stats();
    let accounted =
        s.played + s.late + s.duplicates + s.flushed + s.discarded + jb.buffered() as u64;
    assert_eq!(
        s.received,
        accounted,
        "packets not accounted for: {s:?}, buffered {}",
        jb.buffered()
    );
    // The delay is kept in whole clock units, rounded inward. With a clock rate that is a
    // multiple of 1000 Hz (every real audio clock) a whole-millisecond bound is a whole number
    // of units, so the delay stays inside [min_delay, max_delay] exactly. With the degenerate
    // rates 0 (taken as 1) and 1 Hz a unit is a second and [13 ms, 13 ms] holds no unit at
    // all: the first campaign found that at once (fuzz/regressions/jitter/, README), so the
    // bound is only checked for real rates; those rates still run for the other checks.
    let max = cfg.max_delay;
    let min = cfg.min_delay.min(max);
    let d = jb.current_delay();
    let whole_ms_units = cfg.clock_rate >= 1000 && cfg.clock_rate % 1000 == 0;
    assert!(
        !whole_ms_units || d <= max && d >= min,
        "delay {d:?} outside [{min:?}, {max:?}]"
    );
    assert!(s.jitter_ms.is_finite());
}

fn run(u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let clock = CLOCKS[usize::from(u.arbitrary::<u8>()? & 7)];
    let min_ms: u8 = u.arbitrary()?;
    let max_ms: u16 = u.arbitrary()?;
    let init_ms: u8 = u.arbitrary()?;
    let cfg = JitterConfig {
        clock_rate: clock,
        min_delay: Duration::from_millis(u64::from(min_ms)),
        max_delay: Duration::from_millis(u64::from(max_ms % 2000)),
        initial_delay: Duration::from_millis(u64::from(init_ms)),
    };
    let mut jb = JitterBuffer::new(cfg);
    let payload_src = [0x55u8; MAX_PAYLOAD + 8];
    let mut pushed: HashSet<u16> = HashSet::new();
    let mut now = Instant::now();
    let ssrcs = [0x1111_1111u32, 0x2222_2222, 0, u32::MAX];

    while !u.is_empty() {
        let op: u8 = u.arbitrary()?;
        let dt_us: u16 = u.arbitrary()?;
        // Arrival deltas from 0 to ~6.5 s (op bit 7 scales by 100: long pauses and jumps).
        let scale = if op & 0x80 != 0 { 100 } else { 1 };
        now += Duration::from_micros(u64::from(dt_us) * scale);
        if op & 0x04 != 0 && op & 0x78 == 0x78 {
            jb.reset();
            pushed.clear();
        }
        if op & 3 != 2 {
            let seq: u16 = u.arbitrary()?;
            let ts: u32 = u.arbitrary()?;
            let flags: u8 = u.arbitrary()?;
            let len: u8 = u.arbitrary()?;
            let len = if flags & 0x80 != 0 {
                MAX_PAYLOAD + usize::from(len & 7)
            } else {
                usize::from(len)
            };
            let ssrc = ssrcs[usize::from(flags & 3)];
            jb.push(now, seq, ts, ssrc, flags & 0x04 != 0, &payload_src[..len]);
            pushed.insert(seq);
            check(&jb, &cfg);
        }
        if op & 3 >= 2 {
            let mut n = 0u32;
            while let Some(out) = jb.pop(now) {
                if let JbOut::Packet { seq, payload, .. } = out {
                    assert!(pushed.contains(&seq), "popped seq {seq} never pushed");
                    assert!(payload.len() <= MAX_PAYLOAD);
                }
                n += 1;
                assert!(n <= 70_000, "pop does not end");
            }
            let _ = jb.poll_timeout();
            let _ = jb.target_delay();
            check(&jb, &cfg);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
