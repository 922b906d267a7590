"""/api: models, pulls and Ollama's status."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import url_for

from ..errors import BadRequest
from ..http import json_body
from ..http import register_json_errors
from ..http import unknown_route
from ..services.store import operation_json
from ..state import deck

bp = Blueprint("ollama_deck_api", __name__)
register_json_errors(bp)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
bp.add_url_rule("/<path:_unknown>", "unknown", unknown_route, methods=ALL_METHODS)


def operation_payload(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation's JSON with the URLs to poll, stream and cancel it."""
    data = operation_json(row)
    op_id = row["id"]
    data["urls"] = {
        "progress": url_for("ollama_deck_progress.get_operation", op_id=op_id),
        "stream": url_for("ollama_deck_progress.stream_operation", op_id=op_id),
        "cancel": url_for("ollama_deck_progress.cancel_operation", op_id=op_id),
    }
    data.update(extra)
    return data


@bp.get("/models")
def list_models():
    """Installed models, disk use and active pulls (a cached list if Ollama is down)."""
    return jsonify(deck().models.installed())


@bp.post("/models/pull")
def pull_model():
    """Start a pull, or join the one already running for that model: 202 either way."""
    body = json_body()
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('say which model to pull: {"model": "llama3.2:1b"}', code="model_required")
    row, created = deck().runner.submit("pull", name)
    return jsonify(operation_payload(row, created=created)), 202


@bp.delete("/models/<path:name>")
def delete_model(name: str):
    """Delete an installed model."""
    return jsonify({"deleted": deck().models.delete(name)})


@bp.get("/status")
def status():
    """Is Ollama reachable, which version, what is loaded."""
    return jsonify(deck().models.status())
