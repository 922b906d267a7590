// fetch + JSON for the deck's API, the chosen host on every call, and the session: with
// OLLAMA_DECK_TOKEN set, the page asks for the token once (views/token.js shows the dialog)
// and trades it for an HttpOnly session cookie, which fetch and EventSource then send.

import { API } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";

/** ``url`` with the chosen host, when one is chosen. */
export function withHost(url) {
  if (!state.host) return url;
  return url + (url.includes("?") ? "&" : "?") + "host=" + encodeURIComponent(state.host);
}

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

/** Resolves once a token was accepted; the first caller asks for it (a token-needed event). */
export function askForToken() {
  if (!tokenWaiters) {
    tokenWaiters = [];
    emit("token-needed");
  }
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

/** Trade ``token`` for a session cookie; the Response. */
export function sendToken(token) {
  return fetch(API.session, {
    method: "POST",
    headers: { Accept: "application/json", Authorization: "Bearer " + token },
  });
}

/** The token was accepted: whoever waited in askForToken goes on. */
export function tokenAccepted() {
  const waiters = tokenWaiters || [];
  tokenWaiters = null;
  for (const resolve of waiters) resolve();
}
