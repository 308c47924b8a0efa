// One workflow (/ui/workflows/{id}): its draft graph, what the draft changes against any
// published version, its latest runs, and per block the history of its re-runs.

import { ApiError, allPages, get, problemView } from "./api.js";
import { fill, h, json, keepFocus, time } from "./dom.js";
import { blockChange, decorate, diffSection, unionGraph } from "./diffview.js";
import { computeLayout, renderGraph } from "./graph.js";
import { rerunsTable } from "./reruns.js";
import { runsTable } from "./runsview.js";
import { keyGate } from "./session.js";

const $ = (id) => document.getElementById(id);
const segments = location.pathname.split("/").filter(Boolean);
const WF_ID = decodeURIComponent(segments[segments.indexOf("workflows") + 1] || "");
const BASE = `/v1/workflows/${encodeURIComponent(WF_ID)}`;

const state = { wf: null, version: null, versionGraph: null, diff: null, runs: [], selected: null, reruns: null, rerunsFor: null };

async function loadWorkflow() {
  const [wf, runs] = await Promise.all([get(BASE), get(`/v1/workflows/runs?workflow_id=${encodeURIComponent(WF_ID)}&limit=10`)]);
  state.wf = wf;
  state.runs = runs.data;
  if (state.version === null) state.version = wf.latest_version;
  renderAll();
  await loadDiff();
}

async function loadDiff() {
  const n = state.version;
  state.diff = null;
  renderDiff();
  const [diff, version] = await Promise.all([get(`${BASE}/draft/diff?version=${n}`), get(`${BASE}/versions/${n}`)]);
  if (n !== state.version) return; // another version was picked meanwhile
  state.diff = diff;
  state.versionGraph = version.graph;
  renderAll();
}

async function loadReruns(blockId) {
  state.reruns = null;
  state.rerunsFor = blockId;
  renderBlock();
  const q = new URLSearchParams({ workflow_id: WF_ID, block_id: blockId });
  const { items, truncated } = await allPages(`/v1/workflows/blocks/executions?${q}`, { max: 100 });
  if (state.rerunsFor !== blockId) return;
  state.reruns = { items, truncated };
  renderBlock();
}

// -- rendering -------------------------------------------------------------------------------

function renderAll() {
  const wf = state.wf;
  $("app").hidden = false;
  $("page-problem").replaceChildren();
  document.title = `${wf.name} · Workflow · Quorum`;
  renderSummary();
  renderGraphCard();
  renderDiff();
  renderBlock();
  fill($("wf-runs"), runsTable(state.runs, { workflows: new Map([[wf.id, wf.name]]) }));
  $("all-runs").href = `/ui?workflow_id=${encodeURIComponent(wf.id)}`;
}

function renderSummary() {
  const wf = state.wf;
  const versions = wf.versions || [];
  fill(
    $("summary"),
    h("div", { class: "summary-head" }, h("h1", { id: "workflow-title" }, wf.name), h("span", { class: "mono muted" }, wf.id)),
    wf.description ? h("p", {}, wf.description) : null,
    h(
      "dl",
      { class: "facts" },
      h("div", { class: "fact" }, h("dt", {}, "Latest version"), h("dd", {}, `v${wf.latest_version}`)),
      h("div", { class: "fact" }, h("dt", {}, "Created"), h("dd", {}, time(wf.created_at))),
      h("div", { class: "fact" }, h("dt", {}, "Draft updated"), h("dd", {}, time(wf.updated_at))),
      h("div", { class: "fact" }, h("dt", {}, "Versions"), h("dd", {}, versions.map((v) => `v${v.number}${v.name ? ` (${v.name})` : ""}`).join(", "))),
    ),
  );
  const select = $("diff-version");
  if (select.options.length !== versions.length) {
    fill(select, [...versions].reverse().map((v) => h("option", { value: String(v.number) }, `version ${v.number}${v.name ? ` · ${v.name}` : ""}`)));
  }
  select.value = String(state.version);
}

function renderGraphCard() {
  const wf = state.wf;
  const config = unionGraph(wf.draft, state.versionGraph, state.diff);
  const layout = computeLayout(config);
  const svg = renderGraph(layout, { infoByBlock: new Map(), activeHandles: new Map(), selected: state.selected, onSelect: selectBlock });
  svg.setAttribute("aria-label", "The draft graph, marked with what it changes against the selected version");
  keepFocus(() => fill($("graph"), decorate(svg, layout, state.diff)));
}

function renderDiff() {
  fill($("diff"), diffSection(state.diff, { version: state.version, versionGraph: state.versionGraph, draft: state.wf && state.wf.draft, onSelect: selectBlock }));
}

function blockOf(id) {
  const inDraft = (state.wf.draft.blocks || []).find((b) => b.id === id);
  if (inDraft) return { block: inDraft, where: "draft" };
  const inVersion = ((state.versionGraph && state.versionGraph.blocks) || []).find((b) => b.id === id);
  return inVersion ? { block: inVersion, where: `version ${state.version}` } : null;
}

function renderBlock() {
  if (!state.wf || !state.selected) return;
  const found = blockOf(state.selected);
  if (!found) return fill($("block-panel"), h("p", { class: "empty" }, `Block ${state.selected} is in neither graph.`));
  const { block, where } = found;
  const change = blockChange(state.diff, block.id);
  fill(
    $("block-panel"),
    h("div", { class: "block-head" }, h("h3", { class: "mono", id: "selected-block" }, block.id), change ? h("span", { class: `tag diff-tag-${change}` }, change === "same" ? "unchanged" : change) : null),
    h("p", { class: "muted" }, block.name ? `${block.name} · ` : "", `${block.type} block`),
    json(block.config || {}, { label: `Configuration (${where})` }),
    h("h4", { id: "reruns-title" }, "Re-runs of this block"),
    h("p", { class: "hint" }, "Each re-ran the block of the draft of its time with the inputs of a step of a past run."),
    h("div", { id: "reruns", "aria-labelledby": "reruns-title" }, state.reruns ? rerunsTable(state.reruns.items, { truncated: state.reruns.truncated }) : h("p", { class: "muted" }, "Loading…")),
  );
}

function selectBlock(id) {
  state.selected = id;
  renderGraphCard();
  loadReruns(id).catch(showError);
  $("block-title").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// -- errors, start ----------------------------------------------------------------------------

function showError(err) {
  if (gate.refused(err)) return;
  if (err instanceof ApiError && err.status === 404) {
    $("app").hidden = true;
    fill(
      $("page-problem"),
      problemView(err, { context: "Workflow not found" }),
      h("p", { class: "muted" }, "Workflows of another organization answer exactly like missing ones: check the id and the API key."),
    );
    return;
  }
  fill($("page-problem"), problemView(err, { context: "Could not read the workflow" }));
}

const gate = keyGate({ content: "app", onStart: () => loadWorkflow().catch(showError), onStop: () => {} });

function init() {
  $("diff-version").addEventListener("change", (ev) => {
    state.version = Number(ev.target.value);
    loadDiff().catch(showError);
  });
  if (!/^[0-9a-f]{24}$/.test(WF_ID)) {
    fill($("page-problem"), h("div", { class: "problem", role: "alert" }, h("p", {}, h("strong", {}, "Not a workflow id: "), WF_ID || "(empty)")));
    return;
  }
  gate.begin();
}

init();
