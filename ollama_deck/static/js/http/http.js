// fetch + JSON for the deck's API, and the access-token prompt.

import { API } from "./config.js";
import { withHost } from "./hosts.js";
import { $, setText, show } from "./util.js";

/** fetch + JSON; throws an Error carrying the API's error message and the status. */
export async function api(url, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  if (opts.json !== undefined) {
    // The deck refuses bodies of any other type (415): a cross-site form cannot send it.
    opts.body = JSON.stringify(opts.json);
    opts.headers["Content-Type"] = "application/json";
    delete opts.json;
  }
  opts.headers.Accept = "application/json";
  const response = await fetch(withHost(url), opts);
  if (response.status === 401) askForToken();
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message =
      (data && data.error && (data.error.message || data.error)) ||
      response.status + " " + response.statusText;
    const error = new Error(String(message));
    error.status = response.status;
    error.data = data;
    throw error;
  }
  return data;
}

// With OLLAMA_DECK_TOKEN set, the page asks for the token once and trades it for an
// HttpOnly session cookie, which fetch and EventSource then send on their own.
let tokenWaiters = null;

/** Resolves once the server accepts this page: at once, or after the token was given. */
export async function ensureSession() {
  let response;
  try {
    response = await fetch(API.session, { headers: { Accept: "application/json" } });
  } catch (err) {
    return; // the server is unreachable: the page shows that itself
  }
  if (response.status === 401) await askForToken();
}

export function askForToken() {
  if (!tokenWaiters) {
    tokenWaiters = [];
    const dialog = $("#token-dialog");
    show($("#token-error"), false);
    if (!dialog.open) dialog.showModal();
    $("#token-input").focus();
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

export function initToken() {
  $("#token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token-input");
    const error = $("#token-error");
    $("#token-submit").disabled = true;
    try {
      const response = await fetch(API.session, {
        method: "POST",
        headers: { Accept: "application/json", Authorization: "Bearer " + input.value.trim() },
      });
      if (!response.ok) {
        const wrong = response.status === 401;
        setText(error, wrong ? "That token is not right." : response.status + " " + response.statusText);
        show(error, true);
        input.select();
        return;
      }
      input.value = "";
      $("#token-dialog").close();
      const waiters = tokenWaiters || [];
      tokenWaiters = null;
      for (const resolve of waiters) resolve();
      // Asked again mid-session (the token changed): start afresh with the new session.
      if (document.body.dataset.ready) location.reload();
    } catch (err) {
      setText(error, err.message);
      show(error, true);
    } finally {
      $("#token-submit").disabled = false;
    }
  });
}
