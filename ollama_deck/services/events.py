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
# The kind of event that says operations were deleted (purged or forgotten): it takes a
# sequence number like any change, so a bus that lost it sees a gap, but no stream shows it.
GONE = "gone"


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


# More deletions than this in one event say "forget everything" instead of naming them.
GONE_NAMED = 1000


def gone_event(seq: int, op_ids: list[str]) -> DeckEvent:
    """The event of a deletion: its frame is the ids, comma-separated, or ``*`` for many
    (never sent to a stream)."""
    frame = ",".join(op_ids) if len(op_ids) <= GONE_NAMED else "*"
    return DeckEvent(seq, "", GONE, frame.encode(), False)


class VersionBook:
    """The newest sequence number of each operation this process has heard of.

    An operation's sequence number moves with every change of it or its log, and every
    change reaches this process's hub through its bus, in order; deletions come as
    :data:`GONE` events. So while the bus is live (``Bus.live``) the book answers "has it
    changed?" for a poll without a database read. What it does not know is read from the
    database and learned (``learn``), unless a deletion or a reset came meanwhile: the
    ``generation`` a reader took before its read tells. At ``capacity`` it starts again
    empty: forgetting only costs the next poll of each a read.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._seqs: dict[str, int] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def known(self, op_id: str) -> int | None:
        return self._seqs.get(op_id)

    def note(self, events: list[DeckEvent]) -> None:
        """Take in committed events (any order: each operation keeps its newest)."""
        with self._lock:
            seqs = self._seqs
            for event in events:
                if event.kind == GONE:
                    if event.frame == b"*":
                        seqs.clear()
                    for op_id in event.frame.decode().split(","):
                        seqs.pop(op_id, None)
                    self.generation += 1
                elif event.seq > seqs.get(event.operation_id, 0):
                    seqs[event.operation_id] = event.seq
            if len(seqs) > self.capacity:
                # Starting again is a reset: a read that began before must not put back
                # a version older than one heard meanwhile and now forgotten.
                seqs.clear()
                self.generation += 1

    def learn(self, op_id: str, seq: int, generation: int) -> None:
        """Keep what a database read found, if nothing was deleted since it began."""
        with self._lock:
            if generation == self.generation and seq > self._seqs.get(op_id, 0):
                self._seqs[op_id] = seq

    def reset(self) -> None:
        """Forget everything: the bus missed something (a gap read from the database may
        have hidden a deletion) or the tables were dropped."""
        with self._lock:
            self._seqs = {}
            self.generation += 1


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
        self.versions = VersionBook()

    def watching(self, delta: int) -> None:
        with self._lock:
            self.watchers += delta

    def publish(self, events: list[DeckEvent]) -> None:
        """Append committed events in seq order and wake every watcher."""
        if not events:
            return
        self.versions.note(events)
        last = events[-1].seq
        if any(e.kind == GONE for e in events):  # for the book only: no stream shows them
            events = [e for e in events if e.kind != GONE]
        with self._lock:
            self.last_seq = max(self.last_seq, last)
            if not events:
                return
            offset, ring = self._ring
            ring = ring + events
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
