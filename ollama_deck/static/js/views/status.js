// The header: is Ollama reachable (badge, version), which host, live or polling; and the
// banner when Ollama does not answer or the model list is the last one seen.

import { on } from "../core/events.js";
import { state } from "../core/state.js";
import { $, setText, show } from "../core/util.js";
import { STATUS_EVERY_MS } from "../actions/server.js";

function renderStatus(status) {
  const reachable = state.reachable;
  const box = $("#ollama-status");
  box.dataset.state = reachable ? "up" : "down";
  setText($("#ollama-version"), reachable && status.version ? "v" + status.version : reachable ? "" : "unreachable");
  box.title = reachable ? "Ollama answers" : status.error || "Ollama does not answer";
  renderBanner();
}

function renderHost(host) {
  const label = $("#ollama-host");
  setText(label, host.name);
  if (host.url) label.title = host.url;
  else label.removeAttribute("title");
}

function renderLive(mode) {
  const badge = $("#live-state");
  badge.dataset.state = mode;
  setText(badge, mode);
}

function renderBanner() {
  const down = state.reachable === false || state.stale;
  if (down) {
    const why = state.downReason ? " (" + state.downReason + ")" : "";
    const list = state.stale && !state.cachedAt
      ? "There is no earlier list of its models to show"
      : "The list below is the last one seen";
    setText(
      $("#ollama-banner-text"),
      "The deck cannot reach Ollama" + why + ". " + list + "; checking again every " +
        STATUS_EVERY_MS / 1000 + " s.",
    );
  }
  show($("#ollama-banner"), down);
}

export function initStatus() {
  on("status-changed", renderStatus);
  on("host-label", renderHost);
  on("live-mode", renderLive);
  on("models-changed", renderBanner);
}
