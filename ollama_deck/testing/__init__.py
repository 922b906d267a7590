"""A fake Ollama for tests, benchmarks and demos: a real HTTP server on 127.0.0.1.

It speaks Ollama's wire format (see docs/api.md in ollama/ollama) for ``/``, version, tags,
show, ps, delete, chat, generate and pull, so code under test talks to it over a real socket
exactly as it would talk to Ollama. Partial downloads survive a broken pull, as in Ollama, so
a second pull of the same model resumes where the first one stopped.

The public interface (everything else here may change):

:class:`FakeOllama`
    ``FakeOllama(port=0, *, token_interval=0.005)``; ``start()`` returns it, ``url`` is its
    address, ``stop()`` cuts every connection (a later ``start()`` serves on the same port,
    as an Ollama that restarts); it is also a context manager.

    Scripting: ``add_model(name, *, size=..., family=..., ...)``, ``remove_model(name)``,
    ``allow_pull(name, script=None, **details)`` (a pull of ``name`` follows ``script`` and
    installs the model), ``publish_update(name, script=None)`` (the next pull of an installed
    model changes its digest), ``release(name)`` (a pull held by ``hold_after`` goes on),
    ``bench_pull(name, lines)``, ``chat_reply`` (the text chat and generate stream),
    ``default_pull`` (a script for names never allowed).

    Inspection: ``installed()``, ``digest(name)``, ``loaded()``, ``pull_count(name)``,
    ``pull_streams(name)`` (each pull stream: when it opened, how it ended, e.g.
    ``"closed"`` when the client closed it), ``active_pulls`` and ``max_active_pulls``,
    ``requests`` (method, path, body of each).

:class:`PullScript`
    How one pull behaves: ``layers`` (blob sizes), ``step`` bytes a progress line,
    ``interval`` seconds between lines, and after so many lines an ``error_after`` line
    (text ``error``), a dropped connection (``drop_after``) or a stall until released
    (``hold_after``). Faults of Ollama's own kind, in the first ``faulty_streams`` streams
    (None: every one), counted in lines of that stream: ``stall_after`` (the same byte count
    again and again, as Ollama ticks on a stuck download; with ``stall_silent``, nothing
    at all) and ``crawl_after`` (``crawl_step`` bytes a line from then on).

``UNKNOWN_MANIFEST``
    Ollama's error text for a pull of a name it does not know.

In your own tests::

    from ollama_deck.testing import FakeOllama, PullScript

    with FakeOllama() as fake:
        fake.allow_pull("llama3.2:1b", PullScript(layers=[2_000_000, 1_429]))
        ...  # point OLLAMA_DECK_OLLAMA_HOST at fake.url

or, with pytest, ``pytest_plugins = ["ollama_deck.testing.pytest_plugin"]`` in your
``conftest.py`` gives a ``fake_ollama`` fixture: a started fake, stopped after the test.

``python -m ollama_deck.testing --demo`` runs a fake with a few models that pulls any name at
a watchable pace; it prints its URL on the first line (``--help`` for the rest).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timedelta
from datetime import UTC
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

from ..services.vram import parse_parameter_size

__all__ = ["FakeOllama", "PullScript", "UNKNOWN_MANIFEST"]

UNKNOWN_MANIFEST = "pull model manifest: file does not exist"
DEFAULT_REPLY = "Hello! I am a fake Ollama model, and this reply is streamed one word at a time."
VERSION = "0.9.6"


@dataclass
class PullScript:
    """How a pull of one model behaves.

    ``layers`` are blob sizes in bytes, pulled in order; each progress line advances the
    current layer by ``step`` bytes, ``interval`` seconds apart. The ``*_after`` counts are
    progress lines sent (over all layers) before the event: ``error_after`` sends an
    ``{"error": ...}`` line, ``drop_after`` closes the connection, ``hold_after`` stops
    sending until :meth:`FakeOllama.release` (or until the client goes away).
    """

    layers: list[int] = field(default_factory=lambda: [2_000_000, 1_429])
    step: int = 100_000
    interval: float = 0.0
    error_after: int | None = None
    error: str = "max retries exceeded: unexpected EOF"
    drop_after: int | None = None
    hold_after: int | None = None
    stall_after: int | None = None
    stall_silent: bool = False
    crawl_after: int | None = None
    crawl_step: int = 10
    faulty_streams: int | None = None


@dataclass
class PullStream:
    """One pull stream the fake served: when it opened and how it ended (``open`` while it
    runs, then ``succeeded``, ``closed`` by the client, ``dropped`` by the script,
    ``error`` or ``unknown``)."""

    opened_at: float
    outcome: str = "open"


@dataclass
class _Model:
    name: str
    size: int
    digest: str
    modified_at: str
    family: str
    parameter_size: str
    quantization: str
    context_length: int
    capabilities: list[str]
    license: str
    template: str
    parameters: str
    version: int = 1  # grows with each update published, and so does the digest

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization,
        }

    def entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
            # Newer Ollama lists what each model can do (OLLAMA.md, /api/tags).
            "capabilities": list(self.capabilities),
        }


@dataclass
class _Pull:
    script: PullScript
    meta: dict[str, Any]
    released: threading.Event = field(default_factory=threading.Event)
    update: bool = False  # a newer version of an installed model: the pull changes its digest


def normalize(name: str) -> str:
    """Ollama's short form: a missing tag means ``latest``."""
    name = name.strip()
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def _now() -> datetime:
    return datetime.now(UTC).astimezone()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class FakeOllama:
    """A scriptable Ollama on ``127.0.0.1``; ``start()`` it, use ``.url``, ``stop()`` it.

    ``stop()`` then ``start()`` again serves on the same port, as an Ollama that restarts.
    """

    def __init__(self, port: int = 0, *, token_interval: float = 0.005) -> None:
        self.port = port
        self.token_interval = token_interval
        self.chat_reply = DEFAULT_REPLY
        self.default_pull: PullScript | None = None  # for names never allowed: demo mode
        self.requests: list[tuple[str, str, Any]] = []
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self._pulls: dict[str, _Pull] = {}
        self._pull_counts: dict[str, int] = {}
        self._streams: dict[str, list[PullStream]] = {}
        self.active_pulls = 0  # scripted pull streams open right now
        self.max_active_pulls = 0  # the most that were open at once
        self._partials: dict[str, int] = {}  # blob digest -> bytes on disk
        self._loaded: dict[str, datetime] = {}  # model key -> expires_at
        self._bench_body: dict[str, bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeOllama:
        server = _Server(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        # stop() waits for the loop to notice, up to one poll interval: keep it short.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.005}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as an Ollama that dies would."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # Only once every stream is cut: a held pull must not send its end first.
        with self._lock:
            for pull in self._pulls.values():
                pull.released.set()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        *,
        size: int = 1_000_000,
        parameter_size: str = "1.2B",
        quantization: str = "Q4_K_M",
        family: str = "llama",
        context_length: int = 131_072,
        capabilities: list[str] | None = None,
        license: str = "Fake Model License\nUse it for tests.",
        template: str = "{{ .Prompt }}",
        parameters: str = 'stop                           "<|eot_id|>"',
        modified_at: datetime | None = None,
    ) -> None:
        name = normalize(name)
        model = _Model(
            name=name,
            size=size,
            digest=_digest(name + str(size)),
            modified_at=(modified_at or _now()).isoformat(),
            family=family,
            parameter_size=parameter_size,
            quantization=quantization,
            context_length=context_length,
            capabilities=list(capabilities or ["completion", "tools"]),
            license=license,
            template=template,
            parameters=parameters,
        )
        with self._lock:
            self._models[name.lower()] = model

    def remove_model(self, name: str) -> None:
        with self._lock:
            self._models.pop(normalize(name).lower(), None)

    def installed(self) -> list[str]:
        with self._lock:
            return [m.name for m in self._models.values()]

    def allow_pull(self, name: str, script: PullScript | None = None, **meta: Any) -> None:
        """Let ``name`` be pulled as ``script`` says; ``meta`` goes to :meth:`add_model`."""
        with self._lock:
            self._pulls[normalize(name).lower()] = _Pull(script or PullScript(), meta)

    def publish_update(self, name: str, script: PullScript | None = None) -> None:
        """Say that a newer version of the installed ``name`` exists: its next pull downloads
        the changed layers (as ``script`` says) and gives the model a new digest and time.

        Without this, pulling an installed model changes nothing, as with Ollama when the
        registry has nothing newer.
        """
        key = normalize(name).lower()
        with self._lock:
            if key not in self._models:
                raise KeyError(f"{name} is not installed in the fake")
            self._pulls[key] = _Pull(script or PullScript(layers=[500_000]), {}, update=True)

    def digest(self, name: str) -> str | None:
        """The manifest digest of an installed model, as /api/tags shows it."""
        model = self._find(name)
        return model.digest if model else None

    def release(self, name: str) -> None:
        """Let a pull held by ``hold_after`` go on to the end."""
        with self._lock:
            pull = self._pulls.get(normalize(name).lower())
        if pull is not None:
            pull.released.set()

    def pull_count(self, name: str) -> int:
        """How many pull requests arrived for ``name``."""
        with self._lock:
            return self._pull_counts.get(normalize(name).lower(), 0)

    def pull_streams(self, name: str) -> list[PullStream]:
        """Every pull stream of ``name`` so far, oldest first (copies)."""
        with self._lock:
            found = self._streams.get(normalize(name).lower(), [])
            return [PullStream(s.opened_at, s.outcome) for s in found]

    def loaded(self) -> list[str]:
        """Models loaded in memory now (by generate or chat, until their keep-alive ends)."""
        with self._lock:
            return [self._models[k].name for k in self._loaded if k in self._models]

    def bench_pull(self, name: str, lines: int) -> None:
        """A pull of exactly ``lines`` progress lines, sent as fast as the socket takes them."""
        name = normalize(name)
        layer = _digest(name)
        pulling = f"pulling {layer[:12]}"
        total = lines * 1_000
        parts = ['{"status":"pulling manifest"}\n']
        parts.extend(
            json.dumps(
                {
                    "status": pulling,
                    "digest": f"sha256:{layer}",
                    "total": total,
                    "completed": (i + 1) * 1_000,
                },
                separators=(",", ":"),
            )
            + "\n"
            for i in range(lines)
        )
        parts.append('{"status":"verifying sha256 digest"}\n{"status":"writing manifest"}\n')
        parts.append('{"status":"success"}\n')
        with self._lock:
            self._bench_body[name.lower()] = "".join(parts).encode()

    # -- behaviour behind the endpoints ------------------------------------------------------

    def _apply_update(self, name: str) -> None:
        """The newer version is on disk: a new digest and time; later pulls find nothing new."""
        key = normalize(name).lower()
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                model.version += 1
                model.digest = _digest(f"{model.name}{model.size}@{model.version}")
                model.modified_at = _now().isoformat()
            pull = self._pulls.get(key)
            if pull is not None and pull.update:
                del self._pulls[key]

    def _find(self, name: Any) -> _Model | None:
        if not isinstance(name, str) or not name:
            return None
        with self._lock:
            return self._models.get(normalize(name).lower())

    def _keep_alive(self, key: str, keep_alive: Any) -> bool:
        """Apply a request's keep-alive; False when it unloads the model."""
        seconds = _seconds(keep_alive)
        with self._lock:
            if seconds == 0:
                self._loaded.pop(key, None)
                return False
            self._loaded[key] = _now() + timedelta(seconds=seconds if seconds > 0 else 86_400)
            return True

    def _ps(self) -> list[dict[str, Any]]:
        now = _now()
        with self._lock:
            for key in [k for k, until in self._loaded.items() if until <= now]:
                del self._loaded[key]
            rows = [
                (until, self._models[key])
                for key, until in self._loaded.items()
                if key in self._models
            ]
        rows.sort(key=lambda row: row[0], reverse=True)
        return [
            dict(
                model.entry(),
                expires_at=until.isoformat(),
                size_vram=model.size,
                context_length=4096,
            )
            for until, model in rows
        ]


def _seconds(keep_alive: Any) -> float:
    """Ollama's keep_alive: a number of seconds or a Go duration; negative keeps forever."""
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, int | float):
        return float(keep_alive)
    text = str(keep_alive).strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        return 300.0


def _handler_for(fake: FakeOllama) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Dropped(Exception):
    """The script cut the connection."""


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a deck of several workers opening connections at
    # once overflowed it, and each dropped SYN came back a second later (1-2 s answers to
    # /api/status under wrk, and a bench that failed on wrk's 2 s timeout).
    request_queue_size = 128


class _ClientGone(_Dropped):
    """The client closed the connection."""


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama
    protocol_version = "HTTP/1.1"
    server_version = "FakeOllama"
    # Headers and body go out in separate writes: with Nagle's algorithm the body waits for
    # the client's delayed ACK (about 40 ms on Linux) on every request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._connections.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- routing -----------------------------------------------------------------------------

    ROUTES = {
        ("GET", "/"): "root",
        ("HEAD", "/"): "root",
        ("GET", "/api/version"): "version",
        ("GET", "/api/tags"): "tags",
        ("GET", "/api/ps"): "ps",
        ("POST", "/api/show"): "show",
        ("DELETE", "/api/delete"): "delete",
        ("POST", "/api/pull"): "pull",
        ("POST", "/api/chat"): "chat",
        ("POST", "/api/generate"): "generate",
    }

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        name = self.ROUTES.get((method, path))
        body = self._body() if method in ("POST", "DELETE") else None
        with self.fake._lock:
            if len(self.fake.requests) < 10_000:
                self.fake.requests.append((method, path, body))
        if name is None:
            known = {p for _, p in self.ROUTES}
            if path in known:
                self._text(405, "405 method not allowed")
            else:
                self._text(404, "404 page not found")
            return
        if method in ("POST", "DELETE") and body is _INVALID:
            self._json(400, {"error": "invalid character in request body"})
            return
        try:
            getattr(self, "_" + name)(body if isinstance(body, dict) else {})
        except (_Dropped, ConnectionError, OSError):
            self.close_connection = True

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return _INVALID

    # -- responses ---------------------------------------------------------------------------

    def _text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _line(self, payload: dict[str, Any]) -> None:
        self._chunk(json.dumps(payload).encode() + b"\n")

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        raise _Dropped

    # -- endpoints ---------------------------------------------------------------------------

    def _root(self, body: dict[str, Any]) -> None:
        self._text(200, "Ollama is running")

    def _version(self, body: dict[str, Any]) -> None:
        self._json(200, {"version": VERSION})

    def _tags(self, body: dict[str, Any]) -> None:
        with self.fake._lock:
            models = sorted(self.fake._models.values(), key=lambda m: m.modified_at, reverse=True)
            self._json(200, {"models": [m.entry() for m in models]})

    def _ps(self, body: dict[str, Any]) -> None:
        self._json(200, {"models": self.fake._ps()})

    def _model_name(self, body: dict[str, Any]) -> str | None:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name.strip():
            self._json(400, {"error": "model is required"})
            return None
        return name

    def _installed_model(self, body: dict[str, Any]) -> _Model | None:
        """The model the request names, or None once a 400 or 404 has been sent."""
        name = self._model_name(body)
        if name is None:
            return None
        model = self.fake._find(name)
        if model is None:
            self._json(404, {"error": f"model '{normalize(name)}' not found"})
        return model

    def _show(self, body: dict[str, Any]) -> None:
        model = self._installed_model(body)
        if model is None:
            return
        arch = model.family
        params = int(parse_parameter_size(model.parameter_size) or 0)
        # Rough transformer shape for the size, so VRAM estimates have numbers to work with.
        blocks = 16 if params < 2e9 else 28 if params < 5e9 else 32 if params < 1e10 else 48
        embedding = 2048 if params < 2e9 else 3072 if params < 5e9 else 4096
        self._json(
            200,
            {
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": model.parameters,
                "template": model.template,
                "license": model.license,
                "details": model.details(),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": params,
                    f"{arch}.block_count": blocks,
                    f"{arch}.context_length": model.context_length,
                    f"{arch}.embedding_length": embedding,
                    f"{arch}.attention.head_count": 32,
                    f"{arch}.attention.head_count_kv": 8,
                    "tokenizer.ggml.tokens": [],
                },
                "capabilities": model.capabilities,
                "modified_at": model.modified_at,
            },
        )

    def _delete(self, body: dict[str, Any]) -> None:
        name = self._model_name(body)
        if name is None:
            return
        key = normalize(name).lower()
        with self.fake._lock:
            found = self.fake._models.pop(key, None)
            self.fake._loaded.pop(key, None)
        if found is None:
            self._json(404, {"error": f"model '{name}' not found"})
        else:
            self._json(200, None)

    def _chat(self, body: dict[str, Any]) -> None:
        self._converse(body, chat=True)

    def _generate(self, body: dict[str, Any]) -> None:
        self._converse(body, chat=False)

    def _converse(self, body: dict[str, Any], *, chat: bool) -> None:
        model = self._installed_model(body)
        if model is None:
            return
        if "completion" not in model.capabilities:
            verb = "chat" if chat else "generate"
            self._json(400, {"error": f'"{model.name}" does not support {verb}'})
            return
        key = model.name.lower()
        stream = body.get("stream", True) is not False
        stay = self.fake._keep_alive(key, body.get("keep_alive"))
        prompt = _prompt_text(body, chat)
        base = {"model": model.name, "created_at": _now().isoformat()}
        if not prompt:
            reason = "load" if stay else "unload"
            final = dict(base, done=True, done_reason=reason)
            final.update({"message": {"role": "assistant", "content": ""}} if chat else {})
            final.update({} if chat else {"response": ""})
            if stream:
                self._start_stream()
                self._line(final)
                self._end_stream()
            else:
                self._json(200, final)
            return
        words = self.fake.chat_reply.split(" ")
        tokens = [w + " " for w in words[:-1]] + words[-1:]
        started = time.perf_counter_ns()
        if stream:
            self._start_stream()
            for token in tokens:
                piece = (
                    {"message": {"role": "assistant", "content": token}}
                    if chat
                    else {"response": token}
                )
                self._line(dict(base, **piece, done=False))
                if self.fake.token_interval:
                    time.sleep(self.fake.token_interval)
        elapsed = max(time.perf_counter_ns() - started, 1)
        final = dict(
            base,
            done=True,
            done_reason="stop",
            total_duration=elapsed + 1_000_000,
            load_duration=1_000_000,
            prompt_eval_count=len(prompt.split()),
            prompt_eval_duration=500_000,
            eval_count=len(tokens),
            eval_duration=elapsed,
        )
        if chat:
            final["message"] = {
                "role": "assistant",
                "content": "" if stream else self.fake.chat_reply,
            }
        else:
            final["response"] = "" if stream else self.fake.chat_reply
        if stream:
            self._line(final)
            self._end_stream()
        else:
            self._json(200, final)

    def _pull(self, body: dict[str, Any]) -> None:
        raw = self._model_name(body)
        if raw is None:
            return
        name = normalize(raw)
        key = name.lower()
        fake = self.fake
        with fake._lock:
            fake._pull_counts[key] = fake._pull_counts.get(key, 0) + 1
            stream = PullStream(time.time())
            fake._streams.setdefault(key, []).append(stream)
            index = len(fake._streams[key]) - 1
            bench = fake._bench_body.get(key)
            pull = fake._pulls.get(key)
            installed = fake._models.get(key)
        try:
            outcome = self._serve_pull(name, bench, pull, installed, index)
        except _ClientGone:
            outcome = "closed"
            raise
        except _Dropped:
            outcome = "dropped"
            raise
        except (ConnectionError, OSError):
            outcome = "closed"  # a write to a client that went away
            raise
        finally:
            with fake._lock:
                stream.outcome = outcome if "outcome" in locals() else "closed"

    def _serve_pull(
        self,
        name: str,
        bench: bytes | None,
        pull: _Pull | None,
        installed: _Model | None,
        index: int,
    ) -> str:
        """Serve one pull stream; how it ended (see PullStream)."""
        fake = self.fake
        key = name.lower()
        if bench is not None:
            self._start_stream()
            for start in range(0, len(bench), 65_536):
                self._chunk(bench[start : start + 65_536])
            self._end_stream()
            return "succeeded"
        if pull is None and installed is None and fake.default_pull is not None:
            pull = _Pull(fake.default_pull, {})
            with fake._lock:
                fake._pulls[key] = pull
        self._start_stream()
        self._line({"status": "pulling manifest"})
        if pull is None and installed is not None:
            # Already here: every blob is on disk, one line each, then success.
            digest = installed.digest
            self._line(
                {
                    "status": f"pulling {digest[:12]}",
                    "digest": f"sha256:{digest}",
                    "total": installed.size,
                    "completed": installed.size,
                }
            )
            self._finish_pull()
            return "succeeded"
        if pull is None:
            self._line({"error": UNKNOWN_MANIFEST})
            self._end_stream()
            return "unknown"
        with fake._lock:
            fake.active_pulls += 1
            fake.max_active_pulls = max(fake.max_active_pulls, fake.active_pulls)
        try:
            return self._scripted_pull(name, pull, index)
        finally:
            with fake._lock:
                fake.active_pulls -= 1

    def _scripted_pull(self, name: str, pull: _Pull, stream_index: int) -> str:
        script, fake = pull.script, self.fake
        faulty = script.faulty_streams is None or stream_index < script.faulty_streams
        stall_after = script.stall_after if faulty else None
        crawl_after = script.crawl_after if faulty else None
        sent = 0  # progress lines of this stream
        seed = name
        if pull.update:
            with fake._lock:
                installed = fake._models.get(name.lower())
            seed = f"{name}@{installed.version + 1 if installed else 1}"
        for index, total in enumerate(script.layers):
            digest = _digest(f"{seed}/{index}/{total}")
            status = f"pulling {digest[:12]}"
            with fake._lock:
                done = min(fake._partials.get(digest, 0), total)
            while True:
                crawling = crawl_after is not None and sent >= crawl_after
                step = script.crawl_step if crawling else script.step
                done = min(done + step, total) if done < total else total
                line = {
                    "status": status,
                    "digest": f"sha256:{digest}",
                    "total": total,
                    "completed": done,
                }
                self._line(line)
                with fake._lock:
                    fake._partials[digest] = done
                sent += 1
                if script.error_after is not None and sent >= script.error_after:
                    self._line({"error": script.error})
                    self._end_stream()
                    return "error"
                if script.drop_after is not None and sent >= script.drop_after:
                    self._drop()
                if script.hold_after is not None and sent == script.hold_after:
                    self._hold(pull)
                if stall_after is not None and sent == stall_after:
                    self._stall(pull, line, silent=script.stall_silent)
                if done >= total:
                    break
                if script.interval:
                    time.sleep(script.interval)
        if pull.update:
            fake._apply_update(name)
        else:
            fake.add_model(name, size=sum(script.layers), **pull.meta)
        self._finish_pull()
        return "succeeded"

    def _hold(self, pull: _Pull) -> None:
        """Send nothing until released; give up when the client has gone away."""
        while not pull.released.wait(0.05):
            if _peer_closed(self.connection):
                raise _ClientGone

    def _stall(self, pull: _Pull, line: dict[str, Any], *, silent: bool) -> None:
        """A stuck download: ``line`` again every tick (Ollama's behaviour), or nothing at
        all, until released or until the client goes away."""
        tick = max(pull.script.interval, 0.02)
        while not pull.released.wait(tick):
            if _peer_closed(self.connection):
                raise _ClientGone
            if not silent:
                self._line(line)

    def _finish_pull(self) -> None:
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            self._line({"status": status})
        self._end_stream()


_INVALID = object()


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if not chat:
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    return " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict)).strip()


def _peer_closed(conn: socket.socket) -> bool:
    """Whether the other side closed the connection (a readable socket with no data)."""
    try:
        conn.setblocking(False)
        try:
            return conn.recv(1, socket.MSG_PEEK) == b""
        finally:
            conn.setblocking(True)
    except BlockingIOError:
        return False
    except OSError:
        return True


def demo(fake: FakeOllama) -> None:
    """A few installed models and pulls of any name at a pace a person can watch (~30 s)."""
    fake.add_model("llama3.2:3b", size=2_019_393_189, parameter_size="3.2B", family="llama")
    fake.add_model("qwen2.5-coder:1.5b", size=986_062_089, parameter_size="1.5B", family="qwen2")
    fake.add_model(
        "nomic-embed-text:latest",
        size=274_302_450,
        parameter_size="137M",
        quantization="F16",
        family="nomic-bert",
        capabilities=["embedding"],
    )
    fake.default_pull = PullScript(
        layers=[1_900_000_000, 12_403, 1_429, 96, 485], step=8_000_000, interval=0.12
    )
