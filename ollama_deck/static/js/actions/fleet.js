// The stored desired model set: read it with its plan (each host's drift), apply it. The
// answer goes into state.drift, and out as a drift-changed event.

import { API } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";
import { api, isSessionError } from "../http/http.js";
import { upsertOp } from "../operations/operations.js";

let pending = null;

/** Read the stored set and, when there is one, plan it (what each host lacks or has extra). */
export function loadDrift() {
  // Several reasons to reload at once (a tab, operations that ended): one request.
  if (pending) return pending;
  pending = (async () => {
    try {
      const stored = await api(API.desired);
      const plan = stored.set ? await api(API.plan, { method: "POST" }) : null;
      state.drift = { set: stored.set, updatedAt: stored.updated_at, plan: plan, error: null };
    } catch (err) {
      if (isSessionError(err)) return;
      state.drift = Object.assign({}, state.drift || {}, { error: err.message });
    } finally {
      pending = null;
    }
    emit("drift-changed");
  })();
  return pending;
}

/** Apply the stored set: its plan as one group, whose card shows it running. */
export async function applyDesired() {
  try {
    const applied = await api(API.apply, { method: "POST" });
    if (applied.group) upsertOp(applied.group);
    state.drift = Object.assign({}, state.drift, { plan: applied.plan, error: null });
    emit("drift-changed");
    return applied;
  } catch (err) {
    if (!isSessionError(err)) {
      state.drift = Object.assign({}, state.drift || {}, { error: err.message });
      emit("drift-changed");
    }
    return null;
  }
}
