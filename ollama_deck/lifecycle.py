"""The vocabulary of an operation's life: its kinds, statuses and phases, and the pure
decisions about them.

Every other module, the page included (it gets :func:`vocabulary` from the server), names
statuses through these enums instead of re-typing strings. They are ``StrEnum``: a member
*is* its string, so rows, JSON and SQL comparisons take them as they are.
"""

from __future__ import annotations

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
