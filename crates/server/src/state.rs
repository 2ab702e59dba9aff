//! What survives a restart besides the audit log: the registrar's bindings, in
//! `registrations.json` in the state directory (`[state] dir`).
//!
//! The file is small (one entry per live binding) and rewritten whole, atomically: written to
//! a temporary file, fsync'd, renamed over the old one, the directory fsync'd; a crash at any
//! point leaves the old file or the new one, never a torn one. The engine task saves it off its
//! own thread (`spawn_blocking`) at most once a second when the bindings changed, and at
//! shutdown. Lifetimes are stored as wall-clock expiry times (an `Instant` means nothing to the
//! next process); at start the bindings still live are restored.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bibridge_sip::registrar::SavedBinding;
use bibridge_sip::Transport;
use serde_json::{json, Value};

/// The file in the state directory.
pub const REGISTRATIONS_FILE: &str = "registrations.json";
/// Saved at most this often while registrations change.
pub(crate) const SAVE_INTERVAL: Duration = Duration::from_secs(1);

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The JSON document for `bindings` exported at wall-clock time `now`.
pub fn to_json(bindings: &[SavedBinding], now: SystemTime) -> Value {
    let list: Vec<Value> = bindings
        .iter()
        .map(|b| {
            json!({
                "user": b.user,
                "contact": b.contact,
                "source": b.source.to_string(),
                "transport": match b.transport { Transport::Udp => "udp", Transport::Tcp => "tcp" },
                "expires_unix_ms": unix_ms(now + b.remaining),
                "call_id": b.call_id,
                "cseq": b.cseq,
                "q": b.q,
            })
        })
        .collect();
    json!({ "format": 1, "bindings": list })
}

/// The bindings of a document, with their lifetime left at wall-clock time `now` (expired ones
/// and malformed entries are skipped).
pub fn from_json(doc: &Value, now: SystemTime) -> Vec<SavedBinding> {
    let now_ms = unix_ms(now);
    let Some(list) = doc.get("bindings").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|b| {
            let s = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
            let expires = b.get("expires_unix_ms")?.as_u64()?;
            let remaining = Duration::from_millis(expires.checked_sub(now_ms)?);
            Some(SavedBinding {
                user: s("user")?,
                contact: s("contact")?,
                source: s("source")?.parse().ok()?,
                transport: match b.get("transport")?.as_str()? {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    _ => return None,
                },
                remaining,
                call_id: s("call_id").unwrap_or_default(),
                cseq: u32::try_from(b.get("cseq")?.as_u64()?).ok()?,
                q: b.get("q").and_then(Value::as_f64).map(|q| q as f32),
            })
        })
        .filter(|b| !b.remaining.is_zero())
        .collect()
}

/// Read the saved bindings; none when there is no file yet.
pub fn load(dir: &Path) -> std::io::Result<Vec<SavedBinding>> {
    let path = dir.join(REGISTRATIONS_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let doc: Value = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
    Ok(from_json(&doc, SystemTime::now()))
}

/// Replace the file atomically with `doc`: temporary file, fsync, rename, fsync of the
/// directory.
pub fn save(dir: &Path, doc: &Value) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(REGISTRATIONS_FILE);
    let tmp: PathBuf = dir.join(format!("{REGISTRATIONS_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        serde_json::to_writer(&mut f, doc).map_err(std::io::Error::other)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bindings_round_trip_through_the_file_and_expired_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("bibridge-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load(&dir).unwrap().is_empty(), "no file yet");
        let b = SavedBinding {
            user: "1001".into(),
            contact: "sip:1001@127.0.0.1:5071".into(),
            source: "127.0.0.1:5071".parse().unwrap(),
            transport: Transport::Tcp,
            remaining: Duration::from_secs(600),
            call_id: "c1".into(),
            cseq: 7,
            q: Some(0.5),
        };
        let short = SavedBinding {
            user: "1002".into(),
            remaining: Duration::from_millis(1),
            ..b.clone()
        };
        save(&dir, &to_json(&[b.clone(), short], SystemTime::now())).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let got = load(&dir).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].user, "1001");
        assert_eq!(got[0].transport, Transport::Tcp);
        assert_eq!((got[0].cseq, got[0].q), (7, Some(0.5)));
        assert!(got[0].remaining <= Duration::from_secs(600));
        assert!(got[0].remaining > Duration::from_secs(590));
        assert!(!dir.join("registrations.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
