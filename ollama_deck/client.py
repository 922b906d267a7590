"""A Python client of a running deck's HTTP API, on the contracts the deck declares.

::

    from ollama_deck.client import DeckClient

    deck = DeckClient()  # $OLLAMA_DECK_URL (default http://127.0.0.1:8000), $OLLAMA_DECK_TOKEN
    op = deck.pull("llama3.2:1b")
    for event in deck.watch(op.id):  # progress, log and done events, each once
        ...
    final = deck.wait(op.id, timeout=600)  # the final state; final.status == "succeeded"

    group = deck.pull("llama3.2:1b", hosts="*")  # one pull per host, as one group
    plan = deck.plan(read_desired_models("models.toml"))  # what apply would do

Requests and answers are the pydantic models of ``ollama_deck.schemas``, so the client
cannot drift from what the views validate and the OpenAPI document says. Every error is a
:class:`DeckAPIError` with the deck's ``code``, ``message`` and HTTP ``status``; a deck that
cannot be reached is a :class:`DeckUnreachable`. Importing this module imports neither Flask
nor the deck's database layer.
"""

from __future__ import annotations

import builtins
import json
import os
import time
import tomllib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Literal
from typing import overload
from typing import TypeVar
from urllib.parse import quote

import requests
from pydantic import BaseModel
from pydantic import TypeAdapter
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from . import schemas as S
from .lifecycle import Status

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "OLLAMA_DECK_URL"
TOKEN_VARIABLE = "OLLAMA_DECK_TOKEN"

# Seconds to connect, and to wait for an answer: a cancel waits up to 5 s in the deck.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# An event stream is never silent this long: the deck sends a comment every 15 s by default
# (OLLAMA_DECK_SSE_HEARTBEAT_SECONDS), so a longer silence is a dead connection.
STREAM_READ_TIMEOUT = 60.0
# Reconnecting a stream: the first attempt at once, then doubling up to the ``retry:`` the
# deck sends (3 s), for at most ``patience`` seconds without a working connection.
FIRST_RETRY_SECONDS = 0.2
DEFAULT_RETRY_SECONDS = 3.0
DEFAULT_PATIENCE = 300.0
RETRY = "retry"  # what parse_sse calls a retry: field

M = TypeVar("M", bound=BaseModel)
# Several Ollama hosts by name, or "*" for every host the deck has: the answer is a group.
Hosts = Sequence[str] | Literal["*"]
Desired = S.DesiredModels | dict[str, Any]


class DeckAPIError(Exception):
    """The deck refused a request, or its answer could not be read.

    ``status`` is the HTTP status (None when there was no answer), ``code`` the deck's error
    code (``not_found``, ``unauthorized``, ``queue_full``, ...) and ``message`` its text.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class DeckUnreachable(DeckAPIError):
    """No answer: nothing listens at the URL, the name does not resolve, or it timed out."""

    def __init__(self, message: str, *, code: str = "unreachable") -> None:
        super().__init__(message, code=code)


class WaitTimeout(DeckAPIError, TimeoutError):
    """``wait`` or ``watch`` ran out of time before the operation ended; it goes on."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


@dataclass(frozen=True)
class Event:
    """One event of an operation's stream: ``progress`` and ``done`` carry the operation's
    state, ``log`` one line of its log. ``id`` is the deck's sequence number."""

    id: int | None
    kind: str
    data: S.OperationState | S.LogLine

    @property
    def operation_id(self) -> str:
        """The operation it is of (on a group's stream: the group, or one of its children)."""
        return self.data.id if isinstance(self.data, S.OperationState) else self.data.operation_id

    @property
    def final(self) -> bool:
        """The operation's last event: its state is final (succeeded, failed, ...)."""
        return self.kind == "done"

    def to_json(self) -> dict[str, Any]:
        """``{"event", "id", "data"}``: one line of ``ollama-deck pull --json``."""
        return {"event": self.kind, "id": self.id, "data": self.data.model_dump(mode="json")}


class DeckClient:
    """A client of one deck at ``url``, authorised by ``token``.

    ``url`` is where the deck is mounted: ``http://127.0.0.1:8000`` for ``ollama-deck
    serve``, ``http://host/models`` for a deck embedded under ``/models`` (default:
    ``$OLLAMA_DECK_URL``, else ``http://127.0.0.1:8000``). ``token`` defaults to
    ``$OLLAMA_DECK_TOKEN``. Methods that act on models take ``host``, the name of an
    Ollama host as the deck's configuration has it (default: the deck's first).

    Ordinary calls share one connection and may be made from one thread at a time;
    ``watch`` opens a connection of its own, so watches may run in other threads.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = READ_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        stream_timeout: float = STREAM_READ_TIMEOUT,
    ) -> None:
        self.url = (url or os.environ.get(URL_VARIABLE) or DEFAULT_URL).rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
        self.timeout = (connect_timeout, timeout)
        self.stream_timeout = (connect_timeout, stream_timeout)
        self._session = self._new_session()

    def __enter__(self) -> DeckClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def __repr__(self) -> str:
        return f"DeckClient({self.url!r})"

    # ------------------------------------------------------------------ operations

    @overload
    def pull(
        self,
        models: str,
        *,
        host: str | None = None,
        hosts: Hosts | None = None,
        not_before: str | None = None,
    ) -> S.Operation: ...

    @overload
    def pull(
        self,
        models: builtins.list[str] | tuple[str, ...],
        *,
        host: str | None = None,
        hosts: Hosts | None = None,
        not_before: str | None = None,
    ) -> builtins.list[S.Operation]: ...

    def pull(
        self,
        models: str | builtins.list[str] | tuple[str, ...],
        *,
        host: str | None = None,
        hosts: Hosts | None = None,
        not_before: str | None = None,
    ) -> S.Operation | builtins.list[S.Operation]:
        """Start a pull of ``models`` (one name, or a list) on ``host``, or join the one
        already running: the operation, or one per model in order. With ``hosts`` (names,
        or "*" for all) each model is pulled on each of them as one group operation,
        whose ``children`` are the pulls. ``not_before`` (``01:00``, or an ISO 8601 date
        and time, in the deck's time zone unless it names one) starts them no earlier: until
        then they are ``scheduled``.

        Every name is checked before any pull starts; a refusal of the deck (a full queue,
        say) raises, and the pulls started before it go on.
        """
        names = [models] if isinstance(models, str) else builtins.list(models)
        scope = {"host": host, "hosts": _hosts(hosts), "not_before": not_before}
        bodies = [_request(S.PullRequest, {"model": name, **scope}) for name in names]
        started = [self._call("POST", "/api/models/pull", S.Operation, json=b) for b in bodies]
        return started[0] if isinstance(models, str) else started

    def get(self, op_id: str, *, log: int | None = None) -> S.Operation:
        """One operation as it is now, with its last ``log`` log lines (the deck's default
        when None, at most its ``OLLAMA_DECK_LOG_LINES``)."""
        params = {"log": str(log)} if log is not None else None
        return self._call("GET", f"/progress/{_segment(op_id)}", S.Operation, params=params)

    def list(
        self, *, status: Iterable[Status | str] | Status | str | None = None, limit: int = 100
    ) -> builtins.list[S.Operation]:
        """Operations, newest first: those with one of the ``status`` given, or all, at
        most ``limit`` (1 to 1000)."""
        params = {"limit": str(limit)}
        if status is not None:
            wanted = [status] if isinstance(status, str) else builtins.list(status)
            params["status"] = ",".join(str(s) for s in wanted)
        return self._call("GET", "/progress", S.Operations, params=params).operations

    def cancel(self, op_id: str) -> S.Operation:
        """Cancel a queued or running operation; its state after the deck waited a moment
        for it to end (``status`` may still be active while it winds down). A 409
        ``conflict`` when it had ended already."""
        return self._call("POST", f"/progress/{_segment(op_id)}/cancel", S.Operation)

    def pause(self, op_id: str) -> S.Operation:
        """Pause a queued, scheduled or running operation: its download stops and Ollama
        keeps what it fetched. Its state after the deck waited a moment (``status`` may
        still be running while its stream closes). A 409 ``conflict`` when it ended or is
        paused already."""
        return self._call("POST", f"/progress/{_segment(op_id)}/pause", S.Operation)

    def resume(self, op_id: str) -> S.Operation:
        """Queue an operation a user paused again (``scheduled`` while its host's window is
        closed or its ``not_before`` ahead); the download goes on from where it stopped. A
        409 ``conflict`` unless a user paused it."""
        return self._call("POST", f"/progress/{_segment(op_id)}/resume", S.Operation)

    def update(
        self,
        models: Iterable[str] | None = None,
        *,
        host: str | None = None,
        hosts: Hosts | None = None,
    ) -> builtins.list[S.Operation]:
        """Pull installed models again (``models``, or every installed one when None): one
        ``update`` operation each; its ``result`` says whether the model changed. With
        ``hosts``, one group of them across those hosts (the list holds the group)."""
        names = None if models is None else builtins.list(models)
        body = _request(S.UpdateRequest, {"models": names, "host": host, "hosts": _hosts(hosts)})
        return self._call("POST", "/api/models/update", S.UpdateAccepted, json=body).operations

    # ------------------------------------------------------------------ models and hosts

    def models(self, *, host: str | None = None) -> S.Models:
        """Installed models of ``host`` with their sizes, the total, and active pulls
        (the last list seen, ``stale``, when Ollama does not answer)."""
        return self._call("GET", "/api/models", S.Models, params=_host_query(host))

    def delete(self, model: str, *, host: str | None = None) -> str:
        """Delete an installed model; the name deleted. 404 when it is not installed, 409
        while it is being pulled."""
        path = _model_path(model)
        return self._call("DELETE", path, S.Deleted, params=_host_query(host)).deleted

    def delete_on(self, model: str, hosts: Hosts) -> S.Operation:
        """Delete a model on several hosts (or "*": all) as one group operation; a host
        that does not have it ends ``succeeded`` too (``not installed``). 409 while an
        operation of the model is active on one of them: nothing is deleted then."""
        path = _model_path(model)
        names = _hosts(hosts)
        params = {"hosts": names if isinstance(names, str) else ",".join(names or [])}
        return self._call("DELETE", path, S.Operation, params=params)

    # ------------------------------------------------------------------ desired model sets

    def plan(self, desired: Desired | None = None) -> S.Plan:
        """What applying ``desired`` would do on each host (without it, the set stored in
        the deck): ``missing`` models to pull, ``delete`` (with ``prune``), ``in_place``."""
        return self._call("POST", "/api/plan", S.Plan, json=_desired_json(desired))

    def apply(self, desired: Desired | None = None) -> S.Applied:
        """Apply ``desired`` (without it, the stored set): its plan, and the group that
        does it (None when nothing was to do); follow the group with ``watch``."""
        return self._call("POST", "/api/apply", S.Applied, json=_desired_json(desired))

    def desired_models(self) -> S.StoredDesiredModels:
        """The desired model set stored in the deck (``set`` None when none is)."""
        return self._call("GET", "/api/desired-models", S.StoredDesiredModels)

    def store_desired_models(self, desired: Desired) -> S.StoredDesiredModels:
        """Store ``desired`` in the deck, replacing the set stored before."""
        body = _desired_json(desired)
        return self._call("PUT", "/api/desired-models", S.StoredDesiredModels, json=body)

    def clear_desired_models(self) -> S.StoredDesiredModels:
        """Forget the stored set (nothing is deleted from any host)."""
        return self._call("DELETE", "/api/desired-models", S.StoredDesiredModels)

    def hosts(self) -> builtins.list[S.HostInfo]:
        """Every Ollama host the deck is configured with (the default first)."""
        return self._call("GET", "/api/hosts", S.Hosts).hosts

    # ------------------------------------------------------------------ following

    def watch(
        self,
        op_id: str,
        *,
        last_event_id: int | None = None,
        timeout: float | None = None,
        patience: float | None = DEFAULT_PATIENCE,
        on_retry: Callable[[DeckAPIError], None] | None = None,
    ) -> Iterator[Event]:
        """The events of an operation as they happen, each once, ending with its ``done``
        (a group's come with its children's: their ``data.id`` tells them apart).

        Without ``last_event_id`` it starts with the operation's current state; with it,
        with what came after that event. A dropped connection or a restarting deck is
        reconnected with ``Last-Event-ID``, so nothing is missed or repeated; ``on_retry``
        hears of each failed attempt. Raises :class:`DeckUnreachable` after ``patience``
        seconds without a connection (None: never), :class:`WaitTimeout` after
        ``timeout`` seconds in all, and :class:`DeckAPIError` when the deck refuses (a 401,
        or a 404 for an operation it does not know).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last = last_event_id
        retry = DEFAULT_RETRY_SECONDS
        failing_since: float | None = None  # when the connection was lost, until an event
        delay = 0.0
        with self._new_session() as session:
            while True:
                if delay:
                    _sleep(delay, deadline, op_id)
                problem: DeckAPIError | None = None
                try:
                    for seq, kind, data in self._stream(session, op_id, last, deadline):
                        if kind == RETRY:
                            retry = seq / 1000 if seq else retry
                            continue
                        failing_since, delay = None, 0.0
                        if seq is not None and last is not None and seq <= last:
                            continue  # seen before the connection dropped
                        if seq is not None:
                            last = seq
                        event = _event(seq, kind, data)
                        if event is not None:  # else a kind this client does not know
                            yield event
                            if event.final and event.operation_id == op_id:
                                return  # a group's stream has its children's ends too
                        _check(deadline, op_id)
                except DeckUnreachable as exc:
                    problem = exc
                except DeckAPIError as exc:
                    if exc.status is None or exc.status < 500:
                        raise
                    problem = exc  # a proxy's 502, the database briefly unavailable
                _check(deadline, op_id)
                now = time.monotonic()
                if problem is None:  # the deck ended the stream early: it is stopping
                    if failing_since is None:
                        failing_since = now
                        continue  # reconnect at once; say so only if that fails too
                    problem = DeckUnreachable(f"the deck at {self.url} ended the event stream")
                if failing_since is None:
                    failing_since = now
                elif patience is not None and now - failing_since > patience:
                    raise DeckUnreachable(f"{problem.message} (for {now - failing_since:.0f} s)")
                delay = min(max(delay * 2, FIRST_RETRY_SECONDS), retry)
                if on_retry is not None:
                    on_retry(problem)

    def wait(self, op_id: str, timeout: float | None = None) -> S.OperationState:
        """Follow an operation to its end and return its final state (``status``
        succeeded, failed, cancelled or interrupted). :class:`WaitTimeout` after
        ``timeout`` seconds, while the operation goes on in the deck."""
        state: S.OperationState | None = None
        for event in self.watch(op_id, timeout=timeout):
            if event.final and event.operation_id == op_id:
                assert isinstance(event.data, S.OperationState)  # a done event's data
                state = event.data
        if state is None:  # a stream always ends with a done event; be sure anyway
            state = self.get(op_id)
        return state

    # ------------------------------------------------------------------ the wire

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        session.headers["User-Agent"] = "ollama-deck-client"
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        """One request; its answer read as ``model``, or the error raised."""
        url = self.url + path
        try:
            response = self._session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise _unreachable(self.url, exc) from None
        with response:
            if response.status_code >= 400:
                raise _error_of(response, self.url)
            return _answer(response, model, self.url)

    def _stream(
        self,
        session: requests.Session,
        op_id: str,
        last_event_id: int | None,
        deadline: float | None,
    ) -> Iterator[tuple[int | None, str, str]]:
        """``(id, event, data)`` of each event of one connection; ``(ms, "retry", "")`` for
        a ``retry:`` field."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        connect, read = self.stream_timeout
        if deadline is not None:
            read = max(0.05, min(read, deadline - time.monotonic()))
        url = f"{self.url}/progress/{_segment(op_id)}/stream"
        try:
            response = session.get(url, headers=headers, stream=True, timeout=(connect, read))
        except requests.RequestException as exc:
            raise _unreachable(self.url, exc) from None
        with response:
            if response.status_code >= 400:
                raise _error_of(response, self.url)
            if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
                raise _not_a_deck(self.url, response)
            try:
                yield from parse_sse(_chunks(response))
            except requests.RequestException as exc:
                raise _unreachable(self.url, exc) from None


# ---------------------------------------------------------------------- Server-Sent Events


def parse_sse(chunks: Iterable[bytes]) -> Iterator[tuple[int | None, str, str]]:
    """The events of an SSE byte stream as ``(id, event, data)``, as the spec reads them.

    Comments are skipped; a ``retry:`` field comes out as ``(milliseconds, "retry", "")``;
    an event without ``event:`` is ``message``; lines end in LF, CRLF or CR, split
    anywhere between chunks.
    """
    buffer = ""
    event_id: int | None = None
    kind = ""
    data: builtins.list[str] = []
    pending_cr = False
    first = True
    for chunk in chunks:
        text = chunk.decode("utf-8", errors="replace")
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        if pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split between chunks
        pending_cr = text.endswith("\r")
        buffer += text
        lines = buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        buffer = lines.pop()
        for line in lines:
            if line == "":
                if data:
                    yield event_id, kind or "message", "\n".join(data)
                kind, data = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            elif name == "id" and "\0" not in value:
                event_id = int(value) if value.isdigit() else None
            elif name == "retry" and value.isdigit():
                yield int(value), RETRY, ""


def _chunks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives. ``read1`` returns what one read brings, chunked or not;
    ``iter_content(None)`` would wait for the end of a body that is not chunked."""
    read1 = getattr(response.raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        yield from response.iter_content(chunk_size=None)
        return
    while True:
        try:
            chunk = read1(65536, decode_content=True)
        except (HTTPError, OSError) as exc:  # urllib3's own: a dropped or timed-out stream
            raise requests.ConnectionError(exc) from exc
        if not chunk:
            return
        yield chunk


def _event(seq: int | None, kind: str, data: str) -> Event | None:
    model = S.OPERATION_EVENTS.get(kind)
    if model is None:
        return None
    try:
        payload = model.model_validate_json(data)
    except ValidationError as exc:
        raise DeckAPIError(
            f"the deck sent a {kind} event this client cannot read: {_first_error(exc)}",
            code="bad_response",
        ) from None
    assert isinstance(payload, S.OperationState | S.LogLine)
    return Event(seq, kind, payload)


def _check(deadline: float | None, op_id: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"operation {op_id} did not end in time; it goes on in the deck")


def _sleep(delay: float, deadline: float | None, op_id: str) -> None:
    if deadline is not None:
        delay = min(delay, deadline - time.monotonic())
    if delay > 0:
        time.sleep(delay)
    _check(deadline, op_id)


# ---------------------------------------------------------------------- requests, answers


def _request(model: type[S.RequestModel], fields: dict[str, Any]) -> dict[str, Any]:
    """A request body checked by the deck's own declaration, as JSON; a bad value raises
    the error the deck would answer (without asking it)."""
    try:
        body = model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise _refusal(model, exc) from None
    return body.model_dump(mode="json", exclude_none=True)


def _refusal(model: type[S.RequestModel], exc: ValidationError) -> DeckAPIError:
    """The code and message the deck answers for a bad value (contracts.body_error), for
    the usual cases: a bad model name, a field with its own words, anything else."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "invalid_model_name":
        return DeckAPIError(error["msg"], code="invalid_model_name")
    if not error["loc"]:  # a model name checked alone (delete)
        return DeckAPIError(f"model name: {error['msg']}", code="bad_request")
    field = str(error["loc"][0])
    code, message = model.field_errors.get(field, ("bad_request", f"{field}: {error['msg']}"))
    return DeckAPIError(message, code=code)


def _hosts(hosts: Hosts | None) -> builtins.list[str] | str | None:
    if hosts is None or hosts == "*":
        return hosts
    if isinstance(hosts, str):
        raise TypeError('hosts is a list of host names, or "*" for all')
    return builtins.list(hosts)


def _model_path(model: str) -> str:
    """``/api/models/<name>``, once the name passed the deck's own check."""
    try:
        TypeAdapter(S.ModelName).validate_python(model)
    except ValidationError as exc:
        raise _refusal(S.PullRequest, exc) from None  # the deck's words for a bad name
    return f"/api/models/{quote(model, safe='/:')}"


def read_desired_models(path: str | Path) -> S.DesiredModels:
    """A desired model set from a TOML file::

        [all]                      # every configured host
        models = ["nomic-embed-text"]
        [hosts.gpu1]
        models = ["llama3.1:70b", "qwen2.5-coder:7b"]
        prune = true               # delete what is installed there but not declared

    A file that cannot be read, is not TOML or is no such set raises DeckAPIError (code
    ``bad_file``, or the deck's own code for a bad name); whether the hosts exist and
    the registries are allowed, only the deck can tell.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise DeckAPIError(f"cannot read {path}: {exc.strerror or exc}", code="bad_file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeckAPIError(f"{path} is not TOML: {exc}", code="bad_file") from None
    try:
        return S.DesiredModels.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        said = f"{where}: {error['msg']}" if where else error["msg"]
        code = "invalid_model_name" if error["type"] == "invalid_model_name" else "bad_file"
        raise DeckAPIError(f"{path}: {said}", code=code) from None


def _desired_json(desired: Desired | None) -> dict[str, Any] | None:
    if desired is None:
        return None
    if isinstance(desired, dict):
        try:
            desired = S.DesiredModels.model_validate(desired)
        except ValidationError as exc:
            raise _refusal(S.DesiredModels, exc) from None
    # What was given, no more: a host's explicit ``prune = false`` must stay (it overrides
    # ``all``), while defaults left out stay out.
    return desired.model_dump(mode="json", exclude_unset=True)


def _segment(text: str) -> str:
    return quote(text, safe="")


def _host_query(host: str | None) -> dict[str, str] | None:
    return {"host": host} if host else None


def _answer(response: requests.Response, model: type[M], base: str) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        if response.headers.get("Content-Type", "").startswith("application/json"):
            raise DeckAPIError(
                f"the deck at {base} answered {response.request.method} "
                f"{response.url} with something this client cannot read "
                f"({_first_error(exc)}); is it another version?",
                code="bad_response",
                status=response.status_code,
            ) from None
        raise _not_a_deck(base, response) from None


def _error_of(response: requests.Response, base: str) -> DeckAPIError:
    """The deck's ``{"error": {"code", "message"}}``, or what the status says."""
    retry_after = _seconds(response.headers.get("Retry-After"))
    try:
        body = S.Error.model_validate_json(response.content).error
    except ValidationError:
        status = response.status_code
        message = f"{response.request.method} {response.url} answered {status} {response.reason}"
        if status == 404:
            message += f": is {base} the deck's URL (with its prefix, e.g. http://host/models)?"
        return DeckAPIError(message, code=f"http_{status}", status=status, retry_after=retry_after)
    message = body.message
    if body.login_url:
        message += f" (log in at {body.login_url})"
    return DeckAPIError(
        message, code=body.code, status=response.status_code, retry_after=retry_after
    )


def _not_a_deck(base: str, response: requests.Response) -> DeckAPIError:
    kind = response.headers.get("Content-Type", "no content type").split(";")[0]
    return DeckAPIError(
        f"{response.url} answered {kind}, not the deck's JSON: is {base} the deck's URL "
        "(with its prefix, e.g. http://host/models)?",
        code="not_a_deck",
        status=response.status_code,
    )


def _unreachable(base: str, exc: requests.RequestException) -> DeckUnreachable:
    return DeckUnreachable(f"cannot reach the deck at {base}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """A few words for why a connection failed, from the chain urllib3 wraps it in."""
    if isinstance(exc, requests.ConnectTimeout):
        return "no connection within the timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer within the timeout"
    seen: set[int] = set()
    pending: builtins.list[Any] = [exc]
    while pending:
        item = pending.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ConnectionRefusedError):
            return "connection refused (is the deck running? ollama-deck serve)"
        if type(item).__name__ in ("gaierror", "NameResolutionError"):
            return "the host name does not resolve"
        if isinstance(item, TimeoutError):
            return "timed out"
        if isinstance(item, ConnectionResetError):
            return "the connection was reset"
        if isinstance(item, BaseException):
            pending += [item.__cause__, item.__context__, getattr(item, "reason", None)]
            pending += [a for a in item.args if isinstance(a, BaseException)]
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def dumps(value: Any) -> str:
    """``value`` (models included) as compact JSON: what ``--json`` prints."""
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, builtins.list | tuple):
        return [_plain(v) for v in value]
    return value
