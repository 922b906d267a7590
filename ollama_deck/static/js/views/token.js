// The access-token dialog: shown when the server wants the token (OLLAMA_DECK_TOKEN set),
// closed once http/http.js traded it for a session.

import { on } from "../core/events.js";
import { $, setText, show } from "../core/util.js";
import { sendToken, tokenAccepted } from "../http/http.js";

function ask() {
  const dialog = $("#token-dialog");
  show($("#token-error"), false);
  if (!dialog.open) dialog.showModal();
  $("#token-input").focus();
}

export function initToken() {
  on("token-needed", ask);
  // Asked again mid-session: say why, so it does not look like a new page.
  on("session-ended", ({ kind }) => show($("#token-again"), kind === "token"));
  $("#token-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("#token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#token-input");
    const error = $("#token-error");
    $("#token-submit").disabled = true;
    try {
      const response = await sendToken(input.value.trim());
      if (!response.ok) {
        const wrong = response.status === 401;
        setText(error, wrong ? "That token is not right." : response.status + " " + response.statusText);
        show(error, true);
        input.select();
        return;
      }
      input.value = "";
      $("#token-dialog").close();
      tokenAccepted();
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
