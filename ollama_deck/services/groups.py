"""A group's state from its children's: pure functions, no database.

A group is an operation of kind ``group`` whose children do the work, one per host (and
model). It never runs anything itself: the store rewrites its row, in the transaction of
a child's change, when :func:`write_due` says what the group shows has changed. Its status
is :func:`~..lifecycle.group_status` of the children's; its bytes add up theirs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..lifecycle import FINAL
from ..lifecycle import group_status
from ..lifecycle import Hold
from ..lifecycle import Status

# A group row is rewritten at once when its status, whole percent, message or a child's
# outcome changes; for bytes and speed alone, at most this often (seconds).
BYTES_INTERVAL = 1.0
# The fields of a child that a group keeps (its ``children``), besides the host's name.
CHILD_FIELDS = ("id", "kind", "model", "status", "message", "error")


@dataclass(frozen=True)
class GroupState:
    """What a group row shows, derived from its children."""

    status: Status
    percent: float
    completed_bytes: int
    total_bytes: int
    speed: float | None
    eta_seconds: float | None
    message: str
    error: str | None
    children: list[dict[str, Any]]
    paused_by: Hold | None = None  # paused: by a user if any child is (resume undoes it)

    def fields(self) -> dict[str, Any]:
        """The group row's columns for this state."""
        return {
            "status": self.status,
            "paused_by": self.paused_by,
            "percent": self.percent,
            "completed_bytes": self.completed_bytes,
            "total_bytes": self.total_bytes,
            "speed": self.speed,
            "eta_seconds": self.eta_seconds,
            "message": self.message,
            "error": self.error,
            "children": json.dumps(self.children, separators=(",", ":")),
        }


def child_outcome(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A child as its group lists it: id, kind, model, host (its name), status, whole
    percent, message and error."""
    outcome = {key: row[key] for key in CHILD_FIELDS}
    outcome["host"] = names.get(row["host"], row["host"])
    outcome["percent"] = 100 if row["status"] == Status.SUCCEEDED else int(row["percent"] or 0)
    return outcome


def aggregate(
    children: Sequence[Mapping[str, Any]], names: Mapping[str, str], *, floor: float = 0.0
) -> GroupState:
    """The state of a group with ``children`` (rows, in the group's order).

    Percent is the mean of the children's (a child that succeeded counts 100), and never
    below ``floor`` (the group's own, while it runs: a bar must not go back). Bytes add up;
    speed adds up the running children's; the ETA is the longest of theirs.
    """
    outcomes = [child_outcome(row, names) for row in children]
    status = group_status([row["status"] for row in children])
    if children:
        percent = sum(
            100.0 if row["status"] == Status.SUCCEEDED else float(row["percent"] or 0.0)
            for row in children
        ) / len(children)
    else:
        percent = 100.0
    if status == Status.SUCCEEDED:
        percent = 100.0
    elif status not in FINAL:
        percent = max(percent, floor)
    running = [row for row in children if row["status"] == Status.RUNNING]
    holds = {row.get("paused_by") for row in children if row["status"] == Status.PAUSED}
    paused_by = None
    if status == Status.PAUSED:
        paused_by = Hold.USER if Hold.USER in holds else Hold.WINDOW
    speeds = [row["speed"] for row in running if row["speed"] is not None]
    etas = [row["eta_seconds"] for row in running]
    return GroupState(
        status=status,
        percent=min(percent, 100.0),
        completed_bytes=sum(int(row["completed_bytes"] or 0) for row in children),
        total_bytes=sum(int(row["total_bytes"] or 0) for row in children),
        speed=sum(speeds) if speeds else None,
        eta_seconds=max(etas) if etas and None not in etas else None,
        message=group_message(outcomes),
        error=group_error(outcomes) if status in FINAL and status != Status.SUCCEEDED else None,
        children=outcomes,
        paused_by=paused_by,
    )


def group_message(outcomes: Iterable[Mapping[str, Any]]) -> str:
    """``2 of 3 done: 1 running`` while it runs; ``3 succeeded`` or ``1 failed, 2 succeeded``
    once all ended."""
    counts: dict[str, int] = {}
    total = done = 0
    for outcome in outcomes:
        total += 1
        done += outcome["status"] in FINAL
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=_by_weight))
    if done == total:
        return said or "nothing to do"
    return f"{done} of {total} done: {said}"


def _by_weight(item: tuple[str, int]) -> tuple[int, str]:
    # Troubles first, then what runs, then what succeeded.
    order: list[str] = [
        Status.FAILED,
        Status.INTERRUPTED,
        Status.CANCELLED,
        Status.RUNNING,
        Status.PAUSED,
        Status.QUEUED,
        Status.SCHEDULED,
    ]
    status = item[0]
    return (order.index(status) if status in order else len(order), status)


def group_error(outcomes: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a group did not succeed: each child that did not, with its host and reason."""
    reasons = [
        f"{o['host']}: {o['kind']} of {o['model']} {o['status']}"
        + (f" ({o['error'] or o['message']})" if (o["error"] or o["message"]) else "")
        for o in outcomes
        if o["status"] in FINAL and o["status"] != Status.SUCCEEDED
    ]
    return "; ".join(reasons) or None


def ended_note(row: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The group's log line when one of its children ends."""
    host = names.get(row["host"], row["host"])
    why = row["error"] or (row["message"] if row["status"] != Status.SUCCEEDED else None)
    said = f"{host}: {row['kind']} of {row['model']} {row['status']}"
    return f"{said}: {why}" if why and why != row["status"] else said


def write_due(group: Mapping[str, Any], state: GroupState, now: float) -> bool:
    """Whether the group row must be rewritten for ``state``: what it shows changed (its
    status, whole percent, message or a child's outcome), or only its bytes or speed and
    ``BYTES_INTERVAL`` passed since it was last written."""
    if (
        group["status"] != state.status
        or group.get("paused_by") != state.paused_by
        or int(group["percent"] or 0) != int(state.percent)
        or group["message"] != state.message
        or stored_children(group) != state.children
    ):
        return True
    moved = (
        group["completed_bytes"] != state.completed_bytes
        or group["total_bytes"] != state.total_bytes
        or group["speed"] != state.speed
    )
    return moved and now - float(group["updated_at"] or 0.0) >= BYTES_INTERVAL


def stored_children(row: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """A group row's ``children`` as a list (None for an operation that is no group)."""
    text = row.get("children")
    return json.loads(text) if text else None
