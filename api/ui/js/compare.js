// Several runs side by side: their inputs, outputs and durations (per run and per block).
// A row whose values differ between the runs is marked, so the differences stand out.

import { allPages, get } from "./api.js";
import { formatMs, h, json, runBadge, runLink, time } from "./dom.js";
import { failure, runDuration, workflowLink } from "./runsview.js";

export async function loadComparison(ids) {
  return Promise.all(
    ids.map(async (id) => {
      const base = `/v1/workflows/runs/${encodeURIComponent(id)}`;
      const [run, steps] = await Promise.all([get(base), allPages(`${base}/steps`, { max: 2000 })]);
      return { run, steps: steps.items };
    }),
  );
}

const MISSING = Symbol("missing");

// One row per (side, turn, key) over all the runs: a turn's input or output, key by key.
function ioRows(entries, side) {
  const rows = new Map();
  entries.forEach((entry, col) => {
    for (const pair of entry.run.io_pairs || []) {
      const value = pair[side];
      if (value === null || value === undefined) continue;
      const parts = value && typeof value === "object" && !Array.isArray(value) ? Object.entries(value) : [["(value)", value]];
      for (const [key, v] of parts) {
        const label = `${pair.turn_index > 0 ? `turn ${pair.turn_index} · ` : ""}${key}`;
        if (!rows.has(label)) rows.set(label, entries.map(() => MISSING));
        rows.get(label)[col] = v;
      }
    }
  });
  return [...rows.entries()];
}

function blockTimes(entries) {
  const rows = new Map();
  entries.forEach((entry, col) => {
    for (const st of entry.steps) {
      if (typeof st.duration_ms !== "number") continue;
      const label = `${st.block_id} (${st.block_type})`;
      if (!rows.has(label)) rows.set(label, entries.map(() => null));
      rows.get(label)[col] = (rows.get(label)[col] || 0) + st.duration_ms;
    }
  });
  return [...rows.entries()].sort((a, b) => Math.max(...b[1]) - Math.max(...a[1]));
}

function valueCell(v) {
  if (v === MISSING) return h("td", { class: "muted" }, "—");
  const text = JSON.stringify(v);
  return h("td", { class: "io" }, text.length > 80 ? json(v, { lines: 8, label: `${text.slice(0, 40)}…` }) : h("code", {}, text));
}

function differs(values) {
  const keys = values.map((v) => (v === MISSING ? "\u0000" : JSON.stringify(v)));
  return new Set(keys).size > 1;
}

function valueRow(label, values) {
  const diff = differs(values);
  return h("tr", { class: diff ? "differs" : null, dataset: { row: label } }, h("th", { scope: "row", class: "mono" }, label, diff ? h("span", { class: "visually-hidden" }, " (differs)") : null), values.map(valueCell));
}

function durationRow(label, values, dataRow) {
  const known = values.filter((v) => typeof v === "number");
  const most = Math.max(1, ...known);
  const slowest = new Set(known).size > 1 ? Math.max(...known) : null;
  return h(
    "tr",
    { dataset: { row: dataRow } },
    h("th", { scope: "row", class: "mono" }, label),
    values.map((v) => {
      if (typeof v !== "number") return h("td", { class: "muted" }, "—");
      const fillEl = h("span", { class: "bar-fill" });
      fillEl.style.width = `${(v / most) * 100}%`; // CSSOM: allowed by the CSP
      return h("td", { class: ["num", v === slowest && "slowest"] }, h("span", { class: "duration-cell" }, h("span", { class: "bar", "aria-hidden": "true" }, fillEl), formatMs(v)));
    }),
  );
}

function group(title, width, rows) {
  return [h("tr", { class: "group" }, h("th", { scope: "colgroup", colspan: width }, title)), rows.length ? rows : h("tr", {}, h("td", { colspan: width, class: "muted" }, "none"))];
}

export function comparison(entries, { workflows }) {
  const width = entries.length + 1;
  const runs = entries.map((e) => e.run);
  const fact = (label, f) => h("tr", { dataset: { row: label } }, h("th", { scope: "row" }, label), runs.map((r) => h("td", {}, f(r))));
  return h(
    "div",
    { class: "table-wrap compare-wrap" },
    h(
      "table",
      { class: "compare-table" },
      h("caption", { class: "visually-hidden" }, "The selected runs side by side"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Field")), runs.map((r) => h("th", { scope: "col", dataset: { runId: r.id } }, runLink(r.id), " ", runBadge(r.status))))),
      h(
        "tbody",
        {},
        group("Run", width, [
          fact("Workflow", (r) => [workflowLink(r.workflow_id, workflows.get(r.workflow_id)), ` · ${r.version === "draft" ? "draft" : `v${r.version}`}`]),
          fact("Created", (r) => time(r.created_at)),
          fact("Steps", (r) => `${r.progress.steps_done}/${r.progress.steps_total}`),
          fact("Failure", (r) => failure(r) || h("span", { class: "muted" }, "—")),
        ]),
        group("Inputs", width, ioRows(entries, "input").map(([label, values]) => valueRow(label, values))),
        group("Outputs", width, ioRows(entries, "output").map(([label, values]) => valueRow(label, values))),
        group("Durations", width, [durationRow("whole run", runs.map(runDuration), "duration:run"), ...blockTimes(entries).map(([label, values]) => durationRow(label, values, `duration:${label}`))]),
      ),
    ),
  );
}
