"""OllamaClient: one small class over requests, one method per Ollama endpoint.

Every failure becomes one of our exceptions, so callers never see a requests error:
refused connection -> OllamaUnavailable (503), no answer in time -> OllamaTimeout (504),
Ollama's 404 -> ModelNotFound, any other error status -> OllamaError with Ollama's text.
No other module imports requests.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from ..errors import ModelNotFound
from ..errors import OllamaError
from ..errors import OllamaTimeout
from ..errors import OllamaUnavailable

# Big reads keep a fast stream cheap; Ollama's chunked lines still arrive one by one.
STREAM_CHUNK = 64 * 1024
# Told of every request: its path, seconds until Ollama answered (or the request failed),
# and whether Ollama answered at all (services/metrics.py adds these up).
Observer = Callable[[str, float, bool], None]


def _ignore(_path: str, _seconds: float, _answered: bool) -> None:
    return None


class Stream:
    """An open NDJSON stream from Ollama: iterate it for the parsed lines.

    ``abort()`` may be called from another thread: it shuts the socket down, which wakes
    a read blocked on a silent Ollama at once (closing the socket alone would not).
    """

    def __init__(self, response: requests.Response, lines: Iterator[dict[str, Any]]) -> None:
        self._response = response
        self._lines = lines
        self.aborted = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._lines

    def abort(self) -> None:
        self.aborted = True
        connection = getattr(self._response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class OllamaClient:
    """Talks to one Ollama server at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        request_timeout: float = 30.0,
        stall_timeout: float = 120.0,
        quick_timeout: float = 3.0,
        session: requests.Session | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.observe = observer or _ignore
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        # Reads a page makes often get a short limit: their callers have a fallback.
        self.quick_timeout = min(quick_timeout, request_timeout)
        self.stall_timeout = stall_timeout
        self.session = session or requests.Session()

    # -- short requests -------------------------------------------------------------

    def version(self) -> str:
        """Ollama's version string."""
        return self._json("GET", "/api/version", quick=True).get("version", "")

    def tags(self) -> list[dict[str, Any]]:
        """Installed models, newest first, as Ollama lists them."""
        return self._json("GET", "/api/tags", quick=True).get("models") or []

    def show(self, model: str) -> dict[str, Any]:
        """Details of one installed model."""
        return self._json("POST", "/api/show", {"model": model}, quick=True)

    def ps(self) -> list[dict[str, Any]]:
        """Models loaded in memory now."""
        return self._json("GET", "/api/ps", quick=True).get("models") or []

    def delete(self, model: str) -> None:
        """Delete an installed model; ModelNotFound if there is none by that name.

        Quick: Ollama removes a manifest and unlinks blobs, so a delete that takes longer
        means a hung Ollama, and the user gets the 504 now rather than in 30 s.
        """
        self._request("DELETE", "/api/delete", {"model": model}, quick=True)

    # -- streams --------------------------------------------------------------------

    @contextmanager
    def pull(self, model: str) -> Iterator[Stream]:
        """Stream Ollama's pull of ``model``: yields a Stream of the parsed NDJSON lines.

        Leaving the ``with`` block closes the connection, which makes Ollama stop the
        download (it keeps the partial blobs, so the next pull resumes).
        """
        body = {"model": model, "stream": True}
        with self._stream("POST", "/api/pull", body, limit=self.stall_timeout) as lines:
            yield lines

    @contextmanager
    def generate(self, model: str, *, quick: bool = False, **fields: Any) -> Iterator[Stream]:
        """Stream ``/api/generate``; with no prompt it only loads (or unloads) the model.

        ``quick`` bounds every read by the quick timeout: for what Ollama answers at once
        (an unload), not for a load, which waits for the model to be read from disk.
        """
        body = {"model": model, "stream": True, **fields}
        limit = self.quick_timeout if quick else self.stall_timeout
        with self._stream("POST", "/api/generate", body, limit=limit) as lines:
            yield lines

    @contextmanager
    def chat(self, model: str, messages: list[dict[str, Any]]) -> Iterator[Stream]:
        """Stream ``/api/chat`` replies for ``messages``.

        Each read waits up to the request timeout: Ollama sends nothing until the model is
        in memory, which is slower than a quick call, but a chat is a person waiting.
        """
        body = {"model": model, "messages": messages, "stream": True}
        with self._stream("POST", "/api/chat", body, limit=self.request_timeout) as lines:
            yield lines

    # -- plumbing -------------------------------------------------------------------

    def _json(
        self, method: str, path: str, body: dict | None = None, *, quick: bool = False
    ) -> dict[str, Any]:
        response = self._request(method, path, body, quick=quick)
        try:
            data = response.json()
        except ValueError as exc:
            raise OllamaError(
                f"Ollama sent a reply that is not JSON for {path}: {response.text[:200]!r}",
                ollama_status=response.status_code,
            ) from exc
        if not isinstance(data, dict):
            raise OllamaError(f"Ollama sent an unexpected reply for {path}")
        return data

    def _request(
        self, method: str, path: str, body: dict | None = None, *, quick: bool = False
    ) -> requests.Response:
        url = self.base_url + path
        limit = self.quick_timeout if quick else self.request_timeout
        connect = min(self.connect_timeout, limit)
        started = time.perf_counter()
        try:
            response = self.session.request(method, url, json=body, timeout=(connect, limit))
        except requests.RequestException as exc:
            self.observe(path, time.perf_counter() - started, False)
            raise self._connection_error(exc, limit=limit, connect=connect) from exc
        self.observe(path, time.perf_counter() - started, True)
        self._raise_for_status(response)
        return response

    @contextmanager
    def _stream(self, method: str, path: str, body: dict, *, limit: float) -> Iterator[Stream]:
        """An NDJSON stream whose every read (the first included) waits up to ``limit``."""
        url = self.base_url + path
        connect = min(self.connect_timeout, limit)
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, url, json=body, stream=True, timeout=(connect, limit)
            )
        except requests.RequestException as exc:
            self.observe(path, time.perf_counter() - started, False)
            raise self._connection_error(exc, limit=limit, connect=connect) from exc
        self.observe(path, time.perf_counter() - started, True)  # until it began to answer
        try:
            self._raise_for_status(response)
            yield Stream(response, self._lines(response, limit))
        finally:
            response.close()

    def _lines(self, response: requests.Response, limit: float) -> Iterator[dict[str, Any]]:
        # NDJSON is UTF-8: decoding each chunk once is cheaper than json.loads on bytes,
        # which detects the encoding and decodes line by line. Split on "\n" only:
        # str.splitlines would also split on characters like U+0085 inside a string.
        response.encoding = "utf-8"
        decode = json.JSONDecoder().decode
        try:
            lines = response.iter_lines(
                chunk_size=STREAM_CHUNK, decode_unicode=True, delimiter="\n"
            )
            for raw in lines:
                if raw:
                    try:
                        yield decode(raw)  # type: ignore[arg-type]  # decode_unicode: str
                    except ValueError as exc:
                        text = f"Ollama sent a line that is not JSON: {raw[:200]!r}"
                        raise OllamaError(text) from exc
        except requests.RequestException as exc:
            raise self._connection_error(exc, during_stream=True, limit=limit) from exc

    def _connection_error(
        self,
        exc: Exception,
        *,
        during_stream: bool = False,
        limit: float | None = None,
        connect: float | None = None,
    ) -> Exception:
        if isinstance(exc, requests.ConnectTimeout):
            return OllamaUnavailable(
                f"Ollama at {self.base_url} did not accept a connection within "
                f"{connect or self.connect_timeout:g} s"
            )
        if isinstance(exc, requests.Timeout) or _caused_by_timeout(exc):
            if limit is None:
                limit = self.stall_timeout if during_stream else self.request_timeout
            what = "sent nothing" if during_stream else "did not answer"
            return OllamaTimeout(f"Ollama at {self.base_url} {what} for {limit:g} s")
        if during_stream:
            return OllamaUnavailable(f"the connection to Ollama at {self.base_url} was lost")
        return OllamaUnavailable(f"Ollama is not reachable at {self.base_url}")

    @staticmethod
    def _raise_for_status(response: requests.Response) -> None:
        if response.status_code < 400:
            return
        message = _error_text(response)
        if response.status_code == 404:
            raise ModelNotFound(message, ollama_status=404)
        raise OllamaError(message, ollama_status=response.status_code)


def _error_text(response: requests.Response) -> str:
    """Ollama's own error text: the JSON ``error`` field, or the plain body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    text = response.text.strip()
    return text[:500] or f"Ollama answered HTTP {response.status_code}"


def _caused_by_timeout(exc: BaseException) -> bool:
    """requests wraps a read timeout inside a stream as ConnectionError; look underneath."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if "timed out" in str(current).lower() or isinstance(current, TimeoutError):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False
