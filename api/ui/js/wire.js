// The one place the pages read a lifecycle (its variant is `status`, with the variant's own
// fields) and a block execution's source and handles (`source_run_id`, `source_step_id`,
// `handle_inputs`, `handle_outputs`, `workflow_version_id`), as the contract names them.

function lifecycle(obj) {
  return (obj && obj.lifecycle) || {};
}

// The variant of a step's or an execution's lifecycle ("pending" when there is none yet).
export function statusOf(obj) {
  const lc = lifecycle(obj);
  return lc.status || "pending";
}

// A step as carried by a `steps` event (flat, no lifecycle object).
export function eventStepStatus(item) {
  return (item && item.status) || "pending";
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
  return ex.source_run_id ?? null;
}

export function execSourceStep(ex) {
  return ex.source_step_id ?? null;
}

export function execInputs(ex) {
  return ex.handle_inputs ?? null;
}

export function execOutputs(ex) {
  return ex.handle_outputs ?? null;
}

export function execVersion(ex) {
  const v = ex.workflow_version_id;
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
