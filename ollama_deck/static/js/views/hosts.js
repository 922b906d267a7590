// Several Ollama hosts (OLLAMA_HOSTS): a selector in the top bar picks the one the page
// manages; every API call then names it (?host=, see http/http.js). With one host nothing
// shows. A pick goes out as a host-selected event.

import { HOSTS, manyHosts } from "../core/config.js";
import { emit } from "../core/events.js";
import { state } from "../core/state.js";
import { $, show } from "../core/util.js";

const KEY = "ollama-deck-host";

export function initHosts() {
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
    emit("host-selected", state.host);
  });
  show($("#host-pick"), true);
}
