"""Pulls end to end against the fake Ollama over a real socket.

Most tests drain the queue in the test's own thread (``runner.drain()``, no runner thread,
nothing to wait for); those about threads, cancelling a running pull, limits and restarts
serve the app over a real socket with its runner running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from ollama_deck.state import setup_of
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .harness import HttpClient
from .helpers import wait_until

FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
LAYERS = [400_000, 1_429, 7_711, 96, 485]


def start_pull(live, model: str) -> dict:
    response = live.post("/api/models/pull", json={"model": model})
    assert response.status_code == 202, response.text
    return response.json()


def get_op(live, op_id: str, **params) -> dict:
    response = live.get(f"/progress/{op_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def wait_final(live, op_id: str, timeout: float = 15.0) -> dict:
    return wait_until(
        lambda: (op := get_op(live, op_id, log=300))["status"] in FINAL and op, timeout
    )


def wait_status(live, op_id: str, status: str, timeout: float = 10.0) -> dict:
    return wait_until(lambda: (op := get_op(live, op_id))["status"] == status and op, timeout)


def log_texts(op: dict) -> list[str]:
    return [line["text"] for line in op["log"]]


class Drained:
    """An app whose runner never starts a thread: the test runs the queue with ``drain``."""

    def __init__(self, app) -> None:
        self.client = app.test_client()
        self.client.get("/progress")  # the first request builds the deck
        self.deck = setup_of(app).state(app)
        self.runner = self.deck.runner

    def pull(self, model: str) -> dict:
        response = self.client.post("/api/models/pull", json={"model": model})
        assert response.status_code == 202, response.text
        return response.json

    def op(self, op_id: str) -> dict:
        response = self.client.get(f"/progress/{op_id}", query_string={"log": 300})
        assert response.status_code == 200, response.text
        return response.json

    def drain(self) -> list[str]:
        return self.runner.drain()


@pytest.fixture
def drained(make_app):
    def build(**overrides) -> Drained:
        return Drained(make_app(OLLAMA_DECK_START_RUNNER=False, **overrides))

    return build


def test_multi_layer_pull_succeeds_with_a_rising_bar(fake_ollama, drained, monkeypatch):
    deck = drained()
    fake_ollama.allow_pull(
        "llama3.2:1b", PullScript(layers=LAYERS, step=10_000, interval=0.01), parameter_size="1.2B"
    )
    op = deck.pull("llama3.2:1b")
    assert op["created"] is True
    assert op["status"] == "queued"  # no runner thread: it waits for the drain
    assert op["model"] == "llama3.2:1b"
    assert op["urls"]["progress"] == f"/progress/{op['id']}"
    assert op["urls"]["stream"] == f"/progress/{op['id']}/stream"

    store = deck.deck.store
    record = store.record_progress
    seen = []

    def recorded(*args, **kwargs):  # every state the pull wrote, as a poll would see it
        row = record(*args, **kwargs)
        seen.append(row)
        return row

    monkeypatch.setattr(store, "record_progress", recorded)
    assert deck.drain() == [op["id"]]
    final = deck.op(op["id"])
    percents = [s["percent"] for s in seen] + [final["percent"]]
    assert final["status"] == "succeeded", final
    assert percents == sorted(percents), "the percent went down while running"
    assert any(0 < p < 100 for p in percents), "no progress was seen between 0 and 100"
    assert final["percent"] == 100.0
    assert final["total_bytes"] == final["completed_bytes"] == sum(LAYERS)
    assert final["phase"] == "done"
    assert final["finished_at"] is not None

    texts = log_texts(final)
    assert texts[0] == "pull of llama3.2:1b queued"
    assert "pulling manifest" in texts
    assert texts.index("pulling manifest") < texts.index("verifying sha256 digest")
    assert texts[-2:] == ["success", "pulled"]

    listing = deck.client.get("/api/models").json
    assert "llama3.2:1b" in [m["name"] for m in listing["models"]]
    assert listing["stale"] is False
    assert listing["total_size"] == sum(int(m["size"]) for m in listing["models"])
    assert listing["pulls"] == []


@pytest.mark.parametrize("log_lines", [300, 4])
def test_every_answer_and_event_of_an_operation_counts_its_log(
    fake_ollama, database_url, make_app, monkeypatch, log_lines
):
    deck = Drained(
        make_app(
            database_url=database_url,
            OLLAMA_DECK_START_RUNNER=False,
            OLLAMA_DECK_LOG_LINES=log_lines,
        )
    )
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[20_000, 100], step=5_000))
    op = deck.pull("llama3.2:1b")
    assert op["log_count"] == 1  # "pull of llama3.2:1b queued"
    store = deck.deck.store
    written = []
    for name in ("record_progress", "finish"):
        method = getattr(store, name)
        monkeypatch.setattr(
            store, name, lambda *a, _m=method, **k: written.append(row := _m(*a, **k)) or row
        )
    deck.drain()

    answer = deck.client.get(f"/progress/{op['id']}", query_string={"log": log_lines})
    final = answer.json
    kept = len(final["log"])
    assert kept == log_lines if log_lines < 10 else kept > 4  # trimmed to 4, or all of it
    assert final["log_count"] == kept
    assert deck.client.get("/progress").json["operations"][0]["log_count"] == kept
    # What the runner's writes published (the live events) counted as they went.
    assert [row["log_count"] for row in written][-1] == kept
    assert all(0 < row["log_count"] <= log_lines for row in written)
    # A stream that replays gets the same count.
    events, _ = deck.deck.feed.replay(0, op["id"])
    done = [e for e in events if e.kind == "done"]
    data = json.loads(done[-1].frame.decode().split("data: ", 1)[1])
    assert data["log_count"] == kept


def test_cancel_a_running_pull(fake_ollama, live):
    fake_ollama.allow_pull("qwen2.5:0.5b", PullScript(layers=LAYERS, step=10_000, hold_after=5))
    op = start_pull(live, "qwen2.5:0.5b")
    wait_until(lambda: get_op(live, op["id"])["percent"] > 0)

    response = live.post(f"/progress/{op['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    final = get_op(live, op["id"], log=300)
    assert final["status"] == "cancelled"
    assert "cancel requested" in log_texts(final)
    assert "qwen2.5:0.5b" not in [m["name"] for m in live.get("/api/models").json()["models"]]
    # Cancelling again is a conflict, not a change.
    assert live.post(f"/progress/{op['id']}/cancel").status_code == 409


def test_cancel_a_queued_pull(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_MAX_CONCURRENT_PULLS=1)
    fake_ollama.allow_pull("a:1", PullScript(layers=LAYERS, step=10_000))
    fake_ollama.allow_pull("b:1", PullScript(layers=LAYERS, step=10_000))
    first = deck.pull("a:1")
    second = deck.pull("b:1")
    assert deck.op(second["id"])["status"] == "queued"
    response = deck.client.post(f"/progress/{second['id']}/cancel")
    assert response.status_code == 200
    assert response.json["status"] == "cancelled"
    assert "cancelled before it started" in log_texts(deck.op(second["id"]))
    assert deck.drain() == [first["id"]]
    assert fake_ollama.pull_count("b:1") == 0
    assert deck.op(first["id"])["status"] == "succeeded"


def test_queued_pulls_drain_one_by_one_in_order(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_MAX_CONCURRENT_PULLS=1)
    for name in ("a:1", "b:1", "c:1"):
        fake_ollama.allow_pull(name, PullScript(layers=LAYERS, step=50_000))
    ids = [deck.pull(n)["id"] for n in ("a:1", "b:1", "c:1")]
    assert deck.drain() == ids
    assert [deck.op(i)["status"] for i in ids] == ["succeeded"] * 3
    assert deck.drain() == []  # nothing queued: returns at once


def test_unknown_model_fails_with_ollamas_message(drained):
    deck = drained()
    op = deck.pull("no-such-model:7b")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert final["error"] == "pull model manifest: file does not exist"
    assert final["message"] == "Ollama: pull model manifest: file does not exist"


def test_error_line_mid_stream_fails(fake_ollama, drained):
    deck = drained()
    fake_ollama.allow_pull(
        "m:1", PullScript(layers=LAYERS, step=10_000, error_after=5, error="disk full")
    )
    op = deck.pull("m:1")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert final["error"] == "disk full"
    assert 0 < final["percent"] < 100


def test_dropped_connection_fails_once_the_wait_is_over(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_OLLAMA_WAIT_SECONDS=0)
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, drop_after=5))
    op = deck.pull("m:1")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert "lost" in final["error"] or "ended before" in final["error"]


def test_a_running_pull_waits_for_a_restarting_ollama_and_resumes(fake_ollama, live):
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, hold_after=3))
    op = start_pull(live, "m:1")
    before = wait_until(lambda: (s := get_op(live, op["id"]))["percent"] > 0 and s)
    fake_ollama.stop()  # cuts the stream: Ollama went away mid-pull
    waiting = wait_until(
        lambda: (
            "waiting for Ollama" in ((s := get_op(live, op["id"], log=300))["message"] or "") and s
        )
    )
    assert waiting["status"] == "running"
    assert any("was lost; waiting for it" in t for t in log_texts(waiting))
    assert waiting["percent"] >= before["percent"]
    fake_ollama.start()  # the same port, and the partial blobs are still on its disk
    final = wait_final(live, op["id"])
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 1  # the same run went on: not failed, not re-queued
    assert fake_ollama.pull_count("m:1") == 2


def test_ollama_down_fails_clearly_once_the_wait_is_over(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_OLLAMA_WAIT_SECONDS=0)
    fake_ollama.stop()
    op = deck.pull("llama3.2:1b")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert "not reachable" in final["error"]
    assert fake_ollama.url in final["error"]


def test_a_silent_stream_is_retried_then_fails_as_stalled(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_PULL_STALL_TIMEOUT=0.3, OLLAMA_DECK_PULL_RETRIES=1)
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, hold_after=3))
    op = deck.pull("m:1")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert final["error"].startswith("stalled: default sent nothing")
    assert "sent nothing for 0.3 s" in final["error"]
    assert "1 retries did not help" in final["error"]
    assert fake_ollama.pull_count("m:1") == 2  # reopened once
    fake_ollama.release("m:1")


def test_concurrent_pulls_of_one_model_share_one_operation(fake_ollama, live):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=LAYERS, step=10_000, hold_after=2))
    barrier = threading.Barrier(4)
    results = []

    def pull(name: str) -> None:
        barrier.wait()
        response = live.session.post(
            live.url + "/api/models/pull", json={"model": name}, timeout=10
        )
        results.append(response.json())

    # Different spellings of one model: Ollama's defaults and case make them equal.
    names = ["llama3.2:1b", "LLAMA3.2:1b", "library/llama3.2:1b", "llama3.2:1b"]
    threads = [threading.Thread(target=pull, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len({r["id"] for r in results}) == 1
    assert sorted(r["created"] for r in results) == [False, False, False, True]
    fake_ollama.release("llama3.2:1b")
    assert wait_final(live, results[0]["id"])["status"] == "succeeded"
    assert fake_ollama.pull_count("llama3.2:1b") == 1


def test_a_pull_right_after_a_cancel_in_another_process_is_a_new_operation(
    fake_ollama, live, drained
):
    """The cancel lands on a process that does not run the pull (as on one of several
    workers), so it can only ask; a pull right after must not join the one being cancelled."""
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, hold_after=2))
    old = start_pull(live, "m:1")
    wait_until(lambda: get_op(live, old["id"])["percent"] > 0)
    other = drained()  # a second deck on the same database, running nothing itself

    cancel = other.client.post(f"/progress/{old['id']}/cancel")
    assert cancel.status_code == 202 and cancel.json["cancel_requested"] is True
    again = other.pull("m:1")
    assert again["created"] is True and again["id"] != old["id"], again
    assert again["status"] == "queued"
    assert other.pull("m:1")["id"] == again["id"]  # the new one is what later pulls join

    # The runner sees the request at its next heartbeat and closes the held stream.
    assert wait_final(live, old["id"])["status"] == "cancelled"
    fake_ollama.release("m:1")
    assert wait_final(live, again["id"])["status"] == "succeeded"
    assert fake_ollama.pull_count("m:1") == 2
    store = other.deck.store
    ended, started = store.get(old["id"])["finished_at"], store.get(again["id"])["started_at"]
    assert started >= ended, "the new pull started before the cancelled stream closed"


def test_third_pull_waits_queued_at_the_limit(fake_ollama, live):
    for name in ("a:1", "b:1", "c:1"):
        fake_ollama.allow_pull(name, PullScript(layers=LAYERS, step=10_000, hold_after=1))
    a, b, c = (start_pull(live, n) for n in ("a:1", "b:1", "c:1"))
    wait_status(live, a["id"], "running")
    wait_status(live, b["id"], "running")
    assert get_op(live, c["id"])["status"] == "queued"
    running = live.get("/progress", params={"status": "running"}).json()["operations"]
    assert {o["id"] for o in running} == {a["id"], b["id"]}

    fake_ollama.release("a:1")
    assert wait_final(live, a["id"])["status"] == "succeeded"
    wait_status(live, c["id"], "running")
    fake_ollama.release("b:1")
    fake_ollama.release("c:1")
    assert wait_final(live, b["id"])["status"] == "succeeded"
    assert wait_final(live, c["id"])["status"] == "succeeded"


SERVE_SCRIPT = """
import sys
from werkzeug.serving import make_server
from ollama_deck import create_app
server = make_server("127.0.0.1", 0, create_app(), threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.mark.fault
def test_new_instance_resumes_a_pull_whose_process_died(fake_ollama, sqlite_url, make_app, serve):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=LAYERS, step=10_000, hold_after=8))
    env = dict(os.environ)
    for key, value in test_settings(fake_ollama.url, sqlite_url).items():
        if key.startswith("OLLAMA_DECK_"):
            env[key] = str(value)
    env["OLLAMA_HOST"] = fake_ollama.url
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(child.stdout.readline())
        remote = HttpClient(f"http://127.0.0.1:{port}")
        op = start_pull(remote, "llama3.2:1b")
        held = wait_until(lambda: (s := get_op(remote, op["id"]))["percent"] > 0 and s)
    finally:
        child.send_signal(signal.SIGKILL)  # no clean shutdown: the runner just vanishes
        child.wait(10)

    # The resumed pull should run to the end this time.
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=LAYERS, step=10_000))
    live = serve(make_app())
    final = wait_final(live, op["id"], timeout=20)
    assert final["status"] == "succeeded"
    assert final["attempts"] == 2
    assert final["percent"] == 100.0
    texts = log_texts(final)
    assert any("runner stopped" in t for t in texts)
    assert any("resuming" in t for t in texts)
    assert held["percent"] <= final["percent"]


def test_restart_marks_interrupted_when_configured(fake_ollama, make_app, serve):
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000, hold_after=3))
    first = make_app()
    live = serve(first)
    op = start_pull(live, "m:1")
    wait_until(lambda: get_op(live, op["id"])["percent"] > 0)
    # Simulate a dead runner: its maintenance thread (heartbeats, recovery) stops, and the
    # pull it holds writes nothing more.
    runner = setup_of(first).state(first).runner
    runner._stopping.set()

    second = serve(make_app(OLLAMA_DECK_ON_RESTART="interrupt"))
    final = wait_final(second, op["id"])
    assert final["status"] == "interrupted"
    assert "pull it again" in log_texts(final)[-1]
    fake_ollama.release("m:1")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "missing_body"),
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"{}", "model_required"),
        (b'{"model": ""}', "model_required"),
        (b'{"model": 42}', "model_required"),
        (b'{"model": "bad name!"}', "invalid_model_name"),
        (b'{"model": "<img src=x onerror=alert(1)>"}', "invalid_model_name"),
        (b'{"model": "a/b/c/d"}', "invalid_model_name"),
    ],
)
def test_bad_pull_requests_get_a_json_400(client, body, code):
    response = client.post(
        "/api/models/pull", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]
    assert client.get("/progress").json["operations"] == []


def test_progress_lookups(client):
    assert client.get("/progress/not-a-uuid").status_code == 404
    missing = client.get("/progress/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    assert client.get("/progress?status=bogus").status_code == 400
    assert client.get("/progress?limit=0").status_code == 400
    assert client.get("/progress?limit=ten").status_code == 400
    assert client.post("/progress/00000000-0000-0000-0000-000000000000/cancel").status_code == 404


def test_delete_an_operation_only_when_finished(fake_ollama, drained):
    deck = drained()
    fake_ollama.allow_pull("m:1", PullScript(layers=LAYERS, step=10_000))
    op = deck.pull("m:1")
    response = deck.client.delete(f"/progress/{op['id']}")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"
    deck.drain()
    assert deck.op(op["id"])["status"] == "succeeded"
    assert deck.client.delete(f"/progress/{op['id']}").status_code == 200
    assert deck.client.get(f"/progress/{op['id']}").status_code == 404


def test_clear_finished_forgets_every_finished_operation_and_no_active_one(
    fake_ollama, drained, database_url
):
    deck = drained(database_url=database_url)
    for name in ("a:1", "b:1", "c:1"):
        fake_ollama.allow_pull(name, PullScript(layers=[10_000], step=5_000))
    done = [deck.pull(name)["id"] for name in ("a:1", "b:1")]
    deck.drain()
    waiting = deck.pull("c:1")["id"]  # queued: no runner thread
    answer = deck.client.delete("/progress")
    assert answer.status_code == 200
    assert sorted(answer.json["deleted"]) == sorted(done)
    assert [op["id"] for op in deck.client.get("/progress").json["operations"]] == [waiting]
    for op_id in done:
        assert deck.client.get(f"/progress/{op_id}").status_code == 404
    assert deck.client.delete("/progress").json == {"deleted": []}
