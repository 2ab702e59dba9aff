//! SDP offer/answer: `bibridge_b2bua::sdp` on an arbitrary body, as offer and as answer, against
//! a fixed local side (127.0.0.1, RTP port 20000, the lab codecs), the way the engine uses it:
//! parse, audio_info, restrict_offer, add_transcodable, anchor, set_direction,
//! keep_payload_types, restrict_answer and print. Nothing may panic; what we print after
//! anchoring must parse again (the peer gets it).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use bibridge_b2bua::sdp::{self, AudioInfo, Direction, Origin};
use libfuzzer_sys::fuzz_target;

mod common;

const LOCAL_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

fn local_offer() -> &'static AudioInfo {
    static INFO: OnceLock<AudioInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let s = sdp::parse(LOCAL_OFFER.as_bytes()).expect("fixed offer parses");
        sdp::audio_info(&s).expect("fixed offer has audio")
    })
}

fn check_printed(text: &str, what: &str) {
    if common::strict() {
        if let Err(e) = sdp::parse(text.as_bytes()) {
            panic!("{what} does not parse again ({e}):\n{text}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = sdp::parse(data) else {
        return;
    };
    let _ = sdp::print(&parsed);
    let info = sdp::audio_info(&parsed);
    if let Ok(info) = &info {
        let _ = info.direction.answer().is_hold();
    }
    let origin = Origin {
        session_id: 42,
        version: 7,
    };

    // As an offer from a peer: restrict, add what we transcode, anchor on the other leg.
    let mut offer = parsed.clone();
    if sdp::restrict_offer(&mut offer).is_ok() {
        let _ = sdp::audio_info(&offer);
        let mut to_b = offer.clone();
        sdp::add_transcodable(&mut to_b);
        sdp::anchor(&mut to_b, IpAddr::V4(Ipv4Addr::LOCALHOST), 20000, &origin);
        let text = sdp::print(&to_b);
        check_printed(&text, "anchored offer");
        // Our answer to it: the first payload type kept, hold direction answered.
        let first = sdp::audio_info(&offer)
            .ok()
            .and_then(|i| i.codecs.first().map(|c| c.payload_type));
        let mut answer = offer.clone();
        sdp::keep_payload_types(&mut answer, &[first, Some(101)]);
        if let Ok(i) = &info {
            sdp::set_direction(&mut answer, i.direction.answer());
        }
        sdp::anchor(&mut answer, IpAddr::V6(Ipv6Addr::LOCALHOST), 20002, &origin);
        let text = sdp::print(&answer);
        check_printed(&text, "anchored answer");
    }

    // As an answer to our fixed offer.
    let mut answer = parsed.clone();
    if sdp::restrict_answer(&mut answer, local_offer()).is_ok() {
        let _ = sdp::audio_info(&answer);
        sdp::set_direction(&mut answer, Direction::SendOnly);
        sdp::anchor(&mut answer, IpAddr::V4(Ipv4Addr::LOCALHOST), 29998, &origin);
        let text = sdp::print(&answer);
        check_printed(&text, "anchored peer answer");
    }

    // Our fixed offer answered by this body's codecs (the offer side of restrict_answer).
    if let Ok(i) = &info {
        if let Ok(mut ours) = sdp::parse(LOCAL_OFFER.as_bytes()) {
            let _ = sdp::restrict_answer(&mut ours, i);
        }
    }
});
