// bibridge operator console: the entry module (index.html loads it with type="module").
// Its one job: wire the page's controls to the modules below and boot (ask /api/me whether the
// login cookie is still good, then show the console or the login form). No framework, no build
// step: every file under js/ is an ES module served as is by the binary.
//
// Modules, each with one job:
//   js/state.js    the one state object, mode names, lookups over agents/calls/sessions
//   js/dom.js      element building (text only: server data never reaches innerHTML), formatting
//   js/api.js      fetch wrapper: bearer token, JSON bodies, problem+json text
//   js/feedback.js the status toast and the activity log
//   js/login.js    login, logout, session expiry, entering the console
//   js/stream.js   the event stream: the snapshot replaces state, events patch it
//   js/render.js   drawing agents, call details, the operator pane, meters, clocks
//   js/grid.js     roving tabindex and arrow-key navigation in the two tables
//   js/ribbon.js   the rules for what each control may do now, and the ribbon buttons
//   js/session.js  start / switch / stop of the supervisor's own session
//   js/legal.js    the legal notice (text from the server only) and its acknowledgement
//   js/menu.js     the right-click / keyboard context menu on agent and call rows

import { TOKEN_KEY, MODES, S, targetCall } from "./js/state.js";
import { $ } from "./js/dom.js";
import { api } from "./js/api.js";
import { showLogin, onLoginSubmit, logout, enterConsole } from "./js/login.js";
import { renderAll, renderAgents } from "./js/render.js";
import { gridKeys } from "./js/grid.js";
import { doAction } from "./js/session.js";
import { openMenu, closeMenu, menuKeys, activateItem, rowMenuPosition } from "./js/menu.js";

function selectAgent(ext) {
  if (S.selectedExt !== ext) S.selectedCall = null;
  S.selectedExt = ext;
  renderAll();
}

function selectCall(id) {
  S.selectedCall = id;
  renderAll();
}

function wire() {
  $("login-form").addEventListener("submit", onLoginSubmit);
  $("btn-logout").addEventListener("click", logout);
  $("agent-filter").addEventListener("input", renderAgents);

  for (const action of [...MODES, "stop"]) {
    $("btn-" + action).addEventListener("click", () => doAction(action, S.selectedExt, null));
  }

  const agents = $("agents-body");
  agents.addEventListener("click", (ev) => {
    const row = ev.target.closest("tr");
    if (row) {
      selectAgent(row.dataset.ext);
      const again = agents.querySelector(`tr[data-ext="${CSS.escape(row.dataset.ext)}"]`);
      if (again) again.focus();
    }
  });
  agents.addEventListener("keydown", (ev) => {
    if (ev.key === "ContextMenu" || (ev.key === "F10" && ev.shiftKey)) {
      const row = ev.target.closest("tr");
      if (!row) return;
      ev.preventDefault();
      selectAgent(row.dataset.ext);
      const again = agents.querySelector(`tr[data-ext="${CSS.escape(row.dataset.ext)}"]`) || row;
      const [x, y] = rowMenuPosition(again);
      const c = S.mySession && S.mySession.agent === row.dataset.ext ? S.calls.get(S.mySession.call) : targetCall(row.dataset.ext);
      openMenu(row.dataset.ext, c ? c.id : null, x, y, again);
      return;
    }
    gridKeys(ev, agents, (ext) => selectAgent(ext), "data-ext");
  });
  agents.addEventListener("contextmenu", (ev) => {
    const row = ev.target.closest("tr");
    if (!row) return;
    ev.preventDefault();
    selectAgent(row.dataset.ext);
    const again = agents.querySelector(`tr[data-ext="${CSS.escape(row.dataset.ext)}"]`) || row;
    const c = S.mySession && S.mySession.agent === row.dataset.ext ? S.calls.get(S.mySession.call) : targetCall(row.dataset.ext);
    openMenu(row.dataset.ext, c ? c.id : null, ev.clientX, ev.clientY, again);
  });

  const calls = $("calls-body");
  const callRow = (id) => calls.querySelector(`tr[data-call="${CSS.escape(id)}"]`);
  calls.addEventListener("click", (ev) => {
    const row = ev.target.closest("tr");
    if (!row) return;
    selectCall(row.dataset.call);
    const again = callRow(row.dataset.call);
    if (again) again.focus();
  });
  calls.addEventListener("contextmenu", (ev) => {
    const row = ev.target.closest("tr");
    if (!row) return;
    ev.preventDefault();
    selectCall(row.dataset.call);
    const again = callRow(row.dataset.call) || row;
    again.focus();
    openMenu(S.selectedExt, row.dataset.call, ev.clientX, ev.clientY, again);
  });
  calls.addEventListener("keydown", (ev) => {
    if (ev.key === "ContextMenu" || (ev.key === "F10" && ev.shiftKey)) {
      const row = ev.target.closest("tr");
      if (!row) return;
      ev.preventDefault();
      const [x, y] = rowMenuPosition(row);
      openMenu(S.selectedExt, row.dataset.call, x, y, row);
      return;
    }
    gridKeys(ev, calls, (id) => {
      selectCall(id);
      const again = callRow(id);
      if (again) again.focus();
    }, "data-call");
  });

  const box = $("ctx-menu");
  box.addEventListener("keydown", menuKeys);
  box.addEventListener("click", (ev) => {
    const item = ev.target.closest("[role=menuitem]");
    if (item) activateItem(item);
  });
  box.addEventListener("contextmenu", (ev) => ev.preventDefault());
  document.addEventListener("mousedown", (ev) => {
    if (!box.hidden && !box.contains(ev.target)) closeMenu(false);
  });
  window.addEventListener("blur", () => closeMenu(false));
  window.addEventListener("resize", () => closeMenu(false));
  document.addEventListener(
    "scroll",
    () => closeMenu(false),
    true
  );
}

async function boot() {
  wire();
  // The cookie may still be valid (page reload): ask who we are before showing the login form.
  let r = null;
  try {
    r = await api("GET", "/api/me");
  } catch (_) {
    r = null;
  }
  if (r && r.status === 200 && r.data) {
    enterConsole(r.data);
  } else if (r === null) {
    showLogin("Cannot reach bibridge. Reload the page to retry.");
  } else {
    if (S.token) {
      S.token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Session expired, please log in again", "info");
    } else {
      showLogin("");
    }
  }
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
else boot();
