// What the supervisor may do right now (start, switch, stop: enabled or not, and why), and the
// ribbon buttons and hint line drawn from those rules. The context menu asks the same rules.

import { MODES, MODE_LABEL, MODE_VERB, S, agentLabel, targetCall } from "./state.js";
import { $ } from "./dom.js";

const REASON = {
  select: "Select an agent",
  bib: "Built-In-Bridge off on this device",
  policy: "Not allowed by policy",
  nocall: "No active call",
  other: "Stop your current session first",
  nosession: "You are not monitoring or coaching a call",
  busy: "Request in progress",
};

// Returns {enabled, reason, pressed, kind: "start"|"switch"|"stop", call}. `ext`/`callId` is the
// target the control refers to (ribbon: the selection; context menu: the row it opened on).
export function actionState(action, ext, callId) {
  const m = S.mySession;
  if (S.busy) return { enabled: false, reason: REASON.busy };
  if (action === "stop") {
    if (!m) return { enabled: false, reason: REASON.nosession };
    if (callId && m.call && callId !== m.call) return { enabled: false, reason: "Your session is on another call" };
    return { enabled: true, kind: "stop", reason: "Stop monitoring/coaching" };
  }
  if (m) {
    // Holding a session: the mode buttons switch it in place.
    if (callId && m.call && callId !== m.call) return { enabled: false, reason: REASON.other };
    const a = S.agents.get(m.agent);
    const allowed = a ? a.allowed_modes || [] : MODES;
    if (m.mode === action) return { enabled: true, pressed: true, kind: "switch", reason: `${MODE_LABEL[action]} (current mode)` };
    if (a && !a.builtin_bridge) return { enabled: false, reason: REASON.bib };
    if (!allowed.includes(action)) return { enabled: false, reason: REASON.policy };
    return { enabled: true, kind: "switch", reason: `Switch to ${MODE_VERB[action]}` };
  }
  if (!ext) return { enabled: false, reason: REASON.select };
  const a = S.agents.get(ext);
  if (!a) return { enabled: false, reason: REASON.select };
  if (!a.builtin_bridge) return { enabled: false, reason: REASON.bib };
  if (!(a.allowed_modes || []).includes(action)) return { enabled: false, reason: REASON.policy };
  let call = null;
  if (callId) {
    const c = S.calls.get(callId);
    call = c && c.state === "connected" ? c : null;
  } else {
    call = targetCall(ext);
  }
  if (!call) return { enabled: false, reason: REASON.nocall };
  const who = `${a.name || a.extension} with ${call.customer || "customer"}`;
  return { enabled: true, kind: "start", call: call.id, reason: `Start ${MODE_VERB[action]}: ${who}` };
}

export function renderRibbon() {
  const off = [];
  for (const action of [...MODES, "stop"]) {
    const st = actionState(action, S.selectedExt, null);
    const btn = $("btn-" + action);
    btn.disabled = !st.enabled;
    btn.title = st.reason || "";
    $("wrap-" + action).title = st.reason || "";
    if (action !== "stop") btn.setAttribute("aria-pressed", st.pressed ? "true" : "false");
    if (!st.enabled && action !== "stop") off.push([action, st.reason]);
  }
  // The same reasons as a visible line: keyboard users cannot hover a disabled button.
  let hint = "";
  if (!S.busy) {
    const reasons = [...new Set(off.map((o) => o[1]))];
    if (off.length === MODES.length && reasons.length === 1) hint = reasons[0];
    else hint = off.map(([a, r]) => `${MODE_LABEL[a]}: ${r}`).join(" · ");
    // Name the call the buttons act on, so a click never surprises.
    let on = null;
    if (S.mySession) {
      const c = S.calls.get(S.mySession.call);
      on = `Your session: ${agentLabel(S.mySession.agent || (c && c.agent) || "?")}${c && c.customer ? " – " + c.customer : ""}`;
    } else if (off.length < MODES.length) {
      const c = targetCall(S.selectedExt);
      if (c) on = `Target: ${agentLabel(c.agent)} – ${c.customer || "unknown"}`;
    }
    if (on) hint = hint ? `${on}. ${hint}` : on;
  }
  $("ribbon-hint").textContent = hint;
}
