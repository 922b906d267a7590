"""The Flask extension (``OllamaDeck``) and the standalone app (``create_app``).

Both are exported by the package (``from ollama_deck import OllamaDeck``), which imports
this module only when one of them is asked for: the Python client (``ollama_deck.client``)
and the terminal commands load without Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import DeckSettings
from .http import register_json_errors
from .state import database_url
from .state import DeckSetup
from .state import EXTENSION_KEY

DEFAULT_PREFIX = "/ollama-deck"
# What the deck mounts below its prefix; with the prefix "" these must be free in the host.
DECK_PATHS = ("/api", "/progress", "/static", "/healthz")


class OllamaDeck:
    """The Flask extension. Per-app state lives in ``app.extensions["ollama_deck"]``.

    ``db``: the host's Flask-SQLAlchemy instance; the deck's tables join its metadata and
    live in its database (or in the ``bind_key`` bind). Without it the deck keeps a
    database of its own (``OLLAMA_DECK_DATABASE_URL``) and never touches the host's.
    ``guard``: a view decorator of the host's (e.g. Flask-Login's ``login_required``) that
    every deck route but ``/healthz`` must pass; where it would redirect a script,
    ``fetch()`` or ``EventSource`` to a login page, they get a JSON 401 naming the login
    URL. ``guard_healthz=True`` guards ``/healthz`` too (probes then need the login).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str = DEFAULT_PREFIX,
        db: Any = None,
        bind_key: str | None = None,
        guard: Callable[..., Any] | None = None,
        guard_healthz: bool = False,
    ) -> None:
        self.url_prefix = url_prefix
        self.db = db
        self.bind_key = bind_key
        self.guard = guard
        self.guard_healthz = guard_healthz
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, url_prefix: str | None = None) -> None:
        """Register the deck on ``app``: its settings, routes and the CLI. Nothing else:
        no connection, no table, no thread until the deck serves a request.

        The settings are read here, once (the app's config over the environment), and a bad
        value raises SettingError now, naming the variable, rather than at some request."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "OllamaDeck is already registered on this app; "
                "call init_app once per app (use url_prefix to choose where it mounts)."
            )
        if self.bind_key is not None:
            if self.db is None:
                raise ValueError("OllamaDeck(bind_key=...) needs db=, the Flask-SQLAlchemy db")
            if self.bind_key not in (app.config.get("SQLALCHEMY_BINDS") or {}):
                raise ValueError(
                    f"OllamaDeck(bind_key={self.bind_key!r}): SQLALCHEMY_BINDS has no such key"
                )
        settings = DeckSettings.from_config(app.config)
        for key, value in settings.as_config().items():
            app.config.setdefault(key, value)  # for the host's eyes; the deck reads settings
        prefix = (self.url_prefix if url_prefix is None else url_prefix).rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"url_prefix must start with '/': {prefix!r}")
        check_mount(app, prefix)

        if self.db is not None:
            _register_tables(self.db, self.bind_key)
        app.extensions[EXTENSION_KEY] = DeckSetup(
            prefix,
            settings=settings,
            db=self.db,
            bind_key=self.bind_key,
            guard=self.guard,
            guard_healthz=self.guard_healthz,
        )
        _register_blueprints(app, prefix)
        from .commands import deck_cli

        app.cli.add_command(deck_cli)

    @staticmethod
    def shutdown(app: Flask) -> None:
        """Stop the deck of ``app``: running pulls go back to the queue for the next start."""
        setup = app.extensions.get(EXTENSION_KEY)
        if setup is not None:
            setup.close()


def check_mount(app: Flask, prefix: str) -> None:
    """Fail now, naming both, if a rule of the host already owns a URL the deck needs."""
    mine = [prefix] if prefix else [*DECK_PATHS, "/"]
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for deck_path in mine:
            exact = path == deck_path or path == deck_path + "/"
            if exact or (deck_path != "/" and path.startswith(deck_path + "/")):
                raise RuntimeError(
                    f"OllamaDeck(url_prefix={prefix!r}) collides with the app's route "
                    f"{path!r} (endpoint {rule.endpoint!r}): the deck needs "
                    f"{deck_path or '/'}; mount it elsewhere with url_prefix=..."
                )


def _register_tables(db: Any, bind_key: str | None) -> None:
    from .db import register_tables

    metadatas = getattr(db, "metadatas", None)
    if metadatas is None:  # not Flask-SQLAlchemy 3
        raise TypeError("OllamaDeck(db=...) takes a Flask-SQLAlchemy (3.x) SQLAlchemy instance")
    metadata = metadatas.get(bind_key) if bind_key in metadatas else db._make_metadata(bind_key)
    register_tables(metadata)


def _register_blueprints(app: Flask, prefix: str) -> None:
    from .blueprints import api
    from .blueprints import pages
    from .blueprints import progress

    app.register_blueprint(api.bp, url_prefix=f"{prefix}/api")
    app.register_blueprint(progress.bp, url_prefix=f"{prefix}/progress")
    app.register_blueprint(pages.bp, url_prefix=prefix or None)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The standalone app: settings from ``config``, else the environment, else defaults;
    a bad value raises SettingError naming it.

    It owns a Flask-SQLAlchemy ``db`` made from ``OLLAMA_DECK_DATABASE_URL`` (a SQLite file
    in the instance folder by default) and mounts the deck at ``/``.
    """
    from flask_sqlalchemy import SQLAlchemy

    from .db import sqlite_engine_options
    from .db import tune_sqlite

    # Named after the package, as before this module was split out (its logger, instance path).
    app = Flask("ollama_deck", instance_relative_config=True, static_folder=None)
    if config:
        app.config.update(config)
    url = database_url(app, DeckSettings.from_config(app.config))
    app.config["OLLAMA_DECK_DATABASE_URL"] = url
    sqlite = url.startswith("sqlite")
    app.config.setdefault("SQLALCHEMY_DATABASE_URI", url)
    db = SQLAlchemy(engine_options=sqlite_engine_options() if sqlite else {"pool_pre_ping": True})
    db.init_app(app)
    if sqlite:
        with app.app_context():
            tune_sqlite(db.engine)  # before any connection: the file is the deck's own
    # Only the standalone app owns every URL, so only here do unknown URLs answer JSON.
    register_json_errors(app)
    OllamaDeck(app, db=db, url_prefix=app.config.get("OLLAMA_DECK_URL_PREFIX", ""))
    app.extensions[EXTENSION_KEY].owns_db = True
    return app
