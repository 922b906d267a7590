"""The SSE stream of one operation or of all of them, as an iterator of byte chunks."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from typing import NamedTuple
from typing import Protocol

from .events import ClientGone
from .events import coalesce
from .events import comment_frame
from .events import DeckEvent
from .events import EventHub
from .events import retry_frame
from .events import UNWATCHED
from .feed import ChangeFeed
from .feed import Which

# Sequence numbers (so at most this many events) read from the database at a time.
REPLAY_PAGE = 100


class Wait(NamedTuple):
    """What the frames of ``follow`` yield when they have nothing to send: resume them
    once the hub has moved past ``position`` (they send what is new) or has ticked (they
    send a heartbeat)."""

    position: int


class Park(Protocol):
    """Takes a stream that waits, so that no greenlet or thread holds it meanwhile
    (``ollama_deck.parking``): True when it took it, and the server's iteration ends."""

    def __call__(self, stream: Stream, position: int) -> bool: ...


class ClientWatch(Protocol):
    """Notices that a stream's client hung up (``ollama_deck.disconnect``): started with
    the stream, stopped when it ends; entered around each wait for events, where it
    raises :class:`ClientGone` once the client is gone."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc_info: Any) -> Any: ...


def follow(
    feed: ChangeFeed,
    hub: EventHub,
    *,
    op_id: str | None = None,
    last_event_id: int | None = None,
    max_replay: int = 1000,
    watch: ClientWatch | None = None,
) -> Iterator[bytes | Wait]:
    """SSE frames: first what the client lacks, then every change as it happens.

    The stream of a group carries its children's events too (each child's bar can be
    shown), and ends with the group's own final event.

    Without ``last_event_id`` the client gets the current state (of the operation, or of
    every active one); with it, everything after that id, from the database, read page by
    page. From further back than ``max_replay`` events it gets the current state of each
    operation that changed since instead of the whole history, and on the stream of
    everything only of those a client can use: every active one and the newest
    ``max_replay`` finished ones (``GET /progress`` pages through the rest). Bounded work
    and memory per client, whatever id it sends. Then it follows the in-process hub: no
    database reads while it waits. A stream of one operation ends after that operation's
    final (``done``) event. A client that went away is noticed by ``watch`` while the
    stream waits (when the server allows one), else at the next write, a heartbeat at the
    latest; either way the stream ends and stops counting as a watcher. When the hub closes
    (the server stops), every stream ends.

    The first database read happens here, before the response starts, so a database fault
    is an error response rather than a stream that breaks.
    """
    # The hub position is taken before the database read, so nothing committed after the
    # read can be missed; what both hold is skipped by sequence number.
    position = hub.position()
    watched = Watched(op_id, frozenset(feed.family(op_id))) if op_id is not None else None
    ids = watched.ids if watched is not None else None
    if last_event_id is None:
        events, covered = feed.current_events(ids)
        pages: Iterator[list[DeckEvent]] = iter([events] if events else [])
    else:
        covered = max(feed.committed_seq(), last_event_id)
        pages = replay_pages(feed, last_event_id, covered, ids, max_replay)
    frames = _frames(feed, hub, watched, position, pages, covered, max_replay)
    return _counted(hub, frames, watch)


class Stream:
    """The iterable an SSE response hands the server: the frames of ``follow``, waiting
    for the hub where they yield :class:`Wait`.

    The wait happens in the server's greenlet or thread, parked in ``watch`` (which ends
    the stream when the client hangs up), unless ``park`` takes the stream: the worker of
    ``ollama-deck serve`` holds waiting streams in its event loop without a greenlet each,
    and then the server's iteration ends here while the stream goes on.
    """

    __slots__ = ("frames", "hub", "watch", "park", "parked")

    def __init__(
        self,
        frames: Iterator[bytes | Wait],
        hub: EventHub,
        watch: ClientWatch | None = None,
        park: Park | None = None,
    ) -> None:
        self.frames = frames
        self.hub = hub
        self.watch = watch
        self.park = park
        self.parked = False

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> bytes:
        frames = self.frames
        while True:
            item = next(frames)
            if type(item) is not Wait:
                return item  # type: ignore[return-value]
            if self.park is not None and self.park(self, item.position):
                self.parked = True
                raise StopIteration
            try:
                self.hub.wait(item.position, self.watch or UNWATCHED)
            except ClientGone:
                self.close()
                raise StopIteration from None

    def close(self) -> None:
        """Called by the server when its iteration ends: the stream ends, unless it was
        parked (then whoever took it closes it)."""
        if not self.parked:
            close = getattr(self.frames, "close", None)
            if close is not None:
                close()


@dataclass(frozen=True)
class Watched:
    """The operation a stream follows, and every id whose events it carries (a group's
    children too); it ends with the operation's own final event."""

    op_id: str
    ids: frozenset[str]

    def ends_with(self, event: DeckEvent) -> bool:
        return event.final and event.operation_id == self.op_id


def replay_pages(
    feed: ChangeFeed, after: int, upto: int, op_id: Which, max_replay: int
) -> Iterator[list[DeckEvent]]:
    """What changed in ``(after, upto]``, a page at a time (see ``follow``)."""
    with feed.frames:
        yield from _pages(feed, after, upto, op_id, max_replay)


def _pages(
    feed: ChangeFeed, after: int, upto: int, op_id: Which, max_replay: int
) -> Iterator[list[DeckEvent]]:
    start = after
    if upto - after > max_replay and op_id is None:
        # The stream of everything, from far back: what a client can use, not the whole
        # history (at 100,000 finished operations that was 56 MB to one client).
        yield from _chunked(feed.states_worth_replaying(after, upto, newest_finished=max_replay))
        return
    if upto - after > max_replay:
        while True:
            page = feed.states_since(start, upto, op_id, limit=REPLAY_PAGE)
            if page:
                yield page
            if len(page) < REPLAY_PAGE:
                return
            start = page[-1].seq
    while start < upto:
        end = min(start + REPLAY_PAGE, upto)
        page = feed.replay_window(start, end, op_id)
        if page:
            yield page
        start = end


def _chunked(events: list[DeckEvent]) -> Iterator[list[DeckEvent]]:
    for start in range(0, len(events), REPLAY_PAGE):
        yield events[start : start + REPLAY_PAGE]


def _counted(
    hub: EventHub, frames: Iterator[bytes | Wait], watch: ClientWatch | None
) -> Iterator[bytes | Wait]:
    hub.watching(1)
    if watch is not None:
        watch.start()
    try:
        yield from frames
    finally:  # the stream ended, or the server closed it when its client had gone
        if watch is not None:
            watch.stop()
        hub.watching(-1)


def _frames(
    feed: ChangeFeed,
    hub: EventHub,
    watched: Watched | None,
    position: int,
    pages: Iterator[list[DeckEvent]],
    covered: int,
    max_replay: int,
) -> Iterator[bytes | Wait]:
    # Which worker serves this stream: with several, a reader can tell them apart.
    yield retry_frame() + comment_frame(f"worker {os.getpid()}")
    sent = covered
    ids = watched.ids if watched is not None else None
    for page in pages:
        yield b"".join(e.frame for e in page)
        if watched is not None and any(watched.ends_with(e) for e in page):
            return
        time.sleep(0)  # under gevent: let other requests run between pages
    while True:
        if hub.position() <= position:
            if hub.closed:  # the server is stopping
                return
            yield Wait(position)  # resumed once woken: by a publish or a heartbeat tick
            if hub.position() <= position:
                if hub.closed:
                    return
                yield comment_frame()
                continue
        events, position, lost = hub.read(position)
        if lost:  # fell behind the ring: the database has the rest
            position = hub.position()
            upto = max(feed.committed_seq(), sent)
            for page in replay_pages(feed, sent, upto, ids, max_replay):
                chunk, sent, finished = _select(page, sent, watched)
                if chunk:
                    yield chunk
                if finished:
                    return
                time.sleep(0)
            sent = max(sent, upto)
            continue
        chunk, sent, finished = _select(coalesce(events), sent, watched)
        if chunk:
            yield chunk
        if finished:
            return


def _select(events: list[DeckEvent], sent: int, watched: Watched | None) -> tuple[bytes, int, bool]:
    """The frames of events not sent yet (and of the watched operation, if one); the new
    ``sent`` and whether the operation's final event was among them."""
    chunk = []
    for event in events:
        if event.seq <= sent or (watched is not None and event.operation_id not in watched.ids):
            continue
        chunk.append(event.frame)
        sent = event.seq
        if watched is not None and watched.ends_with(event):
            return b"".join(chunk), sent, True
    return b"".join(chunk), sent, False
