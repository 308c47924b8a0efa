// The run inspector: /ui/runs/{run_id}. Reads the run through the /v1 API with the user's key.

import { ApiError, allPages, get, post, problemView } from "./api.js";
import { fill, h, keepFocus, runLink } from "./dom.js";
import { LEGEND, computeLayout, renderGraph } from "./graph.js";
import { Live, oneAtATime } from "./live.js";
import { TERMINAL_RUN, TERMINAL_STEP, blockInfo, chronological, stateOf } from "./model.js";
import * as panels from "./panels.js";
import { keyGate, showMode } from "./session.js";
import { timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const segments = location.pathname.split("/").filter(Boolean);
const RUN_ID = decodeURIComponent(segments[segments.indexOf("runs") + 1] || "");
const RUNS = `/v1/workflows/runs/${encodeURIComponent(RUN_ID)}`;

const state = {
  run: null,
  steps: [],
  stepsTruncated: false,
  forks: [],
  refreshes: 0,
  layout: null,
  layoutKey: null,
  selectedBlock: null,
  selectedStep: null,
  stepsFilter: "",
  rerun: { nConsensus: "", verifyUpstream: true, busy: false, problem: null, history: [] },
  execution: null,
  executionToken: 0,
  cancelling: false,
  forking: false,
};
const rendered = new Map();
let live = null;

// -- loading ------------------------------------------------------------------------------

async function load() {
  const withForks = state.refreshes % 5 === 0 || (state.run && TERMINAL_RUN.has(state.run.status));
  const [run, steps, forks] = await Promise.all([
    get(RUNS),
    allPages(`${RUNS}/steps`),
    withForks ? allPages(`/v1/workflows/runs?original_run_id=${encodeURIComponent(RUN_ID)}`, { max: 200 }) : null,
  ]);
  state.refreshes++;
  state.run = run;
  state.steps = chronological(steps.items);
  state.stepsTruncated = steps.truncated;
  if (forks) state.forks = forks.items;
  render();
}

const refresh = oneAtATime(load);

// -- rendering ----------------------------------------------------------------------------

// Re-render a section only when what it shows changed (no flicker, focus and scroll kept).
function section(name, key, draw) {
  const k = JSON.stringify(key);
  if (rendered.get(name) === k) return;
  rendered.set(name, k);
  keepFocus(draw);
}

function render() {
  const run = state.run;
  if (!run) return;
  $("inspector").hidden = false;
  $("page-problem").replaceChildren();
  document.title = `Run ${run.id} · ${run.status} · Quorum`;
  const { info, activeHandles } = blockInfo(state.steps, run.config);

  section("summary", [run.status, run.progress, run.completed_at, run.error, run.termination_reason, Math.floor(Date.now() / 1000)], () =>
    fill($("summary"), panels.summary(run)),
  );

  const layoutKey = JSON.stringify(run.config ? [run.config.blocks, run.config.edges] : null);
  if (layoutKey !== state.layoutKey) {
    state.layoutKey = layoutKey;
    state.layout = computeLayout(run.config);
  }
  const graphKey = [...info.entries()].map(([id, e]) => [id, e.state, e.counts, e.visits, e.iterations, e.iterationsDone, [...(activeHandles.get(id) || [])]]);
  section("graph", [layoutKey, graphKey, state.selectedBlock], () =>
    fill(
      $("graph"),
      renderGraph(state.layout, {
        infoByBlock: info,
        activeHandles,
        selected: state.selectedBlock,
        onSelect: (id) => selectBlock(id),
      }),
    ),
  );

  renderBlockPanel(info);
  const tick = TERMINAL_RUN.has(run.status) ? 0 : Math.floor(Date.now() / 1000);
  section("timeline", [state.steps, run.created_at, run.completed_at, tick], () => fill($("timeline"), timeline(state.steps, run, { onPick: (st) => selectBlock(st.block_id, st.step_id, { scroll: true }) })));

  section("steps", [state.steps, state.stepsFilter, state.stepsTruncated, state.selectedStep], () =>
    fill(
      $("steps"),
      panels.stepsTable(state.steps, {
        filter: state.stepsFilter,
        truncated: state.stepsTruncated,
        selectedStepId: state.selectedStep,
        onPick: (st) => selectBlock(st.block_id, st.step_id, { scroll: true }),
      }),
    ),
  );
  section("turns", [run.io_pairs, state.forking], () => fill($("turns"), panels.turnsTable(run, { onFork: fork, busy: state.forking })));
  section("consensus", state.steps.filter((st) => st.consensus).map((st) => [st.step_id, st.consensus]), () =>
    fill($("consensus"), panels.consensusSection(state.steps)),
  );
  section("usage", [run.token_usage, run.latency_stats, state.steps.map((st) => st.duration_ms)], () => fill($("usage"), panels.usageSection(run, state.steps)));
  section("lineage", [run.original_run_id, run.parent_turn_index, run.is_evaluation, run.evaluation, state.forks], () =>
    fill($("lineage"), panels.lineageSection(run, state.forks)),
  );
  $("comments-card").hidden = !(run.comments && run.comments.length);
  section("comments", run.comments || [], () => fill($("comments"), panels.commentsSection(run.comments || [])));
}

function blockById(id) {
  const blocks = (state.run && state.run.config && state.run.config.blocks) || [];
  return blocks.find((b) => b.id === id) || null;
}

function renderBlockPanel(info) {
  const block = blockById(state.selectedBlock);
  const entry = block ? info.get(block.id) : null;
  const r = state.rerun;
  section("block", [block, entry && entry.steps, state.selectedStep, r.nConsensus, r.verifyUpstream, r.busy, Boolean(r.problem), r.problemSeq, r.history.map((ex) => [ex.id, stateOf(ex)])], () =>
    fill(
      $("block-panel"),
      panels.blockPanel(block, entry, {
        stepId: state.selectedStep,
        bodyOf: block && state.layout ? state.layout.bodyOf.get(block.id) : null,
        nConsensus: r.nConsensus,
        verifyUpstream: r.verifyUpstream,
        busy: r.busy,
        problem: r.problem,
        history: r.history.filter((ex) => !state.execution || ex.id !== state.execution.id),
        onStep: (stepId) => {
          state.selectedStep = stepId;
          render();
        },
        onConsensus: (v) => {
          r.nConsensus = v;
        },
        onVerify: (v) => {
          r.verifyUpstream = v;
        },
        onRerun: rerun,
        onShowExecution: (ex) => trackExecution(ex),
      }),
    ),
  );
}

function defaultStep(blockId) {
  const steps = state.steps.filter((st) => st.block_id === blockId);
  const ran = steps.filter((st) => ["completed", "error"].includes(stateOf(st)));
  const pick = (ran.length ? ran : steps)[(ran.length ? ran : steps).length - 1];
  return pick ? pick.step_id : null;
}

function selectBlock(blockId, stepId, { scroll = false } = {}) {
  const changed = blockId !== state.selectedBlock;
  state.selectedBlock = blockId;
  state.selectedStep = stepId || (changed ? defaultStep(blockId) : state.selectedStep) || defaultStep(blockId);
  if (changed) {
    state.rerun.problem = null;
    state.rerun.history = [];
    loadHistory(blockId);
  }
  render();
  if (scroll) $("block-title").scrollIntoView({ block: "nearest", behavior: "smooth" });
}

async function loadHistory(blockId) {
  try {
    const page = await get(`/v1/workflows/blocks/executions?run_id=${encodeURIComponent(RUN_ID)}&block_id=${encodeURIComponent(blockId)}&limit=5`);
    if (state.selectedBlock === blockId) {
      state.rerun.history = page.data;
      render();
    }
  } catch {
    // The list is a convenience; the page works without it.
  }
}

// -- actions ------------------------------------------------------------------------------

async function rerun() {
  const block = blockById(state.selectedBlock);
  if (!block || state.rerun.busy) return;
  const r = state.rerun;
  const steps = state.steps.filter((st) => st.block_id === block.id);
  const body = { run_id: RUN_ID, block_id: block.id };
  // The step whose inputs to use: needed when the block ran several times; sent too when its
  // only step is not named by the block id alone (a later turn, a single iteration).
  const stepId = state.selectedStep || defaultStep(block.id);
  if (stepId && (steps.length > 1 || stepId !== block.id)) body.step_id = stepId;
  if (r.nConsensus) body.n_consensus = Number(r.nConsensus);
  if (!r.verifyUpstream) body.check_eligibility = false;
  r.busy = true;
  r.problem = null;
  render();
  try {
    const ex = await post("/v1/workflows/blocks/executions", body);
    r.busy = false;
    render();
    await trackExecution(ex);
    loadHistory(block.id);
  } catch (err) {
    r.busy = false;
    r.problem = problemView(err, { context: "Re-run refused" });
    r.problemSeq = (r.problemSeq || 0) + 1;
    render();
  }
}

function renderExecution() {
  const ex = state.execution;
  if (!ex) return;
  // Only on change: the region is announced to screen readers when it changes.
  section("execution", [ex, state.cancelling], () =>
    fill($("execution"), panels.executionCard(ex, { onCancel: cancelExecution, cancelling: state.cancelling })),
  );
}

async function trackExecution(ex) {
  const token = ++state.executionToken;
  state.execution = ex;
  state.cancelling = false;
  renderExecution();
  let failures = 0;
  while (token === state.executionToken && !TERMINAL_STEP.has(stateOf(state.execution))) {
    await sleep(500);
    if (token !== state.executionToken) return;
    try {
      state.execution = await get(`/v1/workflows/blocks/executions/${encodeURIComponent(ex.id)}`);
      failures = 0;
    } catch (err) {
      if (++failures >= 5) {
        rendered.delete("execution");
        fill($("execution"), problemView(err, { context: "Could not follow the re-run" }));
        return;
      }
      continue;
    }
    renderExecution();
  }
}

async function cancelExecution() {
  const ex = state.execution;
  if (!ex) return;
  state.cancelling = true;
  renderExecution();
  try {
    state.execution = await post(`/v1/workflows/blocks/executions/${encodeURIComponent(ex.id)}/cancel`);
  } catch (err) {
    state.cancelling = false;
    renderExecution();
    if (!(err instanceof ApiError && err.status === 409)) $("execution").append(problemView(err, { context: "Cancel refused" }));
    return;
  }
  state.cancelling = false;
  renderExecution();
}

async function fork(turnIndex) {
  const result = $("fork-result");
  const body = { resume_turn_index: turnIndex };
  const raw = $("fork-input").value.trim();
  if (raw) {
    try {
      body.input = JSON.parse(raw);
    } catch (err) {
      fill(result, h("div", { class: "problem", role: "alert" }, h("p", {}, h("strong", {}, "The input is not valid JSON"), `: ${err.message}`)));
      return;
    }
  }
  state.forking = true;
  render();
  try {
    const child = await post(`${RUNS}/checkpoint`, body);
    fill(
      result,
      h(
        "p",
        { class: "success", dataset: { runId: child.id } },
        `Forked from turn ${turnIndex}: new run `,
        runLink(child.id),
        ` (${child.status.replaceAll("_", " ")}).`,
      ),
    );
    state.forks = [child, ...state.forks.filter((r) => r.id !== child.id)];
  } catch (err) {
    fill(result, problemView(err, { context: `Fork from turn ${turnIndex} refused` }));
  } finally {
    state.forking = false;
    render();
  }
}

// -- key, errors, start -------------------------------------------------------------------

const setMode = (mode) =>
  showMode(mode, { streaming: "Live: following the run's events", polling: "Live: refreshing every second", finished: "Run finished: showing its final state" });

// Returns true when the page cannot go on (and says why).
function showError(err) {
  if (gate.refused(err)) return true;
  if (err instanceof ApiError && err.status === 404) {
    if (live) live.stop();
    $("inspector").hidden = true;
    fill(
      $("page-problem"),
      problemView(err, { context: "Run not found" }),
      h("p", { class: "muted" }, "Runs of another organization answer exactly like missing ones: check the run id and the API key."),
    );
    setMode("");
    return true;
  }
  setMode("error");
  fill($("page-problem"), problemView(err, { context: "Could not refresh the run" }));
  return false;
}

const gate = keyGate({
  content: "inspector",
  onStart: start,
  onStop: () => {
    if (live) live.stop();
    setMode("");
  },
});

async function start() {
  try {
    await refresh();
  } catch (err) {
    showError(err);
    if (!(err instanceof ApiError) || ![401, 404].includes(err.status)) setTimeout(start, 2000);
    return;
  }
  if (live) live.stop();
  live = new Live({
    runId: RUN_ID,
    refresh,
    isDone: () => Boolean(state.run && TERMINAL_RUN.has(state.run.status)),
    onMode: setMode,
    onError: showError,
  });
  if (TERMINAL_RUN.has(state.run.status)) setMode("finished");
  else live.start();
}

function init() {
  fill(
    $("legend"),
    panels.legend(LEGEND),
  );
  $("steps-filter").addEventListener("input", (ev) => {
    state.stepsFilter = ev.target.value;
    render();
  });
  if (!/^[0-9a-f]{24}$/.test(RUN_ID)) {
    fill($("page-problem"), h("div", { class: "problem", role: "alert" }, h("p", {}, h("strong", {}, "Not a run id: "), RUN_ID || "(empty)")));
    return;
  }
  gate.begin();
}

init();
