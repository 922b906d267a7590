// What this session may do. A read token's page hides every action that changes
// something (app.css: body[data-role="read"] [data-write]); the server refuses those
// changes anyway (403 read_only_token). views/tabs.js leaves a tab of changes (Prompt).

import { on } from "../core/events.js";

export function initRole() {
  on("session-known", ({ role }) => {
    document.body.dataset.role = role;
  });
}
