//! The RFC 4475 checks [`super::parse`] makes beyond what `rsip` enforces: the Request-URI's scheme
//! and characters, headers that may appear once only, every Via's form, balanced quotes in From
//! and To. Each returns the [`ParseError`] (with its status code) a request gets for it.

use std::borrow::Cow;

use super::headers::{angle_start, split_outside_quotes, via_parts};
use super::parse::ParseError;

/// Headers that may appear once only (RFC 3261 §7.3.1 and §20; RFC 4475 §3.3.8, §3.3.9).
pub(super) const SINGLE: &[&str] = &[
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
];

/// Characters no URI holds unescaped (RFC 3986 §2; RFC 4475 §3.1.2.7: `<sip:..>` as Request-URI).
const NOT_IN_URI: &[char] = &['<', '>', '"', '{', '}', '|', '\\', '^'];

/// The Request-URI: a syntactically valid scheme (RFC 3986 §3.1) and no character a URI cannot
/// hold (else 400), and a scheme bibridge serves, `sip` or `sips` (else 416, RFC 3261 §8.2.2.1).
pub(super) fn request_uri(uri: &str) -> Result<(), ParseError> {
    let scheme = uri.split(':').next().unwrap_or_default();
    let scheme_ok = uri.contains(':')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || uri.contains(NOT_IN_URI) || uri.contains(|c: char| c.is_control()) {
        return Err(ParseError::new("Malformed Request-URI"));
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return Err(ParseError::with_code(416, "Unsupported URI Scheme"));
    }
    Ok(())
}

/// `rsip` reads a `;` in a SIP URI's user part as the start of URI parameters, and ends a user
/// part at its first `.`, but RFC 3261 allows both there (user-unreserved and unreserved; RFC
/// 4475 §3.1.1.9 `sip:user;par=u%40example.net@example.com`). Escape them (`%3B`, `%2E`, which
/// compare equal, RFC 3261 §19.1.4) before `rsip` sees the request line; [`super::uri_user`]
/// gives them back.
pub(super) fn escape_user_part(start_line: &str) -> Cow<'_, str> {
    let mut parts = start_line.splitn(3, ' ');
    let (Some(method), Some(uri), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Cow::Borrowed(start_line);
    };
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Cow::Borrowed(start_line);
    };
    match rest.find('@') {
        Some(at) if rest[..at].contains([';', '.']) => Cow::Owned(format!(
            "{method} {scheme}:{}{} {version}",
            rest[..at].replace(';', "%3B").replace('.', "%2E"),
            &rest[at..]
        )),
        _ => Cow::Borrowed(start_line),
    }
}

/// One Via value: `SIP/2.0/<transport> <sent-by>` and no empty parameter (RFC 4475 §3.1.2.1).
pub(super) fn via(value: &str) -> Result<(), ParseError> {
    let ok = via_parts(value).is_some_and(|p| {
        split_outside_quotes(p.params, ';')
            .iter()
            .skip(1)
            .all(|q| !q.trim().is_empty())
    });
    if ok {
        Ok(())
    } else {
        Err(ParseError::new("Malformed Via"))
    }
}

/// A From or To value: quotes balanced, and a URI with a scheme, inside the one `<...>` of a
/// name-addr or as a bare addr-spec (RFC 3261 §20.10; RFC 4475 §3.1.2.6).
pub(super) fn name_addr(name: &str, value: &str) -> Result<(), ParseError> {
    let bad = || ParseError::new(format!("Malformed {name}"));
    let uri = match angle_start(value).map_err(|()| bad())? {
        Some(i) => {
            let rest = &value[i + 1..];
            let end = rest.find('>').ok_or_else(bad)?;
            // Whatever follows `>` is header parameters: quotes there must balance too.
            angle_start(&rest[end + 1..]).map_err(|()| bad())?;
            &rest[..end]
        }
        None => value.split(';').next().unwrap_or_default(),
    };
    if uri.trim().contains(':') {
        Ok(())
    } else {
        Err(bad())
    }
}
