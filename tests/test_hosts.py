"""Several Ollama hosts: named in configuration, chosen per request, never by URL."""

from __future__ import annotations

import pytest

from ollama_deck.config import ollama_hosts
from ollama_deck.config import parse_ollama_hosts
from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .helpers import wait_until


@pytest.fixture
def second_ollama():
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture
def two_hosts(make_app, fake_ollama, second_ollama):
    fake_ollama.add_model("llama3.2:1b")
    second_ollama.add_model("qwen2.5:0.5b")
    app = make_app(
        OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url, "gpu2": second_ollama.url},
        OLLAMA_DECK_MAX_CONCURRENT_PULLS=1,
    )
    return app.test_client()


def test_hosts_are_listed_with_what_they_hold(two_hosts, second_ollama):
    hosts = two_hosts.get("/api/hosts").json["hosts"]
    assert [(h["name"], h["reachable"], h["models"]) for h in hosts] == [
        ("gpu1", True, 1),
        ("gpu2", True, 1),
    ]
    assert all(h["disk_used"] > 0 and h["version"] for h in hosts)
    second_ollama.stop()
    gpu2 = two_hosts.get("/api/hosts").json["hosts"][1]
    assert gpu2["reachable"] is False and gpu2["stale"] is True
    assert gpu2["models"] == 1  # the cached list


def test_a_pull_goes_to_the_host_it_names(two_hosts, fake_ollama, second_ollama):
    second_ollama.allow_pull("phi3:mini", PullScript(layers=[20_000, 100], step=2_000))
    op = two_hosts.post("/api/models/pull", json={"model": "phi3:mini", "host": "gpu2"}).json
    assert (op["host"], op["host_url"]) == ("gpu2", second_ollama.url)
    wait_until(lambda: two_hosts.get(op["urls"]["progress"]).json["status"] == "succeeded")
    assert fake_ollama.pull_count("phi3:mini") == 0
    on_gpu2 = [m["name"] for m in two_hosts.get("/api/models?host=gpu2").json["models"]]
    on_gpu1 = [m["name"] for m in two_hosts.get("/api/models").json["models"]]
    assert "phi3:mini" in on_gpu2 and "phi3:mini" not in on_gpu1
    assert two_hosts.delete("/api/models/phi3:mini?host=gpu2").status_code == 200
    assert two_hosts.delete("/api/models/phi3:mini?host=gpu1").status_code == 404


def test_the_limit_is_per_host(two_hosts, fake_ollama, second_ollama):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", PullScript(layers=[100_000], step=10_000, hold_after=2))
    ids = [
        two_hosts.post("/api/models/pull", json={"model": "m:1", "host": h}).json["id"]
        for h in ("gpu1", "gpu2")
    ]
    # Same model on two hosts: two operations, and with a limit of 1 each runs at once.
    assert ids[0] != ids[1]
    wait_until(lambda: fake_ollama.active_pulls == 1 and second_ollama.active_pulls == 1)
    for fake in (fake_ollama, second_ollama):
        fake.release("m:1")
    wait_until(
        lambda: all(two_hosts.get(f"/progress/{i}").json["status"] == "succeeded" for i in ids)
    )


@pytest.mark.parametrize(
    ("request_args", "method"),
    [
        ({"json": {"model": "m:1", "host": "gpu9"}}, "post"),
        ({"json": {"model": "m:1", "host": "http://127.0.0.1:9"}}, "post"),
        ({"json": {"model": "m:1", "host": ["gpu1"]}}, "post"),
    ],
)
def test_a_request_names_a_configured_host_or_is_refused(two_hosts, request_args, method):
    response = getattr(two_hosts, method)("/api/models/pull", **request_args)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "unknown_host"
    assert two_hosts.get("/progress").json["operations"] == []


def test_unknown_host_in_a_query_is_refused(two_hosts):
    for path in ("/api/models?host=nope", "/api/status?host=nope", "/api/models/x:1?host=nope"):
        response = two_hosts.get(path)
        assert response.status_code == 400, path
        assert "gpu1, gpu2" in response.json["error"]["message"]


def test_hosts_configuration():
    assert parse_ollama_hosts("a=:1, b=box") == {
        "a": "http://127.0.0.1:1",
        "b": "http://box:11434",
    }
    assert ollama_hosts({"OLLAMA_DECK_OLLAMA_HOST": "http://x:1"}) == {"default": "http://x:1"}
    for bad in ("nameless", "a=:1 a=:2", "Bad Name=:1", "a=ftp://x"):
        with pytest.raises(ValueError):
            parse_ollama_hosts(bad)
