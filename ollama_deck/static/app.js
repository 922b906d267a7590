// Ollama Deck page, the entry module: native ES modules (in js/), no build step. Every URL
// comes from the #deck-config JSON the server renders, so the page works under any prefix.
//
// The modules depend one way (tests/test_page_modules.py holds them to it):
//   js/core (config, state, events, util) <- js/http <- js/operations <- js/actions
//   <- js/views <- app.js
// Views never import each other: they talk through the events of js/core/events.js, and
// this module wires what crosses them.

import { on } from "./js/core/events.js";
import { state } from "./js/core/state.js";
import { ensureSession } from "./js/http/http.js";
import { connect } from "./js/actions/live.js";
import { notifyEnded } from "./js/actions/notify.js";
import { loadOperations } from "./js/actions/operations.js";
import { STATUS_EVERY_MS, refreshActive, refreshModels, refreshStatus } from "./js/actions/server.js";
import { initActivity } from "./js/views/activity.js";
import { initCatalog } from "./js/views/catalog.js";
import { initDetails } from "./js/views/details.js";
import { initFleet } from "./js/views/fleet.js";
import { initHosts } from "./js/views/hosts.js";
import { initModels } from "./js/views/models.js";
import { initOps } from "./js/views/ops.js";
import { initPrompt } from "./js/views/prompt.js";
import { initPulls } from "./js/views/pulls.js";
import { initRole } from "./js/views/role.js";
import { initScopes } from "./js/views/scopes.js";
import { initSession } from "./js/views/session.js";
import { initStatus } from "./js/views/status.js";
import { initTabs, selectTab, tabFromHash } from "./js/views/tabs.js";
import { initToken } from "./js/views/token.js";

async function start() {
  initToken();
  initSession();
  initRole();
  initStatus();
  initHosts();
  initScopes();
  initTabs();
  initModels();
  initDetails();
  initPulls();
  initOps();
  initCatalog();
  initPrompt();
  initActivity();
  initFleet();
  // Another host: its models and status (the catalog reloads itself); operations show
  // every host's.
  on("host-selected", () => {
    refreshModels();
    refreshStatus();
  });
  // An operation ended: the models, what is loaded, and the catalog's installed flags
  // may have changed; tell a user looking elsewhere.
  on("op-finished", ({ op, seen }) => {
    refreshModels();
    refreshStatus();
    if (seen) notifyEnded(op);
  });
  if (!(await ensureSession())) {
    document.body.dataset.ready = "true"; // the session message is up; nothing else to do
    return;
  }
  const wanted = tabFromHash();
  if (wanted) selectTab(wanted);
  connect();
  await Promise.allSettled([refreshActive(), refreshModels(), refreshStatus(), loadOperations()]);
  const timer = setInterval(() => {
    refreshStatus();
    if (state.stale || state.reachable === false) refreshModels();
  }, STATUS_EVERY_MS);
  on("session-ended", () => clearInterval(timer));
  document.body.dataset.ready = "true";
}

start();
