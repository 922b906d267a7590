"""/api: models, pulls and Ollama's status."""

from __future__ import annotations

import os
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
from ..lifecycle import Kind
from ..openapi import openapi_document
from ..security import clear_session_cookie
from ..security import protect
from ..security import session_status
from ..security import set_session_cookie
from ..services.catalog import CATEGORIES
from ..services.chat import open_chat
from ..services.gpu import gpu_summary
from ..services.hosts import describe_host
from ..services.hosts import OllamaHost
from ..services.knowledge import catalog_listing
from ..services.knowledge import model_details
from ..services.knowledge import pull_estimate
from ..services.names import InvalidModelName
from ..services.names import parse_model_name
from ..services.store import operation_json
from ..services.updates import queue_updates
from ..state import activate_deck
from ..state import deck

bp = Blueprint("ollama_deck_api", __name__)
register_json_errors(bp)
protect(bp)  # first: a refused request must not start anything
bp.before_request(activate_deck)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
MAX_QUERY_CHARS = 200
bp.add_url_rule("/<path:_unknown>", "unknown", unknown_route, methods=ALL_METHODS)


def operation_payload(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation's JSON with the URLs to poll, stream and cancel it."""
    data = operation_json(row, deck().store.host_names)
    op_id = row["id"]
    data["urls"] = {
        "progress": url_for("ollama_deck_progress.get_operation", op_id=op_id),
        "stream": url_for("ollama_deck_progress.stream_operation", op_id=op_id),
        "cancel": url_for("ollama_deck_progress.cancel_operation", op_id=op_id),
    }
    data.update(extra)
    return data


def host_of(body: dict[str, Any] | None = None) -> OllamaHost:
    """The Ollama host a request names (``?host=``, or ``"host"`` in its JSON body), else
    the default one. Only configured names: a request never brings its own URL."""
    name = request.args.get("host")
    if name is None and body is not None:
        name = body.get("host")
    if name is not None and not isinstance(name, str):
        raise BadRequest("host must be the name of a configured Ollama host", code="unknown_host")
    return deck().hosts.get(name)


@bp.get("/hosts")
def list_hosts():
    """Every configured Ollama host: reachable or not, version, models, disk used, loaded."""
    return jsonify({"hosts": [describe_host(host) for host in deck().hosts]})


@bp.get("/models")
def list_models():
    """Installed models, disk use and active pulls (a cached list if Ollama is down)."""
    return jsonify(host_of().models.installed())


@bp.post("/models/pull")
def pull_model():
    """Start a pull, or join the one already running for that model: 202 either way."""
    body = json_body()
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('say which model to pull: {"model": "llama3.2:1b"}', code="model_required")
    host = host_of(body)
    row, created = deck().runner.submit(Kind.PULL, name, host.url)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/update")
def update_models():
    """Pull installed models again: ``{"models": [...]}``, or no list for all; 202 + ids.

    Each operation ends ``succeeded`` with a ``result``: ``updated`` (old and new digest)
    or ``current``.
    """
    names, body = None, None
    if request.get_data(cache=True):
        body = json_body()
        names = body.get("models")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise BadRequest(
            'models must be a list of names: {"models": ["llama3.2:1b"]}, or leave it out '
            "to update every installed model",
            code="invalid_models",
        )
    state = deck()
    host = host_of(body)
    queued = queue_updates(state.runner, host.client, names, host.url)
    operations = [operation_payload(q["row"], created=q["created"]) for q in queued]
    return jsonify({"ids": [op["id"] for op in operations], "operations": operations}), 202


@bp.get("/estimate")
def estimate():
    """Download size, VRAM estimate and fit of a model before pulling it: ``?model=name``."""
    name = request.args.get("model") or ""
    if not name.strip():
        raise BadRequest("say which model: ?model=llama3.2:1b", code="model_required")
    state = deck()
    warn_bytes = int(state.settings.pull_warn_gb * 1e9)
    return jsonify(pull_estimate(name, state.gpus.get(), warn_bytes=warn_bytes))


@bp.delete("/models/<path:name>")
def delete_model(name: str):
    """Delete an installed model."""
    return jsonify({"deleted": host_of().models.delete(name)})


@bp.get("/models/<path:name>")
def show_model(name: str):
    """Details of an installed model, with its VRAM estimate and whether it fits; from the
    cached list (``stale``) when Ollama does not answer."""
    host = host_of()
    return jsonify(
        model_details(host.client, name, deck().gpus.get(), cached=host.models.cached_entry)
    )


@bp.post("/models/<path:name>/load")
def load_model(name: str):
    """Warm a model into memory as an operation (pulling it first if it is missing)."""
    row, created = deck().runner.submit(Kind.LOAD, name, host_of().url)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/<path:name>/unload")
def unload_model(name: str):
    """Free a model from memory now."""
    return jsonify({"unloaded": host_of().models.unload(name)})


@bp.get("/catalog")
def catalog():
    """The curated catalog: ``?category=code&q=coder``, with installed flags and VRAM fit."""
    category = request.args.get("category") or None
    if category is not None and category not in CATEGORIES:
        raise BadRequest(f"unknown category {category[:40]!r}; use one of {', '.join(CATEGORIES)}")
    query = request.args.get("q") or None
    if query is not None and len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"q must be at most {MAX_QUERY_CHARS} characters")
    state = deck()
    listing = catalog_listing(
        category=category,
        query=query,
        installed=_installed_keys(host_of().models.installed()["models"]),
        gpus=state.gpus.get(),
    )
    return jsonify(dict(listing, categories=list(CATEGORIES)))


def _installed_keys(models: list[dict[str, Any]]) -> set[str]:
    # A model whose name the deck cannot parse is simply not in the catalog; it must not
    # turn the whole listing into an error.
    keys = set()
    for model in models:
        try:
            keys.add(parse_model_name(model["name"]).key)
        except InvalidModelName:
            continue
    return keys


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
    return sse_response(open_chat(host_of(body).client, model, messages))


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
    host = host_of()
    return jsonify(
        dict(
            host.models.status(),
            host_name=host.name,
            hosts=[h.name for h in state.hosts],
            gpu=gpu_summary(state.gpus.get()),
            watchers=state.hub.watchers,  # open SSE streams in this process
            pid=os.getpid(),  # which worker answered: with several, each has its own count
            bus=state.bus.describe(),
        )
    )


@bp.get("/session")
def session():
    """Whether a token is required; reached only with the token when it is."""
    return jsonify(session_status())


@bp.post("/session")
def open_session():
    """Trade the bearer token for an HttpOnly session cookie (what EventSource can send)."""
    response = jsonify(session_status())
    set_session_cookie(response, deck().url_prefix)
    return response


@bp.delete("/session")
def close_session():
    """Forget the session cookie."""
    response = jsonify(session_status())
    clear_session_cookie(response, deck().url_prefix)
    return response


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API."""
    state = deck()
    hosts = [host.name for host in state.hosts]
    return jsonify(openapi_document(state.url_prefix, state.store.log_lines, hosts))
