"""Installed models, delete and status against the fake Ollama."""

from __future__ import annotations

import sqlite3
import threading

import requests

from ollama_deck.testing import PullScript

from .helpers import wait_until


def test_list_models_with_disk_use(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b", size=1_000, parameter_size="1.2B", quantization="Q8_0")
    fake_ollama.add_model("qwen2.5:0.5b", size=2_000)
    listing = live.get("/api/models").json()
    assert sorted(m["name"] for m in listing["models"]) == ["llama3.2:1b", "qwen2.5:0.5b"]
    assert listing["count"] == 2
    assert listing["total_size"] == 3_000
    llama = next(m for m in listing["models"] if m["name"] == "llama3.2:1b")
    assert llama["details"]["parameter_size"] == "1.2B"
    assert llama["details"]["quantization_level"] == "Q8_0"
    assert len(llama["digest"]) == 64
    assert llama["modified_at"]
    assert llama["operation"] is None


def test_cached_list_is_served_stale_when_ollama_is_down(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b", size=1_000)
    assert live.get("/api/models").json()["stale"] is False
    fake_ollama.stop()
    listing = live.get("/api/models").json()
    assert listing["stale"] is True
    assert [m["name"] for m in listing["models"]] == ["llama3.2:1b"]
    assert "not reachable" in listing["error"]
    assert listing["cached_at"]


def test_active_pull_is_merged_into_the_list(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b", size=1_000)
    script = PullScript(layers=[50_000, 100], step=1_000, hold_after=2)
    fake_ollama.allow_pull("llama3.2:1b", script)
    op = live.post("/api/models/pull", json={"model": "llama3.2:1b"}).json()
    listing = live.get("/api/models").json()
    assert [p["id"] for p in listing["pulls"]] == [op["id"]]
    assert listing["models"][0]["operation"]["id"] == op["id"]
    fake_ollama.release("llama3.2:1b")


def test_delete_model(fake_ollama, live):
    fake_ollama.add_model("llama3.2:1b")
    response = live.delete("/api/models/llama3.2:1b")
    assert response.status_code == 200
    assert response.json() == {"deleted": "llama3.2:1b"}
    assert "llama3.2:1b" not in fake_ollama.installed()
    assert live.get("/api/models").json()["models"] == []


def test_delete_namespaced_model_name_with_slashes(fake_ollama, live):
    fake_ollama.add_model("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    response = live.delete("/api/models/hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
    assert response.status_code == 200, response.text
    assert fake_ollama.installed() == []


def test_delete_unknown_model_is_404(live):
    response = live.delete("/api/models/nope:1b")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert "not found" in response.json()["error"]["message"]


def test_delete_while_pulling_is_409(fake_ollama, live):
    fake_ollama.allow_pull("m:1", PullScript(layers=[50_000], step=1_000, hold_after=2))
    live.post("/api/models/pull", json={"model": "m:1"})
    response = live.delete("/api/models/m:1")
    assert response.status_code == 409
    assert "cancel" in response.json()["error"]["message"]
    fake_ollama.release("m:1")


def test_delete_bad_name_is_400(live):
    response = live.delete("/api/models/bad%20name")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_model_name"


def test_delete_when_ollama_is_down_is_503(fake_ollama, live):
    fake_ollama.stop()
    response = live.delete("/api/models/llama3.2:1b")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ollama_unavailable"


def test_status(fake_ollama, live):
    status = live.get("/api/status").json()
    assert status["reachable"] is True
    assert status["version"]
    assert (status["host"], status["host_url"]) == ("default", fake_ollama.url)
    fake_ollama.stop()
    down = live.get("/api/status").json()
    assert down["reachable"] is False
    assert "not reachable" in down["error"]


def test_unknown_urls_and_methods_answer_json(live):
    response = live.get("/api/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = live.put("/api/models")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_list_reflects_a_finished_pull(fake_ollama, live):
    fake_ollama.allow_pull("m:1", PullScript(layers=[5_000], step=1_000))
    op = live.post("/api/models/pull", json={"model": "m:1"}).json()
    wait_until(lambda: live.get(f"/progress/{op['id']}").json()["status"] == "succeeded")
    assert "m:1" in [m["name"] for m in live.get("/api/models").json()["models"]]


def cached_names(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM ollama_deck_installed_model")}


def test_a_locked_database_never_holds_status_or_the_list(fake_ollama, live, tmp_path):
    """Another connection holds SQLite's write lock; Ollama's state changed, so both answers
    would like to cache something. They answer at once and skip the write instead of
    waiting for the busy timeout (30 s); an answer after the lock stores it."""
    fake_ollama.add_model("old:1")
    assert live.get("/api/models").status_code == 200  # caches the list and the status
    assert live.get("/api/status").json()["running"] == []
    fake_ollama.add_model("new:1")
    requests.post(fake_ollama.url + "/api/generate", json={"model": "old:1"}, timeout=5)

    holder = sqlite3.connect(tmp_path / "deck.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    answers: dict[str, dict] = {}

    def ask() -> None:
        answers["status"] = live.get("/api/status").json()
        answers["models"] = live.get("/api/models").json()

    asking = threading.Thread(target=ask)
    try:
        asking.start()
        wait_until(lambda: len(answers) == 2, timeout=10)  # the busy timeout is 30 s
        assert [m["name"] for m in answers["status"]["running"]] == ["old:1"]
        assert {m["name"] for m in answers["models"]["models"]} == {"old:1", "new:1"}
        assert cached_names(holder) == {"old:1"}  # skipped, not written
    finally:
        holder.execute("ROLLBACK")
        asking.join(60)
    # Unlocked: a listing caches the change. Not always the first one: a write of the
    # deck's own that waited for the lock (the metrics, say) may hold it for a moment.
    wait_until(lambda: live.get("/api/models").ok and cached_names(holder) == {"old:1", "new:1"})
    holder.close()
