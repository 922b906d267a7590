"""One default database: the development server and ``serve`` use the same file, per user,
however the package was imported, say which at start, and lose no old default's history."""

from __future__ import annotations

import logging
import runpy
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from ollama_deck import cli as cli_module
from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck import schema
from ollama_deck.datadir import default_database_url
from ollama_deck.datadir import operations_in

from .hostdb import add_operation

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_home(tmp_path, monkeypatch) -> Path:
    """A fresh per-user data directory (XDG_DATA_HOME); the deck's file goes below it."""
    home = tmp_path / "data-home"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    monkeypatch.delenv("OLLAMA_DECK_DATABASE_URL", raising=False)
    return home


def old_database(path: Path, operations: int) -> Path:
    """A deck database where 0.2.0 kept it by default, with that many operations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}")
    schema.upgrade(engine, "0001")
    for n in range(operations):
        add_operation(engine, seq=10 * n + 1)
    engine.dispose()
    return path


def test_the_default_is_per_user_not_where_the_package_was_imported_from(data_home):
    app = create_app()
    try:
        url = app.config["OLLAMA_DECK_DATABASE_URL"]
        assert url == f"sqlite:///{data_home / 'ollama-deck' / 'ollama_deck.db'}"
        assert app.instance_path not in url  # the source tree's instance/ before
    finally:
        OllamaDeck.shutdown(app)


def development_server_start(capsys) -> str:
    """What ``flask --app app run`` prints of the deck as it loads app.py (from the repo's
    root, as the README says), before Flask's own banner."""
    namespace = runpy.run_path(str(REPO / "app.py"))
    OllamaDeck.shutdown(namespace["app"])
    return capsys.readouterr().err


def test_the_development_server_and_serve_say_the_same_database(data_home, monkeypatch, capsys):
    expected = f"ollama-deck: database sqlite:///{data_home / 'ollama-deck' / 'ollama_deck.db'}"
    assert expected in development_server_start(capsys).splitlines()

    monkeypatch.setattr(cli_module, "run_gunicorn", lambda options, config: None)
    served = CliRunner().invoke(cli_module.cli, ["serve"])
    assert served.exit_code == 0, served.output
    assert served.output.startswith(f"{expected}: schema ")


def test_the_development_server_hides_the_password(data_home, monkeypatch, capsys):
    url = "postgresql+psycopg://deck:s3cret@db.example/deck"
    monkeypatch.setenv("OLLAMA_DECK_DATABASE_URL", url)
    said = development_server_start(capsys)
    assert "ollama-deck: database postgresql+psycopg://deck:***@db.example/deck" in said
    assert "s3cret" not in said


def test_serves_old_default_database_is_copied_not_lost(data_home, tmp_path, monkeypatch, caplog):
    """0.2.0's `serve` kept its database in the environment's var/ (a wheel's instance
    folder): the first start of this version copies it to the new default."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    old = old_database(tmp_path / "venv" / "var" / "ollama_deck-instance" / "ollama_deck.db", 2)
    before = old.read_bytes()
    caplog.set_level(logging.WARNING, "ollama_deck.datadir")
    app = create_app()
    try:
        client = app.test_client()
        assert len(client.get("/progress").json["operations"]) == 2
    finally:
        OllamaDeck.shutdown(app)
    new = data_home / "ollama-deck" / "ollama_deck.db"
    assert app.config["OLLAMA_DECK_DATABASE_URL"] == f"sqlite:///{new}"
    assert f"copied the database {old} (2 operations)" in caplog.text
    assert old.read_bytes() == before  # left as it was
    caplog.clear()
    create_app()  # the next start: nothing more to say
    assert caplog.text == ""


def test_of_two_old_defaults_the_fuller_is_copied_and_the_other_named(data_home, tmp_path, caplog):
    dev = old_database(tmp_path / "repo" / "instance" / "ollama_deck.db", 1)
    served = old_database(tmp_path / "venv" / "var" / "ollama_deck-instance" / "ollama_deck.db", 3)
    caplog.set_level(logging.WARNING, "ollama_deck.datadir")
    url = default_database_url([dev, served])
    new = data_home / "ollama-deck" / "ollama_deck.db"
    assert url == f"sqlite:///{new}"
    assert operations_in(new) == 3
    for _ in range(2):  # at every start, until it is moved away
        assert f"{dev}, a default database before 0.3.0, holds 1 operations" in caplog.text
        assert str(served) not in caplog.text.replace(f"copied the database {served}", "")
        caplog.clear()
        default_database_url([dev, served])


def test_a_data_directory_that_cannot_be_made_names_the_setting(tmp_path, monkeypatch):
    from ollama_deck.config import SettingError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocker))
    monkeypatch.delenv("OLLAMA_DECK_DATABASE_URL", raising=False)
    with pytest.raises(SettingError, match="set OLLAMA_DECK_DATABASE_URL"):
        create_app()
    said = CliRunner().invoke(cli_module.cli, ["db", "upgrade"])  # serve does this first
    assert said.exit_code == 2
    assert said.output == (
        f"ollama-deck: cannot make the deck's data directory {blocker / 'ollama-deck'} "
        "(Not a directory); set OLLAMA_DECK_DATABASE_URL to a database it can use\n"
    )
