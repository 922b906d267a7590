"""The fake Ollama speaks Ollama's wire format, so what passes against it means something."""

from __future__ import annotations

import json

import pytest
import requests

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript
from ollama_deck.testing import UNKNOWN_MANIFEST


def pull_lines(fake: FakeOllama, name: str) -> list[dict]:
    with requests.post(f"{fake.url}/api/pull", json={"model": name}, stream=True, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/x-ndjson"
        return [json.loads(line) for line in r.iter_lines() if line]


def test_liveness_version_and_unknown_paths(fake_ollama):
    assert requests.get(fake_ollama.url, timeout=5).text == "Ollama is running"
    assert requests.get(f"{fake_ollama.url}/api/version", timeout=5).json()["version"]
    missing = requests.get(f"{fake_ollama.url}/api/nope", timeout=5)
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    assert requests.get(f"{fake_ollama.url}/api/pull", timeout=5).status_code == 405


def test_a_pull_runs_layer_by_layer_and_the_model_appears_in_tags(fake_ollama):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[300, 50], step=100), family="llama")
    lines = pull_lines(fake_ollama, "llama3.2:1b")
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    first = [line for line in lines if line.get("total") == 300]
    assert [line["completed"] for line in first] == [100, 200, 300]
    assert first[0]["status"] == f"pulling {first[0]['digest'][7:19]}"
    tags = requests.get(f"{fake_ollama.url}/api/tags", timeout=5).json()["models"]
    assert [(m["name"], m["model"], m["size"]) for m in tags] == [
        ("llama3.2:1b", "llama3.2:1b", 350)
    ]
    assert len(tags[0]["digest"]) == 64


def test_tags_and_show_list_what_each_model_can_do(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.add_model("nomic-embed-text", capabilities=["embedding"])
    tags = requests.get(f"{fake_ollama.url}/api/tags", timeout=5).json()["models"]
    assert {m["name"]: m["capabilities"] for m in tags} == {
        "llama3.2:1b": ["completion", "tools"],
        "nomic-embed-text:latest": ["embedding"],
    }
    shown = requests.post(
        f"{fake_ollama.url}/api/show", json={"model": "nomic-embed-text"}, timeout=5
    ).json()
    assert shown["capabilities"] == ["embedding"]
    # The deck passes them on, so the page can pick a model that chats.
    listed = live.get("/api/models").json()["models"]
    assert {m["name"]: m["capabilities"] for m in listed}["nomic-embed-text:latest"] == [
        "embedding"
    ]


def test_unknown_model_fails_after_the_manifest_line(fake_ollama):
    assert pull_lines(fake_ollama, "nope:1b") == [
        {"status": "pulling manifest"},
        {"error": UNKNOWN_MANIFEST},
    ]


def test_a_broken_pull_resumes_from_its_partial_download(fake_ollama):
    fake_ollama.allow_pull("m:1", PullScript(layers=[1_000], step=100, drop_after=4))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        pull_lines(fake_ollama, "m:1")
    fake_ollama.allow_pull("m:1", PullScript(layers=[1_000], step=100))
    progress = [line for line in pull_lines(fake_ollama, "m:1") if "completed" in line]
    assert progress[0]["completed"] == 500
    assert fake_ollama.pull_count("m:1") == 2


def test_show_delete_and_missing_models(fake_ollama):
    fake_ollama.add_model("qwen2.5:0.5b", parameter_size="494M", quantization="Q4_K_M")
    show = requests.post(f"{fake_ollama.url}/api/show", json={"model": "qwen2.5:0.5b"}, timeout=5)
    assert show.json()["details"]["quantization_level"] == "Q4_K_M"
    assert show.json()["model_info"]["general.architecture"]
    gone = requests.post(f"{fake_ollama.url}/api/show", json={"model": "nope"}, timeout=5)
    assert (gone.status_code, gone.json()) == (404, {"error": "model 'nope:latest' not found"})
    deleted = requests.delete(
        f"{fake_ollama.url}/api/delete", json={"model": "qwen2.5:0.5b"}, timeout=5
    )
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert fake_ollama.installed() == []
    again = requests.delete(
        f"{fake_ollama.url}/api/delete", json={"model": "qwen2.5:0.5b"}, timeout=5
    )
    assert again.status_code == 404


def test_generate_loads_and_unloads_and_chat_streams_tokens(fake_ollama):
    fake_ollama.add_model("m:1")
    load = requests.post(
        f"{fake_ollama.url}/api/generate", json={"model": "m:1", "keep_alive": "5m"}, timeout=5
    )
    assert json.loads(load.text.splitlines()[-1])["done_reason"] == "load"
    ps = requests.get(f"{fake_ollama.url}/api/ps", timeout=5).json()["models"]
    assert [m["name"] for m in ps] == ["m:1"] and ps[0]["expires_at"]

    fake_ollama.chat_reply = "one two three"
    chat = requests.post(
        f"{fake_ollama.url}/api/chat",
        json={"model": "m:1", "messages": [{"role": "user", "content": "count"}]},
        timeout=5,
    )
    lines = [json.loads(line) for line in chat.text.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "one two three"
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 3

    requests.post(
        f"{fake_ollama.url}/api/generate", json={"model": "m:1", "keep_alive": 0}, timeout=5
    )
    assert fake_ollama.loaded() == []


def test_stop_refuses_connections_and_start_serves_the_same_port(fake_ollama):
    url = fake_ollama.url
    fake_ollama.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=5)
    fake_ollama.start()
    assert fake_ollama.url == url
    assert requests.get(url, timeout=5).status_code == 200
