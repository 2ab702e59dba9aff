// The console login: the login form (with the server's throttling countdown), logout, an
// expired login, and entering the console once logged in.

import { TOKEN_KEY, S } from "./state.js";
import { $ } from "./dom.js";
import { api } from "./api.js";
import { startStream, stopStream } from "./stream.js";
import { renderMe, renderAll, tick } from "./render.js";

export function showLogin(msg, kind) {
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

export function sessionExpired() {
  S.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("Session expired, please log in again", "info");
}

export async function onLoginSubmit(ev) {
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
  } else if (r.status === 400) {
    // bad_extension: the API takes 1 to 16 digits.
    setLoginMsg("The extension is a number of up to 16 digits");
    $("login-extension").select();
    $("login-extension").focus();
  } else {
    setLoginMsg(`Login failed (HTTP ${r.status})`);
  }
}

export async function logout() {
  try {
    await api("POST", "/api/logout");
  } catch (_) {
    /* the token is forgotten locally either way */
  }
  S.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("You are logged out.", "info");
}

export function enterConsole(me) {
  S.me = me;
  $("login-view").hidden = true;
  $("app").hidden = false;
  renderMe();
  renderAll();
  startStream(sessionExpired);
  if (!S.tickTimer) S.tickTimer = setInterval(tick, 1000);
  S.focusAgents = true;
}
