// The runs page (/ui, the home page): find runs, follow them live, compare several.
//
// Filters live in the address (?status=&workflow_id=&created_from=&created_to=&id_prefix=),
// so a filtered list can be linked and the browser's Back works. One stream follows every run
// of the organization (GET /v1/workflows/runs/events); each event only nudges a re-read of the
// page shown, and without that stream the page polls.

import { allPages, get, problemView } from "./api.js";
import { fill, h, keepFocus } from "./dom.js";
import { comparison, loadComparison } from "./compare.js";
import { Live, oneAtATime } from "./live.js";
import { MAX_COMPARE, runsTable } from "./runsview.js";
import { keyGate, showMode } from "./session.js";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 25;
const FILTERS = ["status", "workflow_id", "created_from", "created_to", "id_prefix"];
const FEED = "/v1/workflows/runs/events";

const state = { filters: {}, cursors: [null], index: 0, page: null, workflows: new Map(), selected: new Map(), compared: [] };
let live = null;

// -- filters <-> form <-> address -----------------------------------------------------------

function readAddress() {
  const params = new URLSearchParams(location.search);
  state.filters = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]).filter(([, v]) => v));
}

// datetime-local inputs hold local wall time; the API takes an instant (RFC 3339, UTC).
const toInstant = (local) => (local ? new Date(local).toISOString() : "");
function toLocal(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fillForm() {
  const f = state.filters;
  $("f-status").value = f.status || "";
  $("f-workflow").value = f.workflow_id || "";
  $("f-from").value = f.created_from ? toLocal(f.created_from) : "";
  $("f-to").value = f.created_to ? toLocal(f.created_to) : "";
  $("f-id").value = f.id_prefix || "";
}

function readForm() {
  const id = $("f-id").value.trim().toLowerCase();
  const values = {
    status: $("f-status").value,
    workflow_id: $("f-workflow").value,
    created_from: toInstant($("f-from").value),
    created_to: toInstant($("f-to").value),
    id_prefix: id,
  };
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v));
}

function applyFilters(filters, { push = true } = {}) {
  state.filters = filters;
  state.cursors = [null];
  state.index = 0;
  const params = new URLSearchParams(filters);
  const url = `${location.pathname}${params.toString() ? `?${params}` : ""}`;
  if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  refresh().catch(showError);
}

// -- loading ---------------------------------------------------------------------------------

function listPath() {
  const params = new URLSearchParams({ ...state.filters, limit: String(PAGE_SIZE) });
  const after = state.cursors[state.index];
  if (after) params.set("after", after);
  return `/v1/workflows/runs?${params}`;
}

async function load() {
  const f = state.filters;
  const refusal =
    f.id_prefix && !/^[0-9a-f]{1,24}$/.test(f.id_prefix)
      ? "A run id is made of hex digits (0-9, a-f), at most 24."
      : f.created_from && f.created_to && new Date(f.created_to) <= new Date(f.created_from)
        ? "“Created before” must be later than “Created from”."
        : null;
  if (refusal) {
    // Refused here rather than by the API: nothing to ask until the filters make sense.
    state.page = { data: [], has_more: false, next_after: null };
    fill($("filters-problem"), h("p", { class: "problem", role: "alert" }, refusal));
    return render();
  }
  const page = await get(listPath());
  fill($("filters-problem"));
  state.page = page;
  render();
}

const refresh = oneAtATime(load);

async function loadWorkflows() {
  const { items } = await allPages("/v1/workflows", { max: 1000 });
  state.workflows = new Map(items.map((w) => [w.id, w.name]));
  const select = $("f-workflow");
  fill(select, h("option", { value: "" }, "any"), items.map((w) => h("option", { value: w.id }, `${w.name} (${w.id.slice(-6)})`)));
  select.value = state.filters.workflow_id || "";
}

// -- rendering -------------------------------------------------------------------------------

function render() {
  const page = state.page;
  if (!page) return;
  $("app").hidden = false;
  $("page-problem").replaceChildren();
  keepFocus(() =>
    fill($("runs"), runsTable(page.data, { workflows: state.workflows, selected: state.selected, onToggle: toggle, filtered: Object.keys(state.filters).length > 0 })),
  );
  $("newer").disabled = state.index === 0;
  $("older").disabled = !page.has_more;
  $("page-label").textContent = `page ${state.index + 1}`;
  $("runs-count").textContent = `${page.data.length} run${page.data.length === 1 ? "" : "s"} on this page${page.has_more ? ", more older ones" : ""}`;
  renderSelection();
}

function renderSelection() {
  const n = state.selected.size;
  fill(
    $("selection"),
    n
      ? [
          h("span", {}, `${n} selected`, n >= MAX_COMPARE ? ` (at most ${MAX_COMPARE})` : ""),
          h("button", { type: "button", class: "button primary", id: "compare-button", disabled: n < 2 || undefined, onclick: compare }, n < 2 ? "Select another run to compare" : `Compare ${n} runs`),
          h("button", { type: "button", class: "button", onclick: clearSelection }, "Clear selection"),
        ]
      : h("span", { class: "muted" }, "Tick runs to compare their inputs, outputs and durations side by side."),
  );
}

function toggle(run, on) {
  if (on && state.selected.size < MAX_COMPARE) state.selected.set(run.id, run);
  else state.selected.delete(run.id);
  render();
}

function clearSelection() {
  state.selected.clear();
  render();
}

async function compare() {
  const ids = [...state.selected.keys()];
  $("compare-card").hidden = false;
  fill($("compare"), h("p", { class: "muted" }, `Loading ${ids.length} runs…`));
  try {
    const entries = await loadComparison(ids);
    fill($("compare"), comparison(entries, { workflows: state.workflows }));
  } catch (err) {
    if (!gate.refused(err)) fill($("compare"), problemView(err, { context: "Could not load the runs to compare" }));
  }
  $("compare-card").scrollIntoView({ block: "start", behavior: "smooth" });
}

// -- errors, start ----------------------------------------------------------------------------

function showError(err) {
  if (gate.refused(err)) return true;
  const bad = err && err.status === 422;
  fill(bad ? $("filters-problem") : $("page-problem"), problemView(err, { context: bad ? "These filters were refused" : "Could not read the runs" }));
  if (!bad) showMode("error");
  return false;
}

const gate = keyGate({
  content: "app",
  onStart: start,
  onStop: () => {
    if (live) live.stop();
    showMode("");
  },
});

async function start() {
  try {
    await Promise.all([loadWorkflows(), refresh()]);
  } catch (err) {
    if (showError(err)) return; // the key was refused: the gate asks for another
    if (!(err && err.status === 422)) return void setTimeout(start, 3000);
  }
  if (live) live.stop();
  live = new Live({ path: FEED, route: FEED, pollMs: 3000, refresh, isDone: () => false, onMode: (m) => showMode(m), onError: showError });
  live.start();
}

function init() {
  readAddress();
  fillForm();
  $("filters").addEventListener("change", () => applyFilters(readForm()));
  $("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    applyFilters(readForm());
  });
  let typing = null;
  $("f-id").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => applyFilters(readForm()), 300);
  });
  $("f-clear").addEventListener("click", () => {
    applyFilters({});
    fillForm();
  });
  $("older").addEventListener("click", () => {
    if (!state.page || !state.page.has_more) return;
    state.cursors[state.index + 1] = state.page.next_after;
    state.index += 1;
    refresh().catch(showError);
  });
  $("newer").addEventListener("click", () => {
    if (state.index === 0) return;
    state.index -= 1;
    refresh().catch(showError);
  });
  $("compare-close").addEventListener("click", () => {
    $("compare-card").hidden = true;
  });
  window.addEventListener("popstate", () => {
    readAddress();
    fillForm();
    applyFilters(state.filters, { push: false });
  });
  gate.begin();
}

init();
