//! RFC 3261 §17 / RFC 6026 transaction layer behaviour, in virtual time.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_sip::message::{self, header, to_bytes};
use bibridge_sip::rsip::{Method, Request, Response, SipMessage};
use bibridge_sip::transaction::{TransactionLayer, TxEvent, TxKey};
use bibridge_sip::{TimerConfig, Transmit, Transport};

const PEER: &str = "192.0.2.10:5062";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TimerConfig::default())
}

fn request(method: &str, branch: &str, cseq: u32, extra: &str) -> Request {
    let text = format!(
        "{method} sip:1001@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=ft1\r\n\
         To: <sip:1001@127.0.0.1>{extra}\r\n\
         Call-ID: call-1@example.com\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match message::parse(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => panic!("expected request"),
    }
}

fn reply(req: &Request, code: u16, reason: &str) -> Response {
    message::response(req, code, reason, Some("tt1"))
}

fn transmits(l: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| l.poll_transmit()).collect()
}

fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

/// Items stamped with their offset from the test's t0.
type Timed<T> = Vec<(Duration, T)>;

/// Steps the layer from timer to timer until `end` (inclusive), recording the offset from `t0`
/// of every transmit and every event.
fn run_until(
    l: &mut TransactionLayer,
    t0: Instant,
    end: Duration,
) -> (Timed<Transmit>, Timed<TxEvent>) {
    let (mut tx, mut ev) = (Vec::new(), Vec::new());
    while let Some(at) = l.poll_timeout() {
        if at > t0 + end {
            break;
        }
        l.handle_timeout(at);
        tx.extend(transmits(l).into_iter().map(|t| (at - t0, t)));
        ev.extend(events(l).into_iter().map(|e| (at - t0, e)));
    }
    (tx, ev)
}

fn offsets(v: &[(Duration, Transmit)]) -> Vec<u64> {
    v.iter().map(|(d, _)| d.as_millis() as u64).collect()
}

/// Feeds a request from the peer and returns the key of the Request/Cancel event it produced.
fn feed(
    l: &mut TransactionLayer,
    now: Instant,
    req: &Request,
    transport: Transport,
) -> Vec<TxEvent> {
    l.handle_message(now, SipMessage::Request(req.clone()), peer(), transport);
    events(l)
}

fn request_key(ev: &[TxEvent]) -> TxKey {
    match ev {
        [TxEvent::Request { key, .. }] => key.clone(),
        other => panic!("expected one Request event, got {other:?}"),
    }
}

#[test]
fn invite_client_retransmits_at_doubling_intervals_and_times_out_at_64_t1() {
    let mut l = layer();
    let t0 = Instant::now();
    let key = l.send_request(
        t0,
        request("INVITE", "z9hG4bKc1", 1, ""),
        peer(),
        Transport::Udp,
    );
    assert!(key.method() == Method::Invite && !key.is_server());
    let first = transmits(&mut l);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].dest, peer());

    let (tx, ev) = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(offsets(&tx), vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert!(tx.iter().all(|(_, t)| t.data == first[0].data));
    match ev.as_slice() {
        [(at, TxEvent::Timeout { key: k1 }), (at2, TxEvent::Terminated { key: k2 })] => {
            assert_eq!(*at, ms(32_000));
            assert_eq!(*at2, ms(32_000));
            assert_eq!(k1, &key);
            assert_eq!(k2, &key);
        }
        other => panic!("unexpected events {other:?}"),
    }
    assert_eq!(l.len(), 0);
}

#[test]
fn non_invite_client_retransmissions_cap_at_t2() {
    let mut l = layer();
    let t0 = Instant::now();
    let key = l.send_request(
        t0,
        request("OPTIONS", "z9hG4bKo1", 1, ""),
        peer(),
        Transport::Udp,
    );
    transmits(&mut l);
    let (tx, ev) = run_until(&mut l, t0, Duration::from_secs(40));
    assert_eq!(
        offsets(&tx),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert!(matches!(&ev[0], (at, TxEvent::Timeout { key: k }) if *at == ms(32_000) && *k == key));
}

#[test]
fn non_invite_client_after_provisional_retransmits_every_t2_then_timer_k() {
    let mut l = layer();
    let t0 = Instant::now();
    let req = request("OPTIONS", "z9hG4bKo2", 1, "");
    let key = l.send_request(t0, req.clone(), peer(), Transport::Udp);
    transmits(&mut l);
    let (tx, _) = run_until(&mut l, t0, ms(600));
    assert_eq!(offsets(&tx), vec![500]);
    l.handle_message(
        t0 + ms(600),
        SipMessage::Response(message::response(&req, 100, "Trying", None)),
        peer(),
        Transport::Udp,
    );
    assert!(matches!(events(&mut l).as_slice(), [TxEvent::Response { key: k, .. }] if *k == key));
    let (tx, _) = run_until(&mut l, t0, ms(10_000));
    // The pending Timer E (due at 1500) fires, then every T2.
    assert_eq!(offsets(&tx), vec![1500, 5500, 9500]);
    let now = t0 + ms(10_000);
    l.handle_message(
        now,
        SipMessage::Response(reply(&req, 200, "OK")),
        peer(),
        Transport::Udp,
    );
    assert_eq!(events(&mut l).len(), 1);
    // Retransmitted 200 is absorbed in Completed.
    l.handle_message(
        now,
        SipMessage::Response(reply(&req, 200, "OK")),
        peer(),
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    let (tx, ev) = run_until(&mut l, t0, ms(20_000));
    assert!(tx.is_empty(), "no retransmission after the final response");
    assert!(matches!(ev.as_slice(), [(at, TxEvent::Terminated { .. })] if *at == ms(15_000)));
}

#[test]
fn invite_server_absorbs_retransmission_and_resends_last_response() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKs1", 1, "");
    let ev = feed(&mut l, t0, &inv, Transport::Udp);
    let key = request_key(&ev);
    assert!(key.is_server());
    // received/rport filled in from the packet source.
    let TxEvent::Request {
        request, source, ..
    } = &ev[0]
    else {
        unreachable!()
    };
    assert_eq!(*source, peer());
    assert_eq!(
        message::top_via(&request.headers).unwrap(),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKs1;rport=5062;received=192.0.2.10"
    );
    // Retransmission before any response: absorbed, nothing to re-send, no new event.
    assert!(feed(&mut l, t0 + ms(500), &inv, Transport::Udp).is_empty());
    assert!(transmits(&mut l).is_empty());

    l.send_response(t0 + ms(600), &key, reply(request, 180, "Ringing"))
        .unwrap();
    let ringing = transmits(&mut l);
    assert_eq!(ringing.len(), 1);
    assert_eq!(ringing[0].dest, peer());
    assert!(feed(&mut l, t0 + ms(1500), &inv, Transport::Udp).is_empty());
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, ringing[0].data, "byte-identical re-send");
    assert_eq!(l.len(), 1);
}

fn invite_answered_200(
    l: &mut TransactionLayer,
    t0: Instant,
    transport: Transport,
) -> (Request, TxKey) {
    let inv = request("INVITE", "z9hG4bKs2", 1, "");
    let key = request_key(&feed(l, t0, &inv, transport));
    l.send_response(t0, &key, reply(&inv, 200, "OK")).unwrap();
    assert_eq!(transmits(l).len(), 1);
    (inv, key)
}

#[test]
fn server_2xx_retransmitted_until_ack_then_stops() {
    let mut l = layer();
    let t0 = Instant::now();
    let (inv, key) = invite_answered_200(&mut l, t0, Transport::Udp);
    let (tx, _) = run_until(&mut l, t0, ms(4000));
    assert_eq!(offsets(&tx), vec![500, 1500, 3500]);
    // Retransmitted INVITE in Accepted: absorbed, the 2xx is re-sent.
    assert!(feed(&mut l, t0 + ms(4000), &inv, Transport::Udp).is_empty());
    assert_eq!(transmits(&mut l).len(), 1);
    // The ACK for a 2xx has its own branch; matched by Call-ID + CSeq + From tag.
    let ack = request("ACK", "z9hG4bKack", 1, ";tag=tt1");
    let ev = feed(&mut l, t0 + ms(4000), &ack, Transport::Udp);
    assert!(matches!(ev.as_slice(), [TxEvent::Ack { .. }]));
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty(), "2xx retransmission stops at the ACK");
    match ev.as_slice() {
        [(at, TxEvent::Terminated { key: k })] => {
            assert_eq!(*at, ms(32_000)); // Timer L
            assert_eq!(*k, key);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ack_timeout_without_ack() {
    let mut l = layer();
    let t0 = Instant::now();
    let (_, key) = invite_answered_200(&mut l, t0, Transport::Udp);
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert_eq!(
        offsets(&tx),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    match ev.as_slice() {
        [(a1, TxEvent::AckTimeout { key: k1 }), (a2, TxEvent::Terminated { key: k2 })] => {
            assert_eq!((*a1, *a2), (ms(32_000), ms(32_000)));
            assert_eq!((k1, k2), (&key, &key));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn cancel_matched_to_invite_server_transaction() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKs3", 1, "");
    let inv_key = request_key(&feed(&mut l, t0, &inv, Transport::Udp));
    l.send_response(t0, &inv_key, reply(&inv, 180, "Ringing"))
        .unwrap();
    transmits(&mut l);

    let cancel = request("CANCEL", "z9hG4bKs3", 1, "");
    let ev = feed(&mut l, t0 + ms(100), &cancel, Transport::Udp);
    let cancel_key = match ev.as_slice() {
        [TxEvent::Cancel { key, invite, .. }] => {
            assert_eq!(invite.as_ref(), Some(&inv_key));
            assert_eq!(key.method(), Method::Cancel);
            key.clone()
        }
        other => panic!("unexpected {other:?}"),
    };
    l.send_response(t0 + ms(100), &cancel_key, reply(&cancel, 200, "OK"))
        .unwrap();
    l.send_response(
        t0 + ms(100),
        &inv_key,
        reply(&inv, 487, "Request Terminated"),
    )
    .unwrap();
    let out = transmits(&mut l);
    assert_eq!(out.len(), 2);
    assert!(out[1]
        .data
        .starts_with(b"SIP/2.0 487 Request Terminated\r\n"));
    // ACK for the 487 (same branch) is absorbed by the INVITE transaction: no Ack event.
    let ack = request("ACK", "z9hG4bKs3", 1, ";tag=tt1");
    assert!(feed(&mut l, t0 + ms(200), &ack, Transport::Udp).is_empty());
    // Confirmed: no more 487 retransmissions; Timer I (T4) ends it.
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty());
    let terminated_inv = ev
        .iter()
        .find(|(_, e)| matches!(e, TxEvent::Terminated { key } if *key == inv_key))
        .unwrap();
    assert_eq!(terminated_inv.0, ms(5_200));

    // CANCEL for an unknown INVITE: invite = None.
    let stray = request("CANCEL", "z9hG4bKnone", 9, "");
    let ev = feed(&mut l, t0 + ms(50_000), &stray, Transport::Udp);
    assert!(matches!(
        ev.as_slice(),
        [TxEvent::Cancel { invite: None, .. }]
    ));
}

#[test]
fn cancel_racing_a_200() {
    let mut l = layer();
    let t0 = Instant::now();
    let (inv, inv_key) = invite_answered_200(&mut l, t0, Transport::Udp);
    let cancel = request("CANCEL", "z9hG4bKs2", 1, "");
    let ev = feed(&mut l, t0 + ms(100), &cancel, Transport::Udp);
    let cancel_key = match ev.as_slice() {
        [TxEvent::Cancel { key, invite, .. }] => {
            assert_eq!(invite.as_ref(), Some(&inv_key));
            key.clone()
        }
        other => panic!("unexpected {other:?}"),
    };
    l.send_response(t0 + ms(100), &cancel_key, reply(&cancel, 200, "OK"))
        .unwrap();
    // The INVITE is in Accepted: a 487 is refused, a repeated 2xx is allowed.
    assert!(l
        .send_response(
            t0 + ms(100),
            &inv_key,
            reply(&inv, 487, "Request Terminated")
        )
        .is_err());
    l.send_response(t0 + ms(100), &inv_key, reply(&inv, 200, "OK"))
        .unwrap();
    assert_eq!(transmits(&mut l).len(), 2);
    // And the 2xx keeps being retransmitted until the ACK.
    let (tx, _) = run_until(&mut l, t0, ms(600));
    assert_eq!(offsets(&tx), vec![500]);
}

#[test]
fn client_generates_ack_for_non_2xx() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKc2", 5, "");
    let key = l.send_request(t0, inv.clone(), peer(), Transport::Udp);
    transmits(&mut l);
    let busy = reply(&inv, 486, "Busy Here");
    l.handle_message(
        t0 + ms(100),
        SipMessage::Response(busy.clone()),
        peer(),
        Transport::Udp,
    );
    let ev = events(&mut l);
    assert!(
        matches!(ev.as_slice(), [TxEvent::Response { key: k, response }] if *k == key && response.status_code.code() == 486)
    );
    let out = transmits(&mut l);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, peer());
    let SipMessage::Request(ack) = message::parse(&out[0].data).unwrap() else {
        panic!("ACK expected")
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(message::headers_all(&ack.headers, "Via").len(), 1);
    assert_eq!(
        message::top_via_branch(&ack.headers).as_deref(),
        Some("z9hG4bKc2")
    );
    assert_eq!(header(&ack.headers, "CSeq").as_deref(), Some("5 ACK"));
    assert_eq!(message::to_tag(&ack.headers).as_deref(), Some("tt1"));
    assert_eq!(
        message::call_id(&ack.headers),
        message::call_id(&inv.headers)
    );

    // Retransmitted 486: the same ACK again, not passed up.
    l.handle_message(
        t0 + ms(700),
        SipMessage::Response(busy),
        peer(),
        Transport::Udp,
    );
    assert!(events(&mut l).is_empty());
    let again = transmits(&mut l);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, out[0].data);
    // No INVITE retransmissions in Completed; Timer D = 32 s.
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty());
    assert!(matches!(ev.as_slice(), [(at, TxEvent::Terminated { .. })] if *at == ms(32_100)));
}

#[test]
fn client_invite_2xx_accepted_passes_every_2xx_up() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKc3", 1, "");
    let key = l.send_request(t0, inv.clone(), peer(), Transport::Udp);
    transmits(&mut l);
    for at in [100, 600] {
        l.handle_message(
            t0 + ms(at),
            SipMessage::Response(reply(&inv, 200, "OK")),
            peer(),
            Transport::Udp,
        );
        assert!(
            matches!(events(&mut l).as_slice(), [TxEvent::Response { key: k, .. }] if *k == key)
        );
    }
    // The layer never ACKs a 2xx itself.
    assert!(transmits(&mut l).is_empty());
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty(), "Timer A stopped");
    assert!(matches!(ev.as_slice(), [(at, TxEvent::Terminated { .. })] if *at == ms(32_100)));
    // After Timer M a late 2xx is a stray, for the TU to re-ACK.
    l.handle_message(
        t0 + ms(40_000),
        SipMessage::Response(reply(&inv, 200, "OK")),
        peer(),
        Transport::Udp,
    );
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::StrayResponse { .. }]
    ));
}

#[test]
fn cancelled_invite_client_gives_up_64_t1_after_cancel() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKc4", 1, "");
    let key = l.send_request(t0, inv.clone(), peer(), Transport::Udp);
    l.handle_message(
        t0 + ms(100),
        SipMessage::Response(reply(&inv, 180, "Ringing")),
        peer(),
        Transport::Udp,
    );
    events(&mut l);
    // Proceeding: no Timer B any more.
    let (_, ev) = run_until(&mut l, t0, ms(60_000));
    assert!(ev.is_empty());
    let cancel = message::cancel_for(&inv);
    let cancel_key = l.send_request(t0 + ms(60_000), cancel.clone(), peer(), Transport::Udp);
    l.handle_message(
        t0 + ms(60_050),
        SipMessage::Response(reply(&cancel, 200, "OK")),
        peer(),
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { key: k, .. }] if *k == cancel_key)
    );
    let (_, ev) = run_until(&mut l, t0, ms(100_000));
    let timeout = ev
        .iter()
        .find(|(_, e)| matches!(e, TxEvent::Timeout { key: k } if *k == key))
        .unwrap();
    assert_eq!(timeout.0, ms(92_000));
}

#[test]
fn tcp_has_no_retransmissions() {
    let mut l = layer();
    let t0 = Instant::now();
    let key = l.send_request(
        t0,
        request("INVITE", "z9hG4bKt1", 1, ""),
        peer(),
        Transport::Tcp,
    );
    l.send_request(
        t0,
        request("OPTIONS", "z9hG4bKt2", 1, ""),
        peer(),
        Transport::Tcp,
    );
    assert_eq!(transmits(&mut l).len(), 2);
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty());
    let timeouts: Vec<_> = ev
        .iter()
        .filter(|(_, e)| matches!(e, TxEvent::Timeout { .. }))
        .collect();
    assert_eq!(timeouts.len(), 2);
    assert!(timeouts.iter().all(|(at, _)| *at == ms(32_000)));
    assert!(ev
        .iter()
        .any(|(_, e)| matches!(e, TxEvent::Timeout { key: k } if *k == key)));

    // Server side: 2xx over TCP is not retransmitted; AckTimeout still at 64*T1.
    let mut l = layer();
    let (_, key) = invite_answered_200(&mut l, t0, Transport::Tcp);
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(tx.is_empty());
    assert!(
        matches!(&ev[0], (at, TxEvent::AckTimeout { key: k }) if *at == ms(32_000) && *k == key)
    );

    // Non-INVITE server over TCP: Timer J = 0, the transaction ends with the final response.
    let mut l = layer();
    let opt = request("OPTIONS", "z9hG4bKt3", 1, "");
    let key = request_key(&feed(&mut l, t0, &opt, Transport::Tcp));
    l.send_response(t0, &key, reply(&opt, 200, "OK")).unwrap();
    assert_eq!(transmits(&mut l)[0].transport, Transport::Tcp);
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Terminated { .. }]
    ));
    assert_eq!(l.len(), 0);
}

#[test]
fn non_invite_server_resends_final_and_timer_j() {
    let mut l = layer();
    let t0 = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKn1", 3, "");
    let key = request_key(&feed(&mut l, t0, &opt, Transport::Udp));
    l.send_response(t0, &key, reply(&opt, 200, "OK")).unwrap();
    let first = transmits(&mut l);
    assert!(l.send_response(t0, &key, reply(&opt, 200, "OK")).is_err());
    assert!(feed(&mut l, t0 + ms(500), &opt, Transport::Udp).is_empty());
    assert_eq!(transmits(&mut l)[0].data, first[0].data);
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert!(
        tx.is_empty(),
        "server never retransmits non-INVITE responses by itself"
    );
    assert!(matches!(ev.as_slice(), [(at, TxEvent::Terminated { .. })] if *at == ms(32_000)));
    assert!(l.send_response(t0, &key, reply(&opt, 200, "OK")).is_err());
}

#[test]
fn invite_server_non_2xx_retransmits_timer_g_until_h() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKg1", 1, "");
    let key = request_key(&feed(&mut l, t0, &inv, Transport::Udp));
    l.send_response(t0, &key, reply(&inv, 404, "Not Found"))
        .unwrap();
    transmits(&mut l);
    let (tx, ev) = run_until(&mut l, t0, ms(40_000));
    assert_eq!(
        offsets(&tx),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    // Timer H: just terminated, no other event.
    assert!(matches!(ev.as_slice(), [(at, TxEvent::Terminated { .. })] if *at == ms(32_000)));
}

#[test]
fn stray_and_rfc2543_handling() {
    let mut l = layer();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKnobody", 1, "");
    l.handle_message(
        t0,
        SipMessage::Response(reply(&inv, 200, "OK")),
        peer(),
        Transport::Udp,
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::StrayResponse { source, .. }] if *source == peer())
    );

    // Branch without the magic cookie: retransmission and ACK still match.
    let old = request("INVITE", "oldbranch1", 4, "");
    let key = request_key(&feed(&mut l, t0, &old, Transport::Udp));
    assert!(feed(&mut l, t0 + ms(10), &old, Transport::Udp).is_empty());
    l.send_response(t0 + ms(20), &key, reply(&old, 486, "Busy Here"))
        .unwrap();
    transmits(&mut l);
    let ack = request("ACK", "oldbranch1", 4, ";tag=tt1");
    assert!(
        feed(&mut l, t0 + ms(30), &ack, Transport::Udp).is_empty(),
        "absorbed by the INVITE tx"
    );
    let (tx, _) = run_until(&mut l, t0, ms(10_000));
    assert!(tx.is_empty(), "Confirmed: Timer G stopped");
}

#[test]
fn unknown_key_is_an_error() {
    let mut l = layer();
    let t0 = Instant::now();
    let opt = request("OPTIONS", "z9hG4bKu1", 1, "");
    let client_key = l.send_request(t0, opt.clone(), peer(), Transport::Udp);
    assert!(l
        .send_response(t0, &client_key, reply(&opt, 200, "OK"))
        .is_err());
    // Serialised responses are well-formed.
    let bytes = to_bytes(&SipMessage::Response(reply(&opt, 200, "OK")));
    assert!(message::parse(&bytes).is_ok());
}
