"""OllamaClient's error paths, with requests mocked by ``responses``."""

from __future__ import annotations

import pytest
import requests
import responses

from ollama_deck.errors import ModelNotFound
from ollama_deck.errors import OllamaError
from ollama_deck.errors import OllamaTimeout
from ollama_deck.errors import OllamaUnavailable
from ollama_deck.services.ollama import OllamaClient

BASE = "http://ollama.test:11434"


@pytest.fixture
def client():
    return OllamaClient(BASE, connect_timeout=1, request_timeout=2, stall_timeout=3)


@responses.activate
def test_tags_and_version(client):
    models = [{"name": "llama3.2:1b", "model": "llama3.2:1b", "size": 1}]
    responses.get(f"{BASE}/api/tags", json={"models": models})
    responses.get(f"{BASE}/api/version", json={"version": "0.5.1"})
    assert client.tags() == models
    assert client.version() == "0.5.1"


@responses.activate
def test_empty_model_list(client):
    responses.get(f"{BASE}/api/tags", json={"models": None})
    assert client.tags() == []


@responses.activate
def test_connection_refused_is_unavailable(client):
    responses.get(f"{BASE}/api/tags", body=requests.ConnectionError("refused"))
    with pytest.raises(OllamaUnavailable) as info:
        client.tags()
    assert info.value.status == 503
    assert BASE in info.value.message


@responses.activate
def test_connect_timeout_is_unavailable(client):
    responses.get(f"{BASE}/api/tags", body=requests.ConnectTimeout("slow"))
    with pytest.raises(OllamaUnavailable, match="did not accept a connection"):
        client.tags()


@responses.activate
def test_read_timeout_is_timed_out(client):
    responses.get(f"{BASE}/api/ps", body=requests.ReadTimeout("slow"))
    with pytest.raises(OllamaTimeout) as info:
        client.ps()
    assert info.value.status == 504
    assert "2 s" in info.value.message


@responses.activate
def test_404_is_model_not_found_with_ollamas_message(client):
    responses.post(f"{BASE}/api/show", status=404, json={"error": "model 'nope:latest' not found"})
    with pytest.raises(ModelNotFound) as info:
        client.show("nope")
    assert info.value.message == "model 'nope:latest' not found"
    assert info.value.status == 404


@responses.activate
def test_delete_sends_the_model_and_maps_404(client):
    responses.delete(
        f"{BASE}/api/delete",
        status=404,
        json={"error": "model 'gone' not found"},
        match=[responses.matchers.json_params_matcher({"model": "gone"})],
    )
    with pytest.raises(ModelNotFound, match="model 'gone' not found"):
        client.delete("gone")


@responses.activate
def test_other_errors_carry_ollamas_text_and_status(client):
    responses.post(f"{BASE}/api/pull", status=500, json={"error": "insecure protocol http"})
    with pytest.raises(OllamaError) as info:
        with client.pull("http://x/y/z") as lines:
            list(lines)
    assert info.value.message == "insecure protocol http"
    assert info.value.ollama_status == 500
    assert info.value.status == 502


@responses.activate
def test_plain_text_error_body(client):
    responses.get(f"{BASE}/api/ps", status=503, body="server busy")
    with pytest.raises(OllamaError, match="server busy"):
        client.ps()


@responses.activate
def test_reply_that_is_not_json(client):
    responses.get(f"{BASE}/api/tags", body="<html>proxy error</html>")
    with pytest.raises(OllamaError, match="not JSON"):
        client.tags()


@responses.activate
def test_pull_streams_parsed_lines(client):
    body = b'{"status":"pulling manifest"}\n\n{"status":"success"}\n'
    responses.post(f"{BASE}/api/pull", body=body, content_type="application/x-ndjson")
    with client.pull("llama3.2") as lines:
        assert list(lines) == [{"status": "pulling manifest"}, {"status": "success"}]


@responses.activate
def test_pull_line_that_is_not_json(client):
    responses.post(f"{BASE}/api/pull", body=b'{"status":"pulling manifest"}\nnot json\n')
    with pytest.raises(OllamaError, match="not JSON"):
        with client.pull("llama3.2") as lines:
            list(lines)


@responses.activate
def test_pull_refused(client):
    responses.post(f"{BASE}/api/pull", body=requests.ConnectionError("refused"))
    with pytest.raises(OllamaUnavailable):
        with client.pull("llama3.2"):
            pass


def test_base_url_trailing_slash_is_dropped():
    assert OllamaClient("http://h:1/").base_url == "http://h:1"


@pytest.mark.parametrize(
    ("call", "method", "path", "limit"),
    [
        (lambda c: c.delete("m:1"), "DELETE", "/api/delete", "1 s"),  # quick
        (lambda c: c.generate("m:1", keep_alive=0, quick=True).__enter__(), "POST",
         "/api/generate", "1 s"),  # an unload: quick
        (lambda c: c.chat("m:1", []).__enter__(), "POST", "/api/chat", "2 s"),  # the request
        (lambda c: c.pull("m:1").__enter__(), "POST", "/api/pull", "3 s"),  # the stall timeout
    ],
    ids=["delete", "unload", "chat", "pull"],
)  # fmt: skip
@responses.activate
def test_each_call_waits_its_own_timeout_and_says_which(call, method, path, limit):
    client = OllamaClient(
        BASE, connect_timeout=1, quick_timeout=1, request_timeout=2, stall_timeout=3
    )
    responses.add(method, BASE + path, body=requests.ReadTimeout("slow"))
    with pytest.raises(OllamaTimeout) as info:
        call(client)
    assert info.value.message.endswith(f"did not answer for {limit}")
    (sent,) = responses.calls
    assert sent.request.req_kwargs["timeout"][1] == float(limit.split()[0])
