// Tabs with the ARIA tabs pattern: arrow keys move between them, the URL hash keeps one.
// A selection goes out as a tab-selected event (the catalog loads on its first).

import { emit, on } from "../core/events.js";
import { $, $$ } from "../core/util.js";

const tabs = () => $$('[role="tab"]');
// The tabs shown: a read token's page has none of changes (data-write, views/role.js).
const shownTabs = () => tabs().filter((t) => t.getClientRects().length > 0);

export function selectTab(tab) {
  for (const other of tabs()) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  emit("tab-selected", tab.dataset.tab);
  if (location.hash !== "#" + tab.dataset.tab) history.replaceState(null, "", "#" + tab.dataset.tab);
}

export function tabFromHash() {
  return shownTabs().find((t) => "#" + t.dataset.tab === location.hash);
}

export function initTabs() {
  for (const tab of tabs()) tab.addEventListener("click", () => selectTab(tab));
  window.addEventListener("hashchange", () => {
    const wanted = tabFromHash();
    if (wanted) selectTab(wanted);
  });
  on("session-known", ({ role }) => {
    const selected = $('[role="tab"][aria-selected="true"]');
    if (role === "read" && selected && selected.hasAttribute("data-write")) selectTab(tabs()[0]);
  });
  $(".tabs").addEventListener("keydown", (event) => {
    const all = shownTabs();
    const index = all.indexOf(document.activeElement);
    if (index === -1) return;
    let next = null;
    if (event.key === "ArrowRight") next = all[(index + 1) % all.length];
    else if (event.key === "ArrowLeft") next = all[(index - 1 + all.length) % all.length];
    else if (event.key === "Home") next = all[0];
    else if (event.key === "End") next = all[all.length - 1];
    if (!next) return;
    event.preventDefault();
    next.focus();
    selectTab(next);
  });
}
