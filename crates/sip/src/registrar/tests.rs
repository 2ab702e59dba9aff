//! Unit tests of the registrar: expiry, refresh, wildcard, ordering, contact forms, caps.

#![allow(clippy::unwrap_used)]
use super::*;

fn src() -> SocketAddr {
    "127.0.0.1:5071".parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn reg(
    r: &mut Registrar,
    now: Instant,
    contacts: &[&str],
    expires: Option<&str>,
    call_id: &str,
    cseq: u32,
) -> RegisterOutcome {
    let contacts: Vec<String> = contacts.iter().map(|s| s.to_string()).collect();
    r.register(
        now,
        "1001",
        &contacts,
        expires,
        call_id,
        cseq,
        src(),
        Transport::Udp,
    )
}

fn ok(bindings: &[(&str, u32)]) -> RegisterOutcome {
    RegisterOutcome::Ok {
        bindings: bindings.iter().map(|(c, s)| (c.to_string(), *s)).collect(),
    }
}

#[test]
fn register_lookup_and_expire_exactly_at_deadline() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(r.poll_timeout(), None);
    let out = reg(
        &mut r,
        t0,
        &["<sip:1001@127.0.0.1:5071;transport=udp>"],
        Some("120"),
        "c1",
        1,
    );
    assert_eq!(out, ok(&[("sip:1001@127.0.0.1:5071;transport=udp", 120)]));
    let b = r.lookup(t0, "1001");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src());
    assert_eq!(b[0].transport, Transport::Udp);
    assert_eq!(b[0].call_id, "c1");
    assert_eq!(b[0].expires_at, t0 + secs(120));
    assert_eq!(r.poll_timeout(), Some(t0 + secs(120)));
    assert!(r.is_registered(t0 + secs(120) - Duration::from_millis(1), "1001"));
    assert!(!r.is_registered(t0 + secs(120), "1001"));
    assert!(r.lookup(t0 + secs(120), "1001").is_empty());
    assert!(!r.is_registered(t0, "1002"));

    assert!(r.expire(t0 + secs(119)).is_empty());
    assert_eq!(r.expire(t0 + secs(120)), vec!["1001".to_string()]);
    assert_eq!(r.poll_timeout(), None);
    assert!(r.expire(t0 + secs(500)).is_empty());
}

#[test]
fn remaining_seconds_round_up() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c", 1);
    let out = reg(&mut r, t0 + Duration::from_millis(1500), &[], None, "c", 2);
    assert_eq!(out, ok(&[("sip:a@h", 99)]));
}

#[test]
fn contact_expires_param_overrides_header_and_default_applies() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    let out = reg(
        &mut r,
        t0,
        &[
            "<sip:1001@127.0.0.1:5071>;expires=60",
            "<sip:1001@10.0.0.1>",
        ],
        Some("300"),
        "c1",
        1,
    );
    // Most recently registered first: in a single request, later contacts come first.
    assert_eq!(
        out,
        ok(&[("sip:1001@10.0.0.1", 300), ("sip:1001@127.0.0.1:5071", 60)])
    );
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(
        reg(&mut r, t0, &["sip:1001@host"], None, "c1", 1),
        ok(&[("sip:1001@host", 3600)])
    );
}

#[test]
fn clamps_above_max_and_refuses_below_min() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(
        reg(&mut r, t0, &["<sip:a@h>"], Some("999999999999"), "c", 1),
        ok(&[("sip:a@h", 3600)])
    );
    assert_eq!(
        reg(&mut r, t0, &["<sip:b@h>;expires=59"], Some("3600"), "c", 2),
        RegisterOutcome::IntervalTooBrief { min_expires: 60 }
    );
    // 423 for one contact means no change for the others either.
    assert_eq!(
        reg(
            &mut r,
            t0,
            &["<sip:c@h>", "<sip:d@h>;expires=1"],
            None,
            "c",
            3
        ),
        RegisterOutcome::IntervalTooBrief { min_expires: 60 }
    );
    assert_eq!(r.lookup(t0, "1001").len(), 1);
    assert_eq!(
        reg(&mut r, t0, &["<sip:c@h>"], Some("60"), "c", 4),
        ok(&[("sip:c@h", 60), ("sip:a@h", 3600)])
    );
}

#[test]
fn refresh_updates_expiry_and_order() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c1", 1);
    reg(&mut r, t0, &["<sip:b@h>"], Some("100"), "c2", 1);
    assert_eq!(r.lookup(t0, "1001")[0].contact, "sip:b@h");
    // Refresh of a (same URI, different spelling of the host case) at t0+50.
    let out = reg(&mut r, t0 + secs(50), &["<sip:a@H>"], Some("100"), "c1", 2);
    assert_eq!(out, ok(&[("sip:a@H", 100), ("sip:b@h", 50)]));
    assert_eq!(r.lookup(t0 + secs(50), "1001").len(), 2);
    assert_eq!(r.poll_timeout(), Some(t0 + secs(100)));
    // b expires at t0+100, a survives until t0+150: user still registered.
    assert!(r.expire(t0 + secs(100)).is_empty());
    assert_eq!(r.lookup(t0 + secs(100), "1001").len(), 1);
    assert_eq!(r.poll_timeout(), Some(t0 + secs(150)));
    assert_eq!(r.expire(t0 + secs(150)), vec!["1001".to_string()]);
}

#[test]
fn expires_zero_removes_one_binding() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    reg(&mut r, t0, &["<sip:a@h>", "<sip:b@h>"], None, "c1", 1);
    assert_eq!(
        reg(&mut r, t0, &["<sip:a@h>"], Some("0"), "c1", 2),
        ok(&[("sip:b@h", 3600)])
    );
    assert_eq!(
        reg(&mut r, t0, &["<sip:b@h>;expires=0"], Some("3600"), "c1", 3),
        ok(&[])
    );
    assert!(!r.is_registered(t0, "1001"));
    assert_eq!(r.poll_timeout(), None);
    // Removing an unknown contact is a harmless no-op.
    assert_eq!(reg(&mut r, t0, &["<sip:z@h>"], Some("0"), "c1", 4), ok(&[]));
}

#[test]
fn wildcard_rules() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    reg(&mut r, t0, &["<sip:a@h>, <sip:b@h>"], None, "c1", 1);
    reg(&mut r, t0, &["<sip:c@h>"], None, "c2", 1);
    assert_eq!(
        reg(&mut r, t0, &["*"], Some("60"), "c3", 1),
        RegisterOutcome::Invalid {
            reason: "wildcard Contact requires Expires: 0"
        }
    );
    assert_eq!(
        reg(&mut r, t0, &["*"], None, "c3", 1),
        RegisterOutcome::Invalid {
            reason: "wildcard Contact requires Expires: 0"
        }
    );
    assert_eq!(
        reg(&mut r, t0, &["*", "<sip:a@h>"], Some("0"), "c3", 1),
        RegisterOutcome::Invalid {
            reason: "wildcard Contact with other contacts"
        }
    );
    // Same Call-ID as a stored binding with a CSeq not higher: out of order, nothing removed.
    assert_eq!(
        reg(&mut r, t0, &["*"], Some("0"), "c1", 1),
        RegisterOutcome::OutOfOrder
    );
    assert_eq!(r.lookup(t0, "1001").len(), 3);
    assert_eq!(reg(&mut r, t0, &["*"], Some("0"), "c9", 1), ok(&[]));
    assert!(!r.is_registered(t0, "1001"));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn out_of_order_cseq() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c1", 5);
    assert_eq!(
        reg(&mut r, t0 + secs(10), &["<sip:a@h>"], Some("200"), "c1", 5),
        RegisterOutcome::OutOfOrder
    );
    assert_eq!(
        reg(
            &mut r,
            t0 + secs(10),
            &["<sip:a@h>", "<sip:n@h>"],
            Some("0"),
            "c1",
            4
        ),
        RegisterOutcome::OutOfOrder
    );
    // Nothing changed: still expires at t0+100, no new binding.
    let b = r.lookup(t0 + secs(10), "1001");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].expires_at, t0 + secs(100));
    // A different Call-ID (e.g. a rebooted phone) may replace it whatever its CSeq.
    assert_eq!(
        reg(&mut r, t0 + secs(10), &["<sip:a@h>"], Some("200"), "c2", 1),
        ok(&[("sip:a@h", 200)])
    );
    assert_eq!(r.lookup(t0, "1001")[0].call_id, "c2");
}

#[test]
fn query_without_contact() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    assert_eq!(reg(&mut r, t0, &[], None, "c", 1), ok(&[]));
    reg(&mut r, t0, &["<sip:a@h>"], Some("100"), "c", 2);
    // A query does not refresh anything, even with an Expires header.
    assert_eq!(
        reg(&mut r, t0 + secs(40), &[], Some("3600"), "c", 3),
        ok(&[("sip:a@h", 60)])
    );
    assert_eq!(r.poll_timeout(), Some(t0 + secs(100)));
}

#[test]
fn contact_forms() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    let out = reg(
            &mut r,
            t0,
            &[
                "\"Smith, John <boss>\" <sip:a@h:5071;transport=tcp>;q=0.5;+sip.instance=\"<urn:uuid:1;2>\"",
                "Bob <sip:b@h>;expires=120, sip:c@h;expires=90;q=1.0",
            ],
            None,
            "c",
            1,
        );
    assert_eq!(
        out,
        ok(&[
            ("sip:c@h", 90),
            ("sip:b@h", 120),
            ("sip:a@h:5071;transport=tcp", 3600)
        ])
    );
    let b = r.lookup(t0, "1001");
    assert_eq!(b[0].q, Some(1.0));
    assert_eq!(b[1].q, None);
    assert_eq!(b[2].q, Some(0.5));
}

#[test]
fn invalid_contacts_and_expires() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    let bad = |r: &mut Registrar, c: &str, e: Option<&str>| {
        matches!(reg(r, t0, &[c], e, "c", 1), RegisterOutcome::Invalid { .. })
    };
    assert!(bad(&mut r, "<sip:a@h>", Some("soon")));
    assert!(bad(&mut r, "<sip:a@h>", Some("-1")));
    assert!(bad(&mut r, "<sip:a@h>;expires=abc", None));
    assert!(bad(&mut r, "<sip:a@h>;q=2", None));
    assert!(bad(&mut r, "<sip:a@h>;q=0.1234", None));
    assert!(bad(&mut r, "<sip:a@h", None));
    assert!(bad(&mut r, "<>", None));
    assert!(bad(&mut r, "not a uri", None));
    assert!(bad(&mut r, "<sip:a@h> junk", None));
    assert!(bad(&mut r, "<sip:a@h>;x=\"unterminated", None));
    assert!(bad(&mut r, "\"unterminated <sip:a@h>", None));
    assert!(bad(&mut r, "*;expires=0", Some("0")));
    let many: Vec<String> = (0..=MAX_BINDINGS_PER_USER)
        .map(|i| format!("<sip:{i}@h>"))
        .collect();
    assert!(bad(&mut r, &many.join(","), None));
    assert!(r.lookup(t0, "1001").is_empty());
    // Garbage never panics.
    for s in [
        "",
        ",",
        ",,,",
        "<",
        ">",
        "\"",
        "é<é>;é",
        "sip:",
        ";;;",
        "<sip:x>;;=;",
    ] {
        let _ = reg(&mut r, t0, &[s], Some(s), "c", 1);
    }
}

#[test]
fn per_user_binding_cap_drops_oldest() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    for i in 0..MAX_BINDINGS_PER_USER + 2 {
        reg(
            &mut r,
            t0 + secs(i as u64),
            &[&format!("<sip:{i}@h>")],
            None,
            &format!("c{i}"),
            1,
        );
    }
    let b = r.lookup(t0 + secs(100), "1001");
    assert_eq!(b.len(), MAX_BINDINGS_PER_USER);
    assert_eq!(b[0].contact, format!("sip:{}@h", MAX_BINDINGS_PER_USER + 1));
    assert!(b
        .iter()
        .all(|b| b.contact != "sip:0@h" && b.contact != "sip:1@h"));
    // The index forgot the dropped ones too.
    assert_eq!(r.poll_timeout(), Some(t0 + secs(2 + 3600)));
}

#[test]
fn users_are_independent() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    let c = vec!["<sip:2001@h>".to_string()];
    r.register(t0, "2001", &c, Some("60"), "x", 1, src(), Transport::Tcp);
    reg(&mut r, t0, &["<sip:a@h>"], Some("120"), "c", 1);
    assert_eq!(r.lookup(t0, "2001")[0].transport, Transport::Tcp);
    assert_eq!(r.expire(t0 + secs(60)), vec!["2001".to_string()]);
    assert!(r.is_registered(t0 + secs(60), "1001"));
}

#[test]
fn uri_equality_rules() {
    assert_eq!(
        uri_key("SIP:a@HOST;Transport=UDP"),
        uri_key("sip:a@host;transport=udp")
    );
    assert_ne!(uri_key("sip:A@host"), uri_key("sip:a@host"));
    assert_ne!(uri_key("sip:a@host"), uri_key("sip:a@host:5060"));
    assert_ne!(uri_key("sip:a@host;transport=tcp"), uri_key("sip:a@host"));
    assert_eq!(uri_key("sip:a@host;ob"), uri_key("sip:a@host"));
}

#[test]
fn config_is_normalised() {
    let r = Registrar::new(RegistrarConfig {
        min_expires: 120,
        max_expires: 60,
        default_expires: 10,
    });
    assert_eq!(
        r.config(),
        RegistrarConfig {
            min_expires: 120,
            max_expires: 120,
            default_expires: 120
        }
    );
}

#[test]
fn bindings_exported_and_imported_keep_their_remaining_life() {
    let t0 = Instant::now();
    let mut r = Registrar::new(RegistrarConfig::default());
    let src: SocketAddr = "127.0.0.1:5071".parse().unwrap();
    let v0 = r.version();
    assert!(matches!(
        r.register(
            t0,
            "1001",
            &["<sip:1001@127.0.0.1:5071>".to_string()],
            Some("600"),
            "c1",
            1,
            src,
            Transport::Udp
        ),
        RegisterOutcome::Ok { .. }
    ));
    assert!(r.version() > v0);
    let saved = r.export(t0 + Duration::from_secs(100));
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].remaining, Duration::from_secs(500));
    assert_eq!(saved[0].user, "1001");

    // Another process, later: 500 s left from its own clock; users it no longer knows dropped.
    let t1 = Instant::now() + Duration::from_secs(10_000);
    let mut other = saved.clone();
    other[0].user = "9999".into();
    let mut r2 = Registrar::new(RegistrarConfig::default());
    let expired = SavedBinding {
        remaining: Duration::ZERO,
        ..saved[0].clone()
    };
    let n = r2.import(t1, [saved, other, vec![expired]].concat(), |u| u == "1001");
    assert_eq!(n, 1);
    let b = r2.lookup(t1, "1001");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src);
    assert!(!r2.is_registered(t1, "9999"));
    assert!(r2.is_registered(t1 + Duration::from_secs(499), "1001"));
    assert!(!r2.is_registered(t1 + Duration::from_secs(500), "1001"));
    assert_eq!(
        r2.expire(t1 + Duration::from_secs(500)),
        vec!["1001".to_string()]
    );
}
