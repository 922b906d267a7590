"""One contract: the bodies the views take are the ones the generated document declares,
``host`` means the configured name everywhere, and the chat stream has one error shape."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ollama_deck.errors import OllamaUnavailable
from ollama_deck.schemas import ChatError
from ollama_deck.schemas import ModelName
from ollama_deck.services.chat import open_chat
from ollama_deck.services.names import name_pattern
from ollama_deck.testing import PullScript

from .helpers import wait_until

LAYERS = [400_000, 1_429]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/models/pull", {"model": "b:1", "surprise": True}),
        ("put", "/api/active-model", {"model": "b:1", "surprise": True}),
        ("put", "/api/active-model", {"model": None, "extra": 1}),
        ("post", "/api/chat", {"model": "b:1", "prompt": "hi", "temperature": 2}),
        ("post", "/api/models/update", {"models": ["b:1"], "all": True}),
    ],
)
def test_an_undocumented_key_is_refused(fake_ollama, client, method, path, body):
    fake_ollama.add_model("b:1")
    response = getattr(client, method)(path, json=body)
    assert response.status_code == 400, response.text
    error = response.json["error"]
    assert error["code"] == "unknown_field"
    (key,) = set(body) - {"model", "models", "prompt"}
    assert repr(key) in error["message"]
    assert client.get("/progress").json["operations"] == []
    assert client.get("/api/active-model").json == {"model": None}


def test_name_is_a_declared_alias_of_model(fake_ollama, client):
    fake_ollama.allow_pull("a:1", PullScript(layers=LAYERS, step=100_000))
    response = client.post("/api/models/pull", json={"name": "a:1"})
    assert response.status_code == 202, response.text
    assert response.json["model"] == "a:1"
    both = client.post("/api/models/pull", json={"name": "a:1", "model": "a:1"})
    assert both.status_code == 400
    assert both.json["error"]["code"] == "duplicate_field"
    document = client.get("/api/openapi.json").json
    pull = document["components"]["schemas"]["PullRequest"]
    assert {"model", "name", "host", "hosts", "not_before"} == set(pull["properties"])
    assert pull["additionalProperties"] is False


def test_status_host_is_the_name_and_host_url_the_url(fake_ollama, make_app):
    client = make_app(OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url}).test_client()
    status = client.get("/api/status").json
    assert (status["host"], status["host_url"]) == ("gpu1", fake_ollama.url)
    assert "host_name" not in status
    models = client.get("/api/models").json
    assert (models["host"], models["host_url"]) == ("gpu1", fake_ollama.url)
    fake_ollama.stop()
    down = client.get("/api/status").json
    assert (down["reachable"], down["host"], down["host_url"]) == (False, "gpu1", fake_ollama.url)


def test_active_pulls_in_the_model_list_carry_their_urls(fake_ollama, client):
    fake_ollama.allow_pull("a:1", PullScript(layers=LAYERS, step=10_000, hold_after=1))
    op = client.post("/api/models/pull", json={"model": "a:1"}).json
    wait_until(lambda: client.get(op["urls"]["progress"]).json["status"] == "running")
    (pull,) = client.get("/api/models").json["pulls"]
    assert pull["urls"] == op["urls"]
    fake_ollama.release("a:1")
    wait_until(lambda: client.get(op["urls"]["progress"]).json["active"] is False)


def deck_rules(app) -> set[tuple[str, str]]:
    """(method, path) of every deck view of the url map, as the document spells paths."""
    found = set()
    for rule in app.url_map.iter_rules():
        blueprint, _, name = rule.endpoint.partition(".")
        if not blueprint.startswith("ollama_deck") or name in ("unknown", "static", "index"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


@pytest.mark.parametrize("prefix", ["", "/models"])
def test_the_document_holds_every_route_of_the_url_map(fake_ollama, make_app, prefix):
    from flask import Flask

    from ollama_deck import OllamaDeck

    if prefix:
        app = Flask("host")
        app.config.update(make_app().config)
        OllamaDeck(app, url_prefix=prefix)
    else:
        app = make_app()
    document = app.test_client().get(prefix + "/api/openapi.json").json
    assert document["servers"] == [{"url": prefix or "/"}]
    documented = {
        (method.upper(), prefix + path)
        for path, item in document["paths"].items()
        for method in item
    }
    assert documented == deck_rules(app)
    # Every operation has a summary from its view's docstring, and every $ref resolves.
    assert all(op["summary"] for item in document["paths"].values() for op in item.values())
    schemas = document["components"]["schemas"]
    refs = re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document))
    assert set(refs) <= set(schemas)
    if prefix:
        OllamaDeck.shutdown(app)


def test_document_closes_the_old_gaps(client):
    document = client.get("/api/openapi.json").json
    paths, schemas = document["paths"], document["components"]["schemas"]
    assert "409" in paths["/progress/{op_id}/cancel"]["post"]["responses"]
    stream = paths["/progress/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert set(stream["x-events"]) == {"progress", "log", "done"}
    chat = paths["/api/chat"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    assert chat["x-events"]["error"] == {"$ref": "#/components/schemas/ChatError"}
    assert "urls" in schemas["Operation"]["required"]
    models = schemas["Models"]["properties"]["pulls"]["items"]
    assert models == {"$ref": "#/components/schemas/Operation"}
    # The statuses and kinds are the lifecycle's enums, not strings retyped.
    assert schemas["OperationState"]["properties"]["status"] == {
        "$ref": "#/components/schemas/Status"
    }
    assert schemas["Status"]["enum"] == [
        "queued",
        "scheduled",
        "running",
        "paused",
        "succeeded",
        "failed",
        "cancelled",
        "interrupted",
    ]
    assert set(schemas["HostName"]["enum"]) == {"default"}


def test_the_name_pattern_comes_from_the_name_grammar():
    from pydantic import TypeAdapter

    assert TypeAdapter(ModelName).json_schema()["pattern"] == name_pattern()
    pattern = re.compile(name_pattern())
    for good in ("llama3.2:1b", " qwen2.5:7b ", "ns/m:t", "h.io:5000/ns/m:t"):
        assert pattern.fullmatch(good)
    for bad in ("bad name!", "a/b/c/d", "m:", ":t", "x" * 81):
        assert not pattern.fullmatch(bad)


class StubClient:
    """An Ollama client whose chat yields the given lines, then maybe raises."""

    def __init__(self, lines: list[dict[str, Any]], fail: Exception | None = None) -> None:
        self.lines = lines
        self.fail = fail

    def version(self) -> str:  # the quick check that Ollama answers, before a chat
        return "0.0.0"

    @contextmanager
    def chat(self, model: str, messages: list[dict[str, Any]]) -> Iterator[Iterator[dict]]:
        def lines() -> Iterator[dict[str, Any]]:
            yield from self.lines
            if self.fail is not None:
                raise self.fail

        yield lines()


def error_events(frames: Iterator[bytes]) -> list[dict[str, Any]]:
    found = []
    for frame in frames:
        text = frame.decode()
        if "event: error\n" in text:
            found.append(json.loads(text.split("data: ", 1)[1]))
    return found


@pytest.mark.parametrize(
    ("client", "code"),
    [
        (StubClient([{"error": "out of memory"}]), "ollama_error"),
        (StubClient([], fail=OllamaUnavailable("connection dropped")), "ollama_unavailable"),
        (StubClient([{"message": {"content": "Par"}}]), "incomplete_reply"),
    ],
)
def test_every_chat_error_event_has_code_and_message(client, code):
    (event,) = error_events(open_chat(client, "m:1", [{"role": "user", "content": "hi"}]))
    assert set(event) == {"code", "message"} and event["code"] == code
    ChatError.model_validate(event)


@pytest.mark.parametrize(
    ("url", "code", "text"),
    [
        ("/progress?status=running,nope", "bad_request", "unknown status"),
        ("/progress?limit=1_000", "bad_request", "whole number"),
        ("/progress?limit=1001", "bad_request", "between 1 and 1000"),
        ("/api/catalog?category=games", "bad_request", "unknown category"),
        ("/api/estimate?model=", "model_required", "?model="),
    ],
)
def test_query_parameters_are_read_through_the_same_models(client, url, code, text):
    response = client.get(url)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code
    assert text in response.json["error"]["message"]
    assert client.get("/progress?status=running,queued&limit=5").status_code == 200


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_answers_and_events_match_their_models(fake_ollama, client):
    from ollama_deck import schemas

    fake_ollama.allow_pull("a:1", PullScript(layers=LAYERS, step=100_000))
    op = client.post("/api/models/pull", json={"model": "a:1"}).json
    schemas.Operation.model_validate(op)
    wait_until(lambda: client.get(op["urls"]["progress"]).json["active"] is False)
    schemas.Operation.model_validate(client.get(op["urls"]["progress"]).json)
    schemas.Operations.model_validate(client.get("/progress").json)
    schemas.Models.model_validate(client.get("/api/models").json)
    schemas.OllamaStatus.model_validate(client.get("/api/status").json)
    schemas.Hosts.model_validate(client.get("/api/hosts").json)
    events = sse_events(client.get(op["urls"]["stream"] + "?last_event_id=0").data)
    assert {name for name, _ in events} >= {"log", "done"}
    for name, data in events:
        schemas.OPERATION_EVENTS[name].model_validate(data)
