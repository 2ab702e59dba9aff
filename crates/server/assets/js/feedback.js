// What the supervisor is told: the transient status toast and the bounded activity log.

import { S } from "./state.js";
import { $, el } from "./dom.js";

export function status(msg, kind) {
  const box = $("status");
  const toast = el("div", { class: "toast toast-" + (kind || "info") }, msg);
  box.replaceChildren(toast);
  clearTimeout(S.statusTimer);
  S.statusTimer = setTimeout(() => box.replaceChildren(), kind === "error" ? 9000 : 5000);
  return toast;
}

// Removes `toast` if it is still the one shown (a newer message stays).
export function dropStatus(toast) {
  if (toast && toast.isConnected) {
    clearTimeout(S.statusTimer);
    toast.remove();
  }
}

const ACTIVITY_MAX = 100;

export function activity(text, bad) {
  const list = $("activity");
  const t = new Date();
  const hh = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  list.prepend(el("li", null, el("time", { datetime: t.toISOString() }, hh), el("span", { class: bad ? "ev-bad" : null }, text)));
  while (list.children.length > ACTIVITY_MAX) list.lastElementChild.remove();
  $("activity-empty").hidden = true;
}
