// The page's event bus: how the layers above tell each other what changed without
// importing each other. A view never imports another view; it emits or listens here.
//
// Events (detail in parentheses):
//   op-changed (id)              an operation's state, log or speed moved on
//   op-removed (id)              an operation was dismissed
//   op-finished ({op, seen})     an operation ended; seen: the page watched it run
//   models-changed (answer)      GET /api/models answered (state.models, state.stale set)
//   models-failed (message)      it did not
//   active-changed ({preferActive})  state.active changed
//   loaded-changed ()            state.loaded changed
//   status-changed (status)      state.reachable / state.downReason changed
//   host-label ({name, url})     the Ollama host the page manages, as the header shows it
//   live-mode (mode)             "live" (EventSource) or "polling"
//   notice (message | null)      a short error to show near the pull box; null hides it
//   host-selected (name)         the user picked another Ollama host
//   tab-selected (name)          a tab was selected
//   open-details (model)         show the details drawer of a model
//   token-needed ()              the server wants the access token
//   session-known ({role, token}) the session's role ("read" or "write") and token name
//   drift-changed ()             state.drift changed (the stored set, its plan)

const bus = new EventTarget();

export function emit(name, detail) {
  bus.dispatchEvent(new CustomEvent(name, { detail: detail }));
}

/** Call ``handler(detail)`` on each ``name`` event; returns a function that stops it. */
export function on(name, handler) {
  const listener = (event) => handler(event.detail);
  bus.addEventListener(name, listener);
  return () => bus.removeEventListener(name, listener);
}
