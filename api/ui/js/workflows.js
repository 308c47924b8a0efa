// The workflows page (/ui/workflows): every workflow of the organization, newest first.

import { get, problemView } from "./api.js";
import { fill, h, time } from "./dom.js";
import { keyGate } from "./session.js";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 50;
const state = { cursors: [null], index: 0, page: null };

async function load() {
  const after = state.cursors[state.index];
  const q = new URLSearchParams({ limit: String(PAGE_SIZE), ...(after ? { after } : {}) });
  state.page = await get(`/v1/workflows?${q}`);
  render();
}

function table(workflows) {
  if (!workflows.length) return h("p", { class: "empty" }, "No workflows yet: create one with POST /v1/workflows or `quorum run FILE.json`.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "workflows-table" },
      h("caption", { class: "visually-hidden" }, "Workflows, newest first"),
      h("thead", {}, h("tr", {}, ...["Workflow", "Id", "Latest version", "Created", "Draft updated", "Runs"].map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        workflows.map((w) =>
          h(
            "tr",
            { dataset: { workflowId: w.id } },
            h("th", { scope: "row" }, h("a", { href: `/ui/workflows/${encodeURIComponent(w.id)}` }, w.name), w.description ? h("div", { class: "note" }, w.description) : null),
            h("td", { class: "mono" }, w.id),
            h("td", { class: "num" }, `v${w.latest_version}`),
            h("td", {}, time(w.created_at)),
            h("td", {}, time(w.updated_at)),
            h("td", {}, h("a", { href: `/ui?workflow_id=${encodeURIComponent(w.id)}` }, "runs →")),
          ),
        ),
      ),
    ),
  );
}

function render() {
  const page = state.page;
  $("app").hidden = false;
  $("page-problem").replaceChildren();
  fill($("workflows"), table(page.data));
  $("newer").disabled = state.index === 0;
  $("older").disabled = !page.has_more;
  $("page-label").textContent = `page ${state.index + 1}`;
  $("workflows-count").textContent = `${page.data.length} on this page${page.has_more ? ", more older ones" : ""}`;
}

function showError(err) {
  if (!gate.refused(err)) fill($("page-problem"), problemView(err, { context: "Could not read the workflows" }));
}

const gate = keyGate({ content: "app", onStart: () => load().catch(showError), onStop: () => {} });

$("older").addEventListener("click", () => {
  if (!state.page || !state.page.has_more) return;
  state.cursors[state.index + 1] = state.page.next_after;
  state.index += 1;
  load().catch(showError);
});
$("newer").addEventListener("click", () => {
  if (state.index === 0) return;
  state.index -= 1;
  load().catch(showError);
});
gate.begin();
