//! SIP transports: one UDP socket, one TCP listener with its connections.
//!
//! Incoming messages go to the engine task as [`Input::Sip`]; the engine task sends through
//! [`Udp::send`] and [`Tcp::send`]. TCP connections are kept by peer address so responses and
//! requests to a peer reuse the connection it opened (RFC 3261 §18.2.2), and new connections are
//! opened for peers that have none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bibridge_sip::message::{self, StreamFrame};
use bibridge_sip::Transport;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

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

pub struct Tcp {
    local: SocketAddr,
    conns: Conns,
    to_engine: mpsc::Sender<Input>,
    tasks: Tasks,
}

impl Drop for Tcp {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Tcp {
    pub async fn bind(
        addr: SocketAddr,
        to_engine: mpsc::Sender<Input>,
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
        let conns: Conns = Arc::default();
        let tasks = Tasks::default();
        let (c, tx, t) = (conns.clone(), to_engine.clone(), tasks.clone());
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        debug!(%peer, "SIP/TCP connection accepted");
                        spawn_connection(stream, peer, c.clone(), tx.clone(), &t);
                    }
                    Err(e) => warn!(error = %e, "SIP/TCP accept failed"),
                }
            }
        });
        Ok(Tcp {
            local,
            conns,
            to_engine,
            tasks,
        })
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
        let Ok(mut conns) = self.conns.lock() else {
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
        let (conns, to_engine, tasks) = (
            self.conns.clone(),
            self.to_engine.clone(),
            self.tasks.clone(),
        );
        self.tasks.spawn(async move {
            match TcpStream::connect(dest).await {
                Ok(stream) => {
                    debug!(%dest, "SIP/TCP connection opened");
                    run_connection(stream, dest, tx, rx, conns, to_engine, &tasks);
                }
                Err(e) => {
                    debug!(%dest, error = %e, "SIP/TCP connect failed");
                    forget(&conns, dest, &tx);
                }
            }
        });
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

/// Register an accepted connection under its peer address and serve it.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conns: Conns,
    to_engine: mpsc::Sender<Input>,
    tasks: &Tasks,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    if let Ok(mut m) = conns.lock() {
        m.insert(peer, tx.clone());
    }
    run_connection(stream, peer, tx, rx, conns, to_engine, tasks);
}

/// The writer (messages from `rx`, keep-alive pongs) and reader tasks of one connection, which is
/// in `conns` under `peer` with sender `tx`.
fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tx: mpsc::UnboundedSender<Bytes>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    conns: Conns,
    to_engine: mpsc::Sender<Input>,
    tasks: &Tasks,
) {
    let (mut rd, mut wr) = stream.into_split();
    tasks.spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    tasks.spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        'conn: loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match message::frame_stream(&buf, MAX_MESSAGE) {
                    StreamFrame::Message(len) => {
                        let data = buf.split_to(len).freeze();
                        if to_engine
                            .send(Input::Sip {
                                data,
                                source: peer,
                                transport: Transport::Tcp,
                            })
                            .await
                            .is_err()
                        {
                            break 'conn;
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
                        break 'conn;
                    }
                }
            }
            if buf.len() > MAX_MESSAGE {
                warn!(%peer, "SIP/TCP message too large, closing connection");
                break;
            }
        }
        forget(&conns, peer, &tx);
        debug!(%peer, "SIP/TCP connection closed");
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Messages sent before the connection is up go out on one connection, in order.
    #[tokio::test]
    async fn sends_queue_on_one_new_connection() {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dest = peer.local_addr().unwrap();
        let (to_engine, _rx) = mpsc::channel(8);
        let tcp = Tcp::bind("127.0.0.1:0".parse().unwrap(), to_engine)
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
        assert_eq!(tcp.conns.lock().unwrap().len(), 1);

        // The peer closes: the entry goes, and the next message opens a new connection.
        drop(s);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(tcp.conns.lock().unwrap().is_empty());
        tcp.send(Bytes::from_static(b"four;"), dest);
        let (mut s, _) = peer.accept().await.unwrap();
        let mut got = vec![0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"four;");
    }
}
