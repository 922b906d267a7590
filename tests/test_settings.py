"""Typed settings: read once per app, the app's config over the environment, bad values
refused when the deck starts, with the variable and what it takes named."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from flask import Flask

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck.config import DeckSettings
from ollama_deck.config import SettingError
from ollama_deck.config import SETTINGS
from ollama_deck.state import settings_of


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No setting of the machine that runs the tests may leak into these."""
    for var, _default in SETTINGS.values():
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OLLAMA_DECK_ON_RESTART", "resum", "use resume or interrupt"),
        ("OLLAMA_DECK_EVENT_BUS", "kafka", "use auto, local, poll or redis"),
        ("OLLAMA_DECK_MAX_CONCURRENT_PULLS", "two", "use a whole number 1 or more"),
        ("OLLAMA_DECK_MAX_CONCURRENT_PULLS", "0", "use a whole number 1 or more"),
        ("OLLAMA_DECK_MAX_CONCURRENT_PULLS", "1.5", "use a whole number 1 or more"),
        ("OLLAMA_DECK_MAX_QUEUED", "-1", "use a whole number 1 or more"),
        ("OLLAMA_DECK_KEEP_FINISHED_COUNT", "-1", "use a whole number 0 or more"),
        ("OLLAMA_DECK_REPLAY_MAX_EVENTS", "many", "use a whole number 0 or more"),
        ("OLLAMA_DECK_HEARTBEAT_SECONDS", "0", "use a number greater than 0"),
        ("OLLAMA_DECK_STALE_SECONDS", "-3", "use a number greater than 0"),
        ("OLLAMA_DECK_BODY_TIMEOUT", "nan", "use a number greater than 0"),
        ("OLLAMA_DECK_POLL_SECONDS", "inf", "use a number greater than 0"),
        ("OLLAMA_DECK_CONNECT_TIMEOUT", "5s", "use a number greater than 0"),
        ("OLLAMA_DECK_OLLAMA_WAIT_SECONDS", "-1", "use a number 0 or more"),
        ("OLLAMA_DECK_START_RUNNER", "maybe", "use 1/0, true/false, yes/no or on/off"),
        ("OLLAMA_DECK_AUTO_UPGRADE", "2", "use 1/0, true/false, yes/no or on/off"),
        ("OLLAMA_DECK_SQLITE_OFFLOAD", "nope", "use 1/0, true/false, yes/no or on/off"),
        ("OLLAMA_DECK_GPU_MEMORY", "lots", "use a memory size such as 24GB"),
        ("OLLAMA_HOST", "ftp://box", "unsupported scheme 'ftp'"),
        ("OLLAMA_HOSTS", "gpu1", "is not name=url"),
    ],
)
def test_a_bad_value_in_the_environment_is_refused_at_start(
    monkeypatch, tmp_path, variable, value, accepted
):
    monkeypatch.setenv(variable, value)
    expected = f"{variable}={value!r} is not valid: "
    with pytest.raises(SettingError, match=re.escape(expected) + ".*" + re.escape(accepted)):
        DeckSettings.from_config({})
    # ... by the factory and by init_app alike, before anything is served.
    database = f"sqlite:///{tmp_path / 'deck.db'}"
    with pytest.raises(SettingError, match=re.escape(expected)):
        create_app({"OLLAMA_DECK_DATABASE_URL": database})
    with pytest.raises(SettingError, match=re.escape(expected)):
        OllamaDeck(Flask("host"))


def test_the_redis_bus_without_a_redis_url_is_refused_at_start():
    with pytest.raises(
        SettingError, match="OLLAMA_DECK_EVENT_BUS=redis needs OLLAMA_DECK_REDIS_URL"
    ):
        DeckSettings.from_config({"OLLAMA_DECK_EVENT_BUS": "redis"})
    chosen = DeckSettings.from_config({"OLLAMA_DECK_REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert chosen.bus == "redis"  # auto picks Redis once a URL is set ...
    assert DeckSettings.from_config({}).bus == "poll"  # ... and polling without one


def test_the_message_names_the_config_key_when_the_app_config_is_wrong():
    with pytest.raises(SettingError) as refused:
        DeckSettings.from_config({"OLLAMA_DECK_ON_RESTART": "resum"})
    assert str(refused.value) == (
        "OLLAMA_DECK_ON_RESTART='resum' is not valid: use resume or interrupt"
    )
    with pytest.raises(SettingError, match=r"OLLAMA_DECK_MAX_QUEUED=True is not valid"):
        DeckSettings.from_config({"OLLAMA_DECK_MAX_QUEUED": True})  # a bool is no count


@pytest.mark.parametrize(
    ("text", "expected"),
    [(t, True) for t in ("1", "true", "True", "yes", "on", " ON ")]
    + [(t, False) for t in ("0", "false", "FALSE", "no", "off")],
)
def test_booleans_take_the_usual_words(monkeypatch, text, expected):
    monkeypatch.setenv("OLLAMA_DECK_START_RUNNER", text)
    assert DeckSettings.from_config({}).start_runner is expected


@pytest.mark.parametrize(
    ("key", "config_value", "env_value", "attribute", "expected"),
    [
        ("OLLAMA_DECK_MAX_QUEUED", 7, "9", "max_queued", 7),
        ("OLLAMA_DECK_MAX_QUEUED", "7", "9", "max_queued", 7),
        ("OLLAMA_DECK_ON_RESTART", "interrupt", "resume", "on_restart", "interrupt"),
        ("OLLAMA_DECK_START_RUNNER", False, "1", "start_runner", False),
        ("OLLAMA_DECK_HEARTBEAT_SECONDS", 1, "5", "heartbeat_seconds", 1.0),
        ("OLLAMA_DECK_GPU_MEMORY", "8GB", "24GB", "gpu_memory", 8 << 30),
        ("OLLAMA_DECK_SQLITE_OFFLOAD", "0", "1", "sqlite_offload", False),
        ("OLLAMA_DECK_ALLOWED_HOSTS", ["Deck.Corp"], "other", "allowed_hosts", ("deck.corp",)),
        (
            "OLLAMA_DECK_OLLAMA_HOSTS",
            {"A": "box"},
            "b=x",
            "ollama_hosts",
            {"a": "http://box:11434"},
        ),
    ],
)
def test_the_app_config_wins_over_the_environment(
    monkeypatch, key, config_value, env_value, attribute, expected
):
    env_var = SETTINGS[key][0]
    monkeypatch.setenv(env_var, env_value)
    assert getattr(DeckSettings.from_config({key: config_value}), attribute) == expected
    # Only the environment: its value, parsed.
    assert getattr(DeckSettings.from_config({}), attribute) != expected


def test_defaults_without_config_or_environment():
    settings = DeckSettings.from_config({})
    assert settings == DeckSettings()
    assert settings.hosts == {"default": "http://127.0.0.1:11434"}
    assert settings.on_restart == "resume" and settings.event_bus == "auto"
    assert settings.gpu_memory is None and settings.sqlite_offload is True
    # Every field has an environment variable and a config key of the deck's own.
    for item in fields(DeckSettings):
        assert item.metadata["env"].startswith("OLLAMA_")
    assert all(key.startswith("OLLAMA_DECK_") for key in settings.as_config())


def test_an_empty_value_means_the_default(monkeypatch):
    monkeypatch.setenv("OLLAMA_DECK_MAX_QUEUED", "")
    monkeypatch.setenv("OLLAMA_DECK_TOKEN", "  ")
    settings = DeckSettings.from_config({})
    assert settings.max_queued == 100 and settings.token is None


def test_settings_are_read_once_per_app(monkeypatch, tmp_path):
    database = f"sqlite:///{tmp_path / 'deck.db'}"
    monkeypatch.setenv("OLLAMA_DECK_MAX_QUEUED", "5")
    first = create_app({"OLLAMA_DECK_DATABASE_URL": database})
    monkeypatch.setenv("OLLAMA_DECK_MAX_QUEUED", "6")
    second = create_app({"OLLAMA_DECK_DATABASE_URL": database, "OLLAMA_DECK_LOG_LINES": 9})
    assert settings_of(first).max_queued == 5  # the environment is not read again
    assert settings_of(second).max_queued == 6
    assert settings_of(second).log_lines == 9 and settings_of(first).log_lines == 300
    assert settings_of(first).database_url == database
    with pytest.raises(AttributeError):
        settings_of(first).max_queued = 1  # type: ignore[misc]


def test_embedded_the_host_config_wins_and_stays_as_the_host_wrote_it(monkeypatch):
    monkeypatch.setenv("OLLAMA_DECK_TOKEN", "from-env")
    app = Flask("host")
    app.config["OLLAMA_DECK_TOKEN"] = "from-host"
    app.config["OLLAMA_DECK_MAX_QUEUED"] = "4"
    OllamaDeck(app)
    assert settings_of(app).token == "from-host"
    assert settings_of(app).max_queued == 4
    assert app.config["OLLAMA_DECK_MAX_QUEUED"] == "4"  # the host's config is the host's
    assert app.config["OLLAMA_DECK_LOG_LINES"] == 300  # defaults are filled in beside it
