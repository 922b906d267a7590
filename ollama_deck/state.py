"""Per-app state of the deck, kept in ``app.extensions["ollama_deck"]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import Engine

from .config import normalize_ollama_host
from .db import create_schema
from .db import make_engine
from .dbhealth import harden_engine
from .services.events import EventHub
from .services.knowledge import GpuCache
from .services.models import ModelService
from .services.ollama import OllamaClient
from .services.operations import Runner
from .services.operations import RunnerSettings
from .services.settings import SettingStore
from .services.store import OperationStore

EXTENSION_KEY = "ollama_deck"


@dataclass
class DeckState:
    """Everything one app's deck holds: no module-level state anywhere else."""

    config: dict[str, Any]
    url_prefix: str
    engine: Engine
    hub: EventHub
    store: OperationStore
    client: OllamaClient
    runner: Runner
    models: ModelService
    gpus: GpuCache

    @classmethod
    def build(cls, config: dict[str, Any], url_prefix: str) -> DeckState:
        host = normalize_ollama_host(config["OLLAMA_DECK_OLLAMA_HOST"])
        engine = make_engine(config["OLLAMA_DECK_DATABASE_URL"])
        harden_engine(engine)
        create_schema(engine)
        hub = EventHub(heartbeat_seconds=float(config["OLLAMA_DECK_SSE_HEARTBEAT_SECONDS"]))
        store = OperationStore(engine, hub, log_lines=int(config["OLLAMA_DECK_LOG_LINES"]))
        client = OllamaClient(
            host,
            connect_timeout=float(config["OLLAMA_DECK_CONNECT_TIMEOUT"]),
            request_timeout=float(config["OLLAMA_DECK_REQUEST_TIMEOUT"]),
            stall_timeout=float(config["OLLAMA_DECK_PULL_STALL_TIMEOUT"]),
            quick_timeout=float(config["OLLAMA_DECK_QUICK_TIMEOUT"]),
        )
        runner = Runner(store, client, RunnerSettings.from_config(host, config))
        models = ModelService(client, engine, store, SettingStore(engine), host)
        return cls(config, url_prefix, engine, hub, store, client, runner, models, GpuCache())

    def close(self) -> None:
        """Stop the runner (running pulls are handed back to the queue) and the engine."""
        self.runner.shutdown()
        self.hub.close()
        self.engine.dispose()


def deck() -> DeckState:
    """The deck of the current app."""
    return current_app.extensions[EXTENSION_KEY]
