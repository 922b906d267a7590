"""The lifecycle's pure parts: the vocabulary, the orphan decision and the backoff."""

from __future__ import annotations

import pytest

from ollama_deck.lifecycle import ACTIVE
from ollama_deck.lifecycle import FINAL
from ollama_deck.lifecycle import is_orphan
from ollama_deck.lifecycle import OrphanReason
from ollama_deck.lifecycle import PAUSABLE
from ollama_deck.lifecycle import RETRYABLE
from ollama_deck.lifecycle import Status
from ollama_deck.lifecycle import vocabulary
from ollama_deck.lifecycle import WAITING
from ollama_deck.services.backoff import Backoff

NOW = 1_000.0
ME = "box:100:aaaa"
LIVE_PIDS = {100, 200}


def row(runner_id: str | None, heartbeat_at: float | None, op_id: str = "op") -> dict:
    return {"id": op_id, "runner_id": runner_id, "heartbeat_at": heartbeat_at}


@pytest.mark.parametrize(
    ("case", "live_jobs", "expected"),
    [
        # Ours: alive exactly while our job is, whatever the heartbeat says.
        (row(ME, NOW), {"op"}, None),
        (row(ME, 0.0), {"op"}, None),
        (row(ME, NOW), set(), OrphanReason.NO_JOB),
        # Another runner: stale heartbeat, none at all, or no runner.
        (row("other:1:bbbb", NOW - 31), set(), OrphanReason.STALE),
        (row("other:1:bbbb", None), set(), OrphanReason.STALE),
        (row(None, NOW), set(), OrphanReason.STALE),
        (row("other:1:bbbb", NOW - 29), set(), None),
        # A process of this machine: gone at once when its pid is not alive.
        (row("box:300:cccc", NOW), set(), OrphanReason.GONE),
        (row("box:200:cccc", NOW), set(), None),
        # Another runner of this very process (same pid): only staleness counts.
        (row("box:100:dddd", NOW), set(), None),
        # Not our machine, or an id that is not host:pid:random: only staleness counts.
        (row("elsewhere:300:cccc", NOW), set(), None),
        (row("box:notapid:cccc", NOW), set(), None),
        (row("weird", NOW), set(), None),
    ],
)
def test_is_orphan(case, live_jobs, expected):
    found = is_orphan(
        case,
        now=NOW,
        stale_seconds=30.0,
        my_runner_id=ME,
        my_live_jobs=live_jobs,
        this_host="box",
        this_pid=100,
        pid_alive=lambda pid: pid in LIVE_PIDS,
    )
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.reason == expected
        assert found.runner_id == case["runner_id"]
        assert found.stale_before == NOW - 30.0


def test_the_status_sets_partition_the_statuses():
    assert set(ACTIVE) | set(FINAL) == set(Status)
    assert not set(ACTIVE) & set(FINAL)
    assert set(RETRYABLE) <= set(FINAL) and Status.SUCCEEDED not in RETRYABLE
    assert vocabulary()["active"] == ["queued", "scheduled", "running", "paused"]
    # Waiting ones are the active ones no runner holds; a user may pause all but paused.
    assert set(WAITING) == set(ACTIVE) - {Status.RUNNING}
    assert set(PAUSABLE) == set(ACTIVE) - {Status.PAUSED}
    assert vocabulary()["holds"] == ["user", "window"]


def test_backoff_doubles_up_to_its_cap_and_stops_at_the_deadline():
    now = [0.0]
    backoff = Backoff(1.0, cap=4.0, seconds=10.0, clock=lambda: now[0])
    waits = []
    while (wait := backoff.next()) is not None:
        waits.append(wait)
        now[0] += wait
    assert waits == [1.0, 2.0, 4.0, 3.0]  # the last one shortened to the deadline
    assert backoff.tries == 4
