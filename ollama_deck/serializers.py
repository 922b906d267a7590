"""Rows to what clients see: an operation or a log line as public JSON, and as SSE events.

Kept apart from the store, which only reads and writes: the views, the model listing and
the event stream render rows the same way whichever of them got the row.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from datetime import UTC
from typing import Any

from flask import url_for

from .lifecycle import ACTIVE
from .lifecycle import FINAL
from .lifecycle import Kind
from .services.events import DeckEvent
from .services.events import make_event
from .services.groups import stored_children
from .services.updates import update_result

TIME_FIELDS = (
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "not_before",
    "starts_at",
    "paused_at",
)


def iso_time(seconds: float | None) -> str | None:
    """UNIX seconds -> RFC 3339 in UTC with milliseconds."""
    if seconds is None:
        return None
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def operation_json(row: dict[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The public JSON form of an operation row (no runner internals).

    Rows hold the Ollama host's URL (its identity); ``names`` maps URLs to the names that
    configuration gives them, which is what users see (``host``; the URL is ``host_url``).
    """
    url = row["host"]  # a group's is its hosts' names, comma-separated
    data = {
        "id": row["id"],
        "kind": row["kind"],
        "model": row["model"],
        "host": names.get(url, url) if names else url,
        "host_url": "" if row["kind"] == Kind.GROUP else url,  # a group has no one URL
        "status": row["status"],
        "active": row["status"] in ACTIVE,
        "phase": row["phase"],
        "percent": row["percent"],
        "completed_bytes": row["completed_bytes"],
        "total_bytes": row["total_bytes"],
        "speed": row["speed"],
        "eta_seconds": row["eta_seconds"],
        "message": row["message"],
        "error": row["error"],
        "cancel_requested": bool(row["cancel_requested"]),
        "paused_by": row["paused_by"],
        "attempts": row["attempts"],
        "seq": row["seq"],
        "result": update_result(row),  # an update's outcome: updated or current
        "log_count": row.get("log_count"),  # lines its log keeps (services/rows.py)
        "children": stored_children(row),  # a group's: ids and outcomes; else None
    }
    for field in TIME_FIELDS:
        data[field] = iso_time(row[field])
    return data


def operation_urls(op_id: str) -> dict[str, str]:
    """Where to poll, stream, cancel, pause and resume an operation (needs an app or
    request context)."""
    return {
        "progress": url_for("ollama_deck_progress.get_operation", op_id=op_id),
        "stream": url_for("ollama_deck_progress.stream_operation", op_id=op_id),
        "cancel": url_for("ollama_deck_progress.cancel_operation", op_id=op_id),
        "pause": url_for("ollama_deck_progress.pause_operation", op_id=op_id),
        "resume": url_for("ollama_deck_progress.resume_operation", op_id=op_id),
    }


def operation_payload(
    row: dict[str, Any], names: Mapping[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """An operation's JSON with the URLs to poll, stream and cancel it: what the API sends."""
    data = operation_json(row, names)
    data["urls"] = operation_urls(row["id"])
    data.update(extra)
    return data


def log_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public JSON form of one log line."""
    return {
        "operation_id": row["operation_id"],
        "seq": row["seq"],
        "time": iso_time(row["created_at"]),
        "text": row["text"],
    }


def operation_event(row: dict[str, Any], names: Mapping[str, str] | None = None) -> DeckEvent:
    """The SSE event of an operation's state: ``done`` once final, else ``progress``."""
    kind = "done" if row["status"] in FINAL else "progress"
    return make_event(row["seq"], row["id"], kind, operation_json(row, names))


def log_event(row: dict[str, Any]) -> DeckEvent:
    """The SSE event of one log line."""
    return make_event(row["seq"], row["operation_id"], "log", log_json(row))
