//! An RTP endpoint on 127.0.0.1 for end-to-end tests: sends a tone as G.711 every 20 ms and
//! records everything it receives (packets and decoded audio).
//!
//! One UDP socket both sends and receives, as a phone doing symmetric RTP (RFC 4961) does, so
//! tests can check that bibridge answers to the source address ([`RtpPeer::packets_from`]).
//! No RTCP socket: bibridge must cope with a peer that sends none.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bibridge_media::g711::G711Law;
use bibridge_media::rtp::{is_rtcp, RtpHeader};
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::tone::ToneGen;

/// Samples per packet: 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
/// Packet interval.
pub const PTIME: Duration = Duration::from_millis(20);

/// A packet the peer received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPacket {
    /// Arrival time.
    pub at: Instant,
    /// Source address.
    pub from: SocketAddr,
    /// RTP payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload bytes (without header and padding).
    pub payload: Vec<u8>,
}

/// A packet the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentPacket {
    /// Send time.
    pub at: Instant,
    /// Destination.
    pub to: SocketAddr,
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

#[derive(Debug, Default)]
struct Record {
    received: Vec<ReceivedPacket>,
    audio: Vec<i16>,
    last_from: Option<SocketAddr>,
    rtcp_received: usize,
    invalid_received: usize,
    sent: Vec<SentPacket>,
}

#[derive(Debug)]
struct Shared {
    record: Mutex<Record>,
    target: Mutex<Option<SocketAddr>>,
    /// Next sequence number and timestamp to send (continue across start/stop, as a phone
    /// resuming from hold does).
    next: Mutex<(u16, u32)>,
}

/// Lock ignoring poisoning: a panicking test thread must not hide the record from others.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A G.711 RTP endpoint on 127.0.0.1. Dropping it stops its tasks.
#[derive(Debug)]
pub struct RtpPeer {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    ssrc: u32,
    shared: Arc<Shared>,
    runtime: Handle,
    recv_task: JoinHandle<()>,
    send_task: Mutex<Option<JoinHandle<()>>>,
}

impl RtpPeer {
    /// Bind an ephemeral port on 127.0.0.1 and start recording what arrives. Must be called
    /// within a tokio runtime (the tasks run on it).
    pub async fn bind() -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            record: Mutex::new(Record::default()),
            target: Mutex::new(None),
            // RFC 3550: random initial values.
            next: Mutex::new((rand::random(), rand::random())),
        });
        let runtime = Handle::current();
        let recv_task = runtime.spawn(receive_loop(Arc::clone(&socket), Arc::clone(&shared)));
        Ok(Self {
            socket,
            local,
            ssrc: rand::random(),
            shared,
            runtime,
            recv_task,
            send_task: Mutex::new(None),
        })
    }

    /// The local RTP address (put it in the SDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The SSRC of the stream this peer sends.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Start sending 20 ms packets to `target`: a tone of `tone_hz` at `level_dbfs`, or
    /// digital silence for `None`, encoded per `payload_type` (0 = PCMU, 8 = PCMA; any other
    /// type is sent with PCMU payload). Sequence numbers and timestamps continue from the
    /// previous run; the first packet of each run has the marker bit. Replaces a running
    /// sender.
    pub fn start_sending(
        &self,
        target: SocketAddr,
        tone_hz: Option<f64>,
        level_dbfs: f64,
        payload_type: u8,
    ) {
        self.stop_sending();
        *lock(&self.shared.target) = Some(target);
        let task = self.runtime.spawn(send_loop(
            Arc::clone(&self.socket),
            Arc::clone(&self.shared),
            self.ssrc,
            Source::Tone(tone_hz.map(|f| ToneGen::new(f, level_dbfs, 8000))),
            payload_type & 0x7F,
        ));
        *lock(&self.send_task) = Some(task);
    }

    /// Start sending `pcm` (8 kHz samples) in 20 ms packets to `target`, once, then digital
    /// silence; encoded and numbered as by [`start_sending`](Self::start_sending). For speech
    /// test audio (PESQ).
    pub fn start_sending_pcm(&self, target: SocketAddr, pcm: Vec<i16>, payload_type: u8) {
        self.stop_sending();
        *lock(&self.shared.target) = Some(target);
        let task = self.runtime.spawn(send_loop(
            Arc::clone(&self.socket),
            Arc::clone(&self.shared),
            self.ssrc,
            Source::Pcm(pcm, 0),
            payload_type & 0x7F,
        ));
        *lock(&self.send_task) = Some(task);
    }

    /// Stop the sender (no packet is sent after this returns... except one already being
    /// written by the socket).
    pub fn stop_sending(&self) {
        if let Some(task) = lock(&self.send_task).take() {
            task.abort();
        }
    }

    /// Whether the sender is running.
    pub fn is_sending(&self) -> bool {
        lock(&self.send_task)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Send the following packets to `addr` (e.g. after a re-INVITE moved the media).
    pub fn set_target(&self, addr: SocketAddr) {
        *lock(&self.shared.target) = Some(addr);
    }

    /// Send arbitrary bytes from this peer's socket (forged or malformed packets in tests).
    pub async fn send_raw(&self, target: SocketAddr, bytes: &[u8]) -> io::Result<usize> {
        self.socket.send_to(bytes, target).await
    }

    /// Decoded audio of all received PCMU/PCMA packets, in arrival order.
    pub fn received_audio(&self) -> Vec<i16> {
        lock(&self.shared.record).audio.clone()
    }

    /// Decoded audio of the received PCMU/PCMA packets of the last packet's SSRC, placed by RTP
    /// timestamp (as a receiver's playout would, from the earliest timestamp on) rather than
    /// in arrival order: a lost packet is a span of zeros, a reordered one lands in its place,
    /// a duplicate overwrites itself. Also returns the number of samples no packet covered.
    pub fn received_timeline(&self) -> (Vec<i16>, usize) {
        let r = lock(&self.shared.record);
        let Some(last) = r.received.last() else {
            return (Vec::new(), 0);
        };
        let ssrc = last.ssrc;
        let pkts: Vec<&ReceivedPacket> = r
            .received
            .iter()
            .filter(|p| {
                p.ssrc == ssrc && G711Law::from_static_payload_type(p.payload_type).is_some()
            })
            .collect();
        // Offsets from the last packet's timestamp, read as signed (wrap-safe for any span
        // below 3 days at 8 kHz).
        let rel = |ts: u32| i64::from(ts.wrapping_sub(last.timestamp) as i32);
        let Some(first) = pkts.iter().map(|p| rel(p.timestamp)).min() else {
            return (Vec::new(), 0);
        };
        let end = pkts
            .iter()
            .map(|p| rel(p.timestamp) + p.payload.len() as i64)
            .max()
            .unwrap_or(first);
        let len = usize::try_from(end - first).unwrap_or(0);
        let mut audio = vec![0i16; len];
        let mut covered = vec![false; len];
        for p in pkts {
            let Some(law) = G711Law::from_static_payload_type(p.payload_type) else {
                continue;
            };
            let at = usize::try_from(rel(p.timestamp) - first).unwrap_or(0);
            for (i, &b) in p.payload.iter().enumerate() {
                if let (Some(a), Some(c)) = (audio.get_mut(at + i), covered.get_mut(at + i)) {
                    *a = law.decode_sample(b);
                    *c = true;
                }
            }
        }
        let missing = covered.iter().filter(|c| !**c).count();
        (audio, missing)
    }

    /// All received RTP packets, in arrival order.
    pub fn received_packets(&self) -> Vec<ReceivedPacket> {
        lock(&self.shared.record).received.clone()
    }

    /// Number of received RTP packets.
    pub fn received_count(&self) -> usize {
        lock(&self.shared.record).received.len()
    }

    /// Number of received RTCP packets (recognised by [`is_rtcp`], not otherwise recorded) and
    /// of datagrams that were neither valid RTP nor RTCP.
    pub fn received_other(&self) -> (usize, usize) {
        let r = lock(&self.shared.record);
        (r.rtcp_received, r.invalid_received)
    }

    /// Forget everything received so far (packets, audio, source address).
    pub fn clear_received(&self) {
        let mut r = lock(&self.shared.record);
        r.received.clear();
        r.audio.clear();
        r.last_from = None;
        r.rtcp_received = 0;
        r.invalid_received = 0;
    }

    /// Source address of the last received packet.
    pub fn packets_from(&self) -> Option<SocketAddr> {
        lock(&self.shared.record).last_from
    }

    /// All packets sent so far, in order.
    pub fn sent_packets(&self) -> Vec<SentPacket> {
        lock(&self.shared.record).sent.clone()
    }

    /// Wait until at least `count` RTP packets were received in total; `false` on timeout.
    pub async fn wait_for_packets(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.received_count() >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.recv_task.abort();
        if let Some(task) = lock(&self.send_task).take() {
            task.abort();
        }
    }
}

async fn receive_loop(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(v) => v,
            // ICMP port unreachable from an earlier send shows up here on some systems:
            // not fatal for a receiver.
            Err(_) => continue,
        };
        let at = Instant::now();
        let pkt = &buf[..len];
        let mut r = lock(&shared.record);
        if is_rtcp(pkt) {
            r.rtcp_received += 1;
            continue;
        }
        let Ok(h) = RtpHeader::parse(pkt) else {
            r.invalid_received += 1;
            continue;
        };
        let payload = h.payload(pkt).to_vec();
        if let Some(law) = G711Law::from_static_payload_type(h.payload_type) {
            r.audio
                .extend(payload.iter().map(|&b| law.decode_sample(b)));
        }
        r.last_from = Some(from);
        r.received.push(ReceivedPacket {
            at,
            from,
            payload_type: h.payload_type,
            marker: h.marker,
            seq: h.seq,
            timestamp: h.timestamp,
            ssrc: h.ssrc,
            payload,
        });
    }
}

/// What a sender sends: a tone (or silence), or given samples once (then silence).
enum Source {
    Tone(Option<ToneGen>),
    Pcm(Vec<i16>, usize),
}

async fn send_loop(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    ssrc: u32,
    mut source: Source,
    payload_type: u8,
) {
    let law = G711Law::from_static_payload_type(payload_type).unwrap_or(G711Law::Ulaw);
    // Default missed-tick behaviour (burst) keeps 50 packets/s on average, like a phone's
    // clock-driven sender whose thread was briefly descheduled.
    let mut interval = tokio::time::interval(PTIME);
    let mut pcm = [0i16; SAMPLES_PER_PACKET];
    let mut pkt = vec![0u8; 12 + SAMPLES_PER_PACKET];
    let mut first = true;
    loop {
        interval.tick().await;
        let Some(target) = *lock(&shared.target) else {
            continue;
        };
        match &mut source {
            Source::Tone(Some(g)) => g.fill(&mut pcm),
            Source::Tone(None) => pcm.fill(0),
            Source::Pcm(data, pos) => {
                pcm.fill(0);
                let n = SAMPLES_PER_PACKET.min(data.len().saturating_sub(*pos));
                pcm[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
            }
        }
        let (seq, ts) = {
            let mut next = lock(&shared.next);
            let cur = *next;
            *next = (
                cur.0.wrapping_add(1),
                cur.1.wrapping_add(SAMPLES_PER_PACKET as u32),
            );
            cur
        };
        pkt[0] = 0x80;
        pkt[1] = payload_type | if first { 0x80 } else { 0 };
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        pkt[4..8].copy_from_slice(&ts.to_be_bytes());
        pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
        law.encode(&pcm, &mut pkt[12..]);
        // A send error (nobody listening yet) is what a phone would shrug off too.
        let _ = socket.send_to(&pkt, target).await;
        lock(&shared.record).sent.push(SentPacket {
            at: Instant::now(),
            to: target,
            payload_type,
            marker: first,
            seq,
            timestamp: ts,
            payload: pkt[12..].to_vec(),
        });
        first = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tone::tone_level_dbfs;

    #[tokio::test]
    async fn two_peers_hear_each_other_not_themselves() {
        let a = RtpPeer::bind().await.unwrap();
        let b = RtpPeer::bind().await.unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
        a.start_sending(b.local_addr(), Some(440.0), -20.0, 0);
        b.start_sending(a.local_addr(), Some(1000.0), -10.0, 8);
        assert!(a.is_sending());
        assert!(a.wait_for_packets(30, Duration::from_secs(5)).await);
        assert!(b.wait_for_packets(30, Duration::from_secs(5)).await);
        a.stop_sending();
        b.stop_sending();
        assert!(!a.is_sending());
        // Let packets in flight land.
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Symmetric: each packet came from the other's (sending) socket.
        assert_eq!(a.packets_from(), Some(b.local_addr()));
        assert_eq!(b.packets_from(), Some(a.local_addr()));

        let heard_by_a = a.received_audio();
        let heard_by_b = b.received_audio();
        assert!(heard_by_a.len() >= 30 * SAMPLES_PER_PACKET);
        let l = tone_level_dbfs(&heard_by_a, 1000.0, 8000);
        assert!((l + 10.0).abs() <= 0.5, "A hears B's tone at {l}");
        let l = tone_level_dbfs(&heard_by_a, 440.0, 8000);
        assert!(l < -60.0, "A hears its own tone at {l}");
        let l = tone_level_dbfs(&heard_by_b, 440.0, 8000);
        assert!((l + 20.0).abs() <= 0.5, "B hears A's tone at {l}");
        let l = tone_level_dbfs(&heard_by_b, 1000.0, 8000);
        assert!(l < -60.0, "B hears its own tone at {l}");

        // Loopback delivers everything in order: the received packets are the sent ones,
        // byte for byte, with the stream properties of a G.711 phone.
        for (rx, tx) in [(&a, &b), (&b, &a)] {
            let got = rx.received_packets();
            let sent = tx.sent_packets();
            assert_eq!(got.len(), sent.len());
            for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
                assert_eq!(g.payload, s.payload);
                assert_eq!(
                    (g.seq, g.timestamp, g.marker),
                    (s.seq, s.timestamp, s.marker)
                );
                assert_eq!(g.ssrc, tx.ssrc());
                assert_eq!(g.payload_type, s.payload_type);
                assert_eq!(g.payload.len(), SAMPLES_PER_PACKET);
                assert_eq!(g.marker, i == 0);
                if i > 0 {
                    assert_eq!(g.seq, got[i - 1].seq.wrapping_add(1));
                    assert_eq!(g.timestamp, got[i - 1].timestamp.wrapping_add(160));
                }
            }
        }
        assert_eq!(a.received_packets()[0].payload_type, 8);
        assert_eq!(b.received_packets()[0].payload_type, 0);
    }

    #[tokio::test]
    async fn stop_restart_retarget_and_clear() {
        let a = RtpPeer::bind().await.unwrap();
        let b = RtpPeer::bind().await.unwrap();
        let c = RtpPeer::bind().await.unwrap();
        a.start_sending(b.local_addr(), None, 0.0, 0);
        assert!(b.wait_for_packets(3, Duration::from_secs(5)).await);
        // Silence is encoded as µ-law 0xFF.
        assert!(b.received_packets()[0].payload.iter().all(|&x| x == 0xFF));
        a.set_target(c.local_addr());
        assert!(c.wait_for_packets(3, Duration::from_secs(5)).await);
        a.stop_sending();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let sent = a.sent_packets().len();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(a.sent_packets().len(), sent, "still sending after stop");
        let last = a.sent_packets().last().cloned().unwrap();
        assert_eq!(last.to, c.local_addr());

        // Restart continues numbering, with a new marker.
        c.clear_received();
        assert_eq!(c.received_count(), 0);
        assert_eq!(c.packets_from(), None);
        a.start_sending(c.local_addr(), Some(1000.0), -20.0, 8);
        assert!(c.wait_for_packets(2, Duration::from_secs(5)).await);
        let got = c.received_packets();
        assert!(got[0].marker);
        assert_eq!(got[0].seq, last.seq.wrapping_add(1));
        assert_eq!(got[0].timestamp, last.timestamp.wrapping_add(160));

        // Garbage and RTCP are counted, not recorded as RTP.
        a.stop_sending();
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.clear_received();
        a.send_raw(c.local_addr(), &[1, 2, 3]).await.unwrap();
        a.send_raw(c.local_addr(), &[0x80, 201, 0, 1, 0, 0, 0, 7])
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.received_other() != (1, 1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(c.received_other(), (1, 1));
        assert_eq!(c.received_count(), 0);
    }
}
