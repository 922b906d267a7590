// The details drawer of an installed model, opened by an open-details event.

import { API, modelUrl } from "../core/config.js";
import { on } from "../core/events.js";
import { $, el, fitBadge, humanBytes, setText } from "../core/util.js";
import { api } from "../http/http.js";

let returnFocus = null;

async function openDetails(name) {
  const drawer = $("#details-drawer");
  const body = $("#details-body");
  setText($("#details-title"), name);
  body.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
  if (!drawer.open) {
    returnFocus = document.activeElement;
    drawer.showModal();
  }
  try {
    const info = await api(modelUrl(API.model, name));
    body.replaceChildren(...detailsContent(info));
  } catch (err) {
    body.replaceChildren(el("p", { className: "error-text", text: err.message }));
  }
}

function detailsContent(info) {
  const vram = info.vram || {};
  const facts = [
    ["Family", info.family],
    ["Parameters", info.parameter_size],
    ["Quantization", info.quantization],
    ["Format", info.format],
    ["Context length", info.context_length ? Number(info.context_length).toLocaleString() : null],
    ["Capabilities", (info.capabilities || []).join(", ")],
    ["License", info.license_summary],
  ];
  const list = el("dl", { className: "facts" });
  for (const [label, value] of facts) {
    list.append(el("dt", { text: label }), el("dd", { text: value || "–" }));
  }
  const parts = [list];
  if (info.stale) {
    const why = info.error || "Ollama is not reachable";
    parts.unshift(el("p", { className: "muted", text: "From the last list seen (" + why + ")." }));
  }
  const gpuKnown = info.gpu && info.gpu.known;
  const gpu = gpuKnown ? humanBytes(info.gpu.total_bytes) + " GPU" : "no GPU detected";
  parts.push(
    el(
      "section",
      { className: "vram" },
      el("h3", {}, "VRAM estimate"),
      el(
        "p",
        { className: "vram-total" },
        el("strong", { text: vram.total_gb !== undefined ? vram.total_gb + " GB" : "–" }),
        " ",
        fitBadge(info.fits),
        el("span", { className: "muted", text: " (" + gpu + ")" }),
      ),
      info.fits === false
        ? el("p", {
            className: "fit-warning",
            text: "This model needs about " + vram.total_gb + " GB, more than the " +
              humanBytes(info.gpu.total_bytes) + " of the largest GPU: Ollama will run part " +
              "of it on the CPU, which is much slower.",
          })
        : null,
      el(
        "p",
        { className: "muted" },
        "weights " + humanBytes(vram.weights_bytes) +
          " · KV cache " + humanBytes(vram.kv_cache_bytes) +
          " · overhead " + humanBytes(vram.overhead_bytes),
      ),
      el("ul", { className: "assumptions" }, (vram.assumptions || []).map((a) => el("li", { text: a }))),
    ),
  );
  if (info.parameters) parts.push(el("h3", {}, "Parameters"), el("pre", { className: "code", tabindex: "0", text: info.parameters }));
  if (info.template) parts.push(el("h3", {}, "Template"), el("pre", { className: "code", tabindex: "0", text: info.template }));
  if (info.license) {
    parts.push(
      el("details", { className: "license" }, el("summary", {}, "Full license"),
        el("pre", { className: "code", tabindex: "0", text: info.license })),
    );
  }
  return parts;
}

export function initDetails() {
  on("open-details", openDetails);
  const drawer = $("#details-drawer");
  $("#details-close").addEventListener("click", () => drawer.close());
  drawer.addEventListener("click", (event) => {
    if (event.target === event.currentTarget) event.currentTarget.close(); // a click on the backdrop
  });
  drawer.addEventListener("close", () => {
    if (returnFocus && returnFocus.isConnected) returnFocus.focus();
    returnFocus = null;
  });
}
