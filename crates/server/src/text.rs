//! Text that leaves the process for humans (the log, `bibridge audit`) with its control
//! characters escaped: a field that came from the network or the API (an agent string, a SIP
//! header) cannot forge a line (`\n`, `\r`), move the cursor or recolour a terminal (`ESC`).
//!
//! Control characters (C0, DEL, C1) and the Unicode line and paragraph separators are written as
//! Rust escapes (`\n`, `\r`, `\t`, `\u{1b}`); everything else is unchanged. The log gets this
//! through [`EscapingWriter`], which wraps the formatter's writer and keeps only the newline that
//! ends each event; ANSI colours are off (they would be escaped too).

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `s` with its control characters escaped (borrowed when there are none).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A [`MakeWriter`] whose writers escape control characters in each event but its final
/// newline: one event, one line.
#[derive(Debug, Clone)]
pub struct EscapingWriter<M> {
    inner: M,
}

impl<M> EscapingWriter<M> {
    pub fn new(inner: M) -> Self {
        EscapingWriter { inner }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for EscapingWriter<M> {
    type Writer = Escaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping(self.inner.make_writer())
    }
}

/// The writer for one event (the formatter writes each event with one `write_all`).
pub struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(b) => (b, true),
            None => (&*text, false),
        };
        let mut line = escape_controls(body).into_owned();
        if newline {
            line.push('\n');
        }
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The subscriber of the `bibridge` binary: `filter` (RUST_LOG), plain text without ANSI, every
/// event one line, written to `writer`.
pub fn log_subscriber<W>(
    filter: tracing_subscriber::EnvFilter,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(EscapingWriter::new(writer))
        .finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn escapes_controls_only() {
        assert!(matches!(escape_controls("1001 ok é"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\nb\r\x1b[31m\x7f\u{85}\u{2028}"),
            "a\\nb\\r\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}"
        );
    }

    #[test]
    fn a_field_with_a_newline_and_escape_codes_stays_on_its_line() {
        let buf = Buf::default();
        let sub = log_subscriber(tracing_subscriber::EnvFilter::new("info"), buf.clone());
        let agent = "1001\n2026-11-25T14:03:07.120Z  INFO bibridge: session started \x1b[31mforged";
        tracing::subscriber::with_default(sub, || {
            tracing::info!(%agent, "session refused");
            tracing::info!("second event");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains("agent=1001\\n2026-11-25T14:03:07.120Z"),
            "{out}"
        );
        assert!(lines[0].contains("\\u{1b}[31mforged"), "{out}");
        assert!(!out.contains('\x1b'), "{out}");
        assert!(lines[1].ends_with("second event"), "{out}");
    }
}
