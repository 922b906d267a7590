"""The security rules against a real ``ollama-deck serve`` (gunicorn, one gevent worker)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from ollama_deck.services.guesses import FREE_MISTAKES
from ollama_deck.testing import FakeOllama

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .test_security import exchange

pytestmark = pytest.mark.gunicorn

TOKEN = "tok-3f9a1c-never-in-the-log"
WRONG = "wrong-77b2e0-never-in-the-log"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        fake.add_model("llama3.2:1b")
        yield fake


@pytest.fixture(scope="module")
def served(fake, tmp_path_factory) -> Iterator[ServerProcess]:
    """``ollama-deck serve`` with a token; its output (the access log too) in ``served.log``."""
    tmp = tmp_path_factory.mktemp("served")
    env = dict(os.environ)
    env.update(
        OLLAMA_DECK_TOKEN=TOKEN,
        OLLAMA_DECK_BODY_TIMEOUT="1",
        OLLAMA_DECK_HEARTBEAT_SECONDS="0.2",
        OLLAMA_DECK_STALE_SECONDS="1",
    )
    port = free_port()
    command = deck_command(
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ollama",
        fake.url,
        "--database-url",
        f"sqlite:///{tmp / 'deck.db'}",
    )
    server = ServerProcess(
        command, port=port, env=env, log=tmp / "serve.log", ready_headers=BEARER, keep_alive=False
    )
    with server:
        yield server


def test_half_sent_body_is_cut_off_while_others_are_served(served):
    head = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=30)
    try:
        sock.sendall(head + b'{"model": "')
        # While that client holds its body, the one worker still answers everyone else.
        assert served.get("/api/status", headers=BEARER).status_code == 200
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408
        assert json.loads(response.read())["error"]["code"] == "body_timeout"
        assert sock.recv(1) == b""  # the connection is closed
    finally:
        sock.close()
    assert served.get("/progress", headers=BEARER).json()["operations"] == []


def stops_reading(sock: socket.socket, announced: int) -> bool:
    """Whether the server ends the connection before the client could send its whole body
    (a server that reads and discards it instead keeps its one worker busy)."""
    chunk = b"[" * 65536
    try:
        for _ in range(0, announced, len(chunk)):
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return True
    return False


@pytest.mark.parametrize("authorization", [TOKEN, WRONG])
def test_announced_huge_body_is_refused_and_never_read(served, authorization):
    """413 at once, token or not (the size is checked first), and the rest is not read."""
    head = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + authorization.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n"
    )
    response, sock = exchange(served.url, head + b"[[[[")
    try:
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
        assert stops_reading(sock, 52428800)
    finally:
        sock.close()


def test_refused_request_with_a_body_ends_its_connection(served):
    head = (
        b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
    )
    response, sock = exchange(served.url, head + b"[[[[")
    try:
        assert response.status == 401
        assert response.read()
        # The rest of the body, then a second request on the same connection: a server
        # that read the body to reuse the connection would answer it.
        rest = b"]" * (60000 - 4) + b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        try:
            sock.sendall(rest + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
            answer = sock.recv(100)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b""
    finally:
        sock.close()


def test_deep_json_and_rebinding_host_under_gunicorn(served, fake):
    deep = b"[" * 30_000 + b"]" * 30_000
    response = served.post(
        "/api/models/pull", data=deep, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    rebound = served.get("/api/models", headers={**BEARER, "Host": "attacker.example"})
    assert rebound.status_code == 421
    assert fake.installed() == ["llama3.2:1b"]


def test_tokens_are_checked_and_never_logged(served):
    assert (
        served.get("/api/models", headers={"Authorization": f"Bearer {WRONG}"}).status_code == 401
    )
    assert served.get("/api/models", headers=BEARER).status_code == 200
    opened = served.post("/api/session", headers=BEARER)
    name = f"ollama_deck_session_{served.port}"
    cookie = opened.cookies.get(name)
    assert served.get("/api/models", cookies={name: cookie}).status_code == 200
    # The access log has every request line by the time the next request is answered.
    wait_until(lambda: "/api/session" in served.log.read_text())
    log = served.log.read_text()
    assert TOKEN not in log and WRONG not in log and cookie not in log


def test_half_sent_headers_are_cut_off(served):
    """gunicorn bounds the wait for headers itself (its keep-alive timeout): the connection
    of a client that never finishes its request line ends, with nothing answered."""
    sock = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=30)
    try:
        sock.sendall(b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        assert sock.recv(100) == b""
    finally:
        sock.close()


def test_wrong_tokens_wait_while_others_are_served(served):
    """A guesser's answers are rationed (429 unread) without sleeping a worker: on the one
    gevent worker a session of the same address is served meanwhile, and the right token
    works once the wait is over."""
    name = f"ollama_deck_session_{served.port}"
    session = served.post("/api/session", headers=BEARER).cookies.get(name)
    statuses = []
    for i in range(30):
        statuses.append(
            served.get("/api/status", headers={"Authorization": f"Bearer guess-{i}"}).status_code
        )
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {401} and len(statuses) - 1 >= FREE_MISTAKES + 1
    refused = served.get("/api/status", headers=BEARER)  # not looked at during the wait
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert served.get("/api/status", cookies={name: session}).status_code == 200
    wait_until(lambda: served.get("/api/status", headers=BEARER).status_code == 200)


@pytest.fixture(scope="module")
def two_workers(fake, tmp_path_factory) -> Iterator[ServerProcess]:
    """``ollama-deck serve --workers 2`` with a token, over one SQLite file; each request
    on a new connection, so either worker may answer it."""
    tmp = tmp_path_factory.mktemp("two")
    env = dict(
        os.environ,
        OLLAMA_DECK_TOKEN=TOKEN,
        OLLAMA_DECK_SSE_HEARTBEAT_SECONDS="0.3",
        OLLAMA_DECK_POLL_SECONDS="0.2",
    )
    port = free_port()
    command = deck_command(
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--ollama",
        fake.url,
        "--database-url",
        f"sqlite:///{tmp / 'deck.db'}",
    )
    server = ServerProcess(
        command, port=port, env=env, log=tmp / "serve.log", ready_headers=BEARER, keep_alive=False
    )
    with server:
        yield server


def workers_seen(server: ServerProcess, headers: dict[str, str]) -> set[int]:
    seen: set[int] = set()
    wait_until(
        lambda: (
            seen.add(server.get("/api/status", headers=headers).json()["pid"]) or len(seen) == 2
        ),
        timeout=30,
        interval=0,
    )
    return seen


@pytest.mark.scaleout
def test_session_replay_after_logout_under_two_workers(two_workers, fake):
    name = f"ollama_deck_session_{two_workers.port}"
    session_id = two_workers.post("/api/session", headers=BEARER).cookies.get(name)
    cookie = {"Cookie": f"{name}={session_id}"}
    assert len(workers_seen(two_workers, cookie)) == 2  # both workers know the session

    stream = requests.get(
        two_workers.url + "/progress/stream", headers=cookie, stream=True, timeout=10
    )
    assert stream.status_code == 200
    assert two_workers.delete("/api/session", headers=cookie).status_code == 200
    try:
        # The open stream, on whichever worker, ends within heartbeats (0.3 s here).
        deadline = time.monotonic() + 15
        for _ in stream.iter_content(chunk_size=None):
            assert time.monotonic() < deadline, "the stream outlived its session"
    finally:
        stream.close()
    for _ in range(20):  # new connections: both workers answer some
        assert two_workers.get("/api/status", headers=cookie).status_code == 401
    pull = two_workers.post("/api/models/pull", json={"model": "qwen2.5:0.5b"}, headers=cookie)
    assert pull.status_code == 401
    assert two_workers.get("/progress", headers=BEARER).json()["operations"] == []
    assert len(workers_seen(two_workers, BEARER)) == 2  # both were up all along


# ---------------------------------------------------------------- what gunicorn refuses

SERVE_LIMITS = {"line": 4094, "fields": 40, "field_size": 4096}  # ollama_deck/serving.py


def request_head(*fields: bytes, target: bytes = b"/api/status") -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def refusal(served, data: bytes) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of the answer to ``data``; the connection then ends."""
    response, sock = exchange(served.url, data)
    try:
        body = json.loads(response.read())
        assert sock.recv(1) == b""
    finally:
        sock.close()
    return response.status, dict(response.getheaders()), body


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        # More header fields than any browser or proxy sends, no token: refused before the
        # app could check the token (which would say 401).
        (
            request_head(*(b"X-Field-%d: v" % i for i in range(SERVE_LIMITS["fields"] + 1))),
            431,
            "headers_too_large",
        ),
        (request_head(b"X-Big: " + b"a" * SERVE_LIMITS["field_size"]), 431, "headers_too_large"),
        (request_head(target=b"/" + b"a" * SERVE_LIMITS["line"]), 414, "request_line_too_long"),
        (b"GARBAGE\r\n\r\n", 400, "malformed_request"),
        (request_head(b"Bad Header"), 400, "malformed_request"),
    ],
    ids=["fields", "field-size", "request-line", "request-line-garbage", "header-garbage"],
)
def test_what_gunicorn_refuses_is_answered_in_json(served, data, status, code):
    got, headers, body = refusal(served, data)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert body["error"]["code"] == code and body["error"]["message"]
    assert served.get("/api/status", headers=BEARER).status_code == 200


def test_the_header_limits_leave_room_for_a_browser(served):
    """What a browser sends through a proxy: 30 fields, a 4 KB Cookie header among them."""
    fields = {f"X-Proxy-{i}": "10.0.0.1" for i in range(12)}
    fields["Cookie"] = "; ".join(f"app{i}=" + "c" * 390 for i in range(10))
    fields["User-Agent"] = "Mozilla/5.0 " + "x" * 200
    assert len(fields["Cookie"]) < SERVE_LIMITS["field_size"] - len("Cookie: \r\n")
    response = served.get("/api/status", headers={**BEARER, **fields})
    assert response.status_code == 200


# ---------------------------------------------------------------- malformed chunked bodies

CHUNKED_HEAD = (
    b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n{}\r\n0\r\n\r\n",  # a chunk size that is no number
        b"-2\r\n{}\r\n0\r\n\r\n",  # a negative one
        b"2\r\n{}XX0\r\n\r\n",  # a chunk not ended by CRLF
        b"2;\x01\r\n{}\r\n0\r\n\r\n",  # a chunk extension with a control character
        b"2\r\n{}\r\n0\r\nnot a trailer\r\n\r\n",  # a malformed trailer
    ],
    ids=["size", "negative", "terminator", "extension", "trailer"],
)
def test_a_malformed_chunked_body_is_a_400_not_a_500(served, body):
    response, sock = exchange(served.url, CHUNKED_HEAD + body)
    try:
        assert response.status == 400
        assert json.loads(response.read())["error"]["code"] == "malformed_body"
        assert sock.recv(1) == b""  # its framing is broken: the connection ends
    finally:
        sock.close()
    assert served.get("/progress", headers=BEARER).json()["operations"] == []
    assert "Traceback" not in served.log.read_text()
