// Operation cards: bar, numbers, queue place, stall, speed sparkline, result of an update,
// log; the tab title while pulls run; notifications for pulls that end unseen.

import { manyHosts } from "./hosts.js";
import { ACTIVE, API, FINAL, LOG_KEEP, MAX_CONCURRENT, PROGRESS, RETRYABLE, modelUrl, opUrl } from "./config.js";
import { refreshCatalogSoon } from "./catalog.js";
import { api } from "./http.js";
import { flash, refreshModels, updateModels } from "./models.js";
import { notifyEnded } from "./notify.js";
import { startPull } from "./pulls.js";
import { state } from "./state.js";
import { refreshStatus } from "./status.js";
import {
  $, el, formatPercent, humanBytes, humanDuration, ordinal, setText, show, svg,
} from "./util.js";

const TITLE = document.title;
const SPARK_POINTS = 60;
const STALLED = /^stalled: no data from Ollama for (\d+) s/;

function entryFor(op) {
  let entry = state.ops.get(op.id);
  if (!entry) {
    entry = { op: op, card: null, logs: new Map(), logFetched: false, renderedLogs: 0, speeds: [] };
    state.ops.set(op.id, entry);
  }
  return entry;
}

/** Merge a newer operation state in; returns the entry. Older states (by seq) are ignored. */
export function upsertOp(op) {
  const entry = entryFor(op);
  const before = entry.op;
  if (before.seq !== undefined && op.seq !== undefined && op.seq < before.seq) return entry;
  const newer = before === op || op.seq === undefined || before.seq !== op.seq;
  entry.op = Object.assign({}, before, op);
  if (op.urls) entry.urls = op.urls;
  if (newer && entry.op.status === "running" && typeof entry.op.speed === "number") {
    entry.speeds.push(entry.op.speed);
    if (entry.speeds.length > SPARK_POINTS) entry.speeds.shift();
  }
  if (before !== op && ACTIVE.has(before.status) && FINAL.has(op.status)) {
    onFinished(entry.op);
    notifyEnded(entry.op);
  }
  schedule(op.id);
  return entry;
}

export function onFinished(op) {
  refreshModels();
  refreshStatus();
  if (op.kind !== "load") refreshCatalogSoon();
}

function schedule(id) {
  state.dirty.add(id);
  if (state.frame) return;
  // A hidden tab gets no animation frames, and its title must still move on.
  state.frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush);
  state.frameIsTimer = document.hidden;
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden && state.frame && !state.frameIsTimer) {
    cancelAnimationFrame(state.frame);
    state.frame = setTimeout(flush, 0);
    state.frameIsTimer = true;
  }
});

/** One DOM pass per frame whatever the number of events that arrived. */
function flush() {
  state.frame = 0;
  const ids = [...state.dirty];
  state.dirty.clear();
  for (const id of ids) {
    const entry = state.ops.get(id);
    if (entry) renderCard(entry);
  }
  renderQueue();
  updateOpsSummary();
}

export function updateOpsSummary() {
  let active = 0;
  let running = 0;
  let weighted = 0;
  let weights = 0;
  for (const { op } of state.ops.values()) {
    if (!ACTIVE.has(op.status)) continue;
    active += 1;
    if (op.status !== "running") continue;
    running += 1;
    // The percents (which never go back) weighted by size: a big pull counts for more.
    const weight = Number(op.total_bytes) || 1;
    weighted += weight * (Number(op.percent) || 0);
    weights += weight;
  }
  setText($("#stat-pulls"), String(active));
  show($("#ops-empty"), state.ops.size === 0);
  // The tab title tells a user in another tab how far the pulls are.
  let title = TITLE;
  if (running) {
    title = Math.floor(Math.min(100, weighted / weights)) + "% · " + TITLE;
  } else if (active) {
    title = "queued · " + TITLE;
  }
  if (document.title !== title) document.title = title;
}

/** Each queued card's place in the queue, and when it is likely to start. */
function renderQueue() {
  const queued = [];
  const etas = [];
  let running = 0;
  for (const entry of state.ops.values()) {
    if (entry.op.status === "queued") queued.push(entry);
    else if (entry.op.status === "running") {
      running += 1;
      if (entry.op.eta_seconds) etas.push(Number(entry.op.eta_seconds));
    }
  }
  // The runner starts the oldest queued operation whenever a slot frees.
  queued.sort((a, b) => Date.parse(a.op.created_at) - Date.parse(b.op.created_at));
  etas.sort((a, b) => a - b);
  const free = Math.max(0, MAX_CONCURRENT - running);
  queued.forEach((entry, index) => {
    if (!entry.card) return;
    const place = index + 1;
    let when = "";
    if (place <= free) when = "starting";
    else if (place - free <= etas.length) when = "likely to start in " + humanDuration(etas[place - free - 1]);
    const text = ordinal(place) + " in queue" + (when ? " · " + when : "");
    setText($(".op-queue", entry.card), text);
    entry.card.dataset.queuePlace = String(place);
  });
}

function newCard(entry) {
  const fragment = $("#op-template").content.cloneNode(true);
  const card = fragment.querySelector(".op-card");
  card.dataset.opId = entry.op.id;
  const details = $(".op-log", card);
  details.addEventListener("toggle", () => {
    if (details.open && !entry.logFetched) fetchLog(entry);
  });
  insertCard(card, entry.op);
  return card;
}

/** Newest operation first, as GET /progress lists them. */
function insertCard(card, op) {
  const list = $("#op-list");
  const created = Date.parse(op.created_at) || Date.now();
  for (const other of list.children) {
    const otherEntry = state.ops.get(other.dataset.opId);
    const otherCreated = otherEntry ? Date.parse(otherEntry.op.created_at) || 0 : 0;
    if (created > otherCreated) {
      list.insertBefore(card, other);
      return;
    }
  }
  list.append(card);
}

function resultText(op) {
  const result = op.result;
  if (!result) return "";
  if (result.status === "current") return "already current";
  const short = (d) => (d ? d.slice(0, 12) : "unknown");
  return "updated " + short(result.old) + " → " + short(result.new);
}

function renderCard(entry) {
  const op = entry.op;
  if (!entry.card) entry.card = newCard(entry);
  const card = entry.card;
  const running = op.status === "running";
  card.dataset.status = op.status;
  card.dataset.percent = String(op.percent ?? 0);
  card.dataset.kind = op.kind || "pull";
  setText($(".op-model", card), op.model);
  setText($(".op-host", card), manyHosts() ? "on " + op.host : "");
  setText($(".op-kind", card), op.kind);
  setText($(".op-status", card), op.status);
  const percent = Math.max(0, Math.min(100, Number(op.percent) || 0));
  const bar = $(".bar", card);
  bar.setAttribute("aria-valuenow", percent.toFixed(1));
  bar.setAttribute("aria-label", (op.kind || "pull") + " of " + op.model);
  bar.classList.toggle("animated", running || op.status === "queued");
  $(".bar-fill", card).style.width = percent + "%";
  setText($(".op-percent", card), formatPercent(percent));
  const total = op.total_bytes;
  setText($(".op-bytes", card), total ? humanBytes(op.completed_bytes || 0) + " / " + humanBytes(total) : "");
  const stalled = running && STALLED.exec(op.message || "");
  card.toggleAttribute("data-stalled", Boolean(stalled));
  setText(
    $(".op-speed", card),
    stalled ? "stalled for " + stalled[1] + " s" : running && op.speed ? humanBytes(op.speed) + "/s" : "",
  );
  setText($(".op-eta", card), running && op.eta_seconds && !stalled ? "ETA " + humanDuration(op.eta_seconds) : "");
  setText($(".op-phase", card), op.phase || "");
  if (op.status !== "queued") {
    setText($(".op-queue", card), "");
    delete card.dataset.queuePlace;
  }
  const result = resultText(op);
  const resultBox = $(".op-result", card);
  setText(resultBox, result);
  if (op.result) card.dataset.result = op.result.status;
  else delete card.dataset.result;
  // The message repeats what the numbers, the stall or the result already say.
  const repeats = result || stalled || (op.error && op.message === op.error) ||
    (op.status === "queued" && op.message === "queued"); // the queue place says it
  const message = repeats ? "" : op.message;
  setText($(".op-message", card), message || "");
  const error = $(".op-error", card);
  setText(error, op.error || "");
  show(error, Boolean(op.error));
  $('[data-action="cancel"]', card).hidden = !ACTIVE.has(op.status) || Boolean(op.cancel_requested);
  $('[data-action="retry"]', card).hidden = !RETRYABLE.has(op.status);
  $('[data-action="dismiss"]', card).hidden = !FINAL.has(op.status);
  renderSpark(entry);
  renderLog(entry);
}

/** A small line of the last speeds this page saw, oldest left; hidden once it ends. */
function renderSpark(entry) {
  const box = $(".op-spark", entry.card);
  const speeds = entry.speeds;
  const visible = entry.op.status === "running" && speeds.length > 1;
  show(box, visible);
  if (!visible) return;
  const peak = Math.max(...speeds, 1);
  const step = 100 / (speeds.length - 1);
  const points = speeds.map((s, i) => (i * step).toFixed(2) + "," + (27 - (25 * s) / peak).toFixed(2));
  const line = svg("polyline", { points: points.join(" "), className: "spark-line" });
  const area = svg("polygon", { points: "0,28 " + points.join(" ") + " 100,28", className: "spark-area" });
  let chart = $("svg", box);
  if (!chart) {
    chart = svg("svg", { viewBox: "0 0 100 28", preserveAspectRatio: "none", "aria-hidden": "true" });
    box.prepend(chart);
  }
  chart.replaceChildren(area, line);
  box.dataset.points = String(speeds.length);
  setText($(".op-spark-peak", box), "peak " + humanBytes(peak) + "/s");
}

export function addLog(line) {
  const entry = state.ops.get(line.operation_id);
  if (!entry) return; // its card arrives with the next progress event, then its log on demand
  entry.logs.set(line.seq, line);
  if (entry.logs.size > LOG_KEEP) entry.logs.delete(entry.logs.keys().next().value);
  schedule(line.operation_id);
}

function renderLog(entry) {
  const card = entry.card;
  const view = $(".log-view", card);
  const lines = [...entry.logs.values()].sort((a, b) => a.seq - b.seq);
  setText($(".op-log-count", card), lines.length ? "(" + lines.length + ")" : "");
  const last = lines.length ? lines[lines.length - 1].seq : 0;
  if (entry.renderedSeq === last && entry.renderedLogs === lines.length) return;
  const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
  // Append in place when only newer lines came; rebuild when a fetched log filled a gap.
  const previous = entry.renderedSeq || 0;
  const onlyNewer = entry.renderedLogs > 0 && lines.length - entry.renderedLogs ===
    lines.filter((l) => l.seq > previous).length;
  if (onlyNewer) {
    for (const line of lines) if (line.seq > previous) view.append(logLine(line));
    while (view.childElementCount > LOG_KEEP) view.firstElementChild.remove();
  } else {
    view.replaceChildren(...lines.map(logLine));
  }
  entry.renderedSeq = last;
  entry.renderedLogs = lines.length;
  if (atBottom) view.scrollTop = view.scrollHeight;
}

function logLine(line) {
  const time = line.time ? new Date(line.time).toLocaleTimeString() : "";
  return el("div", { className: "log-line" }, el("time", { text: time }), " ", el("span", { text: line.text }));
}

async function fetchLog(entry) {
  try {
    const data = await api(opUrl(PROGRESS.operation, entry.op.id) + "?log=" + LOG_KEEP);
    entry.logFetched = true;
    for (const line of data.log || []) entry.logs.set(line.seq, line);
    upsertOp(data);
  } catch (err) {
    setText($(".op-log-note", entry.card), "log unavailable: " + err.message);
  }
}

function logText(entry) {
  return [...entry.logs.values()]
    .sort((a, b) => a.seq - b.seq)
    .map((l) => (l.time || "") + "  " + l.text)
    .join("\n") + "\n";
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (err) {
      /* fall through to the textarea way */
    }
  }
  const area = el("textarea", { readonly: true, className: "offscreen", "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (err) {
    ok = false;
  }
  area.remove();
  return ok;
}

function download(filename, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const link = el("a", { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function initOps() {
  $("#op-list").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest("[data-op-id]");
    const entry = state.ops.get(card.dataset.opId);
    if (!entry) return;
    const op = entry.op;
    const note = $(".op-log-note", card);
    const action = button.dataset.action;
    if (action === "copy-log") {
      if (!entry.logFetched) await fetchLog(entry);
      setText(note, (await copyText(logText(entry))) ? "copied" : "copy failed");
    } else if (action === "download-log") {
      if (!entry.logFetched) await fetchLog(entry);
      const safe = String(op.model).replace(/[^A-Za-z0-9._-]+/g, "_");
      download("ollama-deck-" + safe + "-" + op.id.slice(0, 8) + ".log", logText(entry));
    } else if (action === "cancel") {
      button.disabled = true;
      try {
        upsertOp(await api(opUrl(PROGRESS.cancel, op.id), { method: "POST" }));
      } catch (err) {
        setText($(".op-error", card), err.message);
        show($(".op-error", card), true);
      } finally {
        button.disabled = false;
      }
    } else if (action === "retry") {
      button.disabled = true;
      if (op.kind === "load") {
        try {
          upsertOp(await api(modelUrl(API.load, op.model), { method: "POST", json: {} }));
        } catch (err) {
          flash(err.message);
        }
      } else if (op.kind === "update") {
        await updateModels([op.model]);
      } else {
        await startPull(op.model, { check: false }); // asked before the first try
      }
      button.disabled = false;
    } else if (action === "dismiss") {
      try {
        await api(opUrl(PROGRESS.operation, op.id), { method: "DELETE" });
      } catch (err) {
        if (err.status !== 404) {
          flash(err.message);
          return;
        }
      }
      state.ops.delete(op.id);
      card.remove();
      renderQueue();
      updateOpsSummary();
    }
  });
}

export async function loadOperations(polling) {
  const data = await api(PROGRESS.list + "?limit=50");
  let finishedUnseen = false;
  for (const op of data.operations || []) {
    // Between two polls an operation may start and end unseen: the model list changed.
    if (polling && !state.ops.has(op.id) && FINAL.has(op.status)) finishedUnseen = true;
    upsertOp(op);
  }
  if (finishedUnseen) refreshModels();
  return data;
}
