// What the deck says of Ollama: the model list, whether it answers, what it has loaded,
// the active model, and the host label of the header. Each call updates core/state.js
// and tells the views through an event.

import { API } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";
import { api, isSessionError } from "../http/http.js";

export const STATUS_EVERY_MS = 5000;

let hostLabel = null;

/**
 * The one reading of the Ollama host from an answer: the configured name (``host_name``
 * where the answer has it, else ``host``), and the URL for a tooltip when the answer gives
 * one. Whatever request answered last, the header shows the same name.
 */
function readHost(answer) {
  if (!answer) return null;
  const name = answer.host_name || answer.host;
  if (!name) return null;
  const url = answer.host_url || (answer.host_name && answer.host !== answer.host_name ? answer.host : null);
  return { name: String(name), url: url ? String(url) : null };
}

function noteHost(answer) {
  const host = readHost(answer);
  if (!host) return;
  // An answer without the URL (GET /api/models) keeps the one seen before for the same name.
  const url = host.url || (hostLabel && hostLabel.name === host.name ? hostLabel.url : null);
  if (hostLabel && hostLabel.name === host.name && hostLabel.url === url) return;
  hostLabel = { name: host.name, url: url };
  emit("host-label", hostLabel);
}

let modelsPending = null;

export function refreshModels() {
  // Several `done` events in a row ask for one refresh, not one each.
  if (modelsPending) return modelsPending;
  modelsPending = (async () => {
    try {
      const data = await api(API.models);
      state.models = data.models || [];
      state.stale = Boolean(data.stale);
      state.cachedAt = data.cached_at || null;
      noteHost(data);
      emit("models-changed", data);
    } catch (err) {
      if (!isSessionError(err)) emit("models-failed", err.message);
    } finally {
      modelsPending = null;
    }
  })();
  return modelsPending;
}

export async function refreshStatus() {
  try {
    const status = await api(API.status);
    setReachable(Boolean(status.reachable), status);
    state.loaded = new Set((status.running || []).map((m) => m.name || m.model));
    emit("loaded-changed");
  } catch (err) {
    // A refused session says nothing about Ollama: the session message tells the user.
    if (!isSessionError(err)) setReachable(false, { error: err.message });
  }
}

function setReachable(reachable, status) {
  const was = state.reachable;
  state.reachable = reachable;
  state.downReason = reachable ? null : status.error || null;
  noteHost(status);
  emit("status-changed", status);
  if (was === false && reachable) refreshModels();
}

export async function refreshActive() {
  try {
    const data = await api(API.active);
    state.active = data.model || null;
    emit("active-changed", { preferActive: false });
  } catch (err) {
    /* the active model is a nicety; the rest of the page still works */
  }
}

export async function setActive(name) {
  try {
    const data = await api(API.active, { method: "PUT", json: { model: name } });
    state.active = data.model || null;
    emit("active-changed", { preferActive: true });
  } catch (err) {
    if (!isSessionError(err)) emit("notice", "Could not set the active model: " + err.message);
  }
}
