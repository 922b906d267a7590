"""What /healthz reports: can the deck reach its database, and Ollama."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ..dbhealth import database_health
from ..errors import DeckError
from .ollama import OllamaClient


def health(engine: Engine, client: OllamaClient) -> dict[str, Any]:
    """``ok`` follows the database only: without Ollama the deck still serves its cached
    list and its operations (they wait for Ollama), without its database it cannot."""
    database = database_health(engine)
    try:
        ollama: dict[str, Any] = {"ok": True, "version": client.version()}
    except DeckError as exc:
        ollama = {"ok": False, "error": exc.message}
    ollama["url"] = client.base_url
    return {"ok": database["ok"], "database": database, "ollama": ollama}
