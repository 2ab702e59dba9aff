//! Audit records (docs/design.md §5): who listened to whom, when, how, and every refusal.
//!
//! The engine produces an [`AuditRecord`] for each session start, mode change, stop and refusal
//! and hands it to an [`AuditSink`] synchronously: a session start is connected only after the
//! sink has made its record durable, and refused with 500 when it cannot. The sink is the one
//! piece of I/O the engine calls directly, behind this trait, so that the engine stays testable
//! with [`MemorySink`]; the server's sink appends JSON lines and fsyncs (and stamps wall time).

use std::sync::{Arc, Mutex};

use crate::config::Mode;
use crate::ids::{CallId, SessionId, SessionOrigin};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditEvent {
    /// A session request was refused.
    Refusal,
    /// A session was authorized and is being connected.
    Start,
    /// A session's mode changed.
    Mode,
    /// A session ended.
    Stop,
}

impl AuditEvent {
    /// The record's event name in the log (`refusal`, `start`, `mode`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Refusal => "refusal",
            AuditEvent::Start => "start",
            AuditEvent::Mode => "mode",
            AuditEvent::Stop => "stop",
        }
    }
}

/// One audit record. The sink adds the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// What happened.
    pub event: AuditEvent,
    /// The supervisor's extension (or `trunk <name>` for a refused trunk caller).
    pub supervisor: String,
    /// The agent's extension, as requested.
    pub agent: String,
    /// bibridge's call id, when a call was found.
    pub call: Option<CallId>,
    /// SIP Call-ID of the agent's dialog, when a call was found.
    pub sip_call_id: Option<String>,
    /// bibridge's session id, when a session exists (not for refusals).
    pub session: Option<SessionId>,
    /// The session's mode (requested, for a refusal).
    pub mode: Option<Mode>,
    /// Refusal or stop reason; for a mode change, how it was asked (DTMF, SIP INFO, API).
    pub reason: Option<String>,
    /// Who started (or asked for) the session.
    pub origin: SessionOrigin,
}

/// Why a record could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(pub String);

/// Where audit records go. `append` returns only once the record is durable.
pub trait AuditSink: Send {
    /// Store `record` durably; `Err` when it cannot be stored.
    fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError>;
}

/// Keeps records in memory (tests); can be told to fail.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// The records appended so far.
    pub records: Arc<Mutex<Vec<AuditRecord>>>,
    /// When true, every append fails.
    pub fail: Arc<Mutex<bool>>,
}

impl MemorySink {
    /// The records so far.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Make every following append fail (a full disk, say).
    pub fn set_failing(&self, fail: bool) {
        match self.fail.lock() {
            Ok(mut f) => *f = fail,
            Err(e) => *e.into_inner() = fail,
        }
    }
}

impl AuditSink for MemorySink {
    fn append(&mut self, record: &AuditRecord) -> Result<(), AuditError> {
        if self.fail.lock().map(|f| *f).unwrap_or(true) {
            return Err(AuditError("injected failure".into()));
        }
        match self.records.lock() {
            Ok(mut r) => r.push(record.clone()),
            Err(e) => e.into_inner().push(record.clone()),
        }
        Ok(())
    }
}
