//! The media engine: one thread, one UDP socket per role (customer, agent, supervisor), every
//! stream of that role multiplexed on it.
//!
//! Sending: each stream gets one of [`SLOTS`] 1 ms slots inside the 20 ms packet time, so the
//! load is spread over the period the way independent phones spread it, and each slot's packets
//! of one role leave in `sendmmsg` batches. The send time recorded for a packet is read just
//! before its batch's system call.
//!
//! Receiving: `recvmmsg` batches with kernel receive timestamps (`SO_TIMESTAMPNS`), so the time
//! a packet spent waiting in our socket buffer is not counted against bibridge. Streams are told
//! apart by bibridge's source port (bibridge uses one port per leg).

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrIn,
};
use nix::sys::time::TimeSpec;

use crate::audio::{self, FRAME};
use crate::stats::{new_histogram, record_ns, SendTable, SeqTracker};
use crate::SessionMode;

/// Slots per 20 ms packet time.
pub const SLOTS: usize = 20;
/// Packet time.
pub const PTIME: Duration = Duration::from_millis(20);
/// Every `PROBE_EVERY`th customer packet is a probe (one per 500 ms).
pub const PROBE_EVERY: u32 = 25;
/// Messages per `sendmmsg` / `recvmmsg` call.
const BATCH: usize = 64;
const RTP_HEADER: usize = 12;
const PACKET: usize = RTP_HEADER + FRAME;
/// Probe detections later than this after the probe was sent are not attributed to it.
const PROBE_WINDOW_NS: i64 = PROBE_EVERY as i64 * 20_000_000;
/// Socket buffers: a second of 1000 calls' packets on one socket.
const SOCKET_BUFFER: usize = 16 << 20;

/// Who a socket plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer = 0,
    Agent = 1,
    Supervisor = 2,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Customer, Role::Agent, Role::Supervisor];

    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
        }
    }
}

/// A measured media path (who sends → who receives, and whether bibridge relays or mixes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Customer → agent on a call without a session: relayed, timed by payload key.
    RelayC2A = 0,
    /// Customer → agent on a monitored call: still relayed, timed by payload key.
    RelayC2AMonitored = 1,
    /// Agent → customer (no barge): relayed, timed by payload key.
    RelayA2C = 2,
    /// Customer → agent while coached or barged: mixed, timed by probe.
    MixedC2A = 3,
    /// Customer → supervisor (the supervisor's mix of customer + agent): timed by probe.
    MonitorMix = 4,
}

impl Path {
    pub const ALL: [Path; 5] = [
        Path::RelayC2A,
        Path::RelayC2AMonitored,
        Path::RelayA2C,
        Path::MixedC2A,
        Path::MonitorMix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::RelayC2A => "relay customer->agent",
            Path::RelayC2AMonitored => "relay customer->agent (monitored call)",
            Path::RelayA2C => "relay agent->customer",
            Path::MixedC2A => "mixed customer->agent (coach/barge)",
            Path::MonitorMix => "mix customer->supervisor",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Path::RelayC2A => "relay_c2a",
            Path::RelayC2AMonitored => "relay_c2a_monitored",
            Path::RelayA2C => "relay_a2c",
            Path::MixedC2A => "mixed_c2a",
            Path::MonitorMix => "monitor_mix",
        }
    }

    /// Relayed paths are timed by key, mixed ones by probe.
    pub fn is_relay(self) -> bool {
        matches!(
            self,
            Path::RelayC2A | Path::RelayC2AMonitored | Path::RelayA2C
        )
    }
}

/// Which path a packet received by `role` on a call in `mode` took; `None` for the customer's
/// mix during barge (agent + supervisor, not timed).
pub fn classify(role: Role, mode: Option<SessionMode>) -> Option<Path> {
    match (role, mode) {
        (Role::Agent, None) => Some(Path::RelayC2A),
        (Role::Agent, Some(SessionMode::Monitor)) => Some(Path::RelayC2AMonitored),
        (Role::Agent, Some(_)) => Some(Path::MixedC2A),
        (Role::Customer, Some(SessionMode::Barge)) => None,
        (Role::Customer, _) => Some(Path::RelayA2C),
        (Role::Supervisor, _) => Some(Path::MonitorMix),
    }
}

/// Commands from the signalling side.
pub enum Ctl {
    /// Start sending `role`'s stream of `call` to `dest` (bibridge's port for that leg).
    AddTx {
        role: Role,
        call: u32,
        dest: SocketAddr,
    },
    /// Packets from bibridge port `src_port` on `role`'s socket belong to `call`.
    AddRx {
        role: Role,
        call: u32,
        src_port: u16,
    },
    /// A session of `mode` is attached to `call` (changes which paths its packets time).
    SetMode {
        call: u32,
        mode: Option<SessionMode>,
    },
    /// Stop sending for `call` (before its BYE).
    StopCall { call: u32 },
    /// Start the measurement window: counters and histograms start from zero.
    BeginWindow,
    /// End the window and hand over what was measured.
    EndWindow(Sender<Measure>),
    /// Exit the thread.
    Stop,
}

/// Live counters for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: [AtomicU64; 3],
    pub received: [AtomicU64; 3],
    /// Sum of sequence-number losses over all received streams in the window.
    pub lost: AtomicU64,
    pub expected: AtomicU64,
}

/// What one window measured.
#[derive(Debug, Clone)]
pub struct Measure {
    pub duration: Duration,
    pub sent: [u64; 3],
    pub received: [u64; 3],
    /// Per receiving role: `(expected, lost)` from RTP sequence numbers.
    pub seq_loss: [(u64, u64); 3],
    pub latency: Vec<Histogram<u64>>,
    /// Per path: packets on a relayed path that carried no intact key (payload altered).
    pub unkeyed: [u64; 5],
    /// Per path: packets whose key named another call's stream (cross-talk).
    pub misrouted: [u64; 5],
    /// Keys whose send time was no longer in the table (more than 5 s late).
    pub stale_keys: u64,
    /// Customer probe frames sent.
    pub probes_sent: u64,
    /// Per path: probes detected.
    pub probes_seen: [u64; 5],
    /// Per path (index 5: the customer's mix during barge): packets received.
    pub path_packets: [u64; 6],
    /// Packets from a source port no stream was registered for.
    pub unknown_source: u64,
    pub send_errors: u64,
    /// 1 ms send slots skipped because the generator stalled for more than 100 ms.
    pub skipped_slots: u64,
}

impl Measure {
    fn new() -> Self {
        Self {
            duration: Duration::ZERO,
            sent: [0; 3],
            received: [0; 3],
            seq_loss: [(0, 0); 3],
            latency: Path::ALL.iter().map(|_| new_histogram()).collect(),
            unkeyed: [0; 5],
            misrouted: [0; 5],
            stale_keys: 0,
            probes_sent: 0,
            probes_seen: [0; 5],
            path_packets: [0; 6],
            unknown_source: 0,
            send_errors: 0,
            skipped_slots: 0,
        }
    }
}

struct TxStream {
    role: Role,
    call: u32,
    dest: SockaddrIn,
    ssrc: u32,
    seq: u16,
    ts: u32,
    counter: u32,
    table: SendTable,
    active: bool,
}

struct RxStream {
    role: Role,
    call: u32,
    tracker: SeqTracker,
    probe_seen: u64,
}

#[derive(Default, Clone)]
struct CallMedia {
    mode: Option<SessionMode>,
    probe_id: u64,
    probe_ns: i64,
}

/// Stream id used in payload keys: three per call, one per role.
pub fn stream_id(call: u32, role: Role) -> u32 {
    call * 3 + role as u32
}

/// CLOCK_REALTIME in nanoseconds: the clock the kernel's receive timestamps use.
pub fn realtime_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Binds the three role sockets on `ip` (ephemeral ports) with large buffers and kernel receive
/// timestamps.
pub fn bind_sockets(ip: std::net::IpAddr) -> std::io::Result<[UdpSocket; 3]> {
    let mk = || -> std::io::Result<UdpSocket> {
        let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        // The *Force variants pass net.core.rmem_max when we are root; fall back otherwise.
        if setsockopt(&s, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
            let _ = setsockopt(&s, sockopt::RcvBuf, &SOCKET_BUFFER);
        }
        if setsockopt(&s, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
            let _ = setsockopt(&s, sockopt::SndBuf, &SOCKET_BUFFER);
        }
        setsockopt(&s, sockopt::ReceiveTimestampns, &true).map_err(std::io::Error::from)?;
        Ok(s)
    };
    Ok([mk()?, mk()?, mk()?])
}

/// The engine state; [`Engine::run`] is the thread body.
pub struct Engine {
    socks: [UdpSocket; 3],
    tx: Vec<Option<TxStream>>,
    /// Per role, per slot: stream ids.
    slots: [Vec<Vec<u32>>; 3],
    next_slot: usize,
    /// Per role: bibridge source port → index into `rx` (u32::MAX = none).
    rx_map: [Vec<u32>; 3],
    rx: Vec<RxStream>,
    calls: Vec<CallMedia>,
    measure: Measure,
    recording: bool,
    window_start: Instant,
    /// Realtime clock at the window start: probes sent before it are not counted.
    window_start_ns: i64,
    progress: Arc<Progress>,
    probe: [u8; FRAME],
    send_hdrs: MultiHeaders<SockaddrIn>,
    recv_hdrs: MultiHeaders<SockaddrIn>,
    recv_bufs: Vec<[u8; 512]>,
    ssrc_seed: u32,
}

fn to_sockaddr_in(a: SocketAddr) -> Option<SockaddrIn> {
    match a {
        SocketAddr::V4(v4) => Some(SockaddrIn::from(v4)),
        SocketAddr::V6(_) => None,
    }
}

impl Engine {
    pub fn new(socks: [UdpSocket; 3], progress: Arc<Progress>) -> Self {
        let cmsg = nix::cmsg_space!(TimeSpec);
        Self {
            socks,
            tx: Vec::new(),
            slots: std::array::from_fn(|_| vec![Vec::new(); SLOTS]),
            next_slot: 0,
            rx_map: std::array::from_fn(|_| vec![u32::MAX; 65_536]),
            rx: Vec::new(),
            calls: Vec::new(),
            measure: Measure::new(),
            recording: false,
            window_start: Instant::now(),
            window_start_ns: 0,
            progress,
            probe: audio::probe_body(),
            send_hdrs: MultiHeaders::preallocate(BATCH, None),
            recv_hdrs: MultiHeaders::preallocate(BATCH, Some(cmsg)),
            recv_bufs: vec![[0u8; 512]; BATCH],
            ssrc_seed: rand::random(),
        }
    }

    fn call_mut(&mut self, call: u32) -> &mut CallMedia {
        let i = call as usize;
        if self.calls.len() <= i {
            self.calls.resize(i + 1, CallMedia::default());
        }
        &mut self.calls[i]
    }

    fn handle(&mut self, ctl: Ctl) -> bool {
        match ctl {
            Ctl::AddTx { role, call, dest } => {
                let Some(dest) = to_sockaddr_in(dest) else {
                    return true;
                };
                self.call_mut(call);
                let id = stream_id(call, role);
                let i = id as usize;
                if self.tx.len() <= i {
                    self.tx.resize_with(i + 1, || None);
                }
                let ssrc = self.ssrc_seed.wrapping_add(id.wrapping_mul(0x9E37_79B9));
                let fresh = self.tx[i].is_none();
                self.tx[i] = Some(TxStream {
                    role,
                    call,
                    dest,
                    ssrc,
                    seq: (ssrc >> 16) as u16,
                    ts: ssrc,
                    counter: 0,
                    table: SendTable::default(),
                    active: true,
                });
                if fresh {
                    // Spread streams over the slots; consecutive calls land in different ones.
                    let slot = (call as usize * 7 + role as usize * 3) % SLOTS;
                    self.slots[role as usize][slot].push(id);
                }
            }
            Ctl::AddRx {
                role,
                call,
                src_port,
            } => {
                self.call_mut(call);
                let idx = self.rx.len() as u32;
                self.rx.push(RxStream {
                    role,
                    call,
                    tracker: SeqTracker::default(),
                    probe_seen: 0,
                });
                self.rx_map[role as usize][src_port as usize] = idx;
            }
            Ctl::SetMode { call, mode } => self.call_mut(call).mode = mode,
            Ctl::StopCall { call } => {
                for role in Role::ALL {
                    if let Some(Some(s)) = self.tx.get_mut(stream_id(call, role) as usize) {
                        s.active = false;
                    }
                }
            }
            Ctl::BeginWindow => {
                self.measure = Measure::new();
                for r in &mut self.rx {
                    r.tracker = SeqTracker::default();
                }
                self.recording = true;
                self.window_start = Instant::now();
                self.window_start_ns = realtime_ns();
            }
            Ctl::EndWindow(reply) => {
                self.recording = false;
                let mut m = std::mem::replace(&mut self.measure, Measure::new());
                m.duration = self.window_start.elapsed();
                for r in &self.rx {
                    let e = &mut m.seq_loss[r.role as usize];
                    e.0 += r.tracker.expected();
                    e.1 += r.tracker.lost();
                }
                let _ = reply.send(m);
            }
            Ctl::Stop => return false,
        }
        true
    }

    /// The thread body: runs until [`Ctl::Stop`] or the sender side hangs up.
    pub fn run(mut self, ctl: Receiver<Ctl>) {
        let slot_len = PTIME / SLOTS as u32;
        let mut next = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            loop {
                match ctl.try_recv() {
                    Ok(c) => {
                        if !self.handle(c) {
                            return;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            // Catch up slot by slot if we fell behind (the offered load stays what was asked
            // for); only a stall longer than five packet times skips ahead, and is counted.
            let behind = now.saturating_duration_since(next);
            if behind > PTIME * 5 {
                let slots = behind.as_micros() / slot_len.as_micros().max(1);
                if self.recording {
                    self.measure.skipped_slots += slots as u64;
                }
                next = now;
            }
            while next <= now {
                self.send_slot(self.next_slot);
                self.next_slot = (self.next_slot + 1) % SLOTS;
                next += slot_len;
            }
            self.wait_and_receive(next);
            if last_progress.elapsed() >= Duration::from_millis(500) {
                last_progress = Instant::now();
                let (mut exp, mut lost) = (0, 0);
                for r in &self.rx {
                    exp += r.tracker.expected();
                    lost += r.tracker.lost();
                }
                self.progress.expected.store(exp, Ordering::Relaxed);
                self.progress.lost.store(lost, Ordering::Relaxed);
            }
        }
    }

    fn send_slot(&mut self, slot: usize) {
        for role in Role::ALL {
            let ids = std::mem::take(&mut self.slots[role as usize][slot]);
            let active: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|&id| {
                    self.tx
                        .get(id as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|s| s.active)
                })
                .collect();
            for chunk in active.chunks(BATCH) {
                self.send_batch(role, chunk);
            }
            self.slots[role as usize][slot] = ids;
        }
    }

    fn send_batch(&mut self, role: Role, ids: &[u32]) {
        let mut bufs = [[0u8; PACKET]; BATCH];
        let mut addrs: Vec<Option<SockaddrIn>> = Vec::with_capacity(ids.len());
        let mut probe_calls: Vec<u32> = Vec::new();
        for (buf, &id) in bufs.iter_mut().zip(ids) {
            let Some(Some(s)) = self.tx.get_mut(id as usize) else {
                continue;
            };
            buf[0] = 0x80;
            buf[1] = 0; // PT 0 = PCMU
            buf[2..4].copy_from_slice(&s.seq.to_be_bytes());
            buf[4..8].copy_from_slice(&s.ts.to_be_bytes());
            buf[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
            let is_probe = s.role == Role::Customer && s.counter % PROBE_EVERY == PROBE_EVERY - 1;
            let mut payload = [0u8; FRAME];
            audio::fill_payload(&mut payload, id, s.counter, is_probe.then_some(&self.probe));
            buf[RTP_HEADER..].copy_from_slice(&payload);
            if is_probe {
                probe_calls.push(s.call);
            }
            addrs.push(Some(s.dest));
        }
        let n = addrs.len();
        let iovs: Vec<[IoSlice<'_>; 1]> = bufs[..n].iter().map(|b| [IoSlice::new(b)]).collect();
        let sent_ns = realtime_ns();
        let fd = self.socks[role as usize].as_raw_fd();
        let ok = sendmmsg(
            fd,
            &mut self.send_hdrs,
            &iovs,
            &addrs,
            [],
            MsgFlags::empty(),
        )
        .is_ok();
        // sendmmsg on a blocking UDP socket sends the whole batch unless it fails outright.
        for &id in ids {
            if let Some(Some(s)) = self.tx.get_mut(id as usize) {
                s.table.record(s.counter, sent_ns);
                s.counter = s.counter.wrapping_add(1);
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(FRAME as u32);
            }
        }
        let probes = probe_calls.len() as u64;
        for call in probe_calls {
            let c = self.call_mut(call);
            c.probe_id += 1;
            c.probe_ns = sent_ns;
        }
        if !ok {
            self.measure.send_errors += n as u64;
            return;
        }
        if self.recording {
            self.measure.sent[role as usize] += n as u64;
            self.measure.probes_sent += probes;
        }
        self.progress.sent[role as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn wait_and_receive(&mut self, until: Instant) {
        let wait = until.saturating_duration_since(Instant::now());
        let ms = wait.as_micros().div_ceil(1000).min(20) as u16;
        let ready: [bool; 3] = {
            let mut fds: Vec<PollFd<'_>> = self
                .socks
                .iter()
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            if nix::poll::poll(&mut fds, PollTimeout::from(ms)).is_err() {
                return;
            }
            std::array::from_fn(|i| {
                fds[i]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLIN))
            })
        };
        for role in Role::ALL {
            if ready[role as usize] {
                self.drain(role);
            }
        }
    }

    /// Reads everything queued on `role`'s socket.
    fn drain(&mut self, role: Role) {
        let fd = self.socks[role as usize].as_raw_fd();
        let mut meta: Vec<(usize, u16, i64)> = Vec::with_capacity(BATCH);
        // Bounded: at most 64 batches per call keeps sending on time under overload.
        for _ in 0..64 {
            meta.clear();
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
                    .recv_bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(b)])
                    .collect();
                let Ok(res) = recvmmsg(
                    fd,
                    &mut self.recv_hdrs,
                    iovs.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) else {
                    return;
                };
                for r in res {
                    let port = r.address.map_or(0, |a| a.port());
                    let mut ts = None;
                    if let Ok(cmsgs) = r.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmTimestampns(t) = c {
                                ts = Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec());
                            }
                        }
                    }
                    meta.push((r.bytes, port, ts.unwrap_or_else(realtime_ns)));
                }
            }
            for (i, &(len, port, ts)) in meta.iter().enumerate() {
                let pkt = self.recv_bufs[i];
                self.on_packet(role, port, &pkt[..len.min(pkt.len())], ts);
            }
            if meta.len() < BATCH {
                return;
            }
        }
    }

    fn on_packet(&mut self, role: Role, port: u16, pkt: &[u8], rx_ns: i64) {
        // RTCP (payload types 200-204 in the second byte) is not ours to count.
        if pkt.len() < RTP_HEADER || pkt[0] >> 6 != 2 || (200..=204).contains(&pkt[1]) {
            return;
        }
        let idx = self.rx_map[role as usize][port as usize];
        let Some(rx) = self.rx.get_mut(idx as usize) else {
            if self.recording {
                self.measure.unknown_source += 1;
            }
            return;
        };
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        rx.tracker.on_packet(seq);
        self.progress.received[role as usize].fetch_add(1, Ordering::Relaxed);
        if !self.recording {
            return;
        }
        self.measure.received[role as usize] += 1;
        let cc = usize::from(pkt[0] & 0x0F);
        let mut off = RTP_HEADER + 4 * cc;
        if pkt[0] & 0x10 != 0 {
            let Some(ext) = pkt.get(off + 2..off + 4) else {
                return;
            };
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let Some(payload) = pkt.get(off..) else {
            return;
        };
        let call = rx.call;
        let Some(cm) = self.calls.get(call as usize) else {
            return;
        };
        let Some(path) = classify(role, cm.mode) else {
            self.measure.path_packets[5] += 1;
            return;
        };
        let p = path as usize;
        self.measure.path_packets[p] += 1;
        if path.is_relay() {
            let Some((stream, counter)) = audio::read_key(payload) else {
                self.measure.unkeyed[p] += 1;
                return;
            };
            let sender = match role {
                Role::Agent => Role::Customer,
                _ => Role::Agent,
            };
            if stream != stream_id(call, sender) {
                self.measure.misrouted[p] += 1;
                return;
            }
            match self
                .tx
                .get(stream as usize)
                .and_then(Option::as_ref)
                .and_then(|s| s.table.lookup(counter))
            {
                Some(sent) => record_ns(&mut self.measure.latency[p], rx_ns - sent),
                None => self.measure.stale_keys += 1,
            }
        } else if audio::is_probe(payload) {
            let (probe_id, probe_ns) = (cm.probe_id, cm.probe_ns);
            let late = rx_ns - probe_ns;
            let fresh = probe_id > rx.probe_seen;
            rx.probe_seen = probe_id;
            if fresh && probe_ns >= self.window_start_ns && (0..PROBE_WINDOW_NS).contains(&late) {
                self.measure.probes_seen[p] += 1;
                record_ns(&mut self.measure.latency[p], late);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_session_table() {
        use SessionMode::*;
        assert_eq!(classify(Role::Agent, None), Some(Path::RelayC2A));
        assert_eq!(
            classify(Role::Agent, Some(Monitor)),
            Some(Path::RelayC2AMonitored)
        );
        assert_eq!(classify(Role::Agent, Some(Coach)), Some(Path::MixedC2A));
        assert_eq!(classify(Role::Agent, Some(Barge)), Some(Path::MixedC2A));
        assert_eq!(classify(Role::Customer, Some(Coach)), Some(Path::RelayA2C));
        assert_eq!(classify(Role::Customer, Some(Barge)), None);
        assert_eq!(
            classify(Role::Supervisor, Some(Monitor)),
            Some(Path::MonitorMix)
        );
        assert!(Path::RelayA2C.is_relay() && !Path::MonitorMix.is_relay());
    }

    /// Loopback through a fake "bibridge" that relays agent packets unchanged: keys come back,
    /// latency is recorded on the relay path, nothing is lost.
    #[test]
    fn engine_times_a_relayed_stream() {
        let [c, a, s] = bind_sockets("127.0.0.1".parse().expect("ip")).expect("bind");
        let customer_addr = c.local_addr().expect("addr");
        let fake = UdpSocket::bind("127.0.0.1:0").expect("fake");
        fake.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let fake_addr = fake.local_addr().expect("addr");
        let progress = Arc::new(Progress::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let th = std::thread::spawn(move || Engine::new([c, a, s], progress).run(rx));
        tx.send(Ctl::AddTx {
            role: Role::Agent,
            call: 3,
            dest: fake_addr,
        })
        .expect("send");
        tx.send(Ctl::AddRx {
            role: Role::Customer,
            call: 3,
            src_port: fake_addr.port(),
        })
        .expect("send");
        tx.send(Ctl::BeginWindow).expect("send");
        let mut buf = [0u8; 512];
        for _ in 0..20 {
            let (n, _) = fake.recv_from(&mut buf).expect("agent packet");
            assert_eq!(n, PACKET);
            fake.send_to(&buf[..n], customer_addr).expect("relay");
        }
        std::thread::sleep(Duration::from_millis(50));
        let (rtx, rrx) = std::sync::mpsc::channel();
        tx.send(Ctl::EndWindow(rtx)).expect("send");
        let m = rrx.recv_timeout(Duration::from_secs(2)).expect("measure");
        tx.send(Ctl::Stop).expect("send");
        th.join().expect("engine thread");
        assert_eq!(m.received[Role::Customer as usize], 20);
        assert_eq!(m.latency[Path::RelayA2C as usize].len(), 20);
        assert_eq!(m.seq_loss[Role::Customer as usize], (20, 0));
        assert_eq!(m.misrouted, [0; 5]);
        assert!(m.sent[Role::Agent as usize] >= 20);
    }
}
