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
from ..errors import NotFound
from ..http import register_json_errors
from ..http import sse_response
from ..http import unknown_route
from ..lifecycle import Action
from ..lifecycle import Kind
from ..openapi import openapi_document
from ..recording import record_activity
from ..recording import recorded
from ..security import issue_session
from ..security import protect
from ..security import revoke_session
from ..security import session_cookie_name
from ..security import session_status
from ..serializers import iso_time
from ..serializers import operation_payload as render_operation
from ..serializers import operation_urls
from ..services.activity import ActivityFilter
from ..services.catalog import CATEGORIES
from ..services.chat import open_chat
from ..services.fleet import skipped_json
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
bp.after_request(record_activity)  # the views marked @recorded: one entry per request
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
bp.add_url_rule("/<path:_unknown>", "unknown", unknown_route, methods=ALL_METHODS)


def operation_payload(row: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An operation's JSON with the URLs to poll, stream and cancel it."""
    return render_operation(row, deck().store.host_names, **extra)


def host_of(body_host: str | None = None) -> OllamaHost:
    """The Ollama host a request names (``?host=``, or ``"host"`` in its JSON body), else
    the default one. Only configured names: a request never brings its own URL."""
    name = request.args.get("host") or None  # ?host= is no host, as in every query model
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
@recorded(Action.PULL)
@contract(body=S.PullRequest, responses={202: S.Operation}, errors=(409, 429))
def pull_model():
    """Start a pull, or join the one already active for that model: 202 either way.

    ``not_before`` (and the host's download window) make it ``scheduled`` until then. A
    paused pull of the model is joined as it is, paused (see Runner.submit). With
    ``hosts``, a group of one pull per host.
    """
    body = parse_body(S.PullRequest)
    runner = deck().runner
    not_before = runner.resolve_time(body.not_before) if body.not_before else None
    if body.hosts is not None:
        group = deck().fleet.pull(body.model, body.hosts, not_before=not_before)
        return jsonify(operation_payload(group, created=True)), 202
    host = host_of(body.host)
    row, created = runner.submit(Kind.PULL, body.model, host.url, not_before=not_before)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/update")
@recorded(Action.UPDATE)
@contract(
    body=S.UpdateRequest,
    body_required=False,
    responses={202: S.UpdateAccepted},
    errors=(404, 409, 429, 502, 503, 504),
)
def update_models():
    """Pull installed models again: ``{"models": [...]}``, or no list for all; 202 + ids.

    Each operation ends ``succeeded`` with a ``result``: ``updated`` (old and new digest)
    or ``current``. With ``hosts``, one group of an update per host and model.
    """
    body = parse_body(S.UpdateRequest, optional=True)
    state = deck()
    if body.hosts is not None:
        group = operation_payload(state.fleet.update(body.models, body.hosts), created=True)
        return jsonify({"ids": [group["id"]], "operations": [group]}), 202
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
@recorded(Action.DELETE)
@contract(
    query=S.ScopeQuery,
    responses={200: S.Deleted, 202: S.Operation},
    descriptions={200: "deleted from the host", 202: "a group deleting it on each host"},
    errors=(400, 404, 409, 429, 502, 503, 504),
)
def delete_model(name: str):
    """Delete an installed model; with ``?hosts=``, a group of one delete per host (a
    host that does not have it is fine there)."""
    names = parse_query(S.ScopeQuery).host_names()
    if names is not None:
        group = deck().fleet.delete(name, names)
        return jsonify(operation_payload(group, created=True)), 202
    return jsonify({"deleted": host_of().models.delete(name)})


def desired_context() -> dict[str, Any]:
    """What a desired set is checked against: this deck's hosts and registries."""
    state = deck()
    return {
        "hosts": [host.name for host in state.hosts],
        "allowed_registries": state.settings.allowed_registries,
    }


def desired_of_request() -> S.DesiredModels:
    """The set in the body, or the stored one when there is no body (404 if none is)."""
    if request.get_data(cache=True):
        return parse_body(S.DesiredModels, context=desired_context())
    stored = deck().desired.get()
    if stored is None:
        raise NotFound(
            "no desired model set is stored: send one in the body, or store one with "
            "PUT /api/desired-models",
            code="no_desired_models",
        )
    return stored[0]


@bp.post("/plan")
@contract(
    body=S.DesiredModels,
    body_required=False,
    responses={200: S.Plan},
    errors=(404,),
)
def plan():
    """What applying a desired set would do on each host: ``missing`` to pull, ``delete``
    (only with ``prune``), ``in_place``; without a body, the stored set."""
    return jsonify(deck().fleet.plan(desired_of_request()).to_json())


@bp.post("/apply")
@recorded(Action.APPLY)
@contract(
    body=S.DesiredModels,
    body_required=False,
    responses={200: S.Applied, 202: S.Applied},
    descriptions={200: "nothing to do", 202: "a group is applying the plan"},
    errors=(404, 429),
)
def apply():
    """Apply a desired set (without a body, the stored one): its plan, queued as one group
    of pulls and, with ``prune``, deletes."""
    state = deck()
    applied = state.fleet.apply(desired_of_request())
    group = applied.made.group if applied.made is not None else None
    answer = {
        "plan": applied.plan.to_json(),
        "group": operation_payload(group, created=True) if group is not None else None,
        "skipped": skipped_json(applied.made, state.store.host_names),
    }
    return jsonify(answer), 202 if group is not None else 200


@bp.get("/desired-models")
@contract(responses={200: S.StoredDesiredModels})
def get_desired_models():
    """The stored desired model set (``set`` null when none is stored)."""
    return jsonify(_stored_answer())


@bp.put("/desired-models")
@recorded(Action.DESIRED_MODELS)
@contract(body=S.DesiredModels, responses={200: S.StoredDesiredModels})
def put_desired_models():
    """Store a desired model set, replacing the one stored before: the page then shows
    each host's drift, and with OLLAMA_DECK_RECONCILE_SECONDS the deck applies it."""
    deck().desired.put(parse_body(S.DesiredModels, context=desired_context()))
    return jsonify(_stored_answer())


@bp.delete("/desired-models")
@recorded(Action.DESIRED_MODELS)
@contract(responses={200: S.StoredDesiredModels})
def delete_desired_models():
    """Forget the stored desired model set (nothing is deleted from any host)."""
    deck().desired.clear()
    return jsonify(_stored_answer())


def _stored_answer() -> dict[str, Any]:
    stored = deck().desired.get()
    if stored is None:
        return {"set": None, "updated_at": None}
    desired, updated_at = stored
    answer = desired.model_dump(mode="json", exclude_unset=True)  # as it was given
    return {"set": answer, "updated_at": iso_time(updated_at)}


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
@recorded(Action.LOAD)
@contract(query=S.HostQuery, responses={202: S.Operation}, errors=(409, 429))
def load_model(name: str):
    """Warm a model into memory as an operation (pulling it first if it is missing)."""
    row, created = deck().runner.submit(Kind.LOAD, name, host_of().url)
    return jsonify(operation_payload(row, created=created)), 202


@bp.post("/models/<path:name>/unload")
@recorded(Action.UNLOAD)
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
@recorded(Action.ACTIVE_MODEL)
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
            # The reconciler of the process that answered (null when it is off).
            reconciler=state.reconciler.describe() if state.reconciler else None,
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
@recorded(Action.SESSION_OPEN)
@contract(responses={200: S.Session})
def open_session():
    """Trade the bearer token for a new session: a random id in an HttpOnly cookie (what
    EventSource can send) that ends after its maximum age, when idle, or at logout."""
    response = jsonify(session_status())
    issue_session(response)
    return response


@bp.delete("/session")
@recorded(Action.SESSION_CLOSE)
@contract(responses={200: S.Session})
def close_session():
    """Log out: the session ends for every worker at once, and its cookie is dropped."""
    response = jsonify(session_status())
    revoke_session(response)
    return response


@bp.get("/activity")
@contract(query=S.ActivityQuery, responses={200: S.ActivityPage}, errors=(400,))
def activity():
    """Who changed what: every state-changing request, newest first, in pages (``next`` is
    the ``?before=`` of the next); ``?action=``, ``?actor=``, ``?target=``,
    ``?operation=``, ``?outcome=ok|error`` filter."""
    query = parse_query(S.ActivityQuery)
    where = ActivityFilter(
        action=query.action,
        actor=query.actor,
        target=query.target,
        operation_id=query.operation,
        errors=None if query.outcome is None else query.outcome == "error",
    )
    entries, cursor = deck().activity.page(where, before=query.before, limit=query.limit)
    return jsonify({"entries": entries, "next": cursor})


@bp.get("/webhooks/deliveries")
@contract(query=S.DeliveriesQuery, responses={200: S.Deliveries}, errors=(400,))
def webhook_deliveries():
    """Webhook deliveries, newest first: the event, the receiver (its host only), the
    attempts, the last answer, and when the next try is; ``?status=``, ``?operation=``."""
    query = parse_query(S.DeliveriesQuery)
    state = deck()
    found = state.outbox.recent(
        limit=query.limit, status=query.status, operation_id=query.operation
    )
    return jsonify({"deliveries": found, "receivers": len(state.settings.webhook_urls)})


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
            registries=state.settings.allowed_registries,
        )
    )
