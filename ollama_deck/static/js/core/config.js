// What the server rendered into #deck-config: every URL (so the page works under any
// mount prefix) and a few limits.

export const config = JSON.parse(document.getElementById("deck-config").textContent);
export const API = config.api;
export const PROGRESS = config.progress;
export const LOG_KEEP = Math.max(1, Number(config.log_lines) || 300);
export const HOSTS = Array.isArray(config.hosts) ? config.hosts : [];
export const MAX_CONCURRENT = Math.max(1, Number(config.max_concurrent) || 1);

export const ACTIVE = new Set(["queued", "running"]);
export const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted"]);
export const RETRYABLE = new Set(["failed", "cancelled", "interrupted"]);

function encodeName(name) {
  return String(name).split("/").map(encodeURIComponent).join("/");
}

export const modelUrl = (template, name) => template.replace(config.slots.model, encodeName(name));
export const opUrl = (template, id) => template.replace(config.slots.op, encodeURIComponent(id));
