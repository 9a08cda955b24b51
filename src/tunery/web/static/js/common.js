// Small helpers shared by the dashboard's pages; requests go to this server only.
"use strict";
window.tunery = {
  // The session's CSRF token (a meta tag of every page): every change this page asks for carries it.
  csrfHeaders(headers = {}) {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return { ...headers, "X-CSRF-Token": meta ? meta.content : "" };
  },
  // POST JSON; resolves to {ok, status, body} where body is the parsed JSON answer.
  async postJSON(url, payload) {
    const response = await fetch(url, {
      method: "POST", headers: window.tunery.csrfHeaders({ "Content-Type": "application/json" }), body: JSON.stringify(payload),
      credentials: "same-origin",
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { ok: response.ok, status: response.status, body };
  },
  // The API's error shape: {"error": {"message", "param", "code"}}.
  errorOf(body, status) {
    return (body && body.error) || { message: `request failed (HTTP ${status})`, param: null };
  },
  formatNumber(value, digits = 4) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : Number(value.toFixed(digits)).toString();
  },
};
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("time[data-epoch]").forEach((el) => {
    el.textContent = new Date(Number(el.dataset.epoch) * 1000).toLocaleString();
  });
});
