//! Baseline: the same two RTP legs per call, set up through rtpengine's NG control protocol
//! instead of SIP. A datagram is `<cookie> <bencoded dict>`; the reply repeats the cookie.
//! `offer` carries the caller's (customer's) SDP and returns the SDP for the callee, whose port is
//! where the agent sends; `answer` carries the callee's (agent's) SDP and returns the SDP for the
//! caller, whose port is where the customer sends. `delete` ends the call.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::bencode::{self, Value};
use crate::sip::{sdp, sdp_media_addr};

/// Errors of one NG exchange.
#[derive(Debug)]
pub enum NgError {
    Io(std::io::Error),
    Decode(bencode::DecodeError),
    /// rtpengine answered `result: error` (with its reason) or something unexpected.
    Refused(String),
    Timeout,
}

impl std::fmt::Display for NgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NgError::Io(e) => write!(f, "NG socket: {e}"),
            NgError::Decode(e) => write!(f, "NG reply: {e}"),
            NgError::Refused(r) => write!(f, "NG refused: {r}"),
            NgError::Timeout => write!(f, "NG: no reply"),
        }
    }
}

impl From<std::io::Error> for NgError {
    fn from(e: std::io::Error) -> Self {
        NgError::Io(e)
    }
}

/// Builds one NG request datagram.
pub fn request(cookie: &str, command: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut pairs = vec![("command", Value::str(command))];
    pairs.extend(fields.iter().map(|(k, v)| (*k, Value::str(v))));
    let mut out = format!("{cookie} ").into_bytes();
    Value::dict(pairs).encode_into(&mut out);
    out
}

/// Splits a reply into cookie and decoded dictionary.
pub fn parse_reply(buf: &[u8]) -> Result<(String, Value), NgError> {
    let sp = buf
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| NgError::Refused("reply without cookie".into()))?;
    let cookie = String::from_utf8_lossy(&buf[..sp]).into_owned();
    let v = bencode::decode(&buf[sp + 1..]).map_err(NgError::Decode)?;
    Ok((cookie, v))
}

/// A synchronous NG client (one outstanding request; rtpengine answers in microseconds).
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    next: u64,
    /// `(call-id, from-tag)` of every call set up, for [`NgClient::delete_all`].
    calls: Vec<(String, String)>,
}

/// rtpengine's two addresses for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgCall {
    /// Where the customer sends (and receives from): from the `answer` reply.
    pub customer_side: SocketAddr,
    /// Where the agent sends (and receives from): from the `offer` reply.
    pub agent_side: SocketAddr,
}

impl NgClient {
    pub fn new(server: SocketAddr) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(Self {
            sock,
            server,
            next: rand::random::<u32>().into(),
            calls: Vec::new(),
        })
    }

    /// Sends `command` and waits for the reply with the same cookie (one retry).
    pub fn exchange(&mut self, command: &str, fields: &[(&str, &str)]) -> Result<Value, NgError> {
        self.next += 1;
        let cookie = format!("lg{}", self.next);
        let req = request(&cookie, command, fields);
        let mut buf = vec![0u8; 65_535];
        for _ in 0..2 {
            self.sock.send_to(&req, self.server)?;
            loop {
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) => return Err(e.into()),
                };
                let (c, v) = parse_reply(&buf[..n])?;
                if c != cookie {
                    continue;
                }
                return match v.get("result").and_then(Value::as_str) {
                    Some("ok" | "pong") => Ok(v),
                    other => Err(NgError::Refused(
                        v.get("error-reason")
                            .and_then(Value::as_str)
                            .or(other)
                            .unwrap_or("no result")
                            .to_string(),
                    )),
                };
            }
        }
        Err(NgError::Timeout)
    }

    /// offer + answer for call `i` between our customer and agent RTP sockets.
    pub fn setup_call(
        &mut self,
        i: u32,
        customer_rtp: SocketAddr,
        agent_rtp: SocketAddr,
    ) -> Result<NgCall, NgError> {
        let call_id = format!("lg-{i}-{:x}", rand::random::<u32>());
        let (from_tag, to_tag) = (format!("c{i}"), format!("a{i}"));
        let offer_sdp = sdp(customer_rtp, 100_000 + u64::from(i));
        let offer = self.exchange(
            "offer",
            &[
                ("call-id", &call_id),
                ("from-tag", &from_tag),
                ("sdp", &offer_sdp),
            ],
        )?;
        let agent_side = offer
            .get("sdp")
            .and_then(Value::as_str)
            .and_then(sdp_media_addr)
            .ok_or_else(|| NgError::Refused("offer reply without usable SDP".into()))?;
        let answer_sdp = sdp(agent_rtp, 300_000 + u64::from(i));
        let answer = self.exchange(
            "answer",
            &[
                ("call-id", &call_id),
                ("from-tag", &from_tag),
                ("to-tag", &to_tag),
                ("sdp", &answer_sdp),
            ],
        )?;
        let customer_side = answer
            .get("sdp")
            .and_then(Value::as_str)
            .and_then(sdp_media_addr)
            .ok_or_else(|| NgError::Refused("answer reply without usable SDP".into()))?;
        self.calls.push((call_id, from_tag));
        Ok(NgCall {
            customer_side,
            agent_side,
        })
    }

    /// Deletes every call set up; returns how many rtpengine confirmed.
    pub fn delete_all(&mut self) -> usize {
        let calls = std::mem::take(&mut self.calls);
        calls
            .iter()
            .filter(|(cid, tag)| {
                self.exchange("delete", &[("call-id", cid), ("from-tag", tag)])
                    .is_ok()
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake rtpengine: answers offer/answer with an SDP pointing at a port derived from the
    /// command, and checks the request is well-formed bencode with the right fields.
    fn fake_server() -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let addr = s.local_addr().expect("addr");
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok((n, src)) = s.recv_from(&mut buf) {
                let (cookie, v) = parse_reply(&buf[..n]).expect("request parses");
                let cmd = v
                    .get("command")
                    .and_then(Value::as_str)
                    .expect("command")
                    .to_string();
                assert!(v.get("call-id").is_some() && v.get("from-tag").is_some());
                let reply = match cmd.as_str() {
                    "offer" => Value::dict([
                        ("result", Value::str("ok")),
                        (
                            "sdp",
                            Value::str(&sdp("127.0.0.1:40000".parse().expect("a"), 1)),
                        ),
                    ]),
                    "answer" => {
                        assert!(v.get("to-tag").is_some());
                        Value::dict([
                            ("result", Value::str("ok")),
                            (
                                "sdp",
                                Value::str(&sdp("127.0.0.1:40002".parse().expect("a"), 1)),
                            ),
                        ])
                    }
                    _ => Value::dict([
                        ("result", Value::str("error")),
                        ("error-reason", Value::str("Unknown call-id")),
                    ]),
                };
                seen.push(cmd);
                let mut out = format!("{cookie} ").into_bytes();
                reply.encode_into(&mut out);
                s.send_to(&out, src).expect("reply");
                if seen.len() == 3 {
                    break;
                }
            }
            seen
        });
        (addr, h)
    }

    #[test]
    fn offer_answer_against_fake_rtpengine() {
        let (addr, h) = fake_server();
        let mut c = NgClient::new(addr).expect("client");
        let call = c
            .setup_call(
                7,
                "127.0.0.1:5000".parse().expect("a"),
                "127.0.0.1:5002".parse().expect("a"),
            )
            .expect("setup");
        assert_eq!(call.agent_side, "127.0.0.1:40000".parse().expect("a"));
        assert_eq!(call.customer_side, "127.0.0.1:40002".parse().expect("a"));
        match c.exchange("delete", &[("call-id", "nope"), ("from-tag", "x")]) {
            Err(NgError::Refused(r)) => assert_eq!(r, "Unknown call-id"),
            other => panic!("expected refusal, got {other:?}"),
        }
        assert_eq!(h.join().expect("fake"), ["offer", "answer", "delete"]);
    }

    #[test]
    fn request_format() {
        let r = request("c1", "ping", &[]);
        assert_eq!(r, b"c1 d7:command4:pinge".to_vec());
        assert!(parse_reply(b"nocookie").is_err());
    }
}
