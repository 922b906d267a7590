// What the server rendered into #deck-config: every URL (so the page works under any
// mount prefix), a few limits, and the lifecycle vocabulary (ollama_deck/lifecycle.py), so
// no status list is typed twice.

export const config = JSON.parse(document.getElementById("deck-config").textContent);
export const API = config.api;
export const PROGRESS = config.progress;
export const LOG_KEEP = Math.max(1, Number(config.log_lines) || 300);
export const HOSTS = Array.isArray(config.hosts) ? config.hosts : [];
export const MAX_CONCURRENT = Math.max(1, Number(config.max_concurrent) || 1);

const lifecycle = config.lifecycle;
export const ACTIVE = new Set(lifecycle.active);
export const FINAL = new Set(lifecycle.final);
export const RETRYABLE = new Set(lifecycle.retryable);
/** What a user may pause: queued, scheduled and running operations. */
export const PAUSABLE = new Set(lifecycle.pausable);
/** Who paused an operation: HOLD.USER ("user") or HOLD.WINDOW (its host's download window). */
export const HOLD = byName(lifecycle.holds);

/** Each status by its name (STATUS.RUNNING is "running"), for the few places that test one. */
export const STATUS = byName(lifecycle.statuses);
/** Each kind by its name: KIND.LOAD is "load". */
export const KIND = byName(lifecycle.kinds);

function byName(values) {
  return Object.freeze(Object.fromEntries(values.map((v) => [v.toUpperCase(), v])));
}

/** Several Ollama hosts: the page shows a selector and names the host on each card. */
export const manyHosts = () => HOSTS.length > 1;

function encodeName(name) {
  return String(name).split("/").map(encodeURIComponent).join("/");
}

export const modelUrl = (template, name) => template.replace(config.slots.model, encodeName(name));
export const opUrl = (template, id) => template.replace(config.slots.op, encodeURIComponent(id));
