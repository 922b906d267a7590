// Starting pulls: the pull box, the warning before a model that will not fit, and the
// one-time question whether to notify when a pull ends while the tab is hidden.

import { API } from "./config.js";
import { api } from "./http.js";
import { askToNotify } from "./notify.js";
import { upsertOp } from "./ops.js";
import { $, el, humanBytes, setText, show } from "./util.js";

/** Pull ``name``; with ``check``, first warn (and let the user cancel) if it will not fit. */
export async function startPull(name, { check = true } = {}) {
  const box = $("#pull-error");
  show(box, false);
  askToNotify(); // here, on a click: browsers ignore (or punish) a request on page load
  if (check && !(await confirmFit(name))) return null;
  try {
    const op = await api(API.pull, { method: "POST", json: { model: name } });
    upsertOp(op);
    return op;
  } catch (err) {
    setText(box, err.message);
    show(box, true);
    return null;
  }
}

/** True to go on: no warning is due, the estimate is unavailable, or the user confirmed. */
async function confirmFit(name) {
  let estimate;
  try {
    estimate = await api(API.estimate + "?" + new URLSearchParams({ model: name }));
  } catch (err) {
    return true; // a bad name or a server hiccup: the pull itself reports what is wrong
  }
  if (!estimate || !estimate.warn) return true;
  return askPullAnyway(estimate);
}

function askPullAnyway(estimate) {
  const dialog = $("#pull-warning");
  const vram = estimate.vram || {};
  const gpu = estimate.gpu || {};
  setText($("#pull-warning-title"), "Pull " + estimate.model + "?");
  const why = estimate.reason === "too_big_for_gpu"
    ? "It needs about " + vram.total_gb + " GB of GPU memory, more than the " +
      humanBytes(gpu.total_bytes) + " of the largest GPU here. Ollama would run much of it " +
      "on the CPU, slowly."
    : "No GPU memory is known here, and it needs about " + vram.total_gb + " GB, more than " +
      humanBytes(estimate.warn_bytes) + ". Without a GPU that large it runs slowly, if at all.";
  setText($("#pull-warning-text"), why);
  $("#pull-warning-facts").replaceChildren(
    el("dt", { text: "VRAM estimate" }), el("dd", { text: vram.total_gb + " GB" }),
    el("dt", { text: "Download" }), el("dd", { text: humanBytes(estimate.size_bytes) }),
    el("dt", { text: "GPU" }), el("dd", { text: gpu.known ? humanBytes(gpu.total_bytes) : "none known" }),
  );
  const returnFocus = document.activeElement;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (returnFocus && returnFocus.isConnected) returnFocus.focus();
      resolve(dialog.returnValue === "confirm");
    }, { once: true });
    dialog.showModal();
    $("#pull-warning-cancel").focus(); // the safe choice first
  });
}

export function initPulls() {
  $("#pull-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#pull-input");
    const name = input.value.trim();
    if (!name) {
      input.focus();
      return;
    }
    const button = $("#pull-button");
    button.disabled = true;
    const op = await startPull(name);
    button.disabled = false;
    if (op) input.value = "";
  });
}
