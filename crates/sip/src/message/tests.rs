//! Unit tests of the message helpers: parsing, framing, composing, header access, ids.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::ids::mix;
use rsip::{Header, Headers, Method, SipMessage, StatusCode};

#[test]
fn addr_uri_and_params() {
    assert_eq!(
        addr_uri("\"Agent\" <sip:1001@h>;tag=x").as_deref(),
        Some("sip:1001@h")
    );
    assert_eq!(addr_uri("sip:1001@h;tag=x").as_deref(), Some("sip:1001@h"));
    assert_eq!(
        find_param("<sip:a@b>;expires=60;q=0.5", "EXPIRES"),
        Some(Some("60".to_string()))
    );
    assert_eq!(
        find_param("SIP/2.0/UDP h;branch=z9hG4bKx;rport", "rport"),
        Some(None)
    );
}

const INVITE: &str = "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport, SIP/2.0/TCP proxy.example:5070;branch=z9hG4bKp\r\n\
        Max-Forwards: 70\r\n\
        f: \"Alice <x>\" <sip:alice@example.com>;tag=ft1\r\n\
        To: <sip:1001@127.0.0.1>\r\n\
        i: call-1@example.com\r\n\
        CSeq: 7 INVITE\r\n\
        Subject: folded\r\n  line\r\n\
        l: 5\r\n\
        \r\n\
        v=0\r\nEXTRA";

#[test]
fn parse_normalises_compact_folded_and_combined() {
    let msg = parse(INVITE.as_bytes()).unwrap();
    let SipMessage::Request(req) = msg else {
        panic!("not a request")
    };
    assert_eq!(req.method, Method::Invite);
    assert_eq!(headers_all(&req.headers, "Via").len(), 2);
    // Two separate typed Via headers after normalisation.
    assert_eq!(
        req.headers
            .iter()
            .filter(|h| matches!(h, Header::Via(_)))
            .count(),
        2
    );
    assert_eq!(top_via_branch(&req.headers).as_deref(), Some("z9hG4bKabc"));
    assert_eq!(call_id(&req.headers).as_deref(), Some("call-1@example.com"));
    assert_eq!(header(&req.headers, "i"), call_id(&req.headers));
    assert_eq!(cseq(&req.headers), Some((7, Method::Invite)));
    assert_eq!(from_tag(&req.headers).as_deref(), Some("ft1"));
    assert_eq!(to_tag(&req.headers), None);
    assert_eq!(
        header(&req.headers, "subject").as_deref(),
        Some("folded line")
    );
    assert_eq!(max_forwards(&req.headers), Some(70));
    assert_eq!(uri_user(&req.uri).as_deref(), Some("1001"));
    // Body truncated to Content-Length.
    assert_eq!(req.body, b"v=0\r\n");
}

#[test]
fn parse_gives_400_reasons_without_panicking() {
    assert_eq!(parse(b"").unwrap_err().reason, "Empty message");
    assert_eq!(parse(b"\r\n\r\n").unwrap_err().reason, "Empty message");
    assert_eq!(
        parse(b"garbage").unwrap_err().reason,
        "Malformed request line"
    );
    let no_call_id = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(
        parse(no_call_id.as_bytes()).unwrap_err().reason,
        "Missing Call-ID"
    );
    let bad_cseq = no_call_id.replace("CSeq: 1 OPTIONS", "Call-ID: x\r\nCSeq: 1 INVITE");
    assert_eq!(
        parse(bad_cseq.as_bytes()).unwrap_err().reason,
        "CSeq method does not match request method"
    );
    let short = no_call_id.replace(
        "CSeq: 1 OPTIONS",
        "Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10",
    );
    assert_eq!(
        parse(short.as_bytes()).unwrap_err().reason,
        "Body shorter than Content-Length"
    );
    // An unknown method is 501 Not Implemented (RFC 4475 §3.1.1.2), its name not echoed.
    let foo = parse(b"FOO sip:a@b SIP/2.0\r\n\r\n").unwrap_err();
    assert_eq!((foo.code, foo.reason.as_str()), (501, "Not Implemented"));
    assert_eq!(parse(b"garbage").unwrap_err().code, 400);
    assert_eq!(
        parse(b"SIP/2.0 2000 OK\r\n\r\n").unwrap_err().reason,
        "Malformed status line"
    );
}

#[test]
fn parse_survives_mutations() {
    // Cheap deterministic fuzzing: mutate a valid message, parse must never panic, and any
    // success must still satisfy the mandatory-header contract.
    let base = INVITE.as_bytes().to_vec();
    let mut s: u64 = 42;
    let mut rnd = move || {
        s = mix(s);
        s as usize
    };
    let specials = b";:,<>\"[] =\r\n/@\t";
    for _ in 0..20_000 {
        let mut m = base.clone();
        for _ in 0..(1 + rnd() % 4) {
            if m.is_empty() {
                break;
            }
            let p = rnd() % m.len();
            match rnd() % 4 {
                0 => m[p] = (rnd() % 256) as u8,
                1 => m.truncate(p),
                2 => {
                    m.remove(p);
                }
                _ => m.insert(p, specials[rnd() % specials.len()]),
            }
        }
        if let Ok(msg) = parse(&m) {
            let h = match &msg {
                SipMessage::Request(r) => &r.headers,
                SipMessage::Response(r) => &r.headers,
            };
            assert!(call_id(h).is_some() && cseq(h).is_some());
            let _ = to_bytes(&msg);
        }
    }
}

#[test]
fn response_copies_headers_and_keeps_custom_reason() {
    let SipMessage::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
        panic!()
    };
    let resp = response(&req, 403, "Built-In-Bridge off", Some("tt9"));
    let bytes = to_bytes(&SipMessage::Response(resp.clone()));
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(
        text.starts_with("SIP/2.0 403 Built-In-Bridge off\r\n"),
        "{text}"
    );
    assert_eq!(headers_all(&resp.headers, "Via").len(), 2);
    assert_eq!(to_tag(&resp.headers).as_deref(), Some("tt9"));
    assert!(text.contains("\r\nContent-Length: 0\r\n\r\n"));
    // Round trip keeps the phrase; standard phrases map to rsip's variants.
    let back = parse(&bytes).unwrap();
    let SipMessage::Response(back) = back else {
        panic!()
    };
    assert_eq!(
        back.status_code,
        StatusCode::Other(403, "Built-In-Bridge off".into())
    );
    let ok = response(&req, 480, "Temporarily Unavailable", None);
    assert_eq!(ok.status_code, StatusCode::TemporarilyUnavailable);
    let bytes = to_bytes(&SipMessage::Response(ok));
    assert!(bytes.starts_with(b"SIP/2.0 480 Temporarily Unavailable\r\n"));
    // An existing To tag is not doubled.
    let mut req2 = req.clone();
    set_header(&mut req2.headers, "To", "<sip:1001@127.0.0.1>;tag=x");
    let r2 = response(&req2, 200, "OK", Some("y"));
    assert_eq!(to_tag(&r2.headers).as_deref(), Some("x"));
}

#[test]
fn to_bytes_fixes_content_length() {
    let SipMessage::Request(mut req) = parse(INVITE.as_bytes()).unwrap() else {
        panic!()
    };
    req.body = b"hello world".to_vec();
    let bytes = to_bytes(&SipMessage::Request(req));
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(text.matches("Content-Length").count(), 1);
    assert!(text.contains("Content-Length: 11\r\n"));
    assert!(text.ends_with("\r\n\r\nhello world"));
    assert!(text.starts_with("INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP"));
}

#[test]
fn header_set_remove_prepend() {
    let mut h = Headers::default();
    set_header(&mut h, "X-Foo", "1");
    set_header(&mut h, "x-foo", "2");
    assert_eq!(headers_all(&h, "X-FOO"), vec!["2".to_string()]);
    set_header(&mut h, "Call-ID", "abc");
    assert!(h.iter().any(|x| matches!(x, Header::CallId(_))));
    prepend_header(&mut h, "Via", "SIP/2.0/UDP a;branch=z9hG4bKq");
    assert!(matches!(h.iter().next(), Some(Header::Via(_))));
    remove_header(&mut h, "x-foo");
    assert_eq!(header(&h, "X-Foo"), None);
    assert_eq!(header(&h, "i").as_deref(), Some("abc"));
}

#[test]
fn received_and_rport() {
    let SipMessage::Request(mut req) = parse(INVITE.as_bytes()).unwrap() else {
        panic!()
    };
    add_received_rport(&mut req.headers, "192.0.2.7:40000".parse().unwrap());
    let via = top_via(&req.headers).unwrap();
    assert_eq!(
        via,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=192.0.2.7"
    );
    // Second Via untouched.
    assert_eq!(
        headers_all(&req.headers, "Via")[1],
        "SIP/2.0/TCP proxy.example:5070;branch=z9hG4bKp"
    );
    // Same address, no rport: nothing added.
    let mut h = Headers::default();
    set_header(&mut h, "Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1");
    add_received_rport(&mut h, "10.0.0.1:5060".parse().unwrap());
    assert_eq!(
        top_via(&h).unwrap(),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"
    );
}

#[test]
fn stream_framing_by_content_length() {
    const MAX: usize = 65_535;
    let msg = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";
    assert_eq!(frame_stream(msg, MAX), StreamFrame::Message(msg.len()));
    assert_eq!(
        frame_stream(&msg[..msg.len() - 1], MAX),
        StreamFrame::Incomplete
    );
    assert_eq!(
        frame_stream(b"\r\n\r\nOPTIONS", MAX),
        StreamFrame::Skip { len: 4, ping: true }
    );
    assert_eq!(
        frame_stream(b"\r\nOPTIONS", MAX),
        StreamFrame::Skip {
            len: 2,
            ping: false
        }
    );
    assert_eq!(
        frame_stream(b"\r\n", MAX),
        StreamFrame::Incomplete,
        "half a ping"
    );
    assert_eq!(
        frame_stream(b"\r\n\r\n", MAX),
        StreamFrame::Skip { len: 4, ping: true }
    );
    assert_eq!(
        frame_stream(b"OPTIONS sip:x SIP/2.0\r\n\r\n", MAX),
        StreamFrame::Invalid,
        "no Content-Length on a stream transport"
    );
    assert_eq!(
        frame_stream(b"OPTIONS sip:x SIP/2.0\r\nl: x\r\n\r\n", MAX),
        StreamFrame::Invalid
    );
    assert_eq!(
        frame_stream(
            b"OPTIONS sip:x SIP/2.0\r\nl: 18446744073709551615\r\n\r\n",
            MAX
        ),
        StreamFrame::Invalid,
        "a huge Content-Length is refused, not an overflow"
    );
    let mut two = msg.to_vec();
    two.extend_from_slice(msg);
    assert_eq!(frame_stream(&two, MAX), StreamFrame::Message(msg.len()));
    // The framed message parses.
    let inv = INVITE.replace("EXTRA", "");
    let n = match frame_stream(inv.as_bytes(), MAX) {
        StreamFrame::Message(n) => n,
        other => panic!("{other:?}"),
    };
    assert!(parse(&inv.as_bytes()[..n]).is_ok());
}

#[test]
fn ids_are_unique_and_deterministic() {
    let mut a = IdGen::new(7);
    let mut b = IdGen::new(7);
    assert_eq!(a.branch(), b.branch());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let br = a.branch();
        assert!(br.starts_with("z9hG4bK"));
        assert!(seen.insert(br));
    }
    assert!(a.call_id("h").ends_with("@h"));
    assert_ne!(a.tag(), a.tag());
    assert_ne!(IdGen::new(1).branch(), IdGen::new(2).branch());
}

#[test]
fn ack_and_cancel_builders() {
    let SipMessage::Request(inv) = parse(INVITE.as_bytes()).unwrap() else {
        panic!()
    };
    let resp = response(&inv, 486, "Busy Here", Some("tt"));
    let ack = ack_for_non2xx(&inv, &resp);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(headers_all(&ack.headers, "Via").len(), 1);
    assert_eq!(top_via_branch(&ack.headers).as_deref(), Some("z9hG4bKabc"));
    assert_eq!(to_tag(&ack.headers).as_deref(), Some("tt"));
    assert_eq!(cseq(&ack.headers), Some((7, Method::Ack)));
    let cancel = cancel_for(&inv);
    assert_eq!(cseq(&cancel.headers), Some((7, Method::Cancel)));
    assert_eq!(
        top_via_branch(&cancel.headers).as_deref(),
        Some("z9hG4bKabc")
    );
    assert!(parse(&to_bytes(&SipMessage::Request(cancel))).is_ok());
}

/// A valid request to mutate in the RFC 4475 rejection tests.
const OPTIONS_OK: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
        From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";

fn code_of(msg: &str) -> Result<(), (u16, String)> {
    parse(msg.as_bytes())
        .map(|_| ())
        .map_err(|e| (e.code, e.reason))
}

#[test]
fn rfc4475_version_and_method_get_their_own_codes() {
    assert!(code_of(OPTIONS_OK).is_ok());
    // §3.1.1.2 / §3.1.1.5: an unknown method of token characters is 501, not 400.
    let unknown = OPTIONS_OK.replace("OPTIONS", "NEWFANGLED");
    assert_eq!(code_of(&unknown).unwrap_err().0, 501);
    let escaped = OPTIONS_OK.replace("OPTIONS", "RE%47IST%45R");
    assert_eq!(code_of(&escaped).unwrap_err().0, 501);
    // §3.1.2.16: SIP/7.0 is 505; a version that is not SIP at all stays 400.
    let v7 = OPTIONS_OK.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
    assert_eq!(code_of(&v7).unwrap_err().0, 505);
    let junk = OPTIONS_OK.replacen("SIP/2.0\r\n", "HTTP/1.1\r\n", 1);
    assert_eq!(code_of(&junk).unwrap_err().0, 400);
}

#[test]
fn rfc4475_request_uri_scheme_and_characters() {
    // §3.3.2 / §3.3.3: a well-formed URI of a scheme we do not serve is 416.
    for uri in [
        "nobodyKnowsThisScheme:totallyopaquecontent",
        "soap.beep://192.0.2.103:3002",
        "tel:+15551234",
    ] {
        let m = OPTIONS_OK.replacen("sip:a@b", uri, 1);
        assert_eq!(code_of(&m).unwrap_err().0, 416, "{uri}");
    }
    // §3.1.2.7: a URI in <> (or holding characters no URI has) is malformed: 400.
    for uri in ["<sip:a@b>", "sip:a\"b@c", "sip:a{b}@c", "1sip:a@b", "sip"] {
        let m = OPTIONS_OK.replacen("sip:a@b", uri, 1);
        assert_eq!(code_of(&m).unwrap_err().0, 400, "{uri}");
    }
    // §3.1.1.9: `;` in the user part is user-unreserved, not the start of URI parameters.
    let semi = OPTIONS_OK.replacen("sip:a@b", "sip:user;par=u%40example.net@example.com", 1);
    let SipMessage::Request(r) = parse(semi.as_bytes()).unwrap() else {
        panic!("not a request")
    };
    assert_eq!(r.uri.host_with_port.to_string(), "example.com");
    assert_eq!(
        uri_user(&r.uri).as_deref(),
        Some("user;par=u%40example.net")
    );
    // rsip ends a user part at its first `.`: dotted users are escaped for it and given back.
    let dotted = OPTIONS_OK.replacen("sip:a@b", "sip:john.doe@example.com", 1);
    let SipMessage::Request(r) = parse(dotted.as_bytes()).unwrap() else {
        panic!("not a request")
    };
    assert_eq!(r.uri.host_with_port.to_string(), "example.com");
    assert_eq!(uri_user(&r.uri).as_deref(), Some("john.doe"));
}

#[test]
fn rfc4475_via_forms() {
    // §3.1.1.1: LWS around the slashes of sent-protocol and before sent-by is legal.
    let ws = OPTIONS_OK.replace(
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
    );
    let SipMessage::Request(r) = parse(ws.as_bytes()).unwrap() else {
        panic!("not a request")
    };
    let via = top_via(&r.headers).unwrap();
    let parts = via_parts(&via).unwrap();
    assert_eq!((parts.transport, parts.sent_by), ("UDP", "192.0.2.2"));
    // §3.1.2.1: empty Via parameters are malformed, in any Via, not only the top one.
    let empty = OPTIONS_OK.replace("branch=z9hG4bK1", "branch=z9hG4bK1;;");
    assert_eq!(code_of(&empty).unwrap_err(), (400, "Malformed Via".into()));
    let second = OPTIONS_OK.replace(
        "branch=z9hG4bK1\r\n",
        "branch=z9hG4bK1\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n",
    );
    assert_eq!(code_of(&second).unwrap_err(), (400, "Malformed Via".into()));
}

#[test]
fn rfc4475_quoted_display_names() {
    // §3.1.2.6: unterminated quoted display name.
    let quot = OPTIONS_OK.replace("To: <sip:a@b>", "To: \"Mr. J. User <sip:a@b>");
    assert_eq!(code_of(&quot).unwrap_err(), (400, "Malformed To".into()));
    // A `<` inside a quoted display name is text, not the URI's start.
    let inner = OPTIONS_OK.replace("To: <sip:a@b>", "To: \"A <x>\" <sip:a@b>");
    assert!(code_of(&inner).is_ok());
}

#[test]
fn addr_uri_ignores_angle_brackets_in_a_quoted_display_name() {
    assert_eq!(
        addr_uri("\"Alice <x>\" <sip:alice@example.com>;tag=1").as_deref(),
        Some("sip:alice@example.com")
    );
    assert_eq!(
        addr_uri("\"a \\\" <y>\" <sip:b@h>").as_deref(),
        Some("sip:b@h")
    );
}

#[test]
fn rfc4475_single_value_headers() {
    // §3.3.8 / §3.3.9: headers that may appear once only.
    for (name, line) in [
        ("To", "To: sip:other@example.net"),
        ("From", "From: sip:x@z;tag=2"),
        ("Call-ID", "Call-ID: other"),
        ("CSeq", "CSeq: 59 OPTIONS"),
        ("Max-Forwards", "Max-Forwards: 5\r\nMax-Forwards: 6"),
        ("Content-Length", "Content-Length: 0\r\nl: 0"),
    ] {
        let m = OPTIONS_OK.replace("\r\n\r\n", &format!("\r\n{line}\r\n\r\n"));
        assert_eq!(
            code_of(&m).unwrap_err(),
            (400, format!("Duplicate {name}")),
            "{line}"
        );
    }
    // Conflicting Content-Length on a stream: the message boundary is unknowable.
    let two =
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 13\r\nContent-Length: 5\r\n\r\n0123456789abc";
    assert_eq!(frame_stream(two, 65_536), StreamFrame::Invalid);
}
