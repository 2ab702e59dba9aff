//! RFC 3261 §17 transaction layer with the RFC 6026 "Accepted" state, sans-IO.
//!
//! Drive it with [`TransactionLayer::handle_message`] (parsed messages from the wire),
//! [`TransactionLayer::send_request`] / [`TransactionLayer::send_response`] (from the TU), and
//! [`TransactionLayer::handle_timeout`] at [`TransactionLayer::poll_timeout`]; drain
//! [`TransactionLayer::poll_transmit`] and [`TransactionLayer::poll_event`] after each call.
//!
//! Deliberate choices (documented because they differ from a literal reading of the RFC):
//! - Nothing is answered automatically: an INVITE server transaction does not send `100 Trying`
//!   by itself. The TU should send it (via `send_response`) if it will not answer within 200 ms
//!   (RFC 3261 §17.2.1); the layer only re-sends whatever the TU sent last.
//! - Retransmission of a 2xx to INVITE until the ACK arrives is formally the UAS core's job
//!   (RFC 3261 §13.3.1.4); here the INVITE server transaction does it in its Accepted state (T1
//!   doubling, capped at T2, unreliable transports only) and reports [`TxEvent::AckTimeout`] when
//!   no ACK came within 64*T1. The ACK is matched by Call-ID + CSeq number + From tag.
//! - Responses go back to the request's source address and port (symmetric response routing,
//!   RFC 3581), not to the Via sent-by.
//! - Timer B only runs in the Calling state (RFC 3261 §17.1.1.2); after a provisional response an
//!   INVITE client transaction lives until a final response, unless the TU sends a CANCEL for it:
//!   then, per RFC 3261 §9.1, it times out 64*T1 after the CANCEL if no final response arrives.
//!   The TU must not send a CANCEL before a provisional response was received (RFC 3261 §9.1).
//! - Server transactions have no timer before the TU's final response: the TU must answer.
//! - Timer D is 32 s on unreliable transports (RFC 3261 Table 4), independent of T1.

mod key;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::{Method, Request, Response, SipMessage};

use crate::message;
use crate::{SipError, TimerConfig, Transmit, Transport};

pub use key::TxKey;
use key::{ack_key_of, server_key, AckKey, MAGIC_COOKIE};

/// What the transaction layer reports to the TU.
#[derive(Debug, Clone)]
pub enum TxEvent {
    /// A new request on a new server transaction (retransmissions are absorbed, never surfaced
    /// again).
    Request {
        /// The new server transaction.
        key: TxKey,
        /// The request as received.
        request: Request,
        /// Where it came from (responses go back there).
        source: SocketAddr,
        /// The transport it came in on.
        transport: Transport,
    },
    /// CANCEL arrived. `invite` = the matching INVITE server transaction if any (RFC 3261 §9.2).
    /// The layer itself answers nothing: the TU answers 200 to the CANCEL (via `send_response` on
    /// `key`) and 487 to the INVITE, or 481 to the CANCEL if `invite` is None.
    Cancel {
        /// The CANCEL's own server transaction.
        key: TxKey,
        /// The INVITE server transaction it cancels, if any.
        invite: Option<TxKey>,
        /// The CANCEL as received.
        request: Request,
        /// Where it came from.
        source: SocketAddr,
        /// The transport it came in on.
        transport: Transport,
    },
    /// ACK for a 2xx (no transaction of its own; §17.1.1.3/§13.3.1.4). The layer also uses it to
    /// stop retransmitting that 2xx.
    Ack {
        /// The ACK as received.
        request: Request,
        /// Where it came from.
        source: SocketAddr,
        /// The transport it came in on.
        transport: Transport,
    },
    /// Response to one of our client transactions (provisional and final; for INVITE every 2xx
    /// including retransmissions in Accepted state per RFC 6026, so the TU can re-ACK).
    Response {
        /// The client transaction.
        key: TxKey,
        /// The response as received.
        response: Response,
    },
    /// A response that matched no transaction (e.g. late 2xx retransmission).
    StrayResponse {
        /// The response as received.
        response: Response,
        /// Where it came from.
        source: SocketAddr,
    },
    /// Client transaction timed out (Timer B or F, or 64*T1 after a CANCEL) — treat like a 408.
    Timeout {
        /// The client transaction that timed out.
        key: TxKey,
    },
    /// Server INVITE transaction sent a 2xx but no ACK arrived within 64*T1 (send a BYE).
    AckTimeout {
        /// The INVITE server transaction.
        key: TxKey,
    },
    /// Transaction finished and was removed.
    Terminated {
        /// The transaction that ended.
        key: TxKey,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// A transaction's state (RFC 3261 §17, RFC 6026); carried by [`SipError::ResponseNotAllowed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxState {
    /// INVITE client before any response.
    Calling,
    /// Non-INVITE client/server before any response.
    Trying,
    /// After a provisional response (sent or received).
    Proceeding,
    /// After a non-2xx final response (INVITE) or any final response (non-INVITE).
    Completed,
    /// INVITE server after the ACK for its non-2xx final response.
    Confirmed,
    /// RFC 6026: INVITE after a 2xx.
    Accepted,
}

/// What happens when a transaction's end timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Timer B / F / CANCEL guard: report Timeout, then terminate.
    Timeout,
    /// Timers D, H, I, J, K, M: terminate quietly.
    Terminate,
    /// Timer L in Accepted: report AckTimeout unless the ACK came, then terminate.
    AckWait,
}

#[derive(Debug)]
struct Tx {
    id: u64,
    kind: Kind,
    state: TxState,
    /// The request that created the transaction.
    request: Request,
    /// Client: where requests go. Server: the request's source, where responses go.
    peer: SocketAddr,
    transport: Transport,
    /// Client: the serialised request. Server: the last response sent.
    wire: Option<Bytes>,
    /// INVITE client: the ACK for a non-2xx final response, re-sent on retransmissions.
    ack: Option<Bytes>,
    retrans_at: Option<Instant>,
    interval: Duration,
    end_at: Option<(Instant, End)>,
    /// INVITE client: deadline set by a CANCEL (RFC 3261 §9.1).
    cancel_deadline: Option<Instant>,
    /// INVITE server in Accepted: the ACK arrived.
    acked: bool,
    ack_key: Option<AckKey>,
}

/// The transaction layer. See the module docs.
#[derive(Debug)]
pub struct TransactionLayer {
    timers: TimerConfig,
    txs: HashMap<TxKey, Tx>,
    by_id: HashMap<u64, TxKey>,
    accepted: HashMap<AckKey, TxKey>,
    /// Min-heap of (deadline, transaction id). Entries may be stale (timer re-armed or
    /// transaction gone); they are checked against the transaction when popped.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

fn add(now: Instant, d: Duration) -> Instant {
    // Only absurd configurations overflow; firing at once is the least bad outcome.
    now.checked_add(d).unwrap_or(now)
}

impl TransactionLayer {
    /// A new, empty layer using the given timer base values.
    pub fn new(timers: TimerConfig) -> Self {
        Self {
            timers,
            txs: HashMap::new(),
            by_id: HashMap::new(),
            accepted: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn t64(&self) -> Duration {
        self.timers.t1.saturating_mul(64)
    }

    /// Feed one parsed message from the wire. Requests get `received`/`rport` filled in the top
    /// Via (RFC 3261 §18.2.1, RFC 3581) before anything else. Retransmitted requests re-send the
    /// last response.
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: SipMessage,
        source: SocketAddr,
        transport: Transport,
    ) {
        match msg {
            SipMessage::Request(mut request) => {
                message::add_received_rport(&mut request.headers, source);
                self.handle_request(now, request, source, transport);
            }
            SipMessage::Response(response) => self.handle_response(now, response, source),
        }
    }

    /// Start a client transaction (INVITE or non-INVITE). The request should already carry its
    /// Via with a `z9hG4bK` branch; if the top Via has no branch one is added. An ACK is sent
    /// statelessly (ACKs have no client transaction) and its would-be key returned.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> TxKey {
        let branch = match message::top_via_branch(&request.headers) {
            Some(b) => b,
            None => {
                self.next_id += 1;
                let b = format!("{MAGIC_COOKIE}.tl{:x}", self.next_id);
                if let Some(via) = message::top_via(&request.headers) {
                    message::replace_top_via(&mut request.headers, &format!("{via};branch={b}"));
                } else {
                    tracing::warn!("client request without Via: responses cannot match it");
                }
                b
            }
        };
        let key = TxKey {
            branch,
            method: request.method,
            sent_by: String::new(),
            is_server: false,
        };
        let wire = message::to_bytes(&SipMessage::Request(request.clone()));
        self.transmit(transport, dest, wire.clone());
        if request.method == Method::Ack {
            return key;
        }
        if let Some(old) = self.txs.get(&key).map(|tx| tx.id) {
            tracing::warn!(branch = %key.branch, "branch reused for a new client transaction");
            self.terminate_id(old);
        }
        let (kind, state) = if request.method == Method::Invite {
            (Kind::InviteClient, TxState::Calling)
        } else {
            (Kind::NonInviteClient, TxState::Trying)
        };
        let retrans_at = (!transport.is_reliable()).then(|| add(now, self.timers.t1));
        let end_at = Some((add(now, self.t64()), End::Timeout));
        if request.method == Method::Cancel {
            self.arm_cancel_guard(now, &key);
        }
        self.insert(
            key.clone(),
            Tx {
                id: 0,
                kind,
                state,
                request,
                peer: dest,
                transport,
                wire: Some(wire),
                ack: None,
                retrans_at,
                interval: self.timers.t1,
                end_at,
                cancel_deadline: None,
                acked: false,
                ack_key: None,
            },
        );
        key
    }

    /// RFC 3261 §9.1: an INVITE client transaction being cancelled gives up 64*T1 after the
    /// CANCEL if no final response arrives.
    fn arm_cancel_guard(&mut self, now: Instant, cancel_key: &TxKey) {
        let deadline = add(now, self.t64());
        let invite_key = cancel_key.with_method(Method::Invite);
        let Some(tx) = self.txs.get_mut(&invite_key) else {
            return;
        };
        if !matches!(tx.state, TxState::Calling | TxState::Proceeding) {
            return;
        }
        tx.cancel_deadline = Some(deadline);
        let earlier = tx.end_at.is_none_or(|(at, _)| at > deadline);
        if earlier {
            tx.end_at = Some((deadline, End::Timeout));
            self.heap.push(Reverse((deadline, tx.id)));
        }
    }

    /// Send a response on a server transaction. Destination = the request's source address
    /// (symmetric, RFC 3581). Errors if the transaction is unknown or already has a final
    /// response (a 2xx may be repeated in Accepted).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &TxKey,
        response: Response,
    ) -> Result<(), SipError> {
        let t1 = self.timers.t1;
        let t64 = self.t64();
        let tx = match self.txs.get_mut(key) {
            Some(tx) if key.is_server => tx,
            _ => return Err(SipError::UnknownTransaction),
        };
        let code = response.status_code.code();
        if !(100..=699).contains(&code) {
            return Err(SipError::InvalidStatusCode(code));
        }
        let reliable = tx.transport.is_reliable();
        let mut arm: Vec<Instant> = Vec::new();
        let mut terminate_now = false;
        match (tx.kind, tx.state) {
            (Kind::InviteServer, TxState::Proceeding) => match code {
                100..=199 => {}
                200..=299 => {
                    tx.state = TxState::Accepted;
                    if !reliable {
                        tx.retrans_at = Some(add(now, t1));
                        tx.interval = t1;
                        arm.push(add(now, t1));
                    }
                    tx.end_at = Some((add(now, t64), End::AckWait));
                    arm.push(add(now, t64));
                    let ack_key = ack_key_of(&tx.request.headers);
                    if let Some(ak) = &ack_key {
                        self.accepted.insert(ak.clone(), key.clone());
                    }
                    tx.ack_key = ack_key;
                }
                _ => {
                    tx.state = TxState::Completed;
                    if !reliable {
                        tx.retrans_at = Some(add(now, t1));
                        tx.interval = t1;
                        arm.push(add(now, t1));
                    }
                    tx.end_at = Some((add(now, t64), End::Terminate));
                    arm.push(add(now, t64));
                }
            },
            (Kind::InviteServer, TxState::Accepted) if (200..=299).contains(&code) => {}
            (Kind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {
                if code < 200 {
                    tx.state = TxState::Proceeding;
                } else {
                    tx.state = TxState::Completed;
                    if reliable {
                        terminate_now = true;
                    } else {
                        tx.end_at = Some((add(now, t64), End::Terminate));
                        arm.push(add(now, t64));
                    }
                }
            }
            (_, state) => return Err(SipError::ResponseNotAllowed { code, state }),
        }
        let wire = message::to_bytes(&SipMessage::Response(response));
        tx.wire = Some(wire.clone());
        let (peer, transport, id) = (tx.peer, tx.transport, tx.id);
        for at in arm {
            self.heap.push(Reverse((at, id)));
        }
        self.transmit(transport, peer, wire);
        if terminate_now {
            self.terminate_id(id);
        }
        Ok(())
    }

    /// Send a message outside any transaction (ACK for 2xx, stateless replies e.g. 400 to
    /// garbage).
    pub fn send_stateless(&mut self, msg: SipMessage, dest: SocketAddr, transport: Transport) {
        let wire = message::to_bytes(&msg);
        self.transmit(transport, dest, wire);
    }

    /// Next datagram / stream write to perform.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should be called next. May be earlier than strictly needed
    /// (a timer that was cancelled since); calling `handle_timeout` then is harmless.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            self.fire(now, id);
        }
    }

    /// Live transactions (for tests and metrics).
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn fire(&mut self, now: Instant, id: u64) {
        let Some(key) = self.by_id.get(&id).cloned() else {
            return;
        };
        let t2 = self.timers.t2;
        let Some(tx) = self.txs.get_mut(&key) else {
            return;
        };
        if let Some((at, end)) = tx.end_at {
            if at <= now {
                match end {
                    End::Timeout => self.events.push_back(TxEvent::Timeout { key: key.clone() }),
                    End::AckWait if !tx.acked => self
                        .events
                        .push_back(TxEvent::AckTimeout { key: key.clone() }),
                    End::AckWait | End::Terminate => {}
                }
                self.terminate_id(id);
                return;
            }
        }
        let Some(at) = tx.retrans_at else {
            return;
        };
        if at > now {
            return;
        }
        tx.interval = match (tx.kind, tx.state) {
            // Timer A doubles without cap.
            (Kind::InviteClient, _) => tx.interval.saturating_mul(2),
            // Timer E in Proceeding: every T2.
            (Kind::NonInviteClient, TxState::Proceeding) => t2,
            // Timers E and G, and 2xx retransmission: doubling capped at T2.
            _ => tx.interval.saturating_mul(2).min(t2),
        };
        // Keep the schedule anchored to when the timer was due; if we are called very late,
        // restart from now rather than bursting.
        let mut next = add(at, tx.interval);
        if next <= now {
            next = add(now, tx.interval);
        }
        tx.retrans_at = Some(next);
        let wire = tx.wire.clone();
        let (peer, transport) = (tx.peer, tx.transport);
        self.heap.push(Reverse((next, id)));
        if let Some(wire) = wire {
            self.transmit(transport, peer, wire);
        }
    }

    fn transmit(&mut self, transport: Transport, dest: SocketAddr, data: Bytes) {
        self.transmits.push_back(Transmit {
            transport,
            dest,
            data,
        });
    }

    fn insert(&mut self, key: TxKey, mut tx: Tx) {
        self.next_id += 1;
        tx.id = self.next_id;
        if let Some(at) = tx.retrans_at {
            self.heap.push(Reverse((at, tx.id)));
        }
        if let Some((at, _)) = tx.end_at {
            self.heap.push(Reverse((at, tx.id)));
        }
        self.by_id.insert(tx.id, key.clone());
        self.txs.insert(key, tx);
    }

    fn terminate_id(&mut self, id: u64) {
        let Some(key) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(tx) = self.txs.remove(&key) {
            if let Some(ak) = tx.ack_key {
                if self.accepted.get(&ak) == Some(&key) {
                    self.accepted.remove(&ak);
                }
            }
        }
        self.events.push_back(TxEvent::Terminated { key });
    }

    fn handle_response(&mut self, now: Instant, response: Response, source: SocketAddr) {
        let key = match (
            message::top_via_branch(&response.headers),
            message::cseq(&response.headers),
        ) {
            (Some(branch), Some((_, method))) => TxKey {
                branch,
                method,
                sent_by: String::new(),
                is_server: false,
            },
            _ => {
                self.events
                    .push_back(TxEvent::StrayResponse { response, source });
                return;
            }
        };
        let d_timer = Duration::from_secs(32);
        let t4 = self.timers.t4;
        let t64 = self.t64();
        let Some(tx) = self.txs.get_mut(&key) else {
            self.events
                .push_back(TxEvent::StrayResponse { response, source });
            return;
        };
        let code = response.status_code.code();
        let reliable = tx.transport.is_reliable();
        let id = tx.id;
        let mut arm: Option<Instant> = None;
        let mut pass_up = false;
        let mut terminate_now = false;
        match (tx.kind, tx.state) {
            (Kind::InviteClient, TxState::Calling | TxState::Proceeding) => {
                pass_up = true;
                tx.retrans_at = None; // Timer A stops on any response.
                match code {
                    100..=199 => {
                        tx.state = TxState::Proceeding;
                        // Timer B does not apply once proceeding; a CANCEL guard still does.
                        tx.end_at = tx.cancel_deadline.map(|at| (at, End::Timeout));
                    }
                    200..=299 => {
                        tx.state = TxState::Accepted;
                        tx.end_at = Some((add(now, t64), End::Terminate)); // Timer M
                        arm = Some(add(now, t64));
                    }
                    _ => {
                        tx.state = TxState::Completed;
                        let ack = message::ack_for_non2xx(&tx.request, &response);
                        let wire = message::to_bytes(&SipMessage::Request(ack));
                        tx.ack = Some(wire.clone());
                        self.transmits.push_back(Transmit {
                            transport: tx.transport,
                            dest: tx.peer,
                            data: wire,
                        });
                        if reliable {
                            terminate_now = true;
                        } else {
                            tx.end_at = Some((add(now, d_timer), End::Terminate)); // Timer D
                            arm = Some(add(now, d_timer));
                        }
                    }
                }
            }
            (Kind::InviteClient, TxState::Completed) if code >= 300 => {
                // Retransmitted final response: our ACK got lost.
                if let Some(ack) = tx.ack.clone() {
                    self.transmits.push_back(Transmit {
                        transport: tx.transport,
                        dest: tx.peer,
                        data: ack,
                    });
                }
            }
            (Kind::InviteClient, TxState::Accepted) if (200..=299).contains(&code) => {
                pass_up = true;
            }
            (Kind::NonInviteClient, TxState::Trying | TxState::Proceeding) => {
                pass_up = true;
                if code < 200 {
                    tx.state = TxState::Proceeding;
                } else {
                    tx.state = TxState::Completed;
                    tx.retrans_at = None;
                    if reliable {
                        terminate_now = true;
                    } else {
                        tx.end_at = Some((add(now, t4), End::Terminate)); // Timer K
                        arm = Some(add(now, t4));
                    }
                }
            }
            (kind, state) => {
                tracing::trace!(?kind, ?state, code, "response absorbed");
            }
        }
        if let Some(at) = arm {
            self.heap.push(Reverse((at, id)));
        }
        if pass_up {
            self.events.push_back(TxEvent::Response {
                key: key.clone(),
                response,
            });
        }
        if terminate_now {
            self.terminate_id(id);
        }
    }

    fn handle_request(
        &mut self,
        now: Instant,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let Some(key) = server_key(&request) else {
            tracing::debug!(%source, "request without usable Via/CSeq dropped");
            return;
        };
        if request.method == Method::Ack {
            self.handle_ack(now, key, request, source, transport);
            return;
        }
        if let Some(tx) = self.txs.get(&key) {
            // Retransmission: re-send the last response, if any (RFC 3261 §17.2.1, §17.2.2).
            let resend = match (tx.kind, tx.state) {
                (_, TxState::Confirmed) => None,
                (Kind::InviteServer, TxState::Accepted) if tx.acked => None,
                _ => tx.wire.clone(),
            };
            if let Some(wire) = resend {
                let (transport, peer) = (tx.transport, tx.peer);
                self.transmit(transport, peer, wire);
            }
            return;
        }
        let kind = if request.method == Method::Invite {
            Kind::InviteServer
        } else {
            Kind::NonInviteServer
        };
        let state = if kind == Kind::InviteServer {
            TxState::Proceeding
        } else {
            TxState::Trying
        };
        self.insert(
            key.clone(),
            Tx {
                id: 0,
                kind,
                state,
                request: request.clone(),
                peer: source,
                transport,
                wire: None,
                ack: None,
                retrans_at: None,
                interval: self.timers.t1,
                end_at: None,
                cancel_deadline: None,
                acked: false,
                ack_key: None,
            },
        );
        if request.method == Method::Cancel {
            let invite_key = key.with_method(Method::Invite);
            let invite = self.txs.contains_key(&invite_key).then_some(invite_key);
            self.events.push_back(TxEvent::Cancel {
                key,
                invite,
                request,
                source,
                transport,
            });
        } else {
            self.events.push_back(TxEvent::Request {
                key,
                request,
                source,
                transport,
            });
        }
    }

    fn handle_ack(
        &mut self,
        now: Instant,
        invite_key: TxKey,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let t4 = self.timers.t4;
        if let Some(tx) = self.txs.get_mut(&invite_key) {
            match tx.state {
                TxState::Completed => {
                    // ACK for our non-2xx: stop Timer G, absorb for Timer I.
                    tx.state = TxState::Confirmed;
                    tx.retrans_at = None;
                    let id = tx.id;
                    if tx.transport.is_reliable() {
                        self.terminate_id(id);
                    } else {
                        let at = add(now, t4);
                        tx.end_at = Some((at, End::Terminate));
                        self.heap.push(Reverse((at, id)));
                    }
                    return;
                }
                TxState::Confirmed => return,
                // An ACK reusing the INVITE's branch in Accepted is an ACK for the 2xx (seen
                // from RFC 2543 peers); handled below.
                TxState::Accepted => {}
                _ => {
                    tracing::debug!("ACK for an unanswered INVITE ignored");
                    return;
                }
            }
        }
        if let Some(ak) = ack_key_of(&request.headers) {
            if let Some(key) = self.accepted.get(&ak) {
                if let Some(tx) = self.txs.get_mut(key) {
                    tx.acked = true;
                    tx.retrans_at = None;
                }
            }
        }
        self.events.push_back(TxEvent::Ack {
            request,
            source,
            transport,
        });
    }
}
