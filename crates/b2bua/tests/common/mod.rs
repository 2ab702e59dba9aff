//! The engine test harness: the lab config with agent 1001 at a static contact, raw SIP in and
//! out, virtual time.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bibridge_b2bua::config::Config;
use bibridge_b2bua::engine::{Engine, LocalAddrs, MediaCommand, MediaEvent, Notice};
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

/// Customer → agent 1001, answered and ACKed; returns the call id.
pub fn connected_call(h: &mut H) -> u64 {
    connected_call_inv(h).0
}

/// Like [`connected_call`], also returning bibridge's INVITE to the agent.
pub fn connected_call_inv(h: &mut H) -> (u64, String) {
    let inv = trunk_invite(h, "cust-1", "c1", "z9hG4bKc1");
    let body = sdp(41000, "sendrecv");
    h.send(
        AGENT,
        &format!(
            "SIP/2.0 200 OK
Via: {}
From: {}
To: {};tag=ag1
Call-ID: {}
CSeq: {}
Contact: <sip:1001@{AGENT}>
Content-Type: application/sdp
Content-Length: {}

{body}",
            header(&inv, "Via"),
            header(&inv, "From"),
            header(&inv, "To"),
            header(&inv, "Call-ID"),
            header(&inv, "CSeq"),
            clen(&body)
        ),
    );
    let out = h.out();
    let ok = find(&out, TRUNK, "SIP/2.0 200").unwrap().to_string();
    h.send(
        TRUNK,
        &format!(
            "ACK sip:1001@{US} SIP/2.0
Via: SIP/2.0/UDP {TRUNK};branch=z9hG4bKc1ack;rport
Max-Forwards: 70
From: <sip:customer@{TRUNK}>;tag=c1
To: {}
Call-ID: cust-1
CSeq: 1 ACK
Content-Length: 0

",
            header(&ok, "To")
        ),
    );
    h.out();
    h.media();
    notices(h);
    (h.e.calls()[0].id, inv)
}

/// The agent hangs up its dialog with bibridge.
pub fn agent_bye(h: &mut H, inv: &str) {
    h.send(
        AGENT,
        &format!(
            "BYE sip:bibridge@{US} SIP/2.0
Via: SIP/2.0/UDP {AGENT};branch=z9hG4bKagbye
Max-Forwards: 70
From: {};tag=ag1
To: {}
Call-ID: {}
CSeq: 2 BYE
Content-Length: 0

",
            header(inv, "To"),
            header(inv, "From"),
            header(inv, "Call-ID"),
        ),
    );
}

pub fn notices(h: &mut H) -> Vec<Notice> {
    std::iter::from_fn(|| h.e.poll_notice()).collect()
}

/// A supervisor's feature-code INVITE (`*811001` etc.) with SDP, answering the digest challenge
/// with `password`; returns what bibridge sent back to the authenticated INVITE.
pub fn dial_feature(
    h: &mut H,
    dialled: &str,
    user: &str,
    password: &str,
    i: u32,
) -> Vec<(SocketAddr, String)> {
    let body = sdp(42000 + 2 * i as u16, "sendrecv");
    let invite = |auth: &str, cseq: u32| {
        format!(
            "INVITE sip:{dialled}@{US} SIP/2.0
Via: SIP/2.0/UDP {SUPERVISOR};branch=z9hG4bKfc{i}x{cseq};rport
Max-Forwards: 70
From: <sip:{user}@{US}>;tag=s{i}
To: <sip:{dialled}@{US}>
Call-ID: fc-{i}
CSeq: {cseq} INVITE
Contact: <sip:{user}@{SUPERVISOR}>
{auth}Content-Type: application/sdp
Content-Length: {}

{body}",
            clen(&body)
        )
    };
    h.send(SUPERVISOR, &invite("", 1));
    let out = h.out();
    let challenge = find(&out, SUPERVISOR, "SIP/2.0 401")
        .expect("challenged")
        .to_string();
    let challenges: Vec<String> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .map(str::to_string)
        .collect();
    let cred = bibridge_sip::auth::client_authorization(
        &challenges,
        user,
        password,
        "INVITE",
        &format!("sip:{dialled}@{US}"),
        "cn",
        1,
    )
    .unwrap();
    h.send(SUPERVISOR, &invite(&format!("Authorization: {cred}\n"), 2));
    h.out()
}

/// A response from the supervisor's phone to bibridge's INVITE.
pub fn phone_response(inv: &str, status: &str, tag: &str, body: Option<&str>) -> String {
    let (ctype, b) = match body {
        Some(b) => ("Content-Type: application/sdp\n", b),
        None => ("", ""),
    };
    format!(
        "SIP/2.0 {status}
Via: {}
From: {}
To: {};tag={tag}
Call-ID: {}
CSeq: {}
Contact: <sip:2001@{SUPERVISOR}>
{ctype}Content-Length: {}

{b}",
        header(inv, "Via"),
        header(inv, "From"),
        header(inv, "To"),
        header(inv, "Call-ID"),
        header(inv, "CSeq"),
        clen(b)
    )
}
