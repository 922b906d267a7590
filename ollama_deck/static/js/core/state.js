// The page's shared state: one object the modules read and change.

export const state = {
  host: null, // the Ollama host the page manages (null: the deck's default)
  ops: new Map(), // id -> {op, card, logs: Map(seq -> line), speeds: [numbers]}
  models: [],
  active: null,
  loaded: new Set(),
  reachable: null,
  downReason: null,
  stale: false,
  lastSeq: 0,
  dirty: new Set(),
  frame: 0, // a pending requestAnimationFrame (or, in a hidden tab, setTimeout) of flush
  frameIsTimer: false,
};
