//! Sessions started through the operator API, in virtual time: bibridge calls the supervisor's
//! phone (static contact 127.0.0.1:5072 here) and attaches when it answers.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::time::Duration;

use bibridge_b2bua::config::Mode;
use bibridge_b2bua::engine::{
    ApiRefusal, MediaCommand, Notice, Refusal, SessionOrigin, SessionState, SessionTarget,
};

fn lab() -> H {
    H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
    })
}

/// Start a monitor session for 2001 on 1001's call; returns (session id, bibridge's INVITE).
fn start(h: &mut H, mode: Mode) -> (u64, String) {
    let now = h.now;
    let s =
        h.e.start_session(now, "2001", SessionTarget::Agent("1001".into()), mode)
            .unwrap();
    assert_eq!(s.state, SessionState::Calling);
    assert_eq!(s.origin, SessionOrigin::Api);
    let out = h.out();
    let inv = find(&out, SUPERVISOR, "INVITE sip:2001@")
        .unwrap()
        .to_string();
    (s.id, inv)
}

#[test]
fn the_phone_is_called_with_auto_answer_and_the_session_attaches_when_it_answers() {
    let mut h = lab();
    let call = connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    assert_eq!(header(&inv, "Answer-Mode"), "Auto");
    assert!(
        header(&inv, "Call-Info").contains("answer-after=0"),
        "{inv}"
    );
    assert!(inv.contains("a=rtpmap:0 PCMU/8000"), "{inv}");
    assert!(inv.contains("telephone-event"), "{inv}");
    // Ports bound at once, mixed only once the answer names the codec.
    let media = h.media();
    assert!(
        matches!(&media[..], [MediaCommand::AddLeg { call: c, setup }] if *c == call && setup.codec.is_none()),
        "{media:?}"
    );
    assert!(matches!(
        &notices(&mut h)[..],
        [Notice::SessionCalling { session, mode: Mode::Monitor, .. }] if *session == sid
    ));

    let answer = sdp(42000, "sendrecv");
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&answer)),
    );
    let out = h.out();
    let ack = find(&out, SUPERVISOR, "ACK ").expect("2xx ACKed");
    assert!(header(ack, "To").contains("tag=sup1"), "{ack}");
    let media = h.media();
    assert!(
        matches!(&media[..], [MediaCommand::Update { codec: Some(c), remote: Some(r), .. }]
            if c.name == "PCMU" && r.port() == 42000),
        "{media:?}"
    );
    assert_eq!(h.e.session_view(sid).unwrap().state, SessionState::Active);
    assert_eq!(
        h.e.stats().ringing_sessions,
        0,
        "answered: no ring deadline left"
    );
    assert!(matches!(
        &notices(&mut h)[..],
        [Notice::SessionStarted {
            origin: SessionOrigin::Api,
            ..
        }]
    ));
    assert_eq!(h.e.calls()[0].sessions.len(), 1);

    // A retransmitted 200 (our ACK lost) gets the ACK again, nothing else.
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&answer)),
    );
    let out = h.out();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].1.starts_with("ACK "));

    // Switch like DTMF: the leg's role changes in place.
    let now = h.now;
    let v = h.e.api_switch_mode(now, "2001", sid, Mode::Coach).unwrap();
    assert_eq!(v.mode, Mode::Coach);
    assert!(matches!(&h.media()[..], [MediaCommand::SetRole { .. }]));
    assert_eq!(
        h.e.api_switch_mode(now, "2002", sid, Mode::Barge),
        Err(ApiRefusal::NotYours)
    );

    // Stop: BYE to the phone, leg removed, session gone.
    h.e.stop_session(now, "2001", sid).unwrap();
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "BYE sip:2001@").is_some(), "{out:?}");
    assert!(matches!(&h.media()[..], [MediaCommand::RemoveLeg { .. }]));
    assert!(h.e.session_view(sid).is_none());
    assert!(notices(&mut h).iter().any(
        |n| matches!(n, Notice::SessionEnded { reason, .. } if reason == "stopped by the operator")
    ));
}

#[test]
fn a_busy_phone_ends_the_session_with_reason_busy_and_frees_its_port() {
    let mut h = lab();
    connected_call(&mut h);
    let ports = h.e.stats().ports_in_use;
    let (sid, inv) = start(&mut h, Mode::Monitor);
    assert_eq!(h.e.stats().ports_in_use, ports + 1);
    notices(&mut h);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "486 Busy Here", "sup1", None),
    );
    let out = h.out();
    assert!(
        find(&out, SUPERVISOR, "ACK ").is_some(),
        "non-2xx ACKed: {out:?}"
    );
    assert!(h.e.session_view(sid).is_none());
    assert!(matches!(
        &notices(&mut h)[..],
        [Notice::SessionEnded { reason, .. }] if reason == "busy"
    ));
    assert_eq!(h.e.stats().ports_in_use, ports);
    assert_eq!(h.e.stats().ringing_sessions, 0);
    // The supervisor may try again at once.
    start(&mut h, Mode::Coach);
}

#[test]
fn a_declining_phone_names_the_response() {
    let mut h = lab();
    connected_call(&mut h);
    let (_, inv) = start(&mut h, Mode::Monitor);
    notices(&mut h);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "603 Decline", "sup1", None),
    );
    assert!(matches!(
        &notices(&mut h)[..],
        [Notice::SessionEnded { reason, .. }] if reason == "rejected (603 Decline)"
    ));
}

#[test]
fn a_phone_that_keeps_ringing_is_cancelled_after_the_answer_timeout() {
    let mut h = lab();
    connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "180 Ringing", "sup1", None),
    );
    h.out();
    notices(&mut h);
    assert_eq!(h.e.stats().ringing_sessions, 1);
    h.advance(Duration::from_secs(29));
    assert!(h.e.session_view(sid).is_some());
    assert!(h.out().iter().all(|(_, m)| !m.starts_with("CANCEL")));
    h.advance(Duration::from_secs(2));
    let out = h.out();
    let cancel = find(&out, SUPERVISOR, "CANCEL ").expect("CANCEL after 30 s");
    assert_eq!(header(cancel, "Call-ID"), header(&inv, "Call-ID"));
    assert!(h.e.session_view(sid).is_none());
    assert_eq!(h.e.stats().ringing_sessions, 0);
    assert!(matches!(
        &notices(&mut h)[..],
        [Notice::SessionEnded { reason, .. }] if reason == "no answer"
    ));
}

#[test]
fn stopping_before_any_provisional_cancels_later_and_a_crossing_200_is_hung_up() {
    let mut h = lab();
    connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    let now = h.now;
    h.e.stop_session(now, "2001", sid).unwrap();
    // RFC 3261 §9.1: no CANCEL before a provisional response.
    assert!(h.out().iter().all(|(_, m)| !m.starts_with("CANCEL")));
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "180 Ringing", "sup1", None),
    );
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "CANCEL ").is_some(), "{out:?}");
    // The phone had answered already: its 200 is ACKed and hung up.
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&sdp(42000, "sendrecv"))),
    );
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "ACK ").is_some(), "{out:?}");
    assert!(find(&out, SUPERVISOR, "BYE ").is_some(), "{out:?}");
}

#[test]
fn the_agent_call_ending_ends_the_api_session_with_bye() {
    let mut h = lab();
    let (_, agent_inv) = connected_call_inv(&mut h);
    let (sid, inv) = start(&mut h, Mode::Coach);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&sdp(42000, "sendrecv"))),
    );
    h.out();
    notices(&mut h);
    agent_bye(&mut h, &agent_inv);
    let out = h.out();
    assert!(find(&out, AGENT, "SIP/2.0 200").is_some(), "{out:?}");
    assert!(find(&out, SUPERVISOR, "BYE sip:2001@").is_some(), "{out:?}");
    assert!(find(&out, TRUNK, "BYE ").is_some(), "{out:?}");
    assert!(h.e.session_view(sid).is_none());
    assert!(notices(&mut h)
        .iter()
        .any(|n| matches!(n, Notice::SessionEnded { reason, .. } if reason == "agent call ended")));
}

#[test]
fn the_agent_call_ending_while_the_phone_rings_cancels_it() {
    let mut h = lab();
    let (_, agent_inv) = connected_call_inv(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "180 Ringing", "sup1", None),
    );
    h.out();
    agent_bye(&mut h, &agent_inv);
    let out = h.out();
    assert!(
        find(&out, SUPERVISOR, "CANCEL sip:2001@").is_some(),
        "{out:?}"
    );
    assert!(
        find(&out, SUPERVISOR, "BYE ").is_none(),
        "no dialog, no BYE: {out:?}"
    );
    assert!(h.e.session_view(sid).is_none());
}

#[test]
fn refusals_follow_the_feature_code_rules_and_the_console_rules() {
    let mut h = lab();
    let now = h.now;
    assert_eq!(
        h.e.start_session(
            now,
            "2001",
            SessionTarget::Agent("1001".into()),
            Mode::Monitor
        )
        .unwrap_err(),
        ApiRefusal::Policy(Refusal::AgentNotInCall)
    );
    let call = connected_call(&mut h);
    let now = h.now;
    let r = |h: &mut H, sup: &str, t: SessionTarget| {
        h.e.start_session(now, sup, t, Mode::Monitor).unwrap_err()
    };
    assert_eq!(
        r(&mut h, "2001", SessionTarget::Agent("9999".into())),
        ApiRefusal::Policy(Refusal::NoSuchExtension)
    );
    assert_eq!(
        r(&mut h, "2001", SessionTarget::Call(call + 100)),
        ApiRefusal::NoSuchCall
    );
    // 2002 has neither a registration nor a static contact.
    assert_eq!(
        r(&mut h, "2002", SessionTarget::Call(call)),
        ApiRefusal::PhoneUnreachable
    );
    // An agent is no supervisor.
    assert_eq!(
        r(&mut h, "1002", SessionTarget::Call(call)),
        ApiRefusal::Policy(Refusal::NotAllowed)
    );
    start(&mut h, Mode::Monitor);
    assert_eq!(
        r(&mut h, "2001", SessionTarget::Call(call)),
        ApiRefusal::SessionExists
    );
    let refused = notices(&mut h)
        .into_iter()
        .filter(|n| {
            matches!(
                n,
                Notice::SessionRefused {
                    origin: SessionOrigin::Api,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused, 5);
    // Its HTTP status (409) is the server's: crates/server/src/http refusal_statuses_follow_the_api_contract.
}

#[test]
fn builtin_bridge_off_refuses_and_views_show_no_modes() {
    let mut h = H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "1001" {
                u.builtin_bridge = false;
            }
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
    });
    let call = connected_call(&mut h);
    let now = h.now;
    assert_eq!(
        h.e.start_session(now, "2001", SessionTarget::Call(call), Mode::Monitor)
            .unwrap_err(),
        ApiRefusal::Policy(Refusal::BuiltInBridgeOff)
    );
    let agents = h.e.agents(now, Some("2001"));
    let a1001 = agents.iter().find(|a| a.extension == "1001").unwrap();
    assert!(!a1001.builtin_bridge && a1001.allowed_modes.is_empty());
    assert_eq!(a1001.calls, vec![call]);
    assert!(a1001.registered, "static contact counts as registered");
    let a1002 = agents.iter().find(|a| a.extension == "1002").unwrap();
    assert_eq!(
        a1002.allowed_modes,
        vec![Mode::Monitor, Mode::Coach, Mode::Barge]
    );
    assert!(!a1002.registered);
    let c = &h.e.calls()[0];
    assert_eq!(
        (c.agent.as_str(), c.customer.as_str()),
        ("1001", "customer")
    );
    assert!(c.connected && c.connected_at.is_some());
}

#[test]
fn an_agent_hanging_up_while_a_barge_phone_still_rings_is_no_barge_promotion() {
    // Barge promotion hands the customer to a supervisor who is *in* the call; one whose phone
    // still rings would leave the customer alone with nobody (and nobody to end the call).
    let mut h = lab();
    let (call, agent_inv) = connected_call_inv(&mut h);
    let (sid, inv) = start(&mut h, Mode::Barge);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "180 Ringing", "sup1", None),
    );
    h.out();
    notices(&mut h);
    agent_bye(&mut h, &agent_inv);
    let out = h.out();
    assert!(
        find(&out, TRUNK, "BYE ").is_some(),
        "customer hung up: {out:?}"
    );
    assert!(find(&out, SUPERVISOR, "CANCEL ").is_some(), "{out:?}");
    assert!(h.e.session_view(sid).is_none());
    assert!(h.e.call_view(call).is_none());
}

#[test]
fn a_refused_mode_switch_from_the_api_is_one_refusal() {
    let mut h = H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
        for r in &mut cfg.policy {
            r.modes = vec![Mode::Monitor, Mode::Coach];
        }
    });
    connected_call(&mut h);
    let (sid, _) = start(&mut h, Mode::Monitor);
    notices(&mut h);
    let now = h.now;
    assert_eq!(
        h.e.api_switch_mode(now, "2001", sid, Mode::Barge),
        Err(ApiRefusal::Policy(Refusal::NotAllowed))
    );
    let refusals = notices(&mut h)
        .into_iter()
        .filter(|n| matches!(n, Notice::SessionRefused { .. }))
        .count();
    assert_eq!(refusals, 1, "counted once in the metrics");
}

#[test]
fn a_2xx_retransmitted_after_the_operator_stopped_the_session_is_still_acked() {
    let mut h = lab();
    connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    let answer = sdp(42000, "sendrecv");
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&answer)),
    );
    h.out();
    let now = h.now;
    h.e.stop_session(now, "2001", sid).unwrap();
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "BYE ").is_some(), "{out:?}");
    // Our ACK was lost: the phone retransmits its 200 and must get the ACK (RFC 3261 §13.2.2.4),
    // but no second BYE.
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&answer)),
    );
    let out = h.out();
    let ack = find(&out, SUPERVISOR, "ACK ").expect("retransmitted 2xx ACKed");
    assert!(header(ack, "To").contains("tag=sup1"), "{ack}");
    assert_eq!(
        header(ack, "CSeq"),
        header(&inv, "CSeq").replace("INVITE", "ACK")
    );
    assert!(find(&out, SUPERVISOR, "BYE ").is_none(), "{out:?}");
}

#[test]
fn an_answer_without_a_usable_codec_is_acked_and_hung_up() {
    let mut h = lab();
    connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    notices(&mut h);
    // G.729 only: nothing bibridge offered.
    let answer = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 42000 RTP/AVP 18\na=rtpmap:18 G729/8000\na=sendrecv\n";
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(answer)),
    );
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "ACK ").is_some(), "{out:?}");
    let bye = find(&out, SUPERVISOR, "BYE sip:2001@").expect("the answered phone is hung up");
    assert!(header(bye, "To").contains("tag=sup1"), "{bye}");
    assert!(h.e.session_view(sid).is_none());
    assert!(notices(&mut h).iter().any(|n| matches!(
        n,
        Notice::SessionEnded { reason, .. } if reason == "no usable SDP answer from the phone"
    )));
}

/// A re-INVITE whose Contact cannot be used (`<>`) must not empty the dialog's remote target:
/// the BYE afterwards still goes to the phone's URI.
#[test]
fn an_unusable_contact_in_a_reinvite_keeps_the_remote_target() {
    let mut h = lab();
    connected_call(&mut h);
    let (sid, inv) = start(&mut h, Mode::Monitor);
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "sup1", Some(&sdp(42000, "sendrecv"))),
    );
    h.out();
    h.send(
        SUPERVISOR,
        &format!(
            "INVITE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKreinv1;rport
Max-Forwards: 70
From: {};tag=sup1
To: {}
Call-ID: {}
CSeq: 7 INVITE
Contact: <>
Content-Length: 0

",
            header(&inv, "To"),
            header(&inv, "From"),
            header(&inv, "Call-ID"),
        ),
    );
    let out = h.out();
    assert!(find(&out, SUPERVISOR, "SIP/2.0 200").is_some(), "{out:?}");
    let now = h.now;
    h.e.stop_session(now, "2001", sid).unwrap();
    let out = h.out();
    let bye = find(&out, SUPERVISOR, "BYE ").expect("BYE to the phone");
    assert!(
        bye.starts_with(&format!("BYE sip:2001@{SUPERVISOR} SIP/2.0")),
        "{bye}"
    );
}
