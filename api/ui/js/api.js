// The /v1 API from the browser: the API key, authenticated fetches, problem answers.

import { h } from "./dom.js";

const STORAGE_KEY = "quorum.apiKey";

export function takeKeyFromFragment() {
  // "#key=..." never reaches the server; once read, it is removed from the address bar
  // (and from this entry of the history) so that it is not shared with a copied link.
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const key = params.get("key");
  if (key === null) return false;
  params.delete("key");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  if (key.trim()) setKey(key.trim());
  return Boolean(key.trim());
}

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return memoryKey;
  }
}

let memoryKey = "";

export function setKey(key) {
  memoryKey = key;
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
  } catch {
    // Storage disabled: the key lives as long as the page.
  }
}

export function forgetKey() {
  memoryKey = "";
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
}

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem && (problem.detail || problem.title) ? problem.detail || problem.title : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.retryAfter = retryAfter;
  }
}

export function authHeaders(extra) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

export async function request(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders({ Accept: "application/json, application/problem+json" });
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Network error", detail: `the API could not be reached (${err.message})` });
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const problem =
      data && typeof data === "object"
        ? data
        : { title: resp.statusText || `HTTP ${resp.status}`, detail: text.slice(0, 300) };
    const retry = Number(resp.headers.get("Retry-After"));
    throw new ApiError(resp.status, problem, Number.isFinite(retry) && retry > 0 ? retry : undefined);
  }
  return data;
}

export const get = (path, opts) => request(path, opts);
export const post = (path, body, opts) => request(path, { ...opts, method: "POST", body: body ?? {} });

export async function allPages(path, { max = 1000 } = {}) {
  // Lists are newest first; stop after ``max`` items (the newest ones).
  const items = [];
  let after = null;
  const sep = path.includes("?") ? "&" : "?";
  for (;;) {
    const page = await get(`${path}${sep}limit=200${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    items.push(...page.data);
    if (!page.has_more) return { items, truncated: false };
    if (items.length >= max) return { items, truncated: true };
    after = page.next_after;
  }
}

const LOC_ROOTS = new Set(["body", "query", "path"]);

function describeLoc(loc) {
  const parts = (loc || []).filter((p, i) => !(i === 0 && LOC_ROOTS.has(p)));
  return parts.length ? parts.join(" › ") : String((loc || [])[0] || "request");
}

// A problem answer (RFC 9457) as a readable message: what went wrong, then the details.
export function problemView(err, { context } = {}) {
  const p = err instanceof ApiError ? err.problem : { title: "Error", detail: String(err && err.message ? err.message : err) };
  const status = err instanceof ApiError ? err.status : 0;
  const title = p.title || (status ? `HTTP ${status}` : "Error");
  const items = [];
  for (const e of Array.isArray(p.errors) ? p.errors : []) {
    items.push(h("li", {}, h("strong", {}, describeLoc(e.loc)), ": ", e.msg));
  }
  const drift = p.drift && typeof p.drift === "object" ? p.drift : null;
  if (drift) {
    const blocks = Array.isArray(drift.blocks) ? drift.blocks : [];
    const edges = Array.isArray(drift.edges) ? drift.edges : [];
    if (blocks.length) items.push(h("li", {}, "Changed upstream blocks: ", blocks.map(String).join(", ")));
    if (edges.length) items.push(h("li", {}, "Changed upstream edges: ", edges.map((e) => (typeof e === "string" ? e : JSON.stringify(e))).join(", ")));
  }
  if (Array.isArray(p.available_iterations) && p.available_iterations.length) {
    items.push(h("li", {}, "Available steps: ", p.available_iterations.map((it) => (it && typeof it === "object" ? it.step_id : String(it))).join(", ")));
  }
  const hint = status === 401 ? "Check the API key (it may have been revoked)." : status === 429 && err.retryAfter ? `Retrying in ${err.retryAfter} s.` : null;
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("p", { class: "problem-title" }, context ? `${context}: ` : "", h("strong", {}, title), status ? ` (${status})` : ""),
    p.detail ? h("p", {}, p.detail) : null,
    items.length ? h("ul", {}, items) : null,
    hint ? h("p", { class: "muted" }, hint) : null,
  );
}
