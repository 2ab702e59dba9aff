//! Bencode (the encoding of rtpengine's NG control protocol): integers `i42e`, byte strings
//! `4:spam`, lists `l...e` and dictionaries `d...e` with keys in sorted order.

use std::collections::BTreeMap;

/// A bencoded value. Dictionaries are kept sorted, as bencode requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why a buffer is not valid bencode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bencode: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Value {
    /// A byte string from text.
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dictionary from `(key, value)` pairs.
    pub fn dict<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// The value under `key` if this is a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The value as UTF-8 text if it is a byte string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Decodes exactly one value filling the whole buffer.
pub fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
    let (v, rest) = decode_prefix(buf, 0)?;
    if !rest.is_empty() {
        return Err(DecodeError(format!("{} trailing bytes", rest.len())));
    }
    Ok(v)
}

/// Nesting limit: NG replies are two or three levels deep; this only stops hostile input from
/// overflowing the stack.
const MAX_DEPTH: usize = 32;

fn err<T>(m: &str) -> Result<T, DecodeError> {
    Err(DecodeError(m.to_string()))
}

/// Decodes one value at the start of `buf`, returning it and the rest.
pub fn decode_prefix(buf: &[u8], depth: usize) -> Result<(Value, &[u8]), DecodeError> {
    if depth > MAX_DEPTH {
        return err("nested too deeply");
    }
    match buf.first() {
        None => err("unexpected end"),
        Some(b'i') => {
            let end = buf
                .iter()
                .position(|&c| c == b'e')
                .ok_or_else(|| DecodeError("unterminated integer".into()))?;
            let text = std::str::from_utf8(&buf[1..end])
                .map_err(|_| DecodeError("integer is not ASCII".into()))?;
            let i = text
                .parse::<i64>()
                .map_err(|_| DecodeError(format!("bad integer {text:?}")))?;
            Ok((Value::Int(i), &buf[end + 1..]))
        }
        Some(b'l') => {
            let mut rest = &buf[1..];
            let mut items = Vec::new();
            loop {
                match rest.first() {
                    Some(b'e') => return Ok((Value::List(items), &rest[1..])),
                    Some(_) => {
                        let (v, r) = decode_prefix(rest, depth + 1)?;
                        items.push(v);
                        rest = r;
                    }
                    None => return err("unterminated list"),
                }
            }
        }
        Some(b'd') => {
            let mut rest = &buf[1..];
            let mut map = BTreeMap::new();
            loop {
                match rest.first() {
                    Some(b'e') => return Ok((Value::Dict(map), &rest[1..])),
                    Some(_) => {
                        let (k, r) = decode_prefix(rest, depth + 1)?;
                        let Value::Bytes(k) = k else {
                            return err("dictionary key is not a string");
                        };
                        let (v, r) = decode_prefix(r, depth + 1)?;
                        map.insert(k, v);
                        rest = r;
                    }
                    None => return err("unterminated dictionary"),
                }
            }
        }
        Some(c) if c.is_ascii_digit() => {
            let colon = buf
                .iter()
                .position(|&c| c == b':')
                .ok_or_else(|| DecodeError("string without ':'".into()))?;
            let len: usize = std::str::from_utf8(&buf[..colon])
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| DecodeError("bad string length".into()))?;
            let start = colon + 1;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= buf.len())
                .ok_or_else(|| DecodeError("string runs past the end".into()))?;
            Ok((Value::Bytes(buf[start..end].to_vec()), &buf[end..]))
        }
        Some(c) => Err(DecodeError(format!("unexpected byte {c:#04x}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_sorted_dicts_lists_ints() {
        let v = Value::dict([
            ("sdp", Value::str("v=0")),
            ("command", Value::str("offer")),
            ("flags", Value::List(vec![Value::str("a"), Value::Int(-3)])),
        ]);
        assert_eq!(
            v.encode(),
            b"d7:command5:offer5:flagsl1:ai-3ee3:sdp3:v=0e".to_vec()
        );
    }

    #[test]
    fn decodes_what_it_encodes_and_rtpengine_replies() {
        let v = Value::dict([
            ("result", Value::str("ok")),
            ("n", Value::Int(12)),
            ("l", Value::List(vec![Value::dict([("x", Value::str(""))])])),
        ]);
        assert_eq!(decode(&v.encode()).expect("round trip"), v);
        let reply = decode(b"d6:result2:ok3:sdp5:v=0\r\ne").expect("reply");
        assert_eq!(reply.get("result").and_then(Value::as_str), Some("ok"));
        assert_eq!(reply.get("sdp").and_then(Value::as_str), Some("v=0\r\n"));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            &b""[..],
            b"i12",
            b"5:abc",
            b"l1:a",
            b"di1e1:ae",
            b"x",
            b"i1ei2e",
            b"99999999999999999999:",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} must fail",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert!(decode(deep.as_bytes()).is_err());
    }
}
