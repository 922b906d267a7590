"""The vocabulary of an operation's life: its kinds, statuses and phases, and the pure
decisions about them.

Every other module, the page included (it gets :func:`vocabulary` from the server), names
statuses through these enums instead of re-typing strings. They are ``StrEnum``: a member
*is* its string, so rows, JSON and SQL comparisons take them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What an operation does."""

    PULL = "pull"  # download a model
    LOAD = "load"  # pull it if missing, then warm it into memory
    UPDATE = "update"  # pull an installed model again; the result says if it changed


class Status(StrEnum):
    """Where an operation is in its life. Queued and running are active; the rest final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class Phase(StrEnum):
    """What a running pull is doing, derived from Ollama's status lines."""

    MANIFEST = "manifest"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    WRITING = "writing"
    LOADING = "loading"
    DONE = "done"


ACTIVE: tuple[Status, ...] = (Status.QUEUED, Status.RUNNING)
FINAL: tuple[Status, ...] = (
    Status.SUCCEEDED,
    Status.FAILED,
    Status.CANCELLED,
    Status.INTERRUPTED,
)
# Final statuses a user may start again (a pull that succeeded has nothing to retry).
RETRYABLE: tuple[Status, ...] = (Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)


def is_active(status: str) -> bool:
    return status in ACTIVE


def is_final(status: str) -> bool:
    return status in FINAL


# Phases in which a pull expects bytes; silence there is a stall (None: not started yet).
STALLABLE: tuple[Phase | None, ...] = (None, Phase.MANIFEST, Phase.DOWNLOADING)


class OrphanReason(StrEnum):
    """Why nobody runs a running operation any more."""

    NO_JOB = "no_job"  # held by the asking runner, which has no live job for it
    STALE = "stale"  # its runner stopped beating (or never did)
    GONE = "gone"  # its runner was a process of this machine that no longer exists


@dataclass(frozen=True)
class Orphan:
    """The decision that a running operation is unowned, with what the store must check
    again when it takes the row, so that a runner coming back in between wins."""

    reason: OrphanReason
    runner_id: str | None  # the holder seen (NO_JOB, GONE: it must still hold the row)
    stale_before: float  # STALE: the heartbeat must still be older than this


def is_orphan(
    row: Mapping[str, Any],
    *,
    now: float,
    stale_seconds: float,
    my_runner_id: str,
    my_live_jobs: Collection[str],
    this_host: str,
    this_pid: int,
    pid_alive: Callable[[int], bool],
) -> Orphan | None:
    """Whether nobody runs the running operation ``row``; why, or None if a live runner may.

    Ours is alive exactly while our job is, even if a database fault kept its heartbeat from
    being written. Another runner is gone once its heartbeat is older than ``stale_seconds``,
    or at once when it was a process of this machine (runner ids are host:pid:random) that
    is not alive any more.
    """
    runner_id = row["runner_id"]
    cutoff = now - stale_seconds
    if runner_id == my_runner_id:
        if row["id"] in my_live_jobs:
            return None
        return Orphan(OrphanReason.NO_JOB, runner_id, cutoff)
    heartbeat = row["heartbeat_at"]
    if runner_id is None or heartbeat is None or heartbeat < cutoff:
        return Orphan(OrphanReason.STALE, runner_id, cutoff)
    parts = runner_id.rsplit(":", 2)
    if len(parts) == 3 and parts[0] == this_host and parts[1].isdigit():
        pid = int(parts[1])
        if pid != this_pid and not pid_alive(pid):
            return Orphan(OrphanReason.GONE, runner_id, cutoff)
    return None


def vocabulary() -> dict[str, Any]:
    """The enums as the page reads them, so the JavaScript never re-types a status."""
    return {
        "kinds": [k.value for k in Kind],
        "statuses": [s.value for s in Status],
        "phases": [p.value for p in Phase],
        "active": [s.value for s in ACTIVE],
        "final": [s.value for s in FINAL],
        "retryable": [s.value for s in RETRYABLE],
    }


# ---------------------------------------------------------------- webhooks


class WebhookEvent(StrEnum):
    """What a webhook tells (services/webhooks.py)."""

    STARTED = "operation.started"  # with OLLAMA_DECK_WEBHOOK_ON_START: its first start
    FINISHED = "operation.finished"  # it reached a final status


class DeliveryStatus(StrEnum):
    """Where a webhook delivery is: waiting (first try or a retry), done, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
