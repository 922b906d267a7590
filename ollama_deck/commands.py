"""The deck's database commands, written once: ``flask ollama-deck db ...`` inside a host
app's Flask CLI, and ``ollama-deck db ...`` (cli.py) on the deck's own app."""

from __future__ import annotations

from typing import Any
from typing import IO

import click
from flask import current_app
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import Engine

from . import schema
from .db import make_engine
from .dbhealth import DATABASE_ERRORS
from .dbhealth import first_line
from .errors import DeckError
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


class SchemaCommandError(click.ClickException):
    """The schema could not be brought up to date: one message (what differs, what to run),
    exit status 1, no traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True, file=file)


def upgrade_schema(app: Flask, revision: str = "head") -> str:
    """Apply the deck's migrations up to ``revision`` (under a database lock); says which
    database and what changed. The connections are let go of, so none crosses a fork into
    workers. A schema that cannot be upgraded is a SchemaCommandError saying why."""
    engine, own = _engine(app)
    where = schema.describe_url(engine)
    try:
        before = schema.current_revision(engine)
        adopting = schema.unversioned(engine)
        after = schema.upgrade(engine, revision, command_line=setup_of(app).command_line)
    except DeckError as exc:  # SchemaMismatch, UpgradeFailed: their message says it all
        raise SchemaCommandError(exc.message) from None
    except DATABASE_ERRORS as exc:  # unreachable, locked, read-only
        raise SchemaCommandError(
            f"ollama-deck: cannot reach the database {where}: {first_line(exc)}"
        ) from None
    finally:
        if own:
            engine.dispose()
    if after == before:
        return f"ollama-deck: database {where}: schema at {after or 'empty'}, nothing to do"
    said = f"ollama-deck: database {where}: schema {before or 'empty'} -> {after}"
    if adopting:
        said += " (adopted the deck's tables that were there without a version)"
    return said


def schema_status(app: Flask) -> str:
    """The schema revision of the deck's database and the newest this version ships."""
    engine, own = _engine(app)
    try:
        current = schema.current_revision(engine)
    except DATABASE_ERRORS as exc:
        raise SchemaCommandError(
            f"ollama-deck: cannot reach the database {schema.describe_url(engine)}: "
            f"{first_line(exc)}"
        ) from None
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
