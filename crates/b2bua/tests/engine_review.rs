//! Engine races and lifecycle edge cases found in review, in virtual time: raw SIP in, raw SIP
//! out, no sockets, no clock. Each test pins down one RFC rule the engine once got wrong.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::time::Duration;

use bibridge_b2bua::engine::MediaCommand;
use bibridge_sip::auth::client_authorization;

/// The customer (trunk) calls agent 1001; returns bibridge's INVITE to the agent.
fn invite_from_trunk(h: &mut H) -> String {
    trunk_invite(h, "cust-call-1", "c1", "z9hG4bKcust1")
}

fn response_to(req: &str, code: &str, to_tag: &str, body: Option<&str>) -> String {
    let (ctype, body) = match body {
        Some(b) => ("Content-Type: application/sdp\n", b),
        None => ("", ""),
    };
    let tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    let to = header(req, "To");
    let to = if to.contains(";tag=") {
        to.to_string()
    } else {
        format!("{to}{tag}")
    };
    format!(
        "SIP/2.0 {code}
Via: {}
From: {}
To: {to}
Call-ID: {}
CSeq: {}
Contact: <sip:1001@{AGENT}>
{ctype}Content-Length: {}

{body}",
        header(req, "Via"),
        header(req, "From"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        clen(body),
    )
}

const CANCEL_FROM_TRUNK: &str = "CANCEL sip:1001@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKcust1;rport
Max-Forwards: 70
From: <sip:customer@127.0.0.1:5080>;tag=c1
To: <sip:1001@127.0.0.1:5060>
Call-ID: cust-call-1
CSeq: 1 CANCEL
Content-Length: 0

";

/// A connected customer → agent call. Returns (bibridge's INVITE to the agent, bibridge's tag
/// towards the customer).
fn connected_call(h: &mut H) -> (String, String) {
    let inv = invite_from_trunk(h);
    h.send(
        AGENT,
        &response_to(&inv, "200 OK", "a1", Some(&sdp(41000, "sendrecv"))),
    );
    let out = h.out();
    let ok = find(&out, TRUNK, "SIP/2.0 200 OK").unwrap();
    let tag = to_tag(ok);
    h.send(
        TRUNK,
        &format!(
            "ACK sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcustack1;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>;tag={tag}
Call-ID: cust-call-1
CSeq: 1 ACK
Content-Length: 0

"
        ),
    );
    h.out();
    h.media();
    (inv, tag)
}

/// The customer sends a re-INVITE (CSeq `cseq`) with an SDP in direction `dir`; returns
/// bibridge's relayed re-INVITE to the agent.
fn reinvite_from_trunk(h: &mut H, tag: &str, cseq: u32, dir: &str) -> String {
    let body = sdp(40000, dir);
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcustre{cseq};rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>;tag={tag}
Call-ID: cust-call-1
CSeq: {cseq} INVITE
Contact: <sip:customer@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        ),
    );
    let out = h.out();
    find(&out, AGENT, "INVITE ")
        .unwrap_or_else(|| panic!("re-INVITE relayed to the agent: {out:?}"))
        .to_string()
}

// RFC 3261 §9.1: a CANCEL waits for a provisional response; 100 Trying is one.
#[test]
fn cancel_after_100_trying_reaches_the_callee() {
    let mut h = H::new();
    let inv = invite_from_trunk(&mut h);
    h.send(AGENT, &response_to(&inv, "100 Trying", "", None));
    h.out();
    h.send(TRUNK, CANCEL_FROM_TRUNK);
    let out = h.out();
    assert!(find(&out, TRUNK, "SIP/2.0 487").is_some(), "{out:?}");
    let cancel = find(&out, AGENT, "CANCEL ").expect("CANCEL to the callee after its 100");
    assert_eq!(header(cancel, "Via"), header(&inv, "Via"));
}

// RFC 3261 §9.1: a CANCEL decided before any provisional response is sent once one arrives,
// even though the call is already gone on the caller's side; the callee must not ring on.
#[test]
fn cancel_before_any_response_is_sent_when_the_callee_rings() {
    let mut h = H::new();
    let inv = invite_from_trunk(&mut h);
    h.send(TRUNK, CANCEL_FROM_TRUNK);
    let out = h.out();
    assert!(find(&out, TRUNK, "SIP/2.0 487").is_some(), "{out:?}");
    assert!(
        find(&out, AGENT, "CANCEL ").is_none(),
        "no CANCEL before a provisional"
    );
    assert_eq!(h.e.call_count(), 0);
    h.send(AGENT, &response_to(&inv, "180 Ringing", "a1", None));
    let out = h.out();
    let cancel = find(&out, AGENT, "CANCEL ").expect("CANCEL once the callee rings");
    assert_eq!(header(cancel, "Via"), header(&inv, "Via"));
    assert!(find(&out, TRUNK, "SIP/2.0 180").is_none(), "{out:?}");
    // The callee gives up its INVITE: 487, which the transaction layer ACKs.
    h.send(
        AGENT,
        &response_to(&inv, "487 Request Terminated", "a1", None),
    );
    let out = h.out();
    assert!(find(&out, AGENT, "ACK ").is_some(), "{out:?}");
}

// RFC 3261 §15.1.2: a UAS that receives a BYE must still answer the dialog's pending requests
// (487 recommended). The caller may BYE an early dialog (§15).
#[test]
fn bye_on_early_dialog_terminates_the_pending_invite() {
    let mut h = H::new();
    let inv = invite_from_trunk(&mut h);
    h.send(AGENT, &response_to(&inv, "180 Ringing", "a1", None));
    let out = h.out();
    let tag = to_tag(find(&out, TRUNK, "SIP/2.0 180").unwrap());
    h.send(
        TRUNK,
        &format!(
            "BYE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcustbye1;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>;tag={tag}
Call-ID: cust-call-1
CSeq: 2 BYE
Content-Length: 0

"
        ),
    );
    let out = h.out();
    assert!(
        out.iter().any(|(d, m)| d.to_string() == TRUNK
            && first_line(m) == "SIP/2.0 200 OK"
            && m.contains("CSeq: 2 BYE")),
        "{out:?}"
    );
    let term = find(&out, TRUNK, "SIP/2.0 487").expect("the INVITE gets its final response");
    assert!(term.contains("CSeq: 1 INVITE"), "{term}");
    assert!(find(&out, AGENT, "CANCEL ").is_some(), "{out:?}");
    assert_eq!(h.e.call_count(), 0);
}

// RFC 3261 §15.1.2: the other party hangs up while a re-INVITE it was relayed is pending; the
// re-INVITE's sender must get a final response instead of waiting forever.
#[test]
fn bye_during_a_pending_reinvite_answers_it() {
    let mut h = H::new();
    let (_, tag) = connected_call(&mut h);
    let re = reinvite_from_trunk(&mut h, &tag, 2, "sendonly");
    // The agent hangs up instead of answering the re-INVITE.
    h.send(
        AGENT,
        &format!(
            "BYE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {AGENT};branch=z9hG4bKagbye1;rport
Max-Forwards: 70
From: {}
To: {}
Call-ID: {}
CSeq: 9 BYE
Content-Length: 0

",
            header(&re, "To"),
            header(&re, "From"),
            header(&re, "Call-ID"),
        ),
    );
    let out = h.out();
    assert!(find(&out, TRUNK, "BYE ").is_some(), "{out:?}");
    let term = find(&out, TRUNK, "SIP/2.0 487").expect("the pending re-INVITE is terminated");
    assert!(term.contains("CSeq: 2 INVITE"), "{term}");
    assert_eq!(h.e.call_count(), 0);
}

// A 2xx retransmission of an earlier, completed re-INVITE is re-ACKed; it must not be taken as
// the answer to the re-INVITE pending now (RFC 6026 §8.1: 2xx retransmissions reach the TU).
#[test]
fn stale_reinvite_2xx_does_not_answer_a_newer_reinvite() {
    let mut h = H::new();
    let (_, tag) = connected_call(&mut h);
    let re1 = reinvite_from_trunk(&mut h, &tag, 2, "sendonly");
    let ok1 = response_to(&re1, "200 OK", "", Some(&sdp(41000, "recvonly")));
    h.send(AGENT, &ok1);
    let out = h.out();
    assert!(find(&out, TRUNK, "SIP/2.0 200 OK").is_some(), "{out:?}");
    h.send(
        TRUNK,
        &format!(
            "ACK sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcustack2;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>;tag={tag}
Call-ID: cust-call-1
CSeq: 2 ACK
Content-Length: 0

"
        ),
    );
    h.out();
    let re2 = reinvite_from_trunk(&mut h, &tag, 3, "sendrecv");
    assert_ne!(header(&re1, "CSeq"), header(&re2, "CSeq"));
    // Our ACK for re-INVITE 1 was lost: the agent retransmits its 200.
    h.send(AGENT, &ok1);
    let out = h.out();
    let ack = find(&out, AGENT, "ACK ").expect("the retransmitted 2xx is ACKed again");
    assert_eq!(
        header(ack, "CSeq").split(' ').next(),
        header(&re1, "CSeq").split(' ').next()
    );
    assert!(
        !out.iter()
            .any(|(d, m)| d.to_string() == TRUNK && m.contains("CSeq: 3 INVITE")),
        "re-INVITE 3 is still waiting for the agent: {out:?}"
    );
    // The real answer to re-INVITE 2 completes it.
    h.send(
        AGENT,
        &response_to(&re2, "200 OK", "", Some(&sdp(41000, "sendrecv"))),
    );
    let out = h.out();
    let ok = find(&out, TRUNK, "SIP/2.0 200 OK").expect("answer to re-INVITE 3");
    assert!(ok.contains("CSeq: 3 INVITE"), "{ok}");
    assert!(ok.contains("a=sendrecv"), "{ok}");
}

/// Supervisor 2001 dials `*811001` with digest credentials; returns bibridge's 200.
fn supervisor_joins(h: &mut H) -> String {
    let body = sdp(42000, "sendrecv");
    let invite = |auth: &str| {
        format!(
            "INVITE sip:*811001@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKsup{};rport
Max-Forwards: 70
From: <sip:2001@{US}>;tag=s1
To: <sip:*811001@{US}>
Call-ID: sup-call-1
CSeq: {} INVITE
Contact: <sip:2001@{SUPERVISOR}>
{auth}Content-Type: application/sdp
Content-Length: {}

{body}",
            auth.len(),
            if auth.is_empty() { 1 } else { 2 },
            clen(&body)
        )
    };
    h.send(SUPERVISOR, &invite(""));
    let out = h.out();
    let challenge = find(&out, SUPERVISOR, "SIP/2.0 401").expect("challenge");
    let challenges: Vec<String> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(str::to_string)
        .collect();
    let uri = format!("sip:*811001@{US}");
    let cred =
        client_authorization(&challenges, "2001", "lab2001", "INVITE", &uri, "cn1", 1).unwrap();
    h.send(SUPERVISOR, &invite(&format!("Authorization: {cred}\n")));
    let out = h.out();
    find(&out, SUPERVISOR, "SIP/2.0 200 OK")
        .unwrap_or_else(|| panic!("session answered: {out:?}"))
        .to_string()
}

// RFC 3261 §13.3.1.4: when the ACK for our 2xx never comes, the dialog *of that INVITE* ends.
// A supervisor whose ACK is lost must not take the customer's call with it.
#[test]
fn supervisor_ack_timeout_ends_only_the_session() {
    let mut h = H::new();
    connected_call(&mut h);
    supervisor_joins(&mut h);
    assert!(h
        .media()
        .iter()
        .any(|m| matches!(m, MediaCommand::AddLeg { .. })));
    // The supervisor never ACKs: 2xx retransmissions, then the 64·T1 ACK timeout.
    let out = h.run_for(Duration::from_secs(40));
    assert_eq!(h.e.call_count(), 1, "the agent call survives");
    assert!(
        find(&out, AGENT, "BYE ").is_none() && find(&out, TRUNK, "BYE ").is_none(),
        "{out:?}"
    );
    assert!(
        find(&out, SUPERVISOR, "BYE ").is_some(),
        "the supervisor's dialog is hung up: {out:?}"
    );
    assert!(h
        .media()
        .iter()
        .any(|m| matches!(m, MediaCommand::RemoveLeg { .. })));
}

// A hostile callee's late 2xx with the largest CSeq must not overflow the BYE's CSeq.
#[test]
fn late_2xx_with_maximal_cseq_does_not_panic() {
    let mut h = H::new();
    let inv = invite_from_trunk(&mut h);
    h.send(AGENT, &response_to(&inv, "180 Ringing", "a1", None));
    h.send(TRUNK, CANCEL_FROM_TRUNK);
    h.out();
    let ok = response_to(&inv, "200 OK", "a1", None)
        .replace(header(&inv, "CSeq"), &format!("{} INVITE", u32::MAX));
    h.send(AGENT, &ok);
    let out = h.out();
    assert!(find(&out, AGENT, "ACK ").is_some(), "{out:?}");
    assert!(find(&out, AGENT, "BYE ").is_some(), "{out:?}");
}

// A pool with one free port pair cannot anchor a call (two pairs): the 503 must give that one
// pair back, or every such attempt shrinks the pool for good.
#[test]
fn a_call_refused_for_lack_of_ports_leaks_none() {
    let mut h = H::with(|c| {
        c.rtp.port_min = 20000;
        c.rtp.port_max = 20005; // three pairs
    });
    connected_call(&mut h); // two pairs in use, one free
    let body = sdp(40002, "sendrecv");
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcust2;rport
Max-Forwards: 70
From: <sip:customer2@{TRUNK}>;tag=c2
To: <sip:1001@{US}>
Call-ID: cust-call-2
CSeq: 1 INVITE
Contact: <sip:customer2@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        ),
    );
    let out = h.out();
    assert!(find(&out, TRUNK, "SIP/2.0 503").is_some(), "{out:?}");
    // The free pair is still there for a supervisor.
    supervisor_joins(&mut h);
}

// RFC 3264 §8: when a re-offer is rejected, the session goes on as before: the media plane must
// not keep the rejected offer's hold state (or address, or codec).
#[test]
fn rejected_reoffer_leaves_the_media_as_it_was() {
    let mut h = H::new();
    let (_, tag) = connected_call(&mut h);
    let re = reinvite_from_trunk(&mut h, &tag, 2, "sendonly");
    h.send(
        AGENT,
        &response_to(&re, "488 Not Acceptable Here", "", None),
    );
    let out = h.out();
    assert!(find(&out, TRUNK, "SIP/2.0 488").is_some(), "{out:?}");
    let holds: Vec<bool> = h
        .media()
        .iter()
        .filter_map(|m| match m {
            MediaCommand::Update { hold, .. } => Some(*hold),
            _ => None,
        })
        .collect();
    assert!(!holds.last().copied().unwrap_or(false), "{holds:?}");
    // An accepted one does take effect.
    let re = reinvite_from_trunk(&mut h, &tag, 3, "sendonly");
    h.send(
        AGENT,
        &response_to(&re, "200 OK", "", Some(&sdp(41000, "recvonly"))),
    );
    h.out();
    let holds: Vec<bool> = h
        .media()
        .iter()
        .filter_map(|m| match m {
            MediaCommand::Update { hold, .. } => Some(*hold),
            _ => None,
        })
        .collect();
    assert_eq!(holds.last(), Some(&true), "{holds:?}");
}

// The customer hangs up while our relayed re-INVITE is pending at the agent, and the agent's 200
// crosses the BYE: that 2xx must still be ACKed (RFC 3261 §13.2.2.4), every copy of it, and the
// agent's dialog hung up once.
#[test]
fn a_2xx_to_a_reinvite_of_a_call_that_is_gone_is_acked() {
    let mut h = H::new();
    let (_, tag) = connected_call(&mut h);
    let re = reinvite_from_trunk(&mut h, &tag, 2, "sendonly");
    h.send(
        TRUNK,
        &format!(
            "BYE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKcustbye9;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: <sip:1001@{US}>;tag={tag}
Call-ID: cust-call-1
CSeq: 3 BYE
Content-Length: 0

"
        ),
    );
    let out = h.out();
    let byes_before = out
        .iter()
        .filter(|(d, m)| d.to_string() == AGENT && m.starts_with("BYE "))
        .count();
    assert_eq!(h.e.call_count(), 0);
    let ok = response_to(&re, "200 OK", "", Some(&sdp(41000, "recvonly")));
    let mut acks = 0;
    let mut byes = byes_before;
    for _ in 0..2 {
        h.send(AGENT, &ok);
        for (d, m) in h.out() {
            if d.to_string() == AGENT && m.starts_with("ACK ") {
                assert!(
                    m.contains(&format!(
                        "CSeq: {} ACK",
                        header(&re, "CSeq").split(' ').next().unwrap()
                    )),
                    "{m}"
                );
                acks += 1;
            }
            if d.to_string() == AGENT && m.starts_with("BYE ") {
                byes += 1;
            }
        }
    }
    assert_eq!(acks, 2, "each copy of the late 2xx is ACKed");
    assert!(byes <= 2, "hung up at most once more");
}
