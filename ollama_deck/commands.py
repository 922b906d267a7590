"""The deck's database commands, written once: ``flask ollama-deck db ...`` inside a host
app's Flask CLI, and ``ollama-deck db ...`` (cli.py) on the deck's own app."""

from __future__ import annotations

import click
from flask import current_app
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import Engine

from . import schema
from .db import make_engine
from .state import database_url
from .state import setup_of

deck_cli = AppGroup("ollama-deck", help="Ollama Deck: the model manager's commands.")
db_cli = AppGroup("db", help="The deck's database schema (its own Alembic history).")
deck_cli.add_command(db_cli)


def _engine(app: Flask) -> tuple[Engine, bool]:
    """The engine the deck uses in ``app`` and whether it is ours to dispose; starts
    nothing else (no runner, no bus)."""
    engine = setup_of(app).engine(app)
    if engine is not None:
        return engine, False
    return make_engine(database_url(app)), True


def upgrade_schema(app: Flask, revision: str = "head") -> str:
    """Apply the deck's migrations up to ``revision`` (under a database lock); says what
    changed. The connections are let go of, so none crosses a fork into workers."""
    engine, own = _engine(app)
    try:
        before = schema.current_revision(engine)
        after = schema.upgrade(engine, revision)
    finally:
        if own:
            engine.dispose()
    if after == before:
        return f"ollama-deck: database schema at {after or 'empty'}, nothing to do"
    return f"ollama-deck: database schema {before or 'empty'} -> {after}"


def schema_status(app: Flask) -> str:
    """The schema revision of the deck's database and the newest this version ships."""
    engine, own = _engine(app)
    try:
        current = schema.current_revision(engine)
    finally:
        if own:
            engine.dispose()
    return f"current: {current or 'empty'}\nhead: {schema.head_revision()}"


def _app() -> Flask:
    return current_app._get_current_object()  # type: ignore[attr-defined]


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Apply the deck's migrations (under a database lock)."""
    click.echo(upgrade_schema(_app(), revision))


@db_cli.command("current")
def current_command() -> None:
    """Print the deck's schema revision and the newest one this version ships."""
    click.echo(schema_status(_app()))
