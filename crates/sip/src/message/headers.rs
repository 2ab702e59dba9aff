//! Header access by name (compact forms understood, comma-combined list headers split), building
//! headers, From/To tags, name-addr URIs and Via manipulation.

use std::convert::TryInto;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rsip::prelude::UntypedHeader;
use rsip::{Header, Headers, Method};

/// Headers whose comma-separated values are split into one value each (RFC 3261 §7.3.1 allows
/// combining them on one line; order matters for Via and routing).
const LIST_HEADERS: &[&str] = &["Via", "Route", "Record-Route", "Contact", "Path"];

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

pub(super) fn names_equal(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

pub(super) fn is_list_header(name: &str) -> bool {
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
pub(super) fn line_values<'a>(name: &str, value: &'a str) -> Vec<&'a str> {
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
    match first_unquoted(value, &['<', ';']) {
        Ok(Some((i, '<'))) => match value[i..].find('>') {
            Some(end) => &value[i + end + 1..],
            None => "",
        },
        Ok(Some((i, _))) => &value[i..],
        // No `<` or `;` outside quotes, or an unterminated quoted string: no parameters.
        _ => "",
    }
}

/// The first of `targets` outside a quoted string (RFC 3261 §25.1 quoted-pair aware), with its
/// position. `Err(())` when a quoted string is not terminated and no target came before it.
fn first_unquoted(value: &str, targets: &[char]) -> Result<Option<(usize, char)>, ()> {
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
        if ch == '"' {
            in_quotes = true;
        } else if targets.contains(&ch) {
            return Ok(Some((i, ch)));
        }
    }
    if in_quotes {
        Err(())
    } else {
        Ok(None)
    }
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

/// Where a name-addr's `<` is: the first `<` outside a quoted display name (`"A <x>" <sip:a@h>`
/// has its URI after the second `<`). `Err(())` when a quoted string is not terminated.
pub(super) fn angle_start(value: &str) -> Result<Option<usize>, ()> {
    first_unquoted(value, &['<']).map(|found| found.map(|(i, _)| i))
}

/// The URI inside a name-addr (`"Bob" <sip:b@h>;tag=1` → `sip:b@h`) or bare addr-spec. A `<`
/// inside the quoted display name is part of the name.
pub fn addr_uri(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(start) = angle_start(value).ok()? {
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
    // sent-protocol = name SLASH version SLASH transport, SLASH = SWS "/" SWS (RFC 3261 §25.1;
    // RFC 4475 §3.1.1.1 puts LWS around the slashes), then LWS and sent-by.
    let mut proto = head.trim().splitn(3, '/').map(str::trim);
    let (name, version, rest) = (proto.next()?, proto.next()?, proto.next()?);
    let (transport, sent_by) = rest.split_once(|c: char| c.is_ascii_whitespace())?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    };
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || !token(transport) {
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
    // `parse` escapes `;` and `.` of a Request-URI's user part for rsip: give them back.
    let user = uri.user().filter(|u| !u.is_empty())?;
    Some(
        user.replace("%3B", ";")
            .replace("%3b", ";")
            .replace("%2E", ".")
            .replace("%2e", "."),
    )
}

/// Max-Forwards value.
pub fn max_forwards(headers: &Headers) -> Option<u32> {
    header(headers, "Max-Forwards").and_then(|v| v.trim().parse().ok())
}
