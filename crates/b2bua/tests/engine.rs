//! The B2BUA engine in virtual time: raw SIP in, raw SIP out, no sockets, no clock.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::time::Duration;

use bibridge_b2bua::engine::{MediaCommand, MediaEvent};
use bibridge_sip::Transport;

const SDP: &str = "v=0
o=- 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
";

fn invite_from_trunk(h: &mut H) -> (String, String) {
    let body = SDP.replace('\n', "\r\n");
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcust1;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>
Call-ID: cust-call-1
CSeq: 1 INVITE
Contact: <sip:customer@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{}",
            body.len(),
            SDP
        ),
    );
    let media = h.media();
    let Some(MediaCommand::Open { call, .. }) = media.first().cloned() else {
        panic!("media opened first: {media:?}")
    };
    let first = h.out();
    assert!(
        first
            .iter()
            .any(|(d, m)| d.to_string() == TRUNK && first_line(m) == "SIP/2.0 100 Trying"),
        "100 Trying at once: {first:?}"
    );
    // Nothing goes to the callee before the ports are bound.
    assert!(
        !first.iter().any(|(d, _)| d.to_string() == AGENT),
        "{first:?}"
    );
    h.e.handle_media_event(h.now, MediaEvent::Opened { call });
    let out = h.out();
    let (_, inv) = out
        .iter()
        .find(|(d, m)| d.to_string() == AGENT && m.starts_with("INVITE "))
        .cloned()
        .unwrap();
    // Anchored: the agent is offered bibridge's port, not the customer's.
    assert!(!inv.contains("m=audio 40000"), "{inv}");
    (inv.clone(), header(&inv, "Via").to_string())
}

fn response_to(req: &str, code: &str, to_tag: &str, extra: &str) -> String {
    format!(
        "SIP/2.0 {code}
Via: {}
From: {}
To: {};tag={to_tag}
Call-ID: {}
CSeq: {}
Contact: <sip:1001@{AGENT}>
{extra}Content-Length: 0

",
        header(req, "Via"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
    )
}

#[test]
fn cancel_racing_the_callees_200_ends_with_ack_and_bye() {
    let mut h = H::new();
    let (inv, _) = invite_from_trunk(&mut h);
    h.send(AGENT, &response_to(&inv, "180 Ringing", "a1", ""));
    let out = h.out();
    assert!(
        out.iter()
            .any(|(d, m)| d.to_string() == TRUNK && first_line(m) == "SIP/2.0 180 Ringing"),
        "{out:?}"
    );
    // The customer gives up...
    h.send(
        TRUNK,
        &format!(
            "CANCEL sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcust1;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>
Call-ID: cust-call-1
CSeq: 1 CANCEL
Content-Length: 0

"
        ),
    );
    let out = h.out();
    assert!(
        out.iter()
            .any(|(_, m)| first_line(m) == "SIP/2.0 200 OK" && m.contains("CSeq: 1 CANCEL")),
        "{out:?}"
    );
    assert!(out
        .iter()
        .any(|(d, m)| d.to_string() == TRUNK && first_line(m) == "SIP/2.0 487 Request Terminated"));
    let cancel = out
        .iter()
        .find(|(d, m)| d.to_string() == AGENT && m.starts_with("CANCEL "))
        .unwrap();
    assert_eq!(
        header(&cancel.1, "Via"),
        header(&inv, "Via"),
        "CANCEL carries the INVITE's branch"
    );
    // ...while the agent's 200 is already on its way: it must be ACKed and hung up.
    h.send(AGENT, &response_to(&inv, "200 OK", "a1", ""));
    let out = h.out();
    let ack = out
        .iter()
        .find(|(d, m)| d.to_string() == AGENT && m.starts_with("ACK "))
        .expect("ACK for the late 200");
    assert!(header(&ack.1, "To").contains("tag=a1"));
    assert!(
        out.iter()
            .any(|(d, m)| d.to_string() == AGENT && m.starts_with("BYE ")),
        "BYE after the late 200: {out:?}"
    );
    assert_eq!(h.e.call_count(), 0);
    assert!(h
        .media()
        .iter()
        .any(|m| matches!(m, MediaCommand::Close { .. })));
}

#[test]
fn busy_media_ports_are_replaced_before_the_callee_is_invited() {
    let mut h = H::new();
    let body = SDP.replace('\n', "\r\n");
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcust9;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c9
To: <sip:1001@{US}>
Call-ID: cust-call-9
CSeq: 1 INVITE
Contact: <sip:customer@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{}",
            body.len(),
            SDP
        ),
    );
    let Some(MediaCommand::Open { call, legs }) = h.media().first().cloned() else {
        panic!()
    };
    let busy = legs[1].port;
    h.e.handle_media_event(
        h.now,
        MediaEvent::OpenFailed {
            call,
            bad_ports: vec![busy],
        },
    );
    let Some(MediaCommand::Open { legs: retry, .. }) = h.media().first().cloned() else {
        panic!("ports are retried")
    };
    assert!(
        retry.iter().all(|l| l.port != busy),
        "the busy port is not reused: {retry:?}"
    );
    h.e.handle_media_event(h.now, MediaEvent::Opened { call });
    let out = h.out();
    let inv = out
        .iter()
        .find(|(d, m)| d.to_string() == AGENT && m.starts_with("INVITE "))
        .unwrap();
    assert!(
        inv.1.contains(&format!("m=audio {} ", retry[1].port)),
        "{}",
        inv.1
    );
}

#[test]
fn callee_timeout_answers_408_after_64_t1() {
    let mut h = H::new();
    let (_inv, _) = invite_from_trunk(&mut h);
    // Nobody answers (not even 100): Timer B fires at 64·T1 = 32 s.
    let mut retransmits = 0;
    for _ in 0..320 {
        h.advance(Duration::from_millis(100));
        for (d, m) in h.out() {
            if d.to_string() == AGENT && m.starts_with("INVITE ") {
                retransmits += 1;
            }
            if d.to_string() == TRUNK && first_line(&m) == "SIP/2.0 408 Request Timeout" {
                assert_eq!(
                    retransmits, 6,
                    "INVITE retransmitted at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s"
                );
                assert_eq!(h.e.call_count(), 0);
                return;
            }
        }
    }
    panic!("no 408 after 32 s");
}

#[test]
fn mutated_messages_never_panic() {
    let mut h = H::new();
    let (inv, _) = invite_from_trunk(&mut h);
    let base = [inv, response_to("INVITE sip:x SIP/2.0\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 INVITE\n", "200 OK", "t", "")];
    // A small deterministic generator: no dependency, reproducible.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..20_000 {
        let mut bytes = base[i % 2].replace('\n', "\r\n").into_bytes();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes[pos] = next() as u8,
                1 => {
                    bytes.remove(pos);
                }
                _ => bytes.truncate(pos),
            }
            if bytes.is_empty() {
                break;
            }
        }
        h.e.handle_datagram(h.now, &bytes, TRUNK.parse().unwrap(), Transport::Udp);
        h.out();
        h.media();
    }
}

#[test]
fn an_unanswered_call_is_given_up_after_the_no_answer_timeout() {
    let mut h = H::new();
    let (inv, _) = invite_from_trunk(&mut h);
    h.send(AGENT, &response_to(&inv, "180 Ringing", "a1", ""));
    h.out();
    // Lab default: 180 s. Ringing forever is not an option (Timer B stops at the first 1xx).
    h.advance(Duration::from_secs(179));
    assert!(!h.out().iter().any(|(_, m)| m.starts_with("SIP/2.0 480")));
    let mut out = Vec::new();
    for _ in 0..20 {
        h.advance(Duration::from_millis(100));
        out.extend(h.out());
    }
    assert!(
        out.iter()
            .any(|(d, m)| d.to_string() == TRUNK && first_line(m).starts_with("SIP/2.0 480 ")),
        "480 to the caller: {out:?}"
    );
    assert!(
        out.iter()
            .any(|(d, m)| d.to_string() == AGENT && m.starts_with("CANCEL ")),
        "CANCEL to the callee"
    );
    assert_eq!(h.e.call_count(), 0);
}

#[test]
fn a_response_with_two_vias_is_dropped() {
    let mut h = H::new();
    let (inv, _) = invite_from_trunk(&mut h);
    // RFC 3261 §18.1.2: we never proxy, so a response with a second Via is not ours.
    let resp = response_to(&inv, "200 OK", "a1", "").replacen(
        "Via: ",
        "Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKother\nVia: ",
        1,
    );
    h.send(AGENT, &resp);
    let out = h.out();
    assert!(
        !out.iter().any(|(_, m)| m.starts_with("ACK ")),
        "not acknowledged: {out:?}"
    );
    assert!(!out
        .iter()
        .any(|(d, m)| d.to_string() == TRUNK && m.starts_with("SIP/2.0 200")));
    assert_eq!(
        h.e.call_count(),
        1,
        "the call still waits for a real answer"
    );
}
