"""Fixtures: a real fake Ollama, apps over temporary databases, a live HTTP server."""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy import text
from werkzeug.serving import make_server

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck import schema

from .harness import HttpClient

# fake_ollama: a real HTTP server on an ephemeral 127.0.0.1 port, as embedders get it.
pytest_plugins = ["ollama_deck.testing.pytest_plugin"]
PG_VARIABLE = "OLLAMA_DECK_TEST_DATABASE_URL"


@pytest.fixture(scope="session", autouse=True)
def _default_database_out_of_home(tmp_path_factory) -> Iterator[None]:
    """No test, in this process or a child, makes the per-user default database (in the
    data directory, see ollama_deck/datadir.py) in the real home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """A fresh database: a SQLite file, and PostgreSQL when OLLAMA_DECK_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'deck.db'}"
        return
    base = os.environ.get(PG_VARIABLE)
    if not base:
        pytest.skip(
            f"PostgreSQL tests need {PG_VARIABLE} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"
        )
    with postgres_schema(base) as url:
        yield url


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL of a new, empty schema of the PostgreSQL database at ``base``; dropped after."""
    schema = f"deck_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'deck.db'}"


def test_settings(ollama_url: str, database_url: str, **overrides: Any) -> dict[str, Any]:
    """Settings that make the background machinery quick enough for tests."""
    settings = {
        "TESTING": True,
        "OLLAMA_DECK_OLLAMA_HOST": ollama_url,
        "OLLAMA_DECK_DATABASE_URL": database_url,
        "OLLAMA_DECK_HEARTBEAT_SECONDS": 0.2,
        "OLLAMA_DECK_STALE_SECONDS": 1.0,
        "OLLAMA_DECK_SSE_HEARTBEAT_SECONDS": 15.0,
        "OLLAMA_DECK_PULL_STALL_TIMEOUT": 5.0,
        "OLLAMA_DECK_REQUEST_TIMEOUT": 5.0,
    }
    settings.update(overrides)
    return settings


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """An empty deck database at the schema's head, made once for the session."""
    path = tmp_path_factory.mktemp("migrated") / "deck.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        schema.upgrade(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def make_app(fake_ollama, sqlite_url, migrated_sqlite, tmp_path):
    """Build apps against the fake Ollama; each is shut down after the test.

    The test's SQLite file starts as a copy of ``migrated_sqlite`` unless something made it
    already: migrating at the first request would cost each test about 50 ms. The migrations
    themselves are tested in test_schema.py.
    """
    apps = []

    def build(**overrides: Any):
        database = overrides.pop("database_url", sqlite_url)
        if database == sqlite_url and not (tmp_path / "deck.db").exists():
            shutil.copyfile(migrated_sqlite, tmp_path / "deck.db")
        app = create_app(test_settings(fake_ollama.url, database, **overrides))
        apps.append(app)
        return app

    yield build
    for app in apps:
        OllamaDeck.shutdown(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


class LiveServer(HttpClient):
    """A Flask app served over a real socket in a thread (werkzeug, threaded), and a client."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        super().__init__(f"http://127.0.0.1:{self.server.server_port}")
        # shutdown() waits for the loop to notice, up to one poll interval (0.5 s by default).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.005}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.close()


@pytest.fixture
def serve():
    """Serve apps over real sockets; stopped after the test."""
    servers = []

    def start(app) -> LiveServer:
        server = LiveServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def live(app, serve) -> LiveServer:
    return serve(app)


def deck_of(app):
    """The running deck of ``app``, started as a first request would start it."""
    from ollama_deck.state import setup_of

    return setup_of(app).activate(app)
