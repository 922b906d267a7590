"""The SSE stream of one operation or of all of them, as an iterator of byte chunks."""

from __future__ import annotations

from collections.abc import Iterator

from .events import coalesce
from .events import comment_frame
from .events import EventHub
from .events import retry_frame
from .store import OperationStore


def follow(
    store: OperationStore,
    hub: EventHub,
    *,
    op_id: str | None = None,
    last_event_id: int | None = None,
) -> Iterator[bytes]:
    """Yield SSE frames: first what the client lacks, then every change as it happens.

    Without ``last_event_id`` the client gets the current state (of the operation, or of
    every active one); with it, everything after that id, from the database. Then it
    follows the in-process hub: no database reads while it waits. A stream of one
    operation ends after that operation's final (``done``) event. A client that went away is
    noticed at the next write, a heartbeat at the latest, and its generator is closed.
    """
    hub.watching(1)
    try:
        yield from _frames(store, hub, op_id, last_event_id)
    finally:  # the server closes the generator when the client has gone
        hub.watching(-1)


def _frames(
    store: OperationStore,
    hub: EventHub,
    op_id: str | None,
    last_event_id: int | None,
) -> Iterator[bytes]:
    yield retry_frame()
    # The hub position is taken before the database read, so nothing committed after the
    # read can be missed; what both hold is skipped by sequence number.
    position = hub.position()
    if last_event_id is None:
        events, covered = store.current_events(op_id)
    else:
        events, covered = store.replay(last_event_id, op_id)
    sent = covered
    if events:
        yield b"".join(e.frame for e in events)
        if op_id is not None and events[-1].final:
            return
    while True:
        if not hub.wait(position):
            if hub.closed:  # the app is shutting down
                return
            yield comment_frame()
            continue
        events, position, lost = hub.read(position)
        if lost:  # fell behind the ring: the database has the rest
            position = hub.position()
            events, covered = store.replay(sent, op_id)
        else:
            covered = sent
        chunk = []
        finished = False
        for event in coalesce(events):
            if event.seq <= sent or (op_id is not None and event.operation_id != op_id):
                continue
            chunk.append(event.frame)
            sent = event.seq
            if op_id is not None and event.final:
                finished = True
                break
        sent = max(sent, covered)
        if chunk:
            yield b"".join(chunk)
        if finished:
            return
