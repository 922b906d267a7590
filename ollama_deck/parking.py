"""Event streams that wait, held by the worker's event loop instead of a greenlet each.

Under ``ollama-deck serve`` an SSE stream that has sent what it had and waits for the next
event is handed here (:class:`Parker`): gunicorn's handler ends, its greenlet with it, and
the connection stays open on a duplicate of its socket. What is left of a waiting stream
is its frames' generators, that socket and one watch of it: about 3 KB, where a greenlet
parked in the wait (its stack saved on the heap, Python's frame stack of the handler,
gunicorn's request and response) held 20 KB. One greenlet per hub (:class:`_Room`) wakes
with the hub, resumes every waiting stream's generators, which read the shared ring as
before, and writes what they yield straight to each socket, without a switch per watcher.

A stream that cannot take what it is sent at once (its client reads slowly) gets a
greenlet until that is written; a client that hangs up is noticed by the watch of its
socket, and its stream ends (counted out, as before). Everywhere else (werkzeug's server,
an app that embeds the deck under its own server) streams wait in their greenlet or
thread, as they did.
"""

from __future__ import annotations

import _socket
import logging
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from .disconnect import peer_closed
from .services.events import EventHub
from .services.streams import Park
from .services.streams import Stream
from .services.streams import Wait

# gevent is imported only where streams are parked: under the deck's worker, which runs
# on it. An app that embeds the deck may serve it without gevent's loop.

# The environ key under which the deck's worker offers parking: (parker, start_response).
PARKING = "ollama_deck.parking"
log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def parking(environ: Mapping[str, Any]) -> Park | None:
    """How this request's stream can be parked, or None where the server offers no
    parking (the stream then waits in the request's greenlet or thread)."""
    offered = environ.get(PARKING)
    if offered is None:
        return None
    parker, start_response = offered
    from gunicorn.http.wsgi import Response

    # Plain HTTP/1 only: bytes written to the socket go to the client as they are. A
    # subclass frames the body its own way (HTTP/2), a TLS socket encrypts it.
    response: Any = getattr(start_response, "__self__", None)
    if type(response) is not Response or hasattr(response.sock, "do_handshake"):
        return None

    def park(stream: Stream, position: int) -> bool:
        return parker.park(response, stream, position)

    return park


class Parker:
    """A worker's waiting streams, by hub (one per deck the worker serves)."""

    def __init__(self, limit: int | None = None) -> None:
        self._rooms: dict[int, _Room] = {}
        # The most streams parked at once (``serve --connections``): beyond it a stream
        # waits in its greenlet, which gunicorn's own bound on connections counts.
        self.limit = limit

    def wrap(self, app: WsgiApp) -> WsgiApp:
        """``app``, offering parking to its requests."""

        def offering_parking(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            environ[PARKING] = (self, start_response)
            return app(environ, start_response)

        return offering_parking

    @property
    def parked(self) -> int:
        return sum(len(room.streams) for room in self._rooms.values())

    def park(self, response: Any, stream: Stream, position: int) -> bool:
        """Take ``stream``, which waits at hub ``position``, off gunicorn's ``response``:
        True when taken (the response is then ended on gunicorn's side, without its
        closing chunk, and its socket closed there while a duplicate stays open here)."""
        hub = stream.hub
        if hub.position() > position or hub.closed:
            return False  # it has something to do now: on in the request's greenlet
        if self.limit is not None and self.parked >= self.limit:
            return False
        sock = getattr(response, "sock", None)
        raw = getattr(sock, "_sock", None)  # gevent's socket wraps the system's
        if raw is None or not getattr(response, "headers_sent", False):
            return False
        room = self._rooms.get(id(hub))
        if room is None:
            room = self._rooms[id(hub)] = _Room(hub)
        dup = _socket.socket(raw.family, raw.type, raw.proto, _socket.dup(raw.fileno()))
        dup.setblocking(False)
        if stream.watch is not None:
            stream.watch.stop()  # it watches gunicorn's socket, which is closed now
        room.take(_Parked(stream, dup, bool(response.chunked), position))
        response.chunked = False  # gunicorn's close then writes no closing chunk
        response.force_close()  # and it closes its socket instead of a next request
        return True

    def close(self) -> None:
        """End every parked stream now (the worker is stopping): each sends its closing
        chunk if it can and is counted out."""
        for room in list(self._rooms.values()):
            room.close()


class _Parked:
    """One waiting stream: its generators, its socket, where it is in the hub's ring."""

    __slots__ = ("frames", "sock", "chunked", "position", "busy", "gone", "watch")

    def __init__(self, stream: Stream, sock: Any, chunked: bool, position: int) -> None:
        self.frames = stream.frames
        self.sock = sock
        self.chunked = chunked
        self.position = position
        self.busy = False  # its generators run, or a greenlet writes what it could not take
        self.gone = False  # to be dropped once it is no longer busy
        self.watch: Any = None


class _Room:
    """The streams of one hub, and the greenlet that wakes with it."""

    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.streams: dict[_Parked, None] = {}  # insertion-ordered: the oldest served first
        self._runner: Any = None
        self._leaving: list[_Parked] = []
        self._reaper: Any = None
        import gevent

        self._loop = gevent.get_hub().loop
        self._spawn = gevent.spawn

    def take(self, parked: _Parked) -> None:
        self.streams[parked] = None
        watch = parked.watch = self._loop.io(parked.sock.fileno(), 1)  # 1: readable
        watch.start(self._readable, parked)
        if self._runner is None:
            self._runner = self._spawn(self._run)

    def _run(self) -> None:
        hub = self.hub
        seen = hub.position()
        try:
            while self.streams:
                hub.wait(seen)
                now = hub.position()
                tick = now == seen  # nothing published: a heartbeat, or the hub closed
                seen = now
                for parked in list(self.streams):
                    if parked.busy or (not tick and parked.position >= now):
                        continue  # parked after this publish, or being written to
                    self._advance(parked)
                if hub.closed:
                    return  # each stream ended in its turn (busy ones end after writing)
        finally:
            self._runner = None

    def _advance(self, parked: _Parked) -> None:
        """Resume the stream's generators until they wait again; send what they yield."""
        hub = self.hub
        chunks: list[bytes] = []
        finished = broken = False
        parked.busy = True
        try:
            while True:
                item = next(parked.frames)
                if type(item) is Wait:
                    parked.position = item.position
                    if hub.position() > item.position:
                        continue  # more came while it ran (a replay from the database)
                    break
                chunks.append(item)  # type: ignore[arg-type]
        except StopIteration:
            finished = True
        except Exception:
            log.exception("event stream failed")
            finished = broken = True
        parked.busy = False
        if parked.gone:
            self._drop(parked)
            return
        data = b"".join(chunks)
        if parked.chunked:
            data = (b"%X\r\n%s\r\n" % (len(data), data) if data else b"") + (
                b"0\r\n\r\n" if finished and not broken else b""
            )
        self._send(parked, data, finished)

    def _send(self, parked: _Parked, data: bytes, finished: bool) -> None:
        sent = 0
        if data:
            try:
                sent = parked.sock.send(data)
            except BlockingIOError:
                pass
            except OSError:  # the client has gone
                self._drop(parked)
                return
        if sent == len(data):
            if finished:
                self._drop(parked)
            return
        parked.busy = True
        self._spawn(self._flush, parked, memoryview(data)[sent:], finished)

    def _flush(self, parked: _Parked, rest: memoryview, finished: bool) -> None:
        """Write what the client could not take at once, then go back to waiting."""
        from gevent.socket import wait_write

        sock = parked.sock
        try:
            while rest:
                wait_write(sock.fileno())
                try:
                    rest = rest[sock.send(rest) :]
                except BlockingIOError:
                    continue
        except OSError:
            finished = True
        parked.busy = False
        if finished or parked.gone:
            self._drop(parked)
        elif self.hub.position() > parked.position or self.hub.closed:
            self._advance(parked)  # what was published meanwhile, or the end

    def _readable(self, parked: _Parked) -> None:
        # In the event loop, which must not block: the peek does not wait.
        closed = peer_closed(parked.sock)
        if closed is None:
            return
        parked.watch.stop()  # closed, or the client sends data: watching is over either way
        if closed:  # a client that talks is left to the next write
            self._leaving.append(parked)
            if self._reaper is None:
                self._reaper = self._spawn(self._reap)

    def _reap(self) -> None:
        # Out of the event loop: ending a stream runs its generators' cleanup.
        try:
            while self._leaving:
                self._drop(self._leaving.pop())
        finally:
            self._reaper = None

    def _drop(self, parked: _Parked) -> None:
        """End the stream: its generators' cleanup (counted out), its watch, its socket."""
        if parked.busy:
            parked.gone = True  # whoever runs it drops it when done
            return
        if parked not in self.streams:
            return  # dropped already
        del self.streams[parked]
        watch, parked.watch = parked.watch, None
        if watch is not None:
            watch.stop()
            watch.close()
        try:
            parked.frames.close()  # type: ignore[attr-defined]
        except Exception:
            log.exception("event stream failed to end")
        parked.sock.close()

    def close(self) -> None:
        for parked in list(self.streams):
            if parked in self.streams and not parked.busy:
                self._advance(parked)  # the hub is closed: the stream ends, and says so
                if parked in self.streams and not parked.busy:
                    self._drop(parked)  # it had not ended: the hub was still open
