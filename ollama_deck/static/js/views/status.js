// Is Ollama reachable: the header badge and the banner.

import { API } from "./config.js";
import { api } from "./http.js";
import { markLoaded, refreshModels } from "./models.js";
import { state } from "./state.js";
import { $, setText, show } from "./util.js";

export const STATUS_EVERY_MS = 5000;

export async function refreshStatus() {
  try {
    const status = await api(API.status);
    setReachable(Boolean(status.reachable), status);
    state.loaded = new Set((status.running || []).map((m) => m.name || m.model));
    markLoaded();
  } catch (err) {
    setReachable(false, { error: err.message });
  }
}

function setReachable(reachable, status) {
  const was = state.reachable;
  state.reachable = reachable;
  state.downReason = reachable ? null : (status && status.error) || null;
  const box = $("#ollama-status");
  box.dataset.state = reachable ? "up" : "down";
  if (status && status.host) setText($("#ollama-host"), status.host);
  setText($("#ollama-version"), reachable && status.version ? "v" + status.version : reachable ? "" : "unreachable");
  box.title = reachable ? "Ollama answers" : (status && status.error) || "Ollama does not answer";
  updateBanner();
  if (was === false && reachable) refreshModels();
}

export function updateBanner() {
  const down = state.reachable === false || state.stale;
  if (down) {
    const why = state.downReason ? " (" + state.downReason + ")" : "";
    setText(
      $("#ollama-banner-text"),
      "The deck cannot reach Ollama" + why + ". The list below is the last one seen; " +
        "checking again every " + STATUS_EVERY_MS / 1000 + " s.",
    );
  }
  show($("#ollama-banner"), down);
}
