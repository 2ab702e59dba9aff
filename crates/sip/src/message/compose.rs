//! Composing messages: status codes and reason phrases, wire serialisation ([`to_bytes`]),
//! responses, the ACK for a non-2xx and CANCEL.

use std::borrow::Cow;

use rsip::{Headers, Method, Request, Response, SipMessage, StatusCode};

use super::headers::{
    cseq, header, header_name_value, headers_all, make_header, names_equal, tag_of, top_via,
};

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
