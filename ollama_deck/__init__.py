"""Ollama Deck: pull Ollama models as durable background operations and watch them live.

Standalone: ``create_app()``. Inside your own Flask app::

    deck = OllamaDeck(app, url_prefix="/models")      # or OllamaDeck(); deck.init_app(app)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from .config import settings_from_env
from .http import register_json_errors
from .state import DeckState
from .state import EXTENSION_KEY

__version__ = "0.1.0"
__all__ = ["OllamaDeck", "create_app", "__version__"]


class OllamaDeck:
    """The Flask extension. Per-app state lives in ``app.extensions["ollama_deck"]``."""

    def __init__(self, app: Flask | None = None, *, url_prefix: str = "") -> None:
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, url_prefix: str | None = None) -> None:
        """Attach the deck to ``app``: settings, database tables, runner and routes."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "OllamaDeck is already registered on this app; "
                "call init_app once per app (use url_prefix to choose where it mounts)."
            )
        for key, value in settings_from_env().items():
            app.config.setdefault(key, value)
        if not app.config.get("OLLAMA_DECK_DATABASE_URL"):
            os.makedirs(app.instance_path, exist_ok=True)
            path = os.path.join(app.instance_path, "ollama_deck.db")
            app.config["OLLAMA_DECK_DATABASE_URL"] = f"sqlite:///{path}"
        prefix = (self.url_prefix if url_prefix is None else url_prefix).rstrip("/")

        state = DeckState.build(dict(app.config), prefix)
        app.extensions[EXTENSION_KEY] = state
        _register_blueprints(app, prefix)
        if app.config["OLLAMA_DECK_START_RUNNER"]:
            state.runner.start()

    @staticmethod
    def shutdown(app: Flask) -> None:
        """Stop the deck of ``app``: running pulls go back to the queue for the next start."""
        state = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            state.close()


def _register_blueprints(app: Flask, prefix: str) -> None:
    from .blueprints import api
    from .blueprints import pages
    from .blueprints import progress

    app.register_blueprint(api.bp, url_prefix=f"{prefix}/api")
    app.register_blueprint(progress.bp, url_prefix=f"{prefix}/progress")
    app.register_blueprint(pages.bp, url_prefix=prefix or None)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The standalone app: settings from the environment, then ``config`` on top."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    app.config.update(settings_from_env())
    if config:
        app.config.update(config)
    # Only the standalone app owns every URL, so only here do unknown URLs answer JSON.
    register_json_errors(app)
    OllamaDeck(app, url_prefix=app.config.get("OLLAMA_DECK_URL_PREFIX", ""))
    return app
