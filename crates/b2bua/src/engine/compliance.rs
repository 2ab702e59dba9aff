//! Compliance (docs/design.md §5): audit records for every session start, mode change, stop
//! and refusal, and the notification tones the policy asks for.
//!
//! Records go out through [`AuditLog`]: with the asynchronous log (the server) each record is an
//! [`AuditAppend`] for `poll_audit`, and a session start *parks* what depends on it (the 200 OK
//! of a feature code, the call to an API session's phone) until `handle_audit_done` reports the
//! record durable, so durability is what it was while the engine task never waits on a disk.
//! Mode, stop and refusal records are fire-and-forget (still written in order). With an
//! in-process [`AuditSink`] (tests) the record is stored at once and the start goes on inline.
//! Refusals that anyone can cause without credentials (a wrong digest on a feature code) are
//! rate-limited per source address, so nobody can flood the log. Tones go to the media plane as
//! [`MediaCommand::PlayTone`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::control::{ApiRefusal, ApiStartCtx, SessionView};
use super::feature_code::FeatureCodeStart;
use super::media_plane::MediaCommand;
use super::{Engine, Notice};
use crate::audit::{AuditAppend, AuditError, AuditEvent, AuditId, AuditRecord, AuditSink};
use crate::config::{Mode, Notify};
use crate::ids::{CallId, LegId, SessionId, SessionOrigin};

/// Sources tracked by the refusal limiter; beyond, new sources share one bucket.
const REFUSAL_SOURCES_MAX: usize = 4096;
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Where the engine's audit records go.
#[derive(Default)]
enum AuditMode {
    /// Not audited (tests of other things, `audit_log = false`).
    #[default]
    Off,
    /// Stored at once by an in-process sink (tests).
    Sink(Box<dyn AuditSink>),
    /// Handed out by `poll_audit`; completions come back through `handle_audit_done`.
    Queue,
}

/// Something waiting for its start record to be durable.
pub(super) enum Parked {
    /// A feature-code INVITE: answered 200 (or 500) once the record is stored (or not).
    FeatureCode(Box<FeatureCodeStart>),
    /// An API session: the supervisor's phone is called once the record is stored.
    Api(Box<ApiStartCtx>),
}

/// The outcome of handing a record to the log.
pub(super) enum Stored {
    /// Stored (or not) already: go on.
    Now(Result<(), AuditError>),
    /// Queued: park what depends on it under this id.
    Later(AuditId),
}

/// The engine's audit state: the sink or queue, parked starts and the refusal limiter.
#[derive(Default)]
pub(super) struct AuditLog {
    mode: AuditMode,
    next_id: AuditId,
    out: VecDeque<AuditAppend>,
    pub(super) parked: HashMap<AuditId, Parked>,
    api_replies: VecDeque<(AuditId, Result<SessionView, ApiRefusal>)>,
    refusals: HashMap<IpAddr, RefusalWindow>,
}

/// One source's refusal records in the current minute.
#[derive(Debug, Clone, Copy)]
struct RefusalWindow {
    start: Instant,
    written: u32,
    suppressed: u32,
}

impl AuditLog {
    /// Whether another unauthenticated refusal from `ip` may be written now.
    fn allow_refusal(&mut self, now: Instant, ip: IpAddr, per_minute: u32) -> bool {
        let ip = if self.refusals.len() >= REFUSAL_SOURCES_MAX && !self.refusals.contains_key(&ip) {
            IpAddr::from([0, 0, 0, 0])
        } else {
            ip
        };
        let w = self.refusals.entry(ip).or_insert(RefusalWindow {
            start: now,
            written: 0,
            suppressed: 0,
        });
        if w.written < per_minute {
            w.written += 1;
            true
        } else {
            w.suppressed += 1;
            false
        }
    }

    /// Close the windows older than a minute: the sources with refusals suppressed in them.
    fn expired_refusal_windows(&mut self, now: Instant) -> Vec<(IpAddr, u32)> {
        let mut out = Vec::new();
        self.refusals.retain(|ip, w| {
            let open = now.saturating_duration_since(w.start) < REFUSAL_WINDOW;
            if !open && w.suppressed > 0 {
                out.push((*ip, w.suppressed));
            }
            open
        });
        out.sort();
        out
    }
}

impl Engine {
    /// Store audit records in-process through `sink` (tests: `MemorySink`). Session starts go on
    /// at once when stored and are refused with 500 when not.
    pub fn set_audit_sink(&mut self, sink: Box<dyn AuditSink>) {
        self.audit.mode = AuditMode::Sink(sink);
    }

    /// Hand audit records out through [`poll_audit`](Self::poll_audit) (the server's durable
    /// log, written off the engine task). A session start waits for its completion
    /// ([`handle_audit_done`](Self::handle_audit_done)) before it goes on.
    pub fn use_audit_queue(&mut self) {
        self.audit.mode = AuditMode::Queue;
    }

    /// The next record to append to the audit log, in order; report each outcome with
    /// [`handle_audit_done`](Self::handle_audit_done).
    pub fn poll_audit(&mut self) -> Option<AuditAppend> {
        self.audit.out.pop_front()
    }

    /// Records handed out whose completion has not come back and that something waits for.
    pub fn audit_parked(&self) -> usize {
        self.audit.parked.len()
    }

    /// The outcome of appending record `id`: a parked session start goes on (or is refused
    /// with 500 / `AuditUnavailable`); a failed fire-and-forget record is logged.
    pub fn handle_audit_done(&mut self, now: Instant, id: AuditId, result: Result<(), AuditError>) {
        match self.audit.parked.remove(&id) {
            None => {
                if let Err(e) = result {
                    warn!(error = %e, record = id, "audit record not written");
                }
            }
            Some(Parked::FeatureCode(ctx)) => {
                if let Err(e) = &result {
                    warn!(error = %e, event = "start", supervisor = %ctx.who, agent = %ctx.ext, "audit record not written");
                }
                self.resume_feature_code(now, *ctx, result);
            }
            Some(Parked::Api(ctx)) => {
                if let Err(e) = &result {
                    warn!(error = %e, event = "start", supervisor = %ctx.supervisor, agent = %ctx.ext, "audit record not written");
                }
                let r = self.resume_api_start(now, *ctx, result);
                self.audit.api_replies.push_back((id, r));
            }
        }
        self.process(now);
    }

    /// The answer to an API session start that had to wait for its audit record
    /// ([`ApiStart::Pending`](super::ApiStart::Pending) with this id).
    pub fn poll_api_reply(&mut self) -> Option<(AuditId, Result<SessionView, ApiRefusal>)> {
        self.audit.api_replies.pop_front()
    }

    /// Hand a record to the log (see [`Stored`]).
    fn audit_store(&mut self, rec: AuditRecord) -> Stored {
        match &mut self.audit.mode {
            AuditMode::Off => Stored::Now(Ok(())),
            AuditMode::Sink(sink) => {
                let r = sink.append(&rec);
                if let Err(e) = &r {
                    warn!(error = %e, event = rec.event.as_str(), supervisor = %rec.supervisor, agent = %rec.agent, "audit record not written");
                }
                Stored::Now(r)
            }
            AuditMode::Queue => {
                self.audit.next_id += 1;
                let id = self.audit.next_id;
                self.audit.out.push_back(AuditAppend { id, record: rec });
                Stored::Later(id)
            }
        }
    }

    /// Park `what` until record `id` is durable.
    pub(super) fn park(&mut self, id: AuditId, what: Parked) {
        self.audit.parked.insert(id, what);
    }

    /// Record that a start that was on record did not become a session after all (its call
    /// ended, or the phone is gone, while the record was being written).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_abandoned_start(
        &mut self,
        supervisor: &str,
        agent: &str,
        call: CallId,
        sid: SessionId,
        mode: Mode,
        origin: SessionOrigin,
        reason: &str,
    ) {
        let rec = self.audit_record(
            AuditEvent::Stop,
            supervisor,
            agent,
            Some(call),
            sid,
            mode,
            Some(reason.to_string()),
            origin,
        );
        let _ = self.audit_store(rec);
    }

    /// Summary records for sources whose unauthenticated refusals were suppressed (housekeeping).
    pub(super) fn flush_refusal_summaries(&mut self, now: Instant) {
        for (ip, n) in self.audit.expired_refusal_windows(now) {
            let source = if ip.is_unspecified() {
                "other sources".to_string()
            } else {
                ip.to_string()
            };
            info!(%source, suppressed = n, "unauthenticated refusals not audited one by one");
            let rec = AuditRecord {
                event: AuditEvent::Refusal,
                supervisor: "-".into(),
                agent: "-".into(),
                call: None,
                sip_call_id: None,
                session: None,
                mode: None,
                reason: Some(format!(
                    "unauthenticated: {n} more refusals from {source} suppressed"
                )),
                origin: SessionOrigin::Phone,
            };
            let _ = self.audit_store(rec);
        }
    }

    /// Whether an unauthenticated refusal from `ip` gets its own record (rate limit).
    pub(super) fn allow_unauthenticated_refusal(&mut self, now: Instant, ip: IpAddr) -> bool {
        let per_minute = self.cfg.compliance.unauthenticated_refusals_per_minute;
        self.audit.allow_refusal(now, ip, per_minute)
    }

    /// Put a session start on record before the supervisor hears anything (docs/design.md §5:
    /// no record, no session). `Err`: the caller refuses the session.
    pub(super) fn audit_start(
        &mut self,
        supervisor: &str,
        agent: &str,
        call: CallId,
        sid: SessionId,
        mode: Mode,
        origin: SessionOrigin,
    ) -> Stored {
        let rec = self.audit_record(
            AuditEvent::Start,
            supervisor,
            agent,
            Some(call),
            sid,
            mode,
            None,
            origin,
        );
        self.audit_store(rec)
    }

    /// Record an event of a running session (a mode change, a stop). These are already in
    /// effect on the phone's side: a failed write is logged (by the sink or at its completion) but undoes
    /// nothing.
    pub(super) fn audit_session(&mut self, event: AuditEvent, sid: SessionId, reason: String) {
        if let Some(rec) = self.session_record(event, sid, Some(reason)) {
            let _ = self.audit_store(rec);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_record(
        &self,
        event: AuditEvent,
        supervisor: &str,
        agent: &str,
        call: Option<CallId>,
        session: SessionId,
        mode: Mode,
        reason: Option<String>,
        origin: SessionOrigin,
    ) -> AuditRecord {
        AuditRecord {
            event,
            supervisor: supervisor.to_string(),
            agent: agent.to_string(),
            call,
            sip_call_id: call.and_then(|c| self.agent_sip_call_id(c)),
            session: (session != 0).then_some(session),
            mode: Some(mode),
            reason,
            origin,
        }
    }

    /// The record of an existing session.
    fn session_record(
        &self,
        event: AuditEvent,
        sid: SessionId,
        reason: Option<String>,
    ) -> Option<AuditRecord> {
        let s = self.sessions.get(&sid)?;
        Some(self.audit_record(
            event,
            &s.supervisor,
            &s.agent,
            Some(s.call),
            sid,
            s.mode,
            reason,
            s.origin,
        ))
    }

    /// SIP Call-ID of the agent's dialog of a call (what a contact centre's records know).
    fn agent_sip_call_id(&self, call: CallId) -> Option<String> {
        let c = self.calls.get(&call)?;
        Some(c.leg(c.agent_side?).call_id.clone())
    }

    /// A refused session request: audit record, notice for metrics and events.
    pub(super) fn refuse_session(
        &mut self,
        supervisor: &str,
        agent: &str,
        call: Option<CallId>,
        mode: Mode,
        reason: &str,
        origin: SessionOrigin,
    ) {
        let rec = self.audit_record(
            AuditEvent::Refusal,
            supervisor,
            agent,
            call,
            0,
            mode,
            Some(reason.to_string()),
            origin,
        );
        let _ = self.audit_store(rec);
        self.notices.push_back(Notice::SessionRefused {
            supervisor: supervisor.to_string(),
            agent: agent.to_string(),
            mode,
            reason: reason.to_string(),
            origin,
        });
    }

    /// Play the policy's notification tone for a session that just attached (or barged in):
    /// to the agent, or to agent and customer, or to nobody.
    pub(super) fn play_notification(&mut self, sid: SessionId, barge: bool) {
        let Some(s) = self.sessions.get(&sid) else {
            return;
        };
        let (Some(sup), Some(agent)) = (self.cfg.user(&s.supervisor), self.cfg.user(&s.agent))
        else {
            return;
        };
        let notify = self.cfg.notify_for(sup, agent, s.mode);
        let Some(call) = self.calls.get(&s.call) else {
            return;
        };
        let Some(agent_side) = call.agent_side else {
            return;
        };
        // After barge promotion the agent's leg is gone: only the customer is left to tell.
        let agent_leg = call.promoted.is_none().then(|| agent_side.leg_id());
        let customer_leg = agent_side.other().leg_id();
        let legs: Vec<LegId> = match notify {
            Notify::None => return,
            Notify::Agent => agent_leg.into_iter().collect(),
            Notify::All => agent_leg.into_iter().chain([customer_leg]).collect(),
        };
        let tone = if barge {
            self.cfg.compliance.barge_tone
        } else {
            self.cfg.compliance.start_tone
        };
        let _e = s.span.enter();
        debug!(?legs, barge, "notification tone");
        self.media.push_back(MediaCommand::PlayTone {
            call: s.call,
            legs,
            tone,
        });
    }
}
