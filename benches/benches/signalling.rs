//! Signalling and packet-path micro-benchmarks: SIP parse/serialise, SDP anchoring, RTP header
//! parsing and G.711. Run with `cargo bench -p bibridge-benches --bench signalling`.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use bibridge_b2bua::sdp;
use bibridge_media::{g711, rtp::RtpHeader};
use bibridge_sip::message;
use criterion::{criterion_group, criterion_main, Criterion};

const INVITE: &str = "INVITE sip:1001@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-524287-1---a5f1c3;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:customer@127.0.0.1:5080>\r\n\
To: <sip:1001@127.0.0.1>\r\n\
From: \"Customer\" <sip:customer@127.0.0.1:5080>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Content-Type: application/sdp\r\n\
User-Agent: bench\r\n\
Content-Length: 183\r\n\r\n\
v=0\r\n\
o=- 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

fn sip(c: &mut Criterion) {
    let bytes = INVITE.as_bytes();
    c.bench_function("sip/parse INVITE", |b| {
        b.iter(|| message::parse(black_box(bytes)).unwrap())
    });
    let msg = message::parse(bytes).unwrap();
    c.bench_function("sip/serialise INVITE", |b| {
        b.iter(|| message::to_bytes(black_box(&msg)))
    });
    let body = INVITE.split("\r\n\r\n").nth(1).unwrap().as_bytes();
    let origin = sdp::Origin {
        session_id: 1,
        version: 2,
    };
    c.bench_function("sdp/parse+restrict+anchor+print", |b| {
        b.iter(|| {
            let mut s = sdp::parse(black_box(body)).unwrap();
            sdp::restrict_offer(&mut s).unwrap();
            sdp::anchor(&mut s, "127.0.0.1".parse().unwrap(), 20000, &origin);
            sdp::print(&s)
        })
    });
}

fn packet(c: &mut Criterion) {
    let mut pkt = vec![0u8; 172];
    pkt[0] = 0x80;
    c.bench_function("rtp/parse header", |b| {
        b.iter(|| RtpHeader::parse(black_box(&pkt)).unwrap())
    });
    let pcm: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let mut out = [0u8; 160];
    c.bench_function("g711/ulaw encode 20 ms", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm), &mut out))
    });
    let mut back = [0i16; 160];
    c.bench_function("g711/ulaw decode 20 ms", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&out), &mut back))
    });
}

criterion_group!(benches, sip, packet);
criterion_main!(benches);
