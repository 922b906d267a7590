// The session ended while the page was open (a logout in another tab, an expired login of
// the host app, a refused 403): say so, and offer the way back to the host's login page.
// With OLLAMA_DECK_TOKEN the token dialog asks again instead (views/token.js).

import { on } from "../core/events.js";
import { $, setText, show } from "../core/util.js";

const TEXT = {
  login:
    "You are no longer logged in, so this page has stopped updating. Log in again to go " +
    "on managing models.",
  loginNoLink:
    "You are no longer logged in, so this page has stopped updating. Log in to the app " +
    "again, then reload this page.",
  forbidden:
    "The app this page is part of no longer lets this session use it (403), so this page " +
    "has stopped updating. Log in again, or ask for access.",
};

/**
 * The login page's address, coming back here afterwards: a ``next`` it carries pointed at
 * the API call that found out, so it is made this page. Null for anything but http(s).
 */
export function loginHref(loginUrl) {
  if (!loginUrl) return null;
  let url;
  try {
    url = new URL(loginUrl, location.href);
  } catch (err) {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.searchParams.has("next")) {
    url.searchParams.set("next", location.pathname + location.search + location.hash);
  }
  return url.origin === location.origin ? url.pathname + url.search + url.hash : url.href;
}

function sessionEnded(refusal) {
  if (refusal.kind === "token") return; // the token dialog asks again
  const href = loginHref(refusal.loginUrl);
  const link = $("#session-login");
  if (href) link.setAttribute("href", href);
  else link.removeAttribute("href");
  show(link, Boolean(href));
  const text = refusal.kind === "forbidden" ? TEXT.forbidden : href ? TEXT.login : TEXT.loginNoLink;
  setText($("#session-text"), text);
  const dialog = $("#session-dialog");
  for (const other of document.querySelectorAll("dialog[open]")) if (other !== dialog) other.close();
  if (!dialog.open) dialog.showModal();
  (href ? link : $("#session-reload")).focus();
}

export function initSession() {
  on("session-ended", sessionEnded);
  // Nothing behind the dialog works any more: Escape does not close it.
  $("#session-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("#session-reload").addEventListener("click", () => location.reload());
}
