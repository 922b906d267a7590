"""What each view takes and answers, declared on the view itself.

``@contract(body=PullRequest, responses={202: Operation})`` records the declaration for
``openapi.py``; ``parse_body(PullRequest)`` validates the request with the same model and
turns pydantic's errors into our ``BadRequest`` with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import TypeVar

from flask import request
from pydantic import BaseModel
from pydantic import ValidationError

from .errors import BadRequest
from .http import json_body
from .schemas import QueryModel
from .schemas import RequestModel

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=RequestModel)
Q = TypeVar("Q", bound=QueryModel)

JSON = "application/json"
SSE = "text/event-stream"
ATTRIBUTE = "__deck_contract__"


@dataclass(frozen=True)
class Contract:
    """One endpoint's declaration: body, query, headers, answers and their media types."""

    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    # Status -> event name -> data model, for answers that are Server-Sent Events.
    events: dict[int, dict[str, type[BaseModel]]] = field(default_factory=dict)
    descriptions: dict[int, str] = field(default_factory=dict)
    # Status -> media type of an answer that is text but no event stream (e.g. /metrics).
    media: dict[int, str] = field(default_factory=dict)


def contract(
    *,
    responses: dict[int, type[BaseModel] | None],
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    headers: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
    events: dict[int, dict[str, type[BaseModel]]] | None = None,
    descriptions: dict[int, str] | None = None,
    media: dict[int, str] | None = None,
) -> Callable[[F], F]:
    """Declare a view's request and answers; the view itself is left as it is.

    ``responses`` maps a success status to its JSON model (None for an event stream, whose
    events ``events`` describes, or for text of the type ``media`` names); ``errors``
    lists the error statuses beyond the ones every route, write or body can answer.
    """
    declared = Contract(
        responses=responses,
        body=body,
        body_required=body_required,
        query=query,
        headers=headers,
        errors=errors,
        events=events or {},
        descriptions=descriptions or {},
        media=media or {},
    )

    def mark(view: F) -> F:
        setattr(view, ATTRIBUTE, declared)
        return view

    return mark


def contract_of(view: Callable[..., Any]) -> Contract | None:
    """The contract a view declared, if it did."""
    return getattr(view, ATTRIBUTE, None)


def parse_body(
    model: type[M], *, optional: bool = False, context: dict[str, Any] | None = None
) -> M:
    """The request's JSON body as ``model``; a 400 with a friendly code when it is not one.

    ``optional``: no body at all means the model's defaults. ``context`` goes to the
    model's validators (what the deck is configured with, e.g. its host names).
    """
    if optional and not request.get_data(cache=True):
        return model.model_validate({}, context=context)
    data = json_body()
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise body_error(model, exc) from None


def parse_query(model: type[Q]) -> Q:
    """The request's query parameters as ``model``; a 400 with the field's message."""
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise body_error(model, exc) from None


def body_error(model: type[RequestModel] | type[QueryModel], exc: ValidationError) -> BadRequest:
    """Our error for pydantic's first complaint: the field's code, ``invalid_model_name``
    for a name Ollama would refuse, ``unknown_field`` for a key the body does not take."""
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    kind = error["type"]
    if kind == "invalid_model_name":
        return BadRequest(error["msg"], code="invalid_model_name")
    if kind == "extra_forbidden" and len(loc) == 1:
        twin = _aliases(model).get(str(loc[0]))
        if twin is not None:
            return BadRequest(f"give {' or '.join(twin)}, not both", code="duplicate_field")
        known = ", ".join(_keys(model))
        return BadRequest(
            f"unknown field {str(loc[0])[:60]!r}: this body takes {known}", code="unknown_field"
        )
    if kind == "extra_forbidden":  # in a nested object (a desired set's host, say)
        where = ".".join(str(part) for part in loc)
        return BadRequest(f"unknown field {where[:80]!r}", code="unknown_field")
    if not loc:  # a rule across fields (a model validator): its type is our code
        return BadRequest(error["msg"], code=kind)
    named = model.field_errors.get(str(loc[0]))
    if named is not None:
        return BadRequest(named[1], code=named[0])
    where = ".".join(str(part) for part in loc)
    return BadRequest(f"{where}: {error['msg']}")


def _keys(model: type[BaseModel]) -> list[str]:
    """Every key the body takes, aliases included, in declaration order."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        keys.extend(_choices(info.validation_alias) or [name])
    return keys


def _aliases(model: type[BaseModel]) -> dict[str, list[str]]:
    """Key -> all the keys of the same field, for fields that take more than one."""
    found: dict[str, list[str]] = {}
    for info in model.model_fields.values():
        choices = _choices(info.validation_alias)
        found.update({choice: choices for choice in choices if len(choices) > 1})
    return found


def _choices(alias: Any) -> list[str]:
    return [str(c) for c in getattr(alias, "choices", None) or []]
