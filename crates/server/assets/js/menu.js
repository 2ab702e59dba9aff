// The context menu on agent and call rows (right click, Shift+F10, the ContextMenu key): its
// items follow the ribbon's rules; arrow keys move, Enter acts, Escape / Tab close.

import { MODE_LABEL, MODE_VERB, S } from "./state.js";
import { $ } from "./dom.js";
import { actionState } from "./ribbon.js";
import { doAction } from "./session.js";

const menu = { ext: null, call: null, back: null };

export function openMenu(ext, callId, x, y, back) {
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

export function closeMenu(restore) {
  const box = $("ctx-menu");
  if (box.hidden) return;
  box.hidden = true;
  if (restore && menu.back && menu.back.isConnected) menu.back.focus();
}

export function menuKeys(ev) {
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

export function activateItem(item) {
  if (item.getAttribute("aria-disabled") === "true") return;
  const { ext, call } = menu;
  closeMenu(true);
  doAction(item.dataset.action, ext, call);
}

export function rowMenuPosition(row) {
  const r = row.getBoundingClientRect();
  return [r.left + 24, r.bottom - 2];
}
