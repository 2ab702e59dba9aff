//! Contact and Expires header grammar for REGISTER: contact elements, `delta-seconds`,
//! `qvalue` and the URI comparison key (RFC 3261 §10.3, §19.1.4, §20.10).

/// A Contact header element after parsing.
#[derive(Debug)]
pub(super) struct ContactSpec {
    pub(super) uri: String,
    pub(super) key: String,
    pub(super) expires: Option<u32>,
    pub(super) q: Option<f32>,
}

#[derive(Debug)]
pub(super) enum ContactElem {
    Wildcard,
    Contact(ContactSpec),
}

/// `delta-seconds`: digits only; values beyond 2^32-1 saturate (RFC 3261 §20.19, §20.10).
pub(super) fn parse_delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits, so the only possible parse error is overflow.
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` (RFC 3261 §25.1).
fn parse_qvalue(s: &str) -> Option<f32> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match int {
        "0" => s.parse().ok(),
        "1" if frac.bytes().all(|b| b == b'0') => Some(1.0),
        _ => None,
    }
}

/// Split a header value on commas that are not inside a quoted string or `<...>`.
pub(super) fn split_list(value: &str) -> Vec<&str> {
    crate::message::split_outside_quotes(value, ',')
        .into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Split on `;` outside quoted strings (for Contact header parameters).
fn split_params(s: &str) -> Result<Vec<&str>, &'static str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == ';' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    if in_quotes {
        return Err("unterminated quoted string in Contact");
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Parse one Contact element: `*`, `["Name"] <uri>;params`, `Name <uri>;params` or a bare
/// `uri;params` (where, per §20.10, the `;params` belong to the header, not the URI).
pub(super) fn parse_contact(raw: &str) -> Result<ContactElem, &'static str> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(ContactElem::Wildcard);
    }
    let (uri, params) = match find_unquoted(raw, '<') {
        Some(lt) => {
            let display = raw[..lt].trim();
            if display.starts_with('"') && !(display.len() >= 2 && display.ends_with('"')) {
                return Err("malformed display name in Contact");
            }
            let after = &raw[lt + 1..];
            let gt = after.find('>').ok_or("unterminated '<' in Contact")?;
            (after[..gt].trim(), &after[gt + 1..])
        }
        None => match raw.find(';') {
            Some(semi) => (raw[..semi].trim(), &raw[semi..]),
            None => (raw, ""),
        },
    };
    if !has_scheme(uri) {
        return Err("Contact is not a URI");
    }
    let params = params.trim();
    let mut expires = None;
    let mut q = None;
    if !params.is_empty() {
        let rest = params
            .strip_prefix(';')
            .ok_or("unexpected text after Contact URI")?;
        for p in split_params(rest)? {
            let (name, value) = match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p.trim(), None),
            };
            if name.is_empty() {
                return Err("empty Contact parameter");
            }
            if name.eq_ignore_ascii_case("expires") {
                let v = value.and_then(parse_delta_seconds);
                expires = Some(v.ok_or("malformed Contact expires parameter")?);
            } else if name.eq_ignore_ascii_case("q") {
                let v = value.and_then(parse_qvalue);
                q = Some(v.ok_or("malformed Contact q parameter")?);
            }
        }
    }
    Ok(ContactElem::Contact(ContactSpec {
        uri: uri.to_owned(),
        key: uri_key(uri),
        expires,
        q,
    }))
}

fn find_unquoted(s: &str, needle: char) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == needle {
            return Some(i);
        }
    }
    None
}

/// `scheme ":" something`, scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn has_scheme(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.contains(char::is_whitespace)
}

/// Comparison key approximating RFC 3261 §19.1.4 URI equality: scheme and host are
/// case-insensitive, user info is case-sensitive, the port counts as written, and of the URI
/// parameters only those that must match when present in either URI (`transport`, `user`, `ttl`,
/// `method`, `maddr`) are compared, case-insensitively. Escapes are not decoded.
pub(super) fn uri_key(uri: &str) -> String {
    let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
    let rest = rest.split('?').next().unwrap_or_default();
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let mut parts = hostpart.split(';');
    let hostport = parts.next().unwrap_or_default().to_ascii_lowercase();
    let mut params: Vec<String> = parts
        .map(str::to_ascii_lowercase)
        .filter(|p| {
            let name = p.split('=').next().unwrap_or_default();
            matches!(name, "transport" | "user" | "ttl" | "method" | "maddr")
        })
        .collect();
    params.sort();
    format!(
        "{}:{}@{}|{}",
        scheme.to_ascii_lowercase(),
        userinfo,
        hostport,
        params.join(";")
    )
}
