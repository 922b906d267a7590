"""/api: models, pulls and Ollama's status."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request

from .. import schemas as S
from ..contracts import contract
from ..contracts import parse_body
from ..contracts import parse_query
from ..http import register_json_errors
from ..http import sse_response
from ..http import unknown_route
from ..lifecycle import Kind
from ..openapi import openapi_document
from ..security import issue_session
from ..security import protect
from ..security import revoke_session
from ..security import session_cookie_name
from ..security import session_status
from ..serializers import operation_payload as render_operation
from ..serializers import operation_urls
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
from ..services.updates import queue_updates
from ..state import activate_deck
from ..state import deck

bp = Blueprint("ollama_deck_api", __name__)
register_json_errors(bp)
protect(bp)  # first: a refused request must not start anything
bp.before_request(activate_deck)
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
bp.add_url_rule("/<path:_unknown>", "unknown", unknown_route, methods=ALL_METHODS)


def operation_payload(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation's JSON with the URLs to poll, stream and cancel it."""
    return render_operation(row, deck().store.host_names, **extra)


def host_of(body_host: str | None = None) -> OllamaHost:
    """The Ollama host a request names (``?host=``, or ``"host"`` in its JSON body), else
    the default one. Only configured names: a request never brings its own URL."""
    name = request.args.get("host")
    return deck().hosts.get(name if name is not None else body_host)


@bp.get("/hosts")
@contract(responses={200: S.Hosts})
def list_hosts():
    """Every configured Ollama host: reachable or not, version, models, disk used, loaded."""
    return jsonify({"hosts": [describe_host(host) for host in deck().hosts]})


@bp.get("/models")
@contract(query=S.HostQuery, responses={200: S.Models}, errors=(400,))
def list_models():
    """Installed models, disk use and active pulls (a cached list if Ollama is down)."""
    listing = host_of().models.installed()
    for op in listing["pulls"]:  # the same objects as each model's "operation"
        op["urls"] = operation_urls(op["id"])
    return jsonify(listing)


@bp.post("/models/pull")
@contract(body=S.PullRequest, responses={202: S.Operation}, errors=(409, 429))
def pull_model():
    """Start a pull, or join the one already active for that model: 202 either way.

    ``not_before`` (and the host's download window) make it ``scheduled`` until then. A
    paused pull of the model is joined as it is, paused (see Runner.submit).
    """
    body = parse_body(S.PullRequest)
    host = host_of(body.host)
    runner = deck().runner
    not_before = runner.resolve_time(body.not_before) if body.not_before else None
    row, created = runner.submit(Kind.PULL, body.model, host.url, not_before=not_before)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/update")
@contract(
    body=S.UpdateRequest,
    body_required=False,
    responses={202: S.UpdateAccepted},
    errors=(404, 409, 429, 502, 503, 504),
)
def update_models():
    """Pull installed models again: ``{"models": [...]}``, or no list for all; 202 + ids.

    Each operation ends ``succeeded`` with a ``result``: ``updated`` (old and new digest)
    or ``current``.
    """
    body = parse_body(S.UpdateRequest, optional=True)
    state = deck()
    host = host_of(body.host)
    queued = queue_updates(state.runner, host.client, body.models, host.url)
    operations = [operation_payload(q["row"], created=q["created"]) for q in queued]
    return jsonify({"ids": [op["id"] for op in operations], "operations": operations}), 202


@bp.get("/estimate")
@contract(query=S.EstimateQuery, responses={200: S.Estimate}, errors=(400,))
def estimate():
    """Download size, VRAM estimate and fit of a model before pulling it: ``?model=name``."""
    query = parse_query(S.EstimateQuery)
    state = deck()
    warn_bytes = int(state.settings.pull_warn_gb * 1e9)
    return jsonify(pull_estimate(query.model, state.gpus.get(), warn_bytes=warn_bytes))


@bp.delete("/models/<path:name>")
@contract(query=S.HostQuery, responses={200: S.Deleted}, errors=(404, 409, 502, 503, 504))
def delete_model(name: str):
    """Delete an installed model."""
    return jsonify({"deleted": host_of().models.delete(name)})


@bp.get("/models/<path:name>")
@contract(query=S.HostQuery, responses={200: S.ModelDetails}, errors=(400, 404, 502, 503, 504))
def show_model(name: str):
    """Details of an installed model, with its VRAM estimate and whether it fits; from the
    cached list (``stale``) when Ollama does not answer."""
    host = host_of()
    return jsonify(
        model_details(host.client, name, deck().gpus.get(), cached=host.models.cached_entry)
    )


@bp.post("/models/<path:name>/load")
@contract(query=S.HostQuery, responses={202: S.Operation}, errors=(409, 429))
def load_model(name: str):
    """Warm a model into memory as an operation (pulling it first if it is missing)."""
    row, created = deck().runner.submit(Kind.LOAD, name, host_of().url)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/<path:name>/unload")
@contract(query=S.HostQuery, responses={200: S.Unloaded}, errors=(404, 502, 503, 504))
def unload_model(name: str):
    """Free a model from memory now."""
    return jsonify({"unloaded": host_of().models.unload(name)})


@bp.get("/catalog")
@contract(query=S.CatalogQuery, responses={200: S.Catalog}, errors=(400,))
def catalog():
    """The curated catalog: ``?category=code&q=coder``, with installed flags and VRAM fit."""
    query = parse_query(S.CatalogQuery)
    state = deck()
    models = host_of().models
    listed = models.installed()
    installed = _installed_by_key(listed["models"])
    asked_in_vain = False

    def installed_vram(key: str) -> dict[str, Any] | None:
        # The details' figure for an installed model. With Ollama down (a stale list, or
        # it stopped answering during this listing) only a figure known already, else
        # the catalog's own: one slow Ollama must not hold the listing once per model.
        nonlocal asked_in_vain
        model = installed[key]
        if not model.get("digest"):
            return None
        ask = not (listed["stale"] or asked_in_vain)
        found = models.estimates.get(model["name"], str(model["digest"]), ask=ask)
        asked_in_vain = asked_in_vain or (ask and found is None)
        return found

    listing = catalog_listing(
        category=query.category,
        query=query.q,
        installed=set(installed),
        gpus=state.gpus.get(),
        installed_vram=installed_vram,
    )
    return jsonify(dict(listing, categories=list(CATEGORIES)))


def _installed_by_key(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    # A model whose name the deck cannot parse is simply not in the catalog; it must not
    # turn the whole listing into an error.
    keys = {}
    for model in models:
        try:
            keys[parse_model_name(model["name"]).key] = model
        except InvalidModelName:
            continue
    return keys


@bp.get("/active-model")
@contract(responses={200: S.ActiveModel})
def get_active_model():
    """The model chosen as active (null when none is)."""
    return jsonify(deck().models.active_model())


@bp.put("/active-model")
@contract(body=S.ActiveModelRequest, responses={200: S.ActiveModel}, errors=(404, 502, 503, 504))
def put_active_model():
    """Choose the active model (it must be installed): ``{"model": "llama3.2:1b"}``;
    ``{"model": null}`` clears it."""
    body = parse_body(S.ActiveModelRequest)
    return jsonify(deck().models.set_active_model(body.model))


@bp.post("/chat")
@contract(
    body=S.ChatRequest,
    responses={200: None},
    events={200: S.CHAT_EVENTS},
    descriptions={200: "the reply as Server-Sent Events"},
    errors=(404, 502, 503, 504),
)
def chat():
    """A test prompt, its reply streamed as SSE: ``token`` events, then ``done`` or ``error``."""
    body = parse_body(S.ChatRequest)
    model = parse_model_name(body.model).display
    return sse_response(open_chat(host_of(body.host).client, model, body.conversation()))


@bp.get("/status")
@contract(query=S.HostQuery, responses={200: S.OllamaStatus}, errors=(400,))
def status():
    """Is Ollama reachable, which version, what is loaded, which GPUs are known."""
    state = deck()
    host = host_of()
    return jsonify(
        dict(
            host.models.status(),  # host: its configured name, host_url: its URL
            hosts=[h.name for h in state.hosts],
            gpu=gpu_summary(state.gpus.get()),
            watchers=state.hub.watchers,  # open SSE streams in this process
            pid=os.getpid(),  # which worker answered: with several, each has its own count
            bus=state.bus.describe(),
        )
    )


@bp.get("/session")
@contract(responses={200: S.Session})
def session():
    """Whether a token is required; reached only with the token when it is."""
    return jsonify(session_status())


@bp.post("/session")
@contract(responses={200: S.Session})
def open_session():
    """Trade the bearer token for a new session: a random id in an HttpOnly cookie (what
    EventSource can send) that ends after its maximum age, when idle, or at logout."""
    response = jsonify(session_status())
    issue_session(response)
    return response


@bp.delete("/session")
@contract(responses={200: S.Session})
def close_session():
    """Log out: the session ends for every worker at once, and its cookie is dropped."""
    response = jsonify(session_status())
    revoke_session(response)
    return response


@bp.get("/openapi.json")
@contract(responses={200: S.Document})
def openapi():
    """The OpenAPI 3.1 document of this API, generated from the views' declarations."""
    state = deck()
    return jsonify(
        openapi_document(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            url_prefix=state.url_prefix,
            log_lines=state.store.log_lines,
            hosts=[host.name for host in state.hosts],
            session_cookie=session_cookie_name(),
        )
    )
