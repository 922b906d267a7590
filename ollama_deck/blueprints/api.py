"""/api: models, pulls and Ollama's status."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request
from flask import url_for

from ..errors import BadRequest
from ..http import json_body
from ..http import register_json_errors
from ..http import sse_response
from ..http import unknown_route
from ..services.catalog import CATEGORIES
from ..services.chat import open_chat
from ..services.gpu import gpu_summary
from ..services.knowledge import catalog_listing
from ..services.knowledge import model_details
from ..services.names import parse_model_name
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


@bp.get("/models/<path:name>")
def show_model(name: str):
    """Details of an installed model, with its VRAM estimate and whether it fits; from the
    cached list (``stale``) when Ollama does not answer."""
    state = deck()
    return jsonify(
        model_details(state.client, name, state.gpus.get(), cached=state.models.cached_entry)
    )


@bp.post("/models/<path:name>/load")
def load_model(name: str):
    """Warm a model into memory as an operation (pulling it first if it is missing)."""
    row, created = deck().runner.submit("load", name)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/<path:name>/unload")
def unload_model(name: str):
    """Free a model from memory now."""
    return jsonify({"unloaded": deck().models.unload(name)})


@bp.get("/catalog")
def catalog():
    """The curated catalog: ``?category=code&q=coder``, with installed flags and VRAM fit."""
    category = request.args.get("category") or None
    if category is not None and category not in CATEGORIES:
        raise BadRequest(f"unknown category {category!r}; use one of {', '.join(CATEGORIES)}")
    state = deck()
    installed = {parse_model_name(m["name"]).key for m in state.models.installed()["models"]}
    listing = catalog_listing(
        category=category,
        query=request.args.get("q") or None,
        installed=installed,
        gpus=state.gpus.get(),
    )
    return jsonify(dict(listing, categories=list(CATEGORIES)))


@bp.get("/active-model")
def get_active_model():
    """The model chosen as active (null when none is)."""
    return jsonify(deck().models.active_model())


@bp.put("/active-model")
def put_active_model():
    """Choose the active model: ``{"model": "llama3.2:1b"}``; ``{"model": null}`` clears it."""
    body = json_body()
    if "model" not in body:
        raise BadRequest('say which model: {"model": "llama3.2:1b"}', code="model_required")
    name = body["model"]
    if name is not None and not isinstance(name, str):
        raise BadRequest("model must be a name or null", code="model_required")
    return jsonify(deck().models.set_active_model(name))


@bp.post("/chat")
def chat():
    """A test prompt, its reply streamed as SSE: ``token`` events, then ``done`` or ``error``."""
    body = json_body()
    name = body.get("model")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('say which model: {"model": "llama3.2:1b", ...}', code="model_required")
    messages = body.get("messages")
    prompt = body.get("prompt")
    if messages is None and isinstance(prompt, str) and prompt.strip():
        messages = [{"role": "user", "content": prompt}]
    if not _valid_messages(messages):
        raise BadRequest(
            'give "prompt" as text, or "messages" as [{"role": "user", "content": "..."}]',
            code="prompt_required",
        )
    model = parse_model_name(name).display
    return sse_response(open_chat(deck().client, model, messages))


def _valid_messages(messages: Any) -> bool:
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in messages
        )
    )


@bp.get("/status")
def status():
    """Is Ollama reachable, which version, what is loaded, which GPUs are known."""
    state = deck()
    return jsonify(
        dict(
            state.models.status(),
            gpu=gpu_summary(state.gpus.get()),
            watchers=state.hub.watchers,  # open SSE streams in this process
        )
    )
