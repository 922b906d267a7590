// What the page knows of the server, shared by the actions (which change it) and the
// views (which read it and hear of changes through core/events.js). Operations live in
// operations/operations.js; each view keeps its own DOM bookkeeping.

export const state = {
  host: null, // the Ollama host the page manages (null: the deck's default)
  models: [],
  active: null,
  loaded: new Set(),
  reachable: null,
  downReason: null,
  stale: false,
  cachedAt: null, // when the last list seen was seen, while Ollama is down (null: never)
  role: "write", // what the session may do: "read" hides every action that changes something
  // The stored desired model set and its plan: {set, updatedAt, plan, error} (null: unread).
  drift: null,
};
