//! Helpers over `rsip` messages: tolerant parsing with RFC 3261 sanity checks, serialisation with a
//! correct `Content-Length`, header access by name (compact forms understood), building responses,
//! ACKs and CANCELs, Via manipulation and deterministic identifier generation.
//!
//! `rsip` 0.4 stores most headers as untyped strings; its typed accessors are strict and some of its
//! Display impls are not wire-correct (e.g. status lines print `480 TemporarilyUnavailable`).
//! These helpers therefore work on the header *strings* themselves and render messages without
//! relying on `rsip`'s status-line Display.
//!
//! Status codes: [`parse`] and [`response`] keep a well-known `rsip::StatusCode` variant (e.g.
//! `StatusCode::OK`) only when the reason phrase is the standard one; any other phrase is kept as
//! `StatusCode::Other(code, phrase)` so that it survives re-serialisation. Compare status codes with
//! `.code()`, never by variant.

use std::borrow::Cow;
use std::convert::TryFrom;
use std::convert::TryInto;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rsip::prelude::UntypedHeader;
use rsip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode};

/// Why a message could not be accepted. `reason` is short and human readable, suitable as the
/// reason phrase (or a `Warning`) of a `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    /// Human reason, e.g. `"Missing Call-ID"`.
    pub reason: String,
}

impl ParseError {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// Headers whose comma-separated values are split into one value each (RFC 3261 §7.3.1 allows
/// combining them on one line; order matters for Via and routing).
const LIST_HEADERS: &[&str] = &["Via", "Route", "Record-Route", "Contact", "Path"];

/// Headers that must be present in every request and response (RFC 3261 §8.1.1, §8.2.6).
const MANDATORY: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];

/// Expands a compact header name (RFC 3261 §7.3.3 and later RFCs) to its long form.
pub fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes().first().map(u8::to_ascii_lowercase) {
        Some(b'v') => "Via",
        Some(b'f') => "From",
        Some(b't') => "To",
        Some(b'i') => "Call-ID",
        Some(b'm') => "Contact",
        Some(b'l') => "Content-Length",
        Some(b'c') => "Content-Type",
        Some(b'k') => "Supported",
        Some(b's') => "Subject",
        Some(b'e') => "Content-Encoding",
        Some(b'o') => "Event",
        Some(b'r') => "Refer-To",
        Some(b'b') => "Referred-By",
        Some(b'u') => "Allow-Events",
        Some(b'x') => "Session-Expires",
        _ => name,
    }
}

fn names_equal(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

fn is_list_header(name: &str) -> bool {
    LIST_HEADERS.iter().any(|h| names_equal(h, name))
}

macro_rules! header_table {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Name (as found in the variant, or the raw name for `Other`) and raw value of a header.
        pub fn header_name_value(h: &Header) -> (&str, &str) {
            match h {
                $(Header::$variant(v) => ($name, v.value()),)*
                Header::Other(n, v) => (n.as_str(), v.as_str()),
            }
        }
    };
}

header_table! {
    Accept => "Accept", AcceptEncoding => "Accept-Encoding", AcceptLanguage => "Accept-Language",
    AlertInfo => "Alert-Info", Allow => "Allow", AuthenticationInfo => "Authentication-Info",
    Authorization => "Authorization", CSeq => "CSeq", CallId => "Call-ID", CallInfo => "Call-Info",
    Contact => "Contact", ContentDisposition => "Content-Disposition",
    ContentEncoding => "Content-Encoding", ContentLanguage => "Content-Language",
    ContentLength => "Content-Length", ContentType => "Content-Type", Date => "Date",
    ErrorInfo => "Error-Info", Event => "Event", Expires => "Expires", From => "From",
    InReplyTo => "In-Reply-To", MaxForwards => "Max-Forwards", MimeVersion => "MIME-Version",
    MinExpires => "Min-Expires", Organization => "Organization", Priority => "Priority",
    ProxyAuthenticate => "Proxy-Authenticate", ProxyAuthorization => "Proxy-Authorization",
    ProxyRequire => "Proxy-Require", RecordRoute => "Record-Route", ReplyTo => "Reply-To",
    Require => "Require", RetryAfter => "Retry-After", Route => "Route", Server => "Server",
    Subject => "Subject", SubscriptionState => "Subscription-State", Supported => "Supported",
    Timestamp => "Timestamp", To => "To", Unsupported => "Unsupported", UserAgent => "User-Agent",
    Via => "Via", Warning => "Warning", WwwAuthenticate => "WWW-Authenticate",
}

/// Builds a header from a name and value, using the typed `rsip` variant when the (expanded) name
/// is known so that `rsip`'s own accessors keep working, `Header::Other` otherwise.
pub fn make_header(name: &str, value: &str) -> Header {
    let name = expand_compact(name.trim());
    let tokenizer = rsip::headers::header::Tokenizer {
        name: name.as_bytes(),
        value: value.as_bytes(),
    };
    let parsed: Result<Header, rsip::Error> = tokenizer.try_into();
    parsed.unwrap_or_else(|_| Header::Other(name.to_string(), value.to_string()))
}

/// Splits `s` at `sep` characters that are outside quoted strings and `<...>`.
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut in_angle = false;
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quotes = false;
            }
            continue;
        }
        match ch {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            c if c == sep && !in_angle => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The values of one header line: list headers are split at commas, others returned whole.
fn line_values<'a>(name: &str, value: &'a str) -> Vec<&'a str> {
    if is_list_header(name) {
        split_outside_quotes(value, ',')
            .into_iter()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    } else {
        vec![value.trim()]
    }
}

/// First value of header `name` (case-insensitive, compact forms understood). For list headers
/// (Via, Route, Record-Route, Contact, Path) a combined line yields its first element.
pub fn header(headers: &Headers, name: &str) -> Option<String> {
    headers.iter().find_map(|h| {
        let (n, v) = header_name_value(h);
        if names_equal(n, name) {
            line_values(n, v).first().map(|s| s.to_string())
        } else {
            None
        }
    })
}

/// All values of header `name`, in order (list headers split at commas).
pub fn headers_all(headers: &Headers, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for h in headers.iter() {
        let (n, v) = header_name_value(h);
        if names_equal(n, name) {
            out.extend(line_values(n, v).into_iter().map(str::to_string));
        }
    }
    out
}

/// Removes every occurrence of header `name`.
pub fn remove_header(headers: &mut Headers, name: &str) {
    headers.retain(|h| !names_equal(header_name_value(h).0, name));
}

/// Replaces header `name` by a single header with `value` (at the position of its first
/// occurrence), or appends it when absent.
pub fn set_header(headers: &mut Headers, name: &str, value: &str) {
    let new = make_header(name, value);
    let mut replaced = false;
    let old: Vec<Header> = std::mem::take(headers).into();
    let mut out = Vec::with_capacity(old.len() + 1);
    for h in old {
        if names_equal(header_name_value(&h).0, name) {
            if !replaced {
                out.push(new.clone());
                replaced = true;
            }
        } else {
            out.push(h);
        }
    }
    if !replaced {
        out.push(new);
    }
    *headers = out.into();
}

/// Inserts a header before all others (e.g. a new top Via or a Record-Route).
pub fn prepend_header(headers: &mut Headers, name: &str, value: &str) {
    let old: Vec<Header> = std::mem::take(headers).into();
    let mut out = Vec::with_capacity(old.len() + 1);
    out.push(make_header(name, value));
    out.extend(old);
    *headers = out.into();
}

/// Call-ID value.
pub fn call_id(headers: &Headers) -> Option<String> {
    header(headers, "Call-ID").filter(|v| !v.is_empty())
}

/// CSeq number and method. `None` if absent, malformed or an unknown method.
pub fn cseq(headers: &Headers) -> Option<(u32, Method)> {
    let value = header(headers, "CSeq")?;
    let mut parts = value.split_whitespace();
    let num = parts.next()?.parse::<u32>().ok()?;
    let method = Method::from_str(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((num, method))
}

/// The header-parameter part of a From/To/Contact value: what follows `>` of a name-addr, or the
/// first `;` of a bare addr-spec (RFC 3261 §20: bare URI parameters belong to the header).
fn header_params(value: &str) -> &str {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, ch) in value.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_quotes = false;
            }
            continue;
        }
        match ch {
            '"' => in_quotes = true,
            '<' => {
                return match value[i..].find('>') {
                    Some(end) => &value[i + end + 1..],
                    None => "",
                }
            }
            ';' => return &value[i..],
            _ => {}
        }
    }
    ""
}

/// Looks up `name` in a `;a=b;c` parameter list. `Some(None)` = present without value.
pub fn find_param(params: &str, name: &str) -> Option<Option<String>> {
    split_outside_quotes(params, ';')
        .into_iter()
        .filter_map(|p| {
            let p = p.trim();
            if p.is_empty() {
                return None;
            }
            match p.split_once('=') {
                Some((k, v)) => Some((k.trim(), Some(v.trim().trim_matches('"').to_string()))),
                None => Some((p, None)),
            }
        })
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The `tag` parameter of a From/To header value.
pub fn tag_of(value: &str) -> Option<String> {
    find_param(header_params(value), "tag")
        .flatten()
        .filter(|t| !t.is_empty())
}

/// From tag.
pub fn from_tag(headers: &Headers) -> Option<String> {
    header(headers, "From").and_then(|v| tag_of(&v))
}

/// To tag.
pub fn to_tag(headers: &Headers) -> Option<String> {
    header(headers, "To").and_then(|v| tag_of(&v))
}

/// The URI inside a name-addr (`"Bob" <sip:b@h>;tag=1` → `sip:b@h`) or bare addr-spec.
pub fn addr_uri(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(start) = value.find('<') {
        let rest = value.get(start + 1..)?;
        let end = rest.find('>')?;
        let inner = rest[..end].trim();
        return (!inner.is_empty()).then(|| inner.to_string());
    }
    let uri = value.split(';').next()?.trim();
    (!uri.is_empty()).then(|| uri.to_string())
}

/// Parsed pieces of one Via value (`SIP/2.0/UDP host:port;branch=..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaParts<'a> {
    /// Transport token, e.g. `UDP`.
    pub transport: &'a str,
    /// sent-by, e.g. `10.0.0.1:5060`.
    pub sent_by: &'a str,
    /// The `;...` parameter list (starting with `;` or empty).
    pub params: &'a str,
}

/// Splits a single Via value. `None` if the sent-protocol is not `SIP/2.0/<transport>`.
pub fn via_parts(via: &str) -> Option<ViaParts<'_>> {
    let via = via.trim();
    let (head, params) = match via.find(';') {
        Some(i) => (&via[..i], &via[i..]),
        None => (via, ""),
    };
    let (protocol, sent_by) = head.trim().split_once(|c: char| c.is_ascii_whitespace())?;
    let mut proto = protocol.split('/').map(str::trim);
    let (name, version, transport) = (proto.next()?, proto.next()?, proto.next()?);
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || transport.is_empty() {
        return None;
    }
    let sent_by = sent_by.trim();
    if sent_by.is_empty() {
        return None;
    }
    Some(ViaParts {
        transport,
        sent_by,
        params,
    })
}

/// Host part of a sent-by / hostport (`[::1]:5060` → `::1`, `a.b:5060` → `a.b`).
fn host_of(hostport: &str) -> &str {
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    hostport.split(':').next().unwrap_or(hostport)
}

/// Top Via value.
pub fn top_via(headers: &Headers) -> Option<String> {
    header(headers, "Via")
}

/// `branch` parameter of the top Via.
pub fn top_via_branch(headers: &Headers) -> Option<String> {
    let via = top_via(headers)?;
    let parts = via_parts(&via)?;
    find_param(parts.params, "branch")
        .flatten()
        .filter(|b| !b.is_empty())
}

/// Fills `received` (RFC 3261 §18.2.1) and `rport` (RFC 3581 §4) into the top Via for a request
/// that arrived from `source`. Returns false if there is no parseable top Via.
pub fn add_received_rport(headers: &mut Headers, source: SocketAddr) -> bool {
    let Some(via) = top_via(headers) else {
        return false;
    };
    let Some(parts) = via_parts(&via) else {
        return false;
    };
    let host_matches = IpAddr::from_str(host_of(parts.sent_by)).ok() == Some(source.ip());
    let mut has_rport = false;
    let mut params: Vec<String> = Vec::new();
    for p in split_outside_quotes(parts.params, ';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let key = p.split('=').next().unwrap_or(p).trim();
        if key.eq_ignore_ascii_case("received") {
            continue; // re-added below with what we actually observed
        }
        if key.eq_ignore_ascii_case("rport") {
            has_rport = true;
            params.push(format!("rport={}", source.port()));
            continue;
        }
        params.push(p.to_string());
    }
    // RFC 3581: with rport the received parameter is added even when the address matches.
    if !host_matches || has_rport {
        params.push(format!("received={}", source.ip()));
    }
    let mut new_via = format!("SIP/2.0/{} {}", parts.transport, parts.sent_by);
    for p in params {
        new_via.push(';');
        new_via.push_str(&p);
    }
    replace_top_via(headers, &new_via);
    true
}

/// Replaces the first Via value (splitting a combined line if needed).
pub fn replace_top_via(headers: &mut Headers, new_via: &str) {
    let old: Vec<Header> = std::mem::take(headers).into();
    let mut out = Vec::with_capacity(old.len() + 1);
    let mut done = false;
    for h in old {
        let (n, v) = header_name_value(&h);
        if !done && names_equal(n, "Via") {
            done = true;
            let values = line_values(n, v);
            out.push(make_header("Via", new_via));
            for rest in values.iter().skip(1) {
                out.push(make_header("Via", rest));
            }
        } else {
            out.push(h);
        }
    }
    *headers = out.into();
}

/// User part of a SIP URI (`sip:1001@host` → `1001`).
pub fn uri_user(uri: &rsip::Uri) -> Option<String> {
    uri.user().filter(|u| !u.is_empty()).map(str::to_string)
}

/// Max-Forwards value.
pub fn max_forwards(headers: &Headers) -> Option<u32> {
    header(headers, "Max-Forwards").and_then(|v| v.trim().parse().ok())
}

/// Standard reason phrase for a status code (RFC 3261 §21 and extensions), `""` if unknown.
pub fn standard_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => "",
    }
}

/// A status code carrying `reason`: the well-known `rsip` variant when `reason` is the standard
/// phrase (so `StatusCode::OK` comparisons keep working), `StatusCode::Other` otherwise.
pub fn status(code: u16, reason: &str) -> StatusCode {
    let known = StatusCode::from(code);
    let standard = standard_reason(code);
    if !matches!(known, StatusCode::Other(..))
        && (reason.eq_ignore_ascii_case(standard) || reason.is_empty())
    {
        known
    } else {
        StatusCode::Other(code, reason.to_string())
    }
}

/// The reason phrase that [`to_bytes`] prints for a status code.
pub fn reason_phrase(status: &StatusCode) -> Cow<'_, str> {
    match status {
        StatusCode::Other(_, reason) => Cow::Borrowed(reason.as_str()),
        other => Cow::Borrowed(standard_reason(other.code())),
    }
}

/// Serialises a message for the wire. The `Content-Length` is set to the body length (replacing
/// any existing value at its position, appended otherwise); the body is written byte for byte.
pub fn to_bytes(msg: &SipMessage) -> bytes::Bytes {
    use std::fmt::Write as _;
    let (headers, body) = match msg {
        SipMessage::Request(r) => (&r.headers, &r.body),
        SipMessage::Response(r) => (&r.headers, &r.body),
    };
    let mut text = String::with_capacity(512);
    // Writing into a String cannot fail.
    let _ = match msg {
        SipMessage::Request(r) => write!(text, "{} {} SIP/2.0\r\n", r.method, r.uri),
        SipMessage::Response(r) => write!(
            text,
            "SIP/2.0 {} {}\r\n",
            r.status_code.code(),
            reason_phrase(&r.status_code)
        ),
    };
    let mut wrote_length = false;
    for h in headers.iter() {
        let (n, v) = header_name_value(h);
        if names_equal(n, "Content-Length") {
            if !wrote_length {
                let _ = write!(text, "Content-Length: {}\r\n", body.len());
                wrote_length = true;
            }
            continue;
        }
        let _ = write!(text, "{}: {}\r\n", n, v);
    }
    if !wrote_length {
        let _ = write!(text, "Content-Length: {}\r\n", body.len());
    }
    text.push_str("\r\n");
    let mut out = text.into_bytes();
    out.extend_from_slice(body);
    bytes::Bytes::from(out)
}

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
/// §18.3; a longer body is truncated). Tolerated: leading blank lines, bare-LF line ends, folded
/// header lines, compact header names (normalised to the long form) and comma-combined Via / Route /
/// Record-Route / Contact lines (split into one header each).
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
    text.push_str(start_line);
    text.push_str("\r\n");
    for line in lines.iter().skip(1) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ParseError::new("Malformed header line"))?;
        let name = name.trim();
        if !is_token(name) {
            return Err(ParseError::new("Malformed header name"));
        }
        let name = expand_compact(name);
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
    let via = top_via(headers).unwrap_or_default();
    if via_parts(&via).is_none() {
        return Err(ParseError::new("Malformed Via"));
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
    Skip { len: usize, ping: bool },
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
                match value.trim().parse::<usize>() {
                    Ok(n) => length = Some(n),
                    Err(_) => return StreamFrame::Invalid,
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
        return Err(ParseError::new("Unsupported SIP version"));
    }
    Method::from_str(method)
        .map_err(|_| ParseError::new(format!("Unsupported method {method}")))?;
    rsip::Uri::try_from(*uri).map_err(|_| ParseError::new("Malformed Request-URI"))?;
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

/// Builds a response to `req`: all Via values in order, From, To (with `;tag=to_tag` added if
/// the To has no tag yet), Call-ID, CSeq and `Content-Length: 0`. `reason` may be any phrase.
pub fn response(req: &Request, code: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for via in headers_all(&req.headers, "Via") {
        headers.push(make_header("Via", &via));
    }
    if let Some(from) = header(&req.headers, "From") {
        headers.push(make_header("From", &from));
    }
    if let Some(to) = header(&req.headers, "To") {
        let to = match to_tag {
            Some(tag) if tag_of(&to).is_none() => format!("{to};tag={tag}"),
            _ => to,
        };
        headers.push(make_header("To", &to));
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = header(&req.headers, name) {
            headers.push(make_header(name, &v));
        }
    }
    headers.push(make_header("Content-Length", "0"));
    Response {
        status_code: status(code, reason),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI, top Via only
/// (same branch), From and Call-ID of the INVITE, To from the response, CSeq number with method
/// ACK, the INVITE's Route headers.
pub fn ack_for_non2xx(invite: &Request, resp: &Response) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = top_via(&invite.headers) {
        headers.push(make_header("Via", &via));
    }
    for route in headers_all(&invite.headers, "Route") {
        headers.push(make_header("Route", &route));
    }
    headers.push(make_header("Max-Forwards", "70"));
    if let Some(from) = header(&invite.headers, "From") {
        headers.push(make_header("From", &from));
    }
    if let Some(to) = header(&resp.headers, "To").or_else(|| header(&invite.headers, "To")) {
        headers.push(make_header("To", &to));
    }
    if let Some(cid) = header(&invite.headers, "Call-ID") {
        headers.push(make_header("Call-ID", &cid));
    }
    let num = cseq(&invite.headers).map(|(n, _)| n).unwrap_or(1);
    headers.push(make_header("CSeq", &format!("{num} ACK")));
    headers.push(make_header("Content-Length", "0"));
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// A CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, top Via (same branch), From, To,
/// Call-ID, CSeq number with method CANCEL, and the INVITE's Route headers.
pub fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::default();
    if let Some(via) = top_via(&invite.headers) {
        headers.push(make_header("Via", &via));
    }
    for route in headers_all(&invite.headers, "Route") {
        headers.push(make_header("Route", &route));
    }
    headers.push(make_header("Max-Forwards", "70"));
    for name in ["From", "To", "Call-ID"] {
        if let Some(v) = header(&invite.headers, name) {
            headers.push(make_header(name, &v));
        }
    }
    let num = cseq(&invite.headers).map(|(n, _)| n).unwrap_or(1);
    headers.push(make_header("CSeq", &format!("{num} CANCEL")));
    headers.push(make_header("Content-Length", "0"));
    Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Deterministic generator of branches, tags and Call-IDs (sans-IO: no clock, no OS randomness).
/// Outputs for one generator never repeat (a bijective mix of seed and counter); give each
/// generator in a process a different seed (e.g. from the driver's random source at startup).
#[derive(Debug, Clone)]
pub struct IdGen {
    seed: u64,
    counter: u64,
}

/// SplitMix64 finaliser: a bijection on u64 with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl IdGen {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    fn next(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        mix(self.seed ^ mix(self.counter))
    }

    /// A new RFC 3261 branch (`z9hG4bK` magic cookie + 16 hex digits).
    pub fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.next())
    }

    /// A new From/To tag.
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.next())
    }

    /// A new Call-ID `<32 hex>@host`.
    pub fn call_id(&mut self, host: &str) -> String {
        let (a, b) = (self.next(), self.next());
        format!("{a:016x}{b:016x}@{host}")
    }
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addr_uri_and_params() {
        assert_eq!(
            addr_uri("\"Agent\" <sip:1001@h>;tag=x").as_deref(),
            Some("sip:1001@h")
        );
        assert_eq!(addr_uri("sip:1001@h;tag=x").as_deref(), Some("sip:1001@h"));
        assert_eq!(
            find_param("<sip:a@b>;expires=60;q=0.5", "EXPIRES"),
            Some(Some("60".to_string()))
        );
        assert_eq!(
            find_param("SIP/2.0/UDP h;branch=z9hG4bKx;rport", "rport"),
            Some(None)
        );
    }

    const INVITE: &str = "INVITE sip:1001@127.0.0.1 SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport, SIP/2.0/TCP proxy.example:5070;branch=z9hG4bKp\r\n\
        Max-Forwards: 70\r\n\
        f: \"Alice <x>\" <sip:alice@example.com>;tag=ft1\r\n\
        To: <sip:1001@127.0.0.1>\r\n\
        i: call-1@example.com\r\n\
        CSeq: 7 INVITE\r\n\
        Subject: folded\r\n  line\r\n\
        l: 5\r\n\
        \r\n\
        v=0\r\nEXTRA";

    #[test]
    fn parse_normalises_compact_folded_and_combined() {
        let msg = parse(INVITE.as_bytes()).unwrap();
        let SipMessage::Request(req) = msg else {
            panic!("not a request")
        };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(headers_all(&req.headers, "Via").len(), 2);
        // Two separate typed Via headers after normalisation.
        assert_eq!(
            req.headers
                .iter()
                .filter(|h| matches!(h, Header::Via(_)))
                .count(),
            2
        );
        assert_eq!(top_via_branch(&req.headers).as_deref(), Some("z9hG4bKabc"));
        assert_eq!(call_id(&req.headers).as_deref(), Some("call-1@example.com"));
        assert_eq!(header(&req.headers, "i"), call_id(&req.headers));
        assert_eq!(cseq(&req.headers), Some((7, Method::Invite)));
        assert_eq!(from_tag(&req.headers).as_deref(), Some("ft1"));
        assert_eq!(to_tag(&req.headers), None);
        assert_eq!(
            header(&req.headers, "subject").as_deref(),
            Some("folded line")
        );
        assert_eq!(max_forwards(&req.headers), Some(70));
        assert_eq!(uri_user(&req.uri).as_deref(), Some("1001"));
        // Body truncated to Content-Length.
        assert_eq!(req.body, b"v=0\r\n");
    }

    #[test]
    fn parse_gives_400_reasons_without_panicking() {
        assert_eq!(parse(b"").unwrap_err().reason, "Empty message");
        assert_eq!(parse(b"\r\n\r\n").unwrap_err().reason, "Empty message");
        assert_eq!(
            parse(b"garbage").unwrap_err().reason,
            "Malformed request line"
        );
        let no_call_id = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
            From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(
            parse(no_call_id.as_bytes()).unwrap_err().reason,
            "Missing Call-ID"
        );
        let bad_cseq = no_call_id.replace("CSeq: 1 OPTIONS", "Call-ID: x\r\nCSeq: 1 INVITE");
        assert_eq!(
            parse(bad_cseq.as_bytes()).unwrap_err().reason,
            "CSeq method does not match request method"
        );
        let short = no_call_id.replace(
            "CSeq: 1 OPTIONS",
            "Call-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 10",
        );
        assert_eq!(
            parse(short.as_bytes()).unwrap_err().reason,
            "Body shorter than Content-Length"
        );
        assert!(parse(b"FOO sip:a@b SIP/2.0\r\n\r\n")
            .unwrap_err()
            .reason
            .contains("FOO"));
        assert_eq!(
            parse(b"SIP/2.0 2000 OK\r\n\r\n").unwrap_err().reason,
            "Malformed status line"
        );
    }

    #[test]
    fn parse_survives_mutations() {
        // Cheap deterministic fuzzing: mutate a valid message, parse must never panic, and any
        // success must still satisfy the mandatory-header contract.
        let base = INVITE.as_bytes().to_vec();
        let mut s: u64 = 42;
        let mut rnd = move || {
            s = mix(s);
            s as usize
        };
        let specials = b";:,<>\"[] =\r\n/@\t";
        for _ in 0..20_000 {
            let mut m = base.clone();
            for _ in 0..(1 + rnd() % 4) {
                if m.is_empty() {
                    break;
                }
                let p = rnd() % m.len();
                match rnd() % 4 {
                    0 => m[p] = (rnd() % 256) as u8,
                    1 => m.truncate(p),
                    2 => {
                        m.remove(p);
                    }
                    _ => m.insert(p, specials[rnd() % specials.len()]),
                }
            }
            if let Ok(msg) = parse(&m) {
                let h = match &msg {
                    SipMessage::Request(r) => &r.headers,
                    SipMessage::Response(r) => &r.headers,
                };
                assert!(call_id(h).is_some() && cseq(h).is_some());
                let _ = to_bytes(&msg);
            }
        }
    }

    #[test]
    fn response_copies_headers_and_keeps_custom_reason() {
        let SipMessage::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        let resp = response(&req, 403, "Built-In-Bridge off", Some("tt9"));
        let bytes = to_bytes(&SipMessage::Response(resp.clone()));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.starts_with("SIP/2.0 403 Built-In-Bridge off\r\n"),
            "{text}"
        );
        assert_eq!(headers_all(&resp.headers, "Via").len(), 2);
        assert_eq!(to_tag(&resp.headers).as_deref(), Some("tt9"));
        assert!(text.contains("\r\nContent-Length: 0\r\n\r\n"));
        // Round trip keeps the phrase; standard phrases map to rsip's variants.
        let back = parse(&bytes).unwrap();
        let SipMessage::Response(back) = back else {
            panic!()
        };
        assert_eq!(
            back.status_code,
            StatusCode::Other(403, "Built-In-Bridge off".into())
        );
        let ok = response(&req, 480, "Temporarily Unavailable", None);
        assert_eq!(ok.status_code, StatusCode::TemporarilyUnavailable);
        let bytes = to_bytes(&SipMessage::Response(ok));
        assert!(bytes.starts_with(b"SIP/2.0 480 Temporarily Unavailable\r\n"));
        // An existing To tag is not doubled.
        let mut req2 = req.clone();
        set_header(&mut req2.headers, "To", "<sip:1001@127.0.0.1>;tag=x");
        let r2 = response(&req2, 200, "OK", Some("y"));
        assert_eq!(to_tag(&r2.headers).as_deref(), Some("x"));
    }

    #[test]
    fn to_bytes_fixes_content_length() {
        let SipMessage::Request(mut req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        req.body = b"hello world".to_vec();
        let bytes = to_bytes(&SipMessage::Request(req));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(text.matches("Content-Length").count(), 1);
        assert!(text.contains("Content-Length: 11\r\n"));
        assert!(text.ends_with("\r\n\r\nhello world"));
        assert!(text.starts_with("INVITE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP"));
    }

    #[test]
    fn header_set_remove_prepend() {
        let mut h = Headers::default();
        set_header(&mut h, "X-Foo", "1");
        set_header(&mut h, "x-foo", "2");
        assert_eq!(headers_all(&h, "X-FOO"), vec!["2".to_string()]);
        set_header(&mut h, "Call-ID", "abc");
        assert!(h.iter().any(|x| matches!(x, Header::CallId(_))));
        prepend_header(&mut h, "Via", "SIP/2.0/UDP a;branch=z9hG4bKq");
        assert!(matches!(h.iter().next(), Some(Header::Via(_))));
        remove_header(&mut h, "x-foo");
        assert_eq!(header(&h, "X-Foo"), None);
        assert_eq!(header(&h, "i").as_deref(), Some("abc"));
    }

    #[test]
    fn received_and_rport() {
        let SipMessage::Request(mut req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        add_received_rport(&mut req.headers, "192.0.2.7:40000".parse().unwrap());
        let via = top_via(&req.headers).unwrap();
        assert_eq!(
            via,
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=192.0.2.7"
        );
        // Second Via untouched.
        assert_eq!(
            headers_all(&req.headers, "Via")[1],
            "SIP/2.0/TCP proxy.example:5070;branch=z9hG4bKp"
        );
        // Same address, no rport: nothing added.
        let mut h = Headers::default();
        set_header(&mut h, "Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1");
        add_received_rport(&mut h, "10.0.0.1:5060".parse().unwrap());
        assert_eq!(
            top_via(&h).unwrap(),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"
        );
    }

    #[test]
    fn stream_framing_by_content_length() {
        const MAX: usize = 65_535;
        let msg = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 4\r\n\r\nbody";
        assert_eq!(frame_stream(msg, MAX), StreamFrame::Message(msg.len()));
        assert_eq!(
            frame_stream(&msg[..msg.len() - 1], MAX),
            StreamFrame::Incomplete
        );
        assert_eq!(
            frame_stream(b"\r\n\r\nOPTIONS", MAX),
            StreamFrame::Skip { len: 4, ping: true }
        );
        assert_eq!(
            frame_stream(b"\r\nOPTIONS", MAX),
            StreamFrame::Skip {
                len: 2,
                ping: false
            }
        );
        assert_eq!(
            frame_stream(b"\r\n", MAX),
            StreamFrame::Incomplete,
            "half a ping"
        );
        assert_eq!(
            frame_stream(b"\r\n\r\n", MAX),
            StreamFrame::Skip { len: 4, ping: true }
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:x SIP/2.0\r\n\r\n", MAX),
            StreamFrame::Invalid,
            "no Content-Length on a stream transport"
        );
        assert_eq!(
            frame_stream(b"OPTIONS sip:x SIP/2.0\r\nl: x\r\n\r\n", MAX),
            StreamFrame::Invalid
        );
        assert_eq!(
            frame_stream(
                b"OPTIONS sip:x SIP/2.0\r\nl: 18446744073709551615\r\n\r\n",
                MAX
            ),
            StreamFrame::Invalid,
            "a huge Content-Length is refused, not an overflow"
        );
        let mut two = msg.to_vec();
        two.extend_from_slice(msg);
        assert_eq!(frame_stream(&two, MAX), StreamFrame::Message(msg.len()));
        // The framed message parses.
        let inv = INVITE.replace("EXTRA", "");
        let n = match frame_stream(inv.as_bytes(), MAX) {
            StreamFrame::Message(n) => n,
            other => panic!("{other:?}"),
        };
        assert!(parse(&inv.as_bytes()[..n]).is_ok());
    }

    #[test]
    fn ids_are_unique_and_deterministic() {
        let mut a = IdGen::new(7);
        let mut b = IdGen::new(7);
        assert_eq!(a.branch(), b.branch());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let br = a.branch();
            assert!(br.starts_with("z9hG4bK"));
            assert!(seen.insert(br));
        }
        assert!(a.call_id("h").ends_with("@h"));
        assert_ne!(a.tag(), a.tag());
        assert_ne!(IdGen::new(1).branch(), IdGen::new(2).branch());
    }

    #[test]
    fn ack_and_cancel_builders() {
        let SipMessage::Request(inv) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        let resp = response(&inv, 486, "Busy Here", Some("tt"));
        let ack = ack_for_non2xx(&inv, &resp);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, inv.uri);
        assert_eq!(headers_all(&ack.headers, "Via").len(), 1);
        assert_eq!(top_via_branch(&ack.headers).as_deref(), Some("z9hG4bKabc"));
        assert_eq!(to_tag(&ack.headers).as_deref(), Some("tt"));
        assert_eq!(cseq(&ack.headers), Some((7, Method::Ack)));
        let cancel = cancel_for(&inv);
        assert_eq!(cseq(&cancel.headers), Some((7, Method::Cancel)));
        assert_eq!(
            top_via_branch(&cancel.headers).as_deref(),
            Some("z9hG4bKabc")
        );
        assert!(parse(&to_bytes(&SipMessage::Request(cancel))).is_ok());
    }
}
