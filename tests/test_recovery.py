"""Ownership, cancel and recovery of operations, bounds, the cached list and /healthz, with
the app in this process over a real socket and a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from sqlalchemy import update

from ollama_deck.db import Operation
from ollama_deck.services.runner import process_gone
from ollama_deck.services.runner import runner_identity
from ollama_deck.testing import PullScript

from .conftest import deck_of
from .helpers import wait_until

OP = Operation.__table__
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def quiet_app(make_app, **overrides):
    """An app whose maintenance thread stays asleep during a test: only what the test does
    (a request, an explicit recover) touches the operations."""
    return make_app(OLLAMA_DECK_HEARTBEAT_SECONDS=3600, **overrides)


def running_row(app, model: str, runner_id: str, heartbeat_age: float = 0.0, **fields) -> str:
    """A running operation held by ``runner_id`` whose last heartbeat was that long ago."""
    state = deck_of(app)
    row = state.store.create(
        kind="pull", model=model, model_key=model, host=state.runner.settings.host
    )
    values = dict(status="running", runner_id=runner_id, heartbeat_at=time.time() - heartbeat_age)
    values.update(fields)
    with state.engine.begin() as conn:
        conn.execute(update(OP).where(OP.c.id == row["id"]).values(**values))
    return row["id"]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(10)
    return child.pid


def test_cancel_of_an_operation_no_runner_holds_ends_it_at_once(fake_ollama, make_app, serve):
    app = quiet_app(make_app)
    live = serve(app)
    hostname, _ = runner_identity()
    cases = {
        "stale:1": running_row(app, "stale:1", "elsewhere:1:abc", heartbeat_age=3600),
        "dead:1": running_row(app, "dead:1", f"{hostname}:{dead_pid()}:abc"),
        "mine:1": running_row(app, "mine:1", deck_of(app).runner.runner_id),
    }
    for model, op_id in cases.items():
        response = live.post(f"/progress/{op_id}/cancel")
        assert response.status_code == 200, (model, response.text)
        assert response.json()["status"] == "cancelled"
        log = live.get(f"/progress/{op_id}").json()["log"]
        assert log[-1]["text"] == "cancelled (no runner held it)"
        assert fake_ollama.pull_count(model) == 0


def test_cancel_of_an_operation_a_live_runner_holds_is_only_requested(make_app, serve):
    app = quiet_app(make_app)
    live = serve(app)
    # Another live process on this machine (this one) holds it, beating.
    hostname, pid = runner_identity()
    op_id = running_row(app, "busy:1", f"{hostname}:{pid}:other")
    response = live.post(f"/progress/{op_id}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    assert live.get(f"/progress/{op_id}").json()["status"] == "running"


def test_recovery_never_restarts_an_operation_whose_cancel_was_requested(
    fake_ollama, make_app, serve
):
    app = quiet_app(make_app)
    live = serve(app)
    hostname, _ = runner_identity()
    cancelled = running_row(
        app, "c:1", f"{hostname}:{dead_pid()}:abc", cancel_requested=True, percent=40.0
    )
    resumed = running_row(app, "r:1", f"{hostname}:{dead_pid()}:abc", percent=40.0)
    fake_ollama.allow_pull("r:1", PullScript(layers=[1_000], step=1_000))
    taken = deck_of(app).runner.recover()
    assert set(taken) == {cancelled, resumed}
    final = live.get(f"/progress/{cancelled}").json()
    assert final["status"] == "cancelled"
    assert final["log"][-1]["text"] == "its runner stopped; cancelled as requested"
    deck_of(app).runner.dispatch()
    done = wait_until(
        lambda: (s := live.get(f"/progress/{resumed}").json())["status"] in FINAL and s
    )
    assert done["status"] == "succeeded"
    assert fake_ollama.pull_count("c:1") == 0


def test_a_live_runner_on_this_machine_is_not_taken_over(make_app):
    app = quiet_app(make_app)
    hostname, pid = runner_identity()
    op_id = running_row(app, "alive:1", f"{hostname}:{pid}:other")
    assert deck_of(app).runner.recover() == []
    assert deck_of(app).store.get(op_id)["status"] == "running"


def test_heartbeats_cover_only_live_jobs(make_app):
    app = quiet_app(make_app)
    state = deck_of(app)
    runner_id = state.runner.runner_id
    live_op = running_row(app, "live:1", runner_id, heartbeat_age=100)
    zombie = running_row(app, "zombie:1", runner_id, heartbeat_age=100)
    state.store.heartbeat(runner_id, [live_op])
    assert state.store.get(live_op)["heartbeat_at"] > time.time() - 10
    assert state.store.get(zombie)["heartbeat_at"] < time.time() - 99


def test_process_gone():
    assert process_gone(dead_pid())
    assert not process_gone(os.getpid())


def test_queue_limit_answers_429_but_joining_still_works(fake_ollama, make_app, serve):
    live = serve(make_app(OLLAMA_DECK_MAX_QUEUED=2, OLLAMA_DECK_MAX_CONCURRENT_PULLS=1))
    for name in ("a:1", "b:1", "c:1", "d:1"):
        fake_ollama.allow_pull(name, PullScript(layers=[10_000], step=1_000, hold_after=1))
    first = live.post("/api/models/pull", json={"model": "a:1"}).json()
    wait_until(lambda: live.get(f"/progress/{first['id']}").json()["status"] == "running")
    assert live.post("/api/models/pull", json={"model": "b:1"}).status_code == 202
    assert live.post("/api/models/pull", json={"model": "c:1"}).status_code == 202
    full = live.post("/api/models/pull", json={"model": "d:1"})
    assert full.status_code == 429
    assert full.json()["error"]["code"] == "queue_full"
    assert int(full.headers["Retry-After"]) > 0
    joined = live.post("/api/models/pull", json={"model": "b:1"})
    assert joined.status_code == 202 and joined.json()["created"] is False
    for name in ("a:1", "b:1", "c:1"):
        fake_ollama.release(name)


def test_finished_operations_are_kept_by_count(make_app):
    app = quiet_app(make_app)
    store = deck_of(app).store
    ids = []
    for i in range(6):
        row = store.create(kind="pull", model=f"m{i}:1", model_key=f"m{i}:1", host="h")
        store._update(row["id"], {"status": "failed", "finished_at": 1000.0 + i}, ["x"])
        ids.append(row["id"])
    active = store.create(kind="pull", model="active:1", model_key="active:1", host="h")
    assert store.purge_finished(None, keep=2) == 4
    left = {r["id"] for r in store.list(limit=100)}
    assert left == {ids[4], ids[5], active["id"]}
    assert store.logs(ids[0]) == []


def test_replay_from_far_back_sends_current_states(fake_ollama, make_app, serve):
    from .sse import SSEClient

    live = serve(make_app(OLLAMA_DECK_REPLAY_MAX_EVENTS=5))
    fake_ollama.allow_pull("m:1", PullScript(layers=[100_000, 1_429], step=2_000))
    op = live.post("/api/models/pull", json={"model": "m:1"}).json()
    wait_until(lambda: live.get(f"/progress/{op['id']}").json()["status"] in FINAL)
    url = f"{live.url}/progress/{op['id']}/stream"
    far = SSEClient(url, last_event_id=0).read_to_end()
    assert [e.event for e in far] == ["done"]
    near_id = far[0].id - 4
    near = SSEClient(url, last_event_id=near_id).read_to_end()
    assert [e.event for e in near][-1] == "done"
    assert any(e.event == "log" for e in near), "a near replay sends the history"
    assert all(e.id > near_id for e in near)


def test_replay_of_everything_from_far_back_sends_what_a_client_can_use(make_app, serve):
    """From event 0, the stream of every operation sends the active ones and the newest
    finished ones (OLLAMA_DECK_REPLAY_MAX_EVENTS of them), not the whole history."""
    from .sse import SSEClient

    app = quiet_app(make_app, OLLAMA_DECK_REPLAY_MAX_EVENTS=5)
    store = deck_of(app).store
    finished = []
    for i in range(12):
        row = store.create(kind="pull", model=f"old{i}:1", model_key=f"old{i}:1", host="h")
        store._update(row["id"], {"status": "succeeded", "finished_at": 1000.0 + i}, ["done"])
        finished.append(row["id"])
    active = [
        store.create(kind="pull", model=f"now{i}:1", model_key=f"now{i}:1", host="h")["id"]
        for i in range(2)
    ]
    live = serve(app)
    stream = SSEClient(live.url + "/progress/stream", last_event_id=0)
    marker = store.create(kind="pull", model="marker:1", model_key="marker:1", host="h")
    seen: list[tuple[int, str, str]] = []
    while not any(op_id == marker["id"] for _, _, op_id in seen):
        event = stream.next()
        assert event is not None, "the stream ended"
        seen.append((event.id, event.event, event.data.get("id") or event.data["operation_id"]))
    stream.close()
    replayed = [(kind, op_id) for _, kind, op_id in seen if op_id != marker["id"]]
    assert {op_id for _, op_id in replayed} == set(active) | set(finished[-5:])
    assert all(kind in ("progress", "done") for kind, _ in replayed)  # states, no logs
    ids = [event_id for event_id, _, _ in seen]
    assert ids == sorted(ids)


def test_the_list_of_operations_pages_newest_first(make_app):
    app = quiet_app(make_app)
    store = deck_of(app).store
    made = []
    for i in range(7):
        row = store.create(kind="pull", model=f"p{i}:1", model_key=f"p{i}:1", host="h")
        # Three created at one moment: the pages still neither skip nor repeat one.
        store._update(row["id"], {"created_at": 5000.0 if i < 3 else 5000.0 + i})
        made.append(row["id"])
    client = app.test_client()
    pages, before = [], None
    while True:
        answer = client.get("/progress", query_string={"limit": 3, "before": before or ""})
        assert answer.status_code == 200, answer.text
        pages.append([op["id"] for op in answer.json["operations"]])
        before = answer.json["next"]
        if before is None:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [op_id for page in pages for op_id in page]
    assert listed == [*made[6:2:-1], *sorted(made[:3], reverse=True)]  # ties by id
    bad = client.get("/progress", query_string={"before": "yesterday"})
    assert bad.status_code == 400 and "before" in bad.json["error"]["message"]


def test_cached_list_has_a_pulled_model_when_ollama_is_down(fake_ollama, live):
    assert live.get("/api/models").json()["models"] == []  # caches the empty list
    fake_ollama.allow_pull("new:1", PullScript(layers=[1_000], step=1_000))
    op = live.post("/api/models/pull", json={"model": "new:1"}).json()
    wait_until(lambda: live.get(f"/progress/{op['id']}").json()["status"] == "succeeded")
    fake_ollama.stop()
    listing = wait_until(lambda: (data := live.get("/api/models").json())["models"] and data)
    assert listing["stale"] is True
    assert [m["name"] for m in listing["models"]] == ["new:1"]


def test_details_come_from_the_cached_list_when_ollama_is_down(fake_ollama, live):
    fake_ollama.add_model("cached:1", parameter_size="8B", quantization="Q4_K_M")
    assert live.get("/api/models").status_code == 200  # caches the list
    assert live.get("/api/models/cached:1").json()["stale"] is False
    fake_ollama.stop()
    details = live.get("/api/models/cached:1")
    assert details.status_code == 200, details.text
    body = details.json()
    assert body["stale"] is True and "not reachable" in body["error"]
    assert body["parameter_size"] == "8B"
    assert body["vram"]["total_bytes"] > 0
    assert live.get("/api/models/never-seen:1").status_code == 503


def test_status_answers_with_the_last_seen_state_when_ollama_is_down(fake_ollama, live):
    up = live.get("/api/status").json()
    assert up["reachable"] is True and up["version"]
    fake_ollama.stop()
    down = live.get("/api/status").json()
    assert down["reachable"] is False and "not reachable" in down["error"]
    assert down["stale"] is True
    assert down["version"] == up["version"]
    assert down["cached_at"]


def test_healthz_reports_database_and_ollama(fake_ollama, live):
    response = live.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["database"]["ok"] is True
    assert body["ollama"] == {
        "ok": True,
        "version": body["ollama"]["version"],
        "url": fake_ollama.url,
    }
    fake_ollama.stop()
    down = live.get("/healthz")
    assert down.status_code == 200, "Ollama down is reported, the deck still works"
    assert down.json()["ollama"]["ok"] is False
