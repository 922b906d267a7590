"""Pull control against the fake Ollama over real sockets: pause and resume, not_before,
download windows, and stalled or crawling streams reopened.

Most cases drain the queue (``runner.drain()``) with short settings; a drain that a test
must interrupt (a pause, a window closing) runs in a thread of its own. Time of day comes
from a wall clock the test moves by hand (``Runner.wall``), so no test waits for 01:00.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from datetime import UTC

import pytest

from ollama_deck.lifecycle import PRUNE_NOTE
from ollama_deck.testing import PullScript

from .helpers import wait_until
from .processes import Deck as DeckProcess
from .processes import processes  # noqa: F401 - a fixture
from .test_pulls import Drained
from .test_pulls import get_op
from .test_pulls import log_texts
from .test_pulls import start_pull
from .test_pulls import wait_final

LAYERS = [400_000, 1_429]
# A pull of about 1.2 s: slow enough to pause in the middle.
SLOW = PullScript(layers=LAYERS, step=4_000, interval=0.01)
# Stalls and crawls show within a fraction of a second.
QUICK_STALLS = {
    "OLLAMA_DECK_PULL_STALL_RETRY_SECONDS": 0.2,
    "OLLAMA_DECK_STALL_NOTICE_SECONDS": 0.05,
    "OLLAMA_DECK_PULL_RETRIES": 2,
}


class WallClock:
    """The runner's wall clock, set by the test."""

    def __init__(self, text: str) -> None:
        self.now = stamp(text)

    def __call__(self) -> float:
        return self.now

    def set(self, text: str) -> None:
        self.now = stamp(text)


def stamp(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Recorder:
    """Every state the store wrote of an operation, as a poll would have read it."""

    def __init__(self, monkeypatch, store) -> None:
        self.rows: list[dict] = []
        for name in ("record_progress", "pause_running", "finish", "resume", "wake_due"):
            method = getattr(store, name)
            monkeypatch.setattr(store, name, self._wrap(method))

    def _wrap(self, method: Callable) -> Callable:
        def recorded(*args, **kwargs):
            result = method(*args, **kwargs)
            rows = result if isinstance(result, list) else [result]
            self.rows.extend(r for r in rows if r is not None)
            return result

        return recorded

    def percents(self, op_id: str) -> list[float]:
        return [r["percent"] for r in self.rows if r["id"] == op_id]


@pytest.fixture
def drained(make_app):
    def build(**overrides) -> Drained:
        return Drained(make_app(OLLAMA_DECK_START_RUNNER=False, **overrides))

    return build


def wait_streams(fake, model: str, outcomes: list[str]) -> None:
    """Wait until the fake's pull streams of ``model`` ended as ``outcomes`` (it notices a
    closed stream at its next write)."""
    wait_until(lambda: [s.outcome for s in fake.pull_streams(model)] == outcomes)


def drain_in_thread(deck: Drained) -> threading.Thread:
    thread = threading.Thread(target=deck.drain, daemon=True)
    thread.start()
    return thread


def test_pause_then_resume_a_slow_pull(fake_ollama, drained, monkeypatch):
    deck = drained(OLLAMA_DECK_MAX_CONCURRENT_PULLS=1)
    fake_ollama.allow_pull("slow:1b", SLOW)
    fake_ollama.allow_pull("other:1b", PullScript(layers=[10_000], step=5_000))
    record = Recorder(monkeypatch, deck.deck.store)
    op = deck.pull("slow:1b")
    drain = drain_in_thread(deck)
    wait_until(lambda: deck.op(op["id"])["percent"] > 5)

    answer = deck.client.post(f"/progress/{op['id']}/pause")
    assert answer.status_code in (200, 202), answer.text
    drain.join(10)
    assert not drain.is_alive()  # a paused pull is not waited for
    paused = deck.op(op["id"])
    assert paused["status"] == "paused" and paused["paused_by"] == "user"
    assert paused["active"] is True and paused["paused_at"] is not None
    assert 5 < paused["percent"] < 100
    assert paused["completed_bytes"] > 0
    assert "pause requested" in log_texts(paused)
    # Ollama saw its stream closed by the deck, and no other was opened.
    wait_streams(fake_ollama, "slow:1b", ["closed"])
    assert deck.client.post(f"/progress/{op['id']}/pause").status_code == 409

    # A second pull of the model joins it, and it stays paused.
    again = deck.pull("slow:1b")
    assert (again["id"], again["created"], again["status"]) == (op["id"], False, "paused")
    assert again["urls"]["resume"] == f"/progress/{op['id']}/resume"
    # Paused, it takes no slot: another pull runs meanwhile, with a limit of one.
    other = deck.pull("other:1b")
    assert deck.drain() == [other["id"]]
    assert deck.op(other["id"])["status"] == "succeeded"
    assert deck.op(op["id"])["status"] == "paused"

    resumed = deck.client.post(f"/progress/{op['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json["status"] == "queued" and resumed.json["paused_by"] is None
    assert deck.drain() == [op["id"]]
    final = deck.op(op["id"])
    assert final["status"] == "succeeded" and final["percent"] == 100.0
    assert final["attempts"] == 2
    assert final["completed_bytes"] == final["total_bytes"] == sum(LAYERS)
    percents = record.percents(op["id"]) + [final["percent"]]
    assert percents == sorted(percents), "the percent went back"
    wait_streams(fake_ollama, "slow:1b", ["closed", "succeeded"])
    texts = log_texts(final)
    assert texts.index("resumed") < texts.index("success")
    assert deck.client.post(f"/progress/{op['id']}/resume").status_code == 409


def test_pause_resume_and_cancel_of_operations_that_wait(fake_ollama, drained):
    deck = drained()
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=5_000))
    op = deck.pull("m:1")  # queued: no runner thread
    paused = deck.client.post(f"/progress/{op['id']}/pause")
    assert paused.status_code == 200
    assert (paused.json["status"], paused.json["paused_by"]) == ("paused", "user")
    assert deck.drain() == []  # a paused operation is not started
    assert fake_ollama.pull_count("m:1") == 0
    assert deck.client.post(f"/progress/{op['id']}/resume").json["status"] == "queued"
    deck.client.post(f"/progress/{op['id']}/pause")
    cancelled = deck.client.post(f"/progress/{op['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert deck.client.post(f"/progress/{op['id']}/pause").status_code == 409
    assert deck.client.post(f"/progress/{op['id']}/resume").status_code == 409
    missing = "00000000-0000-0000-0000-000000000000"
    assert deck.client.post(f"/progress/{missing}/pause").status_code == 404
    assert deck.client.post(f"/progress/{missing}/resume").status_code == 404


def test_paused_over_an_hour_says_ollama_may_delete_its_partial_download(fake_ollama, drained):
    deck = drained()
    clock = WallClock("2026-12-01T12:00:00")
    deck.runner.wall = clock
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=5_000))
    op = deck.pull("m:1")
    deck.client.post(f"/progress/{op['id']}/pause")
    clock.set("2026-12-01T12:59:00")
    deck.runner.keep_time()
    assert deck.op(op["id"])["message"] != PRUNE_NOTE
    clock.set("2026-12-01T13:00:01")
    deck.runner.keep_time()
    deck.runner.keep_time()
    noted = deck.op(op["id"])
    assert noted["message"] == PRUNE_NOTE and "OLLAMA_NOPRUNE" in noted["message"]
    assert log_texts(noted).count(PRUNE_NOTE) == 1  # said once


def test_a_not_before_pull_starts_no_earlier(fake_ollama, live):
    fake_ollama.allow_pull("later:1b", PullScript(layers=[20_000], step=5_000))
    wanted = time.time() + 0.5
    iso = datetime.fromtimestamp(wanted, UTC).isoformat()
    answer = live.post("/api/models/pull", json={"model": "later:1b", "not_before": iso})
    assert answer.status_code == 202, answer.text
    op = answer.json()
    assert op["status"] == "scheduled"
    assert op["message"].startswith("starts at ") and op["starts_at"] is not None
    assert op["not_before"] is not None
    final = wait_final(live, op["id"])
    assert final["status"] == "succeeded"
    (stream,) = fake_ollama.pull_streams("later:1b")
    assert stream.opened_at >= wanted  # Ollama was asked no earlier
    started = datetime.fromisoformat(final["started_at"].replace("Z", "+00:00"))
    assert started.timestamp() >= wanted - 0.001  # the stored time has milliseconds
    assert "its start time has come" in log_texts(final)


def test_not_before_as_a_time_of_day_and_its_refusals(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_TIMEZONE="UTC")
    clock = WallClock("2026-12-01T12:00:00")
    deck.runner.wall = clock
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=5_000))
    body = {"model": "m:1", "not_before": "01:30"}
    op = deck.client.post("/api/models/pull", json=body).json
    assert op["status"] == "scheduled"
    assert op["starts_at"] == "2026-12-02T01:30:00.000Z"
    assert op["message"] == "starts at 01:30 (not before)"
    assert deck.drain() == []
    clock.set("2026-12-02T01:30:00")
    assert deck.drain() == [op["id"]]
    assert deck.op(op["id"])["status"] == "succeeded"
    for bad in ("soon", "2026-02-30T01:00", 1700000000, "2099-01-01T00:00"):
        refused = deck.client.post("/api/models/pull", json={"model": "x:1", "not_before": bad})
        assert refused.status_code == 400, bad
        assert refused.json["error"]["code"] == "invalid_not_before", refused.json


def test_a_window_pauses_a_running_pull_and_resumes_it_when_it_opens(
    fake_ollama, drained, monkeypatch
):
    # The job looks at the window a few times per stall period: a short one, for a short pull.
    deck = drained(
        OLLAMA_DECK_PULL_WINDOWS="default=01:00-06:00", OLLAMA_DECK_TIMEZONE="UTC", **QUICK_STALLS
    )
    clock = WallClock("2026-12-01T05:50:00")
    deck.runner.wall = clock
    fake_ollama.allow_pull("night:1b", SLOW)
    record = Recorder(monkeypatch, deck.deck.store)
    op = deck.pull("night:1b")
    assert op["status"] == "queued"  # inside the window
    drain = drain_in_thread(deck)
    wait_until(lambda: deck.op(op["id"])["percent"] > 10)
    clock.set("2026-12-01T06:00:00")  # the window closes
    drain.join(10)
    assert not drain.is_alive()
    paused = deck.op(op["id"])
    assert (paused["status"], paused["paused_by"]) == ("paused", "window")
    assert paused["starts_at"] == "2026-12-02T01:00:00.000Z"
    assert paused["message"] == (
        "paused: outside the download window 01:00-06:00 of default; resumes at 01:00"
    )
    wait_streams(fake_ollama, "night:1b", ["closed"])
    # Only the window opening resumes it; a user cannot, but may pause it for good.
    refused = deck.client.post(f"/progress/{op['id']}/resume")
    assert refused.status_code == 409 and "window" in refused.json["error"]["message"]
    assert deck.pull("night:1b")["id"] == op["id"]  # joined, still paused
    # A pull asked for now waits for the window too.
    later = deck.pull("later:1b")
    assert later["status"] == "scheduled"
    assert later["message"] == "outside the download window 01:00-06:00 of default; starts at 01:00"

    clock.set("2026-12-02T00:59:00")
    assert deck.drain() == []
    clock.set("2026-12-02T01:00:00")  # it opens
    fake_ollama.allow_pull("later:1b", PullScript(layers=[10_000], step=5_000))
    assert deck.drain() == [op["id"], later["id"]]
    final = deck.op(op["id"])
    assert final["status"] == "succeeded" and final["paused_by"] is None
    percents = record.percents(op["id"]) + [final["percent"]]
    assert percents == sorted(percents), "the percent went back"
    wait_streams(fake_ollama, "night:1b", ["closed", "succeeded"])


def test_queued_pulls_of_a_host_whose_window_closed_wait_scheduled(fake_ollama, drained):
    deck = drained(OLLAMA_DECK_PULL_WINDOWS="01:00-06:00", OLLAMA_DECK_TIMEZONE="UTC")
    clock = WallClock("2026-12-01T05:59:00")
    deck.runner.wall = clock
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=5_000))
    fake_ollama.add_model("installed:1b")
    op = deck.pull("m:1")
    load = deck.client.post("/api/models/installed:1b/load").json
    clock.set("2026-12-01T06:00:00")
    # A load of an installed model downloads nothing: the window does not hold it.
    assert deck.drain() == [load["id"]]
    waiting = deck.op(op["id"])
    assert waiting["status"] == "scheduled" and waiting["starts_at"].startswith("2026-12-02T01:00")
    assert fake_ollama.pull_count("m:1") == 0


def test_a_stall_is_retried_then_fails_saying_it_stalled(fake_ollama, drained):
    deck = drained(**QUICK_STALLS)
    # Ollama keeps sending the same byte count, as it does on a stuck download.
    fake_ollama.allow_pull(
        "stuck:1b", PullScript(layers=LAYERS, step=10_000, interval=0.01, stall_after=3)
    )
    op = deck.pull("stuck:1b")
    started = time.monotonic()
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "failed"
    assert final["message"].startswith("stalled: no new bytes for 0 s")
    assert "2 retries did not help" in final["message"]
    texts = log_texts(final)
    assert [t for t in texts if "retry " in t] == [
        "stalled: no new bytes for 0 s; closing the stream and opening it again "
        f"(retry {n} of 2; Ollama resumes its partial download)"
        for n in (1, 2)
    ]
    wait_streams(fake_ollama, "stuck:1b", ["closed"] * 3)
    # Three periods of 0.2 s; nowhere near the 5 s read timeout of the test settings.
    assert time.monotonic() - started < 5


def test_a_silent_stream_is_retried_and_the_pull_goes_on(fake_ollama, drained, monkeypatch):
    deck = drained(OLLAMA_DECK_PULL_STALL_TIMEOUT=0.3, **QUICK_STALLS)
    fake_ollama.allow_pull(
        "silent:1b",
        PullScript(layers=LAYERS, step=10_000, stall_after=5, stall_silent=True, faulty_streams=1),
    )
    record = Recorder(monkeypatch, deck.deck.store)
    op = deck.pull("silent:1b")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "succeeded", final
    assert any(t.startswith("stalled: default sent nothing") for t in log_texts(final))
    wait_streams(fake_ollama, "silent:1b", ["closed", "succeeded"])
    percents = record.percents(op["id"])
    assert percents == sorted(percents)


def test_a_crawl_is_retried(fake_ollama, drained, monkeypatch):
    deck = drained(OLLAMA_DECK_PULL_CRAWL_BYTES="100KB", **QUICK_STALLS)
    # The first stream slows to 10 bytes a line (about 1 KB/s); the reopened one is fast.
    fake_ollama.allow_pull(
        "crawl:1b",
        PullScript(
            layers=LAYERS,
            step=5_000,
            interval=0.005,
            crawl_after=3,
            crawl_step=10,
            faulty_streams=1,
        ),
    )
    record = Recorder(monkeypatch, deck.deck.store)
    op = deck.pull("crawl:1b")
    deck.drain()
    final = deck.op(op["id"])
    assert final["status"] == "succeeded", final
    texts = log_texts(final)
    (retry,) = [t for t in texts if "retry 1 of 2" in t]
    assert retry.startswith("crawled: ") and "under the 100.0 KB/s" in retry
    wait_streams(fake_ollama, "crawl:1b", ["closed", "succeeded"])
    percents = record.percents(op["id"])
    assert percents == sorted(percents)


def test_a_pause_reaches_the_runner_of_another_deck(fake_ollama, make_app, serve, sqlite_url):
    """Two decks on one database: the pause arrives at the one that does not run the pull,
    which records it; the runner holding it closes the stream at its next heartbeat."""
    runner_app = make_app()
    other_app = make_app(OLLAMA_DECK_START_RUNNER=False)
    runs, other = serve(runner_app), serve(other_app)
    fake_ollama.allow_pull("slow:1b", SLOW)
    op = start_pull(runs, "slow:1b")
    wait_until(lambda: get_op(other, op["id"])["percent"] > 10)
    answer = other.post(f"/progress/{op['id']}/pause")
    # 202 while the other deck's runner closes it; 200 when that runner was quicker than
    # this answer (its heartbeat came between the request and the answer's read).
    assert (answer.status_code, answer.json()["status"]) in {
        (202, "running"),
        (200, "paused"),
    }, answer.text
    assert answer.json()["paused_by"] == "user"
    paused = wait_until(lambda: (s := get_op(other, op["id"]))["status"] == "paused" and s)
    wait_streams(fake_ollama, "slow:1b", ["closed"])
    assert other.post("/api/models/pull", json={"model": "slow:1b"}).json()["id"] == op["id"]
    assert other.post(f"/progress/{op['id']}/resume").json()["status"] == "queued"
    final = wait_final(runs, op["id"])
    assert final["status"] == "succeeded" and final["percent"] >= paused["percent"]


@pytest.mark.gunicorn
def test_a_pause_sent_to_the_worker_that_does_not_run_the_pull(
    fake_ollama,
    processes,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    """Two `ollama-deck serve` processes (gunicorn, gevent) on one SQLite file: the pause
    and the resume go to the worker that does not hold the stream."""
    database = tmp_path / "deck.db"
    decks = []
    for name in ("a", "b"):
        deck = DeckProcess(
            fake_ollama.url,
            f"sqlite:///{database}",
            tmp_path / f"{name}.log",
            OLLAMA_DECK_EVENT_BUS="poll",
        )
        processes.append(deck)
        decks.append(deck.wait_ready())
    fake_ollama.allow_pull("slow:1b", PullScript(layers=LAYERS, step=4_000, interval=0.02))
    op = start_pull(decks[0], "slow:1b")
    wait_until(lambda: get_op(decks[0], op["id"])["percent"] > 10, timeout=30)
    with sqlite3.connect(database) as conn:
        (runner,) = conn.execute(
            "SELECT runner_id FROM ollama_deck_operation WHERE id = ?", (op["id"],)
        ).fetchone()
    holder = int(runner.split(":")[1])
    pids = [deck.get("/api/status").json()["pid"] for deck in decks]
    assert holder in pids
    other = decks[1 - pids.index(holder)]

    answer = other.post(f"/progress/{op['id']}/pause")
    assert answer.status_code == 202, answer.text  # the holder closes the stream
    paused = wait_until(lambda: (s := get_op(other, op["id"]))["status"] == "paused" and s, 30)
    wait_streams(fake_ollama, "slow:1b", ["closed"])
    joined = other.post("/api/models/pull", json={"model": "slow:1b"}).json()
    assert (joined["id"], joined["created"], joined["status"]) == (op["id"], False, "paused")
    assert other.post(f"/progress/{op['id']}/resume").json()["status"] in ("queued", "running")
    final = wait_final(other, op["id"], timeout=30)
    assert final["status"] == "succeeded"
    assert final["percent"] == 100.0 >= paused["percent"] > 10
    wait_streams(fake_ollama, "slow:1b", ["closed", "succeeded"])
