// Opt-in notifications: asked for on the first pull (never on page load), shown only for
// a pull that ends while the tab is hidden.

import { KIND, STATUS } from "../core/config.js";

let asked = false;

export function askToNotify() {
  if (asked || !("Notification" in window) || Notification.permission !== "default") return;
  asked = true;
  try {
    Notification.requestPermission();
  } catch (err) {
    /* an old callback-only API or a refusal: no notifications, nothing else changes */
  }
}

const WORDS = {
  [STATUS.SUCCEEDED]: "finished",
  [STATUS.FAILED]: "failed",
  [STATUS.CANCELLED]: "was cancelled",
  [STATUS.INTERRUPTED]: "was interrupted",
};

/** Tell of an operation that just ended, if the user is looking elsewhere and agreed. */
export function notifyEnded(op) {
  if (document.visibilityState !== "hidden") return;
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const what = op.kind === KIND.UPDATE && op.result && op.result.status === "current"
    ? "is already current"
    : (WORDS[op.status] || op.status);
  const body = op.status === STATUS.FAILED && op.error ? op.error : op.message || "";
  try {
    new Notification(op.model + " " + what, { body: body, tag: "ollama-deck-" + op.id });
  } catch (err) {
    /* some browsers allow notifications only from a service worker */
  }
}
