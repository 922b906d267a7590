"""Every request body and response of the HTTP API, declared once.

The views validate bodies through the request models (``contracts.parse_body``) and the
OpenAPI document is generated from all of them (``openapi.py``), so the two cannot drift.
Request models refuse unknown keys; response models describe what is always there and
let Ollama's own extra fields through.
"""

from __future__ import annotations

import re
import time
from datetime import UTC
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import Literal

from pydantic import AfterValidator
from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import model_validator
from pydantic import ValidationInfo
from pydantic import WithJsonSchema
from pydantic_core import PydanticCustomError

from .config import Role
from .lifecycle import Action
from .lifecycle import DeliveryStatus
from .lifecycle import Hold
from .lifecycle import Kind
from .lifecycle import Phase
from .lifecycle import Status
from .lifecycle import WebhookEvent
from .numbers import whole_number
from .services.catalog import CATEGORIES
from .services.names import check_registry
from .services.names import InvalidModelName
from .services.names import name_pattern
from .services.names import parse_model_name
from .services.names import RegistryNotAllowed
from .windows import resolve_not_before

COMPONENTS = "#/components/schemas/{model}"


def _model_name(value: str) -> str:
    """Ollama's grammar (services/names.py); the text is kept as given, the services
    normalise it."""
    if not value.strip():
        raise PydanticCustomError("blank", "must not be blank")
    try:
        parse_model_name(value)
    except InvalidModelName as exc:
        raise PydanticCustomError("invalid_model_name", "{reason}", {"reason": str(exc)}) from None
    return value


# openapi.py narrows the pattern per app to the registries the deck pulls from.
MODEL_MARKER = "x-deck-model-name"
ModelName = Annotated[
    str,
    AfterValidator(_model_name),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": name_pattern(),
            "examples": ["llama3.2:1b", "qwen2.5:7b"],
            MODEL_MARKER: True,
        }
    ),
]
# Hosts come from configuration, so openapi.py swaps this marker for a per-app component
# listing the names; here it is only a string that the view looks up by name.
HOST_MARKER = "x-deck-host-name"
HostName = Annotated[str, WithJsonSchema({"type": "string", HOST_MARKER: True})]


class RequestModel(BaseModel):
    """A JSON body: unknown keys are refused, no type is coerced.

    ``field_errors`` gives the friendly code and message a field's error answers with.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    field_errors: ClassVar[dict[str, tuple[str, str]]] = {}


HOST_ERROR = ("unknown_host", "host must be the name of a configured Ollama host")
HOSTS_ERROR = (
    "unknown_host",
    'hosts must be a list of configured Ollama host names, or "*" for every host',
)
ALL_HOSTS = "*"
# ``hosts``: several hosts by name, or "*" for every configured one. The answer is a group.
HostNames = Annotated[list[HostName], Field(min_length=1, max_length=100)] | Literal["*"]
BOTH_SCOPES = "give host or hosts, not both"


def _one_scope(host: Any, hosts: Any) -> None:
    if host is not None and hosts is not None:
        raise PydanticCustomError("duplicate_field", BOTH_SCOPES)


def _scope_schema(schema: dict[str, Any]) -> None:
    schema["not"] = {"required": ["host", "hosts"]}  # one or the other (or neither)


def _pull_schema(schema: dict[str, Any]) -> None:
    # ``name`` is read as ``model`` (Ollama's own old alias): document it as such.
    properties = schema["properties"]
    properties["name"] = dict(properties["model"], description="an alias of model")
    schema.pop("required", None)
    schema["oneOf"] = [{"required": ["model"]}, {"required": ["name"]}]
    _scope_schema(schema)


NOT_BEFORE_HINT = (
    "not_before must be an ISO 8601 date and time, e.g. 2026-12-01T01:00 (the deck's time "
    "zone) or 2026-12-01T01:00:00Z, or a time of day such as 01:00 (the next one), and at "
    "most a year ahead"
)


# The forms not_before takes, as the document states them; the calendar (no 31 June) and
# "at most a year ahead" are checked past it, where a pattern cannot say them.
NOT_BEFORE_PATTERN = (
    r"^(([01]?[0-9]|2[0-3]):[0-5][0-9]"
    r"|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3])(:[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?)$"
)
_NOT_BEFORE_FORM = re.compile(NOT_BEFORE_PATTERN)


def _not_before(value: str) -> str:
    # The form is checked here (any zone will do for that); the runner reads the time in
    # the deck's own zone and clock (Runner.resolve_time).
    if not _NOT_BEFORE_FORM.search(value):
        raise PydanticCustomError("invalid_not_before", NOT_BEFORE_HINT)
    try:
        resolve_not_before(value, time.time(), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise PydanticCustomError("invalid_not_before", "{reason}", {"reason": str(exc)}) from None
    return value


NotBefore = Annotated[
    str,
    AfterValidator(_not_before),
    WithJsonSchema(
        {
            "type": "string",
            "description": "start no earlier: an ISO 8601 date and time (without a zone: "
            "the deck's, OLLAMA_DECK_TIMEZONE) or a time of day HH:MM (the next one), at "
            "most a year ahead",
            "pattern": NOT_BEFORE_PATTERN,
            "examples": ["2026-12-01T01:00", "2026-12-01T01:00:00Z", "01:00"],
        }
    ),
]


class PullRequest(RequestModel):
    """``{"model": "llama3.2:1b"}``, optionally with a host name and a start time."""

    model_config = ConfigDict(json_schema_extra=_pull_schema)
    field_errors = {
        "model": ("model_required", 'say which model to pull: {"model": "llama3.2:1b"}'),
        "host": HOST_ERROR,
        "hosts": HOSTS_ERROR,
        "not_before": ("invalid_not_before", NOT_BEFORE_HINT),
    }

    model: ModelName = Field(validation_alias=AliasChoices("model", "name"))
    host: HostName | None = None
    not_before: NotBefore | None = None
    hosts: HostNames | None = Field(
        None, description='several hosts, or "*" for all: the answer is a group'
    )

    @model_validator(mode="after")
    def _one_scope(self) -> PullRequest:
        _one_scope(self.host, self.hosts)
        return self


class UpdateRequest(RequestModel):
    """No body, ``{}``, or ``{"models": [...]}``: update every installed model or those."""

    model_config = ConfigDict(json_schema_extra=_scope_schema)

    field_errors = {
        "models": (
            "invalid_models",
            'models must be a list of names: {"models": ["llama3.2:1b"]}, or leave it out '
            "to update every installed model",
        ),
        "host": HOST_ERROR,
        "hosts": HOSTS_ERROR,
    }

    models: list[ModelName] | None = None
    host: HostName | None = None
    hosts: HostNames | None = Field(
        None, description='several hosts, or "*" for all: the answer is one group'
    )

    @model_validator(mode="after")
    def _one_scope(self) -> UpdateRequest:
        _one_scope(self.host, self.hosts)
        return self


class ModelSet(RequestModel):
    """The models a host should have, and whether to delete the ones it has besides."""

    field_errors = {
        "models": ("invalid_models", 'models must be a list of names: ["llama3.2:1b"]'),
        "prune": ("bad_request", "prune must be true or false"),
    }

    # As many as fit in a body (OLLAMA_DECK_MAX_BODY_BYTES).
    models: list[ModelName] = []
    prune: bool = Field(
        False,
        description="delete what is installed there but not declared (never a model an "
        "operation is using)",
    )


class DesiredModels(RequestModel):
    """A desired model set: ``all`` for every configured host, ``hosts`` by name (the TOML
    file of ``ollama-deck plan`` as JSON). A host has the models of both.

    Validated with a context of the deck's configuration (``hosts``: the names,
    ``allowed_registries``) where it has one; the client checks the rest alone.
    """

    field_errors = {
        "all": ("bad_request", 'all must be a table: {"models": [...], "prune": false}'),
        "hosts": (
            "unknown_host",
            'hosts must map configured host names to {"models": [...], "prune": false}',
        ),
    }

    all: ModelSet | None = Field(None, description="for every configured host")
    hosts: dict[HostName, ModelSet] = Field(default_factory=dict, description="by host name")

    @model_validator(mode="after")
    def _known_to_this_deck(self, info: ValidationInfo) -> DesiredModels:
        context = info.context or {}
        names = context.get("hosts")
        if names is not None:
            for name in self.hosts:
                if name not in names:
                    raise PydanticCustomError(
                        "unknown_host",
                        "no Ollama host is called {name}; the hosts are {known}",
                        {"name": repr(str(name)[:60]), "known": ", ".join(names)},
                    )
        allowed = context.get("allowed_registries")
        if allowed is not None:
            for model in self.declared():
                try:
                    check_registry(parse_model_name(model), tuple(allowed))
                except RegistryNotAllowed as exc:
                    raise PydanticCustomError(
                        "registry_not_allowed", "{reason}", {"reason": exc.message}
                    ) from None
        return self

    def declared(self) -> list[str]:
        """Every model named anywhere in the set."""
        sets = ([self.all] if self.all else []) + list(self.hosts.values())
        return [model for models in sets for model in models.models]


class ActiveModelRequest(RequestModel):
    """``{"model": "llama3.2:1b"}``; ``{"model": null}`` clears the choice."""

    field_errors = {
        "model": ("model_required", 'say which model: {"model": "llama3.2:1b"} or null')
    }

    model: ModelName | None


class Message(RequestModel):
    role: Literal["system", "user", "assistant"]
    content: str


PROMPT_HINT = 'give "prompt" as text, or "messages" as [{"role": "user", "content": "..."}]'


def _chat_schema(schema: dict[str, Any]) -> None:
    # "messages" wins when both are given; "prompt" alone is one user message. A null
    # counts as absent, so each branch needs its key with a value.
    schema["anyOf"] = [
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
    ]


class ChatRequest(RequestModel):
    """A test prompt: ``prompt`` as text, or ``messages`` as a conversation."""

    model_config = ConfigDict(json_schema_extra=_chat_schema)
    field_errors = {
        "model": ("model_required", 'say which model: {"model": "llama3.2:1b", ...}'),
        "host": HOST_ERROR,
        "prompt": ("prompt_required", PROMPT_HINT),
        "messages": ("prompt_required", PROMPT_HINT),
    }

    model: ModelName
    host: HostName | None = None
    prompt: Annotated[str, Field(pattern=r"\S")] | None = None
    messages: Annotated[list[Message], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _has_a_prompt(self) -> ChatRequest:
        if self.messages is None and not (self.prompt or "").strip():
            raise PydanticCustomError("prompt_required", PROMPT_HINT)
        return self

    def conversation(self) -> list[dict[str, str]]:
        """The messages to send: the given ones, else the prompt as one user message."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


# ------------------------------------------------------------------ query parameters


class QueryModel(BaseModel):
    """Query parameters: strings in, an empty value is no value, unknown names ignored."""

    field_errors: ClassVar[dict[str, tuple[str, str]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data


class HostQuery(QueryModel):
    # Read by the views' host_of(), which answers unknown_host for a name not configured.
    host: HostName | None = Field(
        None, description="the name of a configured Ollama host; default: the first"
    )


HOST_LIST = r"^(\*|[a-z0-9][a-z0-9_.-]{0,39}(,[a-z0-9][a-z0-9_.-]{0,39}){0,99})$"
# openapi.py narrows the pattern per app to its host names.
HOST_LIST_MARKER = "x-deck-host-list"


def host_list_pattern(names: list[str] | None = None) -> str:
    """``*``, or host names separated by commas: any, or ``names`` alone."""
    if names is None:
        return HOST_LIST
    one = "(" + "|".join(re.escape(name) for name in names) + ")"
    return rf"^(\*|{one}(,{one}){{0,99}})$"


class ScopeQuery(HostQuery):
    """One host (``?host=``), or several (``?hosts=gpu1,gpu2``, ``?hosts=*``): a group."""

    field_errors = {
        "hosts": ("unknown_host", "hosts must be host names separated by commas, or * for all")
    }

    hosts: (
        Annotated[
            str,
            Field(pattern=HOST_LIST),
            WithJsonSchema({"type": "string", "pattern": HOST_LIST, HOST_LIST_MARKER: True}),
        ]
        | None
    ) = Field(
        None, description="comma-separated host names, or * for every host: the answer is a group"
    )

    @model_validator(mode="after")
    def _one_scope(self) -> ScopeQuery:
        _one_scope(self.host, self.hosts)
        return self

    def host_names(self) -> list[str] | Literal["*"] | None:
        """The hosts named by ``hosts``, or "*", or None when it was not given."""
        if self.hosts is None:
            return None
        if self.hosts == "*":
            return "*"
        return self.hosts.split(",")


class EstimateQuery(QueryModel):
    field_errors = {"model": ("model_required", "say which model: ?model=llama3.2:1b")}

    model: ModelName


def _category(value: str) -> str:
    if value not in CATEGORIES:
        raise PydanticCustomError("category", "unknown category")
    return value


Category = Annotated[
    str,
    AfterValidator(_category),
    WithJsonSchema({"type": "string", "enum": ["", *CATEGORIES]}),
]
MAX_QUERY_CHARS = 200


class CatalogQuery(HostQuery):
    field_errors = {
        "category": ("bad_request", f"unknown category; use one of {', '.join(CATEGORIES)}"),
        "q": ("bad_request", f"q must be at most {MAX_QUERY_CHARS} characters"),
    }

    category: Category | None = Field(None, description="empty: every category")
    q: Annotated[str, Field(max_length=MAX_QUERY_CHARS)] | None = None


def _whole_number(value: Any) -> Any:
    # The same digits-only reading as every other number of the API (no sign, no "_").
    number = whole_number(value) if isinstance(value, str) else None
    if number is None:
        raise PydanticCustomError("whole_number", "must be a whole number")
    return number


# Constraints come before the validator, or pydantic leaves them out of the JSON Schema.
Limit = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_whole_number)]
_STATUS = "(" + "|".join(Status) + ")"
StatusList = Annotated[str, Field(pattern=f"^({_STATUS}(,{_STATUS})*)?$")]


# A page's end: the last operation's created_at (exactly as stored) and id.
PageCursor = Annotated[str, Field(pattern=r"^[0-9]{1,12}(\.[0-9]{1,20})?_[0-9a-f-]{36}$")]


def page_cursor(row: dict[str, Any]) -> str:
    return f"{row['created_at']!r}_{row['id']}"


def read_page_cursor(cursor: str) -> tuple[float, str]:
    created_at, _, op_id = cursor.partition("_")
    return float(created_at), op_id


class OperationsQuery(QueryModel):
    field_errors = {
        "status": ("bad_request", "unknown status; use one of " + ", ".join(Status)),
        "limit": ("bad_request", "limit must be a whole number between 1 and 1000"),
        "before": ("bad_request", "before must be the next of a previous answer"),
    }

    status: StatusList | None = Field(None, description="comma-separated, of " + ",".join(Status))
    limit: Limit = 100
    before: PageCursor | None = Field(
        None, description="the next page: the previous answer's next (newest first)"
    )

    def statuses(self) -> list[str]:
        return [s for s in (self.status or "").split(",") if s]


class OperationQuery(QueryModel):
    # Its maximum is the app's OLLAMA_DECK_LOG_LINES: openapi.py writes it in per app and
    # the view checks it.
    log: Annotated[int, Field(ge=0)] | None = Field(None, description="how many log lines")


EventId = Annotated[str, Field(pattern="^[0-9]{1,18}$")]


class StreamQuery(QueryModel):
    last_event_id: EventId | None = Field(None, description="resume after this event id")


class StreamHeaders(QueryModel):
    last_event_id: EventId | None = Field(
        None,
        alias="Last-Event-ID",
        description="resume after this event id (EventSource sends it on reconnect)",
    )


Cursor = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]
OperationId = Annotated[str, Field(max_length=36)]


class ActivityQuery(QueryModel):
    field_errors = {
        "action": ("bad_request", "unknown action; use one of " + ", ".join(Action)),
        "outcome": ("bad_request", "outcome is ok or error"),
        "before": ("bad_request", "before must be an entry id (a whole number)"),
        "limit": ("bad_request", "limit must be a whole number between 1 and 500"),
        "actor": ("bad_request", "actor must be at most 200 characters"),
        "target": ("bad_request", "target must be at most 600 characters"),
        "operation": ("bad_request", "operation must be an operation id"),
    }

    action: Action | None = Field(None, description="only this action")
    actor: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="only this actor (a user, a token's name, or local)"
    )
    target: Annotated[str, Field(max_length=600)] | None = Field(
        None, description="only this target (a model name, as given)"
    )
    operation: OperationId | None = Field(None, description="only requests about this operation")
    outcome: Literal["ok", "error"] | None = Field(
        None, description="ok: answered below 400; error: refused or failed"
    )
    before: Cursor | None = Field(
        None, description="the next page: entries older than this id (the last page's next)"
    )
    limit: Annotated[int, Field(ge=1, le=500), BeforeValidator(_whole_number)] = 50


class DeliveriesQuery(QueryModel):
    field_errors = {
        "status": ("bad_request", "unknown status; use one of " + ", ".join(DeliveryStatus)),
        "limit": ("bad_request", "limit must be a whole number between 1 and 500"),
        "operation": ("bad_request", "operation must be an operation id"),
    }

    status: DeliveryStatus | None = Field(None, description="only deliveries in this status")
    operation: OperationId | None = Field(None, description="only this operation's")
    limit: Annotated[int, Field(ge=1, le=500), BeforeValidator(_whole_number)] = 50


# ------------------------------------------------------------------ responses


class ErrorBody(BaseModel):
    code: str
    message: str
    login_url: str | None = Field(
        None,
        description="login_required: where to log in (the host app's login page, when its "
        "guard names one)",
    )


class Error(BaseModel):
    """Every error: ``{"error": {"code", "message"}}``."""

    error: ErrorBody


class OperationUrls(BaseModel):
    progress: str
    stream: str
    cancel: str
    pause: str
    resume: str


class UpdateResult(BaseModel):
    status: Literal["updated", "current"]
    old: str | None = None
    new: str | None = None


class ChildOutcome(BaseModel):
    """A child of a group as the group lists it."""

    id: str = Field(json_schema_extra={"format": "uuid"})
    kind: Kind
    model: str
    host: str = Field(description="the Ollama host's configured name")
    status: Status
    percent: Annotated[int, Field(ge=0, le=100)]
    message: str | None
    error: str | None


class LogLine(BaseModel):
    """One line of an operation's log; also the data of a ``log`` event."""

    operation_id: str
    seq: int
    time: str | None = None
    text: str


class OperationState(BaseModel):
    """An operation as it is now; also the data of ``progress`` and ``done`` events."""

    id: str = Field(json_schema_extra={"format": "uuid"})
    kind: Kind
    model: str
    host: str = Field(description="the Ollama host's configured name")
    host_url: str = Field(description="the Ollama host's URL (empty for a group)")
    status: Status
    active: bool
    phase: Phase | None
    percent: Annotated[float, Field(ge=0, le=100)]
    completed_bytes: int | None
    total_bytes: int | None
    speed: float | None
    eta_seconds: float | None
    message: str | None
    error: str | None
    cancel_requested: bool
    paused_by: Hold | None = Field(
        description="paused: who paused it (user, or window: its host's download window); "
        "running: a user's pause is under way"
    )
    attempts: int
    seq: int
    result: UpdateResult | None = Field(
        description="an update's outcome: updated (old and new digest) or current"
    )
    log_count: Annotated[int, Field(ge=0)] | None = Field(
        description="how many log lines it keeps (at most OLLAMA_DECK_LOG_LINES, the newest)"
    )
    children: list[ChildOutcome] | None = Field(
        None,
        description="a group's operations (one per host and model) with their outcomes; "
        "null for any other kind. A group's host is its hosts' names, comma-separated",
    )
    created_at: str | None
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    not_before: str | None = Field(description="the earliest start its request asked for")
    starts_at: str | None = Field(
        description="scheduled: when it starts; paused by the window: when it resumes"
    )
    paused_at: str | None = Field(description="paused: since when")


class Operation(OperationState):
    """An operation with the URLs to poll, stream and cancel it."""

    urls: OperationUrls
    created: bool | None = Field(None, description="false when an active one was joined")
    log: list[LogLine] | None = Field(None, description="its last log lines (GET only)")


class InstalledModel(BaseModel):
    name: str
    size: int | None = None
    capabilities: list[str] | None = Field(
        None,
        description="what Ollama says the model can do (completion, embedding, vision, "
        "...); absent where Ollama does not list it",
    )
    operation: Operation | None = Field(None, description="its active pull, if any")


class Models(BaseModel):
    models: list[InstalledModel]
    count: int
    total_size: int
    pulls: list[Operation]
    stale: bool
    error: str | None = None
    cached_at: str | None = None
    host: str = Field(description="the Ollama host's configured name")
    host_url: str


class ModelDetails(BaseModel):
    name: str
    family: str | None = None
    parameter_size: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    capabilities: list[str] = []
    license: str = ""
    vram: dict[str, Any]
    fits: bool | None = None


class Estimate(BaseModel):
    model: str
    warn: bool
    known: bool | None = None
    size_bytes: int | None = None
    fits: bool | None = None
    reason: str | None = None


class CatalogTag(BaseModel):
    name: str
    model: str
    installed: bool


class CatalogFamily(BaseModel):
    name: str
    category: str
    tags: list[CatalogTag]


class Catalog(BaseModel):
    families: list[CatalogFamily]
    categories: list[str]
    gpu: dict[str, Any] = {}


class OllamaStatus(BaseModel):
    """What /api/status answers: one host's reachability, version and loaded models."""

    host: str = Field(description="the Ollama host's configured name")
    host_url: str = Field(description="the Ollama host's URL")
    reachable: bool
    version: str | None = None
    running: list[Any] = []
    error: str | None = None
    stale: bool = False
    cached_at: str | None = None
    hosts: list[str] = Field(description="every configured host name, the default first")
    gpu: dict[str, Any]
    watchers: int = Field(description="open SSE streams in the process that answered")
    reconciler: dict[str, Any] | None = Field(
        None,
        description="the reconciler of the process that answered: every (seconds), "
        "checked_at, applied_at (UNIX seconds) and the group it last queued; null when "
        "OLLAMA_DECK_RECONCILE_SECONDS is not set",
    )
    pid: int
    bus: dict[str, Any]


class HostInfo(BaseModel):
    name: str = Field(description="the host's configured name (what ``host`` means elsewhere)")
    url: str = Field(description="the host's URL (what ``host_url`` means elsewhere)")
    reachable: bool
    version: str | None = None
    models: int
    disk_used: int
    stale: bool = False
    running: list[Any] = []
    error: str | None = None


class Hosts(BaseModel):
    hosts: list[HostInfo]


class ActiveModel(BaseModel):
    model: str | None


class Session(BaseModel):
    token_required: bool
    token: str | None = Field(
        None,
        description="the name of the token this request came with (OLLAMA_DECK_TOKEN "
        "is 'default'); null without one",
    )
    role: Role = Field(
        Role.WRITE,
        description="what this request may do: read (GET, the streams, /metrics) or write "
        "(everything); write where the deck asks for no token",
    )


class ActivityEntry(BaseModel):
    """One state-changing request."""

    id: int
    at: str
    action: Action
    target: str | None = Field(description="the model (or models) it was about")
    host: str | None = Field(description="the Ollama host's name, when it named or used one")
    operation_id: str | None
    method: str
    path: str
    status: int = Field(description="the HTTP status it was answered with")
    ok: bool = Field(description="status below 400")
    error: str | None = Field(description="the error's code, when it was refused or failed")
    actor: str = Field(description="who: the host app's user, else the token's name, else local")
    token: str | None = Field(description="the token's name, when one was used")
    address: str | None = Field(description="the client's address")


class ActivityPage(BaseModel):
    entries: list[ActivityEntry]
    next: int | None = Field(description="pass as ?before= for the next (older) page; null: none")


class Delivery(BaseModel):
    """One webhook delivery: an event of an operation for one receiver."""

    id: str = Field(description="the delivery id (X-Ollama-Deck-Delivery), the same on retries")
    event: WebhookEvent
    operation_id: str
    target: str = Field(description="the receiver: scheme, host and port (the rest is hidden)")
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    created_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None = Field(description="when it is tried next (pending only)")
    finished_at: str | None = Field(description="when it was delivered or given up")


class Deliveries(BaseModel):
    deliveries: list[Delivery]
    receivers: int = Field(description="how many URLs OLLAMA_DECK_WEBHOOK_URLS lists")


class Deleted(BaseModel):
    deleted: str


class ForgottenOperations(BaseModel):
    deleted: list[str] = Field(description="the ids of the operations forgotten")


class Unloaded(BaseModel):
    unloaded: str


class UpdateAccepted(BaseModel):
    ids: list[str]
    operations: list[Operation]


class Operations(BaseModel):
    operations: list[Operation]
    next: str | None = Field(
        default=None,
        description="a full page: ?before= this for the next (older) one; null at the end",
    )


class HostPlan(BaseModel):
    """What applying a desired set would do on one host."""

    host: str = Field(description="the host's configured name")
    prune: bool
    missing: list[str] = Field(description="declared, not installed: to pull")
    delete: list[str] = Field(description="installed, not declared, and prune: to delete")
    in_place: list[str] = Field(description="declared and installed")
    in_progress: list[str] = Field(
        description="declared, not installed yet, and an operation is fetching it: joined"
    )
    undeclared: list[str] = Field(description="installed, not declared, kept (no prune)")
    busy: list[str] = Field(
        description="installed, not declared, but an operation is using it: never deleted"
    )
    error: str | None = Field(None, description="why the host could not be planned")


class Plan(BaseModel):
    """What applying a desired set would do, host by host."""

    hosts: list[HostPlan]
    changes: int = Field(description="models to pull and to delete")
    pending: int = Field(description="changes, and models an operation is fetching already")
    errors: int = Field(description="hosts that could not be planned (Ollama did not answer)")


class SkippedChild(BaseModel):
    host: str
    model: str
    reason: str


class Applied(BaseModel):
    """An applied plan: the plan, and the group doing it (null when nothing was to do)."""

    plan: Plan
    group: Operation | None
    skipped: list[SkippedChild] = Field(
        default_factory=list,
        description="changes left out because another operation of that model had started",
    )


class StoredDesiredModels(BaseModel):
    set: DesiredModels | None = Field(description="the stored set (null: none is stored)")
    updated_at: str | None


class Health(BaseModel):
    """Each part has ``ok``; ``dialect``, ``error``, ``version`` and ``url`` only for a
    request that may use the API (the token, a session, or a deck without a token)."""

    ok: bool
    database: dict[str, Any]
    ollama: dict[str, Any]


class Document(BaseModel):
    """This OpenAPI document."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ Server-Sent Events


class ChatToken(BaseModel):
    content: str


class ChatDone(BaseModel):
    model: str
    done_reason: str | None = None
    prompt_tokens: int | None = None
    tokens: int
    tokens_per_second: float | None = None
    total_seconds: float
    load_seconds: float


class ChatError(BaseModel):
    """The one shape of every ``error`` event of the chat stream."""

    code: str
    message: str


# Event name -> the model of its ``data:`` line.
OPERATION_EVENTS: dict[str, type[BaseModel]] = {
    "progress": OperationState,
    "log": LogLine,
    "done": OperationState,
}
CHAT_EVENTS: dict[str, type[BaseModel]] = {"token": ChatToken, "done": ChatDone, "error": ChatError}
