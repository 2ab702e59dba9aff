//! A call whose media task died (issue 12, finding 7): the engine ends the call as if it hung
//! up itself: BYE to every leg (supervisors included), the session's audit stop record, ports
//! back in the pool.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use bibridge_b2bua::audit::{AuditEvent, MemorySink};
use bibridge_b2bua::engine::{MediaCommand, MediaEvent, Notice};

#[test]
fn media_failure_ends_the_call_with_byes_and_an_audited_session_stop() {
    let mut h = H::with(|cfg| {
        for u in &mut cfg.users {
            if u.extension == "2001" {
                u.contact = Some(format!("sip:2001@{SUPERVISOR}"));
            }
        }
    });
    let sink = MemorySink::default();
    h.e.set_audit_sink(Box::new(sink.clone()));
    let call = connected_call(&mut h);
    dial_feature(&mut h, "*811001", "2001", "lab2001", 1);
    h.media();
    notices(&mut h);
    assert_eq!(h.e.stats().ports_in_use, 3);

    h.e.handle_media_event(h.now, MediaEvent::MediaFailed { call });
    let out = h.out();
    for dest in [TRUNK, AGENT, SUPERVISOR] {
        assert!(find(&out, dest, "BYE ").is_some(), "BYE to {dest}: {out:?}");
    }
    assert!(
        h.media()
            .iter()
            .any(|m| matches!(m, MediaCommand::Close { call: c } if *c == call)),
        "media closed"
    );
    assert_eq!(h.e.call_count(), 0);
    assert_eq!(h.e.stats().ports_in_use, 0);
    let ns = notices(&mut h);
    assert!(
        ns.iter().any(|n| matches!(n, Notice::CallEnded { call: c, reason } if *c == call && reason.contains("media"))),
        "{ns:?}"
    );
    let events: Vec<AuditEvent> = sink.records().iter().map(|r| r.event).collect();
    assert_eq!(events.last(), Some(&AuditEvent::Stop), "{events:?}");
    // A late report for the same (gone) call changes nothing.
    h.e.handle_media_event(h.now, MediaEvent::MediaFailed { call });
    assert!(h.out().is_empty());
}
