"""In-process publish/subscribe for SSE, plus the SSE wire format.

Every change an operation commits to the database is published here once, with its
frame already rendered, into one shared ring of recent events. A watcher keeps only a
cursor into the ring and sleeps on one shared wake-up Event that is swapped on every
publish, so a publish costs the same for 1 or 3,000 watchers and nobody polls the
database. A watcher that falls behind the ring re-reads what it missed from the
database (the truth); progress events of one operation are coalesced to the newest.
Heartbeats come from one ticker per hub that wakes everybody with nothing new, rather than
a timer per waiting watcher: at thousands of watchers those timers were a visible share of
the CPU.

Works with plain threads and under gevent's monkey-patching (``threading.Event`` and
``threading.Lock`` become gevent's).
"""

from __future__ import annotations

import json
import threading
from contextlib import AbstractContextManager
from contextlib import nullcontext
from typing import Any
from typing import NamedTuple

RETRY_MS = 3000


class ClientGone(Exception):
    """Raised into a stream waiting in :meth:`EventHub.wait` when its client has gone."""


UNWATCHED: AbstractContextManager[Any] = nullcontext()


class DeckEvent(NamedTuple):
    seq: int
    operation_id: str
    kind: str  # progress, log or done
    frame: bytes  # the SSE wire form, rendered once for every watcher
    final: bool  # a done event: the stream of one operation ends with it


def format_event(seq: int | None, kind: str, data: Any) -> bytes:
    """One SSE message: ``id:``, ``event:`` and a single-line JSON ``data:``."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {payload}\n\n".encode()


def make_event(seq: int, operation_id: str, kind: str, data: Any) -> DeckEvent:
    """An event with its frame rendered."""
    return DeckEvent(seq, operation_id, kind, format_event(seq, kind, data), kind == "done")


def retry_frame(milliseconds: int = RETRY_MS) -> bytes:
    """Tells EventSource how long to wait before reconnecting; sent once per stream."""
    return f"retry: {milliseconds}\n\n".encode()


def comment_frame(text: str = "keep-alive") -> bytes:
    """A comment line: ignored by EventSource, keeps proxies from closing the stream."""
    return f": {text}\n\n".encode()


class EventHub:
    """One shared ring of recent events that any number of watchers read."""

    def __init__(self, capacity: int = 4096, heartbeat_seconds: float = 15.0) -> None:
        self._capacity = capacity
        self.heartbeat_seconds = heartbeat_seconds
        self._lock = threading.Lock()  # for writers; readers take one snapshot, lock-free
        # (absolute position of the first event, the events): replaced whole on publish, so
        # a reader sees either the old or the new ring, never a half-trimmed one.
        self._ring: tuple[int, list[DeckEvent]] = (0, [])
        self._wakeup = threading.Event()
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()
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
            offset, ring = self._ring
            ring = ring + events
            self.last_seq = max(self.last_seq, events[-1].seq)
            excess = len(ring) - self._capacity
            if excess > self._capacity // 4:  # trim in batches, not on every publish
                ring = ring[excess:]
                offset += excess
            self._ring = (offset, ring)
            wakeup, self._wakeup = self._wakeup, threading.Event()
        wakeup.set()

    def _tick(self) -> None:
        while not self._closed.wait(self.heartbeat_seconds):
            with self._lock:
                wakeup, self._wakeup = self._wakeup, threading.Event()
            wakeup.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the ticker and wake every watcher one last time."""
        self._closed.set()
        with self._lock:
            wakeup = self._wakeup
        wakeup.set()

    def position(self) -> int:
        """The absolute position the next published event will take."""
        offset, ring = self._ring
        return offset + len(ring)

    def read(self, position: int) -> tuple[list[DeckEvent], int, bool]:
        """Events from ``position`` on, the new position, and whether some were lost."""
        offset, ring = self._ring
        start = position - offset
        return ring[max(start, 0) :], offset + len(ring), start < 0

    def wait(self, position: int, parked: AbstractContextManager[Any] = UNWATCHED) -> bool:
        """Sleep until something is published after ``position`` (True), or the next
        heartbeat tick (False): at most ``heartbeat_seconds``, sometimes less.

        ``parked`` is entered around the sleep alone: a watch of the client's connection
        (``ollama_deck.disconnect``) that raises :class:`ClientGone` into the sleeper
        when the client hangs up, and never while it does anything else.
        """
        wakeup = self._wakeup  # taken first, so a publish right after still wakes us
        if self.position() > position:
            return True
        if self._closed.is_set():
            return False
        if self._ticker is None:
            self._start_ticker()
        with parked:
            wakeup.wait()
        return self.position() > position

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker is None and not self._closed.is_set():
                self._ticker = threading.Thread(
                    target=self._tick, name="ollama-deck-sse-heartbeat", daemon=True
                )
                self._ticker.start()


def coalesce(events: list[DeckEvent]) -> list[DeckEvent]:
    """Keep every log and done event, but only the newest progress event per operation."""
    if len(events) < 2:
        return events
    newest: dict[str, int] = {}
    for index, item in enumerate(events):
        if item.kind == "progress":
            newest[item.operation_id] = index
    if len(newest) == sum(1 for e in events if e.kind == "progress"):
        return events
    return [e for i, e in enumerate(events) if e.kind != "progress" or newest[e.operation_id] == i]
