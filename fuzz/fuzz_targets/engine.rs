//! The whole sans-IO call engine: a `bibridge_b2bua::engine::Engine` built from the embedded
//! lab config (agent 1001 at a static contact, as the engine tests have it, so a trunk call
//! reaches it without a registration), fed arbitrary datagrams from a few source addresses
//! with virtual time advancing; after each input every timer due is fired and every output
//! (transmits, media commands, notices) polled. The media plane is simulated: each `Open` is
//! answered `Opened` (or `OpenFailed`, by a control bit). Nothing may panic.
//!
//! Input: chunks separated by the byte 0xFF (never part of UTF-8 text, so SIP seeds stay
//! readable). Each chunk is `ctrl` then the datagram. `ctrl`: bits 0-1 source (trunk, agent
//! 1001, supervisor 2001, a stranger), bit 2 TCP instead of UDP, bits 3-5 time advanced
//! before the datagram (0 ms … 64 s), bit 6 answer this round's media opens with
//! `OpenFailed`, bit 7 report the last opened call's media inactive.
//!
//! A chunk that is only the `ctrl` byte (no datagram) makes the simulated phone that bibridge
//! last sent an INVITE to answer it (bibridge's branch, tags and Call-ID come from its id
//! generator, which the fuzzer cannot guess): `ctrl` bits 0-1 pick 180 Ringing, 200 OK with
//! SDP, 486 Busy Here, or a BYE from that phone in the dialog the 200 made.
//!
//! Strict mode (`BIBRIDGE_FUZZ_STRICT=1`): every SIP message the engine sends must parse.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bibridge_b2bua::audit::MemorySink;
use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent};
use bibridge_sip::message;
use bibridge_sip::rsip::{Method, Request, SipMessage};
use bibridge_sip::Transport;
use libfuzzer_sys::fuzz_target;

mod common;

const US: &str = "127.0.0.1:5060";
const SOURCES: [&str; 4] = [
    "127.0.0.1:5080", // the lab trunk "pstn"
    "127.0.0.1:5071", // agent 1001's static contact
    "127.0.0.1:5072", // a supervisor's phone
    "192.0.2.9:5060", // anyone
];
const STEPS_MS: [u64; 8] = [0, 10, 100, 500, 1000, 4000, 32_000, 64_000];

fn lab() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let mut cfg = Config::lab();
        for u in &mut cfg.users {
            if u.extension == "1001" {
                u.contact = Some(format!("sip:1001@{}", SOURCES[1]));
            }
        }
        cfg
    })
}

const PHONE_SDP: &str = "v=0\r\no=- 9 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40100 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

struct Driver {
    e: Engine,
    now: Instant,
    last_call: Option<u64>,
    /// The last INVITE bibridge sent, and where to.
    last_invite: Option<(Request, SocketAddr, Transport)>,
}

impl Driver {
    /// The simulated phone's answer to bibridge's last INVITE (`which`: 0 180, 1 200 with
    /// SDP, 2 486, 3 BYE in the dialog).
    fn answer(&mut self, which: u8) {
        let Some((inv, peer, transport)) = self.last_invite.clone() else {
            return;
        };
        let data: Vec<u8> = if which == 3 {
            let h = &inv.headers;
            let (Some(from), Some(to), Some(cid)) = (
                message::header(h, "From"),
                message::header(h, "To"),
                message::call_id(h),
            ) else {
                return;
            };
            let target = message::header(h, "Contact")
                .and_then(|c| message::addr_uri(&c))
                .unwrap_or_else(|| format!("sip:bibridge@{US}"));
            format!(
                "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {peer};branch=z9hG4bK-bye{n};rport\r\n\
                 Max-Forwards: 70\r\nFrom: {to};tag=ph1\r\nTo: {from}\r\nCall-ID: {cid}\r\n\
                 CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
                n = self.e.stats().dialogs,
            )
            .into_bytes()
        } else {
            let (code, reason) =
                [(180, "Ringing"), (200, "OK"), (486, "Busy Here")][usize::from(which)];
            let mut r = message::response(&inv, code, reason, Some("ph1"));
            message::set_header(&mut r.headers, "Contact", &format!("<sip:phone@{peer}>"));
            if code == 200 {
                message::set_header(&mut r.headers, "Content-Type", "application/sdp");
                r.body = PHONE_SDP.as_bytes().to_vec();
            }
            message::to_bytes(&SipMessage::Response(r)).to_vec()
        };
        self.e.handle_datagram(self.now, &data, peer, transport);
    }
}

impl Driver {
    /// Fire every timer due by `now` and drain every output queue.
    fn settle(&mut self, fail_open: bool) {
        for _ in 0..64 {
            match self.e.poll_timeout() {
                Some(t) if t <= self.now => self.e.handle_timeout(self.now),
                _ => break,
            }
        }
        // Media replies produce more output; bound the rounds so a loop shows up as a hang
        // report (libFuzzer's -timeout) rather than running forever here.
        for _ in 0..16 {
            let mut replies = Vec::new();
            while let Some(t) = self.e.poll_transmit() {
                if let Ok(SipMessage::Request(r)) = message::parse(&t.data) {
                    if r.method == Method::Invite {
                        self.last_invite = Some((r, t.dest, t.transport));
                    }
                }
                if common::strict() {
                    if let Err(err) = message::parse(&t.data) {
                        panic!(
                            "the engine sent a message that does not parse ({err}):\n{}",
                            String::from_utf8_lossy(&t.data)
                        );
                    }
                }
            }
            while let Some(m) = self.e.poll_media() {
                if let MediaCommand::Open { call, legs } = m {
                    self.last_call = Some(call);
                    replies.push(if fail_open {
                        MediaEvent::OpenFailed {
                            call,
                            bad_ports: legs.iter().map(|l| l.port).take(1).collect(),
                        }
                    } else {
                        MediaEvent::Opened { call }
                    });
                }
            }
            while self.e.poll_notice().is_some() {}
            if replies.is_empty() {
                break;
            }
            for r in replies {
                self.e.handle_media_event(self.now, r);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let local = LocalAddrs {
        udp: Some(US.parse().expect("literal")),
        tcp: Some(US.parse().expect("literal")),
    };
    let now = Instant::now();
    let mut d = Driver {
        e: Engine::new(lab().clone(), local, [7; 32], now),
        now,
        last_call: None,
        last_invite: None,
    };
    d.e.set_audit_sink(Box::new(MemorySink::default()));
    for chunk in data.split(|b| *b == 0xFF) {
        let Some((&ctrl, datagram)) = chunk.split_first() else {
            continue;
        };
        d.now += Duration::from_millis(STEPS_MS[usize::from((ctrl >> 3) & 7)]);
        let source: SocketAddr = SOURCES[usize::from(ctrl & 3)].parse().expect("literal");
        let transport = if ctrl & 0x04 != 0 {
            Transport::Tcp
        } else {
            Transport::Udp
        };
        d.e.handle_timeout(d.now);
        if datagram.is_empty() {
            d.answer(ctrl & 3);
        } else {
            d.e.handle_datagram(d.now, datagram, source, transport);
        }
        if ctrl & 0x80 != 0 {
            if let Some(call) = d.last_call {
                d.e.handle_media_event(d.now, MediaEvent::Inactive { call });
            }
        }
        d.settle(ctrl & 0x40 != 0);
        let _ = d.e.stats();
    }
    // Let every transaction and dialog time out.
    for _ in 0..8 {
        d.now += Duration::from_secs(40);
        d.e.handle_timeout(d.now);
        d.settle(false);
    }
    d.e.shutdown(d.now);
    d.settle(false);
});
