"""/progress: operations by polling (JSON) and by Server-Sent Events."""

from __future__ import annotations

import json
import uuid

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request

from .. import schemas as S
from ..contracts import contract
from ..contracts import parse_query
from ..disconnect import watch_client
from ..errors import BadRequest
from ..errors import Conflict
from ..errors import NotFound
from ..http import int_arg
from ..http import register_json_errors
from ..http import sse_response
from ..http import unknown_route
from ..http import whole_number
from ..lifecycle import Action
from ..lifecycle import FINAL
from ..lifecycle import Status
from ..parking import parking
from ..recording import record_activity
from ..recording import recorded
from ..security import protect
from ..security import session_bound
from ..serializers import log_json
from ..services.streams import follow
from ..services.streams import Stream
from ..state import activate_deck
from ..state import deck
from .api import ALL_METHODS
from .api import operation_payload

bp = Blueprint("ollama_deck_progress", __name__)
register_json_errors(bp)
protect(bp)  # first: a refused request must not start anything
bp.before_request(activate_deck)
bp.after_request(record_activity)  # the views marked @recorded: one entry per request
bp.add_url_rule("/<path:_unknown>", "unknown", unknown_route, methods=ALL_METHODS)
CANCEL_WAIT_SECONDS = 5.0


def _check_id(op_id: str) -> None:
    try:
        uuid.UUID(op_id)
    except ValueError:
        raise NotFound(f"no operation {op_id!r}: ids are UUIDs") from None


def _operation(op_id: str) -> dict:
    _check_id(op_id)
    row = deck().store.get(op_id)
    if row is None:
        raise NotFound(f"no operation {op_id}")
    return row


@bp.get("", strict_slashes=False)
@contract(query=S.OperationsQuery, responses={200: S.Operations}, errors=(400,))
def list_operations():
    """Operations, newest first; ``?status=running,queued`` filters, ``?limit=`` bounds a
    page and ``?before=`` (the answer's ``next``) asks for the next one."""
    query = parse_query(S.OperationsQuery)
    rows = deck().store.list(
        statuses=query.statuses() or None,
        limit=query.limit,
        before=S.read_page_cursor(query.before) if query.before else None,
    )
    more = S.page_cursor(rows[-1]) if len(rows) == query.limit else None
    return jsonify({"operations": [operation_payload(r) for r in rows], "next": more})


@bp.delete("", strict_slashes=False)
@recorded(Action.FORGET_FINISHED)
@contract(responses={200: S.ForgottenOperations})
def forget_finished():
    """Forget every finished operation and its log ("Clear finished"); active ones stay."""
    return jsonify({"deleted": deck().store.forget_finished()})


@bp.get("/<op_id>")
@contract(query=S.OperationQuery, responses={200: S.Operation}, errors=(400, 404))
def get_operation(op_id: str):
    """One operation: status, phase, percent, bytes, speed, ETA and its last log lines."""
    _check_id(op_id)
    state = deck()
    limit = int_arg("log", 50, low=0, high=state.store.log_lines)

    def render(row: dict, logs: list[dict]) -> bytes:
        payload = operation_payload(row, log=[log_json(r) for r in logs])
        return json.dumps(payload, separators=(",", ":")).encode()

    body = state.polls.answer(op_id, limit, render)
    if body is None:
        raise NotFound(f"no operation {op_id}")
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/<op_id>/cancel")
@recorded(Action.CANCEL)
@contract(
    responses={200: S.Operation, 202: S.Operation},
    descriptions={200: "it ended", 202: "it is winding down"},
    errors=(404, 409),
)
def cancel_operation(op_id: str):
    """Cancel a queued or running operation: 200 once it ended, 202 while it winds down;
    409 when it had ended already."""
    _operation(op_id)
    state = deck()
    row = state.runner.cancel(op_id)
    if row["status"] not in FINAL and state.runner.wait_finished(op_id, CANCEL_WAIT_SECONDS):
        row = state.store.get(op_id) or row
    return jsonify(operation_payload(row)), 200 if row["status"] in FINAL else 202


@bp.post("/<op_id>/pause")
@recorded(Action.PAUSE)
@contract(
    responses={200: S.Operation, 202: S.Operation},
    descriptions={200: "it is paused", 202: "its runner is closing the stream"},
    errors=(404, 409),
)
def pause_operation(op_id: str):
    """Pause a queued, scheduled or running operation: its download stops, Ollama keeps
    the partial blobs, and it keeps its host and model (a pull of the model joins it, still
    paused) without taking a slot. 200 once paused, 202 while its runner (maybe in another
    process) closes the stream; 409 when it ended or is paused already."""
    _operation(op_id)
    state = deck()
    row = state.runner.pause(op_id)
    if row["status"] == Status.RUNNING and state.runner.wait_finished(op_id, CANCEL_WAIT_SECONDS):
        row = state.store.get(op_id) or row
    return jsonify(operation_payload(row)), 202 if row["status"] == Status.RUNNING else 200


@bp.post("/<op_id>/resume")
@recorded(Action.RESUME)
@contract(responses={200: S.Operation}, errors=(404, 409))
def resume_operation(op_id: str):
    """Queue a paused operation again (scheduled, when its window is closed or its
    not_before ahead); Ollama resumes from its partial blobs, the percent goes on from
    where it was. 409 unless a user paused it: a window's pause ends when the window
    opens."""
    _operation(op_id)
    return jsonify(operation_payload(deck().runner.resume(op_id)))


@bp.delete("/<op_id>")
@recorded(Action.FORGET)
@contract(responses={200: S.Deleted}, errors=(404, 409))
def delete_operation(op_id: str):
    """Forget a finished operation and its log; 409 while it is still active."""
    row = _operation(op_id)
    if not deck().store.delete_finished(op_id):
        if row["status"] in FINAL:
            raise Conflict(
                f"operation {op_id} is part of a group that is still running; "
                "forget the group once it has ended"
            )
        raise Conflict(f"operation {op_id} is {row['status']}; cancel it first")
    return jsonify({"deleted": op_id})


@bp.get("/stream")
@contract(
    query=S.StreamQuery,
    headers=S.StreamHeaders,
    responses={200: None},
    events={200: S.OPERATION_EVENTS},
    descriptions={200: "an endless event stream"},
    errors=(400,),
)
def stream_all():
    """SSE of every operation: what the page listens to."""
    return sse_response(stream_for(None))


@bp.get("/<op_id>/stream")
@contract(
    query=S.StreamQuery,
    headers=S.StreamHeaders,
    responses={200: None},
    events={200: S.OPERATION_EVENTS},
    descriptions={200: "the operation's events"},
    errors=(400, 404),
)
def stream_operation(op_id: str):
    """SSE of one operation; it ends after the operation's final event."""
    _operation(op_id)
    return sse_response(stream_for(op_id))


def stream_for(op_id: str | None) -> Stream:
    state = deck()
    watch = watch_client(request.environ)
    frames = follow(
        state.feed,
        state.hub,
        op_id=op_id,
        last_event_id=_last_event_id(),
        max_replay=state.settings.replay_max_events,
        watch=watch,
    )
    return Stream(session_bound(frames), state.hub, watch, parking(request.environ))


def _last_event_id() -> int | None:
    """From the ``Last-Event-ID`` header (EventSource reconnects) or ``?last_event_id=``."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None or raw.strip() == "":
        return None
    value = whole_number(raw)
    if value is None:
        # Sequence numbers are 64-bit: anything else is no id this service ever sent.
        raise BadRequest(f"Last-Event-ID must be an event id (a whole number), not {raw[:40]!r}")
    return value
