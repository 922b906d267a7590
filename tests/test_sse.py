"""Server-Sent Events over real sockets: the werkzeug server and a real gunicorn + gevent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .harness import gunicorn_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .sse import SSEClient

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [200_000, 1_429, 485]
SETTINGS = {"OLLAMA_DECK_SSE_HEARTBEAT_SECONDS": 0.3}


@pytest.fixture(scope="module")
def gunicorn_deck(tmp_path_factory) -> Iterator[tuple[ServerProcess, FakeOllama]]:
    """One `gunicorn -k gevent -w 1` and its fake Ollama for the module's gunicorn cases.

    Shared, as starting gunicorn costs seconds: each test pulls models of its own names.
    """
    tmp = tmp_path_factory.mktemp("sse")
    with FakeOllama() as fake:
        env = dict(os.environ)
        settings = test_settings(fake.url, f"sqlite:///{tmp / 'deck.db'}", **SETTINGS)
        for key, value in settings.items():
            if key.startswith("OLLAMA_DECK_"):
                env[key] = str(value)
        env["OLLAMA_HOST"] = fake.url
        port = free_port()
        command = gunicorn_command("wsgi:app", port)
        log = tmp / "gunicorn.log"
        with ServerProcess(command, port=port, env=env, cwd=ROOT, log=log) as server:
            yield server, fake


@pytest.fixture(params=["werkzeug", pytest.param("gunicorn", marks=pytest.mark.gunicorn)])
def served(request) -> tuple:
    """(server, fake Ollama): werkzeug in this process, fresh per test, or the module's gunicorn."""
    if request.param == "gunicorn":
        return request.getfixturevalue("gunicorn_deck")
    make_app, serve = request.getfixturevalue("make_app"), request.getfixturevalue("serve")
    return serve(make_app(**SETTINGS)), request.getfixturevalue("fake_ollama")


@pytest.fixture
def server(served):
    return served[0]


@pytest.fixture
def fake(served):
    return served[1]


def start_pull(server, model: str) -> dict:
    response = server.post("/api/models/pull", json={"model": model})
    assert response.status_code == 202, response.text
    return response.json()


def test_stream_of_one_pull_ends_with_done(fake, server):
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, interval=0.005))
    op = start_pull(server, "m:1")
    stream = SSEClient(server.url + op["urls"]["stream"])
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-store"
    assert stream.response.headers["X-Accel-Buffering"] == "no"
    events = stream.read_to_end()
    assert stream.retry is not None
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    kinds = [e.event for e in events]
    assert kinds[-1] == "done"
    assert kinds.count("done") == 1
    assert "progress" in kinds and "log" in kinds
    assert events[-1].data["status"] == "succeeded"
    assert events[-1].data["percent"] == 100.0
    percents = [e.data["percent"] for e in events if e.event in ("progress", "done")]
    assert percents == sorted(percents)
    texts = [e.data["text"] for e in events if e.event == "log"]
    assert "verifying sha256 digest" in texts and texts[-1] == "pulled"


def test_stream_of_a_finished_operation_sends_its_state_and_ends(fake, server):
    fake.allow_pull("finished:1", PullScript(layers=LAYERS, step=50_000))
    op = start_pull(server, "finished:1")
    wait_until(lambda: server.get(op["urls"]["progress"]).json()["status"] == "succeeded")
    events = SSEClient(server.url + op["urls"]["stream"]).read_to_end()
    assert [e.event for e in events] == ["done"]


def test_last_event_id_replays_exactly_what_was_missed(fake, server):
    fake.allow_pull("replayed:1", PullScript(layers=LAYERS, step=10_000, hold_after=6))
    op = start_pull(server, "replayed:1")
    url = server.url + op["urls"]["stream"]
    witness = SSEClient(url)  # stays connected the whole time
    first = SSEClient(url)
    before = first.read_until(lambda e: e.event == "progress" and e.data["percent"] > 0)
    first.close()
    last_id = before[-1].id

    fake.release("replayed:1")
    seen_by_witness = witness.read_to_end()
    resumed = SSEClient(url, last_event_id=last_id).read_to_end()

    assert all(e.id > last_id for e in resumed)
    ids = [e.id for e in resumed]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    missed = [e for e in seen_by_witness if e.id > last_id]
    # Every log line is replayed, each once; progress is state, so the newest state is.
    assert [e.data for e in resumed if e.event == "log"] == [
        e.data for e in missed if e.event == "log"
    ]
    assert resumed[-1].event == "done"
    assert resumed[-1].data == missed[-1].data
    # Nothing from before the reconnect comes again.
    old_ids = {e.id for e in before}
    assert not old_ids & set(ids)


def test_all_operations_stream_shows_two_concurrent_pulls(fake, server):
    for name in ("a:1", "b:1"):
        fake.allow_pull(name, PullScript(layers=LAYERS, step=10_000, hold_after=3))
    stream = SSEClient(server.url + "/progress/stream")
    a = start_pull(server, "a:1")
    b = start_pull(server, "b:1")
    wait_until(lambda: server.get(a["urls"]["progress"]).json()["percent"] > 0)
    wait_until(lambda: server.get(b["urls"]["progress"]).json()["percent"] > 0)
    fake.release("a:1")
    fake.release("b:1")
    done = set()

    def both_done(event) -> bool:
        if event.event == "done":
            done.add(event.data["id"])
        return done == {a["id"], b["id"]}

    events = [e for e in stream.read_until(both_done) if e.id is not None]
    stream.close()
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for op in (a, b):
        mine = [e for e in events if (e.data.get("id") or e.data.get("operation_id")) == op["id"]]
        assert {"progress", "log", "done"} <= {e.event for e in mine}
        assert mine[-1].data["status"] == "succeeded"


def test_all_operations_stream_resumes_across_operations(fake, server):
    for name in ("first:1", "second:1"):
        fake.allow_pull(name, PullScript(layers=LAYERS, step=50_000))
    a = start_pull(server, "first:1")
    wait_until(lambda: server.get(a["urls"]["progress"]).json()["status"] == "succeeded")
    mark = server.get(a["urls"]["progress"]).json()["seq"]
    b = start_pull(server, "second:1")
    wait_until(lambda: server.get(b["urls"]["progress"]).json()["status"] == "succeeded")
    stream = SSEClient(server.url + "/progress/stream", last_event_id=mark)
    events = stream.read_until(lambda e: e.event == "done")
    stream.close()
    assert {e.data.get("id") or e.data.get("operation_id") for e in events} == {b["id"]}
    assert events[0].data["text"] == "pull of second:1 queued"


def test_idle_stream_gets_heartbeat_comments(server):
    stream = SSEClient(server.url + "/progress/stream", comments=True)
    events = stream.read_until(lambda e: e.comment == "keep-alive", timeout=10)
    stream.close()
    assert events[0].comment.startswith("worker ")  # which process serves the stream


def test_a_client_that_disconnects_is_let_go(server):
    """A closed stream is noticed at the next heartbeat at the latest, and freed."""
    watchers = lambda: server.get("/api/status").json()["watchers"]  # noqa: E731
    streams = [SSEClient(server.url + "/progress/stream", comments=True) for _ in range(3)]
    for stream in streams:
        stream.next()  # the worker comment: the stream is open
    wait_until(lambda: watchers() == 3)
    for stream in streams[:2]:
        stream.close()
    wait_until(lambda: watchers() == 1)
    streams[2].close()
    wait_until(lambda: watchers() == 0)


def test_stream_errors_are_json(server):
    response = server.get("/progress/00000000-0000-0000-0000-000000000000/stream")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = server.get("/progress/stream", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
