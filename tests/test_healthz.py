"""/healthz: failing when writes fail (a full disk, a read-only database), and only
ok/failing per part for a request without a credential."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from flask_login import login_required
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck.state import setup_of

from .conftest import PG_VARIABLE
from .conftest import postgres_schema
from .conftest import test_settings
from .helpers import wait_until
from .hostapp import auth
from .processes import immutable
from .processes import needs_root_and_chattr

TOKEN = "correct horse battery staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
QUICK_PROBE = {"OLLAMA_DECK_HEALTH_WRITE_SECONDS": 0.05}


def assert_summary_only(body: dict, ok: bool) -> None:
    """Only ok/failing per part: no URL, version, dialect or database error."""
    assert body == {"ok": ok, "database": {"ok": ok}, "ollama": {"ok": True}}


# ---------------------------------------------------------------- who sees what


def test_without_a_credential_only_ok_or_failing_per_part(fake_ollama, make_app, serve, tmp_path):
    app = make_app(OLLAMA_DECK_TOKEN=TOKEN)
    server = serve(app)
    assert_summary_only(server.get("/healthz").json(), ok=True)
    assert_summary_only(server.get("/healthz", headers={"Authorization": "Bearer no"}).json(), True)

    detailed = server.get("/healthz", headers=BEARER).json()
    assert detailed["ollama"]["url"] == fake_ollama.url and detailed["ollama"]["version"]
    assert detailed["database"]["dialect"] == "sqlite"
    cookie = server.post("/api/session", headers=BEARER).cookies
    assert server.get("/healthz", cookies=cookie).json() == detailed

    # A failing database: the path in its error is for the token's holders only.
    os.rename(tmp_path / "deck.db", tmp_path / "moved.db")
    try:
        hidden = server.get("/healthz")
        assert hidden.status_code == 503 and int(hidden.headers["Retry-After"]) > 0
        assert_summary_only(hidden.json(), ok=False)
        assert str(tmp_path) not in hidden.text
        shown = server.get("/healthz", headers=BEARER)
        assert shown.status_code == 503 and "gone" in shown.json()["database"]["error"]
    finally:
        os.rename(tmp_path / "moved.db", tmp_path / "deck.db")


def test_an_open_deck_shows_its_details_as_its_api_does(fake_ollama, live):
    body = live.get("/healthz").json()
    assert body["ollama"]["url"] == fake_ollama.url  # /api/status shows it to anyone too


def test_behind_a_host_login_details_are_for_those_logged_in(fake_ollama, sqlite_url, serve):
    app = Flask("host")
    app.config.update(test_settings(fake_ollama.url, sqlite_url))
    auth.init_login(app)
    OllamaDeck(app, url_prefix="/models", guard=login_required)
    try:
        server = serve(app)
        probe = server.get("/models/healthz", allow_redirects=False)  # answers without login
        assert probe.status_code == 200
        assert_summary_only(probe.json(), ok=True)
        form = {"username": auth.USER, "password": auth.PASSWORD}
        assert server.post("/login", data=form, allow_redirects=False).status_code == 302
        assert server.get("/models/healthz").json()["ollama"]["url"] == fake_ollama.url
    finally:
        OllamaDeck.shutdown(app)


# ---------------------------------------------------------------- writes that fail


def host_app(fake_ollama, uri: str, **config) -> Flask:
    """A host app whose Flask-SQLAlchemy ``db`` (at ``uri``) the deck shares."""
    app = Flask("host")
    app.config.update(
        test_settings(fake_ollama.url, uri, SQLALCHEMY_DATABASE_URI=uri, **QUICK_PROBE, **config)
    )
    db = SQLAlchemy()
    db.init_app(app)
    OllamaDeck(app, db=db, url_prefix="/models")
    return app


def test_a_read_only_database_is_failing(fake_ollama, migrated_sqlite, tmp_path, serve):
    """SQLite opened read-only answers every read, so a read said ``ok`` while every
    write failed."""
    path = tmp_path / "host.db"
    shutil.copyfile(migrated_sqlite, path)
    app = host_app(fake_ollama, f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        server = serve(app)
        refused = server.post("/models/api/models/pull", json={"model": "m:1"})
        assert refused.status_code == 503, refused.text
        health = server.get("/models/healthz")
        assert health.status_code == 503, health.text
        assert "readonly" in health.json()["database"]["error"]
    finally:
        OllamaDeck.shutdown(app)


def test_a_read_only_postgresql_database_is_failing(fake_ollama, serve):
    base = os.environ.get(PG_VARIABLE)
    if not base:
        pytest.skip(f"needs PostgreSQL: set {PG_VARIABLE}")
    with postgres_schema(base) as url:
        writable = create_app(test_settings(fake_ollama.url, url))
        try:
            assert serve(writable).get("/healthz").status_code == 200  # migrates it
        finally:
            OllamaDeck.shutdown(writable)
        # The same database where every transaction is read-only (as on a standby).
        read_only = url + "%20-cdefault_transaction_read_only%3Don"
        app = create_app(test_settings(fake_ollama.url, read_only, **QUICK_PROBE))
        try:
            health = serve(app).get("/healthz")
            assert health.status_code == 503, health.text
            assert "read-only transaction" in health.json()["database"]["error"]
        finally:
            OllamaDeck.shutdown(app)


def test_health_checks_do_not_write_each_time(app, live):
    engine = setup_of(app).state(app).engine
    writes = []

    def count(_conn, cursor, statement, *_args):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.extend([statement] * max(cursor.rowcount, 0))  # rows written

    event.listen(engine, "after_cursor_execute", count)
    try:
        for _ in range(20):
            assert live.get("/healthz").status_code == 200
    finally:
        event.remove(engine, "after_cursor_execute", count)
    assert len(writes) <= 1  # one probe at most, within the default 60 s


@contextmanager
def tiny_disk(path: Path, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (root only); unmounted after."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs root to mount a small tmpfs")
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its disk is full."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError:
            pass
    return filler


@pytest.mark.fault
def test_a_full_disk_is_failing_and_heals(fake_ollama, migrated_sqlite, tmp_path, serve):
    with tiny_disk(tmp_path / "disk") as disk:
        shutil.copyfile(migrated_sqlite, disk / "deck.db")
        app = create_app(test_settings(fake_ollama.url, f"sqlite:///{disk}/deck.db", **QUICK_PROBE))
        try:
            server = serve(app)
            assert server.get("/healthz").status_code == 200
            filler = fill(disk)
            health = server.get("/healthz")
            assert health.status_code == 503, health.text
            assert "full" in health.json()["database"]["error"]
            refused = server.post("/api/models/pull", json={"model": "m:1"})
            assert refused.status_code == 503, refused.text
            filler.unlink()
            wait_until(lambda: server.get("/healthz").status_code == 200)
        finally:
            OllamaDeck.shutdown(app)


@pytest.mark.fault
def test_an_immutable_database_of_the_host_is_failing(
    fake_ollama, migrated_sqlite, tmp_path, serve
):
    """The deck checks the file of a database it owns; a host's database it sees only
    through its writes."""
    needs_root_and_chattr(tmp_path)
    path = tmp_path / "host.db"
    shutil.copyfile(migrated_sqlite, path)
    app = host_app(fake_ollama, f"sqlite:///{path}")
    try:
        server = serve(app)
        assert server.get("/models/healthz").status_code == 200
        with immutable(path):
            # Within one probe interval of the last write, at most.
            health = wait_until(
                lambda: (h := server.get("/models/healthz")).status_code == 503 and h.json()
            )
            assert health["database"]["error"].startswith("writes fail")
        wait_until(lambda: server.get("/models/healthz").status_code == 200)
    finally:
        OllamaDeck.shutdown(app)
