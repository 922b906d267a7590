"""Noticing at once that the client of an event stream closed its connection.

A stream that waits for events writes nothing until the next event or heartbeat (15 s),
and only a write tells a server that its client is gone: until then the closed stream
still counted as a watcher (/api/status showed them for 12-27 s) and kept its greenlet.
Under gevent (gunicorn's gevent worker, what ``ollama-deck serve`` runs) the event loop
can watch the connection instead: it turns readable when the client closes it. Then the
stream, if it is waiting, is woken with :class:`ClientGone` and ends; if it is busy
(writing, reading a replay from the database), it ends at its next wait.

Elsewhere (werkzeug's server, threaded workers) there is no such watch and a gone client
is noticed at the next write, as before.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from .services.events import ClientGone


def watch_client(environ: Mapping[str, Any]) -> ClientSocketWatch | None:
    """A watch of this request's connection, or None where the server allows none."""
    sock = environ.get("gunicorn.socket")
    if sock is None or "gevent" not in sys.modules:
        return None
    import gevent
    from gevent import socket as gevent_socket

    # A gevent socket wraps the operating system's socket, kept non-blocking: peeking at
    # that one never waits (the gevent socket's own recv would wait for data).
    raw = getattr(sock, "_sock", None)
    if not isinstance(sock, gevent_socket.socket) or raw is None:
        return None
    return ClientSocketWatch(raw, gevent.get_hub().loop, gevent.getcurrent)


class ClientSocketWatch:
    """Watches one connection from the event loop; see the module's docstring.

    Used as the ``watch`` of ``services.streams.follow``: ``start`` and ``stop`` bracket
    the stream, and the stream enters it around each wait for events.
    """

    def __init__(self, raw: Any, loop: Any, current: Callable[[], Any]) -> None:
        self._raw = raw
        self._loop = loop
        self._current = current
        self._io: Any = None
        self._waiting: Any = None  # the greenlet parked in a wait, while it is
        self.gone = False

    def start(self) -> None:
        self._io = self._loop.io(self._raw.fileno(), 1)  # 1: readable
        self._io.start(self._readable)

    def stop(self) -> None:
        io, self._io = self._io, None
        if io is not None:
            io.stop()
            io.close()

    def __enter__(self) -> ClientSocketWatch:
        if self.gone:
            raise ClientGone
        self._waiting = self._current()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._waiting = None

    def _readable(self) -> None:
        # Runs in the event loop, so it must not block: the peek does not wait.
        closed = peer_closed(self._raw)
        if closed is None:
            return  # woken for nothing: keep watching
        self._io.stop()  # closed, or the client sends data: either way watching is over
        if not closed:
            return  # a client that talks is left to the next write
        self.gone = True
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.throw(ClientGone)  # as gevent's own timeouts wake a greenlet


def peer_closed(raw: Any) -> bool | None:
    """True when the client closed (or reset) the connection of the non-blocking socket
    ``raw``, False when it sent data, None when nothing is there."""
    try:
        data = raw.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return True
    return data == b""
