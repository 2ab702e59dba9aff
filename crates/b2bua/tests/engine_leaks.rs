//! Nothing leaks: many calls through every way a call can end, then the engine's tables are
//! empty again once the RFC 3261 timers have run out (virtual time).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::time::Duration;

use bibridge_b2bua::engine::EngineStats;
use bibridge_sip::auth::client_authorization;

/// The customer (trunk) calls 1001 with call number `i`; returns bibridge's INVITE to the agent.
fn invite(h: &mut H, i: u32) -> String {
    trunk_invite(
        h,
        &format!("leak-{i}"),
        &format!("c{i}"),
        &format!("z9hG4bKleak{i}"),
    )
}

fn answer(req: &str, code: &str, with_sdp: bool) -> String {
    let body = if with_sdp {
        sdp(41000, "sendrecv")
    } else {
        String::new()
    };
    format!(
        "SIP/2.0 {code}
{}From: {}
To: {};tag=agent
Call-ID: {}
CSeq: {}
Contact: <sip:1001@{AGENT}>
{}Content-Length: {}

{body}",
        req.lines()
            .filter(|l| l.starts_with("Via: "))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
        if with_sdp {
            "Content-Type: application/sdp\n"
        } else {
            ""
        },
        clen(&body)
    )
}

fn from_trunk(h: &mut H, i: u32, method: &str, cseq: u32, to_tag: Option<&str>, branch: &str) {
    let to = match to_tag {
        Some(t) => format!("<sip:1001@{US}>;tag={t}"),
        None => format!("<sip:1001@{US}>"),
    };
    h.send(
        TRUNK,
        &format!(
            "{method} sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch={branch};rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c{i}
To: {to}
Call-ID: leak-{i}
CSeq: {cseq} {method}
Content-Length: 0

"
        ),
    );
}

/// Our tag towards the customer, from the 200 we sent it.
fn our_tag(out: &[(std::net::SocketAddr, String)]) -> String {
    to_tag(find(out, TRUNK, "SIP/2.0 200 OK").unwrap())
}

fn supervisor_monitors(h: &mut H, i: u32) -> String {
    let body = sdp(42000, "sendrecv");
    let invite = |auth: &str, cseq: u32| {
        format!(
            "INVITE sip:*811001@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKsupleak{i}x{cseq};rport
Max-Forwards: 70
From: <sip:2001@{US}>;tag=s{i}
To: <sip:*811001@{US}>
Call-ID: sup-leak-{i}
CSeq: {cseq} INVITE
Contact: <sip:2001@{SUPERVISOR}>
{auth}Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        )
    };
    h.send(SUPERVISOR, &invite("", 1));
    let out = h.out();
    let challenges: Vec<String> = find(&out, SUPERVISOR, "SIP/2.0 401")
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(str::to_string)
        .collect();
    // The 401 is answered with an ACK (its transaction then ends on Timer I/D).
    h.send(
        SUPERVISOR,
        &format!(
            "ACK sip:*811001@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKsupleak{i}x1;rport
Max-Forwards: 70
From: <sip:2001@{US}>;tag=s{i}
To: {}
Call-ID: sup-leak-{i}
CSeq: 1 ACK
Content-Length: 0

",
            header(find(&out, SUPERVISOR, "SIP/2.0 401").unwrap(), "To")
        ),
    );
    let cred = client_authorization(
        &challenges,
        "2001",
        "lab2001",
        "INVITE",
        &format!("sip:*811001@{US}"),
        "cn",
        1,
    )
    .unwrap();
    h.send(SUPERVISOR, &invite(&format!("Authorization: {cred}\n"), 2));
    let out = h.out();
    let ok = find(&out, SUPERVISOR, "SIP/2.0 200 OK")
        .unwrap()
        .to_string();
    let tag = to_tag(&ok);
    h.send(
        SUPERVISOR,
        &format!(
            "ACK sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKsupack{i};rport
Max-Forwards: 70
From: <sip:2001@{US}>;tag=s{i}
To: <sip:*811001@{US}>;tag={tag}
Call-ID: sup-leak-{i}
CSeq: 2 ACK
Content-Length: 0

"
        ),
    );
    h.out();
    tag
}

#[test]
fn every_way_a_call_ends_leaves_nothing_behind() {
    let mut h = H::new();
    for i in 0..40u32 {
        let inv = invite(&mut h, i);
        match i % 4 {
            // Answered, then the customer hangs up (a supervisor monitoring meanwhile).
            0 | 1 => {
                h.send(AGENT, &answer(&inv, "200 OK", true));
                let out = h.out();
                let tag = our_tag(&out);
                from_trunk(&mut h, i, "ACK", 1, Some(&tag), &format!("z9hG4bKack{i}"));
                if i % 4 == 1 {
                    supervisor_monitors(&mut h, i);
                }
                from_trunk(&mut h, i, "BYE", 2, Some(&tag), &format!("z9hG4bKbye{i}"));
                let out = h.out();
                // Our BYEs (agent, supervisor) are answered.
                for (_, m) in out.iter().filter(|(_, m)| m.starts_with("BYE ")) {
                    let dest = if m.contains("2001") || m.contains("*811001") {
                        SUPERVISOR
                    } else {
                        AGENT
                    };
                    h.send(dest, &answer(m, "200 OK", false));
                }
            }
            // Cancelled while ringing.
            2 => {
                h.send(AGENT, &answer(&inv, "180 Ringing", false));
                h.out();
                from_trunk(&mut h, i, "CANCEL", 1, None, &format!("z9hG4bKleak{i}"));
                let out = h.out();
                let cancel = find(&out, AGENT, "CANCEL ").unwrap().to_string();
                h.send(AGENT, &answer(&cancel, "200 OK", false));
                h.send(AGENT, &answer(&inv, "487 Request Terminated", false));
                // The customer ACKs our 487.
                from_trunk(&mut h, i, "ACK", 1, None, &format!("z9hG4bKleak{i}"));
            }
            // Refused by the agent.
            _ => {
                h.send(AGENT, &answer(&inv, "486 Busy Here", false));
                from_trunk(&mut h, i, "ACK", 1, None, &format!("z9hG4bKleak{i}"));
            }
        }
        h.out();
    }
    assert_eq!(h.e.call_count(), 0);
    // Right after the calls, transactions and remembered dialogs are still there (the
    // assertion below is not empty by construction)...
    let before = h.e.stats();
    assert!(
        before.transactions > 0 && before.ended_dialogs > 0,
        "{before:?}"
    );
    assert_eq!(before.ports_in_use, 0, "ports are back at once: {before:?}");
    // ...let every transaction timer (D = 32 s, H/J/L/M = 64·T1) and the ended-dialog memory expire.
    h.run_for(Duration::from_secs(80));
    let s = h.e.stats();
    assert_eq!(
        s,
        EngineStats {
            ended_dialogs: 0,
            ..EngineStats::default()
        },
        "tables are empty again: {s:?}"
    );
}
