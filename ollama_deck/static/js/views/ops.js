// Operation cards: bar, numbers, queue place, stall, speed sparkline, result of an update,
// log with copy and download, cancel, retry, dismiss; and the tab title while pulls run.
// The operations themselves live in operations/operations.js; this view redraws a card
// (once per frame) when it hears op-changed.

import { ACTIVE, FINAL, HOLD, KIND, LOG_KEEP, PAUSABLE, RETRYABLE, STATUS, manyHosts } from "../core/config.js";
import { on } from "../core/events.js";
import {
  $, el, formatPercent, humanBytes, humanDuration, ordinal, setText, show, svg,
} from "../core/util.js";
import { getEntry, groupOf, logLines, logText, queue, summary } from "../operations/operations.js";
import {
  cancelOp, clearFinished, dismissOp, fetchLog, pauseOp, resumeOp, retryOp,
} from "../actions/operations.js";

const TITLE = document.title;
const WIDE = "(min-width: 981px)"; // app.css puts the side panel beside the tabs from here
const STALLED = /^stalled: no data from Ollama for (\d+) s/;

const cards = new Map(); // id -> {card, renderedSeq, renderedLogs}
const dirty = new Set();
let frame = 0; // a pending requestAnimationFrame (or, in a hidden tab, setTimeout) of flush
let frameIsTimer = false;

function schedule(id) {
  dirty.add(id);
  if (frame) return;
  // A hidden tab gets no animation frames, and its title must still move on.
  frame = document.hidden ? setTimeout(flush, 250) : requestAnimationFrame(flush);
  frameIsTimer = document.hidden;
}

/** One DOM pass per frame whatever the number of events that arrived. */
function flush() {
  frame = 0;
  const ids = [...dirty];
  dirty.clear();
  for (const id of ids) {
    const entry = getEntry(id);
    if (!entry) continue;
    if (groupOf(id) && getEntry(groupOf(id))) dropCard(id); // shown in its group's card
    else renderCard(entry);
  }
  renderQueue();
  renderSummary();
}

function renderSummary() {
  const { count, active, running, queued, paused, scheduled, percent } = summary();
  setText($("#stat-pulls"), String(active));
  show($("#ops-empty"), count === 0);
  const finished = $("#op-done-list").childElementCount;
  setText($("#finished-count"), "(" + finished + ")");
  show($("#ops-finished"), finished > 0);
  // The tab title tells a user in another tab how far the pulls are.
  let title = TITLE;
  if (running) title = Math.floor(percent) + "% · " + TITLE;
  else if (queued) title = "queued · " + TITLE;
  else if (scheduled) title = "scheduled · " + TITLE;
  else if (paused) title = "paused · " + TITLE;
  else if (active) title = "queued · " + TITLE;
  if (document.title !== title) document.title = title;
}

/** Each queued card's place in the queue, and when it is likely to start. */
function renderQueue() {
  for (const { id, place, startsIn } of queue()) {
    const view = cards.get(id);
    if (!view) continue;
    let when = "";
    if (startsIn === 0) when = "starting";
    else if (startsIn !== null) when = "likely to start in " + humanDuration(startsIn);
    setText($(".op-queue", view.card), ordinal(place) + " in queue" + (when ? " · " + when : ""));
    view.card.dataset.queuePlace = String(place);
  }
}

function newCard(entry) {
  const fragment = $("#op-template").content.cloneNode(true);
  const card = fragment.querySelector(".op-card");
  const id = entry.op.id;
  card.dataset.opId = id;
  const details = $(".op-log", card);
  details.addEventListener("toggle", () => {
    if (details.open && !getEntry(id).logFetched) readLog(getEntry(id), card);
  });
  return card;
}

/** Fetch the whole log; a failure is told on the card. */
async function readLog(entry, card) {
  try {
    await fetchLog(entry.op);
  } catch (err) {
    setText($(".op-log-note", card), "log unavailable: " + err.message);
  }
}

/**
 * Active operations in the list, finished ones folded away below it (on a phone the fold
 * starts closed, so the tabs are not pushed down by old cards); newest first in each, as
 * GET /progress lists them. A card that ends moves to the fold: the same element, so what
 * refers to it stays valid.
 */
function placeCard(card, op) {
  const list = FINAL.has(op.status) ? $("#op-done-list") : $("#op-list");
  if (card.parentElement !== list) insertCard(card, op, list);
}

function insertCard(card, op, list) {
  const created = Date.parse(op.created_at) || Date.now();
  for (const other of list.children) {
    const otherEntry = getEntry(other.dataset.opId);
    const otherCreated = otherEntry ? Date.parse(otherEntry.op.created_at) || 0 : 0;
    if (created > otherCreated) {
      list.insertBefore(card, other);
      return;
    }
  }
  list.append(card);
}

function dropCard(id) {
  const view = cards.get(id);
  cards.delete(id);
  if (view) view.card.remove();
}

/**
 * A group's children, a line each: host, kind and model, percent, status, and why one
 * did not succeed. Each child's own latest state where the page has it (its events come
 * more often than the group's), else the outcome the group lists.
 */
function renderChildren(op, card) {
  const list = $(".op-children", card);
  const children = op.kind === KIND.GROUP ? op.children || [] : [];
  show(list, children.length > 0);
  if (!children.length) return;
  const lines = children.map((listed) => {
    const entry = getEntry(listed.id);
    const child = entry ? Object.assign({}, listed, entry.op, { host: listed.host }) : listed;
    const done = child.status === STATUS.SUCCEEDED ? 100 : Math.floor(Number(child.percent) || 0);
    const why = child.status !== STATUS.SUCCEEDED && FINAL.has(child.status) ? child.error || child.message : "";
    return el(
      "li",
      { className: "op-child", dataset: { childId: child.id, status: child.status, host: child.host } },
      el("span", { className: "op-child-name", text: child.host + " · " + child.kind + " " + child.model }),
      el("span", { className: "op-child-percent", text: done + "%" }),
      el("span", { className: "op-child-status", text: child.status }),
      el("span", { className: "op-child-why", text: why && why !== child.status ? why : "" }),
    );
  });
  list.replaceChildren(...lines);
}

/** "01:00" within the next day, else "Dec 3, 01:00": in the browser's own time zone. */
function clockText(iso) {
  const when = new Date(iso);
  if (isNaN(when)) return "";
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (Math.abs(when - Date.now()) < 20 * 3600 * 1000) return time;
  return when.toLocaleDateString([], { month: "short", day: "numeric" }) + ", " + time;
}

/** When a scheduled operation starts, or a window-paused one resumes; else "". */
function whenText(op) {
  if (!op.starts_at) return "";
  if (op.status === STATUS.SCHEDULED) return "starts at " + clockText(op.starts_at);
  if (op.status === STATUS.PAUSED && op.paused_by === HOLD.WINDOW) {
    return "resumes at " + clockText(op.starts_at);
  }
  return "";
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
  let view = cards.get(op.id);
  if (!view) {
    view = { card: newCard(entry), renderedSeq: 0, renderedLogs: 0 };
    cards.set(op.id, view);
  }
  const card = view.card;
  placeCard(card, op);
  const running = op.status === STATUS.RUNNING;
  const queued = op.status === STATUS.QUEUED;
  card.dataset.status = op.status;
  card.dataset.percent = String(op.percent ?? 0);
  card.dataset.kind = op.kind || "pull";
  const group = op.kind === KIND.GROUP;
  setText($(".op-model", card), op.model);
  // A group's host is its hosts' names, comma-separated.
  setText($(".op-host", card), group ? "on " + op.host.split(",").join(", ") : manyHosts() ? "on " + op.host : "");
  setText($(".op-kind", card), op.kind);
  setText($(".op-status", card), op.status);
  const percent = Math.max(0, Math.min(100, Number(op.percent) || 0));
  const bar = $(".bar", card);
  bar.setAttribute("aria-valuenow", percent.toFixed(1));
  bar.setAttribute("aria-label", (op.kind || "pull") + " of " + op.model);
  bar.classList.toggle("animated", running || queued);
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
  // The phase an operation reached says nothing once it stopped ("downloading" on a
  // cancelled card read as if it still were); the status and message say how it ended.
  // A paused one is not "downloading" either.
  setText($(".op-phase", card), running || queued ? op.phase || "" : "");
  if (!queued) {
    setText($(".op-queue", card), whenText(op));
    delete card.dataset.queuePlace;
  }
  if (op.paused_by) card.dataset.pausedBy = op.paused_by;
  else delete card.dataset.pausedBy;
  const result = resultText(op);
  const resultBox = $(".op-result", card);
  setText(resultBox, result);
  if (op.result) card.dataset.result = op.result.status;
  else delete card.dataset.result;
  // The message repeats what the numbers, the stall or the result already say.
  const repeats = result || stalled || (op.error && op.message === op.error) ||
    (queued && op.message === STATUS.QUEUED) || // the queue place says it
    op.status === STATUS.SCHEDULED; // "starts at" says it
  const message = repeats ? "" : op.message;
  setText($(".op-message", card), message || "");
  const error = $(".op-error", card);
  // A group's error repeats what its children's lines say, each beside its host.
  setText(error, group ? "" : op.error || "");
  show(error, Boolean(op.error) && !group);
  renderChildren(op, card);
  $('[data-action="cancel"]', card).hidden = !ACTIVE.has(op.status) || Boolean(op.cancel_requested);
  // A running pull being paused shows neither: "pausing" says it.
  $('[data-action="pause"]', card).hidden =
    !PAUSABLE.has(op.status) || Boolean(op.cancel_requested) || Boolean(op.paused_by);
  $('[data-action="resume"]', card).hidden = !(op.status === STATUS.PAUSED && op.paused_by === HOLD.USER);
  // A group is started again by what made it (a pull on all hosts, an apply), not here;
  // a delete is no pull to retry.
  $('[data-action="retry"]', card).hidden =
    !RETRYABLE.has(op.status) || group || op.kind === KIND.DELETE;
  $('[data-action="dismiss"]', card).hidden = !FINAL.has(op.status);
  renderSpark(entry, card);
  renderLog(entry, view);
}

/** A small line of the last speeds this page saw, oldest left; hidden once it ends. */
function renderSpark(entry, card) {
  const box = $(".op-spark", card);
  const speeds = entry.speeds;
  const visible = entry.op.status === STATUS.RUNNING && speeds.length > 1;
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

function renderLog(entry, rendered) {
  const card = rendered.card;
  const view = $(".log-view", card);
  const lines = logLines(entry);
  // The server's count: the page may have seen only the lines since it loaded.
  const count = typeof entry.op.log_count === "number" ? entry.op.log_count : lines.length;
  setText($(".op-log-count", card), count ? "(" + count + ")" : "");
  const last = lines.length ? lines[lines.length - 1].seq : 0;
  if (rendered.renderedSeq === last && rendered.renderedLogs === lines.length) return;
  const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
  // Append in place when only newer lines came; rebuild when a fetched log filled a gap.
  const previous = rendered.renderedSeq || 0;
  const onlyNewer = rendered.renderedLogs > 0 && lines.length - rendered.renderedLogs ===
    lines.filter((l) => l.seq > previous).length;
  if (onlyNewer) {
    for (const line of lines) if (line.seq > previous) view.append(logLine(line));
    while (view.childElementCount > LOG_KEEP) view.firstElementChild.remove();
  } else {
    view.replaceChildren(...lines.map(logLine));
  }
  rendered.renderedSeq = last;
  rendered.renderedLogs = lines.length;
  if (atBottom) view.scrollTop = view.scrollHeight;
}

function logLine(line) {
  const time = line.time ? new Date(line.time).toLocaleTimeString() : "";
  return el("div", { className: "log-line" }, el("time", { text: time }), " ", el("span", { text: line.text }));
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
  on("op-changed", schedule);
  on("op-removed", (id) => {
    const view = cards.get(id);
    cards.delete(id);
    if (view) view.card.remove();
    renderQueue();
    renderSummary();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden && frame && !frameIsTimer) {
      cancelAnimationFrame(frame);
      frame = setTimeout(flush, 0);
      frameIsTimer = true;
    }
  });
  renderSummary();
  // Wide screens show the pull panel beside the tabs: there the fold starts open.
  $("#ops-finished").open = window.matchMedia(WIDE).matches;
  $("#clear-finished").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    await clearFinished();
    button.disabled = false;
  });
  $(".ops-panel").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const card = button.closest("[data-op-id]");
    const entry = getEntry(card.dataset.opId);
    if (!entry) return;
    const op = entry.op;
    const note = $(".op-log-note", card);
    const action = button.dataset.action;
    if (action === "copy-log") {
      if (!entry.logFetched) await readLog(entry, card);
      setText(note, (await copyText(logText(entry))) ? "copied" : "copy failed");
    } else if (action === "download-log") {
      if (!entry.logFetched) await readLog(entry, card);
      const safe = String(op.model).replace(/[^A-Za-z0-9._-]+/g, "_");
      download("ollama-deck-" + safe + "-" + op.id.slice(0, 8) + ".log", logText(entry));
    } else if (action === "cancel") {
      button.disabled = true;
      try {
        await cancelOp(op);
      } catch (err) {
        setText($(".op-error", card), err.message);
        show($(".op-error", card), true);
      } finally {
        button.disabled = false;
      }
    } else if (action === "pause" || action === "resume") {
      button.disabled = true;
      try {
        await (action === "pause" ? pauseOp(op) : resumeOp(op));
      } catch (err) {
        setText($(".op-error", card), err.message);
        show($(".op-error", card), true);
      } finally {
        button.disabled = false;
      }
    } else if (action === "retry") {
      button.disabled = true;
      await retryOp(op);
      button.disabled = false;
    } else if (action === "dismiss") {
      await dismissOp(op);
    }
  });
}
