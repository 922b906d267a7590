// What the user starts and stops: pulls, updates, loads, unloads, deletes, cancel, retry,
// dismiss; and reading the operations list and a log. Each calls the API and records the
// answer in operations/operations.js; errors a row action cannot show go out as notices.

import { API, FINAL, KIND, LOG_KEEP, PROGRESS, modelUrl, opUrl } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";
import { sameModel } from "../core/util.js";
import { api, isSessionError } from "../http/http.js";
import { hasOp, removeOp, setLog, upsertOp } from "../operations/operations.js";
import { askToNotify } from "./notify.js";
import { refreshActive, refreshModels, refreshStatus } from "./server.js";

// Asked before a pull whose model may not fit; views/pulls.js puts the dialog in.
let confirmPull = async () => true;

/** ``ask(estimate)`` resolves true to pull a model that may not fit anyway. */
export function setPullConfirm(ask) {
  confirmPull = ask;
}

/** Show what went wrong near the pull box; not when the session ended (that is said once). */
function tell(what, err) {
  if (!isSessionError(err)) emit("notice", what + err.message);
}

/**
 * Pull ``name``; with ``check``, first warn (and let the user cancel) if it will not fit.
 * With ``hosts`` ("*": every host) the answer is a group of one pull per host.
 */
export async function startPull(name, { check = true, hosts = null } = {}) {
  emit("notice", null);
  askToNotify(); // here, on a click: browsers ignore (or punish) a request on page load
  if (check && !(await fits(name))) return null;
  try {
    const body = hosts ? { model: name, hosts: hosts } : { model: name };
    const op = await api(API.pull, { method: "POST", json: body });
    upsertOp(op);
    return op;
  } catch (err) {
    tell("", err);
    return null;
  }
}

/** True to go on: no warning is due, the estimate is unavailable, or the user confirmed. */
async function fits(name) {
  let estimate;
  try {
    estimate = await api(API.estimate + "?" + new URLSearchParams({ model: name }));
  } catch (err) {
    return true; // a bad name or a server hiccup: the pull itself reports what is wrong
  }
  if (!estimate || !estimate.warn) return true;
  return confirmPull(estimate);
}

/**
 * Queue updates of ``names`` (all installed models when null); the cards show the result.
 * With ``hosts``, one group of them on those hosts.
 */
export async function updateModels(names, { hosts = null } = {}) {
  askToNotify(); // an update is a pull too, and this runs on a click
  const body = names ? { models: names } : {};
  if (hosts) body.hosts = hosts;
  try {
    const data = await api(API.update, { method: "POST", json: body });
    for (const op of data.operations || []) upsertOp(op);
    return data;
  } catch (err) {
    tell("Could not update: ", err);
    return null;
  }
}

export async function loadModel(name) {
  try {
    upsertOp(await api(modelUrl(API.load, name), { method: "POST", json: {} }));
  } catch (err) {
    tell("Could not load " + name + ": ", err);
  }
}

export async function unloadModel(name) {
  try {
    await api(modelUrl(API.unload, name), { method: "POST", json: {} });
  } catch (err) {
    tell("Could not unload " + name + ": ", err);
  } finally {
    refreshStatus();
  }
}

/**
 * Delete ``name`` from Ollama; true when it went (with ``hosts``: when the group deleting it
 * on each of them started; its card tells the rest). The list and active model refresh
 * either way.
 */
export async function deleteModel(name, { hosts = null } = {}) {
  let deleted = false;
  try {
    if (hosts) {
      const url = modelUrl(API.model, name) + "?" + new URLSearchParams({ hosts: hosts });
      upsertOp(await api(url, { method: "DELETE" }));
    } else {
      await api(modelUrl(API.model, name), { method: "DELETE" });
    }
    deleted = true;
    if (sameModel(name, state.active)) state.active = null;
  } catch (err) {
    tell("Could not delete " + name + ": ", err);
  }
  refreshModels();
  refreshActive();
  return deleted;
}

/** Ask the runner to stop an operation; throws with the API's message. */
export async function cancelOp(op) {
  upsertOp(await api(opUrl(PROGRESS.cancel, op.id), { method: "POST" }));
}

/** Pause an operation (its download stops, Ollama keeps the partial files); throws with the API's message. */
export async function pauseOp(op) {
  upsertOp(await api(opUrl(PROGRESS.pause, op.id), { method: "POST" }));
}

/** Queue a paused operation again; throws with the API's message. */
export async function resumeOp(op) {
  upsertOp(await api(opUrl(PROGRESS.resume, op.id), { method: "POST" }));
}

/** Start an ended operation again, as what it was: a load, an update or a pull. */
export async function retryOp(op) {
  if (op.kind === KIND.LOAD) {
    try {
      upsertOp(await api(modelUrl(API.load, op.model), { method: "POST", json: {} }));
    } catch (err) {
      tell("", err);
    }
  } else if (op.kind === KIND.UPDATE) {
    await updateModels([op.model]);
  } else {
    await startPull(op.model, { check: false }); // asked before the first try
  }
}

/** Forget an ended operation, here and on the server (already gone there is fine); a
 * group's children go with it, as on the server. */
export async function dismissOp(op) {
  try {
    await api(opUrl(PROGRESS.operation, op.id), { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) {
      tell("", err);
      return;
    }
  }
  for (const child of op.children || []) removeOp(child.id);
  removeOp(op.id);
}

/** Forget every finished operation, on the server and here. */
export async function clearFinished() {
  try {
    const data = await api(PROGRESS.clear, { method: "DELETE" });
    for (const id of data.deleted || []) removeOp(id);
  } catch (err) {
    tell("Could not clear finished operations: ", err);
  }
}

/** Fetch the log the page has not seen (up to LOG_KEEP lines); throws with the API's message. */
export async function fetchLog(op) {
  const data = await api(opUrl(PROGRESS.operation, op.id) + "?log=" + LOG_KEEP);
  setLog(op.id, data.log || []);
  upsertOp(data);
}

export async function loadOperations(polling) {
  const data = await api(PROGRESS.list + "?limit=50");
  let finishedUnseen = false;
  for (const op of data.operations || []) {
    // Between two polls an operation may start and end unseen: the model list changed.
    if (polling && !hasOp(op.id) && FINAL.has(op.status)) finishedUnseen = true;
    upsertOp(op);
  }
  if (finishedUnseen) refreshModels();
  return data;
}
