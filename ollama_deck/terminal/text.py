"""Figures as a person reads them: sizes, speeds, durations, ages, and an operation's
state in a few words. Pure functions of their arguments (the clock is passed in)."""

from __future__ import annotations

from datetime import datetime

from ..lifecycle import Kind
from ..lifecycle import Status
from ..schemas import OperationState

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def size(count: float | None) -> str:
    """Bytes in decimal units, as Ollama shows them: ``840 MB``, ``2.0 GB``."""
    if count is None:
        return "?"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def speed(per_second: float | None) -> str:
    return f"{size(per_second)}/s" if per_second else ""


def duration(seconds: float | None) -> str:
    """``45s``, ``4m05s``, ``1h02m``, ``3d04h``."""
    if seconds is None:
        return ""
    whole = max(0, int(round(seconds)))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def parse_time(stamp: str | None) -> float | None:
    """An RFC 3339 time of the API as UNIX seconds."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def age(stamp: str | None, now: float) -> str:
    """How long ago ``stamp`` was: ``12s``, ``5m03s``, ``2h10m``."""
    when = parse_time(stamp)
    return duration(now - when) if when is not None else ""


def percent(state: OperationState) -> int:
    """Whole percent, never 100 before the end: a bar at 100 % that still runs misleads."""
    value = int(state.percent)
    return min(value, 99) if state.status != Status.SUCCEEDED else 100


def stage(state: OperationState) -> str:
    """The one word for where it is: the status, or a running operation's phase."""
    if state.status == Status.RUNNING:
        return str(state.phase or "starting")
    return str(state.status)


def bytes_done(state: OperationState) -> str:
    if not state.total_bytes:
        return ""
    return f"{size(state.completed_bytes or 0)}/{size(state.total_bytes)}"


def outcome(state: OperationState) -> str:
    """What a final state says beyond its status: why it failed, what an update did."""
    if state.status == Status.SUCCEEDED:
        if state.result is not None:
            if state.result.status == "current":
                return "already current"
            old, new = (state.result.old or "")[:12], (state.result.new or "")[:12]
            return f"updated {old} -> {new}" if old and new else "updated"
        return size(state.total_bytes) if state.total_bytes else ""
    return state.error or state.message or ""


def elapsed(state: OperationState) -> float | None:
    """Seconds from start (or creation) to the end."""
    start = parse_time(state.started_at) or parse_time(state.created_at)
    end = parse_time(state.finished_at)
    return end - start if start is not None and end is not None else None


def summary(state: OperationState) -> str:
    """The figures of an active operation in one line: percent, bytes, speed, ETA."""
    parts = [f"{percent(state)}%", bytes_done(state), speed(state.speed)]
    if state.eta_seconds is not None and state.status == Status.RUNNING:
        parts.append(f"ETA {duration(state.eta_seconds)}")
    return "  ".join(p for p in parts if p)


def label(state: OperationState, *, child: bool = False) -> str:
    """What a row of the display is called: the model; a group's title and its hosts
    (``llama3.2:1b on gpu1, gpu2``); a group's child, its host first (``gpu1: llama3.2:1b``)."""
    if state.kind == Kind.GROUP:
        return f"{state.model} on {', '.join(state.host.split(','))}"
    return f"{state.host}: {state.model}" if child else state.model


def short_id(op_id: str) -> str:
    """The first 8 characters, as ``ps`` shows ids (any unique prefix is accepted)."""
    return op_id[:8]


def final_line(state: OperationState) -> str:
    """``succeeded  2.0 GB in 28s``, ``succeeded  already current``, ``failed: <why>``."""
    said = outcome(state)
    if state.status == Status.SUCCEEDED:
        took = elapsed(state)
        if took is not None and said and state.result is None:
            said += f" in {duration(took)}"
        return f"{state.status}  {said}".rstrip()
    return f"{state.status}: {said}" if said and said != state.status else str(state.status)


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell, two spaces apart; ``right`` ones right-aligned."""
    right = right or set()
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for cells in [headers, *rows]:
        padded = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
