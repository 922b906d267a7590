"""How committed changes reach the SSE hub of every process that serves the deck.

The store hands each committed batch of events to a bus; the bus feeds the process's
:class:`~.events.EventHub`, which SSE streams wait on. What a bus did not hear it reads from
the change feed (``services/feed.py``) it is built with. Three buses:

- ``local``: straight into this process's hub. Right only when one process serves the
  deck (``ollama-deck serve`` with one worker).
- ``poll``: one thread per process reads what committed after the last sequence number it
  saw, woken at once by this process's own commits and every ``interval`` seconds for the
  others'. One database read per process per interval, never one per watcher, and correct
  with any number of workers and no other service.
- ``redis``: every process publishes its batches to one Redis channel and one thread per
  process listens. Batches of different processes can arrive out of order (each publishes
  after its commit), so the listener releases events in sequence order: every committed
  sequence number belongs to exactly one event, so a missing number is an event on its way.
  A gap that stays open is filled from the database. A Redis that refuses connections or
  does not answer a ping in time is lost: until it is back, the process reads the database
  as the poll bus does.

Every bus delivers to the hub in increasing sequence order, which is what the streams'
``Last-Event-ID`` bookkeeping relies on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any
from typing import Protocol

from ..config import DeckSettings
from .events import DeckEvent
from .events import EventHub

log = logging.getLogger(__name__)
# Read from the database at most this many sequence numbers at a time.
FILL_PAGE = 500
JOIN_SECONDS = 5.0  # at most this long for each of a closing bus's threads


class ChangeReader(Protocol):
    """What a bus reads from the database (the truth) to fill what it did not hear: a
    :class:`~.feed.ChangeFeed`."""

    def committed_seq(self) -> int: ...

    def replay_window(self, after_seq: int, upto_seq: int) -> list[DeckEvent]: ...

    def states_since(self, after_seq: int, upto_seq: int, *, limit: int) -> list[DeckEvent]: ...


class LocalBus:
    """One process: committed events go straight into its hub."""

    name = "local"

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    def publish(self, events: list[DeckEvent]) -> None:
        self.hub.publish(events)

    def live(self) -> bool:
        """Every commit is this process's own and reaches the hub before the writer goes
        on: the hub's version book is exact."""
        return True

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class _Catcher:
    """Brings the hub up to the database: reads what committed after ``last``, in order."""

    def __init__(self, hub: EventHub, reader: ChangeReader, *, max_behind: int = 2000) -> None:
        self.hub = hub
        self.reader = reader
        self.max_behind = max_behind
        self.last = 0  # every event up to this sequence number is in the hub (or skipped)
        self.begun = False
        self.fills = 0

    def begin(self) -> None:
        """Start from what is committed now: streams read the past from the database."""
        self.last = max(self.last, self.reader.committed_seq())
        self.begun = True

    def fill(self) -> int:
        """Publish what committed after ``last``; return the new ``last``. Before
        :meth:`begin` (its read failed), begin instead: the past is not the hub's."""
        if not self.begun:
            self.begin()
            return self.last
        reader = self.reader
        upto = reader.committed_seq()
        if upto <= self.last:
            return self.last
        self.fills += 1
        # What the database gives back may hide a deletion (its rows are gone, its event
        # never came): the version book starts again.
        self.hub.versions.reset()
        start = self.last
        if upto - start > self.max_behind:
            # Far behind (a long outage): the newest state of each operation is enough.
            while True:
                page = reader.states_since(start, upto, limit=FILL_PAGE)
                if page:
                    self.hub.publish(page)
                    start = page[-1].seq
                if len(page) < FILL_PAGE:
                    break
        else:
            while start < upto:
                end = min(start + FILL_PAGE, upto)
                page = reader.replay_window(start, end)
                if page:
                    self.hub.publish(page)
                start = end
        self.last = upto
        return upto


class PollBus:
    """Several processes, no other service: one database read per process per interval."""

    name = "poll"

    def __init__(self, hub: EventHub, reader: ChangeReader, *, interval: float = 0.5) -> None:
        self.hub = hub
        self.interval = interval
        self._catcher = _Catcher(hub, reader)
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, events: list[DeckEvent]) -> None:
        self._wake.set()  # our own commit: read it now rather than at the next tick

    def live(self) -> bool:
        """Other processes' commits arrive a tick late: polls read the database."""
        return False

    def start(self) -> None:
        if self._thread is not None:
            return
        self._catcher.begin()
        self._thread = threading.Thread(target=self._run, name="ollama-deck-bus", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self._catcher.fill()
            except Exception as exc:  # noqa: BLE001 - the database may be down; try next tick
                log.warning("ollama-deck: reading new events failed: %s", exc)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        _join([self._thread])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "interval": self.interval, "reads": self._catcher.fills}


class RedisBus:
    """Several processes or machines: events through one Redis channel, in sequence order.

    Redis's health is checked, not assumed: the listener pings it every ``ping_interval``
    and a Redis that does not answer within ``liveness_timeout`` (stopped, hung, behind a
    dead network) counts as lost, like one that refuses connections; from ``gap_wait``
    after an unanswered ping the database is read already. While it is lost,
    ``connected`` says so and events come from the database as with the poll bus: every
    ``fallback_interval``, and at once for this process's own commits, while the listener
    tries Redis again with backoff.
    """

    name = "redis"

    def __init__(
        self,
        hub: EventHub,
        reader: ChangeReader,
        url: str,
        channel: str,
        *,
        gap_wait: float = 0.25,
        safety_interval: float = 2.0,
        fallback_interval: float = 0.5,
        ping_interval: float = 0.5,
        liveness_timeout: float = 1.0,
    ) -> None:
        self.hub = hub
        self.url = url
        self.channel = channel
        self.gap_wait = gap_wait  # how long a missing sequence number may be on its way
        self.safety_interval = safety_interval  # how often the database is asked anyway
        self.fallback_interval = fallback_interval  # database reads while Redis is lost
        self.ping_interval = ping_interval
        self.liveness_timeout = liveness_timeout  # a ping unanswered this long: Redis is lost
        self._catcher = _Catcher(hub, reader)
        self._pending: dict[int, DeckEvent] = {}
        self._gap_since: float | None = None
        # Serialises the listener and the fallback reader: the hub gets events in order.
        self._deliver = threading.Lock()
        # The newest sequence number this process committed, and since when the hub
        # lacks it: Redis echoes our own batches back, so one that stays away is a sign.
        self._own_seq = 0
        self._own_since: float | None = None
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._wake = threading.Event()  # our own commit while Redis is lost: read it now
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connected = False
        self.error: str | None = "not connected yet"
        self.received = 0
        self.last_seen: float | None = None  # when Redis last answered (monotonic)

    # -- publishing (runner and request threads) ----------------------------------

    def publish(self, events: list[DeckEvent]) -> None:
        """Queue a committed batch for Redis; never blocks a writer on the network."""
        # Our own polls see our own commits at once, not when Redis echoes them back.
        self.hub.versions.note(events)
        if events:
            newest = max(e.seq for e in events)
            if newest > self._own_seq:
                self._own_seq = newest
                if self._own_since is None:
                    self._own_since = time.monotonic()
        if not self.connected:
            self._wake.set()  # the fallback reader brings it to our watchers now
            return  # listeners elsewhere read the database too; nothing piles up here
        payload = [[e.seq, e.operation_id, e.kind, e.frame.decode()] for e in events]
        self._outbox.put(json.dumps(payload, separators=(",", ":")).encode())

    def _send(self) -> None:
        import redis

        client = redis.Redis.from_url(
            self.url,
            socket_timeout=self.liveness_timeout,
            socket_connect_timeout=self.liveness_timeout,
        )
        while True:
            message = self._outbox.get()
            if message is None:
                client.close()
                return
            if not self.connected:
                continue  # lost meanwhile: listeners read the database
            try:
                client.publish(self.channel, message)
            except redis.RedisError as exc:
                # Not lost: it is committed, and listeners fill gaps from the database.
                log.warning("ollama-deck: publishing to Redis failed: %s", exc)

    def live(self) -> bool:
        """Redis answered lately and no sequence number is missing: the hub has heard
        every commit but those still on their way (milliseconds), as the streams have."""
        seen = self.last_seen
        return (
            self.connected
            and self._gap_since is None
            and seen is not None
            and time.monotonic() - seen < self.ping_interval + self.gap_wait
        )

    # -- listening (one thread) and the fallback (another) -------------------------

    def start(self) -> None:
        if self._threads:
            return
        for target, name in (
            (self._send, "send"),
            (self._listen, "listen"),
            (self._fallback, "fallback"),
        ):
            thread = threading.Thread(target=target, name=f"ollama-deck-bus-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _listen(self) -> None:
        import redis

        backoff = 0.5
        while not self._closed.is_set():
            pubsub = None
            try:
                # Short socket timeouts: connecting to a hung Redis must fail in about the
                # liveness timeout too, not block the listener for long.
                client = redis.Redis.from_url(
                    self.url,
                    socket_timeout=self.liveness_timeout,
                    socket_connect_timeout=self.liveness_timeout,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                if not self.connected:
                    log.info("ollama-deck: listening for events on Redis %s", self.channel)
                self.last_seen = time.monotonic()
                with self._deliver:
                    self._catch_up()  # whatever committed while we were not listening
                    self.connected, self.error, backoff = True, None, 0.5
                self._follow(pubsub)
            except redis.RedisError as exc:
                if self.connected:
                    log.warning("ollama-deck: lost Redis (%s); reading the database meanwhile", exc)
                self.connected, self.error = False, str(exc) or type(exc).__name__
                self._wake.set()  # the fallback reader takes over at once
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 - closing a broken connection
                        pass

    def _follow(self, pubsub: Any) -> None:
        import redis

        last_check = last_ping = time.monotonic()
        ping_sent: float | None = None
        wait = min(self.gap_wait, self.safety_interval, self.ping_interval)
        while not self._closed.is_set():
            message = pubsub.get_message(timeout=wait)
            now = time.monotonic()
            if message is not None:
                self.last_seen, ping_sent = now, None  # anything from Redis: it is alive
                if message.get("type") == "message":
                    self.received += 1
                    with self._deliver:
                        self._offer(_decode(message["data"]))
            if ping_sent is not None and now - ping_sent >= self.liveness_timeout:
                raise redis.ConnectionError(
                    f"Redis did not answer a ping within {self.liveness_timeout:g} s"
                )
            if ping_sent is None and now - last_ping >= self.ping_interval:
                pubsub.ping()
                ping_sent = last_ping = now
            own_late = self._own_since is not None and now - self._own_since >= self.gap_wait
            # A ping unanswered for as long as a gap may stay open: Redis may be gone, so
            # the database is read meanwhile, until the pong or the liveness timeout.
            suspect = ping_sent is not None and now - ping_sent >= self.gap_wait
            gap = self._gap_since is not None and now - self._gap_since >= self.gap_wait
            if gap or own_late or suspect:
                self._safe_fill()  # a gap, our own batch not echoed back, a silent Redis
            elif now - last_check >= self.safety_interval:
                # A batch whose publish failed, and nothing after it to reveal the gap.
                last_check = now
                self._safe_fill()

    def _fallback(self) -> None:
        """While Redis is lost, bring the hub up to the database as the poll bus does."""
        while not self._closed.is_set():
            self._wake.wait(self.fallback_interval)
            self._wake.clear()
            if not self.connected and not self._closed.is_set():
                self._safe_fill()

    def _offer(self, events: list[DeckEvent]) -> None:
        """Release events in sequence order; hold the rest until their turn comes.

        Called with ``_deliver`` held."""
        last = self._catcher.last
        for event in events:
            if event.seq > last:
                self._pending[event.seq] = event
        ready = []
        while last + 1 in self._pending:
            last += 1
            ready.append(self._pending.pop(last))
        if ready:
            self.hub.publish(ready)
            self._catcher.last = last
        if self._pending:
            if self._gap_since is None:
                self._gap_since = time.monotonic()
        else:
            self._gap_since = None
        if self._own_since is not None and last >= self._own_seq:
            self._own_since = None

    def _catch_up(self) -> None:
        self._fill()  # or, the first time, begin from what is committed now

    def _safe_fill(self) -> None:
        with self._deliver:
            self._fill()

    def _fill(self) -> None:
        """Read what the hub lacks from the database (``_deliver`` held)."""
        try:
            last = self._catcher.fill()
        except Exception as exc:  # noqa: BLE001 - the database may be down too
            log.warning("ollama-deck: reading missed events failed: %s", exc)
            return
        self._pending = {s: e for s, e in self._pending.items() if s > last}
        self._gap_since = None
        self._offer([])  # what was waiting behind the gap

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._outbox.put(None)
        _join(self._threads)

    def describe(self) -> dict[str, Any]:
        """The bus as it is now: ``connected`` only while Redis answers its pings, and
        ``via`` how events reach this process's watchers (``redis`` or ``database``)."""
        seen = self.last_seen
        return {
            "name": self.name,
            "channel": self.channel,
            "connected": self.connected,
            "via": "redis" if self.connected else "database",
            "error": self.error,
            "last_seen_seconds": None if seen is None else round(time.monotonic() - seen, 1),
            "received": self.received,
            "database_reads": self._catcher.fills,
        }


def _join(threads: Sequence[threading.Thread | None]) -> None:
    """Wait (briefly) for the bus's threads to end: a read of the database that a closed
    deck still runs would meet whatever its owner does next (a test's DROP SCHEMA met one
    in a deadlock). Each wakes within a fraction of a second once closed."""
    for thread in threads:
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_SECONDS)


def _decode(data: bytes) -> list[DeckEvent]:
    return [
        DeckEvent(seq, op_id, kind, frame.encode(), kind == "done")
        for seq, op_id, kind, frame in json.loads(data)
    ]


def channel_for(database_url: str) -> str:
    """One channel per database: decks that share a Redis but not a database never mix."""
    digest = hashlib.sha1(database_url.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"ollama-deck:events:{digest}"


def make_bus(
    settings: DeckSettings, hub: EventHub, feed: ChangeReader, database_url: str
) -> LocalBus | PollBus | RedisBus:
    """The bus the settings ask for (checked when the deck started)."""
    if settings.bus == "redis":
        assert settings.redis_url is not None  # DeckSettings refuses redis without a URL
        return RedisBus(
            hub,
            feed,
            settings.redis_url,
            channel_for(database_url),
            fallback_interval=settings.poll_seconds,
        )
    if settings.bus == "poll":
        return PollBus(hub, feed, interval=settings.poll_seconds)
    return LocalBus(hub)
