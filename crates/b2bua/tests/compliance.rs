//! Compliance in virtual time (docs/design.md §5): authorization paths, audit records (and "no
//! record, no session"), and which legs get notification tones.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use bibridge_b2bua::audit::{AuditEvent, MemorySink};
use bibridge_b2bua::config::{Config, Mode, Notify};
use bibridge_b2bua::engine::{
    ApiRefusal, MediaCommand, Notice, Refusal, SessionOrigin, SessionTarget,
};

fn lab_with(tweak: impl FnOnce(&mut Config)) -> (H, MemorySink) {
    let mut h = H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
        tweak(cfg);
    });
    let sink = MemorySink::default();
    h.e.set_audit_sink(Box::new(sink.clone()));
    (h, sink)
}

fn status(out: &[(std::net::SocketAddr, String)]) -> String {
    out.iter()
        .filter(|(d, m)| d.to_string() == SUPERVISOR && m.starts_with("SIP/2.0 "))
        .map(|(_, m)| first_line(m).to_string())
        .find(|l| !l.starts_with("SIP/2.0 100"))
        .unwrap_or_default()
}

fn tones(h: &mut H) -> Vec<(Vec<u32>, u32)> {
    h.media()
        .into_iter()
        .filter_map(|m| match m {
            MediaCommand::PlayTone { legs, tone, .. } => Some((legs, tone.beeps)),
            _ => None,
        })
        .collect()
}

#[test]
fn allowed_sessions_are_audited_start_mode_stop_with_the_agents_call_id() {
    let (mut h, sink) = lab_with(|_| {});
    let (call, agent_inv) = connected_call_inv(&mut h);
    let out = dial_feature(&mut h, "*821001", "2001", "lab2001", 1);
    assert_eq!(status(&out), "SIP/2.0 200 OK");
    let recs = sink.records();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let start = &recs[0];
    assert_eq!(start.event, AuditEvent::Start);
    assert_eq!(
        (start.supervisor.as_str(), start.agent.as_str()),
        ("2001", "1001")
    );
    assert_eq!(start.mode, Some(Mode::Coach));
    assert_eq!(start.call, Some(call));
    // The agent's dialog is the one bibridge placed to the agent.
    assert_eq!(
        start.sip_call_id.as_deref(),
        Some(header(&agent_inv, "Call-ID"))
    );
    assert_eq!(start.origin, SessionOrigin::Phone);

    let sid = h.e.calls()[0].sessions[0].id;
    assert!(h.e.switch_mode(sid, Mode::Monitor, "RFC 4733"));
    agent_bye(&mut h, &agent_inv);
    let recs = sink.records();
    let events: Vec<AuditEvent> = recs.iter().map(|r| r.event).collect();
    assert_eq!(
        events,
        [AuditEvent::Start, AuditEvent::Mode, AuditEvent::Stop]
    );
    assert_eq!(recs[1].mode, Some(Mode::Monitor));
    assert_eq!(recs[1].reason.as_deref(), Some("via RFC 4733"));
    assert_eq!(recs[2].reason.as_deref(), Some("agent call ended"));
}

#[test]
fn every_refusal_path_answers_with_its_code_and_leaves_a_record() {
    let (mut h, sink) = lab_with(|cfg| {
        for u in &mut cfg.users {
            match u.extension.as_str() {
                "1002" => u.builtin_bridge = false,
                "1003" => u.privacy = true,
                _ => {}
            }
        }
    });
    connected_call(&mut h);
    let cases = [
        (
            "*811002",
            "2001",
            "lab2001",
            "SIP/2.0 403 Built-In-Bridge off",
            "builtin_bridge_off",
        ),
        (
            "*819999",
            "2001",
            "lab2001",
            "SIP/2.0 404 Not Found (no such extension)",
            "no_such_extension",
        ),
        (
            "*811004",
            "2001",
            "lab2001",
            "SIP/2.0 480 Temporarily Unavailable (agent not in a call)",
            "agent_not_in_call",
        ),
        // An agent is no supervisor.
        (
            "*811001",
            "1002",
            "lab1002",
            "SIP/2.0 403 Forbidden (not allowed for this agent or mode)",
            "not_allowed",
        ),
    ];
    for (i, (dialled, user, pw, expect, key)) in cases.into_iter().enumerate() {
        let out = dial_feature(&mut h, dialled, user, pw, 10 + i as u32);
        assert_eq!(status(&out), expect, "{dialled} by {user}");
        let last = sink.records().pop().unwrap();
        assert_eq!(last.event, AuditEvent::Refusal, "{dialled}");
        assert_eq!(last.reason.as_deref(), Some(key), "{dialled}");
        assert_eq!(last.supervisor, user);
    }
    // Wrong password: challenged again, and on record as an unauthenticated attempt.
    let out = dial_feature(&mut h, "*811001", "2001", "wrong", 20);
    assert!(status(&out).starts_with("SIP/2.0 401"), "{out:?}");
    let last = sink.records().pop().unwrap();
    assert_eq!(
        (last.event, last.reason.as_deref(), last.supervisor.as_str()),
        (AuditEvent::Refusal, Some("unauthenticated"), "2001")
    );
    assert_eq!(sink.records().len(), 5);
    assert!(h.e.calls()[0].sessions.is_empty());
}

#[test]
fn privacy_refuses_barge_but_not_monitoring() {
    let (mut h, sink) = lab_with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "1001" {
                u.privacy = true;
            }
        }
    });
    connected_call(&mut h);
    let out = dial_feature(&mut h, "*831001", "2001", "lab2001", 1);
    assert_eq!(
        status(&out),
        "SIP/2.0 403 Forbidden (agent privacy: barge not allowed)"
    );
    assert_eq!(sink.records()[0].reason.as_deref(), Some("privacy"));
    let out = dial_feature(&mut h, "*811001", "2001", "lab2001", 2);
    assert_eq!(status(&out), "SIP/2.0 200 OK");
    // Switching the monitor session to barge is refused the same way, and recorded.
    let sid = h.e.calls()[0].sessions[0].id;
    assert!(!h.e.switch_mode(sid, Mode::Barge, "SIP INFO"));
    assert_eq!(h.e.session_view(sid).unwrap().mode, Mode::Monitor);
    let last = sink.records().pop().unwrap();
    assert_eq!(
        (last.event, last.reason.as_deref()),
        (AuditEvent::Refusal, Some("privacy"))
    );
    // The API says why too.
    let now = h.now;
    assert_eq!(
        h.e.api_switch_mode(now, "2001", sid, Mode::Barge)
            .unwrap_err(),
        ApiRefusal::Policy(Refusal::Privacy)
    );
    h.e.stop_session(now, "2001", sid).unwrap();
    assert_eq!(
        h.e.start_session(
            now,
            "2001",
            SessionTarget::Agent("1001".into()),
            Mode::Barge
        )
        .unwrap_err(),
        ApiRefusal::Policy(Refusal::Privacy)
    );
}

#[test]
fn a_trunk_can_never_start_a_session_and_is_recorded() {
    let (mut h, sink) = lab_with(|_| {});
    connected_call(&mut h);
    let body = sdp(43000, "sendrecv");
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:*811001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKtrunkfc;rport
Max-Forwards: 70
From: <sip:intruder@{TRUNK}>;tag=t1
To: <sip:*811001@{US}>
Call-ID: trunk-fc
CSeq: 1 INVITE
Contact: <sip:intruder@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        ),
    );
    let out = h.out();
    assert!(
        find(
            &out,
            TRUNK,
            "SIP/2.0 403 Forbidden (trunks cannot start sessions)"
        )
        .is_some(),
        "{out:?}"
    );
    let r = sink.records().pop().unwrap();
    assert_eq!(
        (r.event, r.reason.as_deref()),
        (AuditEvent::Refusal, Some("trunk"))
    );
    assert_eq!(r.supervisor, "trunk pstn");
}

#[test]
fn no_audit_record_no_session_500() {
    let (mut h, sink) = lab_with(|_| {});
    connected_call(&mut h);
    sink.set_failing(true);
    let out = dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert_eq!(
        status(&out),
        "SIP/2.0 500 Server Internal Error (audit log unavailable)"
    );
    assert!(h.e.calls()[0].sessions.is_empty());
    assert!(
        !h.media()
            .iter()
            .any(|m| matches!(m, MediaCommand::AddLeg { .. })),
        "the supervisor's leg is never attached"
    );
    let ports = h.e.stats().ports_in_use;
    let now = h.now;
    assert_eq!(
        h.e.start_session(
            now,
            "2001",
            SessionTarget::Agent("1001".into()),
            Mode::Monitor
        )
        .unwrap_err(),
        ApiRefusal::AuditUnavailable
    );
    // Its HTTP status (500) is the server's: crates/server/src/http refusal_statuses_follow_the_api_contract.
    assert!(
        h.out().iter().all(|(d, _)| d.to_string() != SUPERVISOR),
        "phone not called"
    );
    assert_eq!(h.e.stats().ports_in_use, ports, "port returned");
    // Once the log works again, sessions work again.
    sink.set_failing(false);
    let out = dial_feature(&mut h, "*811001", "2001", "lab2001", 2);
    assert_eq!(status(&out), "SIP/2.0 200 OK");
}

#[test]
fn tones_go_exactly_where_the_policy_says() {
    // Default: none.
    let (mut h, _) = lab_with(|_| {});
    connected_call(&mut h);
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert!(tones(&mut h).is_empty());

    // Agent only: leg B (bibridge called the agent) gets the single start beep.
    let (mut h, _) = lab_with(|cfg| cfg.compliance.notify = Notify::Agent);
    connected_call(&mut h);
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert_eq!(tones(&mut h), vec![(vec![1], 1)]);
    // Switching to barge plays the distinct entrance tone (two beeps).
    let sid = h.e.calls()[0].sessions[0].id;
    assert!(h.e.switch_mode(sid, Mode::Barge, "API"));
    assert_eq!(tones(&mut h), vec![(vec![1], 2)]);
    // Coach after barge: no new tone.
    assert!(h.e.switch_mode(sid, Mode::Coach, "API"));
    assert!(tones(&mut h).is_empty());

    // All parties, barge from the start: agent and customer get the entrance tone.
    let (mut h, _) = lab_with(|cfg| cfg.compliance.notify = Notify::All);
    connected_call(&mut h);
    dial_feature(&mut h, "*831001", "2001", "lab2001", 1);
    assert_eq!(tones(&mut h), vec![(vec![1, 0], 2)]);

    // A policy rule overrides the global setting.
    let (mut h, _) = lab_with(|cfg| {
        cfg.compliance.notify = Notify::All;
        for r in &mut cfg.policy {
            r.notify = Some(Notify::None);
        }
    });
    connected_call(&mut h);
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert!(tones(&mut h).is_empty());
}

#[test]
fn api_sessions_are_audited_and_toned_when_the_phone_answers() {
    let (mut h, sink) = lab_with(|cfg| cfg.compliance.notify = Notify::Agent);
    connected_call(&mut h);
    let now = h.now;
    let s =
        h.e.start_session(
            now,
            "2001",
            SessionTarget::Agent("1001".into()),
            Mode::Coach,
        )
        .unwrap();
    let r = sink.records();
    assert_eq!(
        (r[0].event, r[0].origin),
        (AuditEvent::Start, SessionOrigin::Api)
    );
    assert!(tones(&mut h).is_empty(), "no tone while the phone rings");
    let out = h.out();
    let inv = find(&out, SUPERVISOR, "INVITE ").unwrap().to_string();
    let body = sdp(42000, "sendrecv");
    h.send(
        SUPERVISOR,
        &phone_response(&inv, "200 OK", "p1", Some(&body)),
    );
    assert_eq!(tones(&mut h), vec![(vec![1], 1)]);
    let now = h.now;
    h.e.stop_session(now, "2001", s.id).unwrap();
    let r = sink.records();
    assert_eq!(r.last().unwrap().event, AuditEvent::Stop);
    assert_eq!(
        r.last().unwrap().reason.as_deref(),
        Some("stopped by the operator")
    );
    assert!(notices(&mut h).iter().any(|n| matches!(
        n,
        Notice::SessionStarted {
            origin: SessionOrigin::Api,
            ..
        }
    )));
}

#[test]
fn policy_allows_per_mode_and_a_switch_to_a_forbidden_mode_is_refused() {
    // Supervisors may only monitor (and coach) agents; barge is not in their rule.
    let (mut h, sink) = lab_with(|cfg| {
        for r in &mut cfg.policy {
            r.modes = vec![Mode::Monitor, Mode::Coach];
        }
    });
    connected_call(&mut h);
    let out = dial_feature(&mut h, "*831001", "2001", "lab2001", 1);
    assert_eq!(
        status(&out),
        "SIP/2.0 403 Forbidden (not allowed for this agent or mode)"
    );
    let r = sink.records().pop().unwrap();
    assert_eq!(
        (r.event, r.mode, r.reason.as_deref()),
        (AuditEvent::Refusal, Some(Mode::Barge), Some("not_allowed"))
    );
    let out = dial_feature(&mut h, "*821001", "2001", "lab2001", 2);
    assert_eq!(status(&out), "SIP/2.0 200 OK");
    let sid = h.e.calls()[0].sessions[0].id;
    assert!(!h.e.switch_mode(sid, Mode::Barge, "RFC 4733"));
    assert!(h.e.switch_mode(sid, Mode::Monitor, "RFC 4733"));
    let now = h.now;
    h.e.stop_session(now, "2001", sid).unwrap();
    assert_eq!(
        h.e.start_session(
            now,
            "2001",
            SessionTarget::Agent("1001".into()),
            Mode::Barge
        )
        .unwrap_err(),
        ApiRefusal::Policy(Refusal::NotAllowed)
    );
}

#[test]
fn a_feature_code_refused_for_lack_of_media_ports_is_audited() {
    // Two port pairs: both taken by the call's own legs.
    let (mut h, sink) = lab_with(|cfg| {
        cfg.rtp.port_min = 20000;
        cfg.rtp.port_max = 20003;
    });
    connected_call(&mut h);
    notices(&mut h);
    let out = dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert!(status(&out).starts_with("SIP/2.0 503"), "{out:?}");
    let r = sink.records().pop().expect("a refusal record");
    assert_eq!(
        (r.event, r.reason.as_deref(), r.origin),
        (
            AuditEvent::Refusal,
            Some("no_media_ports"),
            SessionOrigin::Phone
        )
    );
    assert!(notices(&mut h)
        .iter()
        .any(|n| matches!(n, Notice::SessionRefused { reason, .. } if reason == "no_media_ports")));
}

/// The server's way: records handed out by `poll_audit`, completions driven by the test.
fn queued() -> H {
    let mut h = H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
    });
    h.e.use_audit_queue();
    h
}

fn appends(h: &mut H) -> Vec<bibridge_b2bua::audit::AuditAppend> {
    std::iter::from_fn(|| h.e.poll_audit()).collect()
}

#[test]
fn a_feature_code_start_waits_for_its_record_and_the_engine_goes_on_meanwhile() {
    let mut h = queued();
    connected_call(&mut h);
    let out = dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    assert_eq!(
        status(&out),
        "",
        "no final answer before the record is durable"
    );
    let a = appends(&mut h);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].record.event, AuditEvent::Start);
    assert_eq!(h.e.audit_parked(), 1);
    assert!(h.e.calls()[0].sessions.is_empty());
    assert!(!h
        .media()
        .iter()
        .any(|m| matches!(m, MediaCommand::AddLeg { .. })));
    // The engine is not blocked: another request is served meanwhile.
    let out = dial_feature(&mut h, "*811001", "2002", "lab2002", 2);
    assert_eq!(status(&out), "", "second start parked too");
    let b = appends(&mut h);
    assert_eq!(b.len(), 1);
    // Completions arrive; the first one durable: 200 OK and attached.
    let now = h.now;
    h.e.handle_audit_done(now, a[0].id, Ok(()));
    let out = h.out();
    assert_eq!(status(&out), "SIP/2.0 200 OK");
    assert_eq!(h.e.calls()[0].sessions.len(), 1);
    assert!(h
        .media()
        .iter()
        .any(|m| matches!(m, MediaCommand::AddLeg { .. })));
    // The second one failed: 500, its port back.
    let ports = h.e.stats().ports_in_use;
    h.e.handle_audit_done(
        now,
        b[0].id,
        Err(bibridge_b2bua::audit::AuditError("disk full".into())),
    );
    let out = h.out();
    assert_eq!(
        status(&out),
        "SIP/2.0 500 Server Internal Error (audit log unavailable)"
    );
    assert_eq!(h.e.stats().ports_in_use, ports - 1);
    assert_eq!(h.e.audit_parked(), 0);
    // Mode and stop records need no wait: the switch is in effect at once.
    let sid = h.e.calls()[0].sessions[0].id;
    assert!(h.e.switch_mode(sid, Mode::Coach, "API"));
    assert_eq!(h.e.calls()[0].sessions[0].mode, Mode::Coach);
    let m = appends(&mut h);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].record.event, AuditEvent::Mode);
    assert!(m[0].id > b[0].id, "in order");
    assert_eq!(h.e.audit_parked(), 0);
}

#[test]
fn a_start_whose_call_ended_while_its_record_was_written_is_refused_and_closed_on_record() {
    let mut h = queued();
    let (_, agent_inv) = connected_call_inv(&mut h);
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    let a = appends(&mut h);
    agent_bye(&mut h, &agent_inv);
    h.out();
    let now = h.now;
    h.e.handle_audit_done(now, a[0].id, Ok(()));
    let out = h.out();
    assert_eq!(
        status(&out),
        "SIP/2.0 480 Temporarily Unavailable (agent not in a call)"
    );
    let rest = appends(&mut h);
    let last = &rest.last().unwrap().record;
    assert_eq!(last.event, AuditEvent::Stop);
    assert_eq!(last.session, a[0].record.session);
    assert_eq!(h.e.stats().ports_in_use, 0);
}

#[test]
fn an_api_start_calls_the_phone_only_once_its_record_is_durable() {
    let mut h = queued();
    connected_call(&mut h);
    let now = h.now;
    let target = || SessionTarget::Agent("1001".into());
    let id = match h.e.begin_session(now, "2001", target(), Mode::Monitor) {
        bibridge_b2bua::engine::ApiStart::Pending(id) => id,
        other => panic!("expected to wait for the record: {other:?}"),
    };
    assert!(
        h.out().iter().all(|(d, _)| d.to_string() != SUPERVISOR),
        "phone not called yet"
    );
    // A second start by the same supervisor while the first waits: refused.
    assert_eq!(
        h.e.begin_session(now, "2001", target(), Mode::Monitor),
        bibridge_b2bua::engine::ApiStart::Done(Err(ApiRefusal::SessionExists))
    );
    let a = appends(&mut h);
    assert_eq!(a[0].id, id);
    assert_eq!(a[0].record.origin, SessionOrigin::Api);
    h.e.handle_audit_done(now, id, Ok(()));
    let (rid, r) = h.e.poll_api_reply().unwrap();
    assert_eq!(rid, id);
    let view = r.unwrap();
    assert_eq!(view.supervisor, "2001");
    assert!(find(&h.out(), SUPERVISOR, "INVITE ").is_some());
    h.e.stop_session(now, "2001", view.id).unwrap();
    h.out();
    appends(&mut h);

    // A record that cannot be written: AuditUnavailable, the phone never called, port back.
    let ports = h.e.stats().ports_in_use;
    let id = match h.e.begin_session(now, "2001", target(), Mode::Monitor) {
        bibridge_b2bua::engine::ApiStart::Pending(id) => id,
        other => panic!("{other:?}"),
    };
    h.e.handle_audit_done(
        now,
        id,
        Err(bibridge_b2bua::audit::AuditError("disk full".into())),
    );
    assert_eq!(
        h.e.poll_api_reply().unwrap(),
        (id, Err(ApiRefusal::AuditUnavailable))
    );
    assert!(h
        .out()
        .iter()
        .all(|(d, m)| d.to_string() != SUPERVISOR || !m.starts_with("INVITE ")));
    assert_eq!(h.e.stats().ports_in_use, ports);
}

#[test]
fn unauthenticated_refusals_are_rate_limited_per_source_then_summed_up() {
    let (mut h, sink) = lab_with(|_| {});
    connected_call(&mut h);
    for i in 0..30 {
        let out = dial_feature(&mut h, "*811001", "2001", "wrong", 100 + i);
        assert!(status(&out).starts_with("SIP/2.0 401"));
    }
    let refusals = |sink: &MemorySink| {
        sink.records()
            .into_iter()
            .filter(|r| r.event == AuditEvent::Refusal)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refusals(&sink).len(),
        10,
        "at most 10 a minute from one source"
    );
    // A minute later, one summary record for the rest.
    h.run_for(std::time::Duration::from_secs(66));
    let r = refusals(&sink);
    assert_eq!(r.len(), 11);
    assert_eq!(
        r[10].reason.as_deref(),
        Some("unauthenticated: 20 more refusals from 127.0.0.1 suppressed")
    );
    // And the next minute starts afresh.
    dial_feature(&mut h, "*811001", "2001", "wrong", 200);
    assert_eq!(refusals(&sink).len(), 12);
}

#[test]
fn the_refusal_record_limit_is_configurable() {
    let (mut h, sink) = lab_with(|cfg| cfg.compliance.unauthenticated_refusals_per_minute = 3);
    connected_call(&mut h);
    for i in 0..5 {
        dial_feature(&mut h, "*811001", "2001", "wrong", 300 + i);
    }
    assert_eq!(sink.records().len(), 3);
}

#[test]
fn a_cancel_while_the_start_record_is_written_gets_200_and_the_invite_487() {
    let mut h = queued();
    connected_call(&mut h);
    let ports = h.e.stats().ports_in_use;
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    let a = appends(&mut h);
    assert_eq!(a.len(), 1);
    // The CANCEL of the authenticated INVITE (same branch, Call-ID, CSeq number).
    h.send(
        SUPERVISOR,
        &format!(
            "CANCEL sip:*811001@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKfc1x2;rport
Max-Forwards: 70
From: <sip:2001@{US}>;tag=s1
To: <sip:*811001@{US}>
Call-ID: fc-1
CSeq: 2 CANCEL
Content-Length: 0

"
        ),
    );
    let out = h.out();
    assert!(
        out.iter()
            .any(|(_, m)| m.starts_with("SIP/2.0 200 OK") && m.contains("CSeq: 2 CANCEL")),
        "{out:?}"
    );
    let now = h.now;
    h.e.handle_audit_done(now, a[0].id, Ok(()));
    let out = h.out();
    assert_eq!(status(&out), "SIP/2.0 487 Request Terminated");
    assert!(h.e.calls()[0].sessions.is_empty());
    let rest = appends(&mut h);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].record.event, AuditEvent::Stop);
    assert_eq!(rest[0].record.reason.as_deref(), Some("cancelled"));
    assert_eq!(h.e.stats().ports_in_use, ports);
}
