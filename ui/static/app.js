/* Glassbox Web UI: shared helpers (API calls with the API key, formatting). No framework. */
"use strict";

const Glassbox = (() => {
  const KEY = "glassbox.apiKey";
  const API = "/api/v1";
  const ACTIVE = new Set(["created", "queued", "running"]);
  let asked = false;

  function apiKey() {
    try { return localStorage.getItem(KEY) || ""; } catch (_) { return ""; }
  }

  /** Asks for an API key once per page (after a 401), keeps it in localStorage. */
  function askKey() {
    if (asked) return false;
    asked = true;
    const key = window.prompt("This Glassbox service needs an API key (glassbox apikey create NAME):", "");
    if (!key) return false;
    try { localStorage.setItem(KEY, key.trim()); } catch (_) { /* private mode */ }
    return true;
  }

  /** The URL with ?api_key= when a key is kept (EventSource, WebSocket, img, video, iframe). */
  function withKey(url) {
    const key = apiKey();
    if (!key) return url;
    return url + (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(key);
  }

  async function request(path, options = {}) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const headers = Object.assign({}, options.headers || {});
      const key = apiKey();
      if (key) headers["X-API-Key"] = key;
      const response = await fetch(API + path, Object.assign({}, options, { headers }));
      if (response.status === 401 && attempt === 0) {
        if (apiKey() && apiKey() !== key) continue; // another request got a key meanwhile
        try { localStorage.removeItem(KEY); } catch (_) { /* ignore */ }
        if (askKey()) continue;
      }
      if (!response.ok) {
        let detail = response.statusText;
        let fields = [];
        try {
          const body = await response.json();
          if (typeof body.detail === "string") detail = body.detail;
          else if (Array.isArray(body.detail)) {
            fields = body.detail.map((d) => ({
              field: d.field || (d.loc || []).filter((p) => p !== "body").join("."),
              message: d.msg || String(d),
              line: d.line || null,
            }));
            detail = fields.map((f) => (f.field ? `${f.field}: ${f.message}` : f.message)).join("\n");
          } else detail = JSON.stringify(body.detail);
        } catch (_) { /* not JSON */ }
        const error = new Error(`${response.status} ${detail}`);
        error.status = response.status;
        error.detail = detail;
        error.fields = fields; // [{field, message, line}] for a 422
        throw error;
      }
      return response;
    }
    throw new Error("unreachable");
  }

  async function json(path, options) { return (await request(path, options)).json(); }
  async function text(path, options) { return (await request(path, options)).text(); }
  async function post(path) { return json(path, { method: "POST" }); }
  /** A JSON request body (POST/PUT); answers the JSON reply. */
  async function send(method, path, body) {
    return json(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(status) {
    return el("span", { class: `badge ${status}`, "data-status": status, text: status.replace("_", " ") });
  }

  function date(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function duration(run) {
    // A run that ended before a worker took it never started: it has no duration.
    if (!run.started_at && !ACTIVE.has(run.status)) return "—";
    const start = run.started_at || run.queued_at || run.created_at;
    if (!start) return "—";
    const end = run.finished_at ? new Date(run.finished_at) : (ACTIVE.has(run.status) ? new Date() : null);
    if (!end) return "—";
    return seconds((end - new Date(start)) / 1000);
  }

  function seconds(s) {
    if (!isFinite(s) || s < 0) return "—";
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function clock(ms) {
    if (ms === null || ms === undefined) return "";
    const s = ms / 1000;
    const m = Math.floor(s / 60);
    return `${m}:${(s % 60).toFixed(1).padStart(4, "0")}`;
  }

  /** Shows a 422's field errors at their fields in `form` (elements with data-error-for="FIELD",
      the field's input marked aria-invalid); returns the messages that have no place there. */
  function placeErrors(form, error) {
    const unplaced = [];
    for (const f of error.fields || []) {
      const target = form.querySelector(`[data-error-for="${CSS.escape(f.field)}"]`);
      if (!target) { unplaced.push(f.field ? `${f.field}: ${f.message}` : f.message); continue; }
      target.textContent = f.message;
      target.hidden = false;
      const input = target.parentElement.querySelector("input");
      if (input) input.setAttribute("aria-invalid", "true");
    }
    return unplaced;
  }

  /** "3 min ago", with the exact time in the element's title. */
  function ago(iso) {
    if (!iso) return el("span", { text: "—" });
    const s = (Date.now() - new Date(iso).getTime()) / 1000;
    let label;
    if (s < 45) label = "just now";
    else if (s < 3600) label = `${Math.round(s / 60)} min ago`;
    else if (s < 86400) label = `${Math.round(s / 3600)} h ago`;
    else label = `${Math.round(s / 86400)} d ago`;
    return el("time", { datetime: iso, title: date(iso), text: label });
  }

  return { API, ACTIVE, apiKey, withKey, request, json, text, post, send, el, badge, date, ago, duration, seconds, clock, placeErrors };
})();
