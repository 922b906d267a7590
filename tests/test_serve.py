"""``ollama-deck serve`` as a user runs it: a clean start, a prompt and clean stop with event
streams open, streams counted out when their clients leave, and two decks side by side."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ollama_deck.testing import FakeOllama

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .sse import SSEClient

pytestmark = pytest.mark.gunicorn

# The bound for a stop with event streams open (SIGTERM to exit), not a speed goal.
STOP_BOUND_SECONDS = 3.0
# What a start and a stop must not print.
NOISE = ("Warning", "Traceback", "Exception ignored", "Error")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        fake.add_model("llama3.2:1b")
        yield fake


def deck(fake: FakeOllama, tmp: Path, name: str = "deck", **env: str) -> ServerProcess:
    """``ollama-deck serve`` on a free port with its own database and log, not started."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_DECK_")}
    environ.update(env)
    command = deck_command(
        "serve",
        "--port",
        str(port),
        "--ollama",
        fake.url,
        "--database-url",
        f"sqlite:///{tmp / f'{name}.db'}",
    )
    return ServerProcess(command, port=port, env=environ, log=tmp / f"{name}.log")


def watchers(server: ServerProcess) -> int:
    return server.get("/api/status").json()["watchers"]


@pytest.mark.parametrize("run", [1, 2])
def test_a_stop_with_open_streams_is_prompt_and_clean(fake, tmp_path, run):
    """SIGTERM while two pages are open (an event stream each, and a kept-alive connection
    between two fetches): the streams end, the process exits with 0 within the bound, and
    neither start nor stop prints a warning or a traceback. (Run twice: the ignored
    TypeError at exit came in most stops, not all.)"""
    server = deck(fake, tmp_path)
    with server, requests.Session() as page:
        streams = [SSEClient(server.url + "/progress/stream", comments=True) for _ in range(2)]
        for stream in streams:
            assert stream.next().comment.startswith("worker")
        assert page.get(server.url + "/api/models", timeout=10).status_code == 200
        assert watchers(server) == 2
        process = server.process
        assert process is not None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_BOUND_SECONDS} s after SIGTERM{server.output()}")
        stopped_in = time.monotonic() - started
        print(f"stop with 2 open streams: {stopped_in:.2f} s")
        assert process.returncode == 0
        for stream in streams:
            assert stream.next() is None  # the server ended the stream
            stream.close()
    log = server.output()
    assert "Booting worker" in log and "Shutting down: Master" in log
    assert not [word for word in NOISE if word in log], log


def test_a_closed_stream_stops_counting_at_once(fake, tmp_path):
    """A client that closes its event stream is no longer a watcher, without waiting for
    the next heartbeat write (an hour away here) to find out."""
    with deck(fake, tmp_path, OLLAMA_DECK_SSE_HEARTBEAT_SECONDS="3600") as server:
        clients = []
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            client.sendall(b"GET /progress/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert client.recv(15).startswith(b"HTTP/1.1 200")
            clients.append(client)
        assert wait_until(lambda: watchers(server) == 3)
        clients.pop().close()
        assert wait_until(lambda: watchers(server) == 2)
        for client in clients:
            client.close()
        assert wait_until(lambda: watchers(server) == 0)
        # The deck serves on: a new stream is counted, a talking client is not cut off.
        stream = SSEClient(server.url + "/progress/stream", comments=True)
        assert stream.next().comment.startswith("worker")
        assert watchers(server) == 1
        stream.close()


def test_two_decks_of_one_user_keep_their_own_control(fake, tmp_path):
    """gunicorn (25.1+) made one control socket per user: a second deck took over the
    first one's, and stopping the second deleted it. Each deck has its own, or none."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    first = deck(fake, tmp_path, "first", **env)
    second = deck(fake, tmp_path, "second", **env)
    with first:
        second.start().wait_ready()
        sockets = {name: control_sockets(server) for name, server in (("1", first), ("2", second))}
        assert not sockets["1"] & sockets["2"], sockets
        second.stop()
        assert all(Path(path).exists() for path in sockets["1"]), sockets
        assert first.get("/api/status").status_code == 200


def control_sockets(server: ServerProcess) -> set[str]:
    """The control sockets a deck's gunicorn said it listens on."""
    return set(re.findall(r"Control socket listening at (\S+)", server.output()))


@pytest.mark.parametrize("setting", [None, "0"])
def test_the_access_log_is_on_unless_turned_off(fake, tmp_path, setting):
    """A line per request on stderr by default; OLLAMA_DECK_ACCESS_LOG=0 leaves it out (a
    poll-heavy worker spent about a seventh of its time writing it)."""
    env = {"OLLAMA_DECK_ACCESS_LOG": setting} if setting is not None else {}
    server = deck(fake, tmp_path, **env)
    with server:
        assert server.get("/api/models").status_code == 200
        marker = "/api/status?marker=1"
        assert server.get(marker).status_code == 200
        if setting is None:
            wait_until(lambda: marker in server.output(), timeout=10)
    log = server.output()
    assert "Booting worker" in log
    assert (marker in log) is (setting is None), log


def test_a_new_client_is_answered_between_a_busy_connections_requests(fake, tmp_path):
    """A kept-alive connection whose next request is always there already (pipelined, or
    a client quicker than the deck) is served one request per turn: a new client's request
    is answered after a few of them, not after all. On SQLite nothing else makes a worker
    wait, so without the turn one connection kept the loop for as long as it had requests
    (a /healthz behind 8 busy clients took up to 3.6 s)."""
    pipelined = 400
    burst = b"GET /progress HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * pipelined
    with deck(fake, tmp_path) as server:
        server.get("/progress")  # the app is up: the first request does not count
        answered = [0]
        flood = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        try:
            flood.sendall(burst)

            def count() -> None:  # the burst's answers so far, by their status lines
                data = b""  # whole: a status line may be split between two reads
                while answered[0] < pipelined:
                    chunk = flood.recv(1 << 16)
                    if not chunk:
                        return
                    data += chunk
                    answered[0] = data.count(b"HTTP/1.1 200 ")

            reader = threading.Thread(target=count, daemon=True)
            reader.start()
            wait_until(lambda: answered[0] >= 5)  # the burst is being served
            before = answered[0]
            assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=30).ok
            during = answered[0] - before
            reader.join(30)
            assert answered[0] == pipelined
            # One turn each: a handful of the burst's answers at most, not the rest of it.
            assert during < pipelined // 4, f"{during} of the burst went first"
        finally:
            flood.close()
