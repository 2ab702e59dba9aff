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
//! Strict mode (`BIBRIDGE_FUZZ_STRICT=1`): every SIP message the engine sends must parse.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bibridge_b2bua::audit::MemorySink;
use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent};
use bibridge_sip::message;
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

struct Driver {
    e: Engine,
    now: Instant,
    last_call: Option<u64>,
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
        d.e.handle_datagram(d.now, datagram, source, transport);
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
