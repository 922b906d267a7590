"""In-process publish/subscribe for SSE, plus the SSE wire format.

Every change an operation commits to the database is published here once, with its
frame already rendered, into one shared ring of recent events. A watcher keeps only a
cursor into the ring and sleeps on one shared wake-up Event that is swapped on every
publish, so a publish costs the same for 1 or 3,000 watchers and nobody polls the
database. A watcher that falls behind the ring re-reads what it missed from the
database (the truth); progress events of one operation are coalesced to the newest.

Works with plain threads and under gevent's monkey-patching (``threading.Event`` and
``threading.Lock`` become gevent's).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from typing import NamedTuple

RETRY_MS = 3000


class DeckEvent(NamedTuple):
    seq: int
    operation_id: str
    kind: str  # progress, log or done
    frame: bytes  # the SSE wire form, rendered once for every watcher

    @property
    def final(self) -> bool:
        return self.kind == "done"


def format_event(seq: int | None, kind: str, data: Any) -> bytes:
    """One SSE message: ``id:``, ``event:`` and a single-line JSON ``data:``."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {payload}\n\n".encode()


def make_event(seq: int, operation_id: str, kind: str, data: Any) -> DeckEvent:
    """An event with its frame rendered."""
    return DeckEvent(seq, operation_id, kind, format_event(seq, kind, data))


def retry_frame(milliseconds: int = RETRY_MS) -> bytes:
    """Tells EventSource how long to wait before reconnecting; sent once per stream."""
    return f"retry: {milliseconds}\n\n".encode()


def comment_frame(text: str = "keep-alive") -> bytes:
    """A comment line: ignored by EventSource, keeps proxies from closing the stream."""
    return f": {text}\n\n".encode()


class EventHub:
    """One shared ring of recent events that any number of watchers read."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._events: list[DeckEvent] = []
        self._offset = 0  # absolute position of _events[0]
        self._wakeup = threading.Event()
        self.last_seq = 0
        self.watchers = 0  # open SSE streams in this process, for /api/status

    def watching(self, delta: int) -> None:
        with self._lock:
            self.watchers += delta

    def publish(self, events: list[DeckEvent]) -> None:
        """Append committed events in seq order and wake every watcher."""
        if not events:
            return
        with self._lock:
            self._events.extend(events)
            self.last_seq = max(self.last_seq, events[-1].seq)
            excess = len(self._events) - self._capacity
            if excess > self._capacity // 4:  # trim in batches, not on every publish
                del self._events[:excess]
                self._offset += excess
            wakeup, self._wakeup = self._wakeup, threading.Event()
        wakeup.set()

    def position(self) -> int:
        """The absolute position the next published event will take."""
        with self._lock:
            return self._offset + len(self._events)

    def read(self, position: int) -> tuple[list[DeckEvent], int, bool]:
        """Events from ``position`` on, the new position, and whether some were lost."""
        with self._lock:
            start = position - self._offset
            lost = start < 0
            events = self._events[max(start, 0) :]
            return events, self._offset + len(self._events), lost

    def wait(self, position: int, timeout: float) -> bool:
        """Sleep until something is published after ``position``, or ``timeout``."""
        wakeup = self._wakeup  # taken first, so a publish right after still wakes us
        if self.position() > position:
            return True
        return wakeup.wait(timeout)


def coalesce(events: list[DeckEvent]) -> list[DeckEvent]:
    """Keep every log and done event, but only the newest progress event per operation."""
    newest: dict[str, int] = {}
    for index, item in enumerate(events):
        if item.kind == "progress":
            newest[item.operation_id] = index
    if len(newest) == sum(1 for e in events if e.kind == "progress"):
        return events
    return [e for i, e in enumerate(events) if e.kind != "progress" or newest[e.operation_id] == i]
