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
from sqlalchemy import text

from ollama_deck import OllamaDeck
from ollama_deck import schema
from ollama_deck.schema import head_revision
from ollama_deck.testing import PullScript

from .conftest import test_settings
from .harness import gunicorn_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .hostdb import made_by_create_all

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


# -- the host's habits: create_all, drop_all, its own autogenerate in either order ------------

FLASK_STEPS = """
import json, sys
from flask.cli import cli

for args in json.loads(sys.argv[1]):
    print("== flask " + " ".join(args), flush=True)
    try:
        cli.main(["--app", "tests.hostapp:create_host_app", *args], "flask", standalone_mode=False)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    print(f"== exit {code}", flush=True)
"""


def flask_steps(env: dict, *steps: list[str]) -> str:
    """Run ``flask`` commands of the host app one after another in one process, as a
    developer runs them in a shell (one interpreter start instead of one per command)."""
    import json

    command = [sys.executable, "-c", FLASK_STEPS, json.dumps(steps)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in output, output
    assert output.count("== exit 0") == len(steps), output
    return output


def host_env(fake_ollama, path: Path, **extra: str) -> dict:
    import os

    env = dict(os.environ, HOST_DATABASE_URL=f"sqlite:///{path}", OLLAMA_HOST=fake_ollama.url)
    env.pop("OLLAMA_DECK_DATABASE_URL", None)
    env.update(extra)
    return env


def test_a_host_that_calls_create_all_at_start_pulls_and_upgrades(
    fake_ollama, tmp_path, monkeypatch, serve
):
    """microblog's habits: Flask-Login in front, ``db.create_all()`` at every start."""
    from .hostapp import create_host_app
    from .test_guard import assert_login_required
    from .test_guard import log_in

    path = tmp_path / "host.db"
    monkeypatch.setenv("HOST_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("HOST_LOGIN", "1")
    monkeypatch.setenv("HOST_CREATE_ALL", "1")
    settings = test_settings(fake_ollama.url, "unused://")
    del settings["OLLAMA_DECK_DATABASE_URL"]
    app = create_host_app(**settings)
    assert DECK_TABLES | {"note"} <= tables_in(path)  # create_all made the deck's too
    try:
        live = serve(app)
        assert_login_required(live.get("/models/api/models", allow_redirects=False))
        assert live.get("/models/healthz").json()["ok"] is True
        log_in(live)
        fake_ollama.allow_pull("llama3.2:1b", SMALL)
        op = live.post("/models/api/models/pull", json={"model": "llama3.2:1b"}).json()
        wait_until(lambda: live.get(op["urls"]["progress"]).json()["status"] == "succeeded")
    finally:
        OllamaDeck.shutdown(app)

    upgraded = app.test_cli_runner().invoke(args=["ollama-deck", "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema at {head_revision()}, nothing to do" in upgraded.output
    assert f"database sqlite:///{path}" in upgraded.output  # which database, said
    again = create_host_app(**settings)  # the next start: create_all again, the pull kept
    try:
        with again.test_request_context():
            from ollama_deck.state import deck

            assert deck().store.get(op["id"])["status"] == "succeeded"
    finally:
        OllamaDeck.shutdown(again)


def test_tables_an_earlier_create_all_made_are_adopted_by_db_upgrade(host, fake_ollama):
    """The state the issue found: the deck's tables (and its empty version table) made by a
    host's create_all before this version; ``flask ollama-deck db upgrade`` crashed on it."""
    engine = create_engine(f"sqlite:///{host.path}")
    made_by_create_all(engine)
    engine.dispose()
    app = host()
    upgraded = app.test_cli_runner().invoke(args=["ollama-deck", "db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"schema empty -> {head_revision()}" in upgraded.output
    assert "(adopted the deck's tables that were there without a version)" in upgraded.output
    assert app.test_client().get("/models/progress").status_code == 200


@pytest.mark.parametrize("bus", ["auto", "local"])
def test_after_the_hosts_drop_all_the_deck_starts_anew(host, fake_ollama, bus):
    """What host test suites do between tests: drop_all, create_all. ``drop_all`` drops
    every table of the metadata, the deck's too (its rows go: a clean slate is what the
    caller asked for); the deck then makes its schema anew before it next serves. With the
    local bus, polls answer from the hub's version book: it forgets the dropped rows too."""
    from .hostapp import db

    fake_ollama.allow_pull("llama3.2:1b", SMALL)
    app = host(OLLAMA_DECK_EVENT_BUS=bus)
    client = app.test_client()

    def pull_succeeds() -> str:
        op = client.post("/models/api/models/pull", json={"model": "llama3.2:1b"})
        assert op.status_code == 202, op.text
        url = op.json["urls"]["progress"]
        wait_until(lambda: client.get(url).json["status"] == "succeeded")
        return op.json["id"]

    first = pull_succeeds()
    with app.app_context():
        db.drop_all()
    assert DECK_TABLES.isdisjoint(tables_in(host.path))
    assert client.get("/models/progress").json["operations"] == []  # made anew, empty
    second = pull_succeeds()

    with app.app_context():
        db.drop_all()
        db.create_all()  # the next test's setUp
    assert client.get(f"/models/progress/{second}").status_code == 404
    assert pull_succeeds() not in (first, second)
    engine = create_engine(f"sqlite:///{host.path}")
    assert schema.current_revision(engine) == head_revision()
    engine.dispose()


def test_tables_dropped_by_another_process_are_made_anew(host, fake_ollama):
    """Dropped behind the deck's back (another process's drop_all): the request that meets
    the missing tables answers 503, the next finds them made anew."""
    app = host()
    client = app.test_client()
    assert client.get("/models/progress").status_code == 200
    engine = create_engine(f"sqlite:///{host.path}")
    with engine.begin() as conn:
        for table in sorted(DECK_TABLES):
            conn.execute(text(f"DROP TABLE {table}"))
    engine.dispose()
    gone = client.get("/models/progress")
    assert gone.status_code == 503 and gone.json["error"]["code"] == "database_unavailable"
    assert client.get("/models/progress").status_code == 200
    assert DECK_TABLES <= tables_in(host.path)


def test_the_hosts_autogenerate_before_the_decks_upgrade_proposes_nothing_of_it(
    fake_ollama, tmp_path
):
    """The README's recipe in reverse order, Flask-Migrate registered after the deck."""
    path = tmp_path / "host.db"
    migrations = str(tmp_path / "migrations")
    env = host_env(fake_ollama, path, HOST_MIGRATE_LAST="1")
    output = flask_steps(
        env,
        ["db", "init", "-d", migrations],
        ["db", "migrate", "-d", migrations, "-m", "notes"],
        ["db", "upgrade", "-d", migrations],
        ["ollama-deck", "db", "upgrade"],
        ["db", "migrate", "-d", migrations, "-m", "nothing"],
    )
    (script,) = Path(migrations, "versions").glob("*.py")
    proposed = script.read_text()
    assert "op.create_table('note'" in proposed
    assert "ollama_deck" not in proposed, proposed
    assert f"schema empty -> {head_revision()}" in output
    assert output.count("No changes in schema detected.") == 1
    assert DECK_TABLES | {"note", "alembic_version"} <= tables_in(path)


def hosts_include_object(obj, name, type_, reflected, compare_to):  # a host's own filter
    return name != "host_scratch"


@pytest.mark.parametrize("migrate_first", [True, False])
def test_the_filter_chains_the_hosts_own(fake_ollama, tmp_path, migrate_first):
    from flask_migrate import Migrate

    app = Flask("host")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'host.db'}"
    app.config.update(test_settings(fake_ollama.url, "unused://"))
    db = SQLAlchemy(app)
    migrate = Migrate(db=db, include_object=hosts_include_object)
    if migrate_first:
        migrate.init_app(app)
    OllamaDeck(app, db=db)
    if not migrate_first:
        migrate.init_app(app)
    with app.app_context():  # as `flask db ...` runs
        include = app.extensions["migrate"].configure_args["include_object"]
    assert include(None, "ollama_deck_operation", "table", True, None) is False
    assert include(None, "ollama_deck_alembic_version", "table", True, None) is False
    assert include(None, "host_scratch", "table", True, None) is False
    assert include(None, "note", "table", False, None) is True
