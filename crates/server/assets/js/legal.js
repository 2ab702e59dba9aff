// The legal notice: shown in the footer and acknowledged once per login before the first
// session. Its text is the server's (`http.legal_notice` in the config, default included).

import { $ } from "./dom.js";

// Shows the notice text the server sent (`legal_notice` in /api/me and in the event stream's
// snapshot). The console has no text of its own: the config is the only source.
export function showNotice(text) {
  $("legal-text").textContent = text || "";
  $("legal-ack-text").textContent = text || "";
}

// Asks to acknowledge the notice; resolves to whether the supervisor did.
export function askAck() {
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
