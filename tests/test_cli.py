"""``ollama-deck``, the click group: version, help, the db commands it shares with
``flask ollama-deck``, and the refusals of ``serve`` (one line, exit 2, no traceback)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from ollama_deck import __version__
from ollama_deck import cli as cli_module
from ollama_deck import schema
from ollama_deck.cli import cli
from ollama_deck.cli import event_bus_config
from ollama_deck.cli import main
from ollama_deck.config import DeckSettings
from ollama_deck.config import SETTINGS


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for var, _default in SETTINGS.values():
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"ollama-deck {__version__}\n"


def test_bare_command_prints_the_help_and_succeeds(runner):
    result = runner.invoke(cli, [])
    assert result.exit_code == 0
    assert "Usage: ollama-deck" in result.output
    assert "serve" in result.output and "db" in result.output
    assert "``" not in result.output  # plain text, no RST


def installed_script() -> str:
    """The ``ollama-deck`` console script pip installed beside this interpreter."""
    script = Path(sys.executable).parent / "ollama-deck"
    if not script.exists():
        pytest.skip("ollama-deck is not installed beside this interpreter (pip install -e .)")
    return str(script)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "Usage: ollama-deck [OPTIONS] [COMMAND] [ARGS]..."),
        (["--version"], f"ollama-deck {__version__}\n"),
    ],
    ids=["bare", "version"],
)
def test_the_installed_console_script(args, expected):
    """As a user types it: help or the version, exit 0, plain text without RST markup."""
    result = subprocess.run([installed_script(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected)
    assert result.stderr == ""
    assert "``" not in result.stdout and ":class:" not in result.stdout


@pytest.mark.parametrize("args", [["serve", "--help"], ["db", "--help"], ["db", "upgrade", "-h"]])
def test_help_is_plain_text(runner, args):
    result = runner.invoke(cli, args)
    assert result.exit_code == 0
    assert "``" not in result.output and ":class:" not in result.output


def test_db_upgrade_then_current(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    shown = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert shown.exit_code == 0, shown.output
    assert shown.output == f"current: empty\nhead: {schema.head_revision()}\n"
    upgraded = runner.invoke(cli, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"empty -> {schema.head_revision()}" in upgraded.output
    again = runner.invoke(cli, ["db", "upgrade", "head", "--database-url", url])
    assert "nothing to do" in again.output
    shown = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert f"current: {schema.head_revision()}" in shown.output


def test_both_clis_say_the_same(runner, tmp_path):
    """``flask ollama-deck db current`` and ``ollama-deck db current``: one implementation."""
    from ollama_deck import create_app

    url = f"sqlite:///{tmp_path / 'same.db'}"
    app = create_app({"OLLAMA_DECK_DATABASE_URL": url, "OLLAMA_DECK_START_RUNNER": False})
    flask_said = app.test_cli_runner().invoke(args=["ollama-deck", "db", "current"])
    deck_said = runner.invoke(cli, ["db", "current", "--database-url", url])
    assert flask_said.output == deck_said.output


def test_an_invalid_setting_is_one_line_and_exit_2(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("OLLAMA_DECK_ON_RESTART", "resum")
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    for args in (["db", "current", "--database-url", url], ["serve"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2
        assert result.output == (
            "ollama-deck: OLLAMA_DECK_ON_RESTART='resum' is not valid: use resume or interrupt\n"
        )
        assert isinstance(result.exception, SystemExit)  # said, not raised


def test_serve_without_the_serve_extra_says_what_to_install(runner, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        cli_module, "find_spec", lambda name: None if name == "gevent" else real(name)
    )
    result = runner.invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "gevent" in result.output and "pip install 'ollama-deck[serve]'" in result.output
    assert "Traceback" not in result.output


def test_main_returns_the_exit_status(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"ollama-deck {__version__}\n"
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("workers", "env", "expected"),
    [
        (1, {}, {"OLLAMA_DECK_EVENT_BUS": "local"}),
        (4, {}, {}),  # the poll bus, and a note on stderr
        (1, {"OLLAMA_DECK_REDIS_URL": "redis://r:6379/0"}, {}),
        (1, {"OLLAMA_DECK_EVENT_BUS": "poll"}, {}),
    ],
)
def test_serve_chooses_the_event_bus_through_config(workers, env, expected):
    assert event_bus_config(workers, DeckSettings.from_config({}, env)) == expected


def test_serve_passes_its_options_as_config_not_environment(runner, monkeypatch, tmp_path):
    """--ollama and --database-url reach create_app in the workers as config."""
    seen: dict = {}
    monkeypatch.setattr(cli_module, "run_gunicorn", lambda options, config: seen.update(config))
    before = dict(os.environ)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    result = runner.invoke(cli, ["serve", "--ollama", "box:1234", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert seen == {
        "OLLAMA_DECK_OLLAMA_HOST": "box:1234",
        "OLLAMA_DECK_DATABASE_URL": url,
        "OLLAMA_DECK_EVENT_BUS": "local",
    }
    assert dict(os.environ) == before
    engine = create_engine(url)  # migrated once, before any worker would start
    try:
        assert schema.current_revision(engine) == schema.head_revision()
    finally:
        engine.dispose()
