"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that records every
POST and answers as scripted (fail the first N, redirect, go down and come back)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from ollama_deck.services.webhooks import verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # the status this receiver answered with

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["X-Ollama-Deck-Delivery"]

    def signed_by(self, secret: str) -> bool:
        return verify(secret, self.body, self.headers.get("X-Ollama-Deck-Signature"))


class Receiver:
    """``Receiver(fail_first=2)``: answers 500 to the first two POSTs, then 200.
    ``answers`` maps a path to a fixed (status, headers) answer instead."""

    def __init__(self, *, fail_first: int = 0, port: int = 0) -> None:
        self.fail_first = fail_first
        self.port = port
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = receiver._answer(self.path)
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body, status))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: nothing listens on the port until ``start`` (the same port) again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, path: str) -> tuple[int, dict[str, str]]:
        if path in self.answers:
            return self.answers[path]
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return 500, {}
        return 200, {}

    def delivered(self) -> list[Received]:
        """What it took (answered 2xx)."""
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
