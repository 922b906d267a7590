"""The page: one HTML file, native ES modules and one stylesheet; no build step."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import render_template
from flask import request
from flask import Response
from flask import url_for

from .. import schemas as S
from ..contracts import contract
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import DatabaseUnavailable
from ..errors import DeckError
from ..lifecycle import Action
from ..lifecycle import vocabulary
from ..schema import missing_table
from ..security import may_see_details
from ..security import protect
from ..services.health import health
from ..services.health import summary
from ..services.metrics import CONTENT_TYPE
from ..state import activate_deck
from ..state import deck
from ..state import setup_of

bp = Blueprint(
    "ollama_deck",
    __name__,
    template_folder="../templates",
    static_folder="../static",
    static_url_path="/static",
)
protect(bp)  # first: a refused request must not start anything
bp.before_request(activate_deck)

# Stand-ins that url_for puts into URL templates; the page swaps in the real (encoded) values.
NAME_SLOT = "__model__"
ID_SLOT = "__op__"


def page_config() -> dict[str, Any]:
    """Every URL the script needs (built by url_for so the page works under any prefix),
    a few limits and the lifecycle vocabulary."""
    return {
        "api": {
            "models": url_for("ollama_deck_api.list_models"),
            "pull": url_for("ollama_deck_api.pull_model"),
            "update": url_for("ollama_deck_api.update_models"),
            "estimate": url_for("ollama_deck_api.estimate"),
            "model": url_for("ollama_deck_api.show_model", name=NAME_SLOT),
            "load": url_for("ollama_deck_api.load_model", name=NAME_SLOT),
            "unload": url_for("ollama_deck_api.unload_model", name=NAME_SLOT),
            "catalog": url_for("ollama_deck_api.catalog"),
            "active": url_for("ollama_deck_api.get_active_model"),
            "chat": url_for("ollama_deck_api.chat"),
            "status": url_for("ollama_deck_api.status"),
            "session": url_for("ollama_deck_api.session"),
            "activity": url_for("ollama_deck_api.activity"),
            "plan": url_for("ollama_deck_api.plan"),
            "apply": url_for("ollama_deck_api.apply"),
            "desired": url_for("ollama_deck_api.get_desired_models"),
        },
        "progress": {
            "list": url_for("ollama_deck_progress.list_operations"),
            "clear": url_for("ollama_deck_progress.forget_finished"),
            "stream": url_for("ollama_deck_progress.stream_all"),
            "operation": url_for("ollama_deck_progress.get_operation", op_id=ID_SLOT),
            "cancel": url_for("ollama_deck_progress.cancel_operation", op_id=ID_SLOT),
            "pause": url_for("ollama_deck_progress.pause_operation", op_id=ID_SLOT),
            "resume": url_for("ollama_deck_progress.resume_operation", op_id=ID_SLOT),
        },
        "slots": {"model": NAME_SLOT, "op": ID_SLOT},
        "hosts": [host.name for host in deck().hosts],  # the selector's choices, in order
        "log_lines": deck().store.log_lines,  # the most GET /progress/<id>?log= accepts
        # Pulls that run at once: the page tells a queued pull when it is likely to start.
        "max_concurrent": deck().runner.settings.max_concurrent,
        # Kinds, statuses and which of them are active, final, retryable: the page's sets.
        "lifecycle": vocabulary(),
        "actions": [str(action) for action in Action],  # the activity filter's choices
    }


@bp.get("/")
def index():
    """The model manager page."""
    from .. import __version__  # the package is fully imported by the time a request comes

    return render_template(
        "ollama_deck/index.html",
        config=page_config(),
        version=__version__,
    )


def cannot_serve(exc: Exception) -> Response:
    """The deck cannot start here (its schema, its database): 503 with the reason, which
    names what to run, as text for the page and as a health report for ``/healthz``; to
    those who may not use the API, only the code (the log has it all)."""
    if isinstance(exc, DeckError):
        status, code, message = exc.status, exc.code, exc.message
    else:  # a database fault
        status, code = 503, DatabaseUnavailable.code
        message = f"the database is unavailable: {first_line(exc)}"
        if missing_table(exc):  # dropped under us: made anew before the next request
            setup_of(current_app).schema_lost()
    current_app.logger.error("ollama-deck cannot serve: %s", message)
    shown = may_see_details()  # the page shell and /healthz answer strangers too
    if request.endpoint == "ollama_deck.healthz":
        database = {"ok": False, "code": code, "error": message} if shown else {"ok": False}
        response = jsonify({"ok": False, "database": database, "ollama": {"ok": None}})
    else:
        said = message if shown else f"{code} (the server's log says more)"
        response = Response(f"Ollama Deck cannot serve: {said}\n", mimetype="text/plain")
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(round(DatabaseUnavailable.retry_after or 5))
    return response


bp.register_error_handler(DeckError, cannot_serve)
for _error in DATABASE_ERRORS:
    bp.register_error_handler(_error, cannot_serve)


@bp.get("/healthz")
@contract(
    responses={200: S.Health, 503: S.Health},
    descriptions={200: "the deck can work", 503: "its database is unavailable"},
)
def healthz():
    """The database and Ollama as the deck sees them: 200 when it can work, else 503.
    Details (URLs, versions, errors) only for a request that may use the API."""
    state = deck()
    report = health(state.engine, state.client, probe_every=state.settings.health_write_seconds)
    response = jsonify(report if may_see_details() else summary(report))
    if not report["ok"]:
        response.status_code = 503
        response.headers["Retry-After"] = str(round(DatabaseUnavailable.retry_after or 5))
    return response


@bp.get("/metrics")
@contract(
    responses={200: None},
    media={200: CONTENT_TYPE},
    descriptions={200: "Prometheus' text format (0.0.4)"},
)
def metrics():
    """Metrics for Prometheus: operations, bytes and durations of pulls, Ollama's
    reachability and latency, event streams, webhooks; the same from every worker.

    With tokens set it needs one (a read token suffices). ``X-Ollama-Deck-Pid`` names the
    worker that answered."""
    body = deck().scrape()
    response = current_app.response_class(body, content_type=CONTENT_TYPE)
    response.headers["X-Ollama-Deck-Pid"] = str(os.getpid())
    return response
