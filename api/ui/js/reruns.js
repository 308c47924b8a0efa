// A block's re-runs (block executions) with their outcomes, newest first.

import { badge, formatMs, h, runLink, time } from "./dom.js";
import { execSourceRun, execSourceStep, execVersion, lifecycleError, lifecycleReason, statusOf } from "./wire.js";

function outcome(ex) {
  const error = lifecycleError(ex);
  if (error) return h("span", { class: "error-text" }, `${error.type || "error"}: ${error.message || ""}`);
  const reason = lifecycleReason(ex);
  return reason ? h("span", { class: "muted" }, String(reason).replaceAll("_", " ")) : null;
}

export function rerunsTable(executions, { truncated }) {
  if (!executions.length) return h("p", { class: "empty" }, "This block has not been re-run yet.");
  return [
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "reruns-table" },
        h("caption", { class: "visually-hidden" }, "Re-runs of the block, newest first"),
        h("thead", {}, h("tr", {}, ...["Execution", "Outcome", "Inputs from", "Run's version", "Duration", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h(
          "tbody",
          {},
          executions.map((ex) => {
            const status = statusOf(ex);
            const version = execVersion(ex);
            return h(
              "tr",
              { dataset: { executionId: ex.id, state: status } },
              h("th", { scope: "row", class: "mono" }, ex.id),
              h("td", {}, badge(status), ex.n_consensus > 1 ? h("span", { class: "tag" }, `n_consensus ${ex.n_consensus}`) : null, h("div", {}, outcome(ex))),
              h("td", {}, runLink(execSourceRun(ex)), h("div", { class: "muted mono" }, execSourceStep(ex) || "")),
              h("td", {}, version === null ? "—" : version === "draft" ? "draft" : `v${version}`),
              h("td", { class: "num" }, formatMs(ex.duration_ms)),
              h("td", {}, time(ex.created_at)),
            );
          }),
        ),
      ),
    ),
    truncated ? h("p", { class: "muted" }, "Showing the newest re-runs only.") : null,
  ];
}
