//! `GET /api/events`: the console's live view (docs/api.md "Event stream").
//!
//! The stream subscribes to the engine's events *before* taking its snapshot, sends the snapshot
//! first and then only events numbered after it, so nothing is missed or seen twice. A client
//! too slow to keep up (the broadcast channel overflows) gets a fresh snapshot instead of a gap.
//! Level meters for the viewer's own sessions are read from [`Metrics`] five times a second.
//!
//! A task per client produces the events into a small channel; the response body drains it.
//! When the client goes away the channel closes and the task ends.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bibridge_b2bua::engine::{CallId, LegId};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::MissedTickBehavior;

use super::{me_json, AppState, Problem, St, Supervisor};
use crate::control::{agent_json, call_json, Event, Snapshot};

/// How often level meters are sent.
const LEVELS_EVERY: Duration = Duration::from_millis(200);
/// How often the stream checks that its token is still valid and the engine still runs.
const AUTH_EVERY: Duration = Duration::from_secs(5);
/// Comment lines that keep proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Level reported for a leg without a meter (not decoded, or silent).
const SILENCE_DB: f64 = -90.0;

/// A session the viewer holds, with the media legs its meters read.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    session: u64,
    call: CallId,
    customer: LegId,
    agent: LegId,
    supervisor: LegId,
}

/// Counts an open stream of a supervisor (all their logins together: a console tab needs one,
/// a few tabs are fine, `http.max_streams_per_user`); the count goes down when the stream's feed
/// task ends.
struct StreamSlot {
    st: St,
    user: String,
}

impl StreamSlot {
    fn take(st: &St, user: &str) -> Option<StreamSlot> {
        let mut n = st.streams.entry(user.to_string()).or_insert(0);
        if *n >= st.cfg.http.max_streams_per_user {
            return None;
        }
        *n += 1;
        drop(n);
        Some(StreamSlot {
            st: st.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.st.streams.remove_if_mut(&self.user, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

pub(super) async fn events(State(st): State<St>, sup: Supervisor) -> Result<Response, Problem> {
    let Some(slot) = StreamSlot::take(&st, &sup.extension) else {
        st.metrics
            .streams_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_streams",
            "Too many event streams",
            format!(
                "at most {} open event streams per supervisor",
                st.cfg.http.max_streams_per_user
            ),
        ));
    };
    let rx = st.control.subscribe();
    let snap = st
        .control
        .snapshot(Some(&sup.extension))
        .await
        .map_err(Problem::engine)?;
    let (tx, out) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        feed(st, sup, rx, snap, tx).await;
        drop(slot);
    });
    let stream = futures_util::stream::unfold(out, |mut out| async move {
        out.recv().await.map(|e| (Ok::<_, Infallible>(e), out))
    });
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("ping"))
        .into_response();
    // Reverse proxies (nginx) would otherwise buffer the stream.
    res.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(res)
}

fn held_sessions(snap: &Snapshot, me: &str) -> Vec<Held> {
    snap.calls
        .iter()
        .flat_map(|c| {
            c.sessions
                .iter()
                .filter(|s| s.supervisor == me)
                .map(move |s| Held {
                    session: s.id,
                    call: c.id,
                    customer: c.customer_leg,
                    agent: c.agent_leg,
                    supervisor: s.media_leg,
                })
        })
        .collect()
}

fn snapshot_event(st: &AppState, me: &str, snap: &Snapshot) -> SseEvent {
    let data = json!({
        "agents": snap.agents.iter().map(agent_json).collect::<Vec<_>>(),
        "calls": snap.calls.iter().map(|c| call_json(c, &st.control.clock)).collect::<Vec<_>>(),
        "me": me_json(st, me, snap),
    });
    SseEvent::default()
        .event("snapshot")
        .id(snap.seq.to_string())
        .data(data.to_string())
}

fn level(v: Option<f32>) -> f64 {
    // One decimal is all a meter shows.
    v.map_or(SILENCE_DB, |l| (f64::from(l) * 10.0).round() / 10.0)
        .max(SILENCE_DB)
}

fn levels_event(st: &AppState, h: &Held) -> SseEvent {
    let m = &st.metrics;
    let data = json!({
        "session": h.session.to_string(),
        "customer": level(m.level(h.call, h.customer)),
        "agent": level(m.level(h.call, h.agent)),
        "supervisor": level(m.level(h.call, h.supervisor)),
    });
    SseEvent::default().event("levels").data(data.to_string())
}

/// Whether an event changes which sessions the viewer holds.
fn changes_held(ev: &Event, me: &str) -> bool {
    matches!(ev.name, "session.calling" | "session.active") && ev.supervisor.as_deref() == Some(me)
}

fn id_of(data: &Value) -> Option<u64> {
    data.get("id")?.as_str()?.parse().ok()
}

async fn feed(
    st: St,
    sup: Supervisor,
    mut rx: broadcast::Receiver<Arc<Event>>,
    snap: Snapshot,
    tx: mpsc::Sender<SseEvent>,
) {
    let me = sup.extension.as_str();
    let mut last = snap.seq;
    let mut held = held_sessions(&snap, me);
    if tx.send(snapshot_event(&st, me, &snap)).await.is_err() {
        return;
    }
    let mut levels = tokio::time::interval(LEVELS_EVERY);
    levels.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut auth = tokio::time::interval(AUTH_EVERY);
    auth.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) => {
                    if ev.seq <= last {
                        continue;
                    }
                    last = ev.seq;
                    let out = SseEvent::default()
                        .event(ev.name)
                        .id(ev.seq.to_string())
                        .data(ev.data.to_string());
                    if tx.send(out).await.is_err() {
                        return;
                    }
                    if changes_held(&ev, me) {
                        // The legs of the call come with the snapshot (the event names only ids).
                        match st.control.snapshot(Some(me)).await {
                            Ok(s) => held = held_sessions(&s, me),
                            Err(_) => return,
                        }
                    } else if ev.name == "session.ended" {
                        if let Some(id) = id_of(&ev.data) {
                            held.retain(|h| h.session != id);
                        }
                    } else if ev.name == "call.ended" {
                        if let Some(id) = id_of(&ev.data) {
                            held.retain(|h| h.call != id);
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let Ok(s) = st.control.snapshot(Some(me)).await else {
                        return;
                    };
                    last = s.seq;
                    held = held_sessions(&s, me);
                    if tx.send(snapshot_event(&st, me, &s)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = levels.tick(), if !held.is_empty() => {
                for h in &held {
                    if tx.send(levels_event(&st, h)).await.is_err() {
                        return;
                    }
                }
            }
            _ = auth.tick() => {
                // Logged out or expired: the stream ends (EventSource then gets 401). So it does
                // when the engine has stopped: this task's own handle keeps the event channel
                // open, so the stream would not notice otherwise.
                if !st.auth.valid(&sup.token, Instant::now()) || st.control.stats().await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_rounded_and_floored() {
        assert_eq!(level(None), -90.0);
        assert_eq!(level(Some(-23.46)), -23.5);
        assert_eq!(level(Some(-120.0)), -90.0);
    }
}
