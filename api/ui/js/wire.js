// The one place the pages read wire fields whose names are moving to the contract's:
// a lifecycle's variant (`state` today, `status` in the contract) and a block execution's
// source and handles (`run_id`, `step_id`, `inputs`, `outputs`, `workflow_version` today;
// `source_run_id`, `source_step_id`, `handle_inputs`, `handle_outputs`,
// `workflow_version_id` in the contract). Each accessor reads the contract's name first and
// falls back to today's, so the pages work on either side of that change.

function lifecycle(obj) {
  return (obj && obj.lifecycle) || {};
}

// The variant of a step's or an execution's lifecycle ("pending" when there is none yet).
export function statusOf(obj) {
  const lc = lifecycle(obj);
  return lc.status || lc.state || "pending";
}

// A step as carried by a `steps` event (flat, no lifecycle object).
export function eventStepStatus(item) {
  return (item && (item.status || item.state)) || "pending";
}

export function lifecycleError(obj) {
  return lifecycle(obj).error || null;
}

export function lifecycleReason(obj) {
  return lifecycle(obj).reason ?? null;
}

export function lifecycleWorker(obj) {
  return lifecycle(obj).worker ?? null;
}

export function execSourceRun(ex) {
  return ex.source_run_id ?? ex.run_id ?? null;
}

export function execSourceStep(ex) {
  return ex.source_step_id ?? ex.step_id ?? null;
}

export function execInputs(ex) {
  return ex.handle_inputs ?? ex.inputs ?? null;
}

export function execOutputs(ex) {
  return ex.handle_outputs ?? ex.outputs ?? null;
}

export function execVersion(ex) {
  const v = ex.workflow_version_id ?? ex.workflow_version;
  return v === undefined || v === null ? null : String(v);
}

// Handles carry {type, data} (json) or {type, document} (file): the data of json handles,
// the file handles as they are.
export function outputsOf(obj) {
  if (!obj || typeof obj !== "object") return obj;
  const out = {};
  for (const [k, v] of Object.entries(obj)) out[k] = v && typeof v === "object" && v.type === "json" && "data" in v ? v.data : v;
  return out;
}
