//! Tests of the port pool: range arithmetic, random choice, quarantine, bind-failure retry.
#![allow(clippy::unwrap_used)]
use super::*;
use std::collections::HashSet;

fn seed(n: u8) -> [u8; 32] {
    [n; 32]
}

#[test]
fn range_bounds_and_parity() {
    let cap = |a, b| PortPool::new(a, b, seed(1)).capacity();
    assert_eq!(cap(20000, 29999), 5000);
    assert_eq!(cap(20001, 29999), 4999); // 20002..=29998
    assert_eq!(cap(20000, 20000), 0); // no room for RTCP
    assert_eq!(cap(20000, 20001), 1);
    assert_eq!(cap(20001, 20002), 0);
    assert_eq!(cap(20001, 20003), 1);
    assert_eq!(cap(30000, 20000), 0);
    assert_eq!(cap(65534, 65535), 1);
    assert_eq!(cap(65535, 65535), 0);
    assert_eq!(cap(0, 65535), 32768);

    let mut p = PortPool::new(1001, 1010, seed(1));
    let mut seen = HashSet::new();
    while let Ok(port) = p.allocate() {
        assert_eq!(port % 2, 0);
        assert!((1001..1010).contains(&port), "{port}");
        assert!(seen.insert(port));
    }
    assert_eq!(seen.len(), 4); // 1002, 1004, 1006, 1008
    assert!(matches!(p.allocate(), Err(MediaError::PoolExhausted)));
    assert_eq!(p.in_use(), 4);
}

#[test]
fn empty_pool_is_exhausted() {
    let mut p = PortPool::new(5, 5, seed(1));
    assert!(matches!(p.allocate(), Err(MediaError::PoolExhausted)));
}

#[test]
fn same_seed_same_choices_other_seed_other_choices() {
    let run = |s| {
        let mut p = PortPool::new(20000, 20199, seed(s));
        (0..20).map(|_| p.allocate().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
}

/// The old pool handed out pairs in sequence (+2 per leg, +4 per call). Chosen at random, the
/// step between consecutive ports is almost never the same twice, and every pair is about
/// equally likely.
#[test]
fn allocation_is_uniform_and_not_sequential() {
    const PAIRS: usize = 100;
    let mut counts = vec![0u32; PAIRS];
    let mut same_step = 0;
    let mut steps = 0;
    for s in 0..200u8 {
        let mut p = PortPool::new(20000, 20000 + 2 * PAIRS as u16 - 1, seed(s));
        let mut last: Option<i32> = None;
        let mut last_step: Option<i32> = None;
        // A call pattern: allocate 2, release 2, 20 times.
        for _ in 0..20 {
            let a = p.allocate().unwrap();
            let b = p.allocate().unwrap();
            for port in [a, b] {
                counts[usize::from((port - 20000) / 2)] += 1;
                if let Some(l) = last {
                    let step = i32::from(port) - l;
                    if last_step == Some(step) {
                        same_step += 1;
                    }
                    steps += 1;
                    last_step = Some(step);
                }
                last = Some(i32::from(port));
            }
            p.release(a);
            p.release(b);
        }
    }
    // Sequential: every step equal. Random over ~100 pairs: about 1 in 100.
    assert!(
        same_step * 20 < steps,
        "{same_step} of {steps} steps repeat the previous one"
    );
    // 8000 allocations over 100 pairs: 80 each expected; chi-square with 99 degrees of
    // freedom stays below 160 except with probability < 1e-4.
    let expected = 8000.0 / PAIRS as f64;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (f64::from(c) - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 160.0, "chi2 {chi2:.1}: {counts:?}");
}

#[test]
fn a_released_pair_waits_in_quarantine() {
    // 40 pairs: the quarantine holds 10.
    let mut p = PortPool::new(20000, 20079, seed(9));
    for round in 0..50 {
        let a = p.allocate().unwrap();
        assert!(p.release(a));
        // The next 29 allocations (all the pairs that are free) never give `a` back.
        let next: Vec<u16> = (0..29).map(|_| p.allocate().unwrap()).collect();
        assert!(!next.contains(&a), "round {round}: {a} reused at once");
        for port in next {
            p.release(port);
        }
    }
    // Nearly full: with nothing free, the longest-quarantined pair is used.
    let mut small = PortPool::new(20000, 20009, seed(1)); // 5 pairs, quarantine 1
    let a = small.allocate().unwrap();
    assert!(small.release(a));
    let others: Vec<u16> = (0..4).map(|_| small.allocate().unwrap()).collect();
    assert!(!others.contains(&a));
    assert_eq!(small.allocate().unwrap(), a);
    assert!(small.allocate().is_err());
}

#[test]
fn release_rejects_foreign_and_double_release() {
    let mut p = PortPool::new(20000, 20009, seed(1));
    let a = p.allocate().unwrap();
    assert!(!p.release(a + 1)); // RTCP port is not an RTP port
    assert!(!p.release(19998));
    assert!(!p.release(20010));
    let free = (0..5).map(|i| 20000 + 2 * i).find(|&x| x != a).unwrap();
    assert!(!p.release(free)); // in range but free
    assert!(p.release(a));
    assert!(!p.release(a)); // double release
    assert_eq!(p.in_use(), 0);
    assert_eq!(p.available(), 5);
}

#[test]
fn a_pair_that_failed_to_bind_is_retried_later() {
    let t0 = Instant::now();
    let mut p = PortPool::new(20000, 20005, seed(1)); // 3 pairs
    let a = p.allocate().unwrap();
    assert!(p.mark_unusable(a, t0)); // bind failed (EMFILE during a flood)
    assert_eq!((p.in_use(), p.unusable()), (0, 1));
    assert!(!p.mark_unusable(a, t0));
    assert!(!p.release(a)); // not allocated any more
    let b = p.allocate().unwrap();
    let c = p.allocate().unwrap();
    assert!(p.allocate().is_err()); // `a` is not handed out meanwhile
    assert_eq!(p.next_retry(), Some(t0 + RETRY_FAILED_AFTER));
    assert_eq!(
        p.retry_failed(t0 + RETRY_FAILED_AFTER - Duration::from_millis(1)),
        0
    );
    assert!(p.allocate().is_err());
    assert_eq!(p.retry_failed(t0 + RETRY_FAILED_AFTER), 1);
    assert_eq!(p.unusable(), 0);
    assert_eq!(p.allocate().unwrap(), a);
    assert!(p.is_allocated(a) && p.is_allocated(b) && p.is_allocated(c));
    assert!(!p.is_allocated(a + 1));
    // A free (or quarantined) pair can be marked too; clear_unusable restores at once.
    assert!(p.release(b));
    assert!(p.mark_unusable(b, t0));
    assert_eq!(p.available(), 0);
    p.clear_unusable();
    assert_eq!(p.available(), 1);
}
