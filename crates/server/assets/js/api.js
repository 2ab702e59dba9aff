// HTTP to bibridge's JSON API: adds the bearer token, encodes and decodes JSON, and turns a
// problem+json answer into one line for the user.

import { S } from "./state.js";

export async function api(method, path, body) {
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

export function problemText(r, fallback) {
  const d = r.data || {};
  if (d.detail && d.title) return `${d.title}: ${d.detail}`;
  return d.detail || d.title || `${fallback} (HTTP ${r.status})`;
}
