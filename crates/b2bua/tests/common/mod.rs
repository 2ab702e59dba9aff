//! The engine test harness: the lab config with agent 1001 at a static contact, raw SIP in and
//! out, virtual time.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent};
use bibridge_sip::Transport;

pub const US: &str = "127.0.0.1:5060";
pub const TRUNK: &str = "127.0.0.1:5080";
pub const AGENT: &str = "127.0.0.1:5071";
pub const SUPERVISOR: &str = "127.0.0.1:5072";

pub struct H {
    pub e: Engine,
    pub now: Instant,
}

impl H {
    pub fn new() -> H {
        H::with(|_| {})
    }

    pub fn with(tweak: impl FnOnce(&mut Config)) -> H {
        let mut cfg = Config::lab();
        tweak(&mut cfg);
        for u in &mut cfg.users {
            if u.extension == "1001" {
                u.contact = Some(format!("sip:1001@{AGENT}"));
            }
        }
        let local = LocalAddrs {
            udp: Some(US.parse().unwrap()),
            tcp: None,
        };
        let now = Instant::now();
        H {
            e: Engine::new(cfg, local, [7; 32], now),
            now,
        }
    }

    pub fn send(&mut self, from: &str, text: &str) {
        let text = text.replace('\n', "\r\n");
        self.e.handle_datagram(
            self.now,
            text.as_bytes(),
            from.parse().unwrap(),
            Transport::Udp,
        );
    }

    /// Let `d` pass at once and fire the timers due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.e.handle_timeout(self.now);
    }

    /// Let `d` pass in 100 ms steps, firing timers, and collect what was sent meanwhile.
    pub fn run_for(&mut self, d: Duration) -> Vec<(SocketAddr, String)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while self.now < end {
            self.now += Duration::from_millis(100);
            self.e.handle_timeout(self.now);
            out.extend(self.out());
        }
        out
    }

    /// Everything the engine sent since the last call, as (destination, text).
    pub fn out(&mut self) -> Vec<(SocketAddr, String)> {
        let mut v = Vec::new();
        while let Some(t) = self.e.poll_transmit() {
            v.push((t.dest, String::from_utf8(t.data.to_vec()).unwrap()));
        }
        v
    }

    pub fn media(&mut self) -> Vec<MediaCommand> {
        let mut v = Vec::new();
        while let Some(m) = self.e.poll_media() {
            v.push(m);
        }
        v
    }
}

pub fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

pub fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap()
}

pub fn to_tag(msg: &str) -> String {
    header(msg, "To")
        .split(";tag=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The one message sent to `dest` whose first line starts with `start`.
pub fn find<'a>(out: &'a [(SocketAddr, String)], dest: &str, start: &str) -> Option<&'a str> {
    out.iter()
        .find(|(d, m)| d.to_string() == dest && m.starts_with(start))
        .map(|(_, m)| m.as_str())
}

/// An SDP with `\n` line ends ([`H::send`] turns them into CRLF; [`clen`] counts them so).
pub fn sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na={dir}\n"
    )
}

/// Content-Length of `text` once [`H::send`] has turned its `\n` into CRLF.
pub fn clen(text: &str) -> usize {
    text.len() + text.matches('\n').count()
}

/// The customer (trunk) calls agent 1001 with SDP (Call-ID, From tag and branch given), the
/// media plane reports the ports bound; returns bibridge's INVITE to the agent.
pub fn trunk_invite(h: &mut H, call_id: &str, from_tag: &str, branch: &str) -> String {
    let body = sdp(40000, "sendrecv");
    h.send(
        TRUNK,
        &format!(
            "INVITE sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch={branch};rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag={from_tag}
To: <sip:1001@{US}>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:customer@{TRUNK}>
Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        ),
    );
    // The new call's Open (commands of earlier calls may still be queued).
    let call = h
        .media()
        .into_iter()
        .find_map(|m| match m {
            MediaCommand::Open { call, .. } => Some(call),
            _ => None,
        })
        .expect("the call's media is opened");
    h.out();
    h.e.handle_media_event(h.now, MediaEvent::Opened { call });
    let out = h.out();
    find(&out, AGENT, "INVITE ").unwrap().to_string()
}
