// Small DOM and formatting helpers. Text only ever reaches the DOM as text nodes.

export const $ = (sel, root) => (root || document).querySelector(sel);
export const $$ = (sel, root) => [...(root || document).querySelectorAll(sel)];

/** An element with attributes and children; strings become text nodes, never markup. */
export function el(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element (built with createElementNS, so the strict CSP has nothing to object to). */
export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.setAttribute("class", value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function setText(node, text) {
  const value = text === null || text === undefined ? "" : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function humanBytes(bytes) {
  if (bytes === null || bytes === undefined || isNaN(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : value >= 100 ? 0 : 1;
  return value.toFixed(digits) + " " + units[unit];
}

export function humanDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
}

export function relativeTime(iso) {
  const when = Date.parse(iso);
  if (isNaN(when)) return "";
  const seconds = (Date.now() - when) / 1000;
  if (seconds < 60) return "just now";
  const table = [
    [3600, 60, "minute"],
    [86400, 3600, "hour"],
    [86400 * 30, 86400, "day"],
    [86400 * 365, 86400 * 30, "month"],
    [Infinity, 86400 * 365, "year"],
  ];
  for (const [limit, size, name] of table) {
    if (seconds < limit) {
      const n = Math.floor(seconds / size);
      return n + " " + name + (n === 1 ? "" : "s") + " ago";
    }
  }
  return "";
}

export function formatPercent(value) {
  const p = Math.max(0, Math.min(100, Number(value) || 0));
  return p.toFixed(1) + "%";
}

/** 1 -> "1st", 2 -> "2nd", 11 -> "11th". */
export function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] || "th";
  return n + suffix;
}

/** Ollama matches names case-insensitively and a missing tag means latest. */
export function sameModel(a, b) {
  if (!a || !b) return false;
  const norm = (n) => {
    n = String(n).toLowerCase();
    return n.slice(n.lastIndexOf("/") + 1).includes(":") ? n : n + ":latest";
  };
  return norm(a) === norm(b);
}

/** The fit badge of a model against the largest GPU: the catalog and the details drawer show it. */
export function fitBadge(fits) {
  if (fits === true) return el("span", { className: "badge fits-yes", dataset: { fits: "yes" } }, "fits");
  if (fits === false) return el("span", { className: "badge fits-no", dataset: { fits: "no" } }, "too big");
  return el("span", { className: "badge fits-unknown", dataset: { fits: "unknown" }, title: "no GPU memory known" }, "fit unknown");
}

/** What "all hosts" is called in a host picker (views/scopes.js) and in the API. */
export const ALL_HOSTS = "*";

/** The hosts a host picker says: "*" for all, or null for the host the page manages. */
export function scopeOf(select) {
  return select && !select.closest("[hidden]") && select.value === ALL_HOSTS ? ALL_HOSTS : null;
}
