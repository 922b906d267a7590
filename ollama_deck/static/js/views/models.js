// The Installed tab: the table with its row actions (folded into a menu where they do not
// fit), Update and Update all, the disk bar, the active model, delete, load and unload.

import { ACTIVE } from "../core/config.js";
import { emit, on } from "../core/events.js";
import { state } from "../core/state.js";
import {
  $, $$, el, humanBytes, relativeTime, sameModel, scopeOf, setText, show,
} from "../core/util.js";
import { deleteModel, loadModel, unloadModel, updateModels } from "../actions/operations.js";
import { setActive } from "../actions/server.js";

function listFailed(message) {
  const note = $("#installed-note");
  setText(note, "Could not list models: " + message);
  show(note, true);
}

function renderModels(data) {
  const list = $("#installed-list");
  // Keep the rows whose model did not change, so a refresh does not rebuild the table
  // (nor close a row's open menu).
  const existing = new Map([...list.children].map((r) => [r.dataset.model, r]));
  const rows = state.models.map((model) => {
    const sig = modelSignature(model);
    const old = existing.get(model.name);
    if (old && old.dataset.sig === sig) return old;
    const row = modelRow(model);
    row.dataset.sig = sig;
    return row;
  });
  if (rows.length !== list.children.length || rows.some((r, i) => list.children[i] !== r)) {
    const focus = focusInside(list);
    list.replaceChildren(...rows); // moving a row out and back in drops keyboard focus
    restoreFocus(list, focus);
  }
  // Ollama down and no list ever seen: nothing is known, which is not "none installed".
  const unknown = Boolean(data.stale) && !data.cached_at;
  show($("#installed-empty"), rows.length === 0 && !unknown);
  $("#update-all").disabled = rows.length === 0;
  setText($("#stat-count"), unknown ? "–" : String(data.count ?? rows.length));
  setText($("#stat-disk"), unknown ? "–" : humanBytes(data.total_size || 0));
  renderDiskBar(state.models, data.total_size || 0);
  const note = $("#installed-note");
  if (unknown) {
    setText(note, "Ollama is not answering, and the deck has no earlier list of its models " +
      "to show: which models it has is not known.");
    show(note, true);
  } else if (data.stale) {
    setText(note, "Ollama is not answering: this is the last list seen (" +
      relativeTime(data.cached_at) + ").");
    show(note, true);
  } else {
    show(note, false);
  }
  markActive();
  markLoaded();
}

/** Where keyboard focus is in ``list``: the element, its row's model and how to find it. */
function focusInside(list) {
  const element = document.activeElement;
  const row = element && list.contains(element) ? element.closest("tr[data-model]") : null;
  if (!row) return null;
  const key = element.dataset.action ? '[data-action="' + element.dataset.action + '"]' : null;
  return { element, model: row.dataset.model, key };
}

/** Focus what had it before the rows were replaced, or the same control in its new row. */
function restoreFocus(list, focus) {
  if (!focus || document.activeElement === focus.element) return;
  let target = focus.element.isConnected ? focus.element : null;
  if (!target && focus.key) {
    const row = [...list.children].find((r) => r.dataset.model === focus.model);
    target = row ? $(focus.key, row) : null;
  }
  if (target) target.focus({ preventScroll: true });
}

function modelSignature(model) {
  const d = model.details || {};
  const pulling = Boolean(model.operation && ACTIVE.has(model.operation.status));
  return JSON.stringify([model.digest, model.size, model.modified_at, d.parameter_size,
    d.quantization_level, pulling]);
}

let menuCount = 0;

// Actions that change something: a read token's page hides them (data-write, app.css).
const WRITES = new Set(["update", "activate", "load", "unload", "delete"]);

function action(name, label, extra) {
  const dataset = WRITES.has(name) ? { action: name, write: "" } : { action: name };
  return el("button", Object.assign({ type: "button", className: "small", dataset: dataset }, extra || {}), label);
}

function modelRow(model) {
  const details = model.details || {};
  const name = model.name;
  const pulling = model.operation && ACTIVE.has(model.operation.status);
  const menuId = "row-menu-" + ++menuCount;
  return el(
    "tr",
    { dataset: { model: name } },
    el(
      "td",
      { className: "name-cell", "data-label": "Name" },
      el(
        "div",
        { className: "name-wrap" },
        el("span", { className: "model-name", text: name }),
        el("span", { className: "badge badge-active", text: "active", hidden: true }),
        el("span", { className: "badge badge-loaded", text: "in memory", hidden: true }),
        pulling ? el("span", { className: "badge badge-running", text: "pulling" }) : null,
      ),
    ),
    el("td", { className: "num", "data-label": "Size", text: humanBytes(model.size) }),
    el("td", { "data-label": "Params", text: details.parameter_size || "–" }),
    el("td", { "data-label": "Quant", text: details.quantization_level || "–" }),
    el("td", {
      "data-label": "Modified",
      className: "nowrap",
      text: relativeTime(model.modified_at),
      title: model.modified_at ? new Date(model.modified_at).toLocaleString() : null,
    }),
    el(
      "td",
      { className: "actions" },
      el(
        "div",
        { className: "row-actions" },
        action("details", "Details", { "aria-label": "Details of " + name }),
        action("update", "Update", { "aria-label": "Update " + name, disabled: pulling }),
        // A disclosure, not an ARIA menu: where the row is wide enough, CSS shows these
        // buttons inline and hides the toggle; elsewhere the toggle opens them as a list.
        el(
          "div",
          { className: "more", dataset: { write: "" } }, // it holds only changes
          el("button", {
            type: "button",
            className: "small more-toggle",
            "aria-expanded": "false",
            "aria-controls": menuId,
            "aria-label": "More actions for " + name,
            dataset: { action: "more" },
          }, el("span", { "aria-hidden": "true", text: "⋯" })),
          el(
            "div",
            { className: "more-list", id: menuId },
            action("activate", "Set active"),
            action("load", "Load"),
            action("unload", "Unload", { hidden: true }),
            action("delete", "Delete", { className: "small danger-ghost", "aria-label": "Delete " + name }),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------- disk bar

const DISK_COLOURS = 8; // .disk-seg.c0 ... c7 in app.css

function renderDiskBar(models, total) {
  const bar = $("#disk-bar");
  const legend = $("#disk-legend");
  const sized = models.filter((m) => Number(m.size) > 0);
  show($("#disk-use"), sized.length > 0);
  if (!sized.length) return;
  const sorted = [...sized].sort((a, b) => b.size - a.size);
  const share = (m) => (100 * m.size) / (total || 1);
  bar.replaceChildren(
    ...sorted.map((m, i) =>
      el("span", {
        className: "disk-seg c" + (i % DISK_COLOURS),
        title: m.name + ": " + humanBytes(m.size),
        dataset: { model: m.name, share: share(m).toFixed(2) },
      }),
    ),
  );
  // Widths through the CSSOM: the CSP forbids inline style attributes.
  [...bar.children].forEach((seg, i) => {
    seg.style.flexGrow = String(sorted[i].size);
  });
  bar.setAttribute(
    "aria-label",
    "Disk use by model, " + humanBytes(total) + " in all: " +
      sorted.map((m) => m.name + " " + humanBytes(m.size)).join(", "),
  );
  legend.replaceChildren(
    ...sorted.map((m, i) =>
      el("li", {}, el("span", { className: "swatch c" + (i % DISK_COLOURS), "aria-hidden": "true" }),
        el("span", { className: "legend-name", text: m.name }), " ",
        el("span", { className: "muted", text: humanBytes(m.size) + " · " + Math.round(share(m)) + "%" })),
    ),
  );
}

// ---------------------------------------------------------------- active, loaded

function markActive() {
  setText($("#active-model"), state.active || "none");
  $("#active-model").classList.toggle("muted", !state.active);
  for (const row of $$("#installed-list tr[data-model]")) {
    const active = sameModel(row.dataset.model, state.active);
    row.classList.toggle("is-active", active);
    $(".badge-active", row).hidden = !active;
    const button = $('[data-action="activate"]', row);
    button.disabled = active;
    setText(button, active ? "Active" : "Set active");
  }
}

function markLoaded() {
  for (const row of $$("#installed-list tr[data-model]")) {
    const loaded = [...state.loaded].some((n) => sameModel(n, row.dataset.model));
    $(".badge-loaded", row).hidden = !loaded;
    $('[data-action="load"]', row).hidden = loaded;
    $('[data-action="unload"]', row).hidden = !loaded;
  }
}

// ---------------------------------------------------------------- row menu

function closeMenus(except) {
  for (const toggle of $$('#installed-list .more-toggle[aria-expanded="true"]')) {
    if (toggle !== except) toggle.setAttribute("aria-expanded", "false");
  }
}

function toggleMenu(toggle) {
  const open = toggle.getAttribute("aria-expanded") !== "true";
  closeMenus(toggle);
  toggle.setAttribute("aria-expanded", String(open));
  if (open) {
    const first = $$(".more-list button", toggle.parentElement).find((b) => !b.hidden && !b.disabled);
    if (first) first.focus();
  }
}

// ---------------------------------------------------------------- wiring

export function initModels() {
  on("models-changed", renderModels);
  on("models-failed", listFailed);
  on("active-changed", markActive);
  on("loaded-changed", markLoaded);
  const list = $("#installed-list");
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("tr[data-model]");
    const name = row.dataset.model;
    const act = button.dataset.action;
    if (act === "more") {
      toggleMenu(button);
      return;
    }
    if (button.closest(".more-list")) closeMenus();
    if (act === "delete") confirmDelete(name);
    else if (act === "details") emit("open-details", name);
    else if (act === "activate") setActive(name);
    else if (act === "load") whileDisabled(button, loadModel(name));
    else if (act === "unload") whileDisabled(button, unloadModel(name));
    else if (act === "update") {
      whileDisabled(button, updateModels([name], { hosts: scopeOf($("#update-scope")) }));
    }
  });
  list.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const more = event.target.closest(".more");
    const toggle = more && $(".more-toggle", more);
    if (toggle && toggle.getAttribute("aria-expanded") === "true") {
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });
  // A click or focus anywhere else closes an open row menu.
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".more")) closeMenus();
  });
  list.addEventListener("focusout", (event) => {
    const more = event.target.closest(".more");
    if (more && !more.contains(event.relatedTarget) && event.relatedTarget) closeMenus();
  });
  $("#update-all").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    await updateModels(null, { hosts: scopeOf($("#update-scope")) });
    button.disabled = state.models.length === 0;
  });
}

/** ``button`` stays disabled until ``work`` settles. */
function whileDisabled(button, work) {
  button.disabled = true;
  work.finally(() => {
    button.disabled = false;
  });
}

/** The installed list's row of ``name``, as it is now (a refresh rebuilds the rows). */
function rowOf(name) {
  return document.querySelector('#installed-list tr[data-model="' + CSS.escape(name) + '"]');
}

/** Ask, then delete; on cancel focus goes back to the model's row. */
function confirmDelete(name) {
  const dialog = $("#confirm-dialog");
  setText($("#confirm-text"), "Delete " + name + " from Ollama? Its files are removed from disk.");
  const scope = $("#delete-scope");
  if (scope) scope.value = ""; // each time the host the page manages, unless changed here
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "confirm") {
      // The Delete button itself where actions are inline, else its folded list's toggle.
      // Looked up now: the list may have been refreshed while the dialog was open.
      const row = rowOf(name);
      const choices = row ? [$('button[data-action="delete"]', row), $(".more-toggle", row)] : [];
      const target = choices.find((b) => b && b.getClientRects().length);
      if (target) target.focus();
      return;
    }
    const hosts = scopeOf(scope);
    // A group deletes later, host by host: the row goes when the list says it has gone.
    if ((await deleteModel(name, { hosts: hosts })) && !hosts) {
      const row = rowOf(name);
      if (row) row.remove();
    }
  };
  dialog.showModal();
  $("#confirm-cancel").focus();
}
