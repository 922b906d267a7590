"""Named tokens with a role: ``OLLAMA_DECK_TOKENS=name:role:token,...``.

A read token reads everything (every GET, the event streams, /metrics) and is refused every
change with 403 ``read_only_token``, changing nothing; ``OLLAMA_DECK_TOKEN`` stays a write
token named ``default``; a session carries the name and role of the token it was opened
with.
"""

from __future__ import annotations

import uuid

import pytest

from ollama_deck.config import DeckSettings
from ollama_deck.config import SettingError
from ollama_deck.testing import PullScript

from .test_security import assert_error

READ = "read-token-3b1e"
WRITE = "write-token-77aa"
TOKENS = f"grafana:read:{READ},ops:write:{WRITE}"
AS_READER = {"Authorization": f"Bearer {READ}"}
AS_WRITER = {"Authorization": f"Bearer {WRITE}"}
SESSION_ENDPOINTS = {"ollama_deck_api.open_session", "ollama_deck_api.close_session"}
READS_BY_POST = {"ollama_deck_api.plan"}  # security.READS_BY_POST: read tokens may send it
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("ci:admin:x", "role read or write"),
        ("ci:read:", "name:role:token"),
        ("Bad Name:read:x", "name:role:token"),
        ("a:read:x,a:write:y", "given twice"),
        ("a:read:same,b:write:same", "same token"),
    ],
)
def test_bad_token_lists_are_refused_without_repeating_them(value, says):
    with pytest.raises(SettingError, match=says) as refused:
        DeckSettings.from_config({"OLLAMA_DECK_TOKENS": value})
    assert "OLLAMA_DECK_TOKENS" in str(refused.value)
    assert value not in str(refused.value)  # a token list is a secret: never in a log


def test_the_single_token_is_a_write_token_named_default():
    settings = DeckSettings.from_config(
        {"OLLAMA_DECK_TOKEN": "t0", "OLLAMA_DECK_TOKENS": "ci:read:colon:in:it"}
    )
    assert [(t.name, t.role, t.secret) for t in settings.access_tokens] == [
        ("default", "write", "t0"),
        ("ci", "read", "colon:in:it"),
    ]
    assert "t0" not in repr(settings) and "colon:in:it" not in repr(settings)
    with pytest.raises(SettingError, match="default"):
        DeckSettings.from_config(
            {"OLLAMA_DECK_TOKEN": "t0", "OLLAMA_DECK_TOKENS": "default:read:x"}
        )


def write_requests(app) -> list[tuple[str, str, str]]:
    """Every change the API takes (method, URL, endpoint), with made-up arguments."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(("ollama_deck_api.", "ollama_deck_progress.")):
            continue
        if rule.endpoint.endswith(".unknown") or rule.endpoint in SESSION_ENDPOINTS:
            continue
        if rule.endpoint in READS_BY_POST:  # a POST that only reads (POST /api/plan)
            continue
        path = rule.rule.replace("<path:name>", "llama3.2:1b")
        path = path.replace("<op_id>", str(uuid.uuid4()))
        for method in sorted((rule.methods or set()) & WRITES):
            found.append((method, path, rule.endpoint))
    return found


def test_a_read_token_is_refused_every_change_and_changes_nothing(fake_ollama, make_app):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("qwen3:8b", PullScript(layers=[1_000]))
    app = make_app(OLLAMA_DECK_TOKENS=TOKENS)
    client = app.test_client()
    writes = write_requests(app)
    assert len(writes) >= 9  # pull, update, delete, load, unload, active, chat, cancel, forget
    for method, path, endpoint in writes:
        body = {"model": "qwen3:8b", "prompt": "hi"} if method != "DELETE" else None
        response = client.open(path, method=method, json=body, headers=AS_READER)
        error = response.json["error"]
        assert response.status_code == 403, (endpoint, response.json)
        assert error["code"] == "read_only_token"
        assert "'grafana'" in error["message"]
    assert fake_ollama.pull_count("qwen3:8b") == 0
    assert "llama3.2:1b" in fake_ollama.installed()
    assert client.get("/progress", headers=AS_READER).json["operations"] == []


def test_a_read_token_reads_everything(fake_ollama, make_app, serve):
    fake_ollama.add_model("llama3.2:1b")
    live = serve(make_app(OLLAMA_DECK_TOKENS=TOKENS))
    for path in ("/api/models", "/api/status", "/progress", "/api/activity", "/metrics",
                 "/api/webhooks/deliveries", "/api/models/llama3.2:1b"):  # fmt: skip
        assert live.get(path, headers=AS_READER).status_code == 200, path
    plan = live.post("/api/plan", json={"all": {"models": ["llama3.2:1b"]}}, headers=AS_READER)
    assert plan.status_code == 200 and plan.json()["changes"] == 0
    with live.get("/progress/stream", headers=AS_READER, stream=True) as stream:
        assert stream.status_code == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
    assert live.get("/api/session", headers=AS_READER).json() == {
        "token_required": True,
        "token": "grafana",
        "role": "read",
    }


def test_a_write_token_and_the_single_token_may_change(fake_ollama, make_app):
    # Held: a pull that had ended already would make the cancel below a 409.
    fake_ollama.allow_pull("qwen3:8b", PullScript(layers=[1_000], hold_after=1))
    client = make_app(OLLAMA_DECK_TOKENS=TOKENS, OLLAMA_DECK_TOKEN="single").test_client()
    pulled = client.post("/api/models/pull", json={"model": "qwen3:8b"}, headers=AS_WRITER)
    assert pulled.status_code == 202
    single = {"Authorization": "Bearer single"}
    assert client.post(f"/progress/{pulled.json['id']}/cancel", headers=single).status_code in (
        200,
        202,
    )
    assert client.get("/api/session", headers=single).json["token"] == "default"


def test_a_session_carries_its_tokens_name_and_role(fake_ollama, make_app, serve):
    fake_ollama.add_model("llama3.2:1b")
    live = serve(make_app(OLLAMA_DECK_TOKENS=TOKENS))
    opened = live.post("/api/session", headers=AS_READER)  # logging in is not a change
    assert opened.status_code == 200
    assert opened.json()["role"] == "read"
    live.session.headers.pop("Authorization", None)  # from here on only the cookie
    assert live.get("/api/session").json() == {
        "token_required": True,
        "token": "grafana",
        "role": "read",
    }
    assert_error(live.delete("/api/models/llama3.2:1b"), 403, "read_only_token")
    assert "llama3.2:1b" in fake_ollama.installed()
    assert live.delete("/api/session").status_code == 200  # nor is logging out
    assert_error(live.get("/api/models"), 401)
