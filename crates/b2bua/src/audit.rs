//! Audit records (docs/design.md §5): who listened to whom, when, how, and every refusal.
//!
//! The engine produces an [`AuditRecord`] for each session start, mode change, stop and refusal.
//! A session start is connected only after its record is durable, and refused with 500 when it
//! cannot be stored. Two ways to store them:
//!
//! - asynchronously (the server): the engine emits an [`AuditAppend`] (`Engine::poll_audit`),
//!   parks whatever depends on it (the 200 OK of a feature code, the call to an API session's
//!   phone) and goes on with other work; the server's writer thread appends, fsyncs and reports
//!   back with `Engine::handle_audit_done`. Records are written in the order they were emitted.
//! - in-process, through an [`AuditSink`] (tests: [`MemorySink`]): stored at once, the parked
//!   action resumes immediately.

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

/// Identifies one record handed out by `Engine::poll_audit`, for its completion.
pub type AuditId = u64;

/// A record to append to the audit log; report the outcome with `Engine::handle_audit_done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAppend {
    /// Identifies the completion.
    pub id: AuditId,
    /// What to store.
    pub record: AuditRecord,
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
