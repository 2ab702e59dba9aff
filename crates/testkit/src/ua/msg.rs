//! Header helpers over rsip's parsed messages.
//!
//! rsip keeps every header line as one (mostly untyped) entry, so these helpers work on the header
//! text: they understand compact header names, comma-separated lists, `<...>` name-addrs and
//! header parameters, which is all a scripted test phone needs. Nothing here panics on bad input.

/// Expands a compact header name (RFC 3261 §7.3.3) to its full form; other names pass through.
fn expand(name: &str) -> &str {
    match name {
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "e" | "E" => "Content-Encoding",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "f" | "F" => "From",
        "s" | "S" => "Subject",
        "k" | "K" => "Supported",
        "t" | "T" => "To",
        "v" | "V" => "Via",
        "o" | "O" => "Event",
        "r" | "R" => "Refer-To",
        "b" | "B" => "Referred-By",
        "u" | "U" => "Allow-Events",
        other => other,
    }
}

/// Splits one header into `(name, value)` using rsip's `Name: value` rendering.
fn name_value(header: &rsip::Header) -> Option<(String, String)> {
    let text = header.to_string();
    let (name, value) = text.split_once(':')?;
    Some((name.trim().to_string(), value.trim().to_string()))
}

/// All header lines named `name` (case-insensitive, compact forms accepted), values in order.
///
/// A line holding a comma-separated list stays one value; see [`header_list`] to split it.
pub fn header_values(headers: &rsip::Headers, name: &str) -> Vec<String> {
    let want = expand(name);
    headers
        .iter()
        .filter_map(name_value)
        .filter(|(n, _)| expand(n).eq_ignore_ascii_case(want))
        .map(|(_, v)| v)
        .collect()
}

/// The first header line named `name`, if any.
pub fn header_value(headers: &rsip::Headers, name: &str) -> Option<String> {
    header_values(headers, name).into_iter().next()
}

/// All entries of a list header (Via, Route, Record-Route, Contact...), lines and commas flattened.
pub fn header_list(headers: &rsip::Headers, name: &str) -> Vec<String> {
    header_values(headers, name)
        .iter()
        .flat_map(|v| split_list(v))
        .collect()
}

/// Splits a header value at top-level commas (not inside quotes or `<...>`).
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for ch in value.chars() {
        if escaped {
            escaped = false;
            cur.push(ch);
            continue;
        }
        match ch {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' if !in_quotes && !in_angle => {
                let item = cur.trim();
                if !item.is_empty() {
                    out.push(item.to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    let item = cur.trim();
    if !item.is_empty() {
        out.push(item.to_string());
    }
    out
}

/// The header-parameter part of a From/To/Contact/Route/Via value (text after the URI).
///
/// In a name-addr the parameters follow `>`; in a bare addr-spec every `;` after the URI starts a
/// header parameter (RFC 3261 §20), which is why the two cases differ.
fn header_params(value: &str) -> &str {
    if let Some(close) = value.rfind('>') {
        value.get(close + 1..).unwrap_or("")
    } else {
        match value.find(';') {
            Some(i) => value.get(i..).unwrap_or(""),
            None => "",
        }
    }
}

/// A header parameter (`;name=value` after the URI), unquoted; `Some("")` for a flag parameter.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    header_params(value).split(';').find_map(|p| {
        let p = p.trim();
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (p, ""),
        };
        k.eq_ignore_ascii_case(name)
            .then(|| v.trim_matches('"').to_string())
    })
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<String> {
    header_param(value, "tag").filter(|t| !t.is_empty())
}

/// The value with its `;tag=...` header parameter removed (used to turn a To/From into a dialog URI).
pub fn strip_tag(value: &str) -> String {
    let params = header_params(value);
    let base_len = value.len() - params.len();
    let base = value.get(..base_len).unwrap_or(value);
    let kept: String = params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("").trim();
            !key.eq_ignore_ascii_case("tag")
        })
        .map(|p| format!(";{p}"))
        .collect();
    format!("{}{}", base.trim_end(), kept)
}

/// The URI inside a name-addr (`"Bob" <sip:b@h>;x` gives `sip:b@h`) or a bare addr-spec.
pub fn uri_of(value: &str) -> String {
    if let (Some(open), Some(close)) = (value.find('<'), value.rfind('>')) {
        if open < close {
            return value.get(open + 1..close).unwrap_or("").trim().to_string();
        }
    }
    value.split(';').next().unwrap_or("").trim().to_string()
}

/// The `branch` parameter of the top Via.
pub fn top_via_branch(headers: &rsip::Headers) -> Option<String> {
    let top = header_list(headers, "Via").into_iter().next()?;
    header_param(&top, "branch").filter(|b| !b.is_empty())
}

/// The CSeq number and method.
pub fn cseq(headers: &rsip::Headers) -> Option<(u32, String)> {
    let v = header_value(headers, "CSeq")?;
    let mut parts = v.split_whitespace();
    let num = parts.next()?.parse().ok()?;
    let method = parts.next()?.to_ascii_uppercase();
    Some((num, method))
}

/// The Call-ID.
pub fn call_id(headers: &rsip::Headers) -> Option<String> {
    header_value(headers, "Call-ID")
}

/// The body as text, cut to Content-Length when that header is present and smaller.
pub fn body_text(headers: &rsip::Headers, body: &[u8]) -> Option<String> {
    let len = header_value(headers, "Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(body.len())
        .min(body.len());
    let text = String::from_utf8_lossy(body.get(..len).unwrap_or(body)).to_string();
    (!text.trim().is_empty()).then_some(text)
}

/// Host and optional port of a SIP URI (`sip:user@host:port;params`, IPv6 in brackets).
pub fn uri_host_port(uri: &str) -> Option<(String, Option<u16>)> {
    let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    // The user part may not contain '@' unescaped, but parameters may: cut them first.
    let rest = rest.split([';', '?']).next().unwrap_or("");
    let hostport = match rest.rfind('@') {
        Some(i) => rest.get(i + 1..)?,
        None => rest,
    };
    if hostport.is_empty() {
        return None;
    }
    if let Some(after_bracket) = hostport.strip_prefix('[') {
        let close = after_bracket.find(']')?;
        let host = after_bracket.get(..close)?.to_string();
        let tail = after_bracket.get(close + 1..)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        return Some((host, port));
    }
    match hostport.split_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((hostport.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn params_and_tags() {
        let v = "\"Bob, Jr\" <sip:bob@h;lr>;tag=abc;x=1";
        assert_eq!(tag_of(v).as_deref(), Some("abc"));
        assert_eq!(uri_of(v), "sip:bob@h;lr");
        assert_eq!(strip_tag(v), "\"Bob, Jr\" <sip:bob@h;lr>;x=1");
        assert_eq!(tag_of("sip:a@b;tag=9"), Some("9".to_string()));
        assert_eq!(uri_of("sip:a@b;tag=9"), "sip:a@b");
        assert_eq!(tag_of("<sip:a@b;tag=uri-param>"), None);
    }

    #[test]
    fn list_split_respects_quotes_and_angles() {
        let l = split_list("<sip:a,b@h;lr>, \"x,y\" <sip:c@d>,sip:e@f");
        assert_eq!(l, vec!["<sip:a,b@h;lr>", "\"x,y\" <sip:c@d>", "sip:e@f"]);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            uri_host_port("sip:1001@127.0.0.1:5080;transport=udp"),
            Some(("127.0.0.1".into(), Some(5080)))
        );
        assert_eq!(
            uri_host_port("<sip:[::1]:5062;lr>"),
            Some(("::1".into(), Some(5062)))
        );
        assert_eq!(
            uri_host_port("sip:example.com"),
            Some(("example.com".into(), None))
        );
        assert_eq!(uri_host_port("sip:a@h:notaport"), None);
    }

    #[test]
    fn compact_headers_are_found() {
        let raw = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 1.2.3.4:5;branch=z9hG4bKx;rport\r\ni: abc\r\nCSeq: 7 invite\r\nl: 0\r\n\r\n";
        let msg = rsip::SipMessage::try_from(raw).unwrap();
        let rsip::SipMessage::Response(r) = msg else {
            panic!("not a response")
        };
        assert_eq!(top_via_branch(&r.headers).as_deref(), Some("z9hG4bKx"));
        assert_eq!(call_id(&r.headers).as_deref(), Some("abc"));
        assert_eq!(cseq(&r.headers), Some((7, "INVITE".to_string())));
    }
}
