//! SIP transports: one UDP socket, one TCP listener with its connections.
//!
//! Incoming messages go to the engine task as [`Input::Sip`]; the engine task sends through
//! [`Udp::send`] and [`Tcp::send`]. TCP connections are kept by peer address so responses and
//! requests to a peer reuse the connection it opened (RFC 3261 §18.2.2), and new connections are
//! opened for peers that have none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bibridge_sip::message::{self, StreamFrame};
use bibridge_sip::Transport;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::net_guard::{self, AcceptBackoff, ConnLimiter, ConnSlot, ListenerStats, LogEvery};
use crate::{Input, ServerError};

/// Largest SIP message we accept. RFC 3261 §18.1.1 expects UDP messages to stay under the MTU;
/// 64 KiB covers every datagram and bounds TCP buffering.
const MAX_MESSAGE: usize = 65_535;

/// Tasks a transport spawned; aborted when the transport is dropped (the engine task ends), so
/// a stopped server holds no socket: its ports can be bound again at once.
#[derive(Clone, Default)]
struct Tasks(Arc<Mutex<Vec<tokio::task::AbortHandle>>>);

impl Tasks {
    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let h = tokio::spawn(fut).abort_handle();
        if let Ok(mut v) = self.0.lock() {
            // Finished connections leave: the list stays as long as the live ones.
            v.retain(|t| !t.is_finished());
            v.push(h);
        }
    }

    fn abort_all(&self) {
        if let Ok(v) = self.0.lock() {
            for t in v.iter() {
                t.abort();
            }
        }
    }
}

pub struct Udp {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tasks: Tasks,
}

impl Drop for Udp {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Receive buffer asked for on the SIP UDP socket.
const SIP_RCVBUF: usize = 4 << 20;
/// At most one log line per interval about datagrams dropped at a full SIP queue.
const DROP_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Udp {
    /// `dropped` counts datagrams dropped because the engine's SIP queue was full.
    pub async fn bind(
        addr: SocketAddr,
        to_engine: mpsc::Sender<Input>,
        dropped: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<Udp, ServerError> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "SIP UDP",
                addr,
                source,
            })?;
        let local = socket.local_addr().map_err(|source| ServerError::Bind {
            what: "SIP UDP",
            addr,
            source,
        })?;
        // A burst of INVITEs (hundreds of calls per second) overflows the default ~200 KiB
        // receive buffer long before the engine is busy; ask for more (the kernel caps it at
        // net.core.rmem_max, which is fine: this is best effort).
        if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(SIP_RCVBUF) {
            debug!(error = %e, "cannot enlarge the SIP UDP receive buffer");
        }
        let socket = Arc::new(socket);
        let rx = socket.clone();
        let tasks = Tasks::default();
        tasks.spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            let mut drops_since_log = 0u64;
            let mut last_log: Option<std::time::Instant> = None;
            loop {
                match rx.recv_from(&mut buf).await {
                    Ok((n, source)) => {
                        trace!(%source, bytes = n, "SIP/UDP in");
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        // Never wait for the engine: a full SIP queue drops the datagram
                        // (the sender retransmits), counted, logged once per interval.
                        match to_engine.try_send(Input::Sip {
                            data,
                            source,
                            transport: Transport::Udp,
                        }) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                drops_since_log += 1;
                                let now = std::time::Instant::now();
                                if last_log.is_none_or(|t| now - t >= DROP_LOG_INTERVAL) {
                                    warn!(
                                        dropped = drops_since_log,
                                        "engine busy: SIP/UDP datagrams dropped (SIP queue full)"
                                    );
                                    drops_since_log = 0;
                                    last_log = Some(now);
                                }
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    // ICMP port unreachable from an earlier send shows up here on Linux; keep going.
                    Err(e) => debug!(error = %e, "SIP/UDP receive error"),
                }
            }
        });
        Ok(Udp {
            socket,
            local,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub async fn send(&self, data: &[u8], dest: SocketAddr) {
        trace!(%dest, bytes = data.len(), "SIP/UDP out");
        if let Err(e) = self.socket.send_to(data, dest).await {
            debug!(%dest, error = %e, "SIP/UDP send failed");
        }
    }
}

type Conns = Arc<Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>>;

/// Bounds of the SIP/TCP transport (`[sip] tcp_*`; docs/reliability/transport-http.md).
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Connections open at once, accepted and opened together.
    pub max_connections: usize,
    /// Accepted connections from one IP address.
    pub max_per_address: usize,
    /// Nothing received for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// A message begun must be complete within this long.
    pub message_timeout: Duration,
}

impl TcpLimits {
    /// The configured limits, the total capped at half the descriptor limit.
    pub fn from_config(sip: &bibridge_b2bua::config::SipConfig) -> TcpLimits {
        let nofile = net_guard::nofile_limit();
        let max_connections = net_guard::cap_by_nofile(sip.tcp_max_connections, nofile, 2);
        if max_connections < sip.tcp_max_connections {
            warn!(
                configured = sip.tcp_max_connections,
                capped = max_connections,
                nofile = ?nofile,
                "sip.tcp_max_connections capped at half the open-file limit (RLIMIT_NOFILE)"
            );
        }
        TcpLimits {
            max_connections,
            max_per_address: sip.tcp_max_per_address,
            idle_timeout: Duration::from_secs(sip.tcp_idle_timeout_s),
            message_timeout: Duration::from_secs(sip.tcp_message_timeout_s),
        }
    }
}

/// What one connection task needs besides its socket.
#[derive(Clone)]
struct Shared {
    conns: Conns,
    to_engine: mpsc::Sender<Input>,
    tasks: Tasks,
    limits: TcpLimits,
    limiter: ConnLimiter,
}

pub struct Tcp {
    local: SocketAddr,
    shared: Shared,
}

impl Drop for Tcp {
    fn drop(&mut self) {
        self.shared.tasks.abort_all();
    }
}

impl Tcp {
    pub async fn bind(
        addr: SocketAddr,
        to_engine: mpsc::Sender<Input>,
        limits: TcpLimits,
        stats: Arc<ListenerStats>,
    ) -> Result<Tcp, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "SIP TCP",
                addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServerError::Bind {
            what: "SIP TCP",
            addr,
            source,
        })?;
        let shared = Shared {
            conns: Arc::default(),
            to_engine,
            tasks: Tasks::default(),
            limits,
            limiter: ConnLimiter::new(limits.max_connections, limits.max_per_address, stats),
        };
        let sh = shared.clone();
        shared.tasks.spawn(accept_loop(listener, sh));
        Ok(Tcp { local, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send on the connection to `dest`, opening one if there is none.
    ///
    /// A new connection's channel is registered before the connect completes, so messages sent
    /// meanwhile (an INVITE then its CANCEL, or a request then its ACK) queue on that one
    /// connection in order instead of each opening its own.
    pub fn send(&self, data: Bytes, dest: SocketAddr) {
        let Ok(mut conns) = self.shared.conns.lock() else {
            warn!(%dest, "SIP/TCP connection table poisoned; message dropped");
            return;
        };
        if let Some(tx) = conns.get(&dest) {
            match tx.send(data) {
                Ok(()) => return,
                // The connection ended since: open a new one for the message.
                Err(mpsc::error::SendError(d)) => {
                    conns.remove(&dest);
                    return self.connect_and_send(conns, d, dest);
                }
            }
        }
        self.connect_and_send(conns, data, dest);
    }

    fn connect_and_send(
        &self,
        mut conns: std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>,
        data: Bytes,
        dest: SocketAddr,
    ) {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        // Cannot fail: `rx` is alive.
        let _ = tx.send(data);
        conns.insert(dest, tx.clone());
        drop(conns);
        let sh = self.shared.clone();
        let slot = sh.limiter.outbound();
        self.shared.tasks.spawn(async move {
            match TcpStream::connect(dest).await {
                Ok(stream) => {
                    debug!(%dest, "SIP/TCP connection opened");
                    run_connection(stream, dest, tx, rx, sh, slot);
                }
                Err(e) => {
                    debug!(%dest, error = %e, "SIP/TCP connect failed");
                    forget(&sh.conns, dest, &tx);
                }
            }
        });
    }
}

/// Accept connections within the limits; back off on accept errors (EMFILE) instead of
/// spinning, and log floods once per interval.
async fn accept_loop(listener: TcpListener, sh: Shared) {
    let mut backoff = AcceptBackoff::default();
    let mut refused_log = LogEvery::new(net_guard::LOG_EVERY);
    let stats = sh.limiter.stats().clone();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.succeeded();
                match sh.limiter.accept(peer.ip()) {
                    Ok(slot) => {
                        debug!(%peer, "SIP/TCP connection accepted");
                        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                        if let Ok(mut m) = sh.conns.lock() {
                            m.insert(peer, tx.clone());
                        }
                        run_connection(stream, peer, tx, rx, sh.clone(), slot);
                    }
                    Err(why) => {
                        // Closed at once (dropped); the peer sees the connection end.
                        drop(stream);
                        if let Some(n) = refused_log.event(Instant::now()) {
                            warn!(%peer, reason = ?why, refused = n,
                                max_connections = sh.limits.max_connections,
                                max_per_address = sh.limits.max_per_address,
                                "SIP/TCP connections refused (limit reached; one line per 10 s)");
                        }
                    }
                }
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                let (pause, log) = backoff.failed(Instant::now());
                if let Some(n) = log {
                    warn!(error = %e, failures = n, pause_ms = pause.as_millis() as u64,
                        "SIP/TCP accept failing; backing off (one line per 10 s)");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Remove `dest`'s entry if it still is this connection's (a newer one may have replaced it).
fn forget(conns: &Conns, dest: SocketAddr, tx: &mpsc::UnboundedSender<Bytes>) {
    if let Ok(mut m) = conns.lock() {
        if m.get(&dest).is_some_and(|cur| cur.same_channel(tx)) {
            m.remove(&dest);
        }
    }
}

/// Why a connection's reader stopped.
enum Ended {
    Closed,
    Idle,
    Slow,
}

/// The writer (messages from `rx`, keep-alive pongs) and reader tasks of one connection, which is
/// in `conns` under `peer` with sender `tx`. `slot` counts it until both tasks end.
fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    sh: Shared,
    slot: ConnSlot,
) {
    let (mut rd, mut wr) = stream.into_split();
    let slot = Arc::new(slot);
    let writer_slot = slot.clone();
    // The reader ending (idle, slow, closed) ends the writer too.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    sh.tasks.spawn(async move {
        let _slot = writer_slot;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(data) => {
                        if wr.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = &mut stop_rx => break,
            }
        }
    });
    let limits = sh.limits;
    let stats = sh.limiter.stats().clone();
    sh.tasks.spawn(async move {
        let _slot = slot;
        let _stop = stop_tx;
        let mut buf = BytesMut::with_capacity(4096);
        let mut last_rx = tokio::time::Instant::now();
        // When the first byte of the message now being received came.
        let mut message_since: Option<tokio::time::Instant> = None;
        let ended = 'conn: loop {
            let idle_at = last_rx + limits.idle_timeout;
            let deadline = match message_since {
                Some(t) => idle_at.min(t + limits.message_timeout),
                None => idle_at,
            };
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Err(_) if message_since.is_some() => break Ended::Slow,
                Err(_) => break Ended::Idle,
                Ok(Ok(0) | Err(_)) => break Ended::Closed,
                Ok(Ok(_)) => last_rx = tokio::time::Instant::now(),
            }
            loop {
                match message::frame_stream(&buf, MAX_MESSAGE) {
                    StreamFrame::Message(len) => {
                        let data = buf.split_to(len).freeze();
                        if sh
                            .to_engine
                            .send(Input::Sip {
                                data,
                                source: peer,
                                transport: Transport::Tcp,
                            })
                            .await
                            .is_err()
                        {
                            break 'conn Ended::Closed;
                        }
                    }
                    StreamFrame::Skip { len, ping } => {
                        let _ = buf.split_to(len);
                        if ping {
                            // RFC 5626 §3.5.1: answer a double-CRLF ping with one CRLF.
                            trace!(%peer, "SIP/TCP keep-alive ping");
                            let _ = tx.send(Bytes::from_static(b"\r\n"));
                        }
                    }
                    StreamFrame::Incomplete => break,
                    StreamFrame::Invalid => {
                        // Without a usable Content-Length the stream cannot be re-synchronised
                        // (RFC 3261 §18.3): close it.
                        warn!(%peer, "SIP/TCP framing error, closing connection");
                        break 'conn Ended::Closed;
                    }
                }
            }
            // Only a lone CR or LF (a keep-alive in progress) does not start a message.
            let started = buf.iter().any(|b| !matches!(b, b'\r' | b'\n'));
            message_since = match (started, message_since) {
                (false, _) => None,
                (true, Some(t)) => Some(t),
                (true, None) => Some(last_rx),
            };
            if buf.len() > MAX_MESSAGE {
                warn!(%peer, "SIP/TCP message too large, closing connection");
                break Ended::Closed;
            }
        };
        match ended {
            Ended::Idle => {
                stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "SIP/TCP connection idle, closed");
            }
            Ended::Slow => {
                stats.slow_closed.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "SIP/TCP message not completed in time, connection closed");
            }
            Ended::Closed => debug!(%peer, "SIP/TCP connection closed"),
        }
        forget(&sh.conns, peer, &tx);
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn test_limits() -> TcpLimits {
        TcpLimits {
            max_connections: 64,
            max_per_address: 32,
            idle_timeout: Duration::from_secs(300),
            message_timeout: Duration::from_secs(10),
        }
    }

    async fn bound(limits: TcpLimits) -> (Tcp, Arc<ListenerStats>, mpsc::Receiver<Input>) {
        let (to_engine, rx) = mpsc::channel(64);
        let stats = Arc::new(ListenerStats::default());
        let tcp = Tcp::bind(
            "127.0.0.1:0".parse().unwrap(),
            to_engine,
            limits,
            stats.clone(),
        )
        .await
        .unwrap();
        (tcp, stats, rx)
    }

    /// Whether the server closed `s` within `within` (EOF or reset on read).
    async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
        let mut b = [0u8; 16];
        loop {
            match tokio::time::timeout(within, s.read(&mut b)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                // A keep-alive pong: keep reading.
                Ok(Ok(_)) => {}
            }
        }
    }

    /// One address holds at most `max_per_address` connections: the next is closed at once,
    /// the ones held stay open, and a closed one frees its place.
    #[tokio::test]
    async fn connections_per_address_are_bounded() {
        let limits = TcpLimits {
            max_per_address: 4,
            ..test_limits()
        };
        let (tcp, stats, _rx) = bound(limits).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(tcp.local_addr()).await.unwrap());
        }
        let mut extra = TcpStream::connect(tcp.local_addr()).await.unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(2)).await,
            "the 5th connection from one address is closed"
        );
        for s in &mut held {
            assert!(!closed_within(s, Duration::from_millis(50)).await);
        }
        assert_eq!(stats.open.load(Ordering::Relaxed), 4);
        assert_eq!(stats.refused_per_address.load(Ordering::Relaxed), 1);
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(tcp.local_addr()).await.unwrap();
        assert!(!closed_within(&mut again, Duration::from_millis(200)).await);
    }

    /// The listener's total bound: beyond it connections are closed at once.
    #[tokio::test]
    async fn connections_in_all_are_bounded() {
        let limits = TcpLimits {
            max_connections: 3,
            ..test_limits()
        };
        let (tcp, stats, _rx) = bound(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(tcp.local_addr()).await.unwrap());
        }
        let mut extra = TcpStream::connect(tcp.local_addr()).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
        assert_eq!(stats.refused_total.load(Ordering::Relaxed), 1);
    }

    /// An idle connection is closed after the idle timeout; one sending RFC 5626 keep-alives
    /// (double CRLF) lives on; a message begun and never finished is cut after the message
    /// timeout even though bytes keep trickling in.
    #[tokio::test]
    async fn idle_and_slow_connections_are_closed_and_keepalives_keep_one_open() {
        let limits = TcpLimits {
            idle_timeout: Duration::from_millis(600),
            message_timeout: Duration::from_millis(900),
            ..test_limits()
        };
        let (tcp, stats, _rx) = bound(limits).await;
        let mut idle = TcpStream::connect(tcp.local_addr()).await.unwrap();
        let mut alive = TcpStream::connect(tcp.local_addr()).await.unwrap();
        let mut slow = TcpStream::connect(tcp.local_addr()).await.unwrap();
        let start = tokio::time::Instant::now();
        let slow_msg =
            b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1\r\n";
        let mut i = 0;
        let mut idle_closed_at = None;
        let mut slow_closed_at = None;
        while start.elapsed() < Duration::from_millis(3000) {
            alive.write_all(b"\r\n\r\n").await.unwrap();
            if slow_closed_at.is_none() && i < slow_msg.len() {
                // One byte every 100 ms: never idle, never complete.
                let _ = slow.write_all(&slow_msg[i..i + 1]).await;
                i += 1;
            }
            if idle_closed_at.is_none() && closed_within(&mut idle, Duration::from_millis(50)).await
            {
                idle_closed_at = Some(start.elapsed());
            }
            if slow_closed_at.is_none() && closed_within(&mut slow, Duration::from_millis(50)).await
            {
                slow_closed_at = Some(start.elapsed());
            }
        }
        let idle_at = idle_closed_at.expect("idle connection closed");
        assert!(idle_at >= Duration::from_millis(550), "{idle_at:?}");
        let slow_at = slow_closed_at.expect("slow message cut");
        assert!(
            // Bounded above loosely: the machine running the tests may be loaded.
            slow_at >= Duration::from_millis(850) && slow_at < Duration::from_millis(2500),
            "{slow_at:?}"
        );
        assert!(!closed_within(&mut alive, Duration::from_millis(50)).await);
        assert_eq!(stats.idle_closed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.slow_closed.load(Ordering::Relaxed), 1);
        assert_eq!(stats.open.load(Ordering::Relaxed), 1);
    }

    /// Messages sent before the connection is up go out on one connection, in order.
    #[tokio::test]
    async fn sends_queue_on_one_new_connection() {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = peer.local_addr().unwrap();
        let (to_engine, _rx) = mpsc::channel(8);
        let tcp = Tcp::bind(
            "127.0.0.1:0".parse().unwrap(),
            to_engine,
            test_limits(),
            Arc::default(),
        )
        .await
        .unwrap();
        for m in ["one;", "two;", "three;"] {
            tcp.send(Bytes::from_static(m.as_bytes()), dest);
        }
        let (mut s, _) = peer.accept().await.unwrap();
        let mut got = vec![0u8; 14];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one;two;three;");
        let second = tokio::time::timeout(std::time::Duration::from_millis(200), peer.accept());
        assert!(second.await.is_err(), "a single connection");
        assert_eq!(tcp.shared.conns.lock().unwrap().len(), 1);

        // The peer closes: the entry goes, and the next message opens a new connection.
        drop(s);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(tcp.shared.conns.lock().unwrap().is_empty());
        tcp.send(Bytes::from_static(b"four;"), dest);
        let (mut s, _) = peer.accept().await.unwrap();
        let mut got = vec![0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"four;");
    }
}
