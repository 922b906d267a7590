"""The activity record: every state-changing request, who made it, and ``GET /api/activity``.

Who: a token's name (directly or through its session), the host app's Flask-Login user,
``OllamaDeck(actor=...)``, or ``local``. Requests that never proved who they are (a wrong
token) and reads are not recorded.
"""

from __future__ import annotations

import uuid

import pytest
from flask import Flask

from ollama_deck import OllamaDeck
from ollama_deck.state import setup_of
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .hostapp import auth
from .test_tokens import AS_READER
from .test_tokens import AS_WRITER
from .test_tokens import TOKENS


def entries(client, headers=None, **query) -> list[dict]:
    response = client.get("/api/activity", query_string=query, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["entries"]


def test_token_users_are_named_and_refusals_recorded(fake_ollama, make_app):
    fake_ollama.add_model("llama3.2:1b")
    fake_ollama.allow_pull("qwen3:8b", PullScript(layers=[1_000]))
    client = make_app(OLLAMA_DECK_TOKENS=TOKENS).test_client()
    pulled = client.post("/api/models/pull", json={"model": "qwen3:8b"}, headers=AS_WRITER)
    assert pulled.status_code == 202
    refused = client.delete("/api/models/llama3.2:1b", headers=AS_READER)
    assert refused.status_code == 403
    # Reads and requests that never proved who they are leave no entry.
    client.get("/api/models", headers=AS_WRITER)
    client.delete("/api/models/llama3.2:1b", headers={"Authorization": "Bearer wrong"})

    newest, oldest = entries(client, AS_READER)
    assert oldest == {
        "id": oldest["id"],
        "at": oldest["at"],
        "action": "pull",
        "target": "qwen3:8b",
        "host": "default",
        "operation_id": pulled.json["id"],
        "method": "POST",
        "path": "/api/models/pull",
        "status": 202,
        "ok": True,
        "error": None,
        "actor": "ops",
        "token": "ops",
        "address": "127.0.0.1",
    }
    assert (newest["action"], newest["target"], newest["actor"]) == (
        "delete",
        "llama3.2:1b",
        "grafana",
    )
    assert (newest["status"], newest["ok"], newest["error"]) == (403, False, "read_only_token")


def test_a_session_acts_under_its_tokens_name(fake_ollama, make_app, serve):
    fake_ollama.add_model("llama3.2:1b")
    live = serve(make_app(OLLAMA_DECK_TOKENS=TOKENS))
    assert live.post("/api/session", headers=AS_WRITER).status_code == 200
    live.session.headers.pop("Authorization", None)
    assert live.put("/api/active-model", json={"model": "llama3.2:1b"}).status_code == 200
    assert live.delete("/api/session").status_code == 200
    found = entries(live.server.app.test_client(), AS_READER)
    assert [(e["action"], e["actor"], e["target"]) for e in found] == [
        ("session.close", "ops", None),
        ("active_model", "ops", "llama3.2:1b"),
        ("session.open", "ops", None),
    ]


def test_without_a_token_or_a_user_the_actor_is_local(fake_ollama, app):
    client = app.test_client()
    assert client.delete("/api/models/nosuch:7b").status_code == 404
    (entry,) = entries(client)
    assert (entry["actor"], entry["token"], entry["status"], entry["error"]) == (
        "local",
        None,
        404,
        "model_not_found",
    )


@pytest.fixture
def login_host(fake_ollama, tmp_path, monkeypatch, serve):
    """tests/hostapp with its Flask-Login login (HOST_LOGIN=1), served."""
    from .hostapp import create_host_app

    monkeypatch.setenv("HOST_DATABASE_URL", f"sqlite:///{tmp_path / 'host.db'}")
    monkeypatch.setenv("HOST_LOGIN", "1")
    settings = test_settings(fake_ollama.url, "unused://")
    del settings["OLLAMA_DECK_DATABASE_URL"]
    app = create_host_app(**settings)
    yield serve(app)
    OllamaDeck.shutdown(app)


def test_a_flask_login_user_of_the_host_app_is_the_actor(fake_ollama, login_host):
    fake_ollama.allow_pull("qwen3:8b", PullScript(layers=[1_000]))
    live = login_host
    logged_in = live.post(
        "/login", data={"username": auth.USER, "password": auth.PASSWORD}, allow_redirects=False
    )
    assert logged_in.status_code == 302
    pulled = live.post("/models/api/models/pull", json={"model": "qwen3:8b"})
    assert pulled.status_code == 202
    found = live.get("/models/api/activity").json()["entries"]
    assert [(e["action"], e["actor"], e["token"], e["path"]) for e in found] == [
        ("pull", auth.USER, None, "/models/api/models/pull")
    ]


def test_an_actor_hook_names_the_user(fake_ollama, make_app, sqlite_url):
    app = Flask("host", static_folder=None)
    app.config.update(test_settings(fake_ollama.url, sqlite_url))
    OllamaDeck(app, url_prefix="/deck", actor=lambda: "grace")
    try:
        client = app.test_client()
        assert client.delete("/deck/api/models/nosuch:7b").status_code == 404
        found = client.get("/deck/api/activity").json["entries"]
        assert [e["actor"] for e in found] == ["grace"]
    finally:
        OllamaDeck.shutdown(app)


def test_pages_and_filters(fake_ollama, app):
    fake_ollama.add_model("llama3.2:1b")
    client = app.test_client()
    gone = [str(uuid.uuid4()) for _ in range(5)]
    for op_id in gone:
        assert client.post(f"/progress/{op_id}/cancel").status_code == 404
    assert client.put("/api/active-model", json={"model": "llama3.2:1b"}).status_code == 200

    seen, before = [], None
    while True:
        query = {"limit": 2} if before is None else {"limit": 2, "before": before}
        page = client.get("/api/activity", query_string=query).json
        seen += [e["operation_id"] or e["target"] for e in page["entries"]]
        before = page["next"]
        if before is None:
            break
    assert seen == ["llama3.2:1b", *reversed(gone)]

    assert [e["action"] for e in entries(client, outcome="ok")] == ["active_model"]
    assert len(entries(client, action="cancel", outcome="error")) == 5
    assert [e["path"] for e in entries(client, operation=gone[2])] == [
        f"/progress/{gone[2]}/cancel"
    ]
    assert [e["action"] for e in entries(client, target="llama3.2:1b")] == ["active_model"]
    assert entries(client, actor="someone else") == []
    for bad in ("action=explode", "before=-1", "limit=501", "outcome=maybe"):
        response = client.get(f"/api/activity?{bad}")
        assert response.status_code == 400 and response.json["error"]["message"], bad


def test_retention_follows_the_keep_settings(fake_ollama, make_app):
    app = make_app(OLLAMA_DECK_KEEP_FINISHED_COUNT=3)
    client = app.test_client()
    for n in range(5):
        client.put("/api/active-model", json={"model": f"gone{n}:1b"})
    state = setup_of(app).state(app)
    settings = state.upkeep.settings
    assert settings.keep_count == 3
    state.activity.purge(None, keep=settings.keep_count)
    assert [e["target"] for e in entries(client)] == ["gone4:1b", "gone3:1b", "gone2:1b"]
    state.activity.purge(float("inf"))  # older than the keep hours: every one of these
    assert entries(client) == []


def test_each_change_is_recorded_once_and_a_failed_record_costs_only_itself(
    database_url, fake_ollama, make_app, caplog, monkeypatch
):
    """Entries are written on the pooled connection's own cursor (in autocommit on
    PostgreSQL): one per change, and the connection goes back to the pool as it came, also
    when the write fails; the change itself is answered all the same."""
    app = make_app(database_url=database_url)
    client = app.test_client()
    deck = setup_of(app).activate(app)
    engine = deck.engine

    def autocommit() -> list[bool]:
        # Every connection the pool holds, as the next transaction would find it.
        pool = engine.pool
        held = [pool.connect() for _ in range(pool.checkedin())]
        found = [bool(getattr(c.driver_connection, "autocommit", False)) for c in held]
        for connection in held:
            connection.close()
        return found

    assert client.post("/api/models/pull", json={"model": "one:1b"}).status_code == 202
    (entry,) = entries(client, action="pull")
    assert (entry["target"], entry["status"]) == ("one:1b", 202)
    assert not any(autocommit())

    # The entry's INSERT fails in the driver (only it: the deck's tables stay as they are).
    broken = deck.activity._insert_sql.replace("ollama_deck_activity", "no_such_table")
    with monkeypatch.context() as patch:
        patch.setattr(deck.activity, "_insert_sql", broken)
        assert client.post("/api/models/pull", json={"model": "two:1b"}).status_code == 202
    assert "could not record pull in the activity record" in caplog.text
    assert not any(autocommit())
    assert client.post("/api/models/pull", json={"model": "three:1b"}).status_code == 202
    assert [e["target"] for e in entries(client, action="pull")] == ["three:1b", "one:1b"]
    # The operations themselves were all made, in transactions of their own.
    models = {op["model"] for op in client.get("/progress").json["operations"]}
    assert models >= {"one:1b", "two:1b", "three:1b"}
