//! The span-aware TOML reader: walks the `toml_edit` document, collecting every problem with
//! its location, dotted key, what was found and what was expected.

use std::ops::Range;
use std::str::FromStr;

use toml_edit::{Item, TableLike, Value};

use super::model::*;

/// Byte range of an item in the source text.
pub(super) type Span = Option<Range<usize>>;

/// A table (standard `[x]`/`[[x]]` or inline `{ .. }`) with its dotted path.
pub(super) struct Tbl<'d> {
    pub(super) path: String,
    pub(super) table: &'d dyn TableLike,
    pub(super) span: Span,
}

impl Tbl<'_> {
    pub(super) fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How a value is described after "found".
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {:?}", s.value()),
        Value::Integer(i) => format!("integer {}", i.value()),
        Value::Float(x) => format!("float {}", x.value()),
        Value::Boolean(b) => format!("boolean {}", b.value()),
        Value::Datetime(d) => format!("datetime {}", d.value()),
        Value::Array(_) => "an array".to_owned(),
        Value::InlineTable(_) => "an inline table".to_owned(),
    }
}

pub(super) fn describe_item(item: &Item) -> String {
    match item {
        Item::Value(v) => describe(v),
        Item::Table(_) => "a table".to_owned(),
        Item::ArrayOfTables(_) => "an array of tables".to_owned(),
        Item::None => "nothing".to_owned(),
    }
}

// Expectation texts, shared so that messages are consistent.
pub(super) const EXP_NON_NEG_INT: &str = "a non-negative integer";
pub(super) const EXP_ADDR: &str = "an \"IP:port\" string such as \"127.0.0.1:5060\"";
pub(super) const EXP_ADDR_OR_FALSE: &str =
    "an \"IP:port\" string such as \"127.0.0.1:5060\", or false";
pub(super) const EXP_STRING: &str = "a non-empty string";
pub(super) const EXP_BOOL: &str = "true or false";
pub(super) const EXP_DIGITS: &str = "a string of digits";
pub(super) const EXP_DIALABLE: &str = "a non-empty string of 0-9, * and #";
pub(super) const EXP_DTMF: &str = "a one-character string among 0-9, * and #";
pub(super) const DTMF_CHARS: &str = "0123456789*#";

pub(super) fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

pub(super) fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

pub(super) fn int<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_integer().and_then(|i| T::try_from(i).ok())
}

pub(super) fn positive<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_integer()
        .filter(|i| *i > 0)
        .and_then(|i| T::try_from(i).ok())
}

pub(super) fn parsed<T: FromStr>(v: &Value) -> Option<T> {
    v.as_str().and_then(|s| s.parse().ok())
}

pub(super) fn one_of<'a, T: Copy>(names: &'a [(&'a str, T)]) -> impl Fn(&Value) -> Option<T> + 'a {
    move |v| {
        let s = v.as_str()?;
        names.iter().find(|(n, _)| *n == s).map(|(_, t)| *t)
    }
}

pub(super) fn expected_one_of<T>(names: &[(&str, T)]) -> String {
    let quoted: Vec<String> = names.iter().map(|(n, _)| format!("{n:?}")).collect();
    format!("one of {}", quoted.join(", "))
}

/// Accumulates errors while walking the document.
pub(super) struct Parser<'t> {
    pub(super) text: &'t str,
    pub(super) errors: Vec<ConfigError>,
}

impl Parser<'_> {
    pub(super) fn location(&self, span: &Span) -> Option<Location> {
        let start = span.as_ref()?.start;
        let before = self.text.get(..start)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..)?.chars().count() + 1;
        Some(Location { line, column })
    }

    pub(super) fn error(
        &mut self,
        span: &Span,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let location = self.location(span);
        self.errors.push(ConfigError {
            location,
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn into_errors(mut self, file: &str) -> ConfigErrors {
        // File order reads best; errors without a location (defaults involved) go last.
        self.errors
            .sort_by_key(|e| (e.location.is_none(), e.location));
        ConfigErrors {
            file: file.to_owned(),
            errors: self.errors,
        }
    }

    /// `item` as a table, or an error naming `path`.
    pub(super) fn table<'d>(&mut self, item: &'d Item, path: &str) -> Option<Tbl<'d>> {
        let (table, span): (&dyn TableLike, Span) = match item {
            Item::Table(t) => (t, t.span()),
            Item::Value(Value::InlineTable(t)) => (t, t.span()),
            other => {
                self.error(
                    &other.span(),
                    path,
                    format!("expected a table, found {}", describe_item(other)),
                );
                return None;
            }
        };
        Some(Tbl {
            path: path.to_owned(),
            table,
            span,
        })
    }

    /// A section that is optional: absent → `None` without error.
    pub(super) fn section<'d>(
        &mut self,
        item: Option<&'d Item>,
        path: &str,
        keys: &[&str],
    ) -> Option<Tbl<'d>> {
        let t = self.table(item?, path)?;
        self.check_keys(&t, keys);
        Some(t)
    }

    /// An array of tables (`[[path]]` or `path = [{..}, ..]`); absent → empty.
    pub(super) fn table_list<'d>(&mut self, item: Option<&'d Item>, path: &str) -> Vec<Tbl<'d>> {
        let mut out = Vec::new();
        match item {
            None => {}
            Some(Item::ArrayOfTables(a)) => {
                for (i, t) in a.iter().enumerate() {
                    out.push(Tbl {
                        path: format!("{path}[{i}]"),
                        table: t,
                        span: t.span(),
                    });
                }
            }
            Some(Item::Value(Value::Array(a))) => {
                for (i, v) in a.iter().enumerate() {
                    let key = format!("{path}[{i}]");
                    match v {
                        Value::InlineTable(t) => out.push(Tbl {
                            path: key,
                            table: t,
                            span: t.span(),
                        }),
                        other => self.error(
                            &other.span(),
                            key,
                            format!("expected a table, found {}", describe(other)),
                        ),
                    }
                }
            }
            Some(other) => self.error(
                &other.span(),
                path,
                format!(
                    "expected an array of tables ([[{path}]] sections), found {}",
                    describe_item(other)
                ),
            ),
        }
        out
    }

    /// Rejects keys not in `known`, so that typos do not silently fall back to defaults.
    pub(super) fn check_keys(&mut self, t: &Tbl<'_>, known: &[&str]) {
        for (key, _) in t.table.iter() {
            if !known.contains(&key) {
                let span = t.table.key(key).and_then(|k| k.span());
                self.error(
                    &span,
                    t.key(key),
                    format!("unknown key {key:?}; expected one of: {}", known.join(", ")),
                );
            }
        }
    }

    /// An optional value: absent → `None`; present but not convertible → error and `None`.
    pub(super) fn get<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<(T, Span)> {
        let item = t.table.get(key)?;
        match item {
            Item::Value(v) => match conv(v) {
                Some(x) => Some((x, v.span())),
                None => {
                    self.error(
                        &v.span(),
                        t.key(key),
                        format!("expected {expected}, found {}", describe(v)),
                    );
                    None
                }
            },
            other => {
                self.error(
                    &other.span(),
                    t.key(key),
                    format!("expected {expected}, found {}", describe_item(other)),
                );
                None
            }
        }
    }

    /// A required value: absent → error.
    pub(super) fn require<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Option<(T, Span)> {
        if !t.table.contains_key(key) {
            self.error(&t.span, t.key(key), format!("missing; expected {expected}"));
            return None;
        }
        self.get(t, key, expected, conv)
    }

    /// An optional array whose elements each go through `conv`; errors name `key[i]`.
    pub(super) fn get_array<T>(
        &mut self,
        t: &Tbl<'_>,
        key: &str,
        expected: &str,
        conv: impl Fn(&Value) -> Option<T>,
    ) -> Option<Vec<(T, Span)>> {
        let item = t.table.get(key)?;
        let Some(arr) = item.as_array() else {
            self.error(
                &item.span(),
                t.key(key),
                format!(
                    "expected an array of {expected}, found {}",
                    describe_item(item)
                ),
            );
            return None;
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, v) in arr.iter().enumerate() {
            match conv(v) {
                Some(x) => out.push((x, v.span())),
                None => self.error(
                    &v.span(),
                    format!("{}[{i}]", t.key(key)),
                    format!("expected {expected}, found {}", describe(v)),
                ),
            }
        }
        Some(out)
    }
}

/// Stores a parsed value into `slot` and returns its span (`None` when the default stays).
pub(super) fn set<T>(slot: &mut T, got: Option<(T, Span)>) -> Span {
    let (v, span) = got?;
    *slot = v;
    span
}

/// Values without their spans, first occurrence kept (repeating a role or group is harmless).
pub(super) fn dedup<T: PartialEq>(items: Vec<(T, Span)>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for (x, _) in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// A light check that a static contact is a SIP URI with a host; the SIP stack parses it fully.
pub(super) fn is_sip_uri(s: &str) -> bool {
    let rest = s.strip_prefix("sip:").or_else(|| s.strip_prefix("sips:"));
    let Some(rest) = rest else { return false };
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    !host.is_empty() && !s.chars().any(char::is_whitespace)
}
