"""The reconciler on several workers: ``ollama-deck serve --workers 2`` on PostgreSQL with
OLLAMA_DECK_RECONCILE_SECONDS, both workers ticking every heartbeat; the stored set is
applied once, by whichever worker took the lease, not once per worker. Skips, saying why,
without OLLAMA_DECK_TEST_DATABASE_URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .conftest import PG_VARIABLE
from .conftest import postgres_schema
from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until

WORKERS = 2
pytestmark = [pytest.mark.gunicorn, pytest.mark.scaleout]


@pytest.fixture
def two_hosts() -> Iterator[tuple[FakeOllama, FakeOllama]]:
    with FakeOllama() as gpu1, FakeOllama() as gpu2:
        yield gpu1, gpu2


@pytest.fixture
def deck(two_hosts, tmp_path) -> Iterator[ServerProcess]:
    base_url = os.environ.get(PG_VARIABLE)
    if not base_url:
        pytest.skip(f"several workers need PostgreSQL: set {PG_VARIABLE}")
    gpu1, gpu2 = two_hosts
    env = dict(
        os.environ,
        OLLAMA_HOSTS=f"gpu1={gpu1.url},gpu2={gpu2.url}",
        OLLAMA_DECK_EVENT_BUS="poll",
        OLLAMA_DECK_POLL_SECONDS="0.2",
        OLLAMA_DECK_HEARTBEAT_SECONDS="0.2",
        # Once an hour: within the test, a second application would be a second worker's.
        OLLAMA_DECK_RECONCILE_SECONDS="3600",
    )
    with postgres_schema(base_url) as database_url:
        port = free_port()
        command = deck_command(
            "serve", "--port", str(port), "--workers", str(WORKERS), "--database-url", database_url
        )
        server = ServerProcess(
            command,
            port=port,
            env=env,
            log=tmp_path / "deck.log",
            ready_path="/healthz",
            ready_status=None,
            ready_timeout=60,
            keep_alive=False,  # a new connection per request: either worker may answer
        )
        with server:
            yield server


def reconcilers(deck: ServerProcess) -> dict[int, dict]:
    """Each worker's reconciler as its /api/status tells, asked until both answered."""
    seen: dict[int, dict] = {}

    def both() -> bool:
        with requests.Session() as fresh:
            status = fresh.get(deck.url + "/api/status", timeout=10).json()
        seen[status["pid"]] = status["reconciler"]
        return len(seen) == WORKERS

    wait_until(both, timeout=60, interval=0)
    return seen


def test_two_workers_apply_a_stored_set_once(deck, two_hosts):
    gpu1, _ = two_hosts
    # The pull fails at once, so the host stays short of the set: a worker that applied it
    # again would pull again.
    gpu1.allow_pull("m:1", PullScript(layers=[10_000], step=1_000, error_after=1))
    assert all(r["every"] == 3600 for r in reconcilers(deck).values())
    stored = deck.put("/api/desired-models", json={"hosts": {"gpu1": {"models": ["m:1"]}}})
    assert stored.status_code == 200

    def ended_group() -> dict | None:
        groups = [op for op in deck.get("/progress").json()["operations"] if op["kind"] == "group"]
        return groups[0] if groups and not groups[0]["active"] else None

    group = wait_until(ended_group, timeout=30)
    assert group["status"] == "failed" and group["model"] == "reconcile: 1 to pull"
    ended = datetime.fromisoformat(group["finished_at"].replace("Z", "+00:00")).timestamp()
    # Both workers have looked at the lease since the pull failed.
    wait_until(
        lambda: all((r["checked_at"] or 0) > ended for r in reconcilers(deck).values()),
        timeout=30,
    )
    groups = [op for op in deck.get("/progress").json()["operations"] if op["kind"] == "group"]
    assert [g["id"] for g in groups] == [group["id"]]
    assert gpu1.pull_count("m:1") == 1
    applied = [r for r in reconcilers(deck).values() if r["applied_at"] is not None]
    assert len(applied) == 1 and applied[0]["group"] == group["id"]
