//! Parsing with RFC 3261 sanity checks ([`parse`]) and stream framing ([`frame_stream`]).

use std::convert::TryFrom;
use std::str::FromStr;

use rsip::{Method, SipMessage};

use super::compose::status;
use super::headers::{
    cseq, expand_compact, header, headers_all, is_list_header, line_values, names_equal,
};
use super::validate;

/// Why a message could not be accepted, and the status a request gets for it. `reason` is short
/// and human readable, suitable as the reason phrase (or a `Warning`) of the error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// The status code a request gets: 400, or 501 (unknown method), 505 (SIP version) and 416
    /// (Request-URI scheme) as RFC 3261 §8.2.1-§8.2.2 and RFC 4475 ask.
    pub code: u16,
    /// Human reason, e.g. `"Missing Call-ID"`.
    pub reason: String,
}

impl ParseError {
    pub(super) fn new(reason: impl Into<String>) -> Self {
        Self::with_code(400, reason)
    }

    pub(super) fn with_code(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Headers that must be present in every request and response (RFC 3261 §8.1.1, §8.2.6).
const MANDATORY: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        })
}

/// Parses one SIP message (one UDP datagram, or one framed TCP message) and checks what every
/// layer above relies on: Via, From, To, Call-ID and CSeq present, CSeq well-formed and, for
/// requests, naming the request method; the body no shorter than `Content-Length` (RFC 3261
/// §18.3; a longer body is truncated). RFC 4475's invalid messages are refused with the code it
/// names (see [`ParseError::code`]): an unknown method 501, a SIP version other than 2.0 505, a
/// Request-URI scheme other than sip/sips 416; duplicated single-value headers (From, To,
/// Call-ID, CSeq, Max-Forwards, Content-Length, Content-Type), a malformed or empty-parameter Via
/// anywhere in the message and unbalanced quotes in From/To 400. Tolerated: leading blank lines,
/// bare-LF line ends, folded header lines, compact header names (normalised to the long form) and
/// comma-combined Via / Route / Record-Route / Contact lines (split into one header each).
pub fn parse(data: &[u8]) -> Result<SipMessage, ParseError> {
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or_else(|| ParseError::new("Empty message"))?;
    let data = &data[start..];
    let (head, body) = split_head_body(data);
    let head =
        std::str::from_utf8(head).map_err(|_| ParseError::new("Header section is not UTF-8"))?;

    let mut lines: Vec<String> = Vec::new();
    for raw in head.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with([' ', '\t']) {
            // Folded continuation of the previous header (RFC 3261 §7.3.1).
            let has_header = lines.len() > 1;
            match lines.last_mut() {
                Some(last) if has_header => {
                    last.push(' ');
                    last.push_str(line.trim());
                }
                _ => return Err(ParseError::new("Malformed start line")),
            }
        } else if !line.is_empty() {
            lines.push(line.to_string());
        }
    }
    let start_line = lines
        .first()
        .ok_or_else(|| ParseError::new("Empty message"))?;
    let start = check_start_line(start_line)?;

    let mut text = String::with_capacity(head.len() + 64);
    match start {
        StartLine::Request => text.push_str(&validate::escape_user_part(start_line)),
        StartLine::Response { .. } => text.push_str(start_line),
    }
    text.push_str("\r\n");
    let mut seen = [false; validate::SINGLE.len()];
    for line in lines.iter().skip(1) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ParseError::new("Malformed header line"))?;
        let name = name.trim();
        if !is_token(name) {
            return Err(ParseError::new("Malformed header name"));
        }
        let name = expand_compact(name);
        if let Some(i) = validate::SINGLE.iter().position(|s| names_equal(s, name)) {
            if std::mem::replace(&mut seen[i], true) {
                return Err(ParseError::new(format!(
                    "Duplicate {}",
                    validate::SINGLE[i]
                )));
            }
        }
        let value = value.trim();
        if is_list_header(name) && !(name.eq_ignore_ascii_case("Contact") && value == "*") {
            for v in line_values(name, value) {
                text.push_str(name);
                text.push_str(": ");
                text.push_str(v);
                text.push_str("\r\n");
            }
        } else {
            text.push_str(name);
            text.push_str(": ");
            text.push_str(value);
            text.push_str("\r\n");
        }
    }
    text.push_str("\r\n");

    let mut msg = SipMessage::try_from(text.as_bytes()).map_err(|_| match &start {
        StartLine::Request => ParseError::new("Malformed Request-URI or header"),
        StartLine::Response { .. } => ParseError::new("Malformed header"),
    })?;

    // Restore the reason phrase rsip dropped for well-known codes, and the raw body.
    if let (SipMessage::Response(r), StartLine::Response { code, reason }) = (&mut msg, &start) {
        r.status_code = status(*code, reason);
    }
    let headers = match &msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    for name in MANDATORY {
        if header(headers, name).is_none_or(|v| v.is_empty()) {
            return Err(ParseError::new(format!("Missing {name}")));
        }
    }
    for via in headers_all(headers, "Via") {
        validate::via(&via)?;
    }
    for name in ["From", "To"] {
        validate::name_addr(name, &header(headers, name).unwrap_or_default())?;
    }
    let (_, cseq_method) = cseq(headers).ok_or_else(|| ParseError::new("Malformed CSeq"))?;
    if let SipMessage::Request(r) = &msg {
        if r.method != cseq_method {
            return Err(ParseError::new("CSeq method does not match request method"));
        }
    }
    let body_len = match header(headers, "Content-Length") {
        Some(v) => {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| ParseError::new("Malformed Content-Length"))?;
            if n > body.len() {
                return Err(ParseError::new("Body shorter than Content-Length"));
            }
            n
        }
        None => body.len(),
    };
    let body = body.get(..body_len).unwrap_or(body).to_vec();
    match &mut msg {
        SipMessage::Request(r) => r.body = body,
        SipMessage::Response(r) => r.body = body,
    }
    Ok(msg)
}

/// What is at the front of a stream transport's receive buffer (RFC 3261 §18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrame {
    /// A complete message of this many bytes.
    Message(usize),
    /// CRLFs between messages to drop; `ping` when they hold a double-CRLF keep-alive, which
    /// the transport answers with one CRLF (RFC 5626 §3.5.1).
    Skip {
        /// How many bytes to drop.
        len: usize,
        /// Whether they hold a double-CRLF keep-alive.
        ping: bool,
    },
    /// More bytes are needed.
    Incomplete,
    /// The stream cannot be re-synchronised (no or a malformed Content-Length, which stream
    /// transports must carry, or a message over `max_message`): close the connection.
    Invalid,
}

/// Find the first message in a stream transport's buffer by its Content-Length.
pub fn frame_stream(buf: &[u8], max_message: usize) -> StreamFrame {
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        // A ping may arrive in pieces: wait for a fourth byte before deciding what a short run of
        // CRLFs is (a lone CRLF before a message is dropped as RFC 3261 §7.5 allows).
        if lead == buf.len() && lead < 4 {
            return StreamFrame::Incomplete;
        }
        let ping = buf[..lead].windows(4).any(|w| w == b"\r\n\r\n");
        return StreamFrame::Skip { len: lead, ping };
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > max_message {
            StreamFrame::Invalid
        } else {
            StreamFrame::Incomplete
        };
    };
    let Ok(head) = std::str::from_utf8(&buf[..head_end]) else {
        return StreamFrame::Invalid;
    };
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if names_equal(name.trim(), "Content-Length") {
                // Two different values: the message boundary is unknowable (RFC 4475 §3.3.9).
                match value.trim().parse::<usize>() {
                    Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                    _ => return StreamFrame::Invalid,
                }
            }
        }
    }
    let total = length.and_then(|n| n.checked_add(head_end + 4));
    match total {
        Some(t) if t <= max_message => {
            if buf.len() < t {
                StreamFrame::Incomplete
            } else {
                StreamFrame::Message(t)
            }
        }
        _ => StreamFrame::Invalid,
    }
}

enum StartLine {
    Request,
    Response { code: u16, reason: String },
}

fn check_start_line(line: &str) -> Result<StartLine, ParseError> {
    if line.starts_with("SIP/") {
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "SIP/2.0" {
            return Err(ParseError::new("Unsupported SIP version"));
        }
        let code = parts
            .next()
            .filter(|c| c.len() == 3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| ParseError::new("Malformed status line"))?;
        let reason = parts.next().unwrap_or_default().trim().to_string();
        return Ok(StartLine::Response { code, reason });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(ParseError::new("Malformed request line"));
    };
    if !is_token(method) {
        return Err(ParseError::new("Malformed request line"));
    }
    if *version != "SIP/2.0" {
        // RFC 3261 §8.2.1 / RFC 4475 §3.1.2.16: another SIP version is 505; not SIP at all, 400.
        return Err(if version.starts_with("SIP/") {
            ParseError::with_code(505, "Version Not Supported")
        } else {
            ParseError::new("Unsupported SIP version")
        });
    }
    // RFC 3261 §8.2.1 / RFC 4475 §3.1.1.2: an unknown method is 501 (the reason phrase does not
    // echo the method: it is the sender's text).
    Method::from_str(method).map_err(|_| ParseError::with_code(501, "Not Implemented"))?;
    validate::request_uri(uri)?;
    let uri = validate::escape_user_part(line);
    let uri = uri.split(' ').nth(1).unwrap_or_default();
    rsip::Uri::try_from(uri).map_err(|_| ParseError::new("Malformed Request-URI"))?;
    Ok(StartLine::Request)
}

/// Splits at the first empty line (CRLFCRLF, or LFLF for sloppy senders).
fn split_head_body(data: &[u8]) -> (&[u8], &[u8]) {
    let crlf = find(data, b"\r\n\r\n").map(|i| (i, 4));
    let lf = find(data, b"\n\n").map(|i| (i, 2));
    let cut = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match cut {
        Some((i, len)) => (&data[..i], &data[i + len..]),
        None => (data, &[]),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
