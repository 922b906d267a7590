"""The activity record, HTTP side: which views change something, and who asked.

A view that changes something names its action with one line, ``@recorded(Action.PULL)``.
After its answer (an ``after_request`` hook of the deck's blueprints), the request is
written to the record: when, what (the action; the model, host and operation from the
URL, the body or the answer), the outcome (status, error code), the client address and
who. One INSERT per such request; GETs and unmarked views write nothing.

Only requests that passed the deck's checks (Host, origin, the host's guard, the token)
are recorded, a read token refused a write included: a request anyone can send without
a credential must not be a database write.

Who: the host app's user (``OllamaDeck(actor=...)``, a function of no arguments called in
the request; by default Flask-Login's ``current_user`` when the app has a login manager),
else the name of the token (or of the token the session was opened with), else
``local``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from flask import current_app
from flask import request
from flask import Response
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from .dbhealth import DATABASE_ERRORS
from .dbhealth import first_line
from .errors import DeckError
from .http import parse_json
from .lifecycle import Action
from .security import ACCESS
from .security import Access
from .security import BODY_READ
from .security import CHECKED
from .security import MUTATING_METHODS
from .services.activity import LOCAL
from .state import deck
from .state import setup_of

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__deck_action__"
log = logging.getLogger(__name__)
# What costs the record but not the answer: any database error, a missing table too.
RECORD_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, DBAPIError)


def recorded(action: Action) -> Callable[[F], F]:
    """Mark a view as one that changes something: each request to it is recorded."""

    def mark(view: F) -> F:
        setattr(view, ATTRIBUTE, action)
        return view

    return mark


def action_of(view: Callable[..., Any] | None) -> Action | None:
    return getattr(view, ATTRIBUTE, None)


def record_activity(response: Response) -> Response:
    """An ``after_request`` hook: write the request to the record if its view is marked
    and it passed the checks. A record that cannot be written costs the record, never the
    answer (the change itself happened)."""
    if request.method not in MUTATING_METHODS or not request.environ.get(CHECKED):
        return response
    action = action_of(current_app.view_functions.get(request.endpoint or ""))
    if action is None:
        return response
    try:
        deck().activity.record(entry(action, response))
    except RECORD_ERRORS as exc:
        log.warning("could not record %s in the activity record: %s", action, first_line(exc))
    return response


def entry(action: Action, response: Response) -> dict[str, Any]:
    """The activity row of this request and its answer."""
    body = _body() if response.status_code not in UNREAD else {}
    answer = _json(response.get_json(silent=True)) if response.is_json else {}
    view_args = request.view_args or {}
    target = view_args.get("name") or body.get("model") or answer.get("model")
    if target is None and isinstance(body.get("models"), list):
        target = ", ".join(str(m) for m in body["models"])
    operation_id = view_args.get("op_id") or (answer.get("id") if "urls" in answer else None)
    host = answer.get("host") if isinstance(answer.get("host"), str) else None
    host = host or request.args.get("host") or body.get("host")
    error = answer.get("error") if response.status_code >= 400 else None
    actor, token = who()
    return {
        "at": time.time(),
        "action": str(action),
        "target": _text(target, 600),
        "host": _text(host, 600),
        "operation_id": _text(operation_id, 36),
        "method": request.method,
        "path": request.path[:1000],
        "status": response.status_code,
        "error": _text(error.get("code") if isinstance(error, dict) else None, 60),
        "actor": actor,
        "token": token,
        "address": _text(request.remote_addr, 64),
    }


def who() -> tuple[str, str | None]:
    """The actor (the host app's user, else the token's name, else ``local``) and the
    token's name, if one was used."""
    verdict = request.environ.get(ACCESS)
    token = verdict.token.name if isinstance(verdict, Access) and verdict.token else None
    return (host_user() or token or LOCAL)[:200], token


def host_user() -> str | None:
    """The host app's user: ``OllamaDeck(actor=...)``, else Flask-Login's, else None."""
    actor = setup_of(current_app).actor
    try:
        name = actor() if actor is not None else flask_login_user()
    except Exception:  # noqa: BLE001 - the host's function; the record goes on without it
        log.exception("OllamaDeck(actor=...) failed; recording the request without a user")
        return None
    return str(name) if name else None


def flask_login_user() -> str | None:
    """Flask-Login's ``current_user`` when the app has a login manager and a user is
    logged in: its ``username``, ``name`` or ``email``, else its id."""
    if getattr(current_app, "login_manager", None) is None:
        return None
    from flask_login import current_user

    if not getattr(current_user, "is_authenticated", False):
        return None
    for attribute in ("username", "name", "email"):
        value = getattr(current_user, attribute, None)
        if isinstance(value, str) and value:
            return value
    return str(current_user.get_id())


# Answers to a body that was not (wholly) read: it must not be read again here.
UNREAD = frozenset({408, 413})


def _body() -> dict[str, Any]:
    """The request's JSON object as already read (bounded by the body checks), or {}."""
    if not request.environ.get(BODY_READ):
        return {}
    try:
        return _json(parse_json(request.get_data(cache=True)))
    except (DeckError, HTTPException):  # bad JSON: its 400 is the outcome recorded
        return {}


def _json(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None
