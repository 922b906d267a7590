"""Ollama Deck: pull Ollama models as durable background operations and watch them live.

Standalone: ``create_app()``. Inside your own Flask app, with its Flask-SQLAlchemy ``db``::

    deck = OllamaDeck(app, db=db, url_prefix="/models")   # or OllamaDeck(); deck.init_app(app)

From Python, against a running deck: ``ollama_deck.client.DeckClient``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version
from typing import Any
from typing import TYPE_CHECKING

try:
    __version__ = version("ollama-deck")  # written once, in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["OllamaDeck", "create_app", "__version__"]

if TYPE_CHECKING:
    from .extension import create_app as create_app
    from .extension import DECK_PATHS as DECK_PATHS
    from .extension import DEFAULT_PREFIX as DEFAULT_PREFIX
    from .extension import OllamaDeck as OllamaDeck

# Loaded on first use, so that the client (ollama_deck.client) and the terminal commands
# do not pay for Flask and SQLAlchemy (most of a second) or need them at all.
_EXTENSION_NAMES = ("OllamaDeck", "create_app", "DEFAULT_PREFIX", "DECK_PATHS")


def __getattr__(name: str) -> Any:
    if name in _EXTENSION_NAMES:
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
