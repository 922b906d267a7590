// Live updates: one EventSource for every operation, polling while it is unavailable;
// both stop for good when the session ends (they would only be refused, again and again).

import { ACTIVE, PROGRESS } from "../core/config.js";
import { emit, on } from "../core/events.js";
import { sessionEnded } from "../http/http.js";
import { addLog, finishedUnseen, getEntry, upsertOp } from "../operations/operations.js";
import { loadOperations } from "./operations.js";

const POLL_EVERY_MS = 2000;
const SSE_RETRY_MS = 10000;

let source = null;
let pollTimer = 0;
let sseRetryTimer = 0;
let lastSeq = 0; // the newest event seen: a new stream resumes after it

const setLive = (mode) => emit("live-mode", mode);

export function connect() {
  clearTimeout(sseRetryTimer);
  if (sessionEnded()) return;
  if (!window.EventSource) {
    startPolling();
    return;
  }
  // A fresh EventSource has no Last-Event-ID; the query parameter resumes after a fallback.
  const url = lastSeq ? PROGRESS.stream + "?last_event_id=" + lastSeq : PROGRESS.stream;
  source = new EventSource(url);
  source.addEventListener("open", () => {
    setLive("live");
    stopPolling();
  });
  source.addEventListener("progress", (event) => onOpEvent(event));
  source.addEventListener("done", (event) => onOpEvent(event));
  source.addEventListener("log", (event) => {
    noteSeq(event);
    addLog(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    if (!source) return; // stopped meanwhile
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error): poll, and try the stream again later.
      source = null;
      startPolling();
      sseRetryTimer = setTimeout(connect, SSE_RETRY_MS);
    } else {
      startPolling(); // reconnecting by itself; keep the cards fresh meanwhile
    }
  });
}

/** Close the stream and stop polling; the badge says the page no longer updates. */
function stop() {
  clearTimeout(sseRetryTimer);
  if (source) source.close();
  source = null;
  stopPolling();
  setLive("stopped");
}

on("session-ended", stop);

function noteSeq(event) {
  const seq = parseInt(event.lastEventId, 10);
  if (seq > lastSeq) lastSeq = seq;
}

function onOpEvent(event) {
  noteSeq(event);
  const op = JSON.parse(event.data);
  const known = getEntry(op.id);
  const wasActive = known ? ACTIVE.has(known.op.status) : true;
  upsertOp(op);
  // A done event for a card we never saw active still means the model list changed.
  if (event.type === "done" && (!known || !wasActive)) finishedUnseen(op);
}

function startPolling() {
  if (pollTimer) return;
  setLive("polling");
  const tick = async () => {
    if (sessionEnded()) return;
    try {
      await loadOperations(true);
    } catch (err) {
      /* the server may be restarting; the next tick tries again */
    }
  };
  tick();
  pollTimer = setInterval(tick, POLL_EVERY_MS);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = 0;
}
