// The supervisor's own session through the API: start (after the legal acknowledgement),
// switch mode, stop. One request at a time (`S.busy`).

import { MODE_VERB, S, findSession, setMySession } from "./state.js";
import { api, problemText } from "./api.js";
import { status } from "./feedback.js";
import { askAck } from "./legal.js";
import { sessionExpired } from "./login.js";
import { renderAll, clearEnded } from "./render.js";
import { actionState, renderRibbon } from "./ribbon.js";

export async function doAction(action, ext, callId) {
  const st = actionState(action, ext, callId);
  if (!st.enabled) {
    status(st.reason, "error");
    return;
  }
  if (st.kind === "stop") return stopSession();
  if (st.kind === "switch") {
    if (st.pressed) return;
    return switchMode(action);
  }
  if (!S.acked) {
    const ok = await askAck();
    if (!ok) {
      status("Not started: the legal notice was not acknowledged.", "info");
      return;
    }
    S.acked = true;
  }
  return startSession(st.call, action);
}

async function withBusy(fn) {
  S.busy = true;
  renderRibbon();
  try {
    return await fn();
  } catch (_) {
    status("Cannot reach bibridge.", "error");
  } finally {
    S.busy = false;
    renderAll();
  }
}

function startSession(callId, mode) {
  return withBusy(async () => {
    const r = await api("POST", "/api/sessions", { call: callId, mode });
    if (r.status === 401) return sessionExpired();
    if (r.status !== 201 && r.status !== 200) {
      status(problemText(r, "Could not start the session"), "error");
      return;
    }
    const s = r.data || {};
    clearEnded();
    if (!S.mySession || S.mySession.id !== s.id) {
      S.mySession = null;
      setMySession({ id: s.id, call: s.call || callId, agent: s.agent, mode: s.mode || mode, state: s.state || "calling" });
    }
    // A quick auto-answer can beat this response: then there is nothing to wait for.
    if (S.mySession && S.mySession.state !== "active") {
      S.callingToast = status(`Calling your phone for ${MODE_VERB[mode]}…`, "info");
    }
  });
}

function switchMode(mode) {
  const m = S.mySession;
  return withBusy(async () => {
    const r = await api("PATCH", "/api/sessions/" + encodeURIComponent(m.id), { mode });
    if (r.status === 401) return sessionExpired();
    if (!r.ok) {
      status(problemText(r, "Could not switch the mode"), "error");
      if (r.status === 404) {
        S.mySession = null;
        if (S.me) S.me.session = null;
      }
      return;
    }
    if (S.mySession && S.mySession.id === m.id) S.mySession.mode = (r.data && r.data.mode) || mode;
    const f = findSession(m.id);
    if (f) f.session.mode = (r.data && r.data.mode) || mode;
    status(`Switched to ${MODE_VERB[mode]}.`, "info");
  });
}

function stopSession() {
  const m = S.mySession;
  return withBusy(async () => {
    const r = await api("DELETE", "/api/sessions/" + encodeURIComponent(m.id));
    if (r.status === 401) return sessionExpired();
    if (!r.ok && r.status !== 404) {
      status(problemText(r, "Could not stop the session"), "error");
      return;
    }
    // session.ended follows on the stream; 404 means it is already gone.
    if (r.status === 404 && S.mySession && S.mySession.id === m.id) {
      S.mySession = null;
      if (S.me) S.me.session = null;
    }
  });
}
