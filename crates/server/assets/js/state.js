// Console state: the single object `S` every module reads and patches, the mode names, and
// lookups over it (an agent's calls, the call an action targets, the supervisor's own session).

import { parseTime } from "./dom.js";

export const TOKEN_KEY = "bibridge.token";
export const MODES = ["monitor", "coach", "barge"];
export const MODE_LABEL = { monitor: "Monitoring", coach: "Coaching", barge: "Barge" };
export const MODE_VERB = { monitor: "monitoring", coach: "coaching", barge: "barge" };

export const S = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null, // {extension, name, session, legal_notice}
  agents: new Map(), // ext -> agent
  calls: new Map(), // id -> call (with .sessions array)
  selectedExt: null,
  selectedCall: null,
  mySession: null, // {id, call, agent, mode, state, since, activeSince}
  acked: false, // legal notice acknowledged in this login (memory only)
  busy: false, // a start/switch/stop request is in flight
  es: null,
  esRetry: null,
  esDelay: 1000,
  meCheck: null,
  endedTimer: null,
  statusTimer: null,
  callingToast: null, // the "Calling your phone…" toast, dropped once the phone answers
  loginTimer: null,
  tickTimer: null,
  focusAgents: false,
};

export function agentName(ext) {
  const a = S.agents.get(ext);
  return a && a.name ? a.name : ext;
}

export function who(ext) {
  return S.me && ext === S.me.extension ? "You" : "Supervisor " + ext;
}

export function agentLabel(ext) {
  const n = agentName(ext);
  return n === ext ? ext : `${n} (${ext})`;
}

export function findSession(id) {
  for (const c of S.calls.values()) {
    for (const s of c.sessions || []) if (s.id === id) return { session: s, call: c };
  }
  return null;
}

export function setMySession(s, call, prev) {
  const now = Date.now();
  const p = prev || (S.mySession && S.mySession.id === s.id ? S.mySession : null);
  S.mySession = {
    id: s.id,
    call: s.call || (call && call.id) || (p && p.call),
    agent: s.agent || (call && call.agent) || (p && p.agent),
    mode: s.mode || (p && p.mode),
    state: s.state || (p && p.state) || "calling",
    since: p ? p.since : now,
    activeSince: s.state === "active" ? (p && p.activeSince) || now : null,
  };
  if (S.me) S.me.session = s.id;
}

export function callsOf(ext) {
  const out = [];
  for (const c of S.calls.values()) if (c.agent === ext) out.push(c);
  // Most recently connected first; ringing calls after connected ones.
  out.sort((a, b) => (parseTime(b.connected_at) || 0) - (parseTime(a.connected_at) || 0));
  return out;
}

// The call a start action targets: the selected call if it belongs to the agent and is
// connected, else the agent's most recently connected call (what the feature codes pick).
export function targetCall(ext) {
  if (!ext) return null;
  const list = callsOf(ext).filter((c) => c.state === "connected");
  if (S.selectedCall) {
    const sel = list.find((c) => c.id === S.selectedCall);
    if (sel) return sel;
  }
  return list[0] || null;
}
