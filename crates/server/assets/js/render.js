// Drawing the state: the agent list, the selected agent's calls, the operator pane with its
// meters, the footer notice, and the once-a-second clocks. Reads `S`; changes only the DOM.

import { MODES, MODE_LABEL, S, agentName, callsOf, targetCall } from "./state.js";
import { $, el, fmtDuration, parseTime, initials } from "./dom.js";
import { status } from "./feedback.js";
import { showNotice } from "./legal.js";
import { focusedKey, fixRoving } from "./grid.js";
import { renderRibbon } from "./ribbon.js";

export function renderMe() {
  if (!S.me) return;
  $("me-name").textContent = S.me.name || "Supervisor";
  $("me-ext").textContent = "Ext. " + (S.me.extension || "");
  showNotice(S.me.legal_notice);
}

export function renderAll() {
  if (!S.me) return;
  renderAgents();
  renderDetails();
  renderOperator();
  renderRibbon();
}

export function renderAgents() {
  const tbody = $("agents-body");
  const keep = focusedKey(tbody, "data-ext");
  const filter = $("agent-filter").value.trim().toLowerCase();
  const agents = [...S.agents.values()].sort((a, b) =>
    a.extension.localeCompare(b.extension, undefined, { numeric: true })
  );
  let inCall = 0;
  const rows = [];
  for (const a of agents) {
    const calls = callsOf(a.extension);
    if (calls.length) inCall += 1;
    if (filter && !a.extension.toLowerCase().includes(filter) && !(a.name || "").toLowerCase().includes(filter)) {
      continue;
    }
    const connected = calls.filter((c) => c.state === "connected").length;
    const ringing = calls.length - connected;
    let callText = "—";
    let callClass = "incall-none";
    if (connected) {
      callText = connected > 1 ? `Yes (${connected})` : "Yes";
      callClass = "incall-yes";
    } else if (ringing) {
      callText = "Ringing";
      callClass = "incall-ringing";
    }
    const watched = calls.some((c) => (c.sessions || []).length > 0);
    const sel = a.extension === S.selectedExt;
    const tr = el(
      "tr",
      { "data-ext": a.extension, tabindex: "-1", "aria-selected": sel ? "true" : "false", class: sel ? "is-selected" : null },
      el("td", { class: "mono" }, a.extension),
      el("td", { class: "name" }, a.name || ""),
      el(
        "td",
        null,
        el("span", { class: "reg " + (a.registered ? "reg-on" : "reg-off") }, a.registered ? "Registered" : "Offline")
      ),
      el(
        "td",
        null,
        el("span", { class: "incall " + callClass }, callText),
        watched ? el("span", { class: "watch", title: "A supervisor is attached" }, el("span", { class: "sr-only" }, ", supervised")) : null
      ),
      el("td", null, el("span", { class: "pill " + (a.builtin_bridge ? "pill-on" : "pill-off") }, a.builtin_bridge ? "On" : "Off"))
    );
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  $("agents-empty").hidden = rows.length > 0;
  $("agents-empty").textContent = S.agents.size ? "No agent matches the filter." : "No agents.";
  $("agents-count").textContent = `${S.agents.size} · ${inCall} in call`;
  fixRoving(tbody, "data-ext", keep, S.selectedExt);
}

function renderDetails() {
  const a = S.selectedExt ? S.agents.get(S.selectedExt) : null;
  $("details-empty").hidden = !!a;
  $("details").hidden = !a;
  $("details-title").textContent = a ? `Details — ${a.name || a.extension}` : "Details";
  const tbody = $("calls-body");
  if (!a) {
    tbody.replaceChildren();
    return;
  }
  $("d-avatar").textContent = initials(a.name || a.extension);
  $("d-name").textContent = a.name || a.extension;
  $("d-ext").textContent = "Ext. " + a.extension;
  const reg = $("d-reg");
  reg.textContent = a.registered ? "Registered" : "Offline";
  reg.className = "reg " + (a.registered ? "reg-on" : "reg-off");
  const bib = $("d-bib");
  bib.textContent = "Built-In-Bridge " + (a.builtin_bridge ? "On" : "Off");
  bib.className = "pill " + (a.builtin_bridge ? "pill-on" : "pill-off");
  const modes = $("d-modes");
  const allowed = a.allowed_modes || [];
  modes.replaceChildren(
    ...(allowed.length
      ? MODES.filter((m) => allowed.includes(m)).map((m) => el("span", { class: "mode-tag mode-" + m }, MODE_LABEL[m]))
      : [el("span", { class: "muted" }, "None")])
  );

  const keep = focusedKey(tbody, "data-call");
  const calls = callsOf(a.extension);
  const target = targetCall(a.extension);
  const rows = calls.map((c) => {
    const sel = target && c.id === target.id;
    const since = parseTime(c.connected_at);
    const sess = (c.sessions || []).map((s) => {
      const me = S.me && s.supervisor === S.me.extension;
      return el(
        "span",
        { class: "sess mode-" + s.mode + (me ? " sess-me" : "") },
        (me ? "You" : s.supervisor) + " · " + (MODE_LABEL[s.mode] || s.mode) + (s.state === "calling" ? " (calling)" : "")
      );
    });
    return el(
      "tr",
      {
        "data-call": c.id,
        tabindex: "-1",
        "aria-selected": sel ? "true" : "false",
        "aria-haspopup": "menu",
        class: sel ? "is-selected" : null,
      },
      el(
        "td",
        { class: "customer" },
        el("span", { class: "mono" }, c.customer || "unknown"),
        sess.length ? el("div", { class: "sessions" }, el("span", { class: "sr-only" }, "Supervisors: "), ...sess) : null
      ),
      el("td", null, el("span", { class: "cstate cstate-" + c.state }, c.state === "connected" ? "Connected" : "Ringing")),
      el("td", { class: "mono dur", "data-since": since || null }, since ? fmtDuration(Date.now() - since) : "—")
    );
  });
  tbody.replaceChildren(...rows);
  $("calls-empty").hidden = rows.length > 0;
  fixRoving(tbody, "data-call", keep, target && target.id);
}

function renderOperator() {
  const op = $("operator");
  const m = S.mySession;
  const state = m ? (m.state === "active" ? "active" : "calling") : "idle";
  op.dataset.state = state;
  op.dataset.mode = m && m.mode ? m.mode : "";
  const call = m && m.call ? S.calls.get(m.call) : null;
  $("op-state").textContent = state === "active" ? "Active" : state === "calling" ? "Calling your phone…" : "Idle";
  const agentExt = (m && m.agent) || (call && call.agent);
  $("op-agent").textContent = m ? (agentExt ? `${agentName(agentExt)} (${agentExt})` : "—") : "—";
  $("op-customer").textContent = m && call ? call.customer || "unknown" : "—";
  const mode = $("op-mode");
  mode.textContent = m && m.mode ? MODE_LABEL[m.mode] || m.mode : "—";
  mode.className = "mode-tag" + (m && m.mode ? " mode-" + m.mode : "");
  $("op-help").hidden = !!m;
  for (const tr of document.querySelectorAll(".mode-legend tbody tr")) {
    tr.classList.toggle("is-current", !!(m && tr.dataset.mode === m.mode));
  }
  if (!m) {
    setMeter("meter-customer", -90, true);
    setMeter("meter-agent", -90, true);
    setMeter("meter-you", -90, true);
  }
  renderElapsed();
}

function renderElapsed() {
  const m = S.mySession;
  const e = $("op-elapsed");
  if (!m) {
    e.textContent = "";
    return;
  }
  const from = m.state === "active" ? m.activeSince || m.since : m.since;
  e.textContent = fmtDuration(Date.now() - from);
}

export function showEnded(reason) {
  const p = $("op-ended");
  p.textContent = "Session ended" + (reason ? ": " + reason : "");
  p.hidden = false;
  clearTimeout(S.endedTimer);
  S.endedTimer = setTimeout(clearEnded, 8000);
  status(p.textContent, "info");
}

export function clearEnded() {
  clearTimeout(S.endedTimer);
  $("op-ended").hidden = true;
}

export function setMeter(id, db, idle) {
  const m = $(id);
  let v = Number(db);
  if (!Number.isFinite(v)) v = -90;
  v = Math.max(-90, Math.min(0, v));
  const pct = ((v + 90) / 90) * 100;
  m.firstElementChild.style.width = 100 - pct + "%";
  m.setAttribute("aria-valuenow", v.toFixed(1));
  m.setAttribute("aria-valuetext", v <= -89.5 ? "silence" : v.toFixed(0) + " dBFS");
  const label = m.nextElementSibling;
  label.textContent = idle ? "—" : v <= -89.5 ? "-∞" : v.toFixed(0);
}

export function tick() {
  const now = Date.now();
  for (const td of document.querySelectorAll("#calls-body td[data-since]")) {
    td.textContent = fmtDuration(now - Number(td.getAttribute("data-since")));
  }
  renderElapsed();
}
