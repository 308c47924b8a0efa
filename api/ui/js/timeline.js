// The run's timeline: every step as a bar, one lane per worker process.
//
// A bar starts when the step was created (it is handed to the broker right after; a retry or
// a re-publish moves `queued_at` later, so the creation time is the honest start of the wait),
// is pale while the step waits for a worker and solid from `started_at` to `completed_at`.
// Steps that overlap in one lane (a for_each or a consensus step spans its children) stack
// in rows. Waits, fan-outs and the slowest step are seen at a glance.

import { formatMs, h, s } from "./dom.js";
import { TERMINAL_STEP, stateOf } from "./model.js";

const WIDTH = 1100;
const LABEL_W = 190;
const RIGHT = 16;
const ROW_H = 18;
const BAR_H = 12;
const LANE_GAP = 8;
const AXIS_H = 26;
const NO_WORKER = "";
const LABEL_MIN = 56; // a running bar this wide (px) carries its step id

const clip = (text, n) => (text.length > n ? `${text.slice(0, Math.max(n - 1, 1))}…` : text);

const ms = (iso) => (iso ? new Date(iso).getTime() : null);

function niceStep(span) {
  const raw = span / 7;
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) || power * 10;
}

// [start, waitEnd, end] in ms for each drawable step; skipped steps never ran and are left out.
function spans(steps, now) {
  const out = [];
  for (const st of steps) {
    const status = stateOf(st);
    const created = ms(st.created_at);
    if (created === null || status === "skipped") continue;
    const started = ms(st.started_at);
    const done = TERMINAL_STEP.has(status) ? ms(st.completed_at) ?? started ?? created : now;
    const end = Math.max(done, started ?? created, created);
    const waitEnd = started === null ? end : Math.min(Math.max(started, created), end);
    out.push({ st, status, start: created, waitEnd, end, worker: st.worker || NO_WORKER });
  }
  return out;
}

// Greedy interval packing: each bar goes to the first row free at its start.
function pack(bars) {
  const rows = [];
  for (const bar of bars.sort((a, b) => a.start - b.start || a.end - b.end)) {
    let row = rows.findIndex((last) => last <= bar.start);
    if (row < 0) row = rows.push(0) - 1;
    rows[row] = Math.max(bar.end, bar.start + 1);
    bar.row = row;
  }
  return Math.max(rows.length, 1);
}

function widestFanOut(bars) {
  const edges = [];
  for (const b of bars) if (b.end > b.waitEnd) edges.push([b.waitEnd, 1], [b.end, -1]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (now += d));
  return most;
}

function facts(bars, workers) {
  const ran = bars.filter((b) => b.end > b.waitEnd);
  const slowest = ran.reduce((a, b) => (!a || b.end - b.waitEnd > a.end - a.waitEnd ? b : a), null);
  const waited = bars.reduce((a, b) => (!a || b.waitEnd - b.start > a.waitEnd - a.start ? b : a), null);
  const items = [`${bars.length} steps on ${workers} worker${workers === 1 ? "" : "s"}`];
  if (slowest) items.push(`slowest: ${slowest.st.step_id} (${formatMs(slowest.end - slowest.waitEnd)})`);
  if (waited) items.push(`longest wait: ${waited.st.step_id} (${formatMs(waited.waitEnd - waited.start)})`);
  items.push(`most running at once: ${widestFanOut(bars)}`);
  return { text: items.join(" · "), slowest };
}

function describe(b) {
  const parts = [`${b.st.step_id} (${b.st.block_type}): ${b.status}`, `waited ${formatMs(b.waitEnd - b.start)}`];
  if (b.end > b.waitEnd) parts.push(`ran ${formatMs(b.end - b.waitEnd)}`);
  if (b.st.worker) parts.push(`on ${b.st.worker}`);
  if (b.st.attempt > 1) parts.push(`attempt ${b.st.attempt}`);
  return parts.join(", ");
}

function pickByKey(ev, pick) {
  if (ev.key !== "Enter" && ev.key !== " ") return;
  ev.preventDefault();
  pick();
}

function axis(t0, span, x, top) {
  const g = s("g", { class: "tl-axis", "aria-hidden": "true" });
  const step = niceStep(span);
  for (let t = 0; t <= span + 1; t += step) {
    g.append(
      s("line", { x1: x(t0 + t), x2: x(t0 + t), y1: top - 4, y2: top + 2, class: "tl-tick" }),
      s("text", { x: x(t0 + t), y: top - 8, "text-anchor": "middle" }, t === 0 ? "0" : `+${formatMs(t)}`),
    );
  }
  return g;
}

export function timeline(steps, run, { onPick } = {}) {
  const now = Date.now();
  const bars = spans(steps, now);
  if (!bars.length) return h("p", { class: "empty" }, "No step has been created yet.");
  const t0 = Math.min(ms(run.created_at) ?? Infinity, ...bars.map((b) => b.start));
  const t1 = Math.max(...bars.map((b) => b.end), ms(run.completed_at) ?? 0, t0 + 1);
  const span = t1 - t0;
  const x = (t) => LABEL_W + ((t - t0) / span) * (WIDTH - LABEL_W - RIGHT);

  const lanes = new Map();
  for (const b of bars) (lanes.get(b.worker) || lanes.set(b.worker, []).get(b.worker)).push(b);
  // Worker lanes in order of first activity; steps no worker took yet come last.
  const order = [...lanes.keys()].sort((a, b) => (a === NO_WORKER) - (b === NO_WORKER) || Math.min(...lanes.get(a).map((x) => x.start)) - Math.min(...lanes.get(b).map((x) => x.start)));
  const workers = order.filter((w) => w !== NO_WORKER).length;
  const { text, slowest } = facts(bars, workers);

  const body = s("g", {});
  let y = AXIS_H;
  for (const worker of order) {
    const rows = pack(lanes.get(worker));
    const height = rows * ROW_H;
    const lane = s(
      "g",
      { class: "tl-lane", dataset: { worker: worker || "none" } },
      s("rect", { class: "tl-lane-bg", x: 0, y, width: WIDTH, height: height + LANE_GAP / 2 }),
      s("text", { class: "tl-lane-label", x: 8, y: y + ROW_H - 5 }, worker || "waiting for a worker", s("title", {}, worker || "not taken by a worker yet")),
    );
    for (const b of lanes.get(worker)) {
      const top = y + b.row * ROW_H + (ROW_H - BAR_H) / 2;
      const xs = x(b.start);
      const xw = x(b.waitEnd);
      const xe = Math.max(x(b.end), xs + 2);
      const bar = s(
        "g",
        {
          class: ["tl-bar", `state-${b.status}`, b === slowest && "slowest"],
          dataset: { stepId: b.st.step_id, state: b.status, focusKey: `tl:${b.st.id}` },
          tabindex: onPick ? 0 : undefined,
          role: onPick ? "button" : undefined,
          "aria-label": describe(b),
          onclick: onPick ? () => onPick(b.st) : undefined,
          onkeydown: onPick ? (ev) => pickByKey(ev, () => onPick(b.st)) : undefined,
        },
        s("title", {}, describe(b)),
        xw > xs ? s("rect", { class: "tl-wait", x: xs, y: top, width: Math.max(xw - xs, 1), height: BAR_H, rx: 2 }) : null,
        xe > xw ? s("rect", { class: "tl-run", x: xw, y: top, width: Math.max(xe - xw, 2), height: BAR_H, rx: 2 }) : null,
        xe - xw > LABEL_MIN ? s("text", { class: "tl-label", x: xw + 4, y: top + BAR_H - 3 }, clip(b.st.step_id, Math.floor((xe - xw - 8) / 6.2))) : null,
      );
      lane.append(bar);
    }
    body.append(lane);
    y += height + LANE_GAP;
  }
  const svg = s(
    "svg",
    { class: "timeline-svg", viewBox: `0 0 ${WIDTH} ${y}`, width: WIDTH, height: y, role: "group", "aria-label": `Timeline: ${text}` },
    axis(t0, span, x, AXIS_H),
    body,
  );
  const skipped = steps.length - bars.length;
  return [
    h("p", { class: "tl-facts" }, text, skipped ? ` · ${skipped} skipped steps not drawn` : ""),
    h("ul", { class: "legend tl-legend", "aria-label": "Timeline key" }, h("li", {}, h("span", { class: "swatch tl-swatch-wait", "aria-hidden": "true" }), "waiting for a worker"), h("li", {}, h("span", { class: "swatch tl-swatch-run", "aria-hidden": "true" }), "running (coloured by outcome)"), h("li", {}, h("span", { class: "swatch tl-swatch-slowest", "aria-hidden": "true" }), "slowest step")),
    h("div", { class: "timeline-wrap" }, svg),
  ];
}
