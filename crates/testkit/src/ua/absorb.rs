//! The receive task: reads the socket, answers retransmissions on its own (a phone's transaction
//! layer would) and queues everything else for the test.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::msg;

/// One received datagram; `msg` is `None` when rsip could not parse it.
pub(super) struct Datagram {
    pub(super) raw: Vec<u8>,
    pub(super) src: SocketAddr,
    pub(super) msg: Option<rsip::SipMessage>,
}

impl Datagram {
    pub(super) fn request(&self) -> Option<&rsip::Request> {
        match &self.msg {
            Some(rsip::SipMessage::Request(r)) => Some(r),
            _ => None,
        }
    }

    pub(super) fn response(&self) -> Option<&rsip::Response> {
        match &self.msg {
            Some(rsip::SipMessage::Response(r)) => Some(r),
            _ => None,
        }
    }

    pub(super) fn response_key(&self) -> Option<TxKey> {
        self.response().and_then(response_key)
    }
}

/// Transaction identity: top Via branch plus method (RFC 3261 §17.1.3 / §17.2.3; CANCEL and the
/// ACK of a non-2xx share the INVITE's branch but are separate transactions here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TxKey {
    pub(super) branch: String,
    pub(super) method: String,
}

pub(super) fn request_key(req: &rsip::Request) -> TxKey {
    let method = req.method.to_string();
    // A pre-RFC 3261 peer (or a raw test client) may omit the branch: fall back to Call-ID + CSeq.
    let branch = msg::top_via_branch(&req.headers).unwrap_or_else(|| {
        let cid = msg::call_id(&req.headers).unwrap_or_default();
        let num = msg::cseq(&req.headers).map(|c| c.0).unwrap_or_default();
        format!("{cid}|{num}")
    });
    TxKey { branch, method }
}

pub(super) fn response_key(resp: &rsip::Response) -> Option<TxKey> {
    Some(TxKey {
        branch: msg::top_via_branch(&resp.headers)?,
        method: msg::cseq(&resp.headers)?.1,
    })
}

pub(super) fn status(resp: &rsip::Response) -> u16 {
    resp.status_code.code()
}

/// A server transaction: where the request came from and the last response we sent to it.
struct ServerTx {
    source: SocketAddr,
    last_response: Option<Vec<u8>>,
}

/// State shared with the receive task so it can absorb retransmissions on its own.
#[derive(Default)]
struct Shared {
    server_tx: HashMap<TxKey, ServerTx>,
    /// Client transactions whose final response the test has consumed, with the ACK to repeat if
    /// that final response is retransmitted (INVITE only).
    client_done: HashMap<TxKey, Option<(Vec<u8>, SocketAddr)>>,
    /// Retransmissions (of requests or final responses) handled without queueing them.
    absorbed: u64,
}

/// The UA's handle on the state it shares with the receive task: what the task needs to absorb
/// retransmissions, updated as the test's transactions progress.
#[derive(Clone, Default)]
pub(super) struct Absorber(Arc<Mutex<Shared>>);

impl Absorber {
    /// How many retransmissions were absorbed so far.
    pub(super) fn absorbed(&self) -> u64 {
        lock(&self.0).absorbed
    }

    /// Remembers `bytes` as the response of server transaction `key` (re-sent when the request
    /// is retransmitted); returns where to send it: the request's source, or `fallback_dest`
    /// for a transaction the task has not seen.
    pub(super) fn record_response(
        &self,
        key: &TxKey,
        bytes: Vec<u8>,
        fallback_dest: SocketAddr,
    ) -> SocketAddr {
        let mut sh = lock(&self.0);
        let tx = sh.server_tx.entry(key.clone()).or_insert(ServerTx {
            source: fallback_dest,
            last_response: None,
        });
        tx.last_response = Some(bytes);
        tx.source
    }

    /// Marks a client transaction finished, with the ACK to repeat if its final response is
    /// retransmitted (INVITE only).
    pub(super) fn complete_client(&self, key: TxKey, ack: Option<(Vec<u8>, SocketAddr)>) {
        lock(&self.0).client_done.insert(key, ack);
    }

    /// The last response sent on server transaction `key` and where it went.
    pub(super) fn last_response(&self, key: &TxKey) -> Option<(Vec<u8>, SocketAddr)> {
        let sh = lock(&self.0);
        sh.server_tx
            .get(key)
            .and_then(|t| t.last_response.clone().map(|r| (r, t.source)))
    }

    /// Where the request of server transaction `key` came from.
    pub(super) fn source_of(&self, key: &TxKey) -> Option<SocketAddr> {
        lock(&self.0).server_tx.get(key).map(|t| t.source)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain maps behind, still usable.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the receive task does with a datagram.
enum Absorb {
    Queue,
    Drop,
    Resend(Vec<u8>, SocketAddr),
}

fn absorb(shared: &Mutex<Shared>, msg: &rsip::SipMessage, src: SocketAddr) -> Absorb {
    let mut sh = lock(shared);
    let verdict = classify(&mut sh, msg, src);
    if !matches!(verdict, Absorb::Queue) {
        sh.absorbed += 1;
    }
    verdict
}

fn classify(sh: &mut Shared, msg: &rsip::SipMessage, src: SocketAddr) -> Absorb {
    match msg {
        rsip::SipMessage::Request(req) => {
            let key = request_key(req);
            match sh.server_tx.get(&key) {
                Some(tx) => match &tx.last_response {
                    Some(resp) => Absorb::Resend(resp.clone(), tx.source),
                    None => Absorb::Drop,
                },
                None => {
                    sh.server_tx.insert(
                        key,
                        ServerTx {
                            source: src,
                            last_response: None,
                        },
                    );
                    Absorb::Queue
                }
            }
        }
        rsip::SipMessage::Response(resp) => {
            let Some(key) = response_key(resp) else {
                return Absorb::Queue;
            };
            match sh.client_done.get(&key) {
                Some(Some((ack, to))) if status(resp) >= 200 => Absorb::Resend(ack.clone(), *to),
                Some(_) => Absorb::Drop,
                None => Absorb::Queue,
            }
        }
    }
}

pub(super) async fn recv_loop(
    socket: Arc<UdpSocket>,
    shared: Absorber,
    tx: mpsc::UnboundedSender<Datagram>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            // ICMP errors surface on some platforms as recv errors; they are not fatal for UDP.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let raw = buf.get(..n).unwrap_or_default().to_vec();
        let msg = rsip::SipMessage::try_from(raw.as_slice()).ok();
        if let Some(m) = &msg {
            match absorb(&shared.0, m, src) {
                Absorb::Queue => {}
                Absorb::Drop => continue,
                Absorb::Resend(bytes, to) => {
                    // Best effort, like any UDP retransmission.
                    let _ = socket.send_to(&bytes, to).await;
                    continue;
                }
            }
        }
        if tx.send(Datagram { raw, src, msg }).is_err() {
            break;
        }
    }
}
