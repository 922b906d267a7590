"""Shared HTTP helpers of the blueprints: one JSON error shape, body parsing."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask import Response
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed

from .dbhealth import DATABASE_ERRORS
from .dbhealth import first_line
from .errors import BadRequest
from .errors import DatabaseUnavailable
from .errors import DeckError
from .numbers import whole_number
from .schema import missing_table
from .services.names import InvalidModelName


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    """The one error shape of the API: ``{"error": {"code", "message"}}``."""
    return jsonify({"error": {"code": code, "message": message}}), status


def _deck_error(exc: DeckError) -> tuple[Response, int]:
    response, status = error_response(exc.status, exc.code, exc.message)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response, status


def _database_error(exc: Exception) -> tuple[Response, int]:
    # A fault of the database (unwritable, locked, gone, unreachable) is the service being
    # unavailable for a while, not a bug: 503 with a hint when to retry, never a 500.
    current_app.logger.warning("database unavailable: %s", first_line(exc))
    if missing_table(exc):  # dropped under us (a host's drop_all elsewhere): made anew next
        from .state import setup_of

        setup_of(current_app).schema_lost()
    return _deck_error(DatabaseUnavailable(f"the database is unavailable: {first_line(exc)}"))


def _bad_name(exc: InvalidModelName) -> tuple[Response, int]:
    return error_response(400, "invalid_model_name", str(exc))


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    code = (exc.name or "error").lower().replace(" ", "_")
    response, status = error_response(exc.code or 500, code, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, status


def register_json_errors(target: Blueprint | Any) -> None:
    """Make every error of ``target`` (a blueprint or an app) answer in JSON."""
    target.register_error_handler(DeckError, _deck_error)
    target.register_error_handler(InvalidModelName, _bad_name)
    target.register_error_handler(HTTPException, _http_error)
    for error in DATABASE_ERRORS:
        target.register_error_handler(error, _database_error)


def sse_response(stream: Iterator[bytes]) -> Response:
    """A streamed ``text/event-stream`` response that proxies must not cache or buffer."""
    response = Response(stream, mimetype="text/event-stream")
    # The stream yields bytes already: hand it to the server as is, without werkzeug's
    # per-chunk encoding and closing wrappers (a measurable cost at thousands of watchers).
    response.direct_passthrough = True
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


# JSON bodies of this API are at most three levels deep; far deeper is an attack on the
# parser (Python's recursion limit), and integers beyond 2**53 no client can mean.
MAX_JSON_DEPTH = 20
MAX_JSON_INTEGER = 2**53 - 1


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 4xx that says what was wrong."""
    raw = request.get_data(cache=True)
    if not raw:
        raise BadRequest("the request needs a JSON body", code="missing_body")
    if request.mimetype != "application/json":
        # A browser form or a no-cors fetch cannot send this type without a CORS
        # preflight, which the deck never grants: requiring it stops cross-site posts.
        raise DeckError(
            "send the body as JSON with 'Content-Type: application/json'",
            code="unsupported_media_type",
            status=415,
        )
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return data


def parse_json(raw: bytes) -> Any:
    """Parse untrusted JSON: 400 for bad text, deep nesting, huge or non-finite numbers."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # bad text, bad UTF-8, too many digits, too deep
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    _check_json(data)
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_json(data: Any) -> None:
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(
                    f"the request body nests deeper than {MAX_JSON_DEPTH} levels",
                    code="invalid_json",
                )
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > MAX_JSON_INTEGER:
            raise BadRequest(
                f"numbers must lie between -{MAX_JSON_INTEGER} and {MAX_JSON_INTEGER}",
                code="invalid_json",
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise BadRequest("numbers must be finite", code="invalid_json")


def int_arg(name: str, default: int, *, low: int, high: int) -> int:
    """A bounded integer query parameter; 400 when it is not one."""
    if not request.environ.get("QUERY_STRING"):
        return default  # most polls: no query string to parse
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw)
    if value is None:
        raise BadRequest(f"{name} must be a whole number, not {raw[:40]!r}")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


PROBE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def unknown_route(_unknown: str = "") -> tuple[Response, int]:
    """Catch-all under our prefixes: JSON 404, or 405 when the path exists for other methods.

    Routing errors never reach a blueprint's error handlers, and an app-level handler would
    replace the host app's own; a catch-all route keeps our URLs JSON without touching the host's.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in PROBE_METHODS:
        if method == request.method:
            continue
        try:
            rule, _ = adapter.match(method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint != request.endpoint:
            allowed.append(method)
    if allowed:
        response, status = error_response(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.path}"
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response, status
    return error_response(404, "not_found", f"no such endpoint: {request.path}")
