"""The OpenAPI 3.1 document, generated: it walks the app's url map for the deck's views and
reads what each declared with ``@contract`` (contracts.py), the models of schemas.py and
the views' docstrings. Nothing here describes an endpoint by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from .contracts import Contract
from .contracts import contract_of
from .contracts import JSON
from .contracts import SSE
from .schemas import COMPONENTS
from .schemas import Error
from .schemas import HOST_LIST_MARKER
from .schemas import host_list_pattern
from .schemas import HOST_MARKER
from .schemas import MODEL_MARKER
from .schemas import ModelName
from .services.names import DEFAULT_REGISTRIES
from .services.names import name_pattern

# The blueprints whose views the document describes (the page itself is HTML, not API).
BLUEPRINTS = ("ollama_deck_api", "ollama_deck_progress", "ollama_deck")
ERROR_TEXT = {
    400: "bad input",
    401: "a token is needed (OLLAMA_DECK_TOKEN is set) or it was wrong; embedded behind "
    "the host app's guard, login_required (with login_url) when not logged in",
    403: "a change requested by a page on another origin (cross_origin), by a token whose "
    "role is read (read_only_token), or the host app's guard refuses",
    404: "unknown",
    405: "method not allowed",
    408: "the body did not arrive in time",
    409: "conflict",
    413: "the body is too large",
    415: "the body is not application/json",
    421: "the Host is not one this service answers to",
    429: (
        "too many operations wait already (queue_full, OLLAMA_DECK_MAX_QUEUED), or too many "
        "wrong tokens came from this address (too_many_wrong_tokens); see Retry-After"
    ),
    502: "Ollama answered with an error",
    503: "Ollama is unreachable, or the database is (database_unavailable, with Retry-After)",
    504: "Ollama did not answer in time",
}
# What the security layer and the router can answer on any deck route, whatever it does.
EVERY_ROUTE = (401, 404, 405, 421, 429)
WRITES = (400, 403, 408, 413)  # origin check, body size and time limits
BODIES = (400, 408, 413, 415)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PATH_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "name": ("an Ollama model name, e.g. llama3.2:1b", TypeAdapter(ModelName).json_schema()),
    "op_id": ("an operation id (a UUID)", {"type": "string"}),
}
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def openapi_document(
    app: Flask,
    *,
    url_prefix: str = "",
    log_lines: int = 300,
    hosts: list[str] | None = None,
    session_cookie: str = "ollama_deck_session",
    registries: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The document of ``app``'s deck; paths are relative to its mount point, the one
    server URL. ``hosts`` are the configured names, the only values ``host`` takes;
    ``log_lines`` bounds ``?log=``; ``session_cookie`` is the cookie's name where the
    document is served (it carries the port and prefix); ``registries`` are the ones the
    deck pulls from besides the default ones (a model name may name only those)."""
    paths: dict[str, dict[str, Any]] = {}
    models: set[type[BaseModel]] = {Error}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint.split(".")[0] not in BLUEPRINTS:
            continue
        declared = contract_of(app.view_functions[rule.endpoint])
        if declared is None:
            continue  # the page, its static files, the catch-all 404
        path = _ARGUMENT.sub(r"{\1}", rule.rule.removeprefix(url_prefix)) or "/"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            view = app.view_functions[rule.endpoint]
            operation = _operation(view.__doc__, declared, method, rule.arguments, log_lines)
            paths.setdefault(path, {})[method.lower()] = operation
            models.update(_models_of(declared))
    schemas = dict(_components(tuple(sorted(models, key=lambda m: m.__name__))))
    schemas["HostName"] = {
        "type": "string",
        "description": "the name of a configured Ollama host (OLLAMA_HOSTS)",
        "enum": list(hosts or ["default"]),
    }
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Ollama Deck",
            "version": _version(),
            "description": (
                "Manage the models of an Ollama server. Errors are "
                '{"error": {"code", "message"}}. With OLLAMA_DECK_TOKEN or OLLAMA_DECK_TOKENS '
                "set, send 'Authorization: Bearer <token>'; a token whose role is read may "
                "change nothing (403 read_only_token). Writes from a page on another origin are "
                "refused; bodies must be application/json and may hold only the keys "
                "documented."
            ),
        },
        "servers": [{"url": url_prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": session_cookie},
            },
        },
        "security": [{}, {"token": []}, {"session": []}],
    }
    patterns = {
        MODEL_MARKER: name_pattern(tuple(dict.fromkeys(DEFAULT_REGISTRIES + tuple(registries)))),
        HOST_LIST_MARKER: host_list_pattern(list(hosts or ["default"])),
    }
    return _swap_markers(document, patterns)


def _operation(
    doc: str | None, declared: Contract, method: str, arguments: Iterable[str], log_lines: int
) -> dict[str, Any]:
    summary, description = _docstring(doc)
    operation: dict[str, Any] = {"summary": summary}
    if description:
        operation["description"] = description
    parameters = [
        {"name": arg, "in": "path", "required": True, "description": text, "schema": schema}
        for arg in sorted(arguments)
        for text, schema in [PATH_PARAMETERS.get(arg, (arg, {"type": "string"}))]
    ]
    parameters += _parameters(declared.query, "query", log_lines)
    parameters += _parameters(declared.headers, "header", log_lines)
    if parameters:
        operation["parameters"] = parameters
    errors = set(declared.errors) | set(EVERY_ROUTE)
    if method in WRITE_METHODS:
        errors |= set(WRITES)
    if declared.body is not None:
        errors |= set(BODIES)
        operation["requestBody"] = {
            "required": declared.body_required,
            "content": {JSON: {"schema": _ref(declared.body)}},
        }
    responses: dict[str, Any] = {}
    for status, model in sorted(declared.responses.items()):
        text = declared.descriptions.get(status, "OK")
        if model is None and status in declared.media:
            responses[str(status)] = {
                "description": text,
                "content": {declared.media[status]: {"schema": {"type": "string"}}},
            }
        elif model is None:
            responses[str(status)] = _events(text, declared.events.get(status, {}))
        else:
            responses[str(status)] = {
                "description": text,
                "content": {JSON: {"schema": _ref(model)}},
            }
    for status in sorted(errors - set(declared.responses)):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {JSON: {"schema": _ref(Error)}},
        }
    operation["responses"] = responses
    return operation


def _events(text: str, events: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """An event stream: the wire is text; each event's ``data:`` line is JSON of a model."""
    names = ", ".join(f"`{name}` ({model.__name__})" for name, model in events.items())
    return {
        "description": f"{text}; events: {names}" if names else text,
        "content": {
            SSE: {
                "schema": {"type": "string"},
                "x-events": {name: _ref(model) for name, model in events.items()},
            }
        },
    }


def _parameters(model: type[BaseModel] | None, where: str, log_lines: int) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=COMPONENTS)
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema["properties"].items():
        description = prop.pop("description", None)
        prop = _not_null(prop)
        for key in ("title", "default"):
            prop.pop(key, None)
        if name == "log":  # the app's OLLAMA_DECK_LOG_LINES
            prop["maximum"] = log_lines
        parameter = {"name": name, "in": where, "required": name in required, "schema": prop}
        if where == "query" and not parameter["required"]:
            parameter["allowEmptyValue"] = True  # QueryModel: ?x= is no x at all
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter is there or not: its ``X | None`` is just X."""
    options = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**options[0], **rest}
    return schema


def _models_of(declared: Contract) -> set[type[BaseModel]]:
    found = {m for m in declared.responses.values() if m is not None}
    found.update(model for events in declared.events.values() for model in events.values())
    if declared.body is not None:
        found.add(declared.body)
    return found


@cache
def _components(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """Every model's JSON Schema and the models they use, once per set of models."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=COMPONENTS)
    return dict(top.get("$defs", {}))


def _swap_markers(value: Any, patterns: dict[str, str]) -> Any:
    """Host names become the app's HostName component; model names and lists of host
    names take the patterns of the app's registries and hosts: what the configuration
    decides, in the document of each app."""
    if isinstance(value, dict):
        if value.get(HOST_MARKER):
            return {"$ref": COMPONENTS.format(model="HostName")}
        for marker, pattern in patterns.items():
            if value.get(marker):
                value = {k: v for k, v in value.items() if k != marker}
                value["pattern"] = pattern
        return {k: _swap_markers(v, patterns) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_markers(v, patterns) for v in value]
    return value


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": COMPONENTS.format(model=model.__name__)}


def _docstring(doc: str | None) -> tuple[str, str]:
    """Summary (the first paragraph, on one line) and the rest, ``code`` as Markdown."""
    text = re.sub(r"``([^`]+)``", r"`\1`", (doc or "").strip())
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _version() -> str:
    from . import __version__

    return __version__
