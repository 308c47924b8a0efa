// Small DOM helpers. Data only ever reaches the page as text nodes or attribute values
// (never through innerHTML), so nothing a run holds can inject markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (name === "text") el.textContent = String(value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "value" && "value" in el) el.value = value;
    else if (name === "checked" || name === "selected") el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const STATES = ["pending", "queued", "running", "completed", "error", "cancelled", "skipped"];

const STATE_LABELS = { none: "not started", running: "running" };

export function stateLabel(state) {
  return STATE_LABELS[state] || state || "unknown";
}

export function badge(state, text) {
  const cls = `badge state-${state || "none"}`;
  return h("span", { class: cls, dataset: { state: state || "none" } }, text || stateLabel(state));
}

export function runBadge(status) {
  return h("span", { class: `badge run-${status}`, dataset: { status } }, (status || "").replaceAll("_", " "));
}

export function runLink(id) {
  return h("a", { href: `/ui/runs/${encodeURIComponent(id)}`, class: "mono" }, id);
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  const sec = Math.round((ms % 60_000) / 1000);
  return `${m} min ${sec} s`;
}

export function formatNumber(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  const text = today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
  return h("time", { datetime: iso, title: iso }, text);
}

export function between(a, b) {
  if (!a || !b) return null;
  return Math.max(0, new Date(b) - new Date(a));
}

export function json(value, { label, open = false, lines = 14 } = {}) {
  const text = value === undefined ? "undefined" : JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json" }, h("code", {}, text));
  const long = text.split("\n").length > lines || text.length > 600;
  if (!label && !long) return pre;
  const summary = label || `${text.split("\n").length} lines`;
  return h("details", { class: "json-details", open: open || undefined }, h("summary", {}, summary), pre);
}

// Keep keyboard focus on the "same" control across a re-render.
export function keepFocus(render) {
  const active = document.activeElement;
  const key = active && active.dataset ? active.dataset.focusKey : undefined;
  render();
  if (key) {
    const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again && again !== document.activeElement) again.focus({ preventScroll: true });
  }
}
