"""The OpenAPI document stays true: schemathesis fuzzes the live service (with the fake
Ollama) from it, and every answer must be documented, match its schema and never be a 5xx
the document does not promise (Ollama's own 502/503/504)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


EXAMPLES = 30  # per operation and mode: ~1,000 requests in all


@pytest.mark.fuzz
def test_every_answer_matches_the_document(fake_ollama, make_app, serve):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("llama3.2:1b")
    live = serve(make_app())
    schema = schemathesis.openapi.from_url(live.url + "/api/openapi.json")
    # The stream of every operation never ends by design: it is checked apart below.
    schema = schema.exclude(path="/progress/stream")
    calls = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case) -> None:
                response = case.call(timeout=15)
                excluded = []
                if both_scopes(case, response):
                    # ?host= and ?hosts= together: a rule across two query parameters,
                    # which OpenAPI has no way to say (bodies say it, with "not").
                    excluded = [positive_data_acceptance]
                if beyond_the_pattern(case, response):
                    # A not_before of the documented form, but no day of the calendar
                    # (30 February) or more than a year ahead: what a pattern cannot say.
                    excluded = [positive_data_acceptance]
                case.validate_response(response, excluded_checks=excluded)
                calls.append((case.operation.label, response.status_code))

            try:
                check()
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE
    assert len({label for label, _ in calls}) == len(list(schema.get_all_operations()))
    assert all(status < 500 or status in (502, 503, 504) for _, status in calls)


def beyond_the_pattern(case, response) -> bool:
    import re

    from ollama_deck.schemas import NOT_BEFORE_PATTERN

    body = case.body if isinstance(case.body, dict) else {}
    value = body.get("not_before")
    refused = response.status_code == 400 and "invalid_not_before" in response.text
    return refused and isinstance(value, str) and re.search(NOT_BEFORE_PATTERN, value) is not None


def both_scopes(case, response) -> bool:
    query = case.query or {}
    refused = response.status_code == 400 and "duplicate_field" in response.text
    return refused and "host" in query and "hosts" in query


def test_document_is_served_and_lists_every_route(live):
    response = live.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    app = live.server.app
    routed = set()
    for rule in app.url_map.iter_rules():
        api = rule.endpoint.startswith(("ollama_deck_api.", "ollama_deck_progress."))
        if not (api or rule.endpoint in ("ollama_deck.healthz", "ollama_deck.metrics")):
            continue
        if rule.endpoint.endswith(".unknown"):
            continue
        path = rule.rule.replace("<path:name>", "{name}").replace("<op_id>", "{op_id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed.add((method, path))
    assert routed == documented


def test_stream_of_everything_is_as_documented(live):
    stream = live.get("/progress/stream", stream=True)
    assert stream.status_code == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    stream.close()
    bad = live.get("/progress/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"]


def test_the_document_says_which_registries_and_hosts_this_deck_takes(make_app, fake_ollama):
    import re

    client = make_app(
        OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url, "gpu2": fake_ollama.url + "/"},
        OLLAMA_DECK_ALLOWED_REGISTRIES="registry.example:5000",
    ).test_client()
    document = client.get("/api/openapi.json").json
    model = document["components"]["schemas"]["PullRequest"]["properties"]["model"]["pattern"]
    for name, ok in [
        ("llama3.2:1b", True),
        ("hf.co/user/repo:Q4_K_M", True),
        ("registry.example:5000/team/m:1", True),
        ("evil.example:8080/x/y", False),
        ("127.0.0.1:6379/x/y", False),
    ]:
        assert bool(re.search(model, name)) is ok, name
    delete = document["paths"]["/api/models/{name}"]["delete"]["parameters"]
    hosts = next(p for p in delete if p["name"] == "hosts")["schema"]["pattern"]
    assert [bool(re.search(hosts, v)) for v in ("*", "gpu2,gpu1", "gpu3")] == [True, True, False]
    assert document["components"]["schemas"]["PullRequest"]["not"] == {
        "required": ["host", "hosts"]
    }


def test_answers_around_an_active_pull_match_the_document(fake_ollama, live):
    """The gaps of the last review, checked against the served document (not the models it
    is made from): an active pull in /api/models with its urls, both answers of a cancel
    and its 409, and the schema of every event of an operation's stream."""
    from ollama_deck import schemas
    from ollama_deck.testing import PullScript

    from .helpers import wait_until

    fake_ollama.add_model("a:1")  # installed and pulled again: a model entry with a pull
    fake_ollama.allow_pull("a:1", PullScript(layers=[400_000], step=10_000, hold_after=2))
    raw = live.get("/api/openapi.json").json()
    document = schemathesis.openapi.from_dict(raw)

    def conforms(path: str, method: str, response) -> None:
        declared = raw["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in declared, f"{method} {path}: undeclared status"
        document[path][method].validate_response(response)  # raises what does not fit

    pulled = live.post("/api/models/pull", json={"model": "a:1"})
    conforms("/api/models/pull", "POST", pulled)
    op = pulled.json()
    wait_until(lambda: live.get(f"/progress/{op['id']}").json()["percent"] > 0)
    listing = live.get("/api/models")
    conforms("/api/models", "GET", listing)  # Operation.urls is required there
    (model,) = listing.json()["models"]
    assert model["operation"]["urls"] == op["urls"]
    assert [p["urls"] for p in listing.json()["pulls"]] == [op["urls"]]

    cancelled = live.post(op["urls"]["cancel"])
    assert cancelled.status_code in (200, 202)
    conforms("/progress/{op_id}/cancel", "POST", cancelled)
    wait_until(lambda: live.get(op["urls"]["progress"]).json()["active"] is False)
    again = live.post(op["urls"]["cancel"])
    assert again.status_code == 409
    conforms("/progress/{op_id}/cancel", "POST", again)  # a 409 the document declares

    paths = raw["paths"]
    for path in ("/progress/stream", "/progress/{op_id}/stream"):
        content = paths[path]["get"]["responses"]["200"]["content"]["text/event-stream"]
        declared = content["x-events"]
        assert declared == {
            name: {"$ref": f"#/components/schemas/{model.__name__}"}
            for name, model in schemas.OPERATION_EVENTS.items()
        }, path
        assert all(ref["$ref"].rsplit("/", 1)[1] in raw["components"]["schemas"]
                   for ref in declared.values())  # fmt: skip
    body = live.get(op["urls"]["stream"] + "?last_event_id=0", timeout=15).content
    events = [
        (fields["event"], json.loads(fields["data"]))
        for block in body.decode().split("\n\n")
        if "event"
        in (fields := dict(line.split(": ", 1) for line in block.splitlines() if ": " in line))
    ]
    assert {"log", "done"} <= {name for name, _ in events}
    for name, data in events:
        schemas.OPERATION_EVENTS[name].model_validate(data)
    fake_ollama.release("a:1")
