"""The Python client (ollama_deck.client) on canned answers: every error path, where its
settings come from, and the SSE reading and reconnecting of ``watch``. The live tests
against a real deck are in test_client_live.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
import responses

from ollama_deck import client as client_module
from ollama_deck.client import DeckAPIError
from ollama_deck.client import DeckClient
from ollama_deck.client import DeckUnreachable
from ollama_deck.client import parse_sse

URL = "http://deck.test:8000"
OP_ID = "3f1c2d7e-0000-4000-8000-000000000001"


def operation(status: str = "running", seq: int = 5, **fields) -> dict:
    """An operation as the deck answers it."""
    state = {
        "id": OP_ID,
        "kind": "pull",
        "model": "llama3.2:1b",
        "host": "default",
        "host_url": "http://127.0.0.1:11434",
        "status": status,
        "active": status in ("queued", "running"),
        "phase": "downloading" if status == "running" else None,
        "percent": 40.0,
        "completed_bytes": 400,
        "total_bytes": 1000,
        "speed": 100.0,
        "eta_seconds": 6.0,
        "message": None,
        "error": None,
        "cancel_requested": False,
        "attempts": 1,
        "seq": seq,
        "result": None,
        "log_count": 2,
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": None,
        "started_at": None,
        "finished_at": None,
        "paused_by": None,
        "not_before": None,
        "starts_at": None,
        "paused_at": None,
    }
    state.update(fields)
    return state


def with_urls(state: dict) -> dict:
    base = f"/progress/{state['id']}"
    return {
        **state,
        "urls": {
            "progress": base,
            "stream": base + "/stream",
            "cancel": base,
            "pause": base + "/pause",
            "resume": base + "/resume",
        },
    }


# responses streams a body that its request asked to stream (watch does).
SSE = {"content_type": "text/event-stream"}


def frame(seq: int, kind: str, data: dict) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.delenv("OLLAMA_DECK_URL", raising=False)
    monkeypatch.delenv("OLLAMA_DECK_TOKEN", raising=False)
    # Reconnections back off from 0.2 s; canned answers need no pause between attempts.
    monkeypatch.setattr(client_module, "FIRST_RETRY_SECONDS", 0.01)


# ---------------------------------------------------------------------- settings


def test_url_and_token_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OLLAMA_DECK_URL", "http://box:9000/models/")
    monkeypatch.setenv("OLLAMA_DECK_TOKEN", "s3cret")
    client = DeckClient()
    assert client.url == "http://box:9000/models"
    assert client.token == "s3cret"
    assert DeckClient().token == "s3cret"
    assert DeckClient("http://other:1", token="given").token == "given"


def test_defaults_without_environment():
    client = DeckClient()
    assert client.url == "http://127.0.0.1:8000"
    assert client.token is None
    assert DeckClient("gpu-box:8000").url == "http://gpu-box:8000"


@responses.activate
def test_requests_go_under_the_prefix_with_the_bearer_token():
    responses.post(f"{URL}/models/api/models/pull", json=with_urls(operation()), status=202)
    op = DeckClient(f"{URL}/models", token="s3cret").pull("llama3.2:1b", host="gpu2")
    assert op.id == OP_ID and op.percent == 40.0
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == "Bearer s3cret"
    assert json.loads(sent.body) == {"model": "llama3.2:1b", "host": "gpu2"}


@responses.activate
def test_pull_of_several_answers_one_operation_each():
    responses.post(f"{URL}/api/models/pull", json=with_urls(operation()), status=202)
    ops = DeckClient(URL).pull(["a:1", "b:1"])
    assert [json.loads(c.request.body)["model"] for c in responses.calls] == ["a:1", "b:1"]
    assert len(ops) == 2


@responses.activate
def test_a_bad_name_is_refused_before_anything_is_asked():
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).pull(["good:1", "bad name"])
    assert caught.value.code == "invalid_model_name"
    assert "bad name" in caught.value.message
    assert caught.value.status is None
    assert len(responses.calls) == 0  # not even the good one started
    with pytest.raises(DeckAPIError) as deleting:
        DeckClient(URL).delete("../etc")
    assert deleting.value.code == "invalid_model_name"
    assert len(responses.calls) == 0


@responses.activate
def test_list_asks_for_the_statuses_and_limit():
    responses.get(f"{URL}/progress", json={"operations": [with_urls(operation())]})
    ops = DeckClient(URL).list(status=["queued", "running"], limit=5)
    assert [op.id for op in ops] == [OP_ID]
    assert responses.calls[0].request.params == {"status": "queued,running", "limit": "5"}


@responses.activate
def test_delete_quotes_the_name_into_the_path():
    responses.delete(f"{URL}/api/models/hf.co/org/m:q4", json={"deleted": "hf.co/org/m:q4"})
    assert DeckClient(URL).delete("hf.co/org/m:q4", host="gpu2") == "hf.co/org/m:q4"
    assert responses.calls[0].request.params == {"host": "gpu2"}


# ---------------------------------------------------------------------- errors


@responses.activate
def test_a_deck_error_carries_code_message_and_status():
    body = {"error": {"code": "queue_full", "message": "100 operations wait already"}}
    responses.post(f"{URL}/api/models/pull", json=body, status=429, headers={"Retry-After": "10"})
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).pull("llama3.2:1b")
    error = caught.value
    assert (error.status, error.code, error.message) == (
        429,
        "queue_full",
        body["error"]["message"],
    )
    assert error.retry_after == 10.0
    assert str(error) == body["error"]["message"]


@responses.activate
def test_a_login_refusal_names_the_login_page():
    body = {"error": {"code": "login_required", "message": "log in first", "login_url": "/login"}}
    responses.get(f"{URL}/progress", json=body, status=401)
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).list()
    assert caught.value.code == "login_required"
    assert caught.value.message == "log in first (log in at /login)"


@responses.activate
def test_a_404_that_is_not_the_decks_says_the_url_may_be_wrong():
    responses.get(f"{URL}/api/models", body="<h1>Not Found</h1>", status=404)
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).models()
    assert caught.value.code == "http_404" and caught.value.status == 404
    assert "is http://deck.test:8000 the deck's URL" in caught.value.message


@responses.activate
def test_an_html_page_is_not_a_deck():
    responses.get(f"{URL}/api/hosts", body="<html>a login page</html>", content_type="text/html")
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).hosts()
    assert caught.value.code == "not_a_deck"
    assert "text/html" in caught.value.message


@responses.activate
def test_an_answer_of_another_shape_is_a_bad_response():
    responses.get(f"{URL}/progress/{OP_ID}", json={"id": OP_ID, "status": "levitating"})
    with pytest.raises(DeckAPIError) as caught:
        DeckClient(URL).get(OP_ID)
    assert caught.value.code == "bad_response"
    assert "another version" in caught.value.message


@responses.activate
def test_a_connection_error_is_unreachable():
    refused = requests.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    responses.get(f"{URL}/api/hosts", body=refused)
    with pytest.raises(DeckUnreachable) as caught:
        DeckClient(URL).hosts()
    assert caught.value.code == "unreachable" and caught.value.status is None
    assert caught.value.message == (
        f"cannot reach the deck at {URL}: connection refused (is the deck running? "
        "ollama-deck serve)"
    )


def test_a_closed_port_is_unreachable(unused_port):
    with pytest.raises(DeckUnreachable) as caught:
        DeckClient(f"http://127.0.0.1:{unused_port}").hosts()
    assert "connection refused" in caught.value.message


@pytest.fixture
def unused_port() -> int:
    from .helpers import free_port

    return free_port()


# ---------------------------------------------------------------------- SSE


def test_parse_sse_reads_the_spec_not_just_our_server():
    stream = [
        b"\xef\xbb\xbfretry: 1500\r\n\r",  # a BOM, CRLF, and a CRLF split between chunks
        b'\n: a comment\n\nid: 7\nevent: progress\ndata: {"a":\n',
        b"data: 1}\n\nid: 8\r",
        b"\ndata: plain\n\nid: x\nevent: log\ndata: no id\n\n",
    ]
    assert list(parse_sse(stream)) == [
        (1500, "retry", ""),
        (7, "progress", '{"a":\n1}'),
        (8, "message", "plain"),
        (None, "log", "no id"),
    ]


@responses.activate
def test_watch_reconnects_with_the_last_event_id_and_yields_each_event_once():
    stream = f"{URL}/progress/{OP_ID}/stream"
    first = (
        "retry: 3000\n\n"
        + frame(5, "progress", operation(seq=5))
        + frame(6, "log", {"operation_id": OP_ID, "seq": 6, "text": "pulling"})
    )
    # The deck went away after event 6; on reconnection it sends 6 again (as a replay
    # racing a publish could), then the rest.
    second = (
        frame(6, "log", {"operation_id": OP_ID, "seq": 6, "text": "pulling"})
        + frame(7, "progress", operation(seq=7, percent=90.0))
        + frame(9, "done", operation("succeeded", seq=9, percent=100.0))
    )

    responses.get(stream, body=first, **SSE)
    responses.get(stream, body=second, **SSE)
    retries: list[DeckAPIError] = []
    events = list(DeckClient(URL).watch(OP_ID, on_retry=retries.append))
    assert [(e.id, e.kind) for e in events] == [
        (5, "progress"),
        (6, "log"),
        (7, "progress"),
        (9, "done"),
    ]
    assert events[-1].final and events[-1].data.status == "succeeded"
    assert "Last-Event-ID" not in responses.calls[0].request.headers
    assert responses.calls[1].request.headers["Last-Event-ID"] == "6"
    assert retries == []  # an ended stream is reconnected at once, silently


@responses.activate
def test_watch_retries_a_deck_that_is_down_then_goes_on():
    stream = f"{URL}/progress/{OP_ID}/stream"

    responses.get(stream, body=frame(5, "progress", operation(seq=5)), **SSE)
    responses.get(stream, body=requests.ConnectionError(ConnectionRefusedError(111, "refused")))
    body = {"error": {"code": "database_unavailable", "message": "the database is locked"}}
    responses.get(stream, json=body, status=503)
    responses.get(stream, body=frame(8, "done", operation("failed", seq=8, error="boom")), **SSE)
    retries: list[DeckAPIError] = []
    events = list(DeckClient(URL).watch(OP_ID, on_retry=retries.append))
    assert [e.id for e in events] == [5, 8]
    assert [r.code for r in retries] == ["unreachable", "database_unavailable"]
    assert [c.request.headers.get("Last-Event-ID") for c in responses.calls] == [
        None,
        "5",
        "5",
        "5",
    ]


@responses.activate
def test_watch_gives_up_on_a_refusal_at_once():
    stream = f"{URL}/progress/{OP_ID}/stream"
    body = {"error": {"code": "unauthorized", "message": "this service needs a token"}}
    responses.get(stream, json=body, status=401)
    with pytest.raises(DeckAPIError) as caught:
        list(DeckClient(URL).watch(OP_ID))
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert len(responses.calls) == 1


@responses.activate
def test_watch_gives_up_after_its_patience():
    stream = f"{URL}/progress/{OP_ID}/stream"
    responses.get(stream, body=requests.ConnectionError(ConnectionRefusedError(111, "refused")))
    with pytest.raises(DeckUnreachable) as caught:
        list(DeckClient(URL).watch(OP_ID, patience=0.1))
    assert "connection refused" in caught.value.message
    assert len(responses.calls) >= 2  # it did try again


@responses.activate
def test_wait_returns_the_final_state():
    stream = f"{URL}/progress/{OP_ID}/stream"
    responses.get(
        stream,
        body=frame(5, "progress", operation(seq=5)) + frame(6, "done", operation("cancelled")),
        **SSE,
    )
    assert DeckClient(URL).wait(OP_ID).status == "cancelled"


def test_importing_the_client_loads_neither_flask_nor_the_database_layer():
    code = (
        "import sys; import ollama_deck.client, ollama_deck.terminal.commands; "
        "print(sorted(m for m in ('flask', 'werkzeug', 'sqlalchemy', 'flask_sqlalchemy') "
        "if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "[]"
