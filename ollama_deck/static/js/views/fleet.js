// The Fleet tab: the stored desired model set (PUT /api/desired-models) as each host's
// drift — what it lacks, what prune would delete, what is in place — and Apply, which
// queues the plan as one group (its card shows it running).

import { on } from "../core/events.js";
import { state } from "../core/state.js";
import { $, el, relativeTime, setText, show } from "../core/util.js";
import { applyDesired, loadDrift } from "../actions/fleet.js";

// Each list of a host's plan: its mark and what it means, in the order shown.
const LISTS = [
  ["missing", "+", "to pull"],
  ["in_progress", "~", "being pulled"],
  ["delete", "−", "to delete (prune)"],
  ["busy", "!", "not declared, in use: kept"],
  ["in_place", "=", "in place"],
  ["undeclared", "?", "not declared: kept"],
];

function hostCard(host) {
  const changes = host.missing.length + host.delete.length + host.in_progress.length;
  const card = el(
    "article",
    {
      className: "fleet-host",
      dataset: { host: host.host, drift: String(changes > 0), error: String(Boolean(host.error)) },
    },
    el("h3", {}, host.host, host.prune ? el("span", { className: "badge", text: "prune" }) : null),
  );
  if (host.error) {
    card.append(el("p", { className: "error-text", text: "Cannot plan: " + host.error }));
    return card;
  }
  const parts = [];
  if (host.missing.length) parts.push(host.missing.length + " to pull");
  if (host.delete.length) parts.push(host.delete.length + " to delete");
  if (host.in_progress.length) parts.push(host.in_progress.length + " being pulled");
  card.append(el("p", { className: "fleet-summary", text: parts.length ? parts.join(", ") : "matches" }));
  const items = [];
  for (const [key, mark, said] of LISTS) {
    for (const model of host[key]) {
      items.push(
        el("li", { dataset: { list: key, model: model }, title: said },
          el("span", { className: "mark", "aria-hidden": "true", text: mark }),
          model,
          el("span", { className: "sr-only", text: " (" + said + ")" })),
      );
    }
  }
  card.append(items.length ? el("ul", {}, ...items) : el("p", { className: "muted", text: "no models" }));
  return card;
}

function render() {
  const drift = state.drift;
  const note = $("#fleet-note");
  const error = $("#fleet-error");
  setText(error, drift && drift.error ? drift.error : "");
  show(error, Boolean(drift && drift.error));
  const apply = $("#fleet-apply");
  if (!drift || !drift.set) {
    setText(note, drift ? "No desired model set is stored. Store one with " +
      "PUT /api/desired-models (the TOML of 'ollama-deck plan' as JSON); this tab then " +
      "shows each host's drift from it." : "Loading the desired model set…");
    $("#fleet-hosts").replaceChildren();
    apply.disabled = true;
    return;
  }
  const plan = drift.plan;
  const stored = drift.updatedAt ? "stored " + relativeTime(drift.updatedAt) : "stored";
  if (!plan) {
    setText(note, "The desired model set (" + stored + ").");
  } else if (plan.pending) {
    setText(note, plan.changes + " change" + (plan.changes === 1 ? "" : "s") +
      " to apply across " + plan.hosts.length + " host" + (plan.hosts.length === 1 ? "" : "s") +
      " (desired model set " + stored + ").");
  } else {
    setText(note, "Every host matches the desired model set (" + stored + ").");
  }
  $("#fleet-hosts").replaceChildren(...(plan ? plan.hosts.map(hostCard) : []));
  apply.disabled = !plan || !plan.pending;
}

let visible = false;

export function initFleet() {
  on("drift-changed", render);
  on("tab-selected", (name) => {
    visible = name === "fleet";
    if (visible) loadDrift();
  });
  // What operations did may have moved a host toward (or away from) the set.
  on("op-finished", () => {
    if (visible) loadDrift();
  });
  $("#fleet-refresh").addEventListener("click", () => loadDrift());
  $("#fleet-apply").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    await applyDesired();
    render();
  });
}
