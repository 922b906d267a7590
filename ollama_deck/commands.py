"""``flask ollama-deck ...``: the deck's commands inside a host app's Flask CLI."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from . import schema
from .db import make_engine
from .state import database_url
from .state import setup_of

deck_cli = AppGroup("ollama-deck", help="Ollama Deck: the model manager's commands.")
db_cli = AppGroup("db", help="The deck's database schema (its own Alembic history).")
deck_cli.add_command(db_cli)


def _engine():
    """The engine the deck uses in this app, without starting anything else."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    engine = setup_of(app).engine(app)
    if engine is not None:
        return engine, False
    return make_engine(database_url(app)), True


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Apply the deck's migrations (under a database lock)."""
    engine, own = _engine()
    try:
        before = schema.current_revision(engine)
        after = schema.upgrade(engine, revision)
    finally:
        if own:
            engine.dispose()
    click.echo(f"ollama-deck schema: {before or 'empty'} -> {after}")


@db_cli.command("current")
def current_command() -> None:
    """Print the deck's schema revision and the newest one this version ships."""
    engine, own = _engine()
    try:
        click.echo(f"current: {schema.current_revision(engine) or 'empty'}")
    finally:
        if own:
            engine.dispose()
    click.echo(f"head: {schema.head_revision()}")
