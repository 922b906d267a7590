// Where pull, update and delete act, with several Ollama hosts: a picker beside each
// (#pull-scope, #update-scope, #delete-scope) with the host the page manages and "all
// hosts". With one host they stay hidden. The views that act read the picker's value:
// "" for the chosen host, "*" for all of them (a group of one operation per host).

import { HOSTS, manyHosts } from "../core/config.js";
import { on } from "../core/events.js";
import { state } from "../core/state.js";
import { $$, ALL_HOSTS, show } from "../core/util.js";

function fill(select) {
  const keep = select.value;
  const here = state.host || HOSTS[0];
  const options = [
    ["", select.id === "delete-scope" ? "only " + here : here],
    [ALL_HOSTS, "all hosts (" + HOSTS.length + ")"],
  ];
  select.replaceChildren(
    ...options.map(([value, label]) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = label;
      return option;
    }),
  );
  select.value = keep === ALL_HOSTS ? ALL_HOSTS : "";
}

export function initScopes() {
  if (!manyHosts()) return;
  const pickers = $$(".scope-pick");
  for (const picker of pickers) {
    fill(picker.querySelector("select"));
    show(picker, true);
  }
  on("host-selected", () => {
    for (const picker of pickers) fill(picker.querySelector("select"));
  });
}
