//! SIP transports: one UDP socket, one TCP listener with its connections.
//!
//! Incoming messages go to the engine task as [`Input::Sip`]; the engine task sends through
//! [`Udp::send`] and [`Tcp::send`]. TCP connections are kept by peer address so responses and
//! requests to a peer reuse the connection it opened (RFC 3261 §18.2.2), and new connections are
//! opened for peers that have none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

pub struct Udp {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
}

impl Udp {
    pub async fn bind(
        addr: SocketAddr,
        to_engine: mpsc::Sender<Input>,
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
        let socket = Arc::new(socket);
        let rx = socket.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                match rx.recv_from(&mut buf).await {
                    Ok((n, source)) => {
                        trace!(%source, bytes = n, "SIP/UDP in");
                        let data = Bytes::copy_from_slice(&buf[..n]);
                        if to_engine
                            .send(Input::Sip {
                                data,
                                source,
                                transport: Transport::Udp,
                            })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // ICMP port unreachable from an earlier send shows up here on Linux; keep going.
                    Err(e) => debug!(error = %e, "SIP/UDP receive error"),
                }
            }
        });
        Ok(Udp { socket, local })
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
        let (c, tx) = (conns.clone(), to_engine.clone());
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        debug!(%peer, "SIP/TCP connection accepted");
                        spawn_connection(stream, peer, c.clone(), tx.clone());
                    }
                    Err(e) => warn!(error = %e, "SIP/TCP accept failed"),
                }
            }
        });
        Ok(Tcp {
            local,
            conns,
            to_engine,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Send on the connection to `dest`, opening one if there is none.
    pub fn send(&self, data: Bytes, dest: SocketAddr) {
        let existing = self.conns.lock().ok().and_then(|m| m.get(&dest).cloned());
        if let Some(tx) = existing {
            if tx.send(data.clone()).is_ok() {
                return;
            }
        }
        let (conns, to_engine) = (self.conns.clone(), self.to_engine.clone());
        tokio::spawn(async move {
            match TcpStream::connect(dest).await {
                Ok(stream) => {
                    let tx = spawn_connection(stream, dest, conns, to_engine);
                    let _ = tx.send(data);
                }
                Err(e) => debug!(%dest, error = %e, "SIP/TCP connect failed"),
            }
        });
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conns: Conns,
    to_engine: mpsc::Sender<Input>,
) -> mpsc::UnboundedSender<Bytes> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    if let Ok(mut m) = conns.lock() {
        m.insert(peer, tx.clone());
    }
    let (mut rd, mut wr) = stream.into_split();
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        'conn: loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            loop {
                match frame(&buf) {
                    Framing::Message(len) => {
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
                    Framing::Skip(n) => {
                        let _ = buf.split_to(n);
                    }
                    Framing::Incomplete => break,
                    Framing::Invalid => {
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
        if let Ok(mut m) = conns.lock() {
            m.remove(&peer);
        }
        debug!(%peer, "SIP/TCP connection closed");
    });
    tx
}

#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// A complete message of this many bytes is at the front.
    Message(usize),
    /// Keep-alive CRLFs to drop.
    Skip(usize),
    Incomplete,
    Invalid,
}

/// Find the first complete message in a TCP stream buffer (RFC 3261 §18.3: Content-Length is
/// mandatory on stream transports).
fn frame(buf: &[u8]) -> Framing {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        return Framing::Skip(lead);
    }
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE {
            Framing::Invalid
        } else {
            Framing::Incomplete
        };
    };
    let head = &buf[..head_end];
    let Ok(head) = std::str::from_utf8(head) else {
        return Framing::Invalid;
    };
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name == "l" {
                match value.trim().parse::<usize>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return Framing::Invalid,
                }
            }
        }
    }
    let Some(length) = length else {
        return Framing::Invalid;
    };
    let total = head_end + 4 + length;
    if total > MAX_MESSAGE {
        return Framing::Invalid;
    }
    if buf.len() < total {
        Framing::Incomplete
    } else {
        Framing::Message(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_by_content_length() {
        let msg = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(frame(msg), Framing::Message(msg.len()));
        assert_eq!(frame(&msg[..msg.len() - 1]), Framing::Incomplete);
        assert_eq!(frame(b"\r\n\r\nOPTIONS"), Framing::Skip(4));
        assert_eq!(
            frame(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            Framing::Invalid,
            "no Content-Length on TCP"
        );
        assert_eq!(
            frame(b"OPTIONS sip:x SIP/2.0\r\nl: x\r\n\r\n"),
            Framing::Invalid
        );
        let mut two = msg.to_vec();
        two.extend_from_slice(msg);
        assert_eq!(frame(&two), Framing::Message(msg.len()));
    }
}
