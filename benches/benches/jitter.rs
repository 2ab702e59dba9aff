//! Jitter buffer hot path: one `push` plus the `pop`s of one mixer tick per packet.
//! Run with `cargo bench -p bibridge-benches --bench jitter`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bibridge_media::jitter::{JbOut, JitterBuffer, JitterConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Pushes packet `n` at `now` and pops everything due; returns the payload bytes played.
fn step(jb: &mut JitterBuffer, now: Instant, n: u64, payload: &[u8]) -> usize {
    // truncation intended: RTP sequence numbers and timestamps wrap
    jb.push(
        now,
        n as u16,
        (n as u32).wrapping_mul(160),
        0x1234_5678,
        false,
        payload,
    );
    let mut bytes = 0;
    while let Some(out) = jb.pop(now) {
        if let JbOut::Packet { payload, .. } = out {
            bytes += payload.len();
        }
    }
    bytes
}

fn jitter(c: &mut Criterion) {
    let payload = [0x55u8; 160]; // 20 ms of G.711
    let mut g = c.benchmark_group("jitter");
    g.throughput(Throughput::Elements(1));

    g.bench_function("push+pop per packet, steady 20 ms stream", |b| {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut n = 0u64;
        b.iter(|| {
            let now = t0 + Duration::from_millis(20 * n);
            let played = step(&mut jb, now, n, black_box(&payload));
            n += 1;
            played
        })
    });

    g.bench_function("push+pop per packet, every 8th pair swapped", |b| {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut n = 0u64;
        b.iter(|| {
            // Send order 0,1,..,6,8,7,9,..: packet 7 of every 8 is overtaken by packet 8.
            let seq = match n % 8 {
                7 => n + 1,
                0 if n > 0 => n - 1,
                _ => n,
            };
            let now = t0 + Duration::from_millis(20 * n);
            let played = step(&mut jb, now, seq, black_box(&payload));
            n += 1;
            played
        })
    });
    g.finish();
}

criterion_group!(benches, jitter);
criterion_main!(benches);
