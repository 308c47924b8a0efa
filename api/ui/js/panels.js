// The page's sections, each a pure function of the data it shows.

import { badge, between, formatMs, formatNumber, h, json, runBadge, runLink, stateLabel, time } from "./dom.js";
import { MODEL_TYPES, RERUNNABLE, TERMINAL_RUN, TERMINAL_STEP, consensusRows, stateOf } from "./model.js";

function fact(term, ...value) {
  return h("div", { class: "fact" }, h("dt", {}, term), h("dd", {}, ...value));
}

function runError(error) {
  const e = error && typeof error === "object" ? error : { message: String(error) };
  const where = e.block_id ? ` in block ${e.block_id}` : "";
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("p", { class: "problem-title" }, h("strong", {}, `${e.type || "Error"}${where}`)),
    h("p", {}, e.message || JSON.stringify(error)),
  );
}

export function summary(run) {
  const p = run.progress || {};
  const total = p.steps_total || 0;
  const done = p.steps_done || 0;
  const version = run.version === "draft" ? "draft (frozen copy)" : `v${run.version}${run.version_name ? ` · ${run.version_name}` : ""}`;
  const end = run.completed_at || (TERMINAL_RUN.has(run.status) ? run.updated_at : null);
  return [
    h(
      "div",
      { class: "summary-head" },
      h("h1", { id: "run-title" }, "Run ", h("span", { class: "mono" }, run.id)),
      runBadge(run.status),
      run.is_evaluation ? h("span", { class: "tag" }, "evaluation run") : null,
      run.original_run_id && !run.is_evaluation ? h("span", { class: "tag" }, `fork of turn ${run.parent_turn_index}`) : null,
    ),
    h(
      "dl",
      { class: "facts" },
      fact("Workflow", h("span", { class: "mono" }, run.workflow_id)),
      fact("Version", version),
      fact("Created", time(run.created_at)),
      fact("Completed", time(run.completed_at)),
      fact("Duration", formatMs(between(run.created_at, end || new Date().toISOString()))),
      run.initiator ? fact("Initiator", run.initiator) : null,
      run.termination_reason ? fact("Termination", h("span", { class: "warn-text" }, run.termination_reason.replaceAll("_", " "))) : null,
    ),
    run.error ? runError(run.error) : null,
    h(
      "div",
      { class: "progress" },
      h("label", { for: "run-progress" }, "Steps done"),
      h("progress", { id: "run-progress", max: Math.max(total, 1), value: done }),
      h("span", { class: "muted" }, `${done} of ${total}`),
    ),
  ];
}

export function legend(states) {
  return states.map((st) => h("li", {}, h("span", { class: `swatch state-${st}`, "aria-hidden": "true" }), stateLabel(st)));
}

function stepNote(st) {
  const lc = st.lifecycle || {};
  if (lc.status === "error") return `${(lc.error && lc.error.type) || "error"}: ${lc.message || ""}`;
  if (lc.reason) return String(lc.reason).replaceAll("_", " ");
  if (lc.status === "running" && lc.worker) return `on ${lc.worker}`;
  return null;
}

export function attemptOf(st) {
  const a = st.attempt ?? (st.lifecycle ? st.lifecycle.attempt : undefined);
  return a === undefined || a === null ? "—" : String(a);
}

export function stepsTable(steps, { filter, truncated, selectedStepId, onPick }) {
  const q = (filter || "").trim().toLowerCase();
  const rows = q
    ? steps.filter((st) => [st.step_id, st.block_id, st.block_type, stateOf(st)].some((v) => String(v || "").toLowerCase().includes(q)))
    : steps;
  if (!steps.length) return h("p", { class: "empty" }, "No steps yet.");
  return [
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "steps-table" },
        h("caption", { class: "visually-hidden" }, "Steps of the run, oldest first"),
        h(
          "thead",
          {},
          h("tr", {}, ...["Step", "Type", "Turn", "State", "Attempt", "Duration", "Started"].map((c) => h("th", { scope: "col" }, c))),
        ),
        h(
          "tbody",
          {},
          rows.map((st) =>
            h(
              "tr",
              { dataset: { stepId: st.step_id, state: stateOf(st) }, class: st.step_id === selectedStepId ? "selected" : null },
              h(
                "th",
                { scope: "row" },
                h(
                  "button",
                  { type: "button", class: "link mono", dataset: { focusKey: `step:${st.id}` }, onclick: () => onPick(st), title: `Inspect block ${st.block_id}` },
                  st.step_id,
                ),
              ),
              h("td", {}, st.block_type),
              h("td", { class: "num" }, st.turn_index ?? 0),
              h("td", {}, badge(stateOf(st)), stepNote(st) ? h("span", { class: "note" }, stepNote(st)) : null),
              h("td", { class: "num" }, attemptOf(st)),
              h("td", { class: "num" }, formatMs(st.duration_ms)),
              h("td", {}, time(st.started_at)),
            ),
          ),
        ),
      ),
    ),
    rows.length !== steps.length ? h("p", { class: "muted" }, `${rows.length} of ${steps.length} steps match.`) : null,
    truncated ? h("p", { class: "muted" }, `Showing the newest ${steps.length} steps.`) : null,
  ];
}

export function turnsTable(run, { onFork, busy }) {
  const pairs = run.io_pairs || [];
  const terminal = TERMINAL_RUN.has(run.status);
  if (!pairs.length) return h("p", { class: "empty" }, "No turn has started yet.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "turns-table" },
      h("caption", { class: "visually-hidden" }, "Turns: the input and output of each execution segment"),
      h("thead", {}, h("tr", {}, ...["Turn", "Input", "Output", "Started", "Completed", ""].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        pairs.map((t) =>
          h(
            "tr",
            { dataset: { turn: t.turn_index } },
            h("th", { scope: "row", class: "num" }, t.turn_index),
            h("td", { class: "io" }, json(t.input, { lines: 10 })),
            h("td", { class: "io" }, t.output === null || t.output === undefined ? h("span", { class: "muted" }, terminal ? "none" : "not yet") : json(t.output, { lines: 10 })),
            h("td", {}, time(t.started_at)),
            h("td", {}, time(t.completed_at)),
            h(
              "td",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: "button",
                  disabled: busy || undefined,
                  dataset: { focusKey: `fork:${t.turn_index}` },
                  onclick: () => onFork(t.turn_index),
                },
                `Fork from turn ${t.turn_index}`,
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function pct(x) {
  return `${Math.round(x * 1000) / 10}%`;
}

function likelihoodBar(x) {
  const level = x >= 0.8 ? "high" : x >= 0.5 ? "mid" : "low";
  const fillEl = h("span", { class: `bar-fill ${level}` });
  // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy.
  fillEl.style.width = `${Math.max(0, Math.min(1, x)) * 100}%`;
  return h("span", { class: "likelihood" }, h("span", { class: "bar", "aria-hidden": "true" }, fillEl), h("span", { class: "num" }, pct(x)));
}

function shortValue(v) {
  if (v === undefined) return h("span", { class: "muted" }, "—");
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return h("span", { class: "mono value", title: text }, text.length > 80 ? `${text.slice(0, 79)}…` : text);
}

export function consensusTable(consensus) {
  const rows = consensusRows(consensus);
  if (!rows.length) return h("p", { class: "muted" }, "No field likelihoods.");
  return h(
    "table",
    { class: "consensus-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, "Likelihood"))),
    h(
      "tbody",
      {},
      rows.map((r) => h("tr", {}, h("th", { scope: "row", class: "mono" }, r.path), h("td", {}, shortValue(r.value)), h("td", {}, likelihoodBar(r.likelihood)))),
    ),
  );
}

export function consensusSection(steps) {
  const withConsensus = steps.filter((st) => st.consensus);
  if (!withConsensus.length) return h("p", { class: "empty" }, "No step of this run used consensus (n_consensus > 1).");
  return h(
    "div",
    { class: "consensus-grid" },
    withConsensus.map((st) =>
      h(
        "article",
        { class: "consensus-item", dataset: { stepId: st.step_id } },
        h("h3", { class: "mono" }, st.step_id),
        h("p", { class: "muted" }, `${st.consensus.succeeded ?? "?"} of ${st.consensus.attempts ?? st.n_consensus ?? "?"} attempts succeeded`),
        consensusTable(st.consensus),
      ),
    ),
  );
}

function tile(label, value, note) {
  return h("div", { class: "tile" }, h("span", { class: "tile-label" }, label), h("span", { class: "tile-value" }, value), note ? h("span", { class: "tile-note" }, note) : null);
}

export function usageSection(run, steps) {
  const tu = run.token_usage || {};
  const ls = run.latency_stats || {};
  const durations = steps.map((st) => st.duration_ms).filter((d) => typeof d === "number");
  const slowest = steps.filter((st) => typeof st.duration_ms === "number").sort((a, b) => b.duration_ms - a.duration_ms)[0];
  const models = new Set([...Object.keys(tu.by_model || {}), ...Object.keys(ls.by_model || {})]);
  return [
    h(
      "div",
      { class: "tiles" },
      tile("Total tokens", formatNumber(tu.total ?? 0), `${formatNumber(tu.prompt ?? 0)} prompt · ${formatNumber(tu.completion ?? 0)} completion`),
      tile("Model calls", formatNumber(ls.total_calls ?? 0), `avg ${formatMs(ls.avg_latency_ms ?? null)}`),
      tile("Step time", formatMs(durations.reduce((a, b) => a + b, 0)), `${durations.length} steps timed`),
      tile("Slowest step", slowest ? formatMs(slowest.duration_ms) : "—", slowest ? slowest.step_id : null),
    ),
    models.size
      ? h(
          "table",
          { class: "usage-table" },
          h("caption", {}, "By model"),
          h("thead", {}, h("tr", {}, ...["Model", "Tokens", "Prompt", "Completion", "Calls", "Avg latency"].map((c) => h("th", { scope: "col" }, c)))),
          h(
            "tbody",
            {},
            [...models].sort().map((m) => {
              const t = (tu.by_model || {})[m] || {};
              const l = (ls.by_model || {})[m] || {};
              return h(
                "tr",
                {},
                h("th", { scope: "row", class: "mono" }, m),
                h("td", { class: "num" }, formatNumber(t.total)),
                h("td", { class: "num" }, formatNumber(t.prompt)),
                h("td", { class: "num" }, formatNumber(t.completion)),
                h("td", { class: "num" }, formatNumber(l.calls)),
                h("td", { class: "num" }, formatMs(l.avg_latency_ms ?? null)),
              );
            }),
          ),
        )
      : h("p", { class: "muted" }, "No model calls in this run."),
    Object.keys(tu.by_provider || {}).length
      ? h(
          "p",
          { class: "muted" },
          "By provider: ",
          Object.entries(tu.by_provider)
            .map(([k, v]) => `${k} ${formatNumber(v.total)} tokens`)
            .join(" · "),
        )
      : null,
  ];
}

export function lineageSection(run, forks) {
  const parent = run.original_run_id
    ? h(
        "p",
        { class: "lineage-parent" },
        run.is_evaluation ? "Evaluation of run " : "Forked from ",
        run.is_evaluation ? runLink(run.original_run_id) : h("span", {}, `turn ${run.parent_turn_index} of run `),
        run.is_evaluation ? null : runLink(run.original_run_id),
      )
    : h("p", { class: "muted" }, "An original run (not forked, not an evaluation).");
  const children = forks.length
    ? h(
        "table",
        { class: "forks-table" },
        h("caption", {}, "Runs started from this one"),
        h("thead", {}, h("tr", {}, ...["Run", "Kind", "Status", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          forks.map((r) =>
            h(
              "tr",
              { dataset: { runId: r.id } },
              h("th", { scope: "row" }, runLink(r.id)),
              h("td", {}, r.is_evaluation ? "evaluation" : `fork from turn ${r.parent_turn_index}`),
              h("td", {}, runBadge(r.status)),
              h("td", {}, time(r.created_at)),
            ),
          ),
        ),
      )
    : h("p", { class: "muted" }, "No forks or evaluation runs yet.");
  const evaluation =
    run.evaluation !== null && run.evaluation !== undefined
      ? h("div", { class: "evaluation" }, h("h3", {}, "Evaluation"), json(run.evaluation, { lines: 12 }))
      : null;
  return [parent, children, evaluation];
}

export function commentsSection(comments) {
  return h(
    "ul",
    { class: "comments" },
    comments.map((c) => h("li", {}, h("p", { class: "comment-meta" }, h("strong", {}, c.author || "someone"), " · ", time(c.created_at)), h("p", {}, c.text))),
  );
}

function outputsOf(obj) {
  if (!obj || typeof obj !== "object") return obj;
  // Handles carry {type, data}; show the data of json handles, the metadata of files.
  const out = {};
  for (const [k, v] of Object.entries(obj)) out[k] = v && typeof v === "object" && v.type === "json" && "data" in v ? v.data : v;
  return out;
}

export function blockPanel(block, entry, ctx) {
  if (!block) return h("p", { class: "empty" }, "Select a block in the graph to see its steps, inputs and outputs, and to re-run it.");
  const steps = entry ? entry.steps : [];
  const state = entry && steps.length ? entry.state : "none";
  const step = steps.find((st) => st.step_id === ctx.stepId) || null;
  const rerunnable = RERUNNABLE.has(block.type);
  const several = steps.length > 1;
  const stepField = several
    ? h(
        "div",
        { class: "field" },
        h("label", { for: "rerun-step" }, "Step"),
        h(
          "select",
          { id: "rerun-step", dataset: { focusKey: "rerun-step" }, onchange: (ev) => ctx.onStep(ev.target.value) },
          steps.map((st) => h("option", { value: st.step_id, selected: st.step_id === ctx.stepId }, `${st.step_id} — ${stateLabel(stateOf(st))}`)),
        ),
      )
    : null;
  const consensusField = MODEL_TYPES.has(block.type)
    ? h(
        "div",
        { class: "field" },
        h("label", { for: "rerun-consensus" }, "n_consensus"),
        h(
          "select",
          { id: "rerun-consensus", dataset: { focusKey: "rerun-consensus" }, onchange: (ev) => ctx.onConsensus(ev.target.value) },
          ["", "3", "5", "7"].map((v) => h("option", { value: v, selected: v === (ctx.nConsensus || "") }, v ? v : "as configured")),
        ),
      )
    : null;
  return [
    h(
      "div",
      { class: "block-head" },
      h("h3", { class: "mono", id: "selected-block" }, block.id),
      badge(state),
    ),
    h("p", { class: "muted" }, block.name ? `${block.name} · ` : "", `${block.type} block`, ctx.bodyOf ? ` · body of ${ctx.bodyOf}` : ""),
    steps.length > 1 ? h("p", { class: "muted" }, `${steps.length} steps: `, Object.entries(entry.allCounts).map(([k, n]) => `${n} ${k}`).join(", ")) : null,
    json(block.config || {}, { label: "Configuration (run's version)" }),
    step
      ? h(
          "div",
          { class: "step-detail" },
          h("h4", {}, several ? `Step ${step.step_id}` : "Step", " ", badge(stateOf(step))),
          h(
            "dl",
            { class: "facts compact" },
            fact("Duration", formatMs(step.duration_ms)),
            fact("Attempt", attemptOf(step)),
            fact("Turn", step.turn_index ?? 0),
            step.active_output_handles && step.active_output_handles.length ? fact("Active outputs", step.active_output_handles.join(", ")) : null,
          ),
          stepNote(step) ? h("p", { class: stateOf(step) === "error" ? "error-text" : "muted" }, stepNote(step)) : null,
          json(outputsOf(step.inputs), { label: "Inputs" }),
          step.outputs ? json(outputsOf(step.outputs), { label: "Outputs", open: true }) : null,
        )
      : steps.length
        ? null
        : h("p", { class: "muted" }, "This block has no step in this run (yet)."),
    h(
      "div",
      { class: "actions" },
      h("h4", {}, "Re-run against the current draft"),
      stepField,
      consensusField,
      h(
        "div",
        { class: "field checkbox" },
        h("input", { type: "checkbox", id: "rerun-verify", checked: ctx.verifyUpstream, dataset: { focusKey: "rerun-verify" }, onchange: (ev) => ctx.onVerify(ev.target.checked) }),
        h("label", { for: "rerun-verify" }, "Refuse if the draft changed upstream"),
      ),
      h(
        "button",
        {
          type: "button",
          class: "button primary",
          id: "rerun-button",
          dataset: { focusKey: "rerun-button" },
          disabled: !rerunnable || ctx.busy || undefined,
          "aria-describedby": rerunnable ? undefined : "rerun-why",
          onclick: ctx.onRerun,
        },
        ctx.busy ? "Re-running…" : "Re-run block",
      ),
      rerunnable ? null : h("p", { class: "muted", id: "rerun-why" }, `A ${block.type} block runs only inside a run.`),
      ctx.problem || null,
    ),
    ctx.history && ctx.history.length
      ? h(
          "div",
          { class: "history" },
          h("h4", {}, "Earlier re-runs"),
          h(
            "ul",
            {},
            ctx.history.map((ex) =>
              h(
                "li",
                {},
                h("button", { type: "button", class: "link mono", dataset: { focusKey: `ex:${ex.id}` }, onclick: () => ctx.onShowExecution(ex) }, ex.id),
                " ",
                badge(stateOf(ex)),
                " ",
                h("span", { class: "muted" }, ex.source_step_id || ""),
              ),
            ),
          ),
        )
      : null,
  ];
}

export function executionCard(ex, { onCancel, cancelling }) {
  const st = stateOf(ex);
  const lc = ex.lifecycle || {};
  const terminal = TERMINAL_STEP.has(st);
  const order = ["queued", "running", "completed"];
  const reached = terminal ? (st === "completed" ? 3 : 2) : Math.max(0, order.indexOf(st) + 1);
  return h(
    "article",
    { class: "execution-card", dataset: { executionId: ex.id, state: st }, "aria-labelledby": "execution-title" },
    h("h3", { id: "execution-title" }, "Re-run of ", h("span", { class: "mono" }, ex.block_id), " ", badge(st)),
    h(
      "ol",
      { class: "timeline", "aria-label": "Lifecycle" },
      ["queued", "running", terminal ? st : "completed"].map((name, i) =>
        h("li", { class: [i < reached ? "done" : null, i === reached - 1 ? "current" : null, `tl-${name}`] }, stateLabel(name)),
      ),
    ),
    h(
      "dl",
      { class: "facts compact" },
      fact("Execution", h("span", { class: "mono" }, ex.id)),
      fact("Step", h("span", { class: "mono" }, ex.source_step_id || ex.block_id)),
      fact("Duration", formatMs(ex.duration_ms)),
      fact("Created", time(ex.created_at)),
      ex.n_consensus && ex.n_consensus > 1 ? fact("n_consensus", ex.n_consensus) : null,
      lc.worker ? fact("Worker", lc.worker) : null,
    ),
    st === "error" ? h("p", { class: "error-text" }, `${(lc.error && lc.error.type) || "error"}: ${lc.message || ""}`) : null,
    lc.reason ? h("p", { class: "muted" }, String(lc.reason).replaceAll("_", " ")) : null,
    ex.handle_outputs ? h("div", { class: "execution-outputs" }, h("h4", {}, "Outputs"), json(outputsOf(ex.handle_outputs), { lines: 24 })) : null,
    ex.consensus ? h("div", {}, h("h4", {}, "Consensus"), consensusTable(ex.consensus)) : null,
    terminal ? null : h("button", { type: "button", class: "button", disabled: cancelling || undefined, onclick: onCancel, dataset: { focusKey: "ex-cancel" } }, cancelling ? "Cancelling…" : "Cancel re-run"),
  );
}
