"""The OpenAPI 3.1 document of the deck's HTTP API, served at ``<prefix>/api/openapi.json``.

Written by hand next to the views it describes; tests/test_openapi.py runs schemathesis
against a live service to keep the two in step.
"""

from __future__ import annotations

from typing import Any

from .db import ACTIVE_STATUSES
from .db import FINAL_STATUSES
from .services.catalog import CATEGORIES

JSON = "application/json"
SSE = "text/event-stream"
ERROR_TEXT = {
    400: "bad input",
    401: "a token is needed (OLLAMA_DECK_TOKEN is set) or it was wrong",
    403: "a change requested by a page on another origin",
    404: "unknown",
    405: "method not allowed",
    408: "the body did not arrive in time",
    409: "conflict",
    413: "the body is too large",
    415: "the body is not application/json",
    421: "the Host is not one this service answers to",
    429: "too many operations wait already (OLLAMA_DECK_MAX_QUEUED); see Retry-After",
    502: "Ollama answered with an error",
    503: "Ollama is unreachable, or the database is (database_unavailable, with Retry-After)",
    504: "Ollama did not answer in time",
}
# What any deck route can answer, whatever it does.
EVERY_ROUTE = (401, 404, 405, 421)  # 404: a path that is no route at all
WRITES = (403, 413, 408, 400)
BODIES = (400, 408, 413, 415)
OLLAMA = (502, 503, 504)

# Ollama's name grammar (services/names.py): [host/][namespace/]model[:tag].
_PART = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
_NAMESPACE = "[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"
_HOST = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,339}(:[0-9]{1,5})?"
MODEL_NAME = {
    "type": "string",
    # Surrounding whitespace is ignored, as Ollama does.
    "pattern": f"^\\s*(({_HOST}/)?{_NAMESPACE}/)?{_PART}(:{_PART})?\\s*$",
    "examples": ["llama3.2:1b", "qwen2.5-coder:7b"],
}
_STATUS = "(" + "|".join(ACTIVE_STATUSES + FINAL_STATUSES) + ")"
EVENT_ID = {"type": "string", "pattern": "^[0-9]{1,18}$"}

NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Operation": {
        "type": "object",
        "required": ["id", "kind", "model", "status", "active", "percent", "seq", "urls"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "kind": {"type": "string", "enum": ["pull", "load", "update"]},
            "model": {"type": "string"},
            "host": {"type": "string", "description": "the Ollama host's configured name"},
            "host_url": {"type": "string"},
            "status": {"type": "string", "enum": list(ACTIVE_STATUSES + FINAL_STATUSES)},
            "active": {"type": "boolean"},
            "phase": NULLABLE_STRING,
            "percent": {"type": "number", "minimum": 0, "maximum": 100},
            "completed_bytes": NULLABLE_INT,
            "total_bytes": NULLABLE_INT,
            "speed": NULLABLE_NUMBER,
            "eta_seconds": NULLABLE_NUMBER,
            "message": NULLABLE_STRING,
            "error": NULLABLE_STRING,
            "cancel_requested": {"type": "boolean"},
            "result": {
                "description": "an update's outcome: updated (old and new digest) or current",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["updated", "current"]},
                            "old": NULLABLE_STRING,
                            "new": NULLABLE_STRING,
                        },
                    },
                ],
            },
            "attempts": {"type": "integer"},
            "seq": {"type": "integer"},
            "created_at": NULLABLE_STRING,
            "updated_at": NULLABLE_STRING,
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "created": {"type": "boolean", "description": "false when an active one was joined"},
            "urls": {
                "type": "object",
                "required": ["progress", "stream", "cancel"],
                "properties": {
                    "progress": {"type": "string"},
                    "stream": {"type": "string"},
                    "cancel": {"type": "string"},
                },
            },
            "log": {"type": "array", "items": {"$ref": "#/components/schemas/LogLine"}},
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["operation_id", "seq", "text"],
        "properties": {
            "operation_id": {"type": "string"},
            "seq": {"type": "integer"},
            "time": NULLABLE_STRING,
            "text": {"type": "string"},
        },
    },
    "Models": {
        "type": "object",
        "required": ["models", "count", "total_size", "pulls", "stale"],
        "properties": {
            "models": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "size": NULLABLE_INT},
                },
            },
            "count": {"type": "integer"},
            "total_size": {"type": "integer"},
            "pulls": {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}},
            "stale": {"type": "boolean"},
            "error": NULLABLE_STRING,
            "cached_at": NULLABLE_STRING,
            "host": {"type": "string"},
        },
    },
    "ModelDetails": {
        "type": "object",
        "required": ["name", "vram"],
        "properties": {
            "name": {"type": "string"},
            "family": NULLABLE_STRING,
            "parameter_size": NULLABLE_STRING,
            "quantization": NULLABLE_STRING,
            "context_length": NULLABLE_INT,
            "capabilities": {"type": "array", "items": {"type": "string"}},
            "license": {"type": "string"},
            "vram": {"type": "object"},
            "fits": {"type": ["boolean", "null"]},
        },
    },
    "Catalog": {
        "type": "object",
        "required": ["families", "categories"],
        "properties": {
            "families": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "category", "tags"],
                    "properties": {
                        "name": {"type": "string"},
                        "category": {"type": "string"},
                        "tags": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "model", "installed"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "model": {"type": "string"},
                                    "installed": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
            },
            "categories": {"type": "array", "items": {"type": "string"}},
            "gpu": {"type": "object"},
        },
    },
    "Status": {
        "type": "object",
        "required": ["host", "reachable"],
        "properties": {
            "host": {"type": "string"},
            "reachable": {"type": "boolean"},
            "version": NULLABLE_STRING,
            "running": {"type": "array"},
            "error": NULLABLE_STRING,
            "gpu": {"type": "object"},
            "watchers": {"type": "integer"},
        },
    },
    "Hosts": {
        "type": "object",
        "required": ["hosts"],
        "properties": {
            "hosts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "url", "reachable", "models", "disk_used"],
                    "properties": {
                        "name": {"type": "string"},
                        "url": {"type": "string"},
                        "reachable": {"type": "boolean"},
                        "version": NULLABLE_STRING,
                        "models": {"type": "integer"},
                        "disk_used": {"type": "integer"},
                        "stale": {"type": "boolean"},
                        "running": {"type": "array"},
                        "error": NULLABLE_STRING,
                    },
                },
            }
        },
    },
    "ActiveModel": {
        "type": "object",
        "required": ["model"],
        "properties": {"model": NULLABLE_STRING},
    },
    "Session": {
        "type": "object",
        "required": ["token_required"],
        "properties": {"token_required": {"type": "boolean"}},
    },
}

NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "an Ollama model name, e.g. llama3.2:1b",
    "schema": MODEL_NAME,
}
OP_ID = {
    "name": "op_id",
    "in": "path",
    "required": True,
    "description": "an operation id (a UUID)",
    "schema": {"type": "string"},
}
LAST_EVENT_ID = [
    {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "resume after this event id (EventSource sends it on reconnect)",
        "schema": EVENT_ID,
    },
    {"name": "last_event_id", "in": "query", "required": False, "schema": EVENT_ID},
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answers(ok: dict[int, tuple[str, str, dict[str, Any]]], *errors: int) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (text, media, schema) in ok.items():
        responses[str(status)] = {"description": text, "content": {media: {"schema": schema}}}
    for status in sorted(set(errors) | set(EVERY_ROUTE)):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {JSON: {"schema": _ref("Error")}},
        }
    return responses


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _json(schema: str | dict[str, Any], text: str = "OK") -> tuple[str, str, dict[str, Any]]:
    return text, JSON, _ref(schema) if isinstance(schema, str) else schema


def _events(text: str) -> tuple[str, str, dict[str, Any]]:
    return text, SSE, {"type": "string"}


def openapi_document(
    url_prefix: str = "", log_lines: int = 300, hosts: list[str] | None = None
) -> dict[str, Any]:
    """The document; paths are relative to the deck's mount point, its one server URL.
    ``hosts``: the configured Ollama host names, the only values ``host`` takes."""
    host_schema = {"type": "string", "enum": list(hosts or ["default"])}
    host_param = {
        "name": "host",
        "in": "query",
        "description": "the name of a configured Ollama host (OLLAMA_HOSTS); default: the first",
        "schema": host_schema,
    }
    model_body = {
        "type": "object",
        "required": ["model"],
        "properties": {"model": MODEL_NAME, "host": host_schema},
        "additionalProperties": False,
    }
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string"},
        },
        "additionalProperties": False,
    }
    chat_body = {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": MODEL_NAME,
            "host": host_schema,
            "prompt": {"type": "string", "pattern": "\\S"},
            "messages": {"type": "array", "minItems": 1, "items": message},
        },
        "additionalProperties": False,
        # "messages" wins when both are given; "prompt" alone is one user message.
        "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}],
    }
    statuses = ",".join(ACTIVE_STATUSES + FINAL_STATUSES)
    paths: dict[str, Any] = {
        "/api/hosts": {
            "get": _op(
                "Every configured Ollama host: reachable, version, models, disk used, loaded",
                _answers({200: _json("Hosts")}),
            )
        },
        "/api/models": {
            "get": _op(
                "Installed models, disk use and active pulls (a cached list if Ollama is down)",
                _answers({200: _json("Models")}, 400),
                parameters=[host_param],
            )
        },
        "/api/models/pull": {
            "post": _op(
                "Start a pull, or join the one running for that model",
                _answers({202: _json("Operation", "the operation")}, *WRITES, *BODIES, 409, 429),
                requestBody=_body(model_body),
            )
        },
        "/api/models/update": {
            "post": _op(
                "Pull installed models again (all, or those named); each ends with a result",
                _answers(
                    {
                        202: _json(
                            {
                                "type": "object",
                                "required": ["ids", "operations"],
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "string"}},
                                    "operations": {"type": "array", "items": _ref("Operation")},
                                },
                            },
                            "the operations",
                        )
                    },
                    *WRITES,
                    *BODIES,
                    404,
                    409,
                    429,
                    *OLLAMA,
                ),
                requestBody={
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "models": {"type": "array", "items": MODEL_NAME},
                                    "host": host_schema,
                                },
                                "additionalProperties": False,
                            }
                        }
                    },
                },
            )
        },
        "/api/estimate": {
            "get": _op(
                "What a pull would take: download size, VRAM estimate, fit, whether to warn",
                _answers({200: _json({"type": "object", "required": ["model", "warn"]})}, 400),
                parameters=[
                    {"name": "model", "in": "query", "required": True, "schema": MODEL_NAME}
                ],
            )
        },
        "/api/models/{name}": {
            "parameters": [NAME, host_param],
            "get": _op(
                "Details of an installed model, with its VRAM estimate",
                _answers({200: _json("ModelDetails")}, 400, 404, *OLLAMA),
            ),
            "delete": _op(
                "Delete an installed model",
                _answers(
                    {200: _json({"type": "object", "properties": {"deleted": {"type": "string"}}})},
                    *WRITES,
                    404,
                    409,
                    *OLLAMA,
                ),
            ),
        },
        "/api/models/{name}/load": {
            "parameters": [NAME, host_param],
            "post": _op(
                "Warm a model into memory as an operation (pulling it first if missing)",
                _answers({202: _json("Operation", "the operation")}, *WRITES, 409, 429),
            ),
        },
        "/api/models/{name}/unload": {
            "parameters": [NAME, host_param],
            "post": _op(
                "Free a model from memory",
                _answers(
                    {
                        200: _json(
                            {"type": "object", "properties": {"unloaded": {"type": "string"}}}
                        )
                    },
                    *WRITES,
                    404,
                    *OLLAMA,
                ),
            ),
        },
        "/api/catalog": {
            "get": _op(
                "The curated catalog with installed flags and VRAM per tag",
                _answers({200: _json("Catalog")}, 400),
                parameters=[
                    {
                        "name": "category",
                        "in": "query",
                        "description": "empty: every category",
                        "schema": {"type": "string", "enum": ["", *CATEGORIES]},
                    },
                    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}},
                    host_param,
                ],
            )
        },
        "/api/status": {
            "get": _op(
                "Is Ollama reachable, its version, what is loaded",
                _answers({200: _json("Status")}, 400),
                parameters=[host_param],
            )
        },
        "/api/active-model": {
            "get": _op("The active model", _answers({200: _json("ActiveModel")})),
            "put": _op(
                "Choose the active model (it must be installed); null clears it",
                _answers({200: _json("ActiveModel")}, *WRITES, *BODIES, 404, *OLLAMA),
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["model"],
                        "properties": {"model": {"anyOf": [MODEL_NAME, {"type": "null"}]}},
                        "additionalProperties": False,
                    }
                ),
            ),
        },
        "/api/chat": {
            "post": _op(
                "A test prompt; the reply streams as SSE: token events, then done or error",
                _answers(
                    {200: _events("the reply as Server-Sent Events")},
                    *WRITES,
                    *BODIES,
                    404,
                    *OLLAMA,
                ),
                requestBody=_body(chat_body),
            )
        },
        "/api/session": {
            "get": _op("Whether a token is required", _answers({200: _json("Session")})),
            "post": _op(
                "Trade the bearer token for an HttpOnly, SameSite=Strict session cookie",
                _answers({200: _json("Session")}, *WRITES),
            ),
            "delete": _op("Forget the session cookie", _answers({200: _json("Session")}, *WRITES)),
        },
        "/api/openapi.json": {
            "get": _op("This document", _answers({200: _json({"type": "object"})}))
        },
        "/progress": {
            "get": _op(
                "Operations, newest first",
                _answers(
                    {
                        200: _json(
                            {
                                "type": "object",
                                "required": ["operations"],
                                "properties": {
                                    "operations": {"type": "array", "items": _ref("Operation")}
                                },
                            }
                        )
                    },
                    400,
                ),
                parameters=[
                    {
                        "name": "status",
                        "in": "query",
                        "description": f"comma-separated, of {statuses}",
                        "schema": {"type": "string", "pattern": f"^({_STATUS}(,{_STATUS})*)?$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
            )
        },
        "/progress/stream": {
            "get": _op(
                "Server-Sent Events of every operation: progress, log and done events",
                _answers({200: _events("an endless event stream")}, 400),
                parameters=LAST_EVENT_ID,
            )
        },
        "/progress/{op_id}": {
            "parameters": [OP_ID],
            "get": _op(
                "One operation with its last log lines",
                _answers({200: _json("Operation")}, 400, 404),
                parameters=[
                    {
                        "name": "log",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": log_lines},
                    }
                ],
            ),
            "delete": _op(
                "Forget a finished operation",
                _answers(
                    {200: _json({"type": "object", "properties": {"deleted": {"type": "string"}}})},
                    *WRITES,
                    404,
                    409,
                ),
            ),
        },
        "/progress/{op_id}/stream": {
            "parameters": [OP_ID],
            "get": _op(
                "Server-Sent Events of one operation; ends after its done event",
                _answers({200: _events("the operation's events")}, 400, 404),
                parameters=LAST_EVENT_ID,
            ),
        },
        "/progress/{op_id}/cancel": {
            "parameters": [OP_ID],
            "post": _op(
                "Cancel a queued or running operation: 200 once it ended, 202 while it winds down",
                _answers({200: _json("Operation"), 202: _json("Operation")}, *WRITES, 404),
            ),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ollama Deck",
            "version": _version(),
            "description": (
                "Manage the models of an Ollama server. Errors are "
                '{"error": {"code", "message"}}. With OLLAMA_DECK_TOKEN set, send '
                "'Authorization: Bearer <token>'. Writes from a page on another origin are "
                "refused; bodies must be application/json."
            ),
        },
        "servers": [{"url": url_prefix or "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ollama_deck_session"},
            },
        },
        "security": [{}, {"token": []}, {"session": []}],
    }


def _version() -> str:
    from . import __version__

    return __version__
