// The Catalog tab: categories, search, and a Pull per tag. It loads when its tab is first
// shown, and again (when loaded) for another host or after a pull or update ended.

import { API, KIND } from "../core/config.js";
import { on } from "../core/events.js";
import { $, el, fitBadge, humanBytes, setText } from "../core/util.js";
import { api } from "../http/http.js";
import { startPull } from "../actions/operations.js";

let catalogCategory = "";
let catalogLoaded = false;
let catalogRequest = 0;
let catalogTimer = 0;

async function loadCatalog() {
  const number = ++catalogRequest;
  const params = new URLSearchParams();
  if (catalogCategory) params.set("category", catalogCategory);
  const q = $("#catalog-search").value.trim();
  if (q) params.set("q", q);
  const url = API.catalog + (params.toString() ? "?" + params : "");
  const list = $("#catalog-list");
  list.setAttribute("aria-busy", "true");
  try {
    const data = await api(url);
    if (number !== catalogRequest) return; // a newer search answered first
    catalogLoaded = true;
    renderChips(data.categories || []);
    renderCatalog(data);
  } catch (err) {
    if (number === catalogRequest) list.replaceChildren(el("p", { className: "error-text", text: err.message }));
  } finally {
    if (number === catalogRequest) list.removeAttribute("aria-busy");
  }
}

function refreshCatalogSoon() {
  if (catalogLoaded) {
    clearTimeout(catalogTimer);
    catalogTimer = setTimeout(loadCatalog, 200);
  }
}

function renderChips(categories) {
  const box = $("#catalog-chips");
  const wanted = ["", ...categories];
  const have = [...box.children].map((c) => c.dataset.category);
  if (have.join("|") !== wanted.join("|")) {
    box.replaceChildren(
      ...wanted.map((name) =>
        el("button", { type: "button", className: "chip", dataset: { category: name } }, name || "all"),
      ),
    );
  }
  for (const chip of box.children) {
    chip.setAttribute("aria-pressed", String(chip.dataset.category === catalogCategory));
  }
}

function renderCatalog(data) {
  const gpu = data.gpu || {};
  setText(
    $("#catalog-gpu"),
    gpu.known
      ? "Fit is checked against the largest GPU: " + humanBytes(gpu.total_bytes) + "."
      : "No GPU memory detected, so fit is unknown. VRAM figures are estimates at a 4096-token context.",
  );
  const families = data.families || [];
  if (!families.length) {
    $("#catalog-list").replaceChildren(el("p", { className: "empty", text: "Nothing in the catalog matches." }));
    return;
  }
  $("#catalog-list").replaceChildren(...families.map(familyCard));
}

function familyCard(family) {
  const rows = family.tags.map((tag) =>
    el(
      "tr",
      { dataset: { model: tag.model } },
      el("td", { "data-label": "Tag" }, el("span", { className: "tag-name", text: tag.name }),
        tag.recommended ? el("span", { className: "badge badge-rec", text: "recommended" }) : null),
      el("td", { "data-label": "Params", text: tag.parameter_size }),
      el("td", { "data-label": "Quant", text: tag.quantization }),
      el("td", { className: "num", "data-label": "Download", text: humanBytes(tag.size_bytes) }),
      el("td", { className: "num", "data-label": "VRAM", text: tag.vram ? tag.vram.total_gb + " GB" : "–",
        title: tag.vram ? (tag.vram.assumptions || []).join("\n") : null }),
      el("td", { "data-label": "Fits" }, fitBadge(tag.fits)),
      el(
        "td",
        { className: "actions" },
        tag.installed
          ? el("span", { className: "badge badge-installed", text: "installed" })
          : el("button", { type: "button", className: "small primary", "aria-label": "Pull " + tag.model,
            dataset: { action: "pull", model: tag.model, write: "" } }, "Pull"),
      ),
    ),
  );
  return el(
    "article",
    { className: "family", dataset: { family: family.name, category: family.category } },
    el(
      "header",
      { className: "family-head" },
      el("h2", { text: family.name }), // the level right under the page's h1
      el("span", { className: "badge badge-cat", text: family.category }),
      family.installed ? el("span", { className: "badge badge-installed", text: "installed" }) : null,
    ),
    el("p", { className: "family-desc", text: family.description }),
    family.capabilities && family.capabilities.length
      ? el("p", { className: "caps" }, family.capabilities.map((c) => el("span", { className: "cap", text: c })))
      : null,
    el(
      "table",
      { className: "tags" },
      el("thead", {}, el("tr", {}, ["Tag", "Params", "Quant", "Download", "VRAM", "Fits", "Action"].map((h, i) =>
        el("th", { scope: "col", className: i === 3 || i === 4 ? "num" : i === 6 ? "actions-col" : null },
          i === 6 ? el("span", { className: "sr-only", text: h }) : h)))),
      el("tbody", {}, rows),
    ),
  );
}

export function initCatalog() {
  on("tab-selected", (tab) => {
    if (tab === "catalog" && !catalogLoaded) loadCatalog();
  });
  on("host-selected", () => {
    if (catalogLoaded) loadCatalog(); // the installed flags are the new host's
  });
  on("op-finished", ({ op }) => {
    if (op.kind !== KIND.LOAD) refreshCatalogSoon();
  });
  $("#catalog-chips").addEventListener("click", (event) => {
    const chip = event.target.closest("[data-category]");
    if (!chip) return;
    catalogCategory = chip.dataset.category;
    renderChips([...$("#catalog-chips").children].map((c) => c.dataset.category).filter(Boolean));
    loadCatalog();
  });

  $("#catalog-search").addEventListener("input", () => {
    clearTimeout(catalogTimer);
    catalogTimer = setTimeout(loadCatalog, 250);
  });

  $("#catalog-list").addEventListener("click", async (event) => {
    const button = event.target.closest('button[data-action="pull"]');
    if (!button) return;
    button.disabled = true;
    const op = await startPull(button.dataset.model);
    if (op) setText(button, "Pulling…");
    else button.disabled = false;
  });
}
