"""Faults injected into real processes: the deck under gunicorn + gevent, a SQLite file made
unwritable or removed, Ollama stopped and killed, the deck killed mid-pull, floods.

Each test checks what a user would notice: no operation left running without a runner,
nothing accepted and then lost, no 500, and the bounds held.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .helpers import wait_until
from .processes import Deck
from .processes import FakeOllamaProcess
from .processes import immutable
from .processes import needs_root_and_chattr
from .processes import processes  # noqa: F401 - a fixture
from .processes import RedisProcess
from .sse import SSEClient

pytestmark = [pytest.mark.gunicorn, pytest.mark.fault]

FINAL = {"succeeded", "failed", "cancelled", "interrupted"}
LAYERS = [400_000, 1_429, 7_711]


@pytest.fixture
def fake() -> FakeOllama:
    fake = FakeOllama().start()
    yield fake
    fake.stop()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def start_deck(processes, tmp_path: Path, ollama_url: str, database: Path, **settings) -> Deck:  # noqa: F811
    deck = Deck(ollama_url, sqlite_url(database), tmp_path / "deck.log", **settings)
    processes.append(deck)
    return deck.wait_ready()


def pull(deck: Deck, model: str) -> dict:
    response = deck.post("/api/models/pull", json={"model": model})
    assert response.status_code == 202, response.text
    return response.json()


def wait_final(deck: Deck, op_id: str, timeout: float = 30.0) -> dict:
    return wait_until(
        lambda: (op := deck.op(op_id, log=300))["status"] in FINAL and op, timeout, 0.05
    )


def texts(op: dict) -> list[str]:
    return [line["text"] for line in op["log"]]


def database_rows(database: Path, query: str) -> list[tuple]:
    with sqlite3.connect(database) as conn:
        return conn.execute(query).fetchall()


def assert_no_500(deck: Deck) -> None:
    assert 500 not in deck.statuses and not any(s > 503 for s in deck.statuses), deck.statuses


def test_unwritable_database_then_writable_again(processes, tmp_path, fake):  # noqa: F811
    needs_root_and_chattr(tmp_path)
    database = tmp_path / "deck.db"
    deck = start_deck(processes, tmp_path, fake.url, database)
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=20_000, hold_after=4))
    op = pull(deck, "m:1")
    wait_until(lambda: deck.op(op["id"])["percent"] > 0)
    assert deck.get("/api/models").status_code == 200  # caches the list

    with immutable(database):
        fake.add_model("new:1")  # the list changed: caching it now fails
        listing = deck.get("/api/models")
        assert listing.status_code == 200, listing.text
        assert "new:1" in [m["name"] for m in listing.json()["models"]]
        refused = deck.post("/api/models/pull", json={"model": "other:1"})
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "database_unavailable"
        assert int(refused.headers["Retry-After"]) > 0
        health = deck.get("/healthz")
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False
        # The pull ends while nothing can be written: its final write is retried.
        fake.release("m:1")
        wait_until(lambda: "m:1" in fake.installed())
        assert deck.op(op["id"])["status"] == "running"

    final = wait_final(deck, op["id"])
    assert final["status"] == "succeeded", final
    assert {"success", "pulled"} <= set(texts(final)), "a log line was lost"
    assert final["attempts"] == 1 and fake.pull_count("m:1") == 1, "the end was not retried"
    assert deck.get("/healthz").status_code == 200
    # Healed: writes work again without a restart.
    fake.allow_pull("other:1", PullScript(layers=LAYERS, step=100_000))
    assert wait_final(deck, pull(deck, "other:1")["id"])["status"] == "succeeded"
    assert_no_500(deck)


def test_a_worker_that_booted_while_the_database_was_unwritable_heals(
    processes,  # noqa: F811
    tmp_path,
    fake,
):
    needs_root_and_chattr(tmp_path)
    database = tmp_path / "deck.db"
    first = start_deck(processes, tmp_path, fake.url, database)
    first.stop()  # leaves a database behind
    with immutable(database):
        deck = start_deck(processes, tmp_path, fake.url, database)
        refused = deck.post("/api/models/pull", json={"model": "m:1"})
        assert refused.status_code == 503, refused.text
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=100_000))
    # The first write after the fault works: no read-only connection was kept.
    op = pull(deck, "m:1")
    assert wait_final(deck, op["id"])["status"] == "succeeded"
    assert_no_500(deck)


def test_shared_memory_file_made_unwritable_too(processes, tmp_path, fake):  # noqa: F811
    """With -shm immutable, a write through SQLite's shared map would be answered with
    SIGBUS, killing the worker: the deck uses no connection meanwhile (503), and goes on."""
    needs_root_and_chattr(tmp_path)
    database = tmp_path / "deck.db"
    deck = start_deck(processes, tmp_path, fake.url, database)
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=20_000, hold_after=4))
    op = pull(deck, "m:1")
    wait_until(lambda: deck.op(op["id"])["percent"] > 0)
    workers = deck.pids()[1:]

    def refused_or_died() -> bool:
        if deck.pids()[1:] != workers:
            return True
        try:
            return deck.get(f"/progress/{op['id']}").status_code == 503
        except requests.RequestException:  # the worker died under the request
            return True

    with immutable(database, shm=True):
        fake.release("m:1")  # the pull ends: its final write and heartbeats meet the map
        wait_until(lambda: "m:1" in fake.installed())
        wait_until(refused_or_died, timeout=30)
        assert deck.pids()[1:] == workers, f"a worker died{deck.output()}"
        for _ in range(20):
            polled = deck.get(f"/progress/{op['id']}")
            assert polled.status_code == 503, polled.text
            assert polled.json()["error"]["code"] == "database_unavailable"
        health = deck.get("/healthz")
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
        assert deck.get("/api/status").status_code == 200  # needs no database
        assert deck.pids()[1:] == workers, f"a worker died{deck.output()}"
    final = wait_final(deck, op["id"])
    assert final["status"] == "succeeded", final
    assert {"success", "pulled"} <= set(texts(final))
    assert final["attempts"] == 1, "the pull was taken over: its worker died"
    assert deck.pids()[1:] == workers, f"a worker died{deck.output()}"
    assert "SIGBUS" not in deck.output()
    assert not any(s >= 500 and s != 503 for s in deck.statuses), deck.statuses


def test_database_directory_removed(processes, tmp_path, fake):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    database = data / "deck.db"
    deck = start_deck(processes, tmp_path, fake.url, database)
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=20_000, hold_after=4))
    op = pull(deck, "m:1")
    wait_until(lambda: deck.op(op["id"])["percent"] > 0)

    shutil.rmtree(data)
    health = deck.get("/healthz")
    assert health.status_code == 503
    assert "gone" in health.json()["database"]["error"]
    accepted = [
        deck.post("/api/models/pull", json={"model": f"n{i}:1"}).status_code for i in range(5)
    ]
    assert accepted == [503] * 5, "a pull was accepted into a database that is gone"
    assert deck.get(f"/progress/{op['id']}").status_code == 503
    assert deck.get("/progress").status_code == 503
    fake.release("m:1")  # the pull ends; nothing can record it, nothing pretends to
    wait_until(lambda: "m:1" in fake.installed())
    assert deck.get("/healthz").status_code == 503
    assert not data.exists(), "the deck created a new database behind the operator's back"
    assert_no_500(deck)


LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_database_locked_by_another_process_never_holds_reads(processes, tmp_path, fake):  # noqa: F811
    """Another process holds SQLite's write lock and Ollama's state changed: status and the
    model list would cache the change. Each call answers at once, skipping that write,
    instead of waiting the busy timeout (30 s) in gevent's thread pool."""
    database = tmp_path / "deck.db"
    deck = start_deck(processes, tmp_path, fake.url, database)
    fake.add_model("old:1")
    assert deck.get("/api/models").status_code == 200  # caches the list and the status
    assert deck.get("/api/status").json()["running"] == []
    fake.add_model("new:1")
    requests.post(fake.url + "/api/generate", json={"model": "old:1"}, timeout=5)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for _ in range(3):  # every call, not only the first
            status = deck.get("/api/status", timeout=10).json()  # well under 30 s
            assert [m["name"] for m in status["running"]] == ["old:1"]
            models = deck.get("/api/models", timeout=10).json()
            assert {m["name"] for m in models["models"]} == {"old:1", "new:1"}
    finally:
        holder.communicate("\n", timeout=10)
    assert deck.get("/healthz").status_code == 200
    assert_no_500(deck)


def test_ollama_stopped_then_continued(processes, tmp_path):  # noqa: F811
    ollama = FakeOllamaProcess(
        "--allow", "m:1", "--model", "old:1", "--layers", "3000000,1429", "--step", "20000",
        "--interval", "0.02",
    ).start()  # fmt: skip
    processes.append(ollama)
    deck = start_deck(processes, tmp_path, ollama.url, tmp_path / "deck.db")
    assert deck.get("/api/models").json()["stale"] is False  # caches the list
    op = pull(deck, "m:1")
    wait_until(lambda: deck.op(op["id"])["percent"] > 1)

    ollama.signal(signal.SIGSTOP)
    try:
        stalled = wait_until(
            lambda: "stalled" in ((s := deck.op(op["id"]))["message"] or "") and s, 15
        )
        assert stalled["speed"] == 0 and stalled["eta_seconds"] is None
        assert stalled["status"] == "running"
        later = wait_until(lambda: (s := deck.op(op["id"]))["message"] != stalled["message"] and s)
        assert "stalled" in later["message"], "the stall time does not grow"
        status = deck.get("/api/status")
        assert status.status_code == 200 and status.json()["reachable"] is False
        listing = deck.get("/api/models").json()
        assert listing["stale"] is True
        assert "old:1" in [m["name"] for m in listing["models"]]
    finally:
        ollama.signal(signal.SIGCONT)
    final = wait_final(deck, op["id"], timeout=60)
    assert final["status"] == "succeeded", final
    assert "stalled: Ollama sends no data" in texts(final)
    assert_no_500(deck)


def test_ollama_hung_answers_504_within_the_quick_timeout(processes, tmp_path):  # noqa: F811
    """Ollama accepts connections but never answers (SIGSTOP): delete, unload and chat give
    up after the quick timeout (1 s here), not after the request or stall timeouts."""
    ollama = FakeOllamaProcess("--model", "m:1").start()
    processes.append(ollama)
    deck = start_deck(
        processes, tmp_path, ollama.url, tmp_path / "deck.db", OLLAMA_DECK_PULL_STALL_TIMEOUT=10
    )
    calls = [
        ("DELETE", "/api/models/m:1", None),
        ("POST", "/api/models/m:1/unload", None),
        ("POST", "/api/chat", {"model": "m:1", "prompt": "hi"}),
    ]
    ollama.signal(signal.SIGSTOP)
    try:
        for method, path, body in calls:
            response = deck.request(method, path, json=body)
            assert response.status_code == 504, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "ollama_timeout"
            assert "did not answer for 1 s" in error["message"], (path, error)  # the quick one
    finally:
        ollama.signal(signal.SIGCONT)
    # Continued, Ollama works through what waited for it (the delete too) and answers again.
    wait_until(lambda: deck.get("/api/status").json()["reachable"])
    assert deck.post("/api/chat", json={"model": "m:1", "prompt": "hi"}).status_code in (200, 404)
    assert set(deck.statuses) <= {200, 404, 504}, deck.statuses


def test_ollama_killed_then_restarted(processes, tmp_path):  # noqa: F811
    ollama = FakeOllamaProcess(
        "--allow", "m:1", "--allow", "q:1", "--layers", "3000000,1429", "--step", "20000",
        "--interval", "0.02",
    ).start()  # fmt: skip
    processes.append(ollama)
    deck = start_deck(processes, tmp_path, ollama.url, tmp_path / "deck.db")
    running = pull(deck, "m:1")
    before = wait_until(lambda: (s := deck.op(running["id"]))["percent"] > 1 and s)

    ollama.kill()
    # The running pull waits for Ollama as a queued one does, instead of failing at once.
    lost = wait_until(
        lambda: (
            "waiting for Ollama" in ((s := deck.op(running["id"], log=300))["message"] or "") and s
        )
    )
    assert lost["status"] == "running"
    assert any("was lost; waiting for it" in t for t in texts(lost))
    queued = pull(deck, "q:1")
    waiting = wait_until(
        lambda: (
            "waiting for Ollama" in ((s := deck.op(queued["id"], log=300))["message"] or "") and s
        )
    )
    assert waiting["status"] == "running"
    assert any("not reachable" in t for t in texts(waiting))

    ollama.start()  # same port
    resumed = wait_final(deck, running["id"], timeout=60)
    assert resumed["status"] == "succeeded", resumed
    assert resumed["attempts"] == 1 and resumed["percent"] >= before["percent"]
    assert wait_final(deck, queued["id"], timeout=60)["status"] == "succeeded"
    assert_no_500(deck)


def test_deck_killed_mid_pull_resumes_at_once(processes, tmp_path, fake):  # noqa: F811
    database = tmp_path / "deck.db"
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=20_000, hold_after=4))
    deck = start_deck(processes, tmp_path, fake.url, database)
    op = pull(deck, "m:1")
    held = wait_until(lambda: (s := deck.op(op["id"]))["percent"] > 0 and s)
    deck.kill()

    fake.release("m:1")
    # The stale timeout is an hour: only knowing that the pid is gone can explain a resume.
    restarted = start_deck(processes, tmp_path, fake.url, database)
    final = wait_final(restarted, op["id"])
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    assert final["percent"] >= held["percent"]
    assert any("runner stopped" in t for t in texts(final))
    assert fake.pull_count("m:1") == 2
    assert_no_500(restarted)


def test_deck_killed_with_a_pending_cancel_is_not_restarted(processes, tmp_path, fake):  # noqa: F811
    database = tmp_path / "deck.db"
    fake.allow_pull("m:1", PullScript(layers=LAYERS, step=20_000, hold_after=4))
    # Two processes on one database; the one that runs the pull writes rarely, so that it
    # is not frozen holding SQLite's write lock.
    runner = start_deck(processes, tmp_path, fake.url, database, OLLAMA_DECK_HEARTBEAT_SECONDS=30)
    other = start_deck(processes, tmp_path, fake.url, database)
    op = pull(runner, "m:1")
    wait_until(lambda: runner.op(op["id"])["percent"] > 0)

    runner.signal_all(signal.SIGSTOP)  # alive but frozen: the cancel can only be requested
    response = other.post(f"/progress/{op['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    runner.kill()

    final = wait_final(other, op["id"])
    assert final["status"] == "cancelled"
    assert "its runner stopped; cancelled as requested" in texts(final)
    assert fake.pull_count("m:1") == 1, "recovery restarted a pull whose cancel was requested"
    assert_no_500(other)


def test_flood_of_pulls_and_replays_stays_bounded(processes, tmp_path, fake):  # noqa: F811
    database = tmp_path / "deck.db"
    keep = 40
    deck = start_deck(
        processes,
        tmp_path,
        fake.url,
        database,
        OLLAMA_DECK_MAX_QUEUED=20,
        OLLAMA_DECK_KEEP_FINISHED_COUNT=keep,
        OLLAMA_DECK_REPLAY_MAX_EVENTS=200,
    )
    names = [f"missing-{i}:1" for i in range(2000)]
    answers: dict[str, tuple[int, str | None]] = {}

    def flood(part: list[str]) -> None:
        import requests

        with requests.Session() as session:
            for name in part:
                response = session.post(
                    deck.url + "/api/models/pull", json={"model": name}, timeout=30
                )
                answers[name] = (response.status_code, response.headers.get("Retry-After"))

    threads = [threading.Thread(target=flood, args=(names[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    codes = [code for code, _ in answers.values()]
    assert len(codes) == 2000
    assert set(codes) <= {202, 429}, sorted(set(codes))
    assert codes.count(429) > 0, "the queue limit never answered 429"
    assert all(int(after) > 0 for code, after in answers.values() if code == 429)
    accepted = [name for name, (code, _) in answers.items() if code == 202]

    # Every accepted pull ran (the fake saw it) and ended; none was dropped.
    wait_until(lambda: not deck.get("/progress", params={"status": "queued,running"}).json()[
        "operations"
    ], timeout=120)  # fmt: skip
    assert all(fake.pull_count(name) == 1 for name in accepted)
    assert not any(fake.pull_count(name) for name, (code, _) in answers.items() if code == 429)
    # Finished operations are kept by count, their logs with them.
    wait_until(lambda: database_rows(database, "SELECT count(*) FROM ollama_deck_operation")[0][0]
               <= keep)  # fmt: skip
    orphans = database_rows(
        database,
        "SELECT count(*) FROM ollama_deck_operation_log WHERE operation_id NOT IN "
        "(SELECT id FROM ollama_deck_operation)",
    )
    assert orphans == [(0,)]

    # 50 clients resume from event 1: each gets the current state of the kept operations,
    # not the history of 2,000 pulls, and the service keeps answering meanwhile.
    kept = deck.get("/progress", params={"limit": 1000}).json()["operations"]
    one = kept[0]["id"]
    streams = [SSEClient(f"{deck.url}/progress/stream", last_event_id=1) for _ in range(50)]
    try:
        assert deck.get("/api/status").status_code == 200
        fake.allow_pull("fresh:1", PullScript(layers=[1_000], step=1_000))
        fresh = pull(deck, "fresh:1")
        for stream in streams:
            events = stream.read_until(lambda e: e.data and e.data.get("id") == fresh["id"])
            replayed = [
                e
                for e in events
                if e.data and fresh["id"] not in (e.data.get("id"), e.data.get("operation_id"))
            ]
            assert len(replayed) <= keep + 1, len(replayed)
            assert all(e.event in ("progress", "done") for e in replayed), "history was sent"
    finally:
        for stream in streams:
            stream.close()
    single = SSEClient(f"{deck.url}/progress/{one}/stream", last_event_id=1).read_to_end()
    assert [e.event for e in single] == ["done"]
    assert_no_500(deck)


def bus_of_every_worker(deck: Deck, workers: int = 2) -> dict[int, dict]:
    """Each worker's ``bus`` from /api/status, asked on fresh connections until all answered."""
    seen: dict[int, dict] = {}

    def all_answered() -> bool:
        with requests.Session() as fresh:  # a new connection: any worker may take it
            status = fresh.get(deck.url + "/api/status", timeout=10).json()
        seen[status["pid"]] = status["bus"]
        return len(seen) == workers

    wait_until(all_answered, timeout=30, interval=0)
    return seen


def watchers_on_every_worker(deck: Deck, workers: int = 2) -> list[SSEClient]:
    """One stream of every operation on each worker (each stream names its worker first)."""
    found: dict[str, SSEClient] = {}
    for _ in range(200):
        watcher = SSEClient(deck.url + "/progress/stream", timeout=30, comments=True)
        comment = watcher.next()
        assert comment is not None and comment.comment.startswith("worker ")
        if comment.comment in found:
            watcher.close()
        else:
            found[comment.comment] = watcher
        if len(found) == workers:
            return list(found.values())
    raise AssertionError(f"streams landed on only {len(found)} workers")


def test_redis_outage_is_shown_and_events_come_from_the_database(processes, tmp_path, fake):  # noqa: F811
    """Redis stopped (hung), then killed, then back: /api/status tells each time, and the
    watchers of both workers get every event of a pull run by one of them throughout."""
    redis = RedisProcess().start()
    processes.append(redis)
    deck = Deck(
        fake.url,
        sqlite_url(tmp_path / "deck.db"),
        tmp_path / "deck.log",
        workers=2,
        OLLAMA_DECK_EVENT_BUS="redis",
        OLLAMA_DECK_REDIS_URL=redis.url,
        OLLAMA_DECK_POLL_SECONDS=0.2,
    )
    processes.append(deck)
    deck.wait_ready()
    wait_until(lambda: all(b["connected"] for b in bus_of_every_worker(deck).values()), 30)
    watchers = watchers_on_every_worker(deck)

    def every_watcher_sees_a_pull(model: str) -> None:
        fake.allow_pull(model, PullScript(layers=LAYERS, step=100_000, interval=0.02))
        op = pull(deck, model)
        for watcher in watchers:
            events = watcher.read_until(
                lambda e: e.event == "done" and e.data["id"] == op["id"], timeout=30
            )
            ids = [e.id for e in events if e.id is not None]
            assert ids == sorted(set(ids)), "events out of order or repeated"
            seen = [
                e.data["text"]
                for e in events
                if e.event == "log" and e.data["operation_id"] == op["id"]
            ]
            assert seen == texts(deck.op(op["id"], log=300)), f"{model}: a log line was missed"

    def every_worker_says(connected: bool) -> bool:
        buses = bus_of_every_worker(deck).values()
        return all(b["connected"] is connected for b in buses)

    try:
        every_watcher_sees_a_pull("before:1")
        redis.signal(signal.SIGSTOP)  # accepts connections, answers nothing
        wait_until(lambda: every_worker_says(False), timeout=20)
        buses = bus_of_every_worker(deck).values()
        assert all(b["via"] == "database" and b["error"] for b in buses), buses
        every_watcher_sees_a_pull("hung:1")
        redis.kill()  # refuses connections
        every_watcher_sees_a_pull("down:1")
        assert every_worker_says(False)
        redis.start()  # the same port
        wait_until(lambda: every_worker_says(True), timeout=30)
        every_watcher_sees_a_pull("back:1")
    finally:
        for watcher in watchers:
            watcher.close()
    assert_no_500(deck)
