"""``ollama-deck serve``: the service under gunicorn with gevent; ``ollama-deck db upgrade``."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ollama-deck", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API and the page with gunicorn + gevent")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.add_argument(
        "--ollama",
        default=None,
        help="Ollama's URL (default: $OLLAMA_HOST, else http://127.0.0.1:11434)",
    )
    serve.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gevent workers (default 1); with more, set OLLAMA_DECK_REDIS_URL for instant "
        "events between them, and use PostgreSQL for many writers",
    )
    serve.add_argument(
        "--connections", type=int, default=10000, help="connections per worker (SSE watchers)"
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback --host without OLLAMA_DECK_TOKEN (anyone who reaches it "
        "can pull, delete and load models)",
    )
    db = commands.add_parser("db", help="the deck's database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the deck's migrations")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    current = db_commands.add_parser("current", help="show the schema revision")
    current.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.database_url:
        os.environ["OLLAMA_DECK_DATABASE_URL"] = args.database_url
    if args.command == "db":
        return db_command(args.db_command, getattr(args, "revision", "head"))
    from .security import bind_refusal

    refusal = bind_refusal(args.host, os.environ.get("OLLAMA_DECK_TOKEN"), args.insecure)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    if args.ollama:
        os.environ["OLLAMA_HOST"] = args.ollama
    choose_event_bus(args.workers)
    # Once, before any worker exists, so that workers never race to migrate.
    db_command("upgrade", "head")
    serve(
        {
            "bind": f"{args.host}:{args.port}",
            "workers": args.workers,
            "worker_class": "gevent",
            "worker_connections": args.connections,
            # SSE responses stay open for hours; gevent workers are not killed by this.
            "timeout": 60,
            "graceful_timeout": 10,
            "accesslog": "-",
        }
    )
    return 0


def choose_event_bus(workers: int) -> None:
    """One worker needs no bus; several share events through Redis or, without it, the
    database (and say so, since events between workers then wait for the next poll)."""
    bus = os.environ.get("OLLAMA_DECK_EVENT_BUS", "auto")
    redis = os.environ.get("OLLAMA_DECK_REDIS_URL")
    if bus != "auto":
        return
    if workers == 1 and not redis:
        os.environ["OLLAMA_DECK_EVENT_BUS"] = "local"
    elif workers > 1 and not redis:
        interval = os.environ.get("OLLAMA_DECK_POLL_SECONDS", "0.5")
        print(
            f"ollama-deck: {workers} workers without OLLAMA_DECK_REDIS_URL: each worker reads "
            f"new events from the database every {interval} s (one read per worker, not per "
            "watcher); set OLLAMA_DECK_REDIS_URL to pass them on at once",
            file=sys.stderr,
        )


def db_command(command: str, revision: str) -> int:
    """Upgrade (or show) the schema of the deck's database, then let go of it."""
    from ollama_deck import create_app
    from ollama_deck import schema
    from ollama_deck.state import setup_of

    app = create_app({"OLLAMA_DECK_START_RUNNER": False})
    engine = setup_of(app).engine(app)
    try:
        before = schema.current_revision(engine)
        if command == "upgrade":
            after = schema.upgrade(engine, revision)
            if after != before:
                print(f"ollama-deck: database schema {before or 'empty'} -> {after}")
        else:
            print(f"current: {before or 'empty'}\nhead: {schema.head_revision()}")
    finally:
        engine.dispose()  # no connection may cross the fork into the workers
    return 0


def serve(options: dict[str, Any]) -> None:
    """Run gunicorn in this process with ``options``; the app is built in the worker."""
    from gunicorn.app.base import BaseApplication

    class DeckApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("worker_exit", _worker_exit)

        def load(self):
            from ollama_deck import create_app

            return create_app()

    DeckApplication().run()


def _post_worker_init(worker: Any) -> None:
    # Each worker serves, so each runs pulls from the start (resuming what a previous
    # process left) instead of waiting for its first request.
    from ollama_deck.state import setup_of

    app = worker.wsgi
    setup_of(app).activate(app)
    # Objects made at start-up live for the whole process: keep them out of the garbage
    # collector's full passes, which otherwise cause delivery spikes with many SSE watchers.
    gc.collect()
    gc.freeze()
    # Thousands of open SSE connections are thousands of long-lived greenlets, frames and
    # sockets; each full pass walks them all (measured: 45-112 ms at 3,000 watchers, a stall
    # for every watcher). Young generations stay as they are; full passes become ~100x rarer.
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 1000)


def _worker_exit(server: Any, worker: Any) -> None:
    # Hand running pulls back to the queue so the next start resumes them at once.
    from ollama_deck import OllamaDeck

    app = getattr(worker, "wsgi", None)
    if app is not None:
        OllamaDeck.shutdown(app)


if __name__ == "__main__":
    sys.exit(main())
