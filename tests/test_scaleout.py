"""Several workers on PostgreSQL, with Redis or with the database-poll bus.

Each case runs ``ollama-deck serve --workers 4`` (gunicorn, gevent) against the machine's
PostgreSQL, and Redis where the bus is Redis. They skip, saying why, where
OLLAMA_DECK_TEST_DATABASE_URL (or, for Redis, OLLAMA_DECK_TEST_REDIS_URL) is unset.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from ollama_deck.lifecycle import ACTIVE
from ollama_deck.lifecycle import FINAL
from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .conftest import PG_VARIABLE
from .conftest import postgres_schema
from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .sse import SSEClient

REDIS_VARIABLE = "OLLAMA_DECK_TEST_REDIS_URL"
WORKERS = 4
LIMIT = 2
pytestmark = [pytest.mark.gunicorn, pytest.mark.scaleout]


class Deck(ServerProcess):
    """A running ``ollama-deck serve --workers 4`` and what the tests need of it."""

    def __init__(self, command: list[str], port: int, env: dict, database_url: str) -> None:
        # Each request on its own connection, as a new client's would be: any worker answers.
        super().__init__(
            command,
            port=port,
            env=env,
            ready_path="/healthz",
            ready_status=None,
            ready_timeout=60,
            keep_alive=False,
        )
        self.base = self.url
        self.database_url = database_url
        self.engine = create_engine(database_url)

    def status_of(self, op_id: str) -> str:
        return self.get(f"/progress/{op_id}").json()["status"]

    def runner_pid(self, op_id: str) -> int | None:
        """The pid of the worker that runs ``op_id`` (runner ids are host:pid:random)."""
        with self.engine.connect() as conn:
            runner = conn.execute(
                text("SELECT runner_id FROM ollama_deck_operation WHERE id = :id"), {"id": op_id}
            ).scalar()
        return int(runner.split(":")[1]) if runner else None

    def times(self, op_id: str, column: str = "started_at") -> float:
        """When ``op_id`` started (or ``column``), as the database recorded it: exact."""
        with self.engine.connect() as conn:
            query = text(f"SELECT {column} FROM ollama_deck_operation WHERE id = :id")
            return conn.execute(query, {"id": op_id}).scalar()

    def worker_pids(self) -> set[int]:
        """Pids of the workers seen answering; asked until every worker has answered."""
        seen: set[int] = set()

        def all_seen() -> bool:
            with requests.Session() as fresh:  # a new connection: any worker may take it
                seen.add(fresh.get(self.base + "/api/status", timeout=10).json()["pid"])
            return len(seen) == WORKERS

        wait_until(all_seen, timeout=60, interval=0)
        return seen


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fake_b() -> Iterator[FakeOllama]:
    """A second Ollama host, named "b" (the first is "a")."""
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module", params=["redis", "poll"])
def deck(request, fake, fake_b) -> Iterator[Deck]:
    base_url = os.environ.get(PG_VARIABLE)
    if not base_url:
        pytest.skip(f"several workers need PostgreSQL: set {PG_VARIABLE}")
    redis_url = os.environ.get(REDIS_VARIABLE)
    if request.param == "redis" and not redis_url:
        pytest.skip(
            f"the Redis bus needs Redis: set {REDIS_VARIABLE} (e.g. redis://127.0.0.1:6379/0)"
        )
    with postgres_schema(base_url) as database_url:
        yield from serve_deck(fake, fake_b, request.param, database_url, redis_url)


def serve_deck(
    fake: FakeOllama, fake_b: FakeOllama, bus: str, database_url: str, redis_url: str | None
) -> Iterator[Deck]:
    env = dict(
        os.environ,
        OLLAMA_HOSTS=f"a={fake.url},b={fake_b.url}",
        OLLAMA_DECK_EVENT_BUS=bus,
        OLLAMA_DECK_POLL_SECONDS="0.2",
        OLLAMA_DECK_HEARTBEAT_SECONDS="0.2",
        OLLAMA_DECK_STALE_SECONDS="3",
        OLLAMA_DECK_MAX_CONCURRENT_PULLS=str(LIMIT),
        OLLAMA_DECK_PULL_STALL_TIMEOUT="10",
    )
    if bus == "redis":
        env["OLLAMA_DECK_REDIS_URL"] = redis_url
    else:
        env.pop("OLLAMA_DECK_REDIS_URL", None)
    port = free_port()
    command = deck_command(
        "serve", "--port", str(port), "--workers", str(WORKERS), "--database-url", database_url
    )
    deck = Deck(command, port, env, database_url)
    try:
        with deck:
            assert deck.get("/api/status").json()["bus"]["name"] == bus
            yield deck
    finally:
        deck.engine.dispose()


def test_every_worker_serves_and_knows_both_hosts(deck):
    assert len(deck.worker_pids()) == WORKERS
    hosts = deck.get("/api/hosts").json()["hosts"]
    assert [(h["name"], h["reachable"]) for h in hosts] == [("a", True), ("b", True)]


def test_forty_concurrent_pulls_of_one_model_make_one_operation(deck, fake):
    model = f"one-{uuid.uuid4().hex[:6]}:latest"
    # Held until every request has been answered: all 40 arrive while the pull is active.
    fake.allow_pull(model, PullScript(layers=[200_000], step=20_000, hold_after=2))

    def pull(_: int) -> tuple[int, str]:
        with requests.Session() as fresh:  # each on its own connection, so on any worker
            response = fresh.post(deck.base + "/api/models/pull", json={"model": model}, timeout=20)
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(pull, range(40)))
    assert {status for status, _ in answers} == {202}
    ids = {op_id for _, op_id in answers}
    assert len(ids) == 1
    (op_id,) = ids
    fake.release(model)
    wait_until(lambda: deck.status_of(op_id) == "succeeded", timeout=60)
    with deck.engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM ollama_deck_operation WHERE model = :m"), {"m": model}
        ).scalar()
    assert count == 1
    assert fake.pull_count(model) == 1


def test_the_concurrency_limit_holds_across_workers(deck, fake):
    models = [f"limit{i}-{uuid.uuid4().hex[:6]}:latest" for i in range(8)]
    for model in models:
        fake.allow_pull(model, PullScript(layers=[100_000], step=10_000, interval=0.03))
    fake.max_active_pulls = 0

    def pull(model: str) -> str:
        with requests.Session() as fresh:
            response = fresh.post(deck.base + "/api/models/pull", json={"model": model}, timeout=20)
        assert response.status_code == 202
        return response.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(pull, models))
    wait_until(lambda: all(deck.status_of(i) == "succeeded" for i in ids), timeout=90)
    assert fake.max_active_pulls == LIMIT  # used to the full, never beyond


def test_a_pull_right_after_a_cancel_is_a_new_operation(deck, fake):
    """Whichever worker takes the cancel and the next pull, the pull never joins the
    operation being cancelled; it runs once the cancelled stream has closed."""

    def post(path: str, body: dict | None = None) -> requests.Response:
        with requests.Session() as fresh:  # each on its own connection, so on any worker
            return fresh.post(deck.base + path, json=body, timeout=20)

    def cancel_then_pull(attempt: int) -> None:
        model = f"recancel{attempt}-{uuid.uuid4().hex[:6]}:latest"
        fake.allow_pull(model, PullScript(layers=[2_000_000], step=20_000, hold_after=2))
        old = post("/api/models/pull", {"model": model}).json()["id"]
        wait_until(lambda: deck.get(f"/progress/{old}").json()["percent"] > 0, timeout=30)
        assert post(f"/progress/{old}/cancel").status_code in (200, 202)
        again = post("/api/models/pull", {"model": model})
        assert again.status_code == 202, again.text
        assert again.json()["created"] is True, f"try {attempt}: joined the cancelled pull"
        new = again.json()["id"]
        assert new != old
        wait_until(lambda: deck.status_of(old) == "cancelled", timeout=30)
        fake.release(model)
        wait_until(lambda: deck.status_of(new) == "succeeded", timeout=60)
        assert fake.pull_count(model) == 2
        ended, started = deck.times(old, "finished_at"), deck.times(new)
        assert started >= ended, "the new pull started before the cancelled stream closed"

    for attempt in range(6):
        cancel_then_pull(attempt)


def test_watchers_on_every_worker_see_a_pull_run_by_another(deck, fake_b):
    watchers: list[SSEClient] = []
    workers: set[str] = set()
    # Open streams until every worker holds one (each stream says who serves it). Which
    # worker accepts a connection is the kernel's choice, so a stream that lands on a worker
    # already covered is closed and another opened, a bounded number of times.
    attempts = 0
    while len(workers) < WORKERS:
        attempts += 1
        assert attempts <= 400, f"{attempts} streams landed on only {len(workers)} workers"
        watcher = SSEClient(deck.base + "/progress/stream", timeout=30, comments=True)
        comment = watcher.next()
        assert comment is not None and comment.comment.startswith("worker ")
        if comment.comment in workers:
            watcher.close()
            continue
        workers.add(comment.comment)
        watchers.append(watcher)
    model = f"watched-{uuid.uuid4().hex[:6]}:latest"
    fake_b.allow_pull(model, PullScript(layers=[300_000, 1_000], step=20_000, interval=0.02))
    op_id = deck.post("/api/models/pull", json={"model": model, "host": "b"}).json()["id"]
    runner = f"worker {wait_until(lambda: deck.runner_pid(op_id))}"
    assert runner in workers

    received: dict[int, list] = {}

    def watch(index: int, watcher: SSEClient) -> None:
        received[index] = watcher.read_until(
            lambda e: e.event == "done" and e.data["id"] == op_id, timeout=60
        )

    threads = [threading.Thread(target=watch, args=item) for item in enumerate(watchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for watcher in watchers:
        watcher.close()
    logs = [line["text"] for line in deck.get(f"/progress/{op_id}?log=300").json()["log"]]
    assert len(received) == len(watchers)
    for events in received.values():
        ids = [e.id for e in events if e.id is not None]
        assert ids == sorted(set(ids)), "events out of order or repeated"
        mine = [
            e for e in events if e.data and e.data.get("id", e.data.get("operation_id")) == op_id
        ]
        seen_logs = [
            e.data["text"] for e in events if e.event == "log" and e.data["operation_id"] == op_id
        ]
        assert seen_logs == logs[-len(seen_logs) :] and seen_logs[-1] == logs[-1]
        assert seen_logs == logs, "a log line was missed"
        assert mine[-1].event == "done" and mine[-1].data["status"] == "succeeded"


def test_a_killed_worker_hands_its_pull_to_another(deck, fake_b):
    model = f"killed-{uuid.uuid4().hex[:6]}:latest"
    fake_b.allow_pull(model, PullScript(layers=[2_000_000], step=20_000, interval=0.03))
    op_id = deck.post("/api/models/pull", json={"model": model, "host": "b"}).json()["id"]
    wait_until(lambda: deck.get(f"/progress/{op_id}").json()["percent"] > 5, timeout=30)
    victim = deck.runner_pid(op_id)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: deck.status_of(op_id) == "succeeded", timeout=90)
    taker = deck.runner_pid(op_id)
    assert taker not in (None, victim)
    op = deck.get(f"/progress/{op_id}").json()
    assert op["attempts"] >= 2 and op["percent"] == 100.0 and op["host"] == "b"
    assert fake_b.pull_count(model) >= 2  # resumed on the same host


def metrics_by_worker(deck: Deck) -> dict[str, dict]:
    """/metrics as each of the workers answers it (asked on new connections until all four
    have answered), parsed with prometheus_client's parser."""
    from .test_metrics import parse

    answers: dict[str, dict] = {}

    def all_answered() -> bool:
        with requests.Session() as fresh:  # a new connection: any worker may take it
            response = fresh.get(deck.base + "/metrics", timeout=10)
        assert response.status_code == 200, response.text
        answers[response.headers["X-Ollama-Deck-Pid"]] = parse(response.text)
        return len(answers) == WORKERS

    wait_until(all_answered, timeout=60, interval=0)
    return answers


def test_metrics_are_the_same_from_every_worker(deck, fake):
    from .test_metrics import sample

    model = f"counted-{uuid.uuid4().hex[:6]}:latest"
    fake.allow_pull(model, PullScript(layers=[40_000, 1_000], step=20_000))
    missing = f"missing-{uuid.uuid4().hex[:6]}:latest"  # never allowed: Ollama refuses it
    ops = [
        deck.post("/api/models/pull", json={"model": m, "host": "a"}).json()
        for m in (model, missing)
    ]
    assert [wait_until(lambda op=op: deck.status_of(op["id"]) in FINAL) for op in ops]
    assert [deck.status_of(op["id"]) for op in ops] == ["succeeded", "failed"]
    watcher = SSEClient(deck.base + "/progress/stream", timeout=30, comments=True)
    try:
        assert watcher.next() is not None  # open on one worker, counted by all

        def the_same() -> dict | None:
            answers = list(metrics_by_worker(deck).values())
            first = answers[0]
            watching = sample(first, "ollama_deck_sse_watchers") or 0
            return first if watching >= 1 and all(a == first for a in answers) else None

        samples = wait_until(the_same, timeout=60)
    finally:
        watcher.close()
    total = "ollama_deck_operations_total"
    assert sample(samples, total, kind="pull", status="succeeded", host="a") >= 1
    assert sample(samples, total, kind="pull", status="failed", host="a") >= 1
    assert sample(samples, "ollama_deck_pull_bytes_total", host="a") >= 41_000
    assert sample(samples, "ollama_deck_pull_duration_seconds_count", host="a") >= 1
    assert sample(samples, "ollama_deck_ollama_up", host="a") == 1
    assert sample(samples, "ollama_deck_database_up") == 1
    for status in ACTIVE:
        assert sample(samples, "ollama_deck_operations", status=status, host="b") is not None
