// The Activity tab: who changed what (GET /api/activity), newest first, with filters and
// an "Older" button that follows the server's cursor. It loads whenever its tab is shown.

import { API, config } from "../core/config.js";
import { on } from "../core/events.js";
import { $, el, relativeTime, setText, show } from "../core/util.js";
import { api, isSessionError } from "../http/http.js";

const PAGE = 50;
let cursor = null; // the ?before= of the next (older) page; null: no more
let request = 0;

function query(before) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  const action = $("#activity-action").value;
  const actor = $("#activity-actor").value.trim();
  const outcome = $("#activity-outcome").value;
  if (action) params.set("action", action);
  if (actor) params.set("actor", actor);
  if (outcome) params.set("outcome", outcome);
  if (before) params.set("before", String(before));
  return API.activity + "?" + params;
}

async function load(older) {
  const number = ++request;
  const list = $("#activity-list");
  list.setAttribute("aria-busy", "true");
  try {
    const data = await api(query(older ? cursor : null));
    if (number !== request) return; // a newer load answered first
    show($("#activity-error"), false);
    const rows = data.entries.map(entryRow);
    if (older) list.append(...rows);
    else list.replaceChildren(...rows);
    cursor = data.next;
    show($("#activity-more"), cursor !== null);
    show($("#activity-empty"), list.children.length === 0);
  } catch (err) {
    if (number !== request || isSessionError(err)) return;
    setText($("#activity-error"), err.message);
    show($("#activity-error"), true);
  } finally {
    if (number === request) list.removeAttribute("aria-busy");
  }
}

function entryRow(entry) {
  const what = entry.target || (entry.operation_id ? entry.operation_id.slice(0, 8) : "");
  const outcome = entry.ok ? String(entry.status) : entry.status + " " + (entry.error || "");
  const via = entry.token && entry.token !== entry.actor ? " (token " + entry.token + ")" : "";
  return el(
    "tr",
    { dataset: { id: String(entry.id), action: entry.action } },
    el("td", { className: "nowrap", text: relativeTime(entry.at), title: new Date(entry.at).toLocaleString() }),
    el("td", {}, el("span", { text: entry.actor }), via ? el("span", { className: "who-token", text: via }) : null),
    el("td", { text: entry.action }),
    el("td", { className: "model-name", text: what, title: entry.host ? "on " + entry.host : null }),
    el("td", { className: entry.ok ? "outcome-ok" : "outcome-error", text: outcome, title: entry.method + " " + entry.path }),
  );
}

export function initActivity() {
  const select = $("#activity-action");
  for (const action of config.actions || []) select.append(el("option", { value: action, text: action }));
  on("tab-selected", (tab) => {
    if (tab === "activity") load(false);
  });
  $("#activity-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    load(false);
  });
  $("#activity-more").addEventListener("click", () => load(true));
}
