//! Compliance (docs/design.md §5): audit records for every session start, mode change, stop
//! and refusal, and the notification tones the policy asks for. The engine hands records to its
//! [`AuditSink`](crate::audit::AuditSink) synchronously (a start is connected only once stored)
//! and tones to the media plane as [`MediaCommand::PlayTone`].

use tracing::{debug, warn};

use super::media_plane::MediaCommand;
use super::{Engine, Notice};
use crate::audit::{AuditError, AuditEvent, AuditRecord};
use crate::config::{Mode, Notify};
use crate::ids::{CallId, LegId, SessionId, SessionOrigin};

impl Engine {
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
    ) -> Result<(), AuditError> {
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
        self.audit_write(rec)
    }

    /// Record an event of a running session (a mode change, a stop). These are already in
    /// effect on the phone's side: a failed write is logged (by `audit_write`) but undoes
    /// nothing.
    pub(super) fn audit_session(&mut self, event: AuditEvent, sid: SessionId, reason: String) {
        if let Some(rec) = self.session_record(event, sid, Some(reason)) {
            let _ = self.audit_write(rec);
        }
    }

    /// Store an audit record; `Err` (logged) when the sink cannot.
    fn audit_write(&mut self, rec: AuditRecord) -> Result<(), AuditError> {
        let Some(sink) = self.audit.as_mut() else {
            return Ok(());
        };
        let r = sink.append(&rec);
        if let Err(e) = &r {
            warn!(error = %e, event = rec.event.as_str(), supervisor = %rec.supervisor, agent = %rec.agent, "audit record not written");
        }
        r
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
        let _ = self.audit_write(rec);
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
