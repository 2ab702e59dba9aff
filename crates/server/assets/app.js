// bibridge operator console.
//
// Layout: one file, no framework. Sections, top to bottom:
//   - state + helpers (DOM building with textContent only: server data never reaches innerHTML)
//   - HTTP (fetch wrapper that adds the bearer token and decodes problem+json)
//   - login / logout / session-expired handling
//   - event stream (snapshot replaces state, incremental events patch it)
//   - rendering (agents, details, operator pane, ribbon, legal notice)
//   - actions (start / switch / stop) and the rules deciding what is enabled
//   - keyboard: grid navigation and the context menu
"use strict";

(function () {
  const TOKEN_KEY = "bibridge.token";
  const MODES = ["monitor", "coach", "barge"];
  const MODE_LABEL = { monitor: "Monitoring", coach: "Coaching", barge: "Barge" };
  const MODE_VERB = { monitor: "monitoring", coach: "coaching", barge: "barge" };
  const DEFAULT_NOTICE =
    "Monitoring calls is subject to legal restrictions in most countries. Make sure you are allowed to listen in.";
  const REASON = {
    select: "Select an agent",
    bib: "Built-In-Bridge off on this device",
    policy: "Not allowed by policy",
    nocall: "No active call",
    other: "Stop your current session first",
    nosession: "You are not monitoring or coaching a call",
    busy: "Request in progress",
  };

  // ---- state ---------------------------------------------------------------------------------
  const S = {
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

  const $ = (id) => document.getElementById(id);

  // Creates an element. Text children become text nodes, so server strings stay inert.
  function el(tag, attrs, ...children) {
    const n = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") n.className = v;
        else if (k === "text") n.textContent = v;
        else n.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      n.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return n;
  }

  function fmtDuration(ms) {
    const t = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(t / 3600);
    const m = Math.floor((t % 3600) / 60);
    const s = t % 60;
    const p = (x) => String(x).padStart(2, "0");
    return h > 0 ? `${h}:${p(m)}:${p(s)}` : `${p(m)}:${p(s)}`;
  }

  function parseTime(s) {
    if (!s) return null;
    const t = Date.parse(s);
    return Number.isFinite(t) ? t : null;
  }

  function agentName(ext) {
    const a = S.agents.get(ext);
    return a && a.name ? a.name : ext;
  }

  // ---- HTTP ----------------------------------------------------------------------------------
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (S.token) headers.Authorization = "Bearer " + S.token;
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    const ct = res.headers.get("Content-Type") || "";
    if (res.status !== 204 && ct.includes("json")) {
      try {
        data = await res.json();
      } catch (_) {
        data = null;
      }
    }
    return { status: res.status, ok: res.ok, data, res };
  }

  function problemText(r, fallback) {
    const d = r.data || {};
    if (d.detail && d.title) return `${d.title}: ${d.detail}`;
    return d.detail || d.title || `${fallback} (HTTP ${r.status})`;
  }

  // ---- status area ---------------------------------------------------------------------------
  function status(msg, kind) {
    const box = $("status");
    const toast = el("div", { class: "toast toast-" + (kind || "info") }, msg);
    box.replaceChildren(toast);
    clearTimeout(S.statusTimer);
    S.statusTimer = setTimeout(() => box.replaceChildren(), kind === "error" ? 9000 : 5000);
    return toast;
  }

  // Removes `toast` if it is still the one shown (a newer message stays).
  function dropStatus(toast) {
    if (toast && toast.isConnected) {
      clearTimeout(S.statusTimer);
      toast.remove();
    }
  }

  // ---- activity log (newest first, bounded) --------------------------------------------------
  const ACTIVITY_MAX = 100;

  function activity(text, bad) {
    const list = $("activity");
    const t = new Date();
    const hh = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    list.prepend(el("li", null, el("time", { datetime: t.toISOString() }, hh), el("span", { class: bad ? "ev-bad" : null }, text)));
    while (list.children.length > ACTIVITY_MAX) list.lastElementChild.remove();
    $("activity-empty").hidden = true;
  }

  function who(ext) {
    return S.me && ext === S.me.extension ? "You" : "Supervisor " + ext;
  }

  function agentLabel(ext) {
    const n = agentName(ext);
    return n === ext ? ext : `${n} (${ext})`;
  }

  // ---- login ---------------------------------------------------------------------------------
  function showLogin(msg, kind) {
    stopStream();
    clearInterval(S.tickTimer);
    S.tickTimer = null;
    S.me = null;
    S.mySession = null;
    S.acked = false;
    S.selectedExt = null;
    S.selectedCall = null;
    $("activity").replaceChildren();
    $("activity-empty").hidden = false;
    $("app").hidden = true;
    $("login-view").hidden = false;
    $("conn").hidden = true;
    setLoginMsg(msg, kind);
    const ext = $("login-extension");
    (ext.value ? $("login-password") : ext).focus();
  }

  function setLoginMsg(msg, kind) {
    const m = $("login-msg");
    m.textContent = msg || "";
    m.className = "login-msg " + (kind === "info" ? "is-info" : "is-error");
    m.hidden = !msg;
  }

  function sessionExpired() {
    S.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("Session expired, please log in again", "info");
  }

  async function onLoginSubmit(ev) {
    ev.preventDefault();
    const extension = $("login-extension").value.trim();
    const password = $("login-password").value;
    if (!extension || !password) {
      setLoginMsg("Enter your extension and password.");
      (extension ? $("login-password") : $("login-extension")).focus();
      return;
    }
    const btn = $("login-submit");
    btn.disabled = true;
    setLoginMsg("");
    let r;
    try {
      r = await fetch("/api/login", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ extension, password }),
      });
    } catch (_) {
      btn.disabled = false;
      setLoginMsg("Cannot reach bibridge. Check the connection and retry.");
      return;
    }
    if (r.status === 200) {
      const data = await r.json().catch(() => ({}));
      S.token = data.token || null;
      if (S.token) sessionStorage.setItem(TOKEN_KEY, S.token);
      $("login-password").value = "";
      btn.disabled = false;
      S.acked = false;
      enterConsole({ extension: data.extension || extension, name: data.name || "", session: null, legal_notice: null });
      return;
    }
    if (r.status === 429) {
      let secs = parseInt(r.headers.get("Retry-After") || "", 10);
      if (!Number.isFinite(secs) || secs < 1) secs = 1;
      clearInterval(S.loginTimer);
      const tick = () => {
        if (secs <= 0) {
          clearInterval(S.loginTimer);
          btn.disabled = false;
          setLoginMsg("");
          return;
        }
        setLoginMsg(`Too many attempts, retry in ${secs} s`);
        secs -= 1;
      };
      tick();
      S.loginTimer = setInterval(tick, 1000);
      return;
    }
    btn.disabled = false;
    if (r.status === 401) {
      setLoginMsg("Wrong extension or password");
      $("login-password").select();
      $("login-password").focus();
    } else {
      setLoginMsg(`Login failed (HTTP ${r.status})`);
    }
  }

  async function logout() {
    try {
      await api("POST", "/api/logout");
    } catch (_) {
      /* the token is forgotten locally either way */
    }
    S.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("You are logged out.", "info");
  }

  function enterConsole(me) {
    S.me = me;
    $("login-view").hidden = true;
    $("app").hidden = false;
    renderMe();
    renderAll();
    startStream();
    if (!S.tickTimer) S.tickTimer = setInterval(tick, 1000);
    S.focusAgents = true;
  }

  // ---- event stream --------------------------------------------------------------------------
  function startStream() {
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

  function stopStream() {
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
        sessionExpired();
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

  function findSession(id) {
    for (const c of S.calls.values()) {
      for (const s of c.sessions || []) if (s.id === id) return { session: s, call: c };
    }
    return null;
  }

  function setMySession(s, call, prev) {
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

  // ---- rendering -----------------------------------------------------------------------------
  function renderMe() {
    if (!S.me) return;
    $("me-name").textContent = S.me.name || "Supervisor";
    $("me-ext").textContent = "Ext. " + (S.me.extension || "");
    const notice = S.me.legal_notice || DEFAULT_NOTICE;
    $("legal-text").textContent = notice;
    $("legal-ack-text").textContent = notice;
  }

  function renderAll() {
    if (!S.me) return;
    renderAgents();
    renderDetails();
    renderOperator();
    renderRibbon();
  }

  function callsOf(ext) {
    const out = [];
    for (const c of S.calls.values()) if (c.agent === ext) out.push(c);
    // Most recently connected first; ringing calls after connected ones.
    out.sort((a, b) => (parseTime(b.connected_at) || 0) - (parseTime(a.connected_at) || 0));
    return out;
  }

  // The call a start action targets: the selected call if it belongs to the agent and is
  // connected, else the agent's most recently connected call (what the feature codes pick).
  function targetCall(ext) {
    if (!ext) return null;
    const list = callsOf(ext).filter((c) => c.state === "connected");
    if (S.selectedCall) {
      const sel = list.find((c) => c.id === S.selectedCall);
      if (sel) return sel;
    }
    return list[0] || null;
  }

  function focusedKey(tbody, attr) {
    const a = document.activeElement;
    return a && tbody.contains(a) && a.tagName === "TR" ? a.getAttribute(attr) : null;
  }

  function renderAgents() {
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

  // Keeps exactly one row tabbable (roving tabindex) and restores focus after a re-render.
  function fixRoving(tbody, attr, focusKey, selKey) {
    const rows = [...tbody.rows];
    if (!rows.length) return;
    const pick =
      (focusKey && rows.find((r) => r.getAttribute(attr) === focusKey)) ||
      (selKey && rows.find((r) => r.getAttribute(attr) === selKey)) ||
      rows[0];
    for (const r of rows) r.tabIndex = r === pick ? 0 : -1;
    if (focusKey && pick.getAttribute(attr) === focusKey) pick.focus({ preventScroll: true });
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

  function initials(name) {
    const parts = String(name).trim().split(/\s+/).filter(Boolean);
    if (!parts.length) return "?";
    const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : parts[0].slice(0, 2);
    return s.toUpperCase();
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

  function showEnded(reason) {
    const p = $("op-ended");
    p.textContent = "Session ended" + (reason ? ": " + reason : "");
    p.hidden = false;
    clearTimeout(S.endedTimer);
    S.endedTimer = setTimeout(clearEnded, 8000);
    status(p.textContent, "info");
  }

  function clearEnded() {
    clearTimeout(S.endedTimer);
    $("op-ended").hidden = true;
  }

  function setMeter(id, db, idle) {
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

  // ---- rules: what is possible right now -----------------------------------------------------
  // Returns {enabled, reason, pressed, kind: "start"|"switch"|"stop", call}. `ext`/`callId` is the
  // target the control refers to (ribbon: the selection; context menu: the row it opened on).
  function actionState(action, ext, callId) {
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

  function renderRibbon() {
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

  // ---- actions -------------------------------------------------------------------------------
  async function doAction(action, ext, callId) {
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

  function askAck() {
    const dlg = $("legal-ack");
    const back = document.activeElement;
    return new Promise((resolve) => {
      const done = () => {
        dlg.removeEventListener("close", done);
        if (back && back.isConnected) back.focus();
        resolve(dlg.returnValue === "ok");
      };
      dlg.returnValue = "";
      dlg.addEventListener("close", done);
      dlg.showModal();
    });
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

  // ---- timers --------------------------------------------------------------------------------
  function tick() {
    const now = Date.now();
    for (const td of document.querySelectorAll("#calls-body td[data-since]")) {
      td.textContent = fmtDuration(now - Number(td.getAttribute("data-since")));
    }
    renderElapsed();
  }

  // ---- selection and keyboard ----------------------------------------------------------------
  function selectAgent(ext) {
    if (S.selectedExt !== ext) S.selectedCall = null;
    S.selectedExt = ext;
    renderAll();
  }

  function selectCall(id) {
    S.selectedCall = id;
    renderAll();
  }

  // Up/Down/Home/End move focus between rows; Enter/Space selects.
  function gridKeys(ev, tbody, onSelect, attr) {
    const row = ev.target.closest("tr");
    if (!row || row.parentElement !== tbody) return;
    const rows = [...tbody.rows];
    const i = rows.indexOf(row);
    let next = null;
    switch (ev.key) {
      case "ArrowDown":
        next = rows[Math.min(i + 1, rows.length - 1)];
        break;
      case "ArrowUp":
        next = rows[Math.max(i - 1, 0)];
        break;
      case "Home":
        next = rows[0];
        break;
      case "End":
        next = rows[rows.length - 1];
        break;
      case "PageDown":
        next = rows[Math.min(i + 10, rows.length - 1)];
        break;
      case "PageUp":
        next = rows[Math.max(i - 10, 0)];
        break;
      case "Enter":
      case " ":
        ev.preventDefault();
        onSelect(row.getAttribute(attr));
        return;
      default:
        return;
    }
    ev.preventDefault();
    if (next) {
      for (const r of rows) r.tabIndex = r === next ? 0 : -1;
      next.focus();
    }
  }

  // ---- context menu --------------------------------------------------------------------------
  const menu = { ext: null, call: null, back: null };

  function openMenu(ext, callId, x, y, back) {
    menu.ext = ext;
    menu.call = callId;
    menu.back = back;
    const box = $("ctx-menu");
    const onSession = S.mySession && callId && S.mySession.call === callId;
    for (const item of box.querySelectorAll("[role=menuitem]")) {
      const action = item.dataset.action;
      const st = actionState(action, ext, callId);
      item.setAttribute("aria-disabled", st.enabled && !st.pressed ? "false" : "true");
      item.title = st.enabled ? "" : st.reason;
      if (action !== "stop") {
        item.textContent = onSession
          ? st.pressed
            ? `${MODE_LABEL[action]} (current)`
            : `Switch to ${MODE_VERB[action]}`
          : `Start ${MODE_VERB[action]}`;
        item.classList.toggle("is-current", !!st.pressed);
      }
    }
    box.hidden = false;
    const w = box.offsetWidth;
    const h = box.offsetHeight;
    box.style.left = Math.max(4, Math.min(x, window.innerWidth - w - 4)) + "px";
    box.style.top = Math.max(4, Math.min(y, window.innerHeight - h - 4)) + "px";
    const items = menuItems();
    const first = items.find((i) => i.getAttribute("aria-disabled") !== "true") || items[0];
    first.focus();
  }

  function menuItems() {
    return [...$("ctx-menu").querySelectorAll("[role=menuitem]")];
  }

  function closeMenu(restore) {
    const box = $("ctx-menu");
    if (box.hidden) return;
    box.hidden = true;
    if (restore && menu.back && menu.back.isConnected) menu.back.focus();
  }

  function menuKeys(ev) {
    const items = menuItems();
    const i = items.indexOf(document.activeElement);
    let next = null;
    switch (ev.key) {
      case "ArrowDown":
        next = items[(i + 1) % items.length];
        break;
      case "ArrowUp":
        next = items[(i - 1 + items.length) % items.length];
        break;
      case "Home":
        next = items[0];
        break;
      case "End":
        next = items[items.length - 1];
        break;
      case "Escape":
        ev.preventDefault();
        closeMenu(true);
        return;
      case "Tab":
        ev.preventDefault();
        closeMenu(true);
        return;
      case "Enter":
      case " ":
        ev.preventDefault();
        if (i >= 0) activateItem(items[i]);
        return;
      default:
        return;
    }
    ev.preventDefault();
    next.focus();
  }

  function activateItem(item) {
    if (item.getAttribute("aria-disabled") === "true") return;
    const { ext, call } = menu;
    closeMenu(true);
    doAction(item.dataset.action, ext, call);
  }

  function rowMenuPosition(row) {
    const r = row.getBoundingClientRect();
    return [r.left + 24, r.bottom - 2];
  }

  // ---- wiring --------------------------------------------------------------------------------
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
})();
