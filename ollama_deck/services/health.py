"""What /healthz reports: can the deck reach its database, write to it, and reach Ollama."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import Engine

from ..dbhealth import database_health
from ..errors import DeckError
from .ollama import OllamaClient
from .settings import SettingStore

# The row /healthz writes when the deck's own writes have said nothing for a while.
PROBE_KEY = "health_probe"


def health(engine: Engine, client: OllamaClient, *, probe_every: float) -> dict[str, Any]:
    """``ok`` follows the database only: without Ollama the deck still serves its cached
    list and its operations (they wait for Ollama), without its database it cannot."""
    store = SettingStore(engine)

    def probe() -> None:
        store.set(PROBE_KEY, f"{socket.gethostname()}:{os.getpid()}")

    database = database_health(engine, probe, probe_every)
    try:
        ollama: dict[str, Any] = {"ok": True, "version": client.version()}
    except DeckError as exc:
        ollama = {"ok": False, "error": exc.message}
    ollama["url"] = client.base_url
    return {"ok": database["ok"], "database": database, "ollama": ollama}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """Only ok or failing per part: what anyone may see. URLs, versions and the database's
    own errors (file paths, server names) are for those who may use the API."""
    return {
        "ok": report["ok"],
        "database": {"ok": report["database"]["ok"]},
        "ollama": {"ok": report["ollama"]["ok"]},
    }
