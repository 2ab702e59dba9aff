//! SIP message parser: `bibridge_sip::message::parse` on arbitrary bytes; whatever parses is
//! serialised again with `to_bytes`, inspected with the header helpers the engine uses and
//! answered with the message builders (response, ACK, CANCEL). Nothing may panic.
//! Strict mode (`BIBRIDGE_FUZZ_STRICT=1`): what we serialise must parse again, and serialising
//! that must give the same bytes.
#![no_main]

use std::net::SocketAddr;

use bibridge_sip::message::{self, to_bytes};
use bibridge_sip::rsip::SipMessage;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = message::parse(data) else {
        return;
    };
    let bytes = to_bytes(&msg);
    let headers = match &msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    let _ = message::call_id(headers);
    let _ = message::cseq(headers);
    let _ = message::from_tag(headers);
    let _ = message::to_tag(headers);
    let _ = message::max_forwards(headers);
    let _ = message::top_via_branch(headers);
    for via in message::headers_all(headers, "Via") {
        let _ = message::via_parts(&via);
    }
    for name in ["Contact", "From", "To", "Record-Route", "Route"] {
        for v in message::headers_all(headers, name) {
            let _ = message::addr_uri(&v);
            let _ = message::tag_of(&v);
            let _ = message::find_param(&v, "expires");
        }
    }
    let mut h2 = headers.clone();
    let src: SocketAddr = ([192, 0, 2, 1], 5062).into();
    let _ = message::add_received_rport(&mut h2, src);
    match &msg {
        SipMessage::Request(r) => {
            let _ = message::uri_user(&r.uri);
            let resp = message::response(r, 486, "Busy Here", Some("tag1"));
            let _ = to_bytes(&SipMessage::Response(resp.clone()));
            if r.method == bibridge_sip::rsip::Method::Invite {
                let _ = to_bytes(&SipMessage::Request(message::ack_for_non2xx(r, &resp)));
                let _ = to_bytes(&SipMessage::Request(message::cancel_for(r)));
            }
        }
        SipMessage::Response(r) => {
            let _ = message::reason_phrase(&r.status_code);
        }
    }
    if common::strict() {
        let again = message::parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "serialised message does not parse again ({e}):\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(
            to_bytes(&again),
            bytes,
            "to_bytes is not stable over a re-parse"
        );
    }
});
