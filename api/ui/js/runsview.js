// The runs table: one row per run, newest first; a pure function of the page it shows.

import { between, formatMs, h, runBadge, runLink, time } from "./dom.js";
import { TERMINAL_RUN } from "./model.js";

export const MAX_COMPARE = 6;

export function runDuration(run) {
  const end = run.completed_at || (TERMINAL_RUN.has(run.status) ? run.updated_at : null);
  return between(run.created_at, end || new Date().toISOString());
}

export function workflowLink(id, name) {
  return h("a", { href: `/ui/workflows/${encodeURIComponent(id)}`, class: name ? null : "mono" }, name || id);
}

// Why a run ended badly, at a glance: the termination reason and the failing block.
export function failure(run) {
  if (!run.termination_reason && !run.error) return null;
  const e = run.error && typeof run.error === "object" ? run.error : {};
  return h(
    "div",
    { class: "failure" },
    run.termination_reason ? h("span", { class: "warn-text termination" }, run.termination_reason.replaceAll("_", " ")) : null,
    e.block_id ? [" in block ", h("code", { class: "failing-block" }, e.block_id)] : null,
    e.message ? h("span", { class: "note", title: e.message }, `${e.type ? `${e.type}: ` : ""}${e.message}`) : null,
  );
}

function progressCell(run) {
  const p = run.progress || {};
  const total = p.steps_total || 0;
  const done = p.steps_done || 0;
  return [
    h("progress", { max: Math.max(total, 1), value: done, "aria-label": `${done} of ${total} steps done` }),
    h("span", { class: "muted num" }, ` ${done}/${total}`),
  ];
}

function checkCell(run, { selected, onToggle }) {
  const checked = selected.has(run.id);
  const full = !checked && selected.size >= MAX_COMPARE;
  return h(
    "td",
    { class: "check" },
    h("input", {
      type: "checkbox",
      checked,
      disabled: full || undefined,
      title: full ? `At most ${MAX_COMPARE} runs are compared at once` : undefined,
      "aria-label": `Select run ${run.id} to compare`,
      dataset: { focusKey: `sel:${run.id}` },
      onchange: (ev) => onToggle(run, ev.target.checked),
    }),
  );
}

// `onToggle` (with `selected`) adds a column of checkboxes to pick runs to compare.
function row(run, ctx) {
  const checked = Boolean(ctx.onToggle && ctx.selected.has(run.id));
  return h(
    "tr",
    { dataset: { runId: run.id, status: run.status }, class: checked ? "selected" : null },
    ctx.onToggle ? checkCell(run, ctx) : null,
    h("th", { scope: "row" }, runLink(run.id), run.is_evaluation ? h("span", { class: "tag" }, "evaluation") : null, run.original_run_id && !run.is_evaluation ? h("span", { class: "tag" }, "fork") : null),
    h("td", {}, workflowLink(run.workflow_id, ctx.workflows.get(run.workflow_id))),
    h("td", { class: "num" }, run.version === "draft" ? "draft" : `v${run.version}`),
    h("td", {}, runBadge(run.status)),
    h("td", { class: "progress-cell" }, progressCell(run)),
    h("td", {}, failure(run) || h("span", { class: "muted" }, "—")),
    h("td", {}, time(run.created_at)),
    h("td", { class: "num" }, formatMs(runDuration(run))),
  );
}

export function runsTable(runs, ctx) {
  if (!runs.length) return h("p", { class: "empty" }, ctx.filtered ? "No run matches these filters." : "No runs yet: start one with the API or `quorum run`.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "runs-table" },
      h("caption", { class: "visually-hidden" }, "Runs, newest first"),
      h(
        "thead",
        {},
        h("tr", {}, ctx.onToggle ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")) : null, ...["Run", "Workflow", "Version", "Status", "Progress", "Failure", "Created", "Duration"].map((c) => h("th", { scope: "col" }, c))),
      ),
      h("tbody", {}, runs.map((run) => row(run, ctx))),
    ),
  );
}
