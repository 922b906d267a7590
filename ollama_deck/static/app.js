// Ollama Deck page, the entry module: native ES modules (in js/), no build step. Every URL
// comes from the #deck-config JSON the server renders, so the page works under any prefix.

import { catalogIsLoaded, initCatalog, loadCatalog } from "./js/catalog.js";
import { initDetails } from "./js/details.js";
import { initHosts } from "./js/hosts.js";
import { ensureSession, initToken } from "./js/http.js";
import { connect } from "./js/live.js";
import { initModels, refreshActive, refreshModels } from "./js/models.js";
import { initOps, loadOperations, updateOpsSummary } from "./js/ops.js";
import { initPrompt } from "./js/prompt.js";
import { initPulls } from "./js/pulls.js";
import { state } from "./js/state.js";
import { STATUS_EVERY_MS, refreshStatus } from "./js/status.js";
import { initTabs, selectTab, tabFromHash } from "./js/tabs.js";

async function start() {
  initToken();
  initHosts(() => {
    // Another host: its models, status and catalog flags; operations show every host's.
    refreshModels();
    refreshStatus();
    if (catalogIsLoaded()) loadCatalog();
  });
  initTabs();
  initModels();
  initDetails();
  initPulls();
  initOps();
  initCatalog();
  initPrompt();
  await ensureSession();
  const wanted = tabFromHash();
  if (wanted) selectTab(wanted);
  updateOpsSummary();
  connect();
  await Promise.allSettled([refreshActive(), refreshModels(), refreshStatus(), loadOperations()]);
  setInterval(() => {
    refreshStatus();
    if (state.stale || state.reachable === false) refreshModels();
  }, STATUS_EVERY_MS);
  document.body.dataset.ready = "true";
}

start();
