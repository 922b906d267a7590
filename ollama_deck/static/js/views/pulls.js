// The pull box: the form, the warning before a model that will not fit, and the notice
// line under it where actions tell of an error (a notice event; null hides it).

import { on } from "../core/events.js";
import { $, el, humanBytes, scopeOf, setText, show } from "../core/util.js";
import { setPullConfirm, startPull } from "../actions/operations.js";

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

function notice(message) {
  const box = $("#pull-error");
  if (message) setText(box, message);
  show(box, Boolean(message));
}

export function initPulls() {
  setPullConfirm(askPullAnyway);
  on("notice", notice);
  $("#pull-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#pull-input");
    const name = input.value.trim();
    if (!name) {
      // Whatever the last pull said no longer applies: say what is missing instead.
      notice("Type the name of a model to pull, e.g. llama3.2:1b.");
      input.focus();
      return;
    }
    const button = $("#pull-button");
    button.disabled = true;
    const op = await startPull(name, { hosts: scopeOf($("#pull-scope")) });
    button.disabled = false;
    // Only what was pulled is cleared: a name typed while this one was on its way stays.
    if (op && input.value.trim() === name) input.value = "";
  });
}
