//! The control plane's door into the engine task: requests from the HTTP API (snapshots, session
//! start/switch/stop) travel as `Input::Control` messages with a reply channel, so the engine
//! stays owned by one task; lifecycle notices come back as numbered [`Event`]s on a broadcast
//! channel for the SSE stream.
//!
//! Wall-clock times: the engine works in `Instant`s; [`Clock`] turns them into UTC for the API.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bibridge_b2bua::config::Mode;
use bibridge_b2bua::engine::{
    AgentView, ApiRefusal, ApiStart, CallView, Engine, EngineStats, Notice, SessionId,
    SessionTarget, SessionView,
};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::Input;

/// How many events a slow SSE client may fall behind before it gets a fresh snapshot.
pub const EVENT_BACKLOG: usize = 1024;

/// A request to the engine task.
pub enum ControlRequest {
    /// Agents and calls as `viewer` sees them, with the sequence number of the last event
    /// included in it.
    Snapshot {
        viewer: Option<String>,
        reply: oneshot::Sender<Snapshot>,
    },
    StartSession {
        supervisor: String,
        target: SessionTarget,
        mode: Mode,
        reply: oneshot::Sender<Result<SessionView, ApiRefusal>>,
    },
    SwitchMode {
        supervisor: String,
        session: SessionId,
        mode: Mode,
        reply: oneshot::Sender<Result<SessionView, ApiRefusal>>,
    },
    StopSession {
        supervisor: String,
        session: SessionId,
        reply: oneshot::Sender<Result<(), ApiRefusal>>,
    },
    Session {
        session: SessionId,
        reply: oneshot::Sender<Option<SessionView>>,
    },
    Stats {
        reply: oneshot::Sender<EngineStats>,
    },
}

/// Everything a console needs at once.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Sequence number of the last event reflected in this snapshot.
    pub seq: u64,
    pub agents: Vec<AgentView>,
    pub calls: Vec<CallView>,
}

/// A lifecycle event for the SSE stream: `name` is the SSE event name (docs/api.md), `data` its
/// JSON payload.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: u64,
    pub name: &'static str,
    pub data: Value,
    /// The supervisor a session event concerns (level meters are sent to them only).
    pub supervisor: Option<String>,
}

/// Errors talking to the engine task.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the engine task is not running")]
    Stopped,
}

/// Cloneable handle for the HTTP layer.
#[derive(Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Input>,
    events: broadcast::Sender<Arc<Event>>,
    pub clock: Clock,
}

impl ControlHandle {
    pub(crate) fn new(
        tx: mpsc::Sender<Input>,
        events: broadcast::Sender<Arc<Event>>,
        clock: Clock,
    ) -> Self {
        ControlHandle { tx, events, clock }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ControlRequest,
    ) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Control(make(reply)))
            .await
            .map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)
    }

    /// Subscribe to events. Subscribe *before* taking a snapshot, then drop events whose `seq`
    /// is not above the snapshot's.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub async fn snapshot(&self, viewer: Option<&str>) -> Result<Snapshot, ControlError> {
        let viewer = viewer.map(str::to_string);
        self.ask(|reply| ControlRequest::Snapshot { viewer, reply })
            .await
    }

    pub async fn start_session(
        &self,
        supervisor: &str,
        target: SessionTarget,
        mode: Mode,
    ) -> Result<Result<SessionView, ApiRefusal>, ControlError> {
        let supervisor = supervisor.to_string();
        self.ask(|reply| ControlRequest::StartSession {
            supervisor,
            target,
            mode,
            reply,
        })
        .await
    }

    pub async fn switch_mode(
        &self,
        supervisor: &str,
        session: SessionId,
        mode: Mode,
    ) -> Result<Result<SessionView, ApiRefusal>, ControlError> {
        let supervisor = supervisor.to_string();
        self.ask(|reply| ControlRequest::SwitchMode {
            supervisor,
            session,
            mode,
            reply,
        })
        .await
    }

    pub async fn stop_session(
        &self,
        supervisor: &str,
        session: SessionId,
    ) -> Result<Result<(), ApiRefusal>, ControlError> {
        let supervisor = supervisor.to_string();
        self.ask(|reply| ControlRequest::StopSession {
            supervisor,
            session,
            reply,
        })
        .await
    }

    pub async fn session(&self, session: SessionId) -> Result<Option<SessionView>, ControlError> {
        self.ask(|reply| ControlRequest::Session { session, reply })
            .await
    }

    pub async fn stats(&self) -> Result<EngineStats, ControlError> {
        self.ask(|reply| ControlRequest::Stats { reply }).await
    }
}

/// Maps the engine's `Instant`s to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    /// RFC 3339 UTC with milliseconds.
    pub fn rfc3339(&self, t: Instant) -> String {
        let wall = if t >= self.instant {
            self.system + (t - self.instant)
        } else {
            self.system - (self.instant - t)
        };
        rfc3339(wall)
    }
}

/// Format a system time as RFC 3339 UTC (`2026-11-25T14:03:07.120Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's well-known civil-from-days algorithm, written out here).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// JSON of an agent (docs/api.md).
pub fn agent_json(a: &AgentView) -> Value {
    json!({
        "extension": a.extension,
        "name": a.name,
        "registered": a.registered,
        "builtin_bridge": a.builtin_bridge,
        "calls": a.calls.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "allowed_modes": a.allowed_modes.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
    })
}

/// JSON of a session.
pub fn session_json(s: &SessionView) -> Value {
    json!({
        "id": s.id.to_string(),
        "call": s.call.to_string(),
        "agent": s.agent,
        "supervisor": s.supervisor,
        "mode": s.mode.as_str(),
        "state": s.state.as_str(),
        "origin": s.origin.as_str(),
    })
}

/// JSON of a call.
pub fn call_json(c: &CallView, clock: &Clock) -> Value {
    json!({
        "id": c.id.to_string(),
        "agent": c.agent,
        "customer": c.customer,
        "connected_at": c.connected_at.map(|t| clock.rfc3339(t)),
        "state": if c.connected { "connected" } else { "ringing" },
        "sessions": c.sessions.iter().map(session_json).collect::<Vec<_>>(),
    })
}

/// Parse an API id (`"7"`).
pub fn parse_id(s: &str) -> Option<u64> {
    s.parse().ok()
}

/// Numbers events and publishes them; lives in the engine task.
pub(crate) struct EventPublisher {
    seq: u64,
    tx: broadcast::Sender<Arc<Event>>,
    clock: Clock,
}

impl EventPublisher {
    pub(crate) fn new(tx: broadcast::Sender<Arc<Event>>, clock: Clock) -> Self {
        EventPublisher { seq: 0, tx, clock }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    fn publish(&mut self, name: &'static str, data: Value, supervisor: Option<String>) {
        self.seq += 1;
        // No subscribers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(Event {
            seq: self.seq,
            name,
            data,
            supervisor,
        }));
    }

    /// Turn an engine notice into an API event (some need the engine's current view).
    pub(crate) fn on_notice(&mut self, engine: &Engine, n: &Notice) {
        match n {
            Notice::Registered { user } => {
                if is_agent(engine, user) {
                    self.publish("agent.registered", json!({ "extension": user }), None)
                }
            }
            Notice::Unregistered { user } => {
                if is_agent(engine, user) {
                    self.publish("agent.unregistered", json!({ "extension": user }), None)
                }
            }
            Notice::CallStarted { call, .. } => {
                if let Some(c) = engine.call_view(*call) {
                    let data = call_json(&c, &self.clock);
                    self.publish("call.started", data, None);
                }
            }
            Notice::CallAnswered { call } => {
                if let Some(c) = engine.call_view(*call) {
                    let data = call_json(&c, &self.clock);
                    self.publish("call.connected", data, None);
                }
            }
            Notice::CallEnded { call, reason } => self.publish(
                "call.ended",
                json!({ "id": call.to_string(), "reason": reason }),
                None,
            ),
            Notice::SessionCalling {
                session,
                supervisor,
                ..
            } => {
                if let Some(s) = engine.session_view(*session) {
                    self.publish(
                        "session.calling",
                        session_json(&s),
                        Some(supervisor.clone()),
                    );
                }
            }
            Notice::SessionStarted {
                session,
                supervisor,
                ..
            } => {
                if let Some(s) = engine.session_view(*session) {
                    self.publish("session.active", session_json(&s), Some(supervisor.clone()));
                }
            }
            Notice::SessionMode { session, mode } => {
                let sup = engine.session_view(*session).map(|s| s.supervisor);
                self.publish(
                    "session.mode",
                    json!({ "id": session.to_string(), "mode": mode.as_str() }),
                    sup,
                )
            }
            Notice::SessionEnded { session, reason } => self.publish(
                "session.ended",
                json!({ "id": session.to_string(), "reason": reason }),
                None,
            ),
            Notice::SessionRefused { .. } => {}
        }
    }
}

fn is_agent(engine: &Engine, user: &str) -> bool {
    engine
        .config()
        .user(user)
        .is_some_and(|u| u.has_role(bibridge_b2bua::config::Role::Agent))
}

/// Where an API session start's answer goes.
pub(crate) type StartReply = oneshot::Sender<Result<SessionView, ApiRefusal>>;

/// Carry out one control request against the engine (engine task). A session start that waits
/// for its audit record leaves its reply channel in `waiting` under the record's id.
pub(crate) fn handle(
    engine: &mut Engine,
    seq: u64,
    req: ControlRequest,
    waiting: &mut std::collections::HashMap<bibridge_b2bua::audit::AuditId, StartReply>,
) {
    let now = Instant::now();
    match req {
        ControlRequest::Snapshot { viewer, reply } => {
            let _ = reply.send(Snapshot {
                seq,
                agents: engine.agents(now, viewer.as_deref()),
                calls: engine.calls(),
            });
        }
        ControlRequest::StartSession {
            supervisor,
            target,
            mode,
            reply,
        } => match engine.begin_session(now, &supervisor, target, mode) {
            ApiStart::Done(r) => {
                let _ = reply.send(r);
            }
            ApiStart::Pending(id) => {
                waiting.insert(id, reply);
            }
        },
        ControlRequest::SwitchMode {
            supervisor,
            session,
            mode,
            reply,
        } => {
            let _ = reply.send(engine.api_switch_mode(now, &supervisor, session, mode));
        }
        ControlRequest::StopSession {
            supervisor,
            session,
            reply,
        } => {
            let _ = reply.send(engine.stop_session(now, &supervisor, session));
        }
        ControlRequest::Session { session, reply } => {
            let _ = reply.send(engine.session_view(session));
        }
        ControlRequest::Stats { reply } => {
            let _ = reply.send(engine.stats());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_614_187_120);
        assert_eq!(rfc3339(t), "2026-11-25T13:43:07.120Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // A leap day.
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }
}
