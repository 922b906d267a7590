"""Waiting event streams under ``ollama-deck serve``, held by the worker's event loop
without a greenlet each (``ollama_deck.parking``): every watcher gets every event, a
reader that stalls holds nobody and gets everything once it reads, a stream of one
operation ends cleanly after its done event, heartbeats go on."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .sse import SSEClient

pytestmark = pytest.mark.gunicorn

PULLS = 120  # each a few events of some hundred bytes: far more than a stalled socket holds


@pytest.fixture()
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        for index in range(PULLS):
            fake.allow_pull(f"m{index}:1b", PullScript(layers=[300_000], step=100_000))
        fake.allow_pull("held:1b", PullScript(hold_after=1))
        yield fake


def serve(fake: FakeOllama, tmp: Path, **env: str) -> ServerProcess:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_DECK_")}
    environ.update(env)
    command = deck_command(
        "serve", "--port", str(port), "--ollama", fake.url, "--database-url",
        f"sqlite:///{tmp / 'deck.db'}",
    )  # fmt: skip
    return ServerProcess(command, port=port, env=environ, log=tmp / "deck.log")


def watchers(server: ServerProcess) -> int:
    return server.get("/api/status").json()["watchers"]


def read_events(client: SSEClient, done_wanted: int) -> list[tuple[int, str, str]]:
    """(id, kind, operation) of each event until ``done_wanted`` done events came."""
    seen: list[tuple[int, str, str]] = []
    while sum(1 for e in seen if e[1] == "done") < done_wanted:
        event = client.next()
        assert event is not None, "the stream ended early"
        if event.id is not None:
            data = event.data
            seen.append((event.id, event.event, data.get("operation_id") or data["id"]))
    return seen


def dechunked(raw: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response, as far as it came."""
    rest = raw.split(b"\r\n\r\n", 1)[1]
    body = bytearray()
    while b"\r\n" in rest:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        body += rest[:size]
        rest = rest[size + 2 :]
    return bytes(body)


def sse_events(body: bytes) -> list[tuple[int, str]]:
    """(id, kind) of each event with an id in an SSE body."""
    found = []
    for block in body.split(b"\n\n"):
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"id" in fields:
            found.append((int(fields[b"id"]), fields[b"event"].decode()))
    return found


def test_every_watcher_gets_every_event_and_a_stalled_reader_holds_nobody(fake, tmp_path):
    with serve(fake, tmp_path, OLLAMA_DECK_SSE_HEARTBEAT_SECONDS="3600") as server:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        stalled.settimeout(10)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /progress/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert stalled.recv(15).startswith(b"HTTP/1.1 200")
        readers = [SSEClient(server.url + "/progress/stream") for _ in range(4)]
        assert wait_until(lambda: watchers(server) == 5)

        started = [
            server.post("/api/models/pull", json={"model": f"m{i}:1b"}).json()["id"]
            for i in range(PULLS)
        ]
        # Read by every other watcher while the stalled one reads nothing.
        seen = [read_events(reader, PULLS) for reader in readers]
        assert {op for _, kind, op in seen[0] if kind == "done"} == set(started)
        for events in seen:
            ids = [event_id for event_id, _, _ in events]
            assert ids == sorted(set(ids)), "each event once, in order"
            assert [e for e in events if e[1] != "progress"] == [
                e for e in seen[0] if e[1] != "progress"
            ], "every log and done event reached every watcher"

        # The stalled reader gets everything once it reads (tests/test_parker.py makes its
        # socket refuse some: here the kernel's buffers may take it all).
        received = bytearray()
        while received.count(b"event: done\n") < PULLS:
            chunk = stalled.recv(65536)
            assert chunk, "the stream ended early"
            received += chunk
        events = sse_events(dechunked(bytes(received)))
        assert [e[0] for e in events] == sorted({e[0] for e in events}), "each once, in order"
        assert [e for e in events if e[1] != "progress"] == [
            e[:2] for e in seen[0] if e[1] != "progress"
        ]
        for reader in readers:
            reader.close()
        stalled.close()
        assert wait_until(lambda: watchers(server) == 0)


def test_a_waiting_stream_of_one_operation_ends_after_its_done_event(fake, tmp_path):
    with serve(fake, tmp_path, OLLAMA_DECK_SSE_HEARTBEAT_SECONDS="0.2") as server:
        op_id = server.post("/api/models/pull", json={"model": "held:1b"}).json()["id"]
        assert wait_until(lambda: fake.active_pulls == 1)
        stream = SSEClient(server.url + f"/progress/{op_id}/stream", comments=True)
        comments = 0
        while comments < 3:  # heartbeats reach a stream while it waits
            event = stream.next()
            assert event is not None
            comments += event.comment == "keep-alive"
        fake.release("held:1b")
        kinds = []
        while (event := stream.next()) is not None:  # None: ended, its closing chunk read
            if event.event != "message":
                kinds.append(event.event)
        assert kinds[-1] == "done"
        assert server.get(f"/progress/{op_id}").json()["status"] == "succeeded"
        assert wait_until(lambda: watchers(server) == 0)
        stream.close()


def test_a_waiting_stream_holds_no_request_handler(fake, tmp_path):
    """gunicorn's handler of a stream ends once the stream waits (its access line is
    written then, as for a finished request), while the stream goes on: heartbeats and
    events still reach it, and it still counts as a watcher."""
    with serve(fake, tmp_path, OLLAMA_DECK_SSE_HEARTBEAT_SECONDS="0.3") as server:
        stream = SSEClient(server.url + "/progress/stream?marker=1", comments=True)
        assert stream.next().comment.startswith("worker")
        wait_until(lambda: "GET /progress/stream?marker=1" in server.output())
        assert watchers(server) == 1
        assert stream.next().comment == "keep-alive"
        op_id = server.post("/api/models/pull", json={"model": "m0:1b"}).json()["id"]
        event = stream.next()
        while event is not None and (event.data is None or event.event != "done"):
            event = stream.next()
        assert event is not None and event.data["id"] == op_id
        stream.close()
        assert wait_until(lambda: watchers(server) == 0)
