// The operations the page knows of: one entry per operation (its latest state, the log
// lines seen, the speeds of its running states), merged by seq, and the facts derived from
// them (the summary, each queued operation's place). Changes go out as events; the cards
// are views/ops.js's business.

import { ACTIVE, FINAL, KIND, LOG_KEEP, MAX_CONCURRENT, STATUS } from "../core/config.js";
import { emit } from "../core/events.js";

const SPARK_POINTS = 60;
const ops = new Map(); // id -> {op, logs: Map(seq -> line), logFetched, speeds: [numbers]}
// A group's children (its "children" lists them) -> the group: they show inside its card.
const groupOfChild = new Map();

export const getEntry = (id) => ops.get(id);
export const hasOp = (id) => ops.has(id);
/** The group an operation is a child of (its id), or undefined. */
export const groupOf = (id) => groupOfChild.get(id);
const isGroup = (op) => op.kind === KIND.GROUP;

function entryFor(op) {
  let entry = ops.get(op.id);
  if (!entry) {
    entry = { op: op, logs: new Map(), logFetched: false, speeds: [] };
    ops.set(op.id, entry);
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
  if (isGroup(entry.op)) {
    for (const child of entry.op.children || []) {
      if (groupOfChild.get(child.id) === op.id) continue;
      groupOfChild.set(child.id, op.id);
      if (ops.has(child.id)) emit("op-changed", child.id); // its own card goes
    }
  }
  if (newer && entry.op.status === STATUS.RUNNING && typeof entry.op.speed === "number") {
    entry.speeds.push(entry.op.speed);
    if (entry.speeds.length > SPARK_POINTS) entry.speeds.shift();
  }
  emit("op-changed", op.id);
  const group = groupOfChild.get(op.id);
  if (group && ops.has(group)) emit("op-changed", group); // it shows its children live
  if (before !== op && ACTIVE.has(before.status) && FINAL.has(op.status)) {
    emit("op-finished", { op: entry.op, seen: true });
  }
  return entry;
}

/** An operation ended that the page never saw running: the model list changed all the same. */
export function finishedUnseen(op) {
  emit("op-finished", { op: op, seen: false });
}

export function removeOp(id) {
  const entry = ops.get(id);
  if (!entry) return;
  ops.delete(id);
  if (isGroup(entry.op)) {
    for (const child of entry.op.children || []) {
      if (groupOfChild.get(child.id) === id) groupOfChild.delete(child.id);
    }
  }
  emit("op-removed", id);
}

/** Keep a log line (the newest LOG_KEEP of each operation); lines of unknown ones are dropped. */
export function addLog(line) {
  const entry = ops.get(line.operation_id);
  if (!entry) return; // its card arrives with the next progress event, then its log on demand
  entry.logs.set(line.seq, line);
  if (entry.logs.size > LOG_KEEP) entry.logs.delete(entry.logs.keys().next().value);
  emit("op-changed", line.operation_id);
}

/** The whole log as GET /progress/<id>?log= gave it. */
export function setLog(id, lines) {
  const entry = ops.get(id);
  if (!entry) return;
  entry.logFetched = true;
  for (const line of lines) entry.logs.set(line.seq, line);
  emit("op-changed", id);
}

export function logLines(entry) {
  return [...entry.logs.values()].sort((a, b) => a.seq - b.seq);
}

export function logText(entry) {
  return logLines(entry).map((l) => (l.time || "") + "  " + l.text).join("\n") + "\n";
}

/**
 * Active, running, queued, paused and scheduled counts, and the running pulls' percent
 * weighted by size (or null).
 */
export function summary() {
  let active = 0;
  let running = 0;
  let queued = 0;
  let paused = 0;
  let scheduled = 0;
  let weighted = 0;
  let weights = 0;
  for (const { op } of ops.values()) {
    if (!ACTIVE.has(op.status) || isGroup(op)) continue; // a group's children count, not it
    active += 1;
    if (op.status === STATUS.QUEUED) queued += 1;
    else if (op.status === STATUS.PAUSED) paused += 1;
    else if (op.status === STATUS.SCHEDULED) scheduled += 1;
    if (op.status !== STATUS.RUNNING) continue;
    running += 1;
    // The percents (which never go back) weighted by size: a big pull counts for more.
    const weight = Number(op.total_bytes) || 1;
    weighted += weight * (Number(op.percent) || 0);
    weights += weight;
  }
  const percent = running ? Math.min(100, weighted / weights) : null;
  return { count: ops.size, active, running, queued, paused, scheduled, percent };
}

/**
 * Each queued operation's place, oldest first, and when it is likely to start: "starting"
 * while a slot is free, else the ETA of the running pull that frees one, else "".
 */
export function queue() {
  const queued = [];
  const etas = [];
  let running = 0;
  for (const entry of ops.values()) {
    if (isGroup(entry.op)) continue; // never run itself: its children wait in the queue
    if (entry.op.status === STATUS.QUEUED) queued.push(entry);
    else if (entry.op.status === STATUS.RUNNING) {
      running += 1;
      if (entry.op.eta_seconds) etas.push(Number(entry.op.eta_seconds));
    }
  }
  // The runner starts the oldest queued operation whenever a slot frees.
  queued.sort((a, b) => Date.parse(a.op.created_at) - Date.parse(b.op.created_at));
  etas.sort((a, b) => a - b);
  const free = Math.max(0, MAX_CONCURRENT - running);
  return queued.map((entry, index) => {
    const place = index + 1;
    let startsIn = null; // seconds; 0: starting now
    if (place <= free) startsIn = 0;
    else if (place - free <= etas.length) startsIn = etas[place - free - 1];
    return { id: entry.op.id, place, startsIn };
  });
}
