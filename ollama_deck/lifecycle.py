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
    DELETE = "delete"  # remove a model from a host: a quick call, run as a group's child
    GROUP = "group"  # one action across hosts: its children do the work, it adds them up


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


# Kinds that end with the model installed: a pull may join any of them (it brings the model).
FETCHING: tuple[Kind, ...] = (Kind.PULL, Kind.LOAD, Kind.UPDATE)


def is_active(status: str) -> bool:
    return status in ACTIVE


def is_final(status: str) -> bool:
    return status in FINAL


def may_join(wanted: str, running: str) -> bool:
    """Whether a group's child of kind ``wanted`` may be the operation of kind ``running``
    already active for the same model and host, instead of a new one.

    The same kind joins; a pull or an update joins anything that fetches the model. A
    delete joins only a delete, and nothing joins a delete: while one is active on a model,
    a fetch of it is refused (and the database's one-active rule holds it so).
    """
    if wanted == running:
        return True
    return wanted in (Kind.PULL, Kind.UPDATE) and running in FETCHING


# A group that ended with children in different final statuses takes the first of these
# that any child has (then succeeded, when all did).
GROUP_OUTCOMES: tuple[Status, ...] = (Status.FAILED, Status.INTERRUPTED, Status.CANCELLED)


def group_status(children: Collection[str]) -> Status:
    """A group's status, from its children's alone (a pure function, so a status added to
    the lifecycle only needs a place here).

    Unfinished while any child is: the status all its children share when none runs
    (all queued: queued), else running. Once all ended: the first of ``GROUP_OUTCOMES``
    some child has, else succeeded. A group without children has nothing left to do.
    """
    unfinished = [s for s in children if s not in FINAL]
    if unfinished:
        shared = set(unfinished)
        if Status.RUNNING not in shared and len(shared) == 1 and len(unfinished) == len(children):
            return Status(unfinished[0])
        return Status.RUNNING
    for outcome in GROUP_OUTCOMES:
        if outcome in children:
            return outcome
    if all(s == Status.SUCCEEDED for s in children):
        return Status.SUCCEEDED
    return Status.FAILED  # a final status this function does not know: not a success


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
