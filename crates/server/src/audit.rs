//! The durable audit log: one JSON object per line, appended and fsync'd before `append`
//! returns, so a session start is on disk before the supervisor is connected (docs/design.md §5).
//!
//! The server writes it from a thread of its own ([`AuditWriter`]): the engine task hands
//! records over a bounded queue and gets each completion back as an input once the record is
//! fsync'd; records that queue up meanwhile are written together and share one `fdatasync`
//! (group commit), each still reported only once durable.
//!
//! Why JSON lines in a plain file rather than an embedded database: an append-only file opened
//! with `O_APPEND` is exactly the access pattern (no updates, no deletes), one `write` plus
//! `fdatasync` per record is the whole durability story, there is no C library to build, and
//! operators can read, ship and archive it with standard tools. A crash can at most tear the
//! last line; the reader skips a line that does not parse and says so.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bibridge_b2bua::audit::{AuditAppend, AuditError, AuditId, AuditRecord, AuditSink};
use serde_json::{json, Value};

use crate::control::rfc3339;

/// Appends records to a JSON-lines file, fsync'd per record.
pub struct JsonlAudit {
    file: File,
    path: PathBuf,
    /// Reused line buffer.
    line: Vec<u8>,
}

impl JsonlAudit {
    /// Open (create) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<JsonlAudit> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        // A crash may have torn the last line: end it, or the next record would be glued to it
        // and be unreadable too.
        if !ends_with_newline(&mut file)? {
            file.write_all(b"\n")?;
            file.sync_data()?;
        }
        Ok(JsonlAudit {
            file,
            path: path.to_path_buf(),
            line: Vec::with_capacity(512),
        })
    }
}

/// Whether a file is empty or its last byte is a newline.
fn ends_with_newline(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// The JSON form of a record (also what `bibridge audit --json` prints).
pub fn record_json(r: &AuditRecord, time: SystemTime) -> Value {
    json!({
        "time": rfc3339(time),
        "event": r.event.as_str(),
        "supervisor": r.supervisor,
        "agent": r.agent,
        "call": r.call.map(|c| c.to_string()),
        "call_id": r.sip_call_id,
        "session": r.session.map(|s| s.to_string()),
        "mode": r.mode.map(|m| m.as_str()),
        "reason": r.reason,
        "origin": r.origin.as_str(),
    })
}

impl AuditSink for JsonlAudit {
    fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        self.line.clear();
        let v = record_json(record, SystemTime::now());
        serde_json::to_writer(&mut self.line, &v).map_err(|e| AuditError(e.to_string()))?;
        self.line.push(b'\n');
        let err = |e: std::io::Error| AuditError(format!("{}: {e}", self.path.display()));
        // One write call per record: with O_APPEND the line lands whole at the end.
        self.file.write_all(&self.line).map_err(err)?;
        self.file.sync_data().map_err(err)
    }
}

impl JsonlAudit {
    /// Append records (one `write` each, so each line lands whole) and fsync once.
    fn append_batch<'a>(
        &mut self,
        records: impl Iterator<Item = &'a AuditRecord>,
    ) -> Result<(), AuditError> {
        let now = SystemTime::now();
        for r in records {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &record_json(r, now))
                .map_err(|e| AuditError(e.to_string()))?;
            self.line.push(b'\n');
            let path = &self.path;
            self.file
                .write_all(&self.line)
                .map_err(|e| AuditError(format!("{}: {e}", path.display())))?;
        }
        let path = &self.path;
        self.file
            .sync_data()
            .map_err(|e| AuditError(format!("{}: {e}", path.display())))
    }
}

impl JsonlAudit {
    /// After a crash: every session whose `start` has no `stop` gets one now, reason
    /// `interrupted` (the other fields copied from its start), so that the log says when each
    /// session ended, at the latest.
    /// Returns how many were closed. Reads the whole log (streaming; memory only for the open
    /// sessions). Session ids start again at 1 in each process: a stop closes the latest open
    /// start with the same session, SIP Call-ID and people.
    pub fn close_interrupted_sessions(&mut self) -> std::io::Result<usize> {
        let f = File::open(&self.path)?;
        // Open starts in log order, with their key: (session, SIP Call-ID, supervisor, agent).
        let mut open: Vec<([String; 4], Value)> = Vec::new();
        let key = |v: &Value| -> [String; 4] {
            ["session", "call_id", "supervisor", "agent"].map(|k| {
                v.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
        };
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            let k = key(&v);
            if k[0].is_empty() {
                continue;
            }
            match v.get("event").and_then(Value::as_str) {
                Some("start") => open.push((k, v)),
                // The most recent start of that session (same call and people if there is
                // one: ids are reused after a restart).
                Some("stop") => {
                    let pos = open
                        .iter()
                        .rposition(|(o, _)| *o == k)
                        .or_else(|| open.iter().rposition(|(o, _)| o[0] == k[0]));
                    if let Some(pos) = pos {
                        open.remove(pos);
                    }
                }
                _ => {}
            }
        }
        let time = rfc3339(SystemTime::now());
        let mut n = 0;
        for (_, start) in open {
            let mut stop = start;
            if let Some(o) = stop.as_object_mut() {
                o.insert("time".into(), Value::String(time.clone()));
                o.insert("event".into(), Value::String("stop".into()));
                o.insert("reason".into(), Value::String("interrupted".into()));
            }
            self.line.clear();
            serde_json::to_writer(&mut self.line, &stop).map_err(std::io::Error::other)?;
            self.line.push(b'\n');
            self.file.write_all(&self.line)?;
            n += 1;
        }
        if n > 0 {
            self.file.sync_data()?;
        }
        Ok(n)
    }
}

/// Records written together at most (one `fdatasync` for all of them).
const GROUP_COMMIT_MAX: usize = 256;

/// A record's outcome, back to the engine task.
pub(crate) struct AuditDone {
    pub(crate) id: AuditId,
    pub(crate) result: Result<(), AuditError>,
}

/// The audit log's writer thread: appends and fsyncs off the engine task.
pub(crate) struct AuditWriter {
    tx: Option<std::sync::mpsc::SyncSender<AuditAppend>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AuditWriter {
    /// Start the thread; completions go to `done`.
    pub(crate) fn spawn(
        mut log: JsonlAudit,
        capacity: usize,
        done: tokio::sync::mpsc::Sender<AuditDone>,
    ) -> std::io::Result<AuditWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<AuditAppend>(capacity);
        let thread = std::thread::Builder::new()
            .name("bibridge-audit".into())
            .spawn(move || {
                // Ends once the engine task drops its sender and everything queued is written.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < GROUP_COMMIT_MAX {
                        match rx.try_recv() {
                            Ok(a) => batch.push(a),
                            Err(_) => break,
                        }
                    }
                    let result = log.append_batch(batch.iter().map(|a| &a.record));
                    for a in batch {
                        let d = AuditDone {
                            id: a.id,
                            result: result.clone(),
                        };
                        // The engine task is gone at shutdown: nobody waits any more.
                        let _ = done.blocking_send(d);
                    }
                }
            })?;
        Ok(AuditWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue a record without waiting; `Err` when the queue is full or the thread is gone.
    pub(crate) fn try_append(&self, a: AuditAppend) -> Result<(), String> {
        use std::sync::mpsc::TrySendError;
        let Some(tx) = &self.tx else {
            return Err("audit writer stopped".into());
        };
        match tx.try_send(a) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("audit writer backlog full".into()),
            Err(TrySendError::Disconnected(_)) => Err("audit writer stopped".into()),
        }
    }

    /// Write what is queued and stop the thread.
    pub(crate) async fn finish(mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Filters for reading the log.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only records at or after this RFC 3339 time (compared as text: same format, UTC).
    pub since: Option<String>,
    pub agent: Option<String>,
}

/// Read the log: matching records in file order, and the number of unreadable lines skipped.
pub fn read(path: &Path, q: &Query) -> std::io::Result<(Vec<Value>, usize)> {
    let f = File::open(path)?;
    let mut out = Vec::new();
    let mut bad = 0;
    // Lines as bytes: a torn line may end inside a UTF-8 sequence; it is skipped like any
    // other unreadable line rather than failing the whole read.
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            bad += 1;
            continue;
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        if q.since.as_deref().is_some_and(|s| field("time") < s) {
            continue;
        }
        if q.agent.as_deref().is_some_and(|a| field("agent") != a) {
            continue;
        }
        out.push(v);
    }
    Ok((out, bad))
}

/// Normalise a `--since` argument: a full RFC 3339 UTC time, or a date (`2026-11-25`), or a
/// date and minutes (`2026-11-25T14:03`). Returns the prefix-comparable form.
pub fn parse_since(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('Z');
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let date_ok = b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10);
    if !date_ok {
        return None;
    }
    let full = "0000-00-00T00:00:00.000";
    if s.len() > full.len() {
        return None;
    }
    let mut out = s.replace(' ', "T");
    // Every character as the template has it (a digit where it has one), cut after a whole
    // field: `2026-11-25T1` is not 10 o'clock, `2026-11-25Xabc` is no time at all.
    let shaped = out.bytes().zip(full.bytes()).all(|(c, t)| {
        if t == b'0' {
            c.is_ascii_digit()
        } else {
            c == t
        }
    });
    if !shaped || !matches!(out.len(), 10 | 13 | 16 | 19 | 21..=23) {
        return None;
    }
    out.push_str(&full[out.len()..]);
    out.push('Z');
    Some(out)
}

/// One human-readable line per record.
pub fn human_line(v: &Value) -> String {
    // Fields may hold anything a request carried: escape control characters so that a record
    // is one line whatever its fields say.
    let f = |k: &str| {
        crate::text::escape_controls(v.get(k).and_then(Value::as_str).unwrap_or("-")).into_owned()
    };
    let reason = v
        .get("reason")
        .and_then(Value::as_str)
        .map(|r| format!("  ({})", crate::text::escape_controls(r)))
        .unwrap_or_default();
    format!(
        "{}  {:<8} {:<7} supervisor {:<6} agent {:<6} mode {:<7} call {} {}{}",
        f("time"),
        f("event"),
        f("origin"),
        f("supervisor"),
        f("agent"),
        f("mode"),
        f("call"),
        f("call_id"),
        reason
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bibridge_b2bua::audit::AuditEvent;
    use bibridge_b2bua::config::Mode;
    use bibridge_b2bua::engine::SessionOrigin;

    fn rec(event: AuditEvent, agent: &str) -> AuditRecord {
        AuditRecord {
            event,
            supervisor: "2001".into(),
            agent: agent.into(),
            call: Some(3),
            sip_call_id: Some("abc@127.0.0.1".into()),
            session: Some(7),
            mode: Some(Mode::Coach),
            reason: None,
            origin: SessionOrigin::Api,
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = std::env::temp_dir().join(format!("bibridge-audit-test-{}", std::process::id()));
        let path = dir.join("a.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut log = JsonlAudit::open(&path).unwrap();
        log.append(&rec(AuditEvent::Start, "1001")).unwrap();
        log.append(&rec(AuditEvent::Stop, "1002")).unwrap();
        // A crash in the middle of a write.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":\"2026-")
            .unwrap();
        let (all, bad) = read(&path, &Query::default()).unwrap();
        assert_eq!((all.len(), bad), (2, 1));
        assert_eq!(all[0]["event"], "start");
        assert_eq!(all[0]["mode"], "coach");
        assert_eq!(all[0]["origin"], "api");
        assert_eq!(all[0]["call_id"], "abc@127.0.0.1");
        let (only, _) = read(
            &path,
            &Query {
                agent: Some("1002".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(only.len(), 1);
        let (none, _) = read(
            &path,
            &Query {
                since: parse_since("2999-01-01"),
                ..Query::default()
            },
        )
        .unwrap();
        assert!(none.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_record_after_a_torn_line_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("bibridge-audit-torn-{}", std::process::id()));
        let path = dir.join("a.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut log = JsonlAudit::open(&path).unwrap();
        log.append(&rec(AuditEvent::Start, "1001")).unwrap();
        drop(log);
        // The process died in the middle of a line (here with a split UTF-8 sequence).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":\"2026-\xc3")
            .unwrap();
        // Restarted: the next record must be a line of its own, not glued to the torn one.
        let mut log = JsonlAudit::open(&path).unwrap();
        log.append(&rec(AuditEvent::Start, "1002")).unwrap();
        let (all, bad) = read(&path, &Query::default()).unwrap();
        assert_eq!(bad, 1);
        let agents: Vec<&str> = all.iter().map(|v| v["agent"].as_str().unwrap()).collect();
        assert_eq!(agents, ["1001", "1002"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_field_with_a_newline_and_escape_codes_prints_on_one_line() {
        let mut r = rec(
            AuditEvent::Refusal,
            "1001\n2026-11-25T14:03:07.120Z  start    api     supervisor 2001   agent 1001",
        );
        r.reason = Some("x\x1b[31m\r".into());
        r.supervisor = "2001\x1b[2J".into();
        let line = human_line(&record_json(&r, SystemTime::UNIX_EPOCH));
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\x1b') && !line.contains('\r'), "{line}");
        assert!(
            line.contains("agent 1001\\n2026-11-25T14:03:07.120Z  start"),
            "{line}"
        );
        assert!(line.contains("(x\\u{1b}[31m\\r)"), "{line}");
        assert!(line.contains("supervisor 2001\\u{1b}[2J"), "{line}");
    }

    #[test]
    fn sessions_left_open_by_crashes_are_closed_once() {
        let dir = std::env::temp_dir().join(format!("bibridge-audit-open-{}", std::process::id()));
        let path = dir.join("a.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut log = JsonlAudit::open(&path).unwrap();
        let with = |event, sid: u64, agent: &str| {
            let mut r = rec(event, agent);
            r.session = Some(sid);
            r
        };
        // Run 1: session 7 starts, the process dies. Run 2 (ids start again): session 7 again,
        // stopped properly; session 8 starts, the process dies.
        log.append(&with(AuditEvent::Start, 7, "1001")).unwrap();
        log.append(&with(AuditEvent::Start, 7, "1002")).unwrap();
        log.append(&with(AuditEvent::Stop, 7, "1002")).unwrap();
        log.append(&with(AuditEvent::Start, 8, "1003")).unwrap();
        drop(log);
        let mut log = JsonlAudit::open(&path).unwrap();
        assert_eq!(log.close_interrupted_sessions().unwrap(), 2);
        let (all, _) = read(&path, &Query::default()).unwrap();
        let tail: Vec<(&str, &str, &str)> = all[4..]
            .iter()
            .map(|v| {
                (
                    v["event"].as_str().unwrap(),
                    v["agent"].as_str().unwrap(),
                    v["reason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            tail,
            [
                ("stop", "1001", "interrupted"),
                ("stop", "1003", "interrupted")
            ]
        );
        // Nothing left open: a second start closes nothing.
        assert_eq!(log.close_interrupted_sessions().unwrap(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn since_accepts_dates_and_times() {
        assert_eq!(
            parse_since("2026-11-25").unwrap(),
            "2026-11-25T00:00:00.000Z"
        );
        assert_eq!(
            parse_since("2026-11-25T14:03").unwrap(),
            "2026-11-25T14:03:00.000Z"
        );
        assert_eq!(
            parse_since("2026-11-25T14:03:07.120Z").unwrap(),
            "2026-11-25T14:03:07.120Z"
        );
        assert!(parse_since("yesterday").is_none());
        assert!(parse_since("2026-11-25Xabc").is_none());
        assert!(parse_since("2026-11-25T1").is_none());
        assert!(parse_since("2026-11-25T14:0x").is_none());
        assert_eq!(
            parse_since("2026-11-25 14").unwrap(),
            "2026-11-25T14:00:00.000Z"
        );
        assert!(parse_since("2026-1-5").is_none());
    }
}
