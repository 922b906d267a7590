"""The deck's schema under its own migrations: adoption of 0.1.0 databases, locked upgrades."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import MetaData
from sqlalchemy import text

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck import schema
from ollama_deck.db import register_tables
from ollama_deck.db import VERSION_TABLE

from .conftest import test_settings
from .hostdb import add_operation
from .hostdb import made_by_create_all

REPO = Path(__file__).resolve().parent.parent

DUMP_0_1_0 = Path(__file__).parent / "data" / "deck-0.1.0.sql"
# The two operations and the setting that 0.1.0's code wrote into that dump.
SUCCEEDED = "c0f1a936-844c-4d52-b2c9-e9812e127e1f"
FAILED = "c96e925c-ec68-4e27-9772-d8942371e615"
# Nothing listens on the discard port: Ollama is "down", so the cached model list shows.
DOWN = "http://127.0.0.1:9"


def load_0_1_0(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(DUMP_0_1_0.read_text().replace("OLLAMA_URL", DOWN))
    con.close()


def test_a_0_1_0_database_is_adopted_and_every_row_reads_back(tmp_path):
    path = tmp_path / "old.db"
    load_0_1_0(path)
    # The dump's operations are years old: kept, or the runner's purge may take them
    # between two requests of this test.
    keep = {"OLLAMA_DECK_KEEP_FINISHED_HOURS": 10**7}
    app = create_app(test_settings(DOWN, f"sqlite:///{path}", **keep))
    try:
        client = app.test_client()
        ops = {op["id"]: op for op in client.get("/progress").json["operations"]}
        assert ops[SUCCEEDED]["status"] == "succeeded"
        assert ops[SUCCEEDED]["model"] == "qwen2.5:0.5b"
        assert ops[SUCCEEDED]["percent"] == 100.0
        assert ops[FAILED]["status"] == "failed"
        assert ops[FAILED]["error"]
        logs = client.get(f"/progress/{SUCCEEDED}?log=100").json["log"]
        assert logs[0]["text"] == "pull of qwen2.5:0.5b queued"
        assert logs[-1]["text"] == "pulled"
        assert client.get("/api/active-model").json == {"model": "llama3.2:1b"}
        models = client.get("/api/models").json
        assert models["stale"] is True
        assert "qwen2.5:0.5b" in [m["name"] for m in models["models"]]
        # New changes continue the old event sequence instead of restarting it.
        old_seq = max(op["seq"] for op in ops.values())
        assert client.delete(f"/progress/{FAILED}").status_code == 200
        assert client.put("/api/active-model", json={"model": None}).json == {"model": None}
    finally:
        OllamaDeck.shutdown(app)
    engine = create_engine(f"sqlite:///{path}")
    assert schema.current_revision(engine) == schema.head_revision()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM ollama_deck_counter")).scalar() >= old_seq
    engine.dispose()


def test_upgrade_is_idempotent_and_versioned_apart_from_the_host(database_url):
    engine = create_engine(database_url)
    assert schema.current_revision(engine) is None
    assert schema.upgrade(engine) == schema.head_revision()
    assert schema.upgrade(engine) == schema.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables  # a host's history stays the host's
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM ollama_deck_counter")).scalar() == 1
    engine.dispose()


RACE = """
import sys
from sqlalchemy import create_engine
from ollama_deck import schema
engine = create_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # all start together, once every process has imported everything
print(schema.upgrade(engine))
"""


@pytest.mark.scaleout
def test_processes_upgrading_at_once_never_race(database_url):
    """Four processes upgrade one empty database at the same moment: all succeed, once."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for run in runs:
        assert run.stdout.readline().strip() == "ready"
    for run in runs:
        run.stdin.write("go\n")
        run.stdin.flush()
    results = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert out.strip() == schema.head_revision()
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM ollama_deck_counter")).scalar() == 1
    engine.dispose()


def test_with_automatic_upgrades_off_an_empty_database_answers_503(fake_ollama, sqlite_url):
    app = create_app(test_settings(fake_ollama.url, sqlite_url, OLLAMA_DECK_AUTO_UPGRADE=False))
    try:
        response = app.test_client().get("/api/models")
        assert response.status_code == 503
        assert response.json["error"]["code"] == "schema_outdated"
        assert "ollama-deck db upgrade" in response.json["error"]["message"]
        result = app.test_cli_runner().invoke(args=["ollama-deck", "db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert f"empty -> {schema.head_revision()}" in result.output
        assert app.test_client().get("/api/models").status_code == 200
    finally:
        OllamaDeck.shutdown(app)


def test_console_db_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    command = [sys.executable, "-m", "ollama_deck.cli", "db", "upgrade", "--database-url", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert schema.head_revision() in done.stdout
    assert schema.current_revision(create_engine(url)) == schema.head_revision()
    current = [sys.executable, "-m", "ollama_deck.cli", "db", "current", "--database-url", url]
    shown = subprocess.run(current, capture_output=True, text=True, timeout=60)
    assert f"current: {schema.head_revision()}" in shown.stdout


@pytest.mark.parametrize("bad", ["models", "deck/x"])
def test_a_bad_prefix_is_refused(bad):
    from flask import Flask

    with pytest.raises(ValueError, match="url_prefix"):
        OllamaDeck(Flask("bad"), url_prefix=bad)


# -- tables the migrations did not make: a host's create_all, older or newer decks --------


@pytest.mark.parametrize("version_table", [True, False], ids=["version-table", "no-version"])
@pytest.mark.parametrize("rows", [0, 1], ids=["empty", "with-rows"])
def test_tables_made_by_create_all_are_adopted(database_url, version_table, rows):
    engine = create_engine(database_url)
    made_by_create_all(engine, version_table=version_table)
    if rows:
        add_operation(engine, seq=41)
    assert schema.current_revision(engine) is None
    assert schema.upgrade(engine) == schema.head_revision()
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
        # The counter goes on above what the rows hold, so event ids never go back.
        assert conn.execute(text("SELECT value FROM ollama_deck_counter")).scalar() == 42 * rows
        assert conn.execute(text("SELECT count(*) FROM ollama_deck_operation")).scalar() == rows
    assert schema.upgrade(engine) == schema.head_revision()  # and from then on, as usual
    engine.dispose()


def test_a_host_create_all_makes_the_deck_schema_at_its_head(database_url):
    """Made all at once from the installed deck's declarations, the tables are that deck's
    newest revision: stamped there at once, with the counter's row."""
    engine = create_engine(database_url)
    metadata = MetaData()
    register_tables(metadata)
    metadata.create_all(engine)
    assert schema.current_revision(engine) == schema.head_revision()
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
        assert conn.execute(text("SELECT name, value FROM ollama_deck_counter")).all() == [
            ("seq", 0)
        ]
    metadata.drop_all(engine)
    metadata.create_all(engine)  # what a host's test suite does between tests
    assert schema.current_revision(engine) == schema.head_revision()
    engine.dispose()


def test_create_all_makes_what_the_migrations_make(tmp_path):
    """Stamping create_all's tables with the head revision is only right if they are what
    the migrations make: the same tables, columns, indexes (partial ones too) to the letter."""
    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    schema.upgrade(migrated)
    created = create_engine(f"sqlite:///{tmp_path / 'created.db'}")
    metadata = MetaData(naming_convention={"ix": "idx_%(column_0_name)s"})  # a host's own
    register_tables(metadata)
    metadata.create_all(created)

    def shape(engine) -> dict[str, object]:
        inspector = inspect(engine)
        columns = inspector.get_columns
        with engine.connect() as conn:
            indexes = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql != ''")
            ).all()
        return {
            "tables": {
                # In any order: later migrations add columns at the end.
                name: sorted((c["name"], str(c["type"]), c["nullable"]) for c in columns(name))
                + [tuple(inspector.get_pk_constraint(name)["constrained_columns"])]
                for name in inspector.get_table_names()
            },
            "indexes": {name: " ".join(sql.split()) for name, sql in indexes},
        }

    assert shape(created) == shape(migrated)
    migrated.dispose()
    created.dispose()


def test_tables_that_differ_stop_the_upgrade_saying_what_and_what_to_run(database_url):
    engine = create_engine(database_url)
    made_by_create_all(engine, leave_out=("ollama_deck_operation", "runner_id"))
    with pytest.raises(schema.SchemaMismatch) as failure:
        schema.upgrade(engine, command_line="flask ollama-deck db upgrade")
    message = failure.value.message
    assert "column ollama_deck_operation.runner_id is missing" in message
    assert "Nothing was changed" in message
    assert "They hold no operations: drop them (DROP TABLE " in message
    assert "DROP TABLE ollama_deck_counter;" in message
    assert "and run `flask ollama-deck db upgrade`" in message
    assert schema.current_revision(engine) is None  # nothing changed, not even the version
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ollama_deck_counter")).scalar() == 0

    add_operation(engine, seq=7)
    with pytest.raises(schema.SchemaMismatch, match="They hold 1 operations: change them"):
        schema.upgrade(engine)
    engine.dispose()


def test_an_index_of_another_shape_is_named(sqlite_url):
    engine = create_engine(sqlite_url)
    made_by_create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_ollama_deck_operation_seq"))
        conn.execute(
            text("CREATE INDEX ix_ollama_deck_operation_seq ON ollama_deck_operation (id)")
        )
    with pytest.raises(schema.SchemaMismatch, match=r"index ix_ollama_deck_operation_seq on "
                       r"ollama_deck_operation is not an index on \(seq\)"):  # fmt: skip
        schema.upgrade(engine)
    engine.dispose()


def test_flask_db_upgrade_on_tables_that_differ_says_so_in_one_message(tmp_path):
    """The CLI: one message on stderr, exit status 1, no traceback."""
    path = tmp_path / "host.db"
    engine = create_engine(f"sqlite:///{path}")
    made_by_create_all(engine, leave_out=("ollama_deck_setting", "updated_at"))
    engine.dispose()
    env = dict(os.environ, HOST_DATABASE_URL=f"sqlite:///{path}", OLLAMA_HOST=DOWN)
    command = [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_host_app"]
    done = subprocess.run(
        [*command, "ollama-deck", "db", "upgrade"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "column ollama_deck_setting.updated_at is missing" in lines[0]
    assert "run `flask ollama-deck db upgrade`" in lines[0]


def test_the_running_deck_on_tables_that_differ_answers_503_naming_the_command(
    fake_ollama, tmp_path
):
    path = tmp_path / "host.db"
    engine = create_engine(f"sqlite:///{path}")
    made_by_create_all(engine, leave_out=("ollama_deck_counter", "value"))
    engine.dispose()
    app = Flask("host")
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    app.config.update(test_settings(fake_ollama.url, "unused://"))
    db = SQLAlchemy(app)
    OllamaDeck(app, db=db)
    try:
        client = app.test_client()
        api = client.get("/ollama-deck/api/models")
        assert api.status_code == 503
        assert api.json["error"]["code"] == "schema_mismatch"
        assert "column ollama_deck_counter.value is missing" in api.json["error"]["message"]
        assert "`flask ollama-deck db upgrade`" in api.json["error"]["message"]
        page = client.get("/ollama-deck/")
        assert page.status_code == 503 and page.mimetype == "text/plain"
        assert "`flask ollama-deck db upgrade`" in page.text
        health = client.get("/ollama-deck/healthz")
        assert health.status_code == 503
        assert health.json["database"]["code"] == "schema_mismatch"
    finally:
        OllamaDeck.shutdown(app)


def test_strangers_see_only_the_code_of_a_deck_that_cannot_serve(fake_ollama, tmp_path):
    """With a token, the page shell and /healthz answer anyone: the database's name and
    tables are for those who bring the token."""
    path = tmp_path / "deck.db"
    engine = create_engine(f"sqlite:///{path}")
    made_by_create_all(engine, leave_out=("ollama_deck_counter", "value"))
    engine.dispose()
    app = create_app(test_settings(fake_ollama.url, f"sqlite:///{path}", OLLAMA_DECK_TOKEN="t"))
    try:
        client = app.test_client()
        page = client.get("/")
        assert page.status_code == 503
        assert (
            page.text == "Ollama Deck cannot serve: schema_mismatch (the server's log says more)\n"
        )
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json == {"ok": False, "database": {"ok": False}, "ollama": {"ok": None}}
        told = client.get("/healthz", headers={"Authorization": "Bearer t"})
        assert str(path) in told.json["database"]["error"]
    finally:
        OllamaDeck.shutdown(app)


def test_a_revision_that_does_not_exist_is_one_message(tmp_path, capsys):
    from ollama_deck.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "upgrade", "nosuch", "--database-url", url]) == 1
    said = capsys.readouterr().err
    assert "Traceback" not in said
    assert "nosuch" in said and len(said.strip().splitlines()) == 1


def test_the_migrations_make_exactly_the_declared_tables(database_url):
    """What the migrations build is what db.py declares (sessions, 0002, included), so a
    host's autogenerate proposes nothing about the deck's tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    from ollama_deck.db import register_tables

    declared = MetaData()
    register_tables(declared)  # as a host's metadata gets them, the version table too
    engine = create_engine(database_url)
    schema.upgrade(engine)
    with engine.connect() as conn:
        assert "ollama_deck_session" in inspect(conn).get_table_names()
        assert compare_metadata(MigrationContext.configure(conn), declared) == []
    engine.dispose()


def test_the_sessions_migration_goes_down_and_up_again(sqlite_url):
    from alembic import command
    from alembic.config import Config

    engine = create_engine(sqlite_url)
    schema.upgrade(engine)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", "ollama_deck:migrations")
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    assert schema.current_revision(engine) == "0001"
    assert "ollama_deck_session" not in inspect(engine).get_table_names()
    assert schema.upgrade(engine) == schema.head_revision()
    assert "ollama_deck_session" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_operators_migration_goes_down_and_up_again(sqlite_url):
    """0005: the tallies, the webhook outbox, the activity record and a session's token
    name come and go."""
    from alembic import command
    from alembic.config import Config

    operators = {"ollama_deck_tally", "ollama_deck_webhook_delivery", "ollama_deck_activity"}
    engine = create_engine(sqlite_url)
    schema.upgrade(engine)
    assert operators <= set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", "ollama_deck:migrations")
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert operators.isdisjoint(inspect(engine).get_table_names())
    columns = {c["name"] for c in inspect(engine).get_columns("ollama_deck_session")}
    assert "token_name" not in columns
    assert schema.upgrade(engine) == schema.head_revision()
    assert operators <= set(inspect(engine).get_table_names())


def test_the_fleets_migration_goes_down_and_keeps_the_one_active_rule(sqlite_url):
    """0006 adds a column to the operations table; going down drops it without copying
    the table, which on SQLite would lose the partial indexes' WHERE (one joinable and one
    running operation per model, not one operation per model ever)."""
    from alembic import command
    from alembic.config import Config

    engine = create_engine(sqlite_url)
    schema.upgrade(engine)
    fleets = {"ollama_deck_group_member", "ollama_deck_lease", "ollama_deck_desired_models"}
    assert fleets <= set(inspect(engine).get_table_names())
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", "ollama_deck:migrations")
        config.attributes["connection"] = conn
        command.downgrade(config, "0005")
    assert fleets.isdisjoint(inspect(engine).get_table_names())
    columns = [c["name"] for c in inspect(engine).get_columns("ollama_deck_operation")]
    assert "children" not in columns
    with engine.connect() as conn:
        indexes = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE name LIKE 'ollama_deck_one_%_per_model'")
        ).scalars()
        assert sorted(" WHERE " in sql for sql in indexes) == [True, True]
    assert schema.upgrade(engine) == schema.head_revision() == "0007"
    engine.dispose()


def older_revisions() -> list[Any]:
    """Every revision before the head, newest first. The quick run takes the oldest and the
    newest of them; the ones between are marked ``matrix`` (the marked run has them all)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(schema._config())
    older = [r.revision for r in script.walk_revisions() if r.revision != schema.head_revision()]
    ends = {older[0], older[-1]}
    return [r if r in ends else pytest.param(r, marks=pytest.mark.matrix) for r in older]


@pytest.mark.parametrize("revision", older_revisions())
def test_a_create_all_of_a_newer_deck_before_its_upgrade(database_url, revision):
    """The database at an older revision; the newer deck's create_all (the host's start)
    makes the tables a pending migration creates, then the upgrade runs over them."""
    engine = create_engine(database_url)
    schema.upgrade(engine, revision)
    metadata = MetaData()
    register_tables(metadata)
    metadata.create_all(engine)  # only the missing tables: the version stays
    assert schema.current_revision(engine) == revision
    assert schema.upgrade(engine) == schema.head_revision()
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
    engine.dispose()


@pytest.mark.parametrize("revision", older_revisions())
def test_tables_an_older_deck_made_without_a_version_catch_up(database_url, revision):
    """An older deck's tables, made without a version (its create_all, before the deck
    stamped it): adopted as far as they go, then upgraded."""
    engine = create_engine(database_url)
    schema.upgrade(engine, revision)
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {VERSION_TABLE}"))
        conn.execute(text("DELETE FROM ollama_deck_counter"))
    assert schema.upgrade(engine) == schema.head_revision()
    with engine.connect() as conn:
        assert schema.schema_differences(conn) == []
        assert conn.execute(text("SELECT value FROM ollama_deck_counter")).scalar() == 0
    engine.dispose()


def test_migration_steps_skip_what_is_there_and_stop_at_what_differs(database_url):
    """migrations/ops.py, the steps every migration is written with."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import Column
    from sqlalchemy import Integer

    from ollama_deck.migrations import ops

    def key() -> Column:
        return Column("id", Integer, primary_key=True, autoincrement=False)

    engine = create_engine(database_url)
    with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        table = ops.create_table("ollama_deck_t", key(), Column("n", Integer, nullable=False))
        ops.create_table("ollama_deck_t", key(), Column("n", Integer, nullable=False))
        ops.add_column("ollama_deck_t", Column("x", Integer, nullable=True))
        ops.add_column("ollama_deck_t", Column("x", Integer, nullable=True))
        ops.create_index("ix_ollama_deck_t_x", "ollama_deck_t", ["x"])
        ops.create_index("ix_ollama_deck_t_x", "ollama_deck_t", ["x"])
        ops.insert_missing(table, [{"id": 1, "n": 5}])
        ops.insert_missing(table, [{"id": 1, "n": 6}, {"id": 2, "n": 7}])
        rows = conn.execute(text("SELECT id, n FROM ollama_deck_t ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, 5), (2, 7)]
        with pytest.raises(schema.TablesDiffer, match=r"column ollama_deck_t\.y is missing"):
            ops.create_table("ollama_deck_t", key(), Column("y", Integer))
        with pytest.raises(schema.TablesDiffer, match="is NULL, should be NOT NULL"):
            ops.create_table("ollama_deck_t", key(), Column("x", Integer, nullable=False))
        with pytest.raises(schema.TablesDiffer, match="is not a unique index on"):
            ops.create_index("ix_ollama_deck_t_x", "ollama_deck_t", ["x"], unique=True)
    engine.dispose()
