//! A seeded userspace network impairment relay for end-to-end tests (the test machines' kernels
//! have no `netem`).
//!
//! [`ImpairRelay`] sits between a test phone's RTP socket and bibridge for one media stream:
//!
//! ```text
//!   phone (RtpPeer) --> phone_addr() [relay] bridge_addr() --> bibridge
//!   phone (RtpPeer) <-- phone_addr() [relay] bridge_addr() <-- bibridge
//! ```
//!
//! The phone's SDP names [`ImpairRelay::bridge_addr`], so bibridge sends there, and the relay
//! sends to bibridge *from that same socket*: a bridge that latches strictly to the SDP address
//! accepts it. The phone sends to [`ImpairRelay::phone_addr`]; what bibridge sends is forwarded
//! to the phone's own address. Datagrams are forwarded byte for byte (RTP headers untouched), so
//! bibridge sees real loss and reordering through sequence numbers.
//!
//! Each direction gets an [`Impairment`]: random loss, a uniform random delay of 0..J ms per
//! packet (with J above the packet time later packets overtake earlier ones: reordering),
//! duplication, and one burst outage (everything dropped for D ms from T ms after the relay
//! started). The decisions come from a per-direction seeded generator ([`Impairer`], sans-IO and
//! unit-tested on its own), drawn in arrival order: the same seed and the same packet sequence
//! give the same pattern of losses, delays and duplicates.
//!
//! Bounded: loopback addresses only, at most [`QUEUE_SLOTS`] packets held (more are dropped and
//! counted), buffers allocated when the relay starts, and the task ends when the relay is
//! dropped.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Packets held in the delay queue at most (both directions together).
pub const QUEUE_SLOTS: usize = 512;
/// Largest datagram forwarded; longer ones are truncated by the receive call (RTP on loopback
/// in these tests is far below).
pub const MAX_DATAGRAM: usize = 2048;

/// What one direction of the relay does to the packets crossing it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Probability (0..=1) that a packet is dropped.
    pub loss: f64,
    /// Each packet is delayed by a uniform random 0..`jitter` (a jitter above the packet time
    /// reorders packets).
    pub jitter: Duration,
    /// Probability (0..=1) that a forwarded packet is sent twice (the copy with its own delay).
    pub duplicate: f64,
    /// A burst outage: every packet arriving in `[start, start + length)` after the relay
    /// started is dropped.
    pub outage: Option<(Duration, Duration)>,
}

impl Impairment {
    /// No impairment: every packet forwarded at once.
    pub const CLEAN: Impairment = Impairment {
        loss: 0.0,
        jitter: Duration::ZERO,
        duplicate: 0.0,
        outage: None,
    };

    /// Random loss and jitter, no duplication, no outage.
    pub fn loss_jitter(loss_percent: f64, jitter_ms: u64) -> Impairment {
        Impairment {
            loss: loss_percent / 100.0,
            jitter: Duration::from_millis(jitter_ms),
            ..Impairment::CLEAN
        }
    }
}

/// What happens to one packet: dropped, or sent after `delays[0]` (and, duplicated, again after
/// `delays[1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped by random loss.
    Lost,
    /// Dropped by the burst outage.
    Outage,
    /// Forwarded after the first delay; a duplicate after the second, if any.
    Forward(Duration, Option<Duration>),
}

/// The seeded decision maker of one direction (sans-IO: time comes in as the packet's arrival
/// offset since the relay started).
#[derive(Debug, Clone)]
pub struct Impairer {
    imp: Impairment,
    rng: u64,
}

impl Impairer {
    /// A decision maker for `imp`, seeded with `seed`.
    pub fn new(imp: Impairment, seed: u64) -> Impairer {
        Impairer { imp, rng: seed }
    }

    /// splitmix64: small, fast, and stable forever (the pattern of a seed never changes).
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn delay(&mut self) -> Duration {
        let j = self.imp.jitter.as_nanos() as f64;
        Duration::from_nanos((self.next_f64() * j) as u64)
    }

    /// The fate of the next packet, arriving `since_start` after the relay started. Every
    /// packet draws the same number of random values whatever its fate, so the pattern of a
    /// seed does not shift when one parameter changes.
    pub fn decide(&mut self, since_start: Duration) -> Fate {
        let lost = self.next_f64() < self.imp.loss;
        let d1 = self.delay();
        let dup = self.next_f64() < self.imp.duplicate;
        let d2 = self.delay();
        if let Some((start, len)) = self.imp.outage {
            if since_start >= start && since_start < start + len {
                return Fate::Outage;
            }
        }
        if lost {
            return Fate::Lost;
        }
        Fate::Forward(d1, dup.then_some(d2))
    }
}

/// Counters of one direction.
#[derive(Debug, Default)]
struct DirCounters {
    received: AtomicU64,
    lost: AtomicU64,
    outage: AtomicU64,
    duplicated: AtomicU64,
    forwarded: AtomicU64,
    overflow: AtomicU64,
}

/// A snapshot of one direction's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirStats {
    /// Datagrams received on this direction's input socket.
    pub received: u64,
    /// Dropped by random loss.
    pub lost: u64,
    /// Dropped by the burst outage.
    pub outage: u64,
    /// Extra copies scheduled.
    pub duplicated: u64,
    /// Datagrams sent (duplicates included).
    pub forwarded: u64,
    /// Dropped because the delay queue was full (or, towards bibridge, no target was set yet).
    pub overflow: u64,
}

impl DirCounters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            received: self.received.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            outage: self.outage.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            overflow: self.overflow.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    to_bridge: DirCounters,
    to_phone: DirCounters,
    /// bibridge's address for this stream (from the SDP answer); `None` until set.
    bridge: Mutex<Option<SocketAddr>>,
}

/// A relay between one phone socket and bibridge. See the [module docs](self).
#[derive(Debug)]
pub struct ImpairRelay {
    bridge_side: SocketAddr,
    phone_side: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl ImpairRelay {
    /// Bind the two sockets on 127.0.0.1 and start relaying for the phone at `phone` (its RTP
    /// socket, loopback only). `to_bridge` impairs what the phone sends, `to_phone` what bibridge
    /// sends; `seed` seeds both (differently). Must be called within a tokio runtime.
    pub async fn start(
        phone: SocketAddr,
        to_bridge: Impairment,
        to_phone: Impairment,
        seed: u64,
    ) -> io::Result<ImpairRelay> {
        if !phone.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the impairment relay works on loopback only",
            ));
        }
        let bridge_sock = UdpSocket::bind("127.0.0.1:0").await?;
        let phone_sock = UdpSocket::bind("127.0.0.1:0").await?;
        let bridge_side = bridge_sock.local_addr()?;
        let phone_side = phone_sock.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(run(
            bridge_sock,
            phone_sock,
            phone,
            [
                Impairer::new(to_bridge, seed ^ 0x0B51_D6E0),
                Impairer::new(to_phone, seed ^ 0x7E1E_F0AE),
            ],
            Arc::clone(&shared),
        ));
        Ok(ImpairRelay {
            bridge_side,
            phone_side,
            shared,
            task,
        })
    }

    /// The address to put in the phone's SDP: bibridge sends here, and the relay sends to
    /// bibridge from here.
    pub fn bridge_addr(&self) -> SocketAddr {
        self.bridge_side
    }

    /// The address the phone sends its RTP to.
    pub fn phone_addr(&self) -> SocketAddr {
        self.phone_side
    }

    /// Where to forward the phone's packets: bibridge's address from the SDP answer (loopback
    /// only). Until it is set, the phone's packets are dropped (counted as overflow).
    pub fn set_bridge(&self, addr: SocketAddr) -> io::Result<()> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the impairment relay works on loopback only",
            ));
        }
        *self.shared.bridge.lock().unwrap_or_else(|e| e.into_inner()) = Some(addr);
        Ok(())
    }

    /// Counters of the phone → bibridge direction.
    pub fn to_bridge_stats(&self) -> DirStats {
        self.shared.to_bridge.snapshot()
    }

    /// Counters of the bibridge → phone direction.
    pub fn to_phone_stats(&self) -> DirStats {
        self.shared.to_phone.snapshot()
    }
}

impl Drop for ImpairRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Direction index: 0 phone → bibridge, 1 bibridge → phone.
const TO_BRIDGE: usize = 0;
const TO_PHONE: usize = 1;

/// One held packet: its buffer slot, length and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    slot: usize,
    len: usize,
    dir: usize,
}

async fn run(
    bridge_sock: UdpSocket,
    phone_sock: UdpSocket,
    phone: SocketAddr,
    mut deciders: [Impairer; 2],
    shared: Arc<Shared>,
) {
    let started = Instant::now();
    // All buffers up front: a pool of slots, the free list and the release queue.
    let mut pool = vec![0u8; QUEUE_SLOTS * MAX_DATAGRAM];
    let mut free: Vec<usize> = (0..QUEUE_SLOTS).rev().collect();
    // (release time, arrival order) orders packets with equal release times by arrival.
    let mut queue: BinaryHeap<Reverse<(Instant, u64, Held)>> =
        BinaryHeap::with_capacity(QUEUE_SLOTS);
    let mut order = 0u64;
    // One receive buffer per socket (both reads are pending at once).
    let mut rx = [vec![0u8; MAX_DATAGRAM], vec![0u8; MAX_DATAGRAM]];
    let counters = [&shared.to_bridge, &shared.to_phone];
    loop {
        let next_release = queue.peek().map(|Reverse((at, _, _))| *at);
        let [rx_phone, rx_bridge] = &mut rx;
        let received = tokio::select! {
            r = phone_sock.recv_from(rx_phone) => r.ok().map(|(n, _)| (n, TO_BRIDGE)),
            r = bridge_sock.recv_from(rx_bridge) => r.ok().map(|(n, _)| (n, TO_PHONE)),
            _ = sleep_until_opt(next_release) => None,
        };
        if let Some((len, dir)) = received {
            let c = counters[dir];
            c.received.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            match deciders[dir].decide(now - started) {
                Fate::Lost => {
                    c.lost.fetch_add(1, Ordering::Relaxed);
                }
                Fate::Outage => {
                    c.outage.fetch_add(1, Ordering::Relaxed);
                }
                Fate::Forward(d1, d2) => {
                    if d2.is_some() {
                        c.duplicated.fetch_add(1, Ordering::Relaxed);
                    }
                    for d in std::iter::once(d1).chain(d2) {
                        let Some(slot) = free.pop() else {
                            c.overflow.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let at = slot * MAX_DATAGRAM;
                        pool[at..at + len].copy_from_slice(&rx[dir][..len]);
                        order += 1;
                        queue.push(Reverse((now + d, order, Held { slot, len, dir })));
                    }
                }
            }
        }
        // Send everything due.
        let now = Instant::now();
        while let Some(Reverse((at, _, held))) = queue.peek().copied() {
            if at > now {
                break;
            }
            queue.pop();
            let start = held.slot * MAX_DATAGRAM;
            let data = &pool[start..start + held.len];
            let c = counters[held.dir];
            let sent = if held.dir == TO_BRIDGE {
                let target = *shared.bridge.lock().unwrap_or_else(|e| e.into_inner());
                match target {
                    // From the bridge-side socket: the address the SDP names.
                    Some(t) => bridge_sock.send_to(data, t).await.is_ok(),
                    None => false,
                }
            } else {
                phone_sock.send_to(data, phone).await.is_ok()
            };
            if sent {
                c.forwarded.fetch_add(1, Ordering::Relaxed);
            } else {
                c.overflow.fetch_add(1, Ordering::Relaxed);
            }
            free.push(held.slot);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    fn fates(imp: Impairment, seed: u64, n: usize) -> Vec<Fate> {
        let mut d = Impairer::new(imp, seed);
        (0..n).map(|i| d.decide(PTIME * i as u32)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_pattern() {
        let imp = Impairment {
            loss: 0.05,
            jitter: Duration::from_millis(30),
            duplicate: 0.02,
            outage: None,
        };
        assert_eq!(fates(imp, 42, 1000), fates(imp, 42, 1000));
        assert_ne!(fates(imp, 42, 1000), fates(imp, 43, 1000));
    }

    #[test]
    fn loss_and_duplication_ratios_hold_over_10k_packets() {
        let imp = Impairment {
            loss: 0.05,
            duplicate: 0.03,
            ..Impairment::CLEAN
        };
        let f = fates(imp, 7, 10_000);
        let lost = f.iter().filter(|x| **x == Fate::Lost).count();
        let dup = f
            .iter()
            .filter(|x| matches!(x, Fate::Forward(_, Some(_))))
            .count();
        // 5 % of 10k = 500, sd ≈ 22: ±20 % is beyond 4 sd.
        assert!((400..=600).contains(&lost), "lost {lost}");
        assert!((230..=370).contains(&dup), "duplicated {dup}");
        // Without jitter nothing is delayed.
        assert!(f
            .iter()
            .all(|x| !matches!(x, Fate::Forward(d, _) if !d.is_zero())));
    }

    #[test]
    fn jitter_above_ptime_reorders_and_stays_in_range() {
        let jitter = Duration::from_millis(30);
        let f = fates(
            Impairment {
                jitter,
                ..Impairment::CLEAN
            },
            9,
            2000,
        );
        let release: Vec<Duration> = f
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Fate::Forward(d, None) => {
                    assert!(*d < jitter);
                    PTIME * i as u32 + *d
                }
                other => panic!("packet {i}: {other:?}"),
            })
            .collect();
        let overtaken = release.windows(2).filter(|w| w[1] < w[0]).count();
        // P(U1 - U0 > 20 ms) for U uniform 0..30 ms = 1/18 ≈ 5.6 %: about 111 of 2000.
        assert!((60..=170).contains(&overtaken), "reordered {overtaken}");
        // Jitter below the packet time never reorders.
        let f = fates(
            Impairment {
                jitter: Duration::from_millis(15),
                ..Impairment::CLEAN
            },
            9,
            2000,
        );
        let release: Vec<Duration> = f
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                Fate::Forward(d, _) => PTIME * i as u32 + *d,
                _ => unreachable!(),
            })
            .collect();
        assert!(release.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn outage_drops_everything_in_its_window_only() {
        let imp = Impairment {
            outage: Some((Duration::from_millis(1000), Duration::from_millis(200))),
            ..Impairment::CLEAN
        };
        let f = fates(imp, 1, 100);
        for (i, x) in f.iter().enumerate() {
            let in_outage = (50..60).contains(&i);
            assert_eq!(*x == Fate::Outage, in_outage, "packet {i}: {x:?}");
        }
    }

    /// Real sockets: the relay forwards both ways from the right sockets, impairs the phone's
    /// direction as configured and leaves the payloads untouched.
    #[tokio::test]
    async fn relays_both_ways_from_the_advertised_socket() {
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let bridge = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = ImpairRelay::start(
            phone.local_addr().unwrap(),
            Impairment::loss_jitter(50.0, 0),
            Impairment::CLEAN,
            5,
        )
        .await
        .unwrap();
        assert!(relay.set_bridge("192.0.2.1:4000".parse().unwrap()).is_err());
        relay.set_bridge(bridge.local_addr().unwrap()).unwrap();

        let n = 200u16;
        for i in 0..n {
            phone
                .send_to(&i.to_be_bytes(), relay.phone_addr())
                .await
                .unwrap();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_millis(300), bridge.recv_from(&mut buf)).await
        {
            assert_eq!(from, relay.bridge_addr(), "sent from the SDP address");
            assert_eq!(len, 2);
            got.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
        let s = relay.to_bridge_stats();
        assert_eq!(s.received, u64::from(n));
        assert_eq!(s.lost + s.forwarded, u64::from(n));
        assert_eq!(got.len() as u64, s.forwarded);
        assert!((60..=140).contains(&got.len()), "forwarded {}", got.len());
        // The same seed drops the same packets.
        let mut d = Impairer::new(Impairment::loss_jitter(50.0, 0), 5 ^ 0x0B51_D6E0);
        let expected: Vec<u16> = (0..n)
            .filter(|_| d.decide(Duration::ZERO) != Fate::Lost)
            .collect();
        assert_eq!(got, expected);

        // The other way: clean, to the phone, from the phone-side socket.
        bridge.send_to(b"rtp", relay.bridge_addr()).await.unwrap();
        let (len, from) = tokio::time::timeout(Duration::from_secs(2), phone.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..len], from), (&b"rtp"[..], relay.phone_addr()));
        assert_eq!(relay.to_phone_stats().forwarded, 1);
    }
}
