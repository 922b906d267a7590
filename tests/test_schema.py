"""The deck's schema under its own migrations: adoption of 0.1.0 databases, locked upgrades."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck import schema
from ollama_deck.db import VERSION_TABLE

from .conftest import test_settings

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
