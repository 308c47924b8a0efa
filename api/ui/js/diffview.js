// The draft against a published version (GET /v1/workflows/{id}/draft/diff): the graph drawn
// with what was added, removed and changed marked, and the changes listed, configs side by side.

import { h, json } from "./dom.js";

export const edgeLabel = (e) => `${e.source}.${e.source_handle}->${e.target}.${e.target_handle}`;

const KIND_TEXT = { added: "added in the draft", removed: "removed in the draft", changed: "changed in the draft", same: "unchanged" };

export function blockChange(diff, blockId) {
  if (!diff) return null;
  for (const kind of ["added", "removed", "changed"]) if (diff.blocks[kind].includes(blockId)) return kind;
  return "same";
}

// The draft plus what the version had and the draft dropped, so removals can be drawn.
export function unionGraph(draft, versionGraph, diff) {
  const blocks = [...(draft.blocks || [])];
  const edges = [...(draft.edges || [])];
  if (diff && versionGraph) {
    const removed = new Set(diff.blocks.removed);
    blocks.push(...(versionGraph.blocks || []).filter((b) => removed.has(b.id)));
    const gone = new Set(diff.edges.removed);
    edges.push(...(versionGraph.edges || []).filter((e) => gone.has(edgeLabel(e))));
  }
  return { blocks, edges };
}

// Mark the drawn graph: node classes and status lines, edge classes (drawn in layout order).
export function decorate(svg, layout, diff) {
  if (!diff) return svg;
  for (const node of svg.querySelectorAll("g.node")) {
    const kind = blockChange(diff, node.dataset.blockId);
    node.classList.add(`diff-${kind}`);
    node.dataset.change = kind;
    const status = node.querySelector(".node-status");
    if (status) status.textContent = KIND_TEXT[kind];
    node.setAttribute("aria-label", `${node.dataset.blockId}: ${KIND_TEXT[kind]}`);
    const title = node.querySelector("title");
    if (title) title.textContent = `${node.dataset.blockId}: ${KIND_TEXT[kind]}`;
  }
  const added = new Set(diff.edges.added);
  const removed = new Set(diff.edges.removed);
  svg.querySelectorAll("path.edge").forEach((path, i) => {
    const label = edgeLabel(layout.edges[i].edge);
    const kind = added.has(label) ? "added" : removed.has(label) ? "removed" : "same";
    path.classList.add(`diff-${kind}`);
    path.dataset.change = kind;
  });
  return svg;
}

function configOf(graph, id) {
  const b = ((graph && graph.blocks) || []).find((x) => x.id === id);
  return b ? { type: b.type, name: b.name ?? null, config: b.config || {} } : null;
}

function blockList(kind, ids, ctx) {
  if (!ids.length) return null;
  return h(
    "div",
    { class: `diff-group diff-${kind}`, dataset: { change: kind } },
    h("h3", {}, `Blocks ${kind} (${ids.length})`),
    h(
      "ul",
      { class: "diff-list" },
      ids.map((id) =>
        h(
          "li",
          { dataset: { blockId: id } },
          h("button", { type: "button", class: "link mono", onclick: () => ctx.onSelect(id) }, id),
          kind === "changed"
            ? h(
                "div",
                { class: "diff-sides" },
                h("div", {}, h("p", { class: "muted" }, `version ${ctx.version}`), json(configOf(ctx.versionGraph, id), { lines: 20 })),
                h("div", {}, h("p", { class: "muted" }, "draft"), json(configOf(ctx.draft, id), { lines: 20 })),
              )
            : null,
        ),
      ),
    ),
  );
}

function edgeList(kind, labels) {
  if (!labels.length) return null;
  return h(
    "div",
    { class: `diff-group diff-${kind}`, dataset: { change: `edges-${kind}` } },
    h("h3", {}, `Edges ${kind} (${labels.length})`),
    h("ul", { class: "diff-list" }, labels.map((l) => h("li", { class: "mono", dataset: { edge: l } }, l))),
  );
}

export function diffSection(diff, ctx) {
  if (!diff) return h("p", { class: "muted" }, "Loading the difference…");
  if (diff.identical) return h("p", { class: "success diff-none" }, `The draft is the same as version ${diff.version} (names aside, which do not change how a block runs).`);
  return [
    h("p", { class: "muted" }, `What the draft changes compared with version ${diff.version}: the same comparison a block re-run's drift check makes (type and config of blocks, and edges; not names).`),
    blockList("added", diff.blocks.added, ctx),
    blockList("removed", diff.blocks.removed, ctx),
    blockList("changed", diff.blocks.changed, ctx),
    edgeList("added", diff.edges.added),
    edgeList("removed", diff.edges.removed),
  ];
}
