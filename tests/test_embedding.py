"""Ollama Deck inside an ordinary host app: its routes, static files, db and migrations."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine
from sqlalchemy import inspect

from ollama_deck import OllamaDeck
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .harness import gunicorn_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until

REPO = Path(__file__).resolve().parent.parent
DECK_TABLES = {
    "ollama_deck_operation",
    "ollama_deck_operation_log",
    "ollama_deck_installed_model",
    "ollama_deck_setting",
    "ollama_deck_counter",
    "ollama_deck_alembic_version",
}
SMALL = PullScript(layers=[20_000, 100], step=2_000)


def tables_in(path: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def journal_mode(path: Path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def deck_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ollama-deck")]


@pytest.fixture
def host(fake_ollama, tmp_path, monkeypatch):
    """The host app of tests/hostapp, in this process, with its own tables created."""
    from .hostapp import create_host_app
    from .hostapp import db
    from .hostapp import Note

    path = tmp_path / "host.db"
    monkeypatch.setenv("HOST_DATABASE_URL", f"sqlite:///{path}")
    apps = []

    def build(**config):
        settings = test_settings(fake_ollama.url, "unused://", **config)
        del settings["OLLAMA_DECK_DATABASE_URL"]  # with db=, the host's database is the deck's
        app = create_host_app(**settings)
        with app.app_context():
            Note.__table__.create(db.engine, checkfirst=True)
            db.session.add(Note(title="host row"))
            db.session.commit()
        apps.append(app)
        return app

    build.path = path
    yield build
    for app in apps:
        OllamaDeck.shutdown(app)


def test_registering_only_registers(host):
    threads_before = deck_threads()
    app = host()
    assert DECK_TABLES.isdisjoint(tables_in(host.path))  # no connection, no table
    assert deck_threads() == threads_before  # no runner
    from flask.cli import routes_command

    result = app.test_cli_runner().invoke(routes_command)
    assert "/models/api/models/pull" in result.output
    assert DECK_TABLES.isdisjoint(tables_in(host.path))
    assert deck_threads() == threads_before
    # The first request the deck handles starts it.
    assert app.test_client().get("/models/api/status").status_code == 200
    assert DECK_TABLES <= tables_in(host.path)
    assert "ollama-deck-maintenance" in deck_threads()


def test_with_the_runner_off_a_pull_is_only_recorded(host, fake_ollama):
    fake_ollama.allow_pull("llama3.2:1b", SMALL)
    app = host(OLLAMA_DECK_START_RUNNER=False)
    response = app.test_client().post("/models/api/models/pull", json={"model": "llama3.2:1b"})
    assert response.status_code == 202
    assert response.json["status"] == "queued"
    # Events still flow, and webhooks and /metrics' share of this process go out.
    serving = ("ollama-deck-bus", "ollama-deck-upkeep")
    runner_threads = [n for n in deck_threads() if n not in serving]
    assert runner_threads == []
    assert fake_ollama.pull_count("llama3.2:1b") == 0


def test_host_routes_and_the_deck_coexist(host, fake_ollama, serve):
    fake_ollama.allow_pull("llama3.2:1b", SMALL)
    live = serve(host())

    assert live.get("/").text == "host home page"
    assert live.get("/static/host.css").status_code == 200
    assert live.get("/api/notes").json() == {"notes": ["host row"]}
    host_404 = live.get("/api/no-such-thing")
    assert (host_404.status_code, host_404.text) == (404, "host says: no such page")
    host_405 = live.post("/api/notes")
    assert host_405.status_code == 405
    assert "error" not in host_405.text  # the host's own page, not the deck's JSON

    page = live.get("/models/")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert len(assets) == 2 and all(a.startswith("/models/static/") for a in assets)
    for asset in assets:
        assert live.get(asset).status_code == 200, asset
    ours = live.get("/models/api/no-such-endpoint")
    assert ours.status_code == 404 and ours.json()["error"]["code"] == "not_found"
    bad = live.post(
        "/models/api/models/pull", data="nope", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"

    op = live.post("/models/api/models/pull", json={"model": "llama3.2:1b"}).json()
    assert op["urls"]["progress"] == f"/models/progress/{op['id']}"
    final = wait_until(
        lambda: (s := live.get(op["urls"]["progress"]).json())["status"] == "succeeded" and s
    )
    assert final["percent"] == 100.0


def test_the_deck_tables_join_the_host_db_and_leave_its_journal_alone(host, fake_ollama):
    from .hostapp import db

    app = host()
    assert journal_mode(host.path) == "delete"
    fake_ollama.allow_pull("llama3.2:1b", SMALL)
    client = app.test_client()
    op = client.post("/models/api/models/pull", json={"model": "llama3.2:1b"}).json
    wait_until(lambda: client.get(f"/models/progress/{op['id']}").json["status"] == "succeeded")
    assert DECK_TABLES | {"note"} <= tables_in(host.path)  # one database file, both apps
    assert DECK_TABLES <= set(db.metadata.tables)  # known to the host's Alembic
    assert journal_mode(host.path) == "delete"  # no WAL on a database the deck does not own


def test_without_db_the_deck_keeps_a_database_of_its_own(fake_ollama, tmp_path):
    app = Flask("plain")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config.update(test_settings(fake_ollama.url, f"sqlite:///{tmp_path / 'deck.db'}"))
    db = SQLAlchemy(app)
    with app.app_context():
        db.create_all()
    OllamaDeck(app)  # the default prefix
    try:
        assert app.test_client().get("/ollama-deck/api/models").status_code == 200
        assert app.test_client().get("/ollama-deck/").status_code == 200
        assert DECK_TABLES <= tables_in(tmp_path / "deck.db")
        assert DECK_TABLES.isdisjoint(tables_in(tmp_path / "host.db"))
        assert DECK_TABLES.isdisjoint(db.metadata.tables)
    finally:
        OllamaDeck.shutdown(app)


def test_a_bind_key_puts_the_deck_in_a_database_of_its_own(fake_ollama, tmp_path):
    app = Flask("bound")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config["SQLALCHEMY_BINDS"] = {"deck": f"sqlite:///{tmp_path / 'deck.db'}"}
    app.config.update(test_settings(fake_ollama.url, "unused://"))
    db = SQLAlchemy(app)
    OllamaDeck(app, db=db, bind_key="deck")
    try:
        assert app.test_client().get("/ollama-deck/progress").status_code == 200
        assert DECK_TABLES <= tables_in(tmp_path / "deck.db")
        assert not tables_in(tmp_path / "host.db")
        assert DECK_TABLES <= set(db.metadatas["deck"].tables)
    finally:
        OllamaDeck.shutdown(app)


def test_an_unknown_bind_key_says_so(fake_ollama, tmp_path):
    app = Flask("unbound")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config.update(test_settings(fake_ollama.url, "unused://"))
    db = SQLAlchemy(app)
    with pytest.raises(ValueError, match="SQLALCHEMY_BINDS has no such key"):
        OllamaDeck(app, db=db, bind_key="nope")


@pytest.mark.parametrize(
    ("prefix", "host_rule", "named"),
    [
        ("", "/", "'/'"),
        ("", "/api/things", "'/api/things'"),
        ("/models", "/models/list", "'/models/list'"),
        ("/models", "/models", "'/models'"),
    ],
)
def test_a_colliding_prefix_fails_at_start_naming_both(prefix, host_rule, named):
    app = Flask("host", static_folder=None)
    app.add_url_rule(host_rule, "host_view", lambda: "host")
    with pytest.raises(RuntimeError, match=re.escape(named)) as failure:
        OllamaDeck(app, url_prefix=prefix)
    assert "host_view" in str(failure.value) and f"url_prefix={prefix!r}" in str(failure.value)


def test_second_registration_is_refused(host):
    app = host()
    with pytest.raises(RuntimeError, match="already registered"):
        OllamaDeck().init_app(app)


def test_init_app_later_and_host_config_wins(fake_ollama, tmp_path):
    app = Flask("late")
    app.config.update(test_settings(fake_ollama.url, f"sqlite:///{tmp_path / 'd.db'}"))
    app.config["OLLAMA_DECK_LOG_LINES"] = 7
    deck = OllamaDeck(url_prefix="/deck")
    deck.init_app(app)
    try:
        assert app.url_map.bind("").match("/deck/api/models")[0] == "ollama_deck_api.list_models"
        with app.test_request_context():
            from ollama_deck.state import deck as current_deck

            assert current_deck().store.log_lines == 7
    finally:
        OllamaDeck.shutdown(app)


# -- the host app as its developer runs it: flask db ... and gunicorn ------------------


def flask_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_host_app", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.gunicorn
def test_host_app_with_flask_migrate_under_gunicorn(fake_ollama, tmp_path):
    import os

    path = tmp_path / "host.db"
    migrations = str(tmp_path / "migrations")
    env = dict(os.environ, HOST_DATABASE_URL=f"sqlite:///{path}", OLLAMA_HOST=fake_ollama.url)
    env.pop("OLLAMA_DECK_DATABASE_URL", None)

    # The recipe of the README: the deck's migrations first, then the host's own.
    flask_cli(env, "ollama-deck", "db", "upgrade")
    flask_cli(env, "db", "init", "-d", migrations)
    first = flask_cli(env, "db", "migrate", "-d", migrations, "-m", "notes")
    (script,) = Path(migrations, "versions").glob("*.py")
    proposed = script.read_text()
    assert "op.create_table('note'" in proposed
    assert "ollama_deck" not in proposed, proposed  # nothing about the deck's tables
    assert "Detected added table 'note'" in first.stderr + first.stdout
    flask_cli(env, "db", "upgrade", "-d", migrations)

    port = free_port()
    command = gunicorn_command("tests.hostapp:create_host_app()", port)
    with ServerProcess(
        command, port=port, cwd=REPO, env=env, ready_path="/", ready_status=None
    ) as host:
        assert host.get("/").text == "host home page"
        assert host.get("/static/host.css").status_code == 200
        page = host.get("/models/")
        assert page.status_code == 200
        for asset in re.findall(r'(?:src|href)="(/[^"]+)"', page.text):
            assert host.get(asset).status_code == 200, asset
        fake_ollama.allow_pull("llama3.2:1b", SMALL)
        op = host.post("/models/api/models/pull", json={"model": "llama3.2:1b"}).json()
        wait_until(
            lambda: host.get(op["urls"]["progress"]).json()["status"] == "succeeded", timeout=30
        )

    assert DECK_TABLES | {"note", "alembic_version"} <= tables_in(path)
    assert journal_mode(path) == "delete"
    again = flask_cli(env, "db", "migrate", "-d", migrations, "-m", "nothing")
    assert "No changes in schema detected." in again.stdout + again.stderr
    assert len(list(Path(migrations, "versions").glob("*.py"))) == 1
