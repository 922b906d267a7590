"""Property tests: arbitrary strings and JSON in every name and body field of the API.

Whatever comes in, the answer is a 4xx JSON error (never a 5xx), and nothing stored
changes: no operation, no model pulled, deleted, loaded or chosen, no call to Ollama that
changes anything.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st

from ollama_deck.services.names import InvalidModelName
from ollama_deck.services.names import parse_model_name

JSON_HEADERS = {"Content-Type": "application/json"}
CHANGES_IN_OLLAMA = {("POST", "/api/pull"), ("DELETE", "/api/delete"), ("POST", "/api/generate")}
CHANGES_IN_OLLAMA |= {("POST", "/api/chat")}
pytestmark = pytest.mark.fuzz

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    # One live server serves every example: that is the point (nothing may change).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["model", "name", "prompt", "messages"]
bodies = json_values | st.fixed_dictionaries({}, optional={field: json_values for field in FIELDS})


def segment(text: str) -> str:
    """``text`` as one URL path segment, dots included (clients resolve "." and "..")."""
    return quote(text, safe="").replace(".", "%2E")


def is_model_name(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_model_name(value)
    except InvalidModelName:
        return False
    return True


names = st.text(min_size=1, max_size=120).filter(lambda s: not is_model_name(s))


@pytest.fixture
def deck(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    return live


def snapshot(live, fake) -> tuple:
    return (
        [o["id"] for o in live.get("/progress").json()["operations"]],
        sorted(fake.installed()),
        live.get("/api/active-model").json(),
        sorted(fake.loaded()),
        sum(1 for method, path, _ in fake.requests if (method, path) in CHANGES_IN_OLLAMA),
    )


def assert_refused(response, *statuses: int) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)


@SETTINGS
@given(name=names)
def test_any_bad_name_in_a_url_is_refused(fake_ollama, deck, name):
    before = snapshot(deck, fake_ollama)
    path = "/api/models/" + segment(name)
    assert_refused(deck.get(path), 400, 404)
    assert_refused(deck.delete(path), 400, 404)
    assert_refused(deck.post(path + "/load"), 400, 404)
    assert_refused(deck.post(path + "/unload"), 400, 404)
    assert snapshot(deck, fake_ollama) == before


@SETTINGS
@given(name=names)
def test_any_bad_name_in_a_body_is_refused(fake_ollama, deck, name):
    before = snapshot(deck, fake_ollama)
    assert_refused(deck.post("/api/models/pull", json={"model": name}), 400)
    assert_refused(deck.put("/api/active-model", json={"model": name}), 400)
    assert_refused(deck.post("/api/chat", json={"model": name, "prompt": "hi"}), 400)
    assert snapshot(deck, fake_ollama) == before


def pull_would_start(body: Any) -> bool:
    return isinstance(body, dict) and is_model_name(body.get("model", body.get("name")))


@SETTINGS
@given(body=bodies)
def test_any_other_json_body_is_refused(fake_ollama, deck, body):
    before = snapshot(deck, fake_ollama)
    if not pull_would_start(body):
        assert_refused(deck.post("/api/models/pull", json=body), 400)
    model = body.get("model") if isinstance(body, dict) else None
    if not (isinstance(body, dict) and (model is None and "model" in body or is_model_name(model))):
        assert_refused(deck.put("/api/active-model", json=body), 400)
    if not (isinstance(body, dict) and is_model_name(model)):
        assert_refused(deck.post("/api/chat", json=body), 400)
    assert snapshot(deck, fake_ollama) == before


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_json_body_are_refused(fake_ollama, deck, raw):
    try:
        assume(not pull_would_start(json.loads(raw)))
    except (ValueError, RecursionError):
        pass
    before = snapshot(deck, fake_ollama)
    for method, path in (("post", "/api/models/pull"), ("put", "/api/active-model")):
        response = getattr(deck, method)(path, data=raw, headers=JSON_HEADERS)
        if response.status_code == 200:  # a body that chose no model: {"model": null}
            assert path == "/api/active-model" and response.json() == {"model": None}
            continue
        assert_refused(response, 400)
    assert snapshot(deck, fake_ollama) == before


@SETTINGS
@given(
    op_id=st.text(min_size=1, max_size=60),
    value=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
def test_any_operation_id_and_query_value(fake_ollama, deck, op_id, value):
    before = snapshot(deck, fake_ollama)
    path = "/progress/" + segment(op_id)
    assert_refused(deck.get(path), 400, 404)
    assert_refused(deck.delete(path), 404, 405)
    assert_refused(deck.post(path + "/cancel"), 404)
    for query in (f"/progress?limit={quote(value)}", f"/progress?status={quote(value)}"):
        response = deck.get(query)
        if response.status_code != 200:
            assert_refused(response, 400)
    stream = deck.get("/progress/stream", headers={"Last-Event-ID": value.strip()}, stream=True)
    if stream.status_code != 200:
        assert_refused(stream, 400)
    stream.close()
    assert snapshot(deck, fake_ollama) == before
