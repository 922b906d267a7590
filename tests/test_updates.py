"""Updates (pull installed models again) and the estimate shown before a pull, over sockets."""

from __future__ import annotations

import pytest

from ollama_deck.services.updates import update_message
from ollama_deck.services.updates import update_result
from ollama_deck.testing import PullScript

from .test_pulls import wait_final


def update(live, **kwargs):
    return live.post("/api/models/update", **kwargs)


def test_update_says_updated_or_current_with_digests(fake_ollama, live):
    fake_ollama.add_model("old:1b")
    fake_ollama.add_model("same:1b")
    fake_ollama.publish_update("old:1b", PullScript(layers=[300_000, 1_429], step=50_000))
    old_digest = fake_ollama.digest("old:1b")
    same_digest = fake_ollama.digest("same:1b")

    response = update(live, json={"models": ["old:1b", "same:1b"]})
    assert response.status_code == 202, response.text
    body = response.json()
    assert len(body["ids"]) == 2
    assert [op["kind"] for op in body["operations"]] == ["update", "update"]

    ops = {op["model"]: wait_final(live, op["id"]) for op in body["operations"]}
    assert ops["old:1b"]["status"] == "succeeded"
    new_digest = fake_ollama.digest("old:1b")
    assert new_digest != old_digest
    assert ops["old:1b"]["result"] == {"status": "updated", "old": old_digest, "new": new_digest}
    assert ops["old:1b"]["total_bytes"] >= 300_000  # the changed layers came down
    assert ops["same:1b"]["status"] == "succeeded"
    assert ops["same:1b"]["result"] == {
        "status": "current",
        "old": same_digest,
        "new": same_digest,
    }
    listed = {m["name"]: m["digest"] for m in live.get("/api/models").json()["models"]}
    assert listed["old:1b"] == new_digest

    # Updated once, the registry has nothing newer: the next update finds it current.
    again = update(live, json={"models": ["old:1b"]}).json()["operations"][0]
    assert wait_final(live, again["id"])["result"]["status"] == "current"


def test_update_without_a_list_queues_every_installed_model(fake_ollama, live):
    for name in ("a:1b", "b:1b", "c:1b"):
        fake_ollama.add_model(name)
    response = update(live)  # no body at all, as with curl -X POST
    assert response.status_code == 202, response.text
    ops = response.json()["operations"]
    assert sorted(op["model"] for op in ops) == ["a:1b", "b:1b", "c:1b"]
    assert all(wait_final(live, op["id"])["status"] == "succeeded" for op in ops)
    assert update(live, json={}).status_code == 202  # an empty object means all too


def test_update_refuses_what_is_not_installed_or_malformed(fake_ollama, live):
    fake_ollama.add_model("here:1b")
    missing = update(live, json={"models": ["here:1b", "nowhere:1b"]})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert fake_ollama.pull_count("here:1b") == 0  # nothing queued for a half-valid list
    bad = update(live, json={"models": "here:1b"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_models"
    assert update(live, json={"models": ["bad name!"]}).status_code == 400
    typed = update(live, data='{"models": []}', headers={"Content-Type": "text/plain"})
    assert typed.status_code == 415


def test_update_joins_a_pull_that_is_running(fake_ollama, live):
    fake_ollama.add_model("busy:1b")
    fake_ollama.allow_pull("busy:1b", PullScript(layers=[500_000], step=50_000, hold_after=2))
    pull = live.post("/api/models/pull", json={"model": "busy:1b"}).json()
    joined = update(live, json={"models": ["busy:1b"]}).json()["operations"][0]
    assert joined["id"] == pull["id"]
    assert joined["created"] is False
    fake_ollama.release("busy:1b")
    assert wait_final(live, pull["id"])["status"] == "succeeded"


def test_update_past_the_queue_bound_creates_nothing(fake_ollama, make_app):
    # No runner: nothing leaves the queue, so the bound is met exactly where the test says.
    client = make_app(OLLAMA_DECK_MAX_QUEUED=4, OLLAMA_DECK_START_RUNNER=False).test_client()
    names = [f"m{i}:1b" for i in range(5)]
    for name in names:
        fake_ollama.add_model(name)
    pulled = client.post("/api/models/pull", json={"model": "m0:1b"}).json  # 1 queued
    refused = client.post("/api/models/update")  # 4 more: one too many
    assert refused.status_code == 429, refused.text
    listed = client.get("/progress").json["operations"]
    assert [op["id"] for op in listed] == [pulled["id"]], "a refused update left operations"
    assert refused.json["error"]["code"] == "queue_full"
    assert "4 more do not fit" in refused.json["error"]["message"]

    # Three more fit; the one being pulled is joined and needs no room.
    body = client.post("/api/models/update", json={"models": names[:4]}).json
    assert len(body["ids"]) == 4 and body["ids"][0] == pulled["id"]
    assert [op["created"] for op in body["operations"]] == [False, True, True, True]
    assert {op["id"] for op in client.get("/progress").json["operations"]} == set(body["ids"])
    full = client.post("/api/models/update", json={"models": names[4:]})
    assert full.status_code == 429
    assert len(client.get("/progress").json["operations"]) == 4


def test_estimate_warns_only_for_what_will_not_fit(fake_ollama, live, monkeypatch):
    small = live.get("/api/estimate", params={"model": "llama3.2:1b"}).json()
    assert small["known"] is True and small["warn"] is False
    assert small["size_bytes"] > 0 and small["vram"]["total_bytes"] > 0
    big = live.get("/api/estimate", params={"model": "llama3.1:70b"}).json()
    assert big["fits"] is None  # no GPU known here
    assert big["warn"] is True and big["reason"] == "over_threshold"
    unknown = live.get("/api/estimate", params={"model": "someone/custom:1b"}).json()
    assert unknown["known"] is False and unknown["warn"] is False
    assert live.get("/api/estimate").status_code == 400


def test_estimate_against_a_known_gpu(fake_ollama, make_app, serve, monkeypatch):
    monkeypatch.setenv("OLLAMA_DECK_GPU_MEMORY", "8GB")
    live = serve(make_app())
    small = live.get("/api/estimate", params={"model": "llama3.2:3b"}).json()
    assert small["fits"] is True and small["warn"] is False
    big = live.get("/api/estimate", params={"model": "llama3.1:70b"}).json()
    assert big["fits"] is False and big["warn"] is True and big["reason"] == "too_big_for_gpu"


@pytest.mark.parametrize(
    ("before", "after", "result"),
    [
        ("aa11", "aa11", {"status": "current", "old": "aa11", "new": "aa11"}),
        ("aa11", "bb22", {"status": "updated", "old": "aa11", "new": "bb22"}),
        # Not listed before (deleted meanwhile, or Ollama did not answer): still an update.
        (None, "bb22", {"status": "updated", "old": None, "new": "bb22"}),
        ("aa11", None, {"status": "updated", "old": "aa11", "new": None}),
    ],
)
def test_update_result_reads_back_what_the_message_says(before, after, result):
    row = {"kind": "update", "status": "succeeded", "message": update_message(before, after)}
    assert update_result(row) == result
    assert update_result(dict(row, status="failed")) is None
    assert update_result(dict(row, kind="pull")) is None
