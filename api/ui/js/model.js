// Derived views of a run's steps: per block, the state of its latest step(s).

export const TERMINAL_RUN = new Set(["completed", "failed", "cancelled", "aborted_looping_risk"]);
export const TERMINAL_STEP = new Set(["completed", "error", "cancelled", "skipped"]);
export const RERUNNABLE = new Set(["function", "extract", "classifier", "split", "router", "end", "start"]);
export const MODEL_TYPES = new Set(["extract", "classifier", "split"]);

// When a block's latest turn has several steps (for_each iterations), the block shows the
// most telling of their states: anything still moving first, then failures, then outcomes.
const PRIORITY = ["running", "queued", "pending", "error", "cancelled", "completed", "skipped"];

export function stateOf(step) {
  return (step && step.lifecycle && step.lifecycle.status) || "pending";
}

export function chronological(steps) {
  return steps.slice().sort((a, b) => {
    const ta = a.turn_index ?? 0;
    const tb = b.turn_index ?? 0;
    if (ta !== tb) return ta - tb;
    if (a.created_at !== b.created_at) return (a.created_at || "") < (b.created_at || "") ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

function escapeRe(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

export function blockInfo(steps, config) {
  const blocks = Array.isArray(config && config.blocks) ? config.blocks : [];
  const byBlock = new Map(blocks.map((b) => [b.id, []]));
  for (const st of chronological(steps)) {
    if (!byBlock.has(st.block_id)) byBlock.set(st.block_id, []);
    byBlock.get(st.block_id).push(st);
  }
  const info = new Map();
  const activeHandles = new Map();
  for (const [blockId, list] of byBlock) {
    const entry = { steps: list, latestSteps: [], state: "none", counts: {}, allCounts: {}, visits: 0, iterations: null, iterationsDone: null };
    info.set(blockId, entry);
    if (!list.length) continue;
    const turn = Math.max(...list.map((st) => st.turn_index ?? 0));
    // The latest visit of each iteration scope in the latest turn.
    const byScope = new Map();
    for (const st of list) {
      if ((st.turn_index ?? 0) !== turn) continue;
      const scope = st.iteration || "";
      const prev = byScope.get(scope);
      if (!prev || (st.visit ?? 1) >= (prev.visit ?? 1)) byScope.set(scope, st);
    }
    entry.latestSteps = [...byScope.values()];
    const states = entry.latestSteps.map(stateOf);
    entry.state = PRIORITY.find((p) => states.includes(p)) || states[states.length - 1];
    for (const p of PRIORITY) {
      const n = states.filter((x) => x === p).length;
      if (n) entry.counts[p] = n;
    }
    for (const st of list) entry.allCounts[stateOf(st)] = (entry.allCounts[stateOf(st)] || 0) + 1;
    // Handles taken in the latest turn, by any visit (a loop's way back and its way out).
    const handles = new Set();
    for (const st of list) {
      if ((st.turn_index ?? 0) !== turn) continue;
      entry.visits = Math.max(entry.visits, st.visit ?? 1);
      for (const hd of st.active_output_handles || []) handles.add(hd);
    }
    activeHandles.set(blockId, handles);
  }
  // for_each: how many iterations, and how many are done.
  for (const b of blocks) {
    if (b.type !== "for_each") continue;
    const entry = info.get(b.id);
    const fe = entry && entry.steps[entry.steps.length - 1];
    if (!fe) continue;
    const prefix = fe.iteration ? `${fe.iteration}/` : "";
    const re = new RegExp(`^${escapeRe(prefix + b.id)}\\[(\\d+)\\]$`);
    const scopes = new Map();
    for (const st of steps) {
      if ((st.turn_index ?? 0) !== (fe.turn_index ?? 0) || !st.iteration || !re.test(st.iteration)) continue;
      const open = scopes.get(st.iteration) || false;
      scopes.set(st.iteration, open || !TERMINAL_STEP.has(stateOf(st)));
    }
    const items = fe.inputs && fe.inputs.items && fe.inputs.items.data;
    entry.iterations = Array.isArray(items) ? items.length : scopes.size || (TERMINAL_STEP.has(stateOf(fe)) ? 0 : null);
    entry.iterationsDone = TERMINAL_STEP.has(stateOf(fe)) ? entry.iterations : [...scopes.values()].filter((open) => !open).length;
    // Items flow into the body through the "item" handle, which no step lists as active.
    if (scopes.size) activeHandles.get(b.id).add("item");
  }
  return { info, activeHandles };
}

// Consensus likelihoods flattened to one row per field: [path, value, likelihood].
export function consensusRows(consensus) {
  const rows = [];
  const walk = (value, lik, path) => {
    if (typeof lik === "number") {
      rows.push({ path: path || "(value)", value, likelihood: lik });
    } else if (Array.isArray(lik)) {
      lik.forEach((l, i) => walk(Array.isArray(value) ? value[i] : undefined, l, `${path}[${i}]`));
    } else if (lik && typeof lik === "object") {
      for (const [k, l] of Object.entries(lik)) {
        if (k === "_presence") rows.push({ path: `${path || "(value)"} (present)`, value: undefined, likelihood: Number(l) });
        else walk(value && typeof value === "object" ? value[k] : undefined, l, path ? `${path}.${k}` : k);
      }
    }
  };
  if (consensus && typeof consensus === "object") walk(consensus.value, consensus.likelihoods, "");
  return rows;
}
