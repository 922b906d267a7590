"""Model knowledge over real sockets: details, catalog, active model, load/unload, chat."""

from __future__ import annotations

import json

import pytest

from ollama_deck.testing import PullScript

from .helpers import wait_until

FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) pairs of a finished SSE body."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_details_of_an_installed_model(fake_ollama, live):
    fake_ollama.add_model(
        "llama3.2:3b",
        parameter_size="3.2B",
        quantization="Q4_K_M",
        family="llama",
        context_length=131_072,
        capabilities=["completion", "tools"],
        license="LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nmore terms",
    )
    details = live.get("/api/models/llama3.2:3b").json()
    assert details["name"] == "llama3.2:3b"
    assert (details["family"], details["parameter_size"], details["quantization"]) == (
        "llama",
        "3.2B",
        "Q4_K_M",
    )
    assert details["context_length"] == 131_072
    assert details["capabilities"] == ["completion", "tools"]
    assert details["license_summary"] == "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT"
    assert details["template"] and details["parameters"]
    # A 3.2B Q4_K_M model needs a few GB, and the estimate says what it assumed.
    assert 1.5e9 < details["vram"]["total_bytes"] < 6e9
    assert any("Q4_K_M" in a for a in details["vram"]["assumptions"])
    assert details["fits"] is None  # no GPU known on this machine


def test_details_of_a_missing_model_is_404_and_ollama_down_is_503(fake_ollama, live):
    missing = live.get("/api/models/nope:1b")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert live.get("/api/models/bad%20name").status_code == 400
    fake_ollama.stop()
    down = live.get("/api/models/llama3.2:1b")
    assert down.status_code == 503


def test_catalog_filters_searches_and_marks_installed(fake_ollama, live):
    fake_ollama.add_model("llama3.2:3b")
    everything = live.get("/api/catalog").json()
    assert len(everything["families"]) >= 30
    assert set(everything["categories"]) == {"chat", "code", "vision", "embedding", "reasoning"}

    code = live.get("/api/catalog", params={"category": "code"}).json()["families"]
    assert code and all(f["category"] == "code" for f in code)
    coder = live.get("/api/catalog", params={"q": "qwen2.5-coder"}).json()["families"]
    assert [f["name"] for f in coder] == ["qwen2.5-coder"]

    llama = live.get("/api/catalog", params={"q": "llama3.2"}).json()["families"]
    tags = {t["model"]: t for f in llama for t in f["tags"]}
    assert tags["llama3.2:3b"]["installed"] is True
    assert tags["llama3.2:1b"]["installed"] is False
    assert tags["llama3.2:3b"]["vram"]["total_bytes"] > 0
    assert tags["llama3.2:3b"]["fits"] is None

    bad = live.get("/api/catalog", params={"category": "poetry"})
    assert bad.status_code == 400
    assert "chat" in bad.json()["error"]["message"]


def test_an_installed_models_vram_is_the_same_in_the_catalog_and_its_details(fake_ollama, live):
    # As the demo has it: the catalog alone would guess the KV cache from 3.2B parameters
    # (3.1 GB), where the details read the model's architecture (3.2 GB).
    fake_ollama.add_model("llama3.2:3b", parameter_size="3.2B", quantization="Q4_K_M")
    details = live.get("/api/models/llama3.2:3b").json()["vram"]

    def catalog_tags() -> dict[str, dict]:
        families = live.get("/api/catalog", params={"q": "llama3.2"}).json()["families"]
        family = next(f for f in families if f["name"] == "llama3.2")
        return {tag["model"]: tag for tag in family["tags"]}

    tags = catalog_tags()
    assert tags["llama3.2:3b"]["installed"] is True
    assert tags["llama3.2:3b"]["vram"] == details
    assert details["total_gb"] == 3.2
    assert tags["llama3.2:1b"]["vram"]["total_bytes"] > 0  # not installed: the catalog's
    shows = [r for r in fake_ollama.requests if r[1] == "/api/show"]
    catalog_tags()  # the model did not change: Ollama is not asked again
    assert [r for r in fake_ollama.requests if r[1] == "/api/show"] == shows

    fake_ollama.stop()  # down: the catalog still answers, with the figure it knew
    tags = catalog_tags()
    assert tags["llama3.2:3b"]["installed"] is True
    assert tags["llama3.2:3b"]["vram"] == details


def test_active_model_is_stored_refuses_missing_and_clears_on_delete(fake_ollama, live):
    assert live.get("/api/active-model").json() == {"model": None}
    missing = live.put("/api/active-model", json={"model": "nope:1b"})
    assert missing.status_code == 404
    assert live.put("/api/active-model", json={"model": "bad name"}).status_code == 400
    assert live.put("/api/active-model", json={}).status_code == 400

    fake_ollama.add_model("qwen2.5:0.5b")
    chosen = live.put("/api/active-model", json={"model": "qwen2.5:0.5b"})
    assert chosen.json() == {"model": "qwen2.5:0.5b"}
    assert live.get("/api/active-model").json() == {"model": "qwen2.5:0.5b"}

    assert live.delete("/api/models/qwen2.5:0.5b").status_code == 200
    assert live.get("/api/active-model").json() == {"model": None}


def test_active_model_survives_a_new_app_over_the_same_database(fake_ollama, make_app, serve):
    fake_ollama.add_model("m:1")
    serve(make_app()).put("/api/active-model", json={"model": "m:1"})
    assert serve(make_app()).get("/api/active-model").json() == {"model": "m:1"}


def test_load_of_a_missing_model_pulls_then_loads(fake_ollama, live):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[30_000, 100], step=3_000))
    response = live.post("/api/models/llama3.2:1b/load")
    assert response.status_code == 202
    op = response.json()
    assert op["kind"] == "load"
    final = wait_until(
        lambda: (
            (s := live.get(op["urls"]["progress"], params={"log": 300}).json())["status"] in FINAL
            and s
        )
    )
    assert final["status"] == "succeeded", final
    texts = [line["text"] for line in final["log"]]
    assert any("pulling" in t for t in texts)
    assert any("loading it into memory" in t for t in texts)
    assert any(t.startswith("loaded in ") for t in texts)
    assert fake_ollama.pull_count("llama3.2:1b") == 1
    running = live.get("/api/status").json()["running"]
    assert [m["name"] for m in running] == ["llama3.2:1b"]
    assert running[0]["size_vram"] > 0 and running[0]["expires_at"]

    unloaded = live.post("/api/models/llama3.2:1b/unload")
    assert unloaded.json() == {"unloaded": "llama3.2:1b"}
    assert live.get("/api/status").json()["running"] == []


def test_load_of_an_installed_model_does_not_pull(fake_ollama, live):
    fake_ollama.add_model("m:1")
    op = live.post("/api/models/m:1/load").json()
    wait_until(lambda: live.get(op["urls"]["progress"]).json()["status"] == "succeeded")
    assert fake_ollama.pull_count("m:1") == 0
    assert fake_ollama.loaded() == ["m:1"]


def test_unload_of_a_missing_model_is_404(live):
    assert live.post("/api/models/nope:1/unload").status_code == 404


def test_chat_streams_tokens_in_order_then_counts(fake_ollama, live):
    fake_ollama.add_model("m:1")
    fake_ollama.chat_reply = "Paris is the capital of France."
    response = live.post("/api/chat", json={"model": "m:1", "prompt": "Capital of France?"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response.text)
    tokens = [data["content"] for name, data in events if name == "token"]
    assert "".join(tokens) == "Paris is the capital of France."
    assert len(tokens) == 6
    name, done = events[-1]
    assert name == "done"
    assert done["tokens"] == 6
    assert done["prompt_tokens"] == 3
    assert done["tokens_per_second"] > 0


def test_chat_accepts_messages(fake_ollama, live):
    fake_ollama.add_model("m:1")
    messages = [{"role": "system", "content": "Be short."}, {"role": "user", "content": "Hi"}]
    response = live.post("/api/chat", json={"model": "m:1", "messages": messages})
    assert sse_events(response.text)[-1][0] == "done"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "hi"}, "model_required"),
        ({"model": "m:1"}, "prompt_required"),
        ({"model": "m:1", "messages": [{"role": "robot", "content": "x"}]}, "prompt_required"),
        ({"model": "bad name", "prompt": "hi"}, "invalid_model_name"),
    ],
)
def test_chat_bad_bodies_are_400(live, body, code):
    response = live.post("/api/chat", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_chat_errors_come_as_json_before_the_stream(fake_ollama, live):
    missing = live.post("/api/chat", json={"model": "nope:1", "prompt": "hi"})
    assert missing.status_code == 404
    assert "not found" in missing.json()["error"]["message"]
    fake_ollama.stop()
    down = live.post("/api/chat", json={"model": "m:1", "prompt": "hi"})
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "ollama_unavailable"
