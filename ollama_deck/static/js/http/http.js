// fetch + JSON for the deck's API, the chosen host on every call, and the session: with
// OLLAMA_DECK_TOKEN set, the page asks for the token once (views/token.js shows the dialog)
// and trades it for an HttpOnly session cookie, which fetch and EventSource then send.
// Embedded behind a host app's login, a 401 or 403 means the session ended (a logout in
// another tab, an expiry): one session-ended event, and every later call fails quietly.

import { API } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";

/** ``url`` with the chosen host, when one is chosen (and the URL names no hosts itself). */
export function withHost(url) {
  if (!state.host || /[?&]hosts=/.test(url)) return url;
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
  if (ended) throw sessionError(ended, null);
  const response = await fetch(withHost(url), opts);
  const data = await readJson(response);
  const refusal = sessionRefusal(response, data);
  if (refusal) {
    endSession(refusal);
    throw sessionError(refusal, response);
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
  if (data === null) {
    // Never hand a caller null for an answer: it would fail far from here.
    const type = response.headers.get("Content-Type") || "no content type";
    throw new Error("the server answered " + response.status + " with " + type + ", not JSON");
  }
  return data;
}

/** The JSON body of ``response``, or null when it has none. */
export async function readJson(response) {
  const type = response.headers.get("Content-Type") || "";
  if (!type.includes("json")) return null;
  try {
    return await response.json();
  } catch (err) {
    return null;
  }
}

// ---------------------------------------------------------------- the session

const TOKEN_CODE = "unauthorized"; // the deck's own 401 (OLLAMA_DECK_TOKEN)
// 403s about one request, not the session: another origin, a read token's write.
const NOT_THE_SESSION = new Set(["cross_origin", "read_only_token"]);
let ended = null; // the refusal that ended the session; no call goes out after it

/**
 * What a response says of the session, or null when it is not about the session:
 * ``{kind: "token"}`` (the deck wants its token again), ``{kind: "login", loginUrl}`` (the
 * host app's login; its URL when the answer named one) or ``{kind: "forbidden"}``.
 */
export function sessionRefusal(response, data) {
  const error = data && data.error && typeof data.error === "object" ? data.error : {};
  if (response.status === 401) {
    const bearer = /^bearer/i.test(response.headers.get("WWW-Authenticate") || "");
    if (error.code === TOKEN_CODE || bearer) return { kind: "token" };
    return { kind: "login", loginUrl: typeof error.login_url === "string" ? error.login_url : null };
  }
  if (response.status === 403 && !NOT_THE_SESSION.has(error.code)) return { kind: "forbidden" };
  // A guard that still redirected us: fetch followed it to a login page.
  if (response.redirected && data === null) return { kind: "login", loginUrl: response.url };
  return null;
}

/** The session is over: say so once (a session-ended event); a token may be asked again. */
export function endSession(refusal) {
  if (ended) return;
  ended = refusal;
  emit("session-ended", refusal);
  if (refusal.kind === "token") askForToken();
}

/** Whether the session ended: nothing should go to the server any more. */
export const sessionEnded = () => ended !== null;

/** Errors of calls the ended session refused: the session message already says it all. */
export const isSessionError = (err) => Boolean(err && err.session);

function sessionError(refusal, response) {
  const what = refusal.kind === "token" ? "the token is needed again" : "log in again";
  const error = new Error("the session ended: " + what);
  error.session = true;
  error.status = response ? response.status : 401;
  return error;
}

let tokenWaiters = null;

/**
 * Resolves once the server accepts this page: at once, or after the token was given; to
 * false when the session is over (the host app's login is needed).
 */
export async function ensureSession() {
  let response;
  try {
    response = await fetch(API.session, { headers: { Accept: "application/json" } });
  } catch (err) {
    return true; // the server is unreachable: the page shows that itself
  }
  const data = await readJson(response);
  const refusal = sessionRefusal(response, data);
  if (!refusal) {
    sessionKnown(data);
    return true;
  }
  if (refusal.kind === "token") {
    await askForToken();
    return true;
  }
  endSession(refusal);
  return false;
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

/**
 * What the server said of this session (GET or POST /api/session): its token's name and
 * role ("read" or "write"; an answer without one is a deck that asks for no token).
 */
export function sessionKnown(data) {
  const role = data && data.role === "read" ? "read" : "write";
  state.role = role;
  emit("session-known", { role: role, token: (data && data.token) || null });
}

/** The token was accepted: whoever waited in askForToken goes on. */
export function tokenAccepted() {
  const waiters = tokenWaiters || [];
  tokenWaiters = null;
  for (const resolve of waiters) resolve();
}
