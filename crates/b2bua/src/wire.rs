//! Text-level SIP helpers the engine needs beyond `bibridge_sip::message`: building requests from
//! dialog state, answering what `rsip` cannot parse, and small header-value parsers.
//!
//! Requests are composed as text and parsed back into `rsip` values. It costs a parse per request
//! we originate (microseconds), and buys exact control of every header we put on the wire.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bibridge_sip::Transport;

/// `Allow` header value: the methods bibridge handles.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER";
/// `Accept` header value.
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay";
/// `Supported` header value. We do not claim `timer` or `100rel`: we do not implement them.
pub const SUPPORTED: &str = "replaces";

/// Prefix of every branch bibridge generates after the RFC 3261 magic cookie; lets us recognise
/// our own requests coming back to us (loop detection, RFC 3261 §16.3 item 4 in spirit).
pub const BRANCH_MARK: &str = "z9hG4bK-bib";

/// One request to originate: everything but Via, Max-Forwards, Content-Length, which [`build`] adds.
pub struct OutRequest<'a> {
    /// Method name (`INVITE`, `BYE`, ...).
    pub method: &'a str,
    /// Request-URI.
    pub uri: &'a str,
    /// From value, with our tag.
    pub from: &'a str,
    /// To value (with the peer's tag in a dialog).
    pub to: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number (the method is `method`).
    pub cseq: u32,
    /// Our Contact, for requests that set the remote target.
    pub contact: Option<&'a str>,
    /// Route headers (the dialog's route set).
    pub routes: &'a [String],
    /// Max-Forwards.
    pub max_forwards: u32,
    /// Extra headers, as name and value.
    pub extra: &'a [(&'a str, String)],
    /// Body, with its Content-Type.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Compose a request. `via_host` is our sent-by (`127.0.0.1:5060`).
pub fn build(
    req: &OutRequest<'_>,
    via_host: SocketAddr,
    transport: Transport,
    branch: &str,
    user_agent: &str,
) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    let _ = write!(s, "{} {} SIP/2.0\r\n", req.method, req.uri);
    let _ = write!(
        s,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        transport.via_token(),
        via_host,
        branch
    );
    let _ = write!(s, "Max-Forwards: {}\r\n", req.max_forwards);
    for r in req.routes {
        let _ = write!(s, "Route: {r}\r\n");
    }
    let _ = write!(
        s,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\n",
        req.from, req.to, req.call_id
    );
    let _ = write!(s, "CSeq: {} {}\r\n", req.cseq, req.method);
    if let Some(c) = req.contact {
        let _ = write!(s, "Contact: {c}\r\n");
    }
    if req.method == "INVITE" || req.method == "UPDATE" {
        let _ = write!(s, "Allow: {ALLOW}\r\nSupported: {SUPPORTED}\r\n");
    }
    let _ = write!(s, "User-Agent: {user_agent}\r\n");
    for (k, v) in req.extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    let mut out = s.into_bytes();
    match req.body {
        Some((ctype, body)) => {
            out.extend_from_slice(
                format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(body);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
    out
}

/// Answer a request `rsip` could not parse with `code reason`, built from its raw header lines, so
/// that the sender learns why (RFC 3261 §21.4.1). The To header gets `to_tag` when it has no tag
/// (RFC 3261 §8.2.6.2), a 501 lists what we implement in `Allow` (RFC 3261 §21.5.2, RFC 4475
/// §3.1.1.2). Works on bytes: a binary body, or binary octets in a header we do not copy, does
/// not stop the answer. Returns `None` when there is no Via, or the message is a response: then
/// there is nobody to answer and the message is dropped.
pub fn raw_error_response(data: &[u8], code: u16, reason: &str, to_tag: &str) -> Option<Vec<u8>> {
    let start = data.iter().position(|b| !b.is_ascii_whitespace())?;
    let data = &data[start..];
    let head = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data, |i| &data[..i]);
    // Logical header lines: folded continuations joined to the line they continue.
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let folded = matches!(line.first(), Some(b' ' | b'\t')) && lines.len() > 1;
        match lines.last_mut() {
            Some(last) if folded => {
                last.push(b' ');
                last.extend_from_slice(line.trim_ascii());
            }
            _ => lines.push(line.to_vec()),
        }
    }
    let mut lines = lines.into_iter();
    if lines.next()?.starts_with(b"SIP/") {
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let mut seen = [false; 5];
    // Only header lines that are text are copied: a line with invalid UTF-8 is skipped (no
    // answer at all when it is the only Via), so what we send is always text.
    for line in lines.filter_map(|l| String::from_utf8(l).ok()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let idx = match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        // Every Via; the first of the others (a duplicated To is why some requests end here).
        if idx != 0 && seen[idx] {
            continue;
        }
        out.push_str(&line);
        if idx == 2 && bibridge_sip::message::tag_of(value).is_none() {
            let _ = write!(out, ";tag={to_tag}");
        }
        seen[idx] = true;
        out.push_str("\r\n");
    }
    if !seen[0] {
        return None;
    }
    if code == 501 {
        let _ = write!(out, "Allow: {ALLOW}\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// The method token of a request line, if the datagram looks like a request.
pub fn request_method(data: &[u8]) -> Option<&str> {
    let end = data.iter().position(|&b| b == b' ')?;
    let m = std::str::from_utf8(data.get(..end)?).ok()?;
    (!m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic())).then_some(m)
}

/// The display name of a name-addr (`"Alice" <sip:..>` → `Alice`).
pub fn display_name(value: &str) -> Option<&str> {
    let lt = value.find('<')?;
    let name = value[..lt].trim().trim_matches('"').trim();
    (!name.is_empty()).then_some(name)
}

/// Host, port and transport of a SIP URI: `sip:1001@127.0.0.1:5071;transport=tcp`.
/// Only IP literals resolve (bibridge does no DNS: its peers are configured or registered).
pub fn uri_target(uri: &str) -> Option<(SocketAddr, Transport)> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (hostport, params) = match rest.split_once(';') {
        Some((h, p)) => (h, p),
        None => (rest, ""),
    };
    let hostport = hostport.rsplit('@').next()?;
    let hostport = hostport.split('?').next()?;
    let addr: SocketAddr = match hostport.parse() {
        Ok(a) => a,
        Err(_) => {
            let ip: std::net::IpAddr = hostport
                .trim_matches(|c| c == '[' || c == ']')
                .parse()
                .ok()?;
            SocketAddr::new(ip, 5060)
        }
    };
    let transport = if params
        .to_ascii_lowercase()
        .split(';')
        .any(|p| p == "transport=tcp")
    {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    Some((addr, transport))
}

/// A registered contact's URI with its URI parameters: a name-addr's `<...>` content, or the
/// value as is (a bare URI's `;params` belong to the URI).
pub fn bare_uri(contact: &str) -> &str {
    match (contact.find('<'), contact.find('>')) {
        (Some(a), Some(b)) if a < b => &contact[a + 1..b],
        _ => contact.trim(),
    }
}

/// A From/To value without its tag parameter (we put our own).
pub fn strip_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let (addr, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => match value.find(';') {
            Some(i) => value.split_at(i),
            None => (value, ""),
        },
    };
    out.push_str(addr.trim());
    for p in params.split(';').filter(|p| !p.trim().is_empty()) {
        if !p.trim().to_ascii_lowercase().starts_with("tag=") {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uri_target_parses_ports_and_transport() {
        assert_eq!(
            uri_target("sip:1001@127.0.0.1:5071;transport=TCP"),
            Some(("127.0.0.1:5071".parse().unwrap(), Transport::Tcp))
        );
        assert_eq!(
            uri_target("sip:127.0.0.1"),
            Some(("127.0.0.1:5060".parse().unwrap(), Transport::Udp))
        );
        assert_eq!(uri_target("sip:bob@example.com"), None, "no DNS");
        assert_eq!(uri_target("tel:+123"), None);
    }

    #[test]
    fn raw_error_response_copies_the_needed_headers() {
        let bad = b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c1\r\nCSeq: nonsense\r\n\r\n";
        let resp =
            String::from_utf8(raw_error_response(bad, 400, "Bad CSeq", "t1").unwrap()).unwrap();
        assert!(resp.starts_with("SIP/2.0 400 Bad CSeq\r\n"));
        assert!(resp.contains("Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"));
        assert!(resp.contains("Call-ID: c1\r\n"));
        assert!(raw_error_response(b"SIP/2.0 200 OK\r\n\r\n", 400, "x", "t1").is_none());
        assert!(raw_error_response(b"\xff\xfe", 400, "x", "t1").is_none());
        assert!(
            raw_error_response(b"FOO sip:x SIP/2.0\r\nFrom: a\r\n\r\n", 400, "x", "t1").is_none(),
            "no Via: cannot answer"
        );
    }

    #[test]
    fn raw_error_response_adds_a_to_tag_and_allow_on_501() {
        // RFC 3261 §8.2.6.2: a final response gets a To tag when the request had none.
        let bad = b"FOO sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 FOO\r\n\r\n";
        let resp =
            String::from_utf8(raw_error_response(bad, 501, "Not Implemented", "t1").unwrap())
                .unwrap();
        let to = resp.lines().find(|l| l.starts_with("To:")).unwrap();
        assert!(to.starts_with("To: <sip:x@y>;tag="), "{resp}");
        assert!(to.len() > "To: <sip:x@y>;tag=".len(), "{resp}");
        // RFC 3261 §21.5.2 / RFC 4475 §3.1.1.2: a 501 lists what we do implement.
        assert!(resp.contains(&format!("\r\nAllow: {ALLOW}\r\n")), "{resp}");
        let r400 = String::from_utf8(raw_error_response(bad, 400, "Bad", "t1").unwrap()).unwrap();
        assert!(!r400.contains("Allow:"), "{r400}");
        // A tag already there is kept, not doubled.
        let tagged = String::from_utf8(bad.to_vec())
            .unwrap()
            .replace("<sip:x@y>", "<sip:x@y>;tag=t9");
        let resp =
            String::from_utf8(raw_error_response(tagged.as_bytes(), 400, "Bad", "t1").unwrap())
                .unwrap();
        assert!(resp.contains("To: <sip:x@y>;tag=t9\r\n"), "{resp}");
        assert_eq!(resp.matches("tag=").count(), 2, "{resp}");
        // A binary body (or binary octets in a header we do not copy) still gets an answer.
        let mut binary = bad.to_vec();
        binary.truncate(binary.len() - 2);
        binary.extend_from_slice(b"Content-Length: 4\r\n\r\n\xff\xfe\x00\x81");
        let resp =
            String::from_utf8(raw_error_response(&binary, 501, "Not Implemented", "t1").unwrap())
                .unwrap();
        assert!(
            resp.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{resp}"
        );
    }

    #[test]
    fn addr_helpers() {
        assert_eq!(display_name("\"Agent 1\" <sip:1001@h>"), Some("Agent 1"));
        assert_eq!(request_method(b"PUBLISH sip:x SIP/2.0"), Some("PUBLISH"));
        assert_eq!(request_method(b"SIP/2.0 200 OK"), None);
    }

    #[test]
    fn strip_tag_keeps_other_params() {
        assert_eq!(
            strip_tag("\"A\" <sip:a@b>;tag=123;x=y"),
            "\"A\" <sip:a@b>;x=y"
        );
        assert_eq!(strip_tag("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(strip_tag("<sip:a@b>"), "<sip:a@b>");
    }
}
