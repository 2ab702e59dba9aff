// The live event stream (`GET /api/events`): a snapshot replaces the state, lifecycle events
// patch it, level events feed the meters. Reconnects with backoff; a lost login goes to the
// handler `startStream` was given (the login module), so this module does not import it.

import { MODE_VERB, S, who, agentLabel, findSession, setMySession } from "./state.js";
import { $ } from "./dom.js";
import { api } from "./api.js";
import { dropStatus, activity } from "./feedback.js";
import { renderMe, renderAll, showEnded, clearEnded, setMeter } from "./render.js";

// Who to tell when the stream ends because the login is gone (set by the first start).
let onExpired = () => {};

// Opens the stream; `expired` runs when the server no longer knows the login.
export function startStream(expired = onExpired) {
  onExpired = expired;
  stopStream();
  const es = new EventSource("/api/events");
  S.es = es;
  es.addEventListener("open", () => {
    S.esDelay = 1000;
  });
  es.addEventListener("error", () => onStreamError(es));
  const on = (name, fn) =>
    es.addEventListener(name, (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      fn(data);
    });
  on("snapshot", applySnapshot);
  on("agent.registered", (d) => {
    activity(`${agentLabel(d.extension)} registered`);
    setRegistered(d.extension, true);
  });
  on("agent.unregistered", (d) => {
    activity(`${agentLabel(d.extension)} went offline`);
    setRegistered(d.extension, false);
  });
  on("call.started", (c) => {
    activity(`${c.customer || "Unknown caller"} ringing at ${agentLabel(c.agent)}`);
    upsertCall(c);
  });
  on("call.connected", (c) => {
    activity(`${agentLabel(c.agent)} connected with ${c.customer || "unknown"}`);
    upsertCall(c);
  });
  on("call.ended", callEnded);
  on("session.calling", upsertSession);
  on("session.active", upsertSession);
  on("session.mode", sessionMode);
  on("session.ended", sessionEnded);
  on("levels", levels);
}

export function stopStream() {
  clearTimeout(S.esRetry);
  S.esRetry = null;
  if (S.es) {
    S.es.close();
    S.es = null;
  }
}

function setConn(text) {
  $("conn").hidden = !text;
  if (text) $("conn-text").textContent = text;
}

// The stream dropped: EventSource retries by itself while the server is unreachable, but
// gives up for good on an HTTP error (e.g. 401 after a restart). /api/me tells the two apart.
function onStreamError(es) {
  if (es !== S.es) return;
  setConn("Connection lost. Reconnecting…");
  if (S.meCheck) return;
  S.meCheck = (async () => {
    let r = null;
    try {
      r = await api("GET", "/api/me");
    } catch (_) {
      r = null; // server unreachable
    }
    S.meCheck = null;
    if (es !== S.es) return;
    if (r && r.status === 401) {
      onExpired();
      return;
    }
    if (es.readyState === EventSource.CLOSED) {
      clearTimeout(S.esRetry);
      S.esRetry = setTimeout(() => {
        if (S.es === es) startStream();
      }, S.esDelay);
      S.esDelay = Math.min(S.esDelay * 2, 15000);
    }
  })();
}

function applySnapshot(d) {
  setConn("");
  S.agents = new Map();
  for (const a of d.agents || []) S.agents.set(a.extension, a);
  S.calls = new Map();
  for (const c of d.calls || []) {
    c.sessions = c.sessions || [];
    S.calls.set(c.id, c);
  }
  const prevMe = S.me || {};
  S.me = Object.assign({}, prevMe, d.me || {});
  if (!S.agents.has(S.selectedExt)) S.selectedExt = null;
  if (S.selectedCall && !S.calls.has(S.selectedCall)) S.selectedCall = null;
  // Rebuild "my session" from the snapshot, keeping local timing when it is the same one.
  const sid = S.me.session;
  if (sid) {
    const found = findSession(sid);
    const prev = S.mySession && S.mySession.id === sid ? S.mySession : null;
    if (found) setMySession(found.session, found.call, prev);
    else if (prev) S.mySession = prev;
    else S.mySession = { id: sid, call: null, agent: null, mode: null, state: "calling", since: Date.now() };
  } else {
    S.mySession = null;
  }
  renderMe();
  renderAll();
  // Right after login nothing has focus yet (the form is gone): start keyboard users in the list.
  if (S.focusAgents) {
    S.focusAgents = false;
    const a = document.activeElement;
    if (!a || a === document.body) {
      const row = document.querySelector('#agents-body tr[tabindex="0"]');
      if (row) row.focus();
    }
  }
}

function setRegistered(ext, on) {
  const a = S.agents.get(ext);
  if (!a) return;
  a.registered = on;
  renderAll();
}

function upsertCall(c) {
  const old = S.calls.get(c.id);
  c.sessions = c.sessions || (old ? old.sessions : []);
  S.calls.set(c.id, c);
  const a = S.agents.get(c.agent);
  if (a) {
    a.calls = a.calls || [];
    if (!a.calls.includes(c.id)) a.calls.push(c.id);
  }
  renderAll();
}

function callEnded(d) {
  const c = S.calls.get(d.id);
  if (c) activity(`Call ${agentLabel(c.agent)} – ${c.customer || "unknown"} ended${d.reason ? ": " + d.reason : ""}`);
  S.calls.delete(d.id);
  if (c) {
    const a = S.agents.get(c.agent);
    if (a && a.calls) a.calls = a.calls.filter((x) => x !== d.id);
  }
  if (S.selectedCall === d.id) S.selectedCall = null;
  renderAll();
}

function upsertSession(s) {
  const c = S.calls.get(s.call);
  const target = agentLabel(s.agent || (c && c.agent) || "?");
  const verb = MODE_VERB[s.mode] || s.mode;
  if (s.state === "calling") activity(`${who(s.supervisor)}: ${verb} ${target} (calling phone)`);
  else activity(`${who(s.supervisor)}: ${verb} ${target}`);
  if (c) {
    c.sessions = c.sessions || [];
    const i = c.sessions.findIndex((x) => x.id === s.id);
    const rec = { id: s.id, supervisor: s.supervisor, mode: s.mode, state: s.state };
    if (i >= 0) c.sessions[i] = Object.assign(c.sessions[i], rec);
    else c.sessions.push(rec);
  }
  const mine =
    (S.mySession && S.mySession.id === s.id) ||
    (S.me && S.me.session === s.id) ||
    (S.me && !S.me.session && s.supervisor === S.me.extension && s.origin === "api");
  if (mine) {
    clearEnded();
    setMySession(s, c);
    // The phone answered: "Calling your phone…" would now contradict the Active pane.
    if (s.state === "active") dropStatus(S.callingToast);
  }
  renderAll();
}

function sessionMode(d) {
  const f = findSession(d.id);
  if (f) activity(`${who(f.session.supervisor)}: switched to ${MODE_VERB[d.mode] || d.mode} on ${agentLabel(f.call.agent)}`);
  if (f) f.session.mode = d.mode;
  if (S.mySession && S.mySession.id === d.id) S.mySession.mode = d.mode;
  renderAll();
}

function sessionEnded(d) {
  const f = findSession(d.id);
  if (f) {
    activity(`${who(f.session.supervisor)}: session on ${agentLabel(f.call.agent)} ended${d.reason ? ": " + d.reason : ""}`);
  } else if (S.mySession && S.mySession.id === d.id) {
    activity(`You: session ended${d.reason ? ": " + d.reason : ""}`);
  }
  if (f) f.call.sessions = f.call.sessions.filter((x) => x.id !== d.id);
  if (S.mySession && S.mySession.id === d.id) {
    S.mySession = null;
    if (S.me) S.me.session = null;
    showEnded(d.reason);
  } else if (S.me && S.me.session === d.id) {
    S.me.session = null;
  }
  renderAll();
}

function levels(d) {
  if (!S.mySession || d.session !== S.mySession.id) return;
  setMeter("meter-customer", d.customer);
  setMeter("meter-agent", d.agent);
  setMeter("meter-you", d.supervisor);
}
