"""How ``ollama-deck serve`` runs gunicorn: its settings, its worker and its process.

``serve`` checks its options and migrates the database in the process that parsed them,
then replaces that process (same pid, so signals still reach it) with a fresh interpreter
that applies gevent's monkey-patching before anything else is imported, and runs gunicorn
there. The command line had imported requests (and with it urllib3's references to the
unpatched ``ssl``); patching only in the workers, after the fork, left those references
unpatched (gevent's ``MonkeyPatchWarning``) and would have made HTTPS calls to Ollama
block the worker's event loop. It also ended workers with an ignored ``TypeError`` from
the interpreter's teardown (logging's lock, patched by gevent after the fact, outlived
gevent's own module); with the app imported after the patch, neither happens, and the
processes leave without that teardown anyway (:func:`run_from_pipe`).

The worker (:class:`DeckWorker`) is gunicorn's gevent worker with three changes. An event
stream that waits is parked (``ollama_deck.parking``): held by the event loop without a
greenlet, 2 KB where it was 20. On SIGTERM it ends the deck's event streams and the waits
of idle kept-alive connections at once, so a graceful stop no longer waits
``graceful_timeout`` for clients that never hang up (an open page made every stop take
10 s). And requests gunicorn itself refuses (request line, header section, malformed HTTP)
get the deck's JSON error shape instead of its HTML.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from http import HTTPStatus
from typing import Any
from typing import NoReturn

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

from .parking import Parker

# What the deck needs, with room: a browser sends about 20 header fields and a proxy or CDN
# adds up to a dozen; the largest is the Cookie header, which carries the cookies of every
# app on the same host name (ports do not separate cookies). gunicorn's defaults (100
# fields of 8 KB) let a client without a token make the worker read and parse ~800 KB per
# request before the deck can refuse it, at a cost that grows with the square of the
# size: 16 such clients took /api/status from 5 ms to 3.9 s (bench/header_flood.py).
# Beyond these limits gunicorn answers 431 (414 for the request line) before the app sees
# the request, after reading at most fields x (size + 2) bytes (~160 KB).
HEADER_LIMITS: dict[str, int] = {
    "limit_request_line": 4094,
    "limit_request_fields": 40,
    "limit_request_field_size": 4096,
}

# The fresh interpreter's first statements: patch, then import the deck (see above).
BOOT = (
    "from gevent import monkey; monkey.patch_all(); "
    "from ollama_deck.serving import run_from_pipe; run_from_pipe()"
)


def gunicorn_options(
    host: str, port: int, workers: int, connections: int, *, access_log: bool = True
) -> dict[str, Any]:
    """gunicorn's settings for ``serve`` (all JSON values: they cross an ``exec``)."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_connections": connections,
        # SSE responses stay open for hours; gevent workers are not killed by this.
        "timeout": 60,
        # Streams end at SIGTERM (DeckWorker), so this bounds only requests in flight.
        "graceful_timeout": 10,
        "accesslog": "-" if access_log else None,
        "proc_name": "ollama-deck",
        **HEADER_LIMITS,
    }


def exec_gunicorn(options: dict[str, Any], config: dict[str, Any]) -> NoReturn:
    """Replace this process with gunicorn running ``options``, its workers building their
    apps from ``config``. Both travel through a pipe, not the command line, where any
    user could read a database URL's password."""
    read_end, write_end = os.pipe()
    # A few hundred bytes: far below the pipe's buffer, so this write never blocks.
    spec = {"options": options, "config": config, "argv": sys.argv}
    os.write(write_end, json.dumps(spec).encode())
    os.close(write_end)
    os.set_inheritable(read_end, True)
    sys.stdout.flush()
    sys.stderr.flush()
    # -P: the working directory stays off sys.path, as it is for the console script.
    os.execv(sys.executable, [sys.executable, "-P", "-c", BOOT, str(read_end)])


def run_from_pipe() -> NoReturn:
    """The fresh interpreter's entry: read what ``exec_gunicorn`` sent and serve.

    Both the arbiter and each worker end here (a worker's exit unwinds the stack it was
    forked in), and leave without the interpreter's teardown: tearing down the app's
    modules took 0.4-0.7 s per process on a loaded 2-core machine, twice per stop, and
    nothing needs it once gunicorn and the deck have shut down.
    """
    with os.fdopen(int(sys.argv[1]), "rb") as pipe:
        spec = json.load(pipe)
    # The command line that started serve: what gunicorn re-executes on SIGUSR2.
    sys.argv = spec["argv"]
    try:
        run_gunicorn(spec["options"], spec["config"])
        status = 0
    except SystemExit as leaving:
        status = exit_status(leaving)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def exit_status(leaving: SystemExit) -> int:
    """The status a ``SystemExit`` asks for, as the interpreter would exit with it."""
    if leaving.code is None or isinstance(leaving.code, int):
        return leaving.code or 0
    print(leaving.code, file=sys.stderr)
    return 1


def run_gunicorn(options: dict[str, Any], config: dict[str, Any]) -> None:
    """Run gunicorn in this process with ``options`` and the deck's worker; each worker
    builds its app from ``config``."""
    from gunicorn.app.base import BaseApplication

    class DeckApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # By name: gunicorn before 23 reads the setting as a string.
            self.cfg.set("worker_class", f"{__name__}.DeckWorker")
            self.cfg.set("post_worker_init", post_worker_init)
            self.cfg.set("worker_exit", worker_exit)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25.1 listens on one control socket per user by default
                # ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): a second deck of the
                # same user took it over, and stopping it deleted the first one's.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from ollama_deck import create_app

            return create_app(config)

    DeckApplication().run()


def post_worker_init(worker: Any) -> None:
    # Each worker serves, so each runs pulls from the start (resuming what a previous
    # process left) instead of waiting for its first request.
    from ollama_deck.state import setup_of

    app = worker.deck_app
    setup_of(app).activate(app)
    # Objects made at start-up live for the whole process: keep them out of the garbage
    # collector's full passes, which otherwise cause delivery spikes with many SSE watchers.
    gc.collect()
    gc.freeze()
    # Thousands of open SSE connections are thousands of long-lived generators and
    # sockets; each full pass walks them all (measured: 45-112 ms at 3,000 watchers, a stall
    # for every watcher). Young generations stay as they are; full passes become ~100x rarer.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


def worker_exit(server: Any, worker: Any) -> None:
    # Hand running pulls back to the queue so the next start resumes them at once.
    from ollama_deck import OllamaDeck

    app = getattr(worker, "deck_app", None)
    if app is not None:
        OllamaDeck.shutdown(app)
    parker = getattr(worker, "parker", None)
    if parker is not None:  # a stop that did not pass through SIGTERM's wind-down
        parker.close()


class DeckWorker(GeventWorker):
    """gunicorn's gevent worker, parking waiting streams, stopping promptly and refusing
    in JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections waiting for their next request (keep-alive), by handler greenlet.
        self._idle: dict[Any, gevent.Timeout] = {}
        self.parker = Parker(limit=self.worker_connections)
        self.deck_app: Any = None

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # The deck's app, for its start and stop; gunicorn serves it offering parking.
        app: Any = self.wsgi  # type: ignore[has-type]
        self.deck_app = app
        self.wsgi = self.parker.wrap(app)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # Out of the signal handler, as gunicorn does for SIGQUIT.
        gevent.spawn(self._wind_down)

    def _wind_down(self) -> None:
        """End what would otherwise hold the stop: event streams, which end only when the
        client leaves, and kept-alive connections waiting for a next request."""
        from ollama_deck.state import setup_of

        app = self.deck_app
        if app is not None:
            setup_of(app).end_streams()
        self.parker.close()
        loop = gevent.get_hub().loop
        for greenlet, timeout in list(self._idle.items()):
            loop.run_callback(self._end_idle_wait, greenlet, timeout)

    def _end_idle_wait(self, greenlet: Any, timeout: gevent.Timeout) -> None:
        # In the event loop: if the connection still waits, its keep-alive timeout fires
        # now (gunicorn then closes it); one that got a request meanwhile is left alone.
        if self._idle.get(greenlet) is timeout:
            greenlet.throw(timeout)

    def timeout_ctx(self) -> _IdleWait:
        return _IdleWait(self._idle, self.cfg.keepalive)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        result = super().handle_request(listener_name, req, sock, addr)
        # A turn for every other connection before this one's next request. When that
        # request is already read (pipelined, or a client quicker than the deck), gunicorn
        # parses it at once, and on SQLite nothing else makes the greenlet wait: one busy
        # connection kept the loop while others waited seconds (/healthz up to 3.6 s behind
        # 8 clients pulling). ``sleep(0)`` only runs what is ready, without polling for I/O;
        # ``idle()`` lets the loop poll first. It costs about 2 % of pulls/s at full load.
        gevent.idle()
        if not self.alive:
            # Stopping: this connection gets no next request (gunicorn decides that only
            # for requests that began after the stop, not for a stream that ended by it).
            raise StopIteration
        return result

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        # gunicorn decides the status and logs; what it would write is caught and said
        # again in the deck's shape.
        caught = _CaughtAnswer()
        super().handle_error(req, caught, addr, exc)
        status = caught.status()
        if status is None:
            return
        try:
            util.write_nonblock(client, error_answer(status, self._message(status, exc)))
        except Exception:
            self.log.debug("Failed to send error message.")

    def _message(self, status: int, exc: BaseException) -> str:
        cfg = self.cfg
        if status == 414:
            return f"the request line is longer than {cfg.limit_request_line} bytes"
        if status == 431:
            return (
                f"the request's header section is too large: at most "
                f"{cfg.limit_request_fields} fields of {cfg.limit_request_field_size} "
                "bytes each"
            )
        if status >= 500:
            return HTTPStatus(status).phrase
        return f"the request is not valid HTTP: {str(exc)[:200]}"


ERROR_CODES = {
    400: "malformed_request",
    403: "forbidden",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
    501: "not_implemented",
}


def error_answer(status: int, message: str) -> bytes:
    """A whole HTTP response in the deck's error shape; the connection closes after it."""
    code = ERROR_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class _IdleWait:
    """gunicorn's wait for a kept-alive connection's next request (``keepalive`` seconds),
    known to the worker while it lasts so that a stop can end it early."""

    def __init__(self, idle: dict[Any, gevent.Timeout], seconds: float) -> None:
        self._idle = idle
        self._timeout = gevent.Timeout(seconds, False)  # False: it ends the wait silently

    def __enter__(self) -> None:
        self._timeout.start()
        self._idle[gevent.getcurrent()] = self._timeout

    def __exit__(self, *exc_info: Any) -> bool:
        self._idle.pop(gevent.getcurrent(), None)
        return bool(self._timeout.__exit__(*exc_info))


class _CaughtAnswer:
    """Takes the place of the client's socket while gunicorn writes an error answer."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # so gunicorn writes at once, without switching blocking modes

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> int | None:
        parts = self.data.split(b" ", 2)
        if len(parts) < 3 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return None
        return int(parts[1])
