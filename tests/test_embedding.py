"""Ollama Deck inside a host app that has its own routes, errors and Flask-SQLAlchemy db."""

from __future__ import annotations

import pytest
from flask import Blueprint
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from ollama_deck import OllamaDeck
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .helpers import wait_until


@pytest.fixture
def host_app(fake_ollama, tmp_path):
    """A host app with its own db, a table named like ours would be unprefixed, an `api`
    blueprint and its own 404 page."""
    app = Flask("host")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config.update(test_settings(fake_ollama.url, f"sqlite:///{tmp_path / 'host.db'}"))
    db = SQLAlchemy(app)

    class Operation(db.Model):  # the host's own "operation" table
        id = db.Column(db.Integer, primary_key=True)
        title = db.Column(db.String(50))

    api = Blueprint("api", __name__)

    @api.get("/things")
    def things():
        return {"things": [o.title for o in Operation.query.all()]}

    app.register_blueprint(api, url_prefix="/api")

    @app.errorhandler(404)
    def host_not_found(error):
        return "host says: no such page", 404

    with app.app_context():
        db.create_all()
        db.session.add(Operation(title="host row"))
        db.session.commit()

    deck = OllamaDeck(app, url_prefix="/models")
    yield app, deck
    OllamaDeck.shutdown(app)


def test_deck_mounts_under_a_prefix(fake_ollama, host_app, serve):
    app, _ = host_app
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[20_000, 100], step=2_000))
    live = serve(app)

    assert live.get("/api/things").json() == {"things": ["host row"]}
    response = live.post("/models/api/models/pull", json={"model": "llama3.2:1b"})
    assert response.status_code == 202
    op = response.json()
    assert op["urls"]["progress"] == f"/models/progress/{op['id']}"
    final = wait_until(
        lambda: (s := live.get(op["urls"]["progress"]).json())["status"] == "succeeded" and s
    )
    assert final["percent"] == 100.0
    assert "llama3.2:1b" in [m["name"] for m in live.get("/models/api/models").json()["models"]]

    page = live.get("/models/")
    assert page.status_code == 200
    assert "/models/static/" in page.text


def test_host_error_handlers_and_our_json_errors_coexist(host_app, serve):
    app, _ = host_app
    live = serve(app)
    host_404 = live.get("/no-such-host-page")
    assert host_404.status_code == 404
    assert host_404.text == "host says: no such page"
    ours = live.get("/models/api/no-such-endpoint")
    assert ours.status_code == 404
    assert ours.json()["error"]["code"] == "not_found"
    bad = live.post(
        "/models/api/models/pull", data="nope", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"


def test_tables_are_prefixed_and_share_the_host_database(host_app):
    app, _ = host_app
    engine = app.extensions["ollama_deck"].engine
    from sqlalchemy import inspect

    tables = set(inspect(engine).get_table_names())
    assert "operation" in tables  # the host's
    assert {"ollama_deck_operation", "ollama_deck_operation_log"} <= tables


def test_second_registration_is_refused(host_app):
    app, deck = host_app
    with pytest.raises(RuntimeError, match="already registered"):
        deck.init_app(app)


def test_init_app_later_and_host_config_wins(fake_ollama, tmp_path):
    app = Flask("late")
    app.config.update(test_settings(fake_ollama.url, f"sqlite:///{tmp_path / 'd.db'}"))
    app.config["OLLAMA_DECK_LOG_LINES"] = 7
    deck = OllamaDeck(url_prefix="/deck")
    deck.init_app(app)
    try:
        assert app.extensions["ollama_deck"].store.log_lines == 7
        assert app.url_map.bind("").match("/deck/api/models")[0] == "ollama_deck_api.list_models"
    finally:
        OllamaDeck.shutdown(app)
