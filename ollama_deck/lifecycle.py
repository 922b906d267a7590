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
    """Where an operation is in its life: active (it holds its model) or final."""

    QUEUED = "queued"  # waits for a free slot
    SCHEDULED = "scheduled"  # waits for a time: its not_before, or its host's download window
    RUNNING = "running"
    PAUSED = "paused"  # stopped, partial download kept: by a user, or by its host's window
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


class Hold(StrEnum):
    """Who paused an operation (``paused_by``); on a running one, a pause asked for."""

    USER = "user"  # until someone resumes it
    WINDOW = "window"  # its host's download window closed; it resumes when it opens


# Active: not ended, and holding its (host, model): a second pull of the model joins it.
ACTIVE: tuple[Status, ...] = (Status.QUEUED, Status.SCHEDULED, Status.RUNNING, Status.PAUSED)
# Active but not running: no runner holds it, so a cancel ends it at once.
WAITING: tuple[Status, ...] = (Status.QUEUED, Status.SCHEDULED, Status.PAUSED)
# What a user may pause (a pull paused by the window too: the user's pause then holds it).
PAUSABLE: tuple[Status, ...] = (Status.QUEUED, Status.SCHEDULED, Status.RUNNING)
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


# A group none of whose unfinished children runs waits as the first of these that one of
# them does (one queued: the group will move soon; all paused: it waits for a resume).
GROUP_WAITING: tuple[Status, ...] = (Status.QUEUED, Status.SCHEDULED, Status.PAUSED)
# A group that ended with children in different final statuses takes the first of these
# that any child has (then succeeded, when all did).
GROUP_OUTCOMES: tuple[Status, ...] = (Status.FAILED, Status.INTERRUPTED, Status.CANCELLED)


def group_status(children: Collection[str]) -> Status:
    """A group's status, from its children's alone (a pure function, so a status added to
    the lifecycle only needs a place here).

    Unfinished while any child is: running while one runs, else the first of
    ``GROUP_WAITING`` that an unfinished child has. Once all ended: the first of
    ``GROUP_OUTCOMES`` some child has, else succeeded. A group without children has
    nothing left to do.
    """
    unfinished = {s for s in children if s not in FINAL}
    if unfinished:
        if Status.RUNNING in unfinished:
            return Status.RUNNING
        return next((s for s in GROUP_WAITING if s in unfinished), Status.RUNNING)
    for outcome in GROUP_OUTCOMES:
        if outcome in children:
            return outcome
    if all(s == Status.SUCCEEDED for s in children):
        return Status.SUCCEEDED
    return Status.FAILED  # a final status this function does not know: not a success


# Phases in which a pull expects bytes; silence there is a stall (None: not started yet).
STALLABLE: tuple[Phase | None, ...] = (None, Phase.MANIFEST, Phase.DOWNLOADING)
# Kinds held by download windows and not_before: those that download. A load of an
# installed model downloads nothing, and a person waits for it.
WINDOWED: tuple[Kind, ...] = (Kind.PULL, Kind.UPDATE)
# Ollama deletes partial downloads idle for longer than this when it starts (unless
# OLLAMA_NOPRUNE is set): a pull paused longer may start over after an Ollama restart.
PRUNE_AFTER_SECONDS = 3600.0
PRUNE_NOTE = (
    "paused for over an hour: if Ollama restarts now it deletes this partial download "
    "(unless OLLAMA_NOPRUNE is set), and resuming starts it over"
)


def may_resume(row: Mapping[str, Any]) -> bool:
    """Only a user's pause is undone by a user: a window's ends when the window opens."""
    return row["status"] == Status.PAUSED and row["paused_by"] == Hold.USER


def stop_request(row: Mapping[str, Any]) -> Status | None:
    """What a running operation's row asks of the runner that holds it: CANCELLED, PAUSED
    (a user's pause), or None. A cancel wins over a pause."""
    if row["cancel_requested"]:
        return Status.CANCELLED
    if row["paused_by"] is not None:
        return Status.PAUSED
    return None


class Recovery(StrEnum):
    """What becomes of an operation whose runner vanished."""

    CANCEL = "cancel"  # a cancel was asked
    PAUSE = "pause"  # a pause was asked: it keeps waiting for a resume
    INTERRUPT = "interrupt"  # OLLAMA_DECK_ON_RESTART=interrupt
    REQUEUE = "requeue"  # the default: the next runner resumes it


def recovery_for(row: Mapping[str, Any], on_restart: str) -> Recovery:
    """The fate of an orphaned running ``row``: what its users asked for comes first."""
    if row["cancel_requested"]:
        return Recovery.CANCEL
    if row.get("paused_by") is not None:
        return Recovery.PAUSE
    if on_restart == "interrupt":
        return Recovery.INTERRUPT
    return Recovery.REQUEUE


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
        "waiting": [s.value for s in WAITING],
        "pausable": [s.value for s in PAUSABLE],
        "holds": [h.value for h in Hold],
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


class Action(StrEnum):
    """What a recorded request did (recording.recorded marks its view; the activity record)."""

    PULL = "pull"
    UPDATE = "update"
    DELETE = "delete"
    LOAD = "load"
    UNLOAD = "unload"
    ACTIVE_MODEL = "active_model"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    APPLY = "apply"
    DESIRED_MODELS = "desired_models"  # a desired set stored or forgotten
    FORGET = "forget"  # one finished operation
    FORGET_FINISHED = "forget_finished"  # "Clear finished"
    SESSION_OPEN = "session.open"
    SESSION_CLOSE = "session.close"
