"""``ollama-deck``: one click group for the service's own commands (``serve``, ``db``).

It is click because Flask's CLI is: ``flask ollama-deck db ...`` (commands.py) and
``ollama-deck db ...`` share one implementation. Options reach the app as config given to
``create_app``, never through ``os.environ``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.util import find_spec
from typing import Any
from typing import IO
from typing import TYPE_CHECKING

import click

from . import __version__
from .config import DeckSettings
from .config import SettingError
from .terminal.commands import register as register_client_commands

if TYPE_CHECKING:  # the client commands start without loading Flask
    from flask import Flask

# What `ollama-deck serve` needs beyond the library (the `serve` extra). gunicorn's gevent
# worker imports packaging at start-up in current releases.
SERVE_MODULES = ("gunicorn", "gevent", "packaging")
SERVE_EXTRA = "pip install 'ollama-deck[serve]'"


class Refusal(click.ClickException):
    """A reason not to go on, said in one line on stderr; exit status 2, no traceback."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True, file=file)


def deck_config(ollama: str | None = None, database_url: str | None = None) -> dict[str, Any]:
    """The config the command line gives ``create_app``: only what was passed."""
    config: dict[str, Any] = {}
    if ollama:
        config["OLLAMA_DECK_OLLAMA_HOST"] = ollama
    if database_url:
        config["OLLAMA_DECK_DATABASE_URL"] = database_url
    return config


def checked(config: dict[str, Any]) -> DeckSettings:
    """The settings ``config`` and the environment make, or a Refusal naming the bad one."""
    try:
        return DeckSettings.from_config(config)
    except SettingError as exc:
        raise Refusal(f"ollama-deck: {exc}") from None


def with_deck_app(config: dict[str, Any], action: Callable[[Flask], str]) -> None:
    """Run ``action`` on a deck app that starts no runner, print what it says, and close
    every connection it opened (none may cross the fork into gunicorn's workers)."""
    from . import create_app
    from .state import setup_of

    checked(config)
    try:
        app = create_app({**config, "OLLAMA_DECK_START_RUNNER": False})
    except SettingError as exc:  # e.g. a default database folder it cannot make
        raise Refusal(f"ollama-deck: {exc}") from None
    try:
        click.echo(action(app))
    finally:
        engine = setup_of(app).engine(app)
        if engine is not None:
            engine.dispose()


database_url_option = click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL (default: $OLLAMA_DECK_DATABASE_URL, "
    "else ollama_deck.db in the user's data directory).",
)


@click.group(
    "ollama-deck",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "--version", prog_name="ollama-deck", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Ollama Deck: pull Ollama models as durable background operations and watch them live.

    serve and db run the deck; its settings come from the environment (OLLAMA_HOST,
    OLLAMA_DECK_*), and command options take precedence. pull, attach, ps, logs, cancel,
    pause, resume, ls, rm, update, plan and apply talk to a running deck at --url
    (default $OLLAMA_DECK_URL, else http://127.0.0.1:8000) with the token in
    $OLLAMA_DECK_TOKEN.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to bind."
)
@click.option(
    "--ollama",
    default=None,
    help="Ollama's URL (default: $OLLAMA_HOST, else http://127.0.0.1:11434).",
)
@database_url_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="gevent workers. With more than one, set OLLAMA_DECK_REDIS_URL for instant events "
    "between them, and use PostgreSQL for many writers.",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=10000,
    show_default=True,
    help="Connections per worker that are being served, and as many SSE watchers that "
    "wait for events (these cost no greenlet).",
)
@click.option(
    "--access-log/--no-access-log",
    envvar="OLLAMA_DECK_ACCESS_LOG",
    default=True,
    show_default=True,
    help="A line per request on stderr ($OLLAMA_DECK_ACCESS_LOG=0 turns it off): about a "
    "seventh of a worker's time when it answers polls all day.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve a non-loopback --host without OLLAMA_DECK_TOKEN (anyone who reaches it can "
    "pull, delete and load models).",
)
def serve(
    host: str,
    port: int,
    ollama: str | None,
    database_url: str | None,
    workers: int,
    connections: int,
    access_log: bool,
    insecure: bool,
) -> None:
    """Serve the API and the page with gunicorn and gevent workers.

    The deck's database migrations are applied once, before the workers start.
    """
    missing = [name for name in SERVE_MODULES if find_spec(name) is None]
    if missing:
        raise Refusal(
            f"ollama-deck serve needs the serve extra (missing here: {', '.join(missing)}): "
            f"{SERVE_EXTRA}"
        )
    from .commands import upgrade_schema
    from .security import bind_refusal
    from .serving import gunicorn_options

    config = deck_config(ollama, database_url)
    settings = checked(config)
    refusal = bind_refusal(host, bool(settings.access_tokens), insecure)
    if refusal:
        raise Refusal(refusal)
    config.update(event_bus_config(workers, settings))
    # Once, before any worker exists, so that workers never race to migrate.
    with_deck_app(config, upgrade_schema)
    options = gunicorn_options(host, port, workers, connections, access_log=access_log)
    run_gunicorn(options, config)


def event_bus_config(workers: int, settings: DeckSettings) -> dict[str, Any]:
    """One worker needs no bus; several share events through Redis or, without it, the
    database (and say so, since events between workers then wait for the next poll)."""
    if settings.event_bus != "auto" or settings.redis_url:
        return {}
    if workers == 1:
        return {"OLLAMA_DECK_EVENT_BUS": "local"}
    click.echo(
        f"ollama-deck: {workers} workers without OLLAMA_DECK_REDIS_URL: each worker reads "
        f"new events from the database every {settings.poll_seconds:g} s (one read per "
        "worker, not per watcher); set OLLAMA_DECK_REDIS_URL to pass them on at once",
        err=True,
    )
    return {}


@cli.group()
def db() -> None:
    """The deck's database schema (its own Alembic history)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@database_url_option
def db_upgrade(revision: str, database_url: str | None) -> None:
    """Apply the deck's migrations up to REVISION (default: head), under a database lock."""
    from .commands import upgrade_schema

    with_deck_app(deck_config(database_url=database_url), lambda app: upgrade_schema(app, revision))


@db.command("current")
@database_url_option
def db_current(database_url: str | None) -> None:
    """Print the schema revision and the newest one this version ships."""
    from .commands import schema_status

    with_deck_app(deck_config(database_url=database_url), schema_status)


# The client commands (pull, attach, ps, logs, cancel, pause, resume, ls, rm, update,
# plan, apply) live apart.
register_client_commands(cli)


def main(argv: list[str] | None = None) -> int:
    """The console script: run the group and return its exit status (tests call this)."""
    try:
        cli.main(args=argv, prog_name="ollama-deck")
    except SystemExit as exc:  # click always ends this way in standalone mode
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(exc.code, err=True)
        return 1
    return 0


def run_gunicorn(options: dict[str, Any], config: dict[str, Any]) -> None:
    """Become gunicorn with ``options``, each worker building its app from ``config``
    (``serving.exec_gunicorn``: this process is replaced and never returns)."""
    from .serving import exec_gunicorn

    exec_gunicorn(options, config)


if __name__ == "__main__":
    sys.exit(main())
