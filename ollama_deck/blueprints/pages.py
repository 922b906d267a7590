"""The page: one HTML file, native ES modules and one stylesheet; no build step."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import render_template
from flask import url_for

from .. import schemas as S
from ..contracts import contract
from ..errors import DatabaseUnavailable
from ..lifecycle import vocabulary
from ..security import may_see_details
from ..security import protect
from ..services.health import health
from ..services.health import summary
from ..state import activate_deck
from ..state import deck

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
