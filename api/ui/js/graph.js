// The workflow graph: blocks in layers (a simple topological layering, top to bottom),
// edges as SVG paths, each block coloured by the state of its latest step.
//
// Layout, in the usual layered-drawing steps: back edges (cycles through routers) are set
// aside by a depth-first search; each block's layer is its longest path from a source; an
// edge that spans several layers gets a virtual point in each layer it crosses; blocks are
// ordered within their layer by barycentre sweeps (keeping the order with fewest crossings);
// x positions follow the neighbours' mean, with order and spacing kept by an isotonic fit.

import { s, stateLabel } from "./dom.js";

const NODE_W = 188;
const NODE_H = 66;
const LAYER_GAP = 62;
const NODE_GAP = 32;
const DUMMY_W = 10;
const DUMMY_GAP = 14;
const PAD = 20;
const LOOP_W = 70;
const ID_CHARS = 23;
const LINE_CHARS = 27;
const TERMINAL = ["completed", "error", "cancelled", "skipped"];

const MULTI_OUTPUT_TYPES = new Set(["router", "classifier", "split", "for_each"]);

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

export function computeLayout(config) {
  const blocks = Array.isArray(config && config.blocks) ? config.blocks.filter((b) => b && typeof b.id === "string") : [];
  const byId = new Map(blocks.map((b) => [b.id, b]));
  const edges = (Array.isArray(config && config.edges) ? config.edges : []).filter(
    (e) => e && byId.has(e.source) && byId.has(e.target),
  );

  // for_each bodies: a block is in the body of the (first) for_each listing it.
  const bodyOf = new Map();
  for (const b of blocks) {
    if (b.type !== "for_each" || !Array.isArray(b.config && b.config.body)) continue;
    for (const m of b.config.body) if (byId.has(m) && !bodyOf.has(m) && m !== b.id) bodyOf.set(m, b.id);
  }

  // Successors for layering: the edges, and "after the body" for what a for_each's results feed.
  const succ = new Map(blocks.map((b) => [b.id, []]));
  for (const e of edges) succ.get(e.source).push(e.target);
  for (const b of blocks) {
    if (b.type !== "for_each") continue;
    const body = blocks.filter((x) => bodyOf.get(x.id) === b.id).map((x) => x.id);
    for (const e of edges) {
      if (e.source !== b.id || e.source_handle === "item" || body.includes(e.target)) continue;
      for (const m of body) succ.get(m).push(e.target);
    }
  }

  // Depth-first search from the start blocks: edges back into the current path close a cycle.
  const seen = new Map();
  const dfsOrder = new Map();
  const back = new Set();
  const pair = (u, v) => `${u}\u0000${v}`;
  const visit = (root) => {
    const stack = [[root, 0]];
    seen.set(root, 1);
    dfsOrder.set(root, dfsOrder.size);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = succ.get(top[0]);
      if (top[1] >= next.length) {
        seen.set(top[0], 2);
        stack.pop();
        continue;
      }
      const v = next[top[1]++];
      if (seen.get(v) === 1) back.add(pair(top[0], v));
      else if (!seen.has(v)) {
        seen.set(v, 1);
        dfsOrder.set(v, dfsOrder.size);
        stack.push([v, 0]);
      }
    }
  };
  for (const b of blocks) if (b.type === "start" && !seen.has(b.id)) visit(b.id);
  for (const b of blocks) if (!seen.has(b.id)) visit(b.id);

  // Longest-path layering over the forward edges (Kahn's order).
  const layer = new Map(blocks.map((b) => [b.id, 0]));
  const indeg = new Map(blocks.map((b) => [b.id, 0]));
  for (const [u, vs] of succ) for (const v of vs) if (!back.has(pair(u, v))) indeg.set(v, indeg.get(v) + 1);
  const queue = blocks.filter((b) => indeg.get(b.id) === 0).map((b) => b.id);
  while (queue.length) {
    const u = queue.shift();
    for (const v of succ.get(u)) {
      if (back.has(pair(u, v))) continue;
      layer.set(v, Math.max(layer.get(v), layer.get(u) + 1));
      indeg.set(v, indeg.get(v) - 1);
      if (indeg.get(v) === 0) queue.push(v);
    }
  }
  const layerCount = blocks.length ? Math.max(...layer.values()) + 1 : 0;

  // Items (blocks and virtual points) per layer; chains of items per drawn edge.
  const items = new Map();
  const layers = Array.from({ length: layerCount }, () => []);
  for (const b of blocks) {
    const it = { id: b.id, block: b, layer: layer.get(b.id), w: NODE_W, up: [], down: [], key: dfsOrder.get(b.id) };
    items.set(b.id, it);
    layers[it.layer].push(it);
  }
  const drawn = edges.map((e, i) => {
    const isBack = back.has(pair(e.source, e.target)) || layer.get(e.target) <= layer.get(e.source);
    const chain = [items.get(e.source)];
    if (!isBack) {
      for (let l = layer.get(e.source) + 1; l < layer.get(e.target); l++) {
        const d = { id: `~${i}:${l}`, layer: l, w: DUMMY_W, up: [], down: [], key: items.get(e.source).key + 0.5, dummy: true };
        items.set(d.id, d);
        layers[l].push(d);
        chain.push(d);
      }
      chain.push(items.get(e.target));
      for (let k = 1; k < chain.length; k++) {
        chain[k - 1].down.push(chain[k]);
        chain[k].up.push(chain[k - 1]);
      }
    }
    return { edge: e, back: isBack, chain };
  });

  // Order within layers: barycentre sweeps, keeping the order with the fewest crossings.
  for (const l of layers) l.sort((a, b) => a.key - b.key);
  const index = () => layers.forEach((l) => l.forEach((it, i) => (it.pos = i)));
  const crossings = () => {
    let n = 0;
    for (const l of layers) {
      const segs = [];
      for (const it of l) for (const d of it.down) segs.push([it.pos, d.pos]);
      for (let i = 0; i < segs.length; i++)
        for (let j = i + 1; j < segs.length; j++)
          if ((segs[i][0] - segs[j][0]) * (segs[i][1] - segs[j][1]) < 0) n++;
    }
    return n;
  };
  index();
  let best = layers.map((l) => l.slice());
  let bestCrossings = crossings();
  for (let sweep = 0; sweep < 8 && bestCrossings > 0; sweep++) {
    const down = sweep % 2 === 0;
    const range = down ? layers.keys() : [...layers.keys()].reverse();
    for (const li of range) {
      const l = layers[li];
      for (const it of l) {
        const nb = down ? it.up : it.down;
        it.bary = nb.length ? nb.reduce((acc, x) => acc + x.pos, 0) / nb.length : it.pos;
      }
      l.sort((a, b) => a.bary - b.bary || a.pos - b.pos);
      l.forEach((it, i) => (it.pos = i));
    }
    const c = crossings();
    if (c < bestCrossings) {
      bestCrossings = c;
      best = layers.map((l) => l.slice());
    }
  }
  best.forEach((l, i) => (layers[i] = l));
  index();

  // x positions: each layer placed as close as possible to the desired centres, in order.
  const gap = (a, b) => (a.dummy || b.dummy ? DUMMY_GAP : NODE_GAP);
  const place = (l, desired) => {
    if (!l.length) return;
    const c = [0];
    for (let i = 1; i < l.length; i++) c.push(c[i - 1] + (l[i - 1].w + l[i].w) / 2 + gap(l[i - 1], l[i]));
    // Pool-adjacent-violators: y_i = x_i - c_i must be non-decreasing.
    const blocksFit = [];
    for (let i = 0; i < l.length; i++) {
      blocksFit.push({ sum: desired[i] - c[i], n: 1 });
      while (blocksFit.length > 1) {
        const a = blocksFit[blocksFit.length - 2];
        const b = blocksFit[blocksFit.length - 1];
        if (a.sum / a.n <= b.sum / b.n) break;
        blocksFit.splice(blocksFit.length - 2, 2, { sum: a.sum + b.sum, n: a.n + b.n });
      }
    }
    let i = 0;
    for (const bf of blocksFit) for (let k = 0; k < bf.n; k++, i++) l[i].x = bf.sum / bf.n + c[i];
  };
  for (const l of layers) place(l, l.map(() => 0));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (let pass = 0; pass < 6; pass++) {
    const down = pass % 2 === 0;
    const range = down ? [...layers.keys()].slice(1) : [...layers.keys()].reverse().slice(1);
    for (const li of range) {
      const l = layers[li];
      place(
        l,
        l.map((it) => {
          const nb = down ? it.up : it.down;
          return nb.length ? mean(nb.map((x) => x.x)) : it.x;
        }),
      );
    }
  }
  const all = [...items.values()];
  const minX = all.length ? Math.min(...all.map((it) => it.x - it.w / 2)) : 0;
  for (const it of all) {
    it.x += PAD - minX;
    it.y = PAD + it.layer * (NODE_H + LAYER_GAP) + NODE_H / 2;
  }
  const hasLoops = drawn.some((d) => d.back);
  const width = (all.length ? Math.max(...all.map((it) => it.x + it.w / 2)) : 0) + PAD + (hasLoops ? LOOP_W : 0);
  const height = layerCount ? PAD * 2 + layerCount * NODE_H + (layerCount - 1) * LAYER_GAP : 0;

  // Ports: a block's outgoing handles spread along its bottom, incoming ones along its top.
  const ports = (blockId, dir) => {
    const mine = drawn.filter((d) => !d.back && (dir === "out" ? d.edge.source : d.edge.target) === blockId);
    const handle = (d) => (dir === "out" ? d.edge.source_handle : d.edge.target_handle);
    const toward = (d) => (dir === "out" ? d.chain[1].x : d.chain[d.chain.length - 2].x);
    const groups = new Map();
    for (const d of mine) {
      const g = groups.get(handle(d)) || [];
      g.push(toward(d));
      groups.set(handle(d), g);
    }
    const order = [...groups.entries()].sort((a, b) => mean(a[1]) - mean(b[1])).map(([k]) => k);
    const it = items.get(blockId);
    const spread = Math.min(NODE_W - 40, 36 * (order.length - 1));
    return new Map(order.map((k, i) => [k, it.x - spread / 2 + (order.length > 1 ? (spread * i) / (order.length - 1) : 0)]));
  };
  const outPorts = new Map(blocks.map((b) => [b.id, ports(b.id, "out")]));
  const inPorts = new Map(blocks.map((b) => [b.id, ports(b.id, "in")]));

  const paths = drawn.map((d) => {
    const e = d.edge;
    const src = items.get(e.source);
    const dst = items.get(e.target);
    if (d.back) {
      // Around the right-hand side, from the source's right edge to the target's.
      const x0 = src.x + NODE_W / 2;
      const x1 = dst.x + NODE_W / 2;
      const bend = Math.max(x0, x1) + LOOP_W - 10;
      return {
        ...d,
        d: `M${x0},${src.y} C${bend},${src.y} ${bend},${dst.y} ${x1 + 4},${dst.y}`,
        label: { x: bend - 14, y: (src.y + dst.y) / 2 },
      };
    }
    const points = [[outPorts.get(e.source).get(e.source_handle), src.y + NODE_H / 2]];
    for (const it of d.chain.slice(1, -1)) points.push([it.x, it.y - NODE_H / 2], [it.x, it.y + NODE_H / 2]);
    points.push([inPorts.get(e.target).get(e.target_handle), dst.y - NODE_H / 2 - 2]);
    let path = `M${points[0][0]},${points[0][1]}`;
    for (let k = 1; k < points.length; k++) {
      const [x0, y0] = points[k - 1];
      const [x1, y1] = points[k];
      if (k % 2 === 0) path += ` L${x1},${y1}`;
      else {
        const my = (y0 + y1) / 2;
        path += ` C${x0},${my} ${x1},${my} ${x1},${y1}`;
      }
    }
    const [lx0, ly0] = points[0];
    const [lx1, ly1] = points[1];
    return { ...d, d: path, label: { x: (lx0 + lx1) / 2, y: (ly0 + ly1) / 2 } };
  });

  const outHandles = new Map();
  for (const e of edges) {
    const set = outHandles.get(e.source) || new Set();
    set.add(e.source_handle);
    outHandles.set(e.source, set);
  }
  const labelled = (e) => MULTI_OUTPUT_TYPES.has(byId.get(e.source).type) || (outHandles.get(e.source) || new Set()).size > 1;

  return {
    width,
    height,
    nodes: blocks.map((b) => ({ block: b, x: items.get(b.id).x, y: items.get(b.id).y, bodyOf: bodyOf.get(b.id) })),
    edges: paths.map((p) => ({ ...p, showLabel: labelled(p.edge) })),
    bodyOf,
  };
}

// What to print on a block's third line.
function statusLine(node, info) {
  if (!info || !info.steps.length) return stateLabel("none");
  const label = stateLabel(info.state);
  if (node.block.type === "for_each" && info.iterations !== null) {
    const n = info.iterations;
    const done = info.iterationsDone;
    const it = n === 1 ? "iteration" : "iterations";
    return clip(done !== null && done < n ? `${label} · ${done}/${n} ${it}` : `${label} · ${n} ${it}`, LINE_CHARS);
  }
  if (info.latestSteps.length > 1) {
    const total = info.latestSteps.length;
    const open = total - TERMINAL.reduce((n, st) => n + (info.counts[st] || 0), 0);
    if (open) {
      const moving = info.counts.running ? `${info.counts.running} running` : `${open} waiting`;
      return clip(`${total - open}/${total} done · ${moving}`, LINE_CHARS);
    }
    const parts = Object.entries(info.counts).map(([st, k]) => `${k} ${st}`);
    return clip(parts.join(" · "), LINE_CHARS);
  }
  if (info.visits > 1) return clip(`${label} · ${info.visits} visits`, LINE_CHARS);
  return label;
}

export function renderGraph(layout, { infoByBlock, activeHandles, selected, onSelect }) {
  const svg = s("svg", {
    class: "graph-svg",
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    width: layout.width,
    height: layout.height,
    role: "group",
    "aria-label": "Workflow graph: blocks coloured by the state of their latest step",
  });
  svg.append(
    s(
      "defs",
      {},
      ...["active", "inactive", "pending"].map((kind) =>
        s(
          "marker",
          { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 8, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow arrow-${kind}` }),
        ),
      ),
    ),
  );

  const edgeLayer = s("g", { class: "edges", "aria-hidden": "true" });
  const labelLayer = s("g", { class: "edge-labels", "aria-hidden": "true" });
  for (const e of layout.edges) {
    const src = infoByBlock.get(e.edge.source);
    const resolved = src && ["completed", "error", "skipped", "cancelled"].includes(src.state);
    const active = (activeHandles.get(e.edge.source) || new Set()).has(e.edge.source_handle);
    const kind = active ? "active" : resolved ? "inactive" : "pending";
    edgeLayer.append(
      s("path", {
        class: ["edge", `edge-${kind}`, e.back && "edge-back"],
        d: e.d,
        "marker-end": `url(#arrow-${kind})`,
        dataset: { source: e.edge.source, target: e.edge.target, handle: e.edge.source_handle },
      }),
    );
    if (e.showLabel || e.back) {
      labelLayer.append(s("text", { class: `edge-label edge-label-${kind}`, x: e.label.x, y: e.label.y + 4, "text-anchor": "middle" }, e.edge.source_handle));
    }
  }
  svg.append(edgeLayer);

  const nodeLayer = s("g", { class: "nodes" });
  for (const node of layout.nodes) {
    const b = node.block;
    const info = infoByBlock.get(b.id);
    const state = info && info.steps.length ? info.state : "none";
    const typeLine = node.bodyOf ? `${b.type} · in ${node.bodyOf}` : b.type;
    const status = statusLine(node, info);
    const title = `${b.id}${b.name ? ` (${b.name})` : ""}: ${b.type} block, ${status}`;
    const g = s(
      "g",
      {
        class: ["node", `state-${state}`, `type-${b.type}`, selected === b.id && "selected"],
        transform: `translate(${node.x - NODE_W / 2},${node.y - NODE_H / 2})`,
        tabindex: 0,
        role: "button",
        "aria-pressed": selected === b.id ? "true" : "false",
        "aria-label": title,
        dataset: { blockId: b.id, state, focusKey: `node:${b.id}` },
        onclick: () => onSelect(b.id),
        onkeydown: (ev) => {
          if (ev.key === "Enter" || ev.key === " ") {
            ev.preventDefault();
            onSelect(b.id);
          }
        },
      },
      s("title", {}, title),
      s("rect", { class: "node-ring", x: -5, y: -5, width: NODE_W + 10, height: NODE_H + 10, rx: 13, ry: 13 }),
      s("rect", { class: "node-box", width: NODE_W, height: NODE_H, rx: 9, ry: 9 }),
      s("rect", { class: "node-stripe", width: 5, height: NODE_H - 14, x: 6, y: 7, rx: 2.5 }),
      s("text", { class: "node-id", x: 18, y: 21 }, clip(b.id, ID_CHARS)),
      s("text", { class: "node-type", x: 18, y: 38 }, clip(typeLine, LINE_CHARS)),
      s("text", { class: "node-status", x: 18, y: 55 }, status),
    );
    if (b.type === "for_each") g.append(s("text", { class: "node-icon", x: NODE_W - 12, y: 21, "text-anchor": "end", "aria-hidden": "true" }, "↻"));
    nodeLayer.append(g);
  }
  svg.append(nodeLayer, labelLayer);
  return svg;
}

export const LEGEND = ["none", "pending", "queued", "running", "completed", "error", "cancelled", "skipped"];
