// Several Ollama hosts (OLLAMA_HOSTS): a selector in the top bar picks the one the page
// manages; every API call then names it (?host=). With one host nothing shows.

import { HOSTS } from "./config.js";
import { state } from "./state.js";
import { $, show } from "./util.js";

const KEY = "ollama-deck-host";

export const manyHosts = () => HOSTS.length > 1;

/** ``url`` with the chosen host, when one is chosen. */
export function withHost(url) {
  if (!state.host) return url;
  return url + (url.includes("?") ? "&" : "?") + "host=" + encodeURIComponent(state.host);
}

/** Fill the selector; ``changed`` runs when the user picks another host. */
export function initHosts(changed) {
  if (!manyHosts()) return;
  const select = $("#host-select");
  for (const name of HOSTS) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.append(option);
  }
  const remembered = sessionStorage.getItem(KEY);
  state.host = HOSTS.includes(remembered) ? remembered : HOSTS[0];
  select.value = state.host;
  select.addEventListener("change", () => {
    state.host = select.value;
    sessionStorage.setItem(KEY, state.host);
    changed();
  });
  show($("#host-pick"), true);
}
