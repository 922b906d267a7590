"""Installed models: list (with a cached copy for when Ollama is down), delete, status."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..db import InstalledModel
from ..errors import Conflict
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import NotFound
from ..errors import OllamaTimeout
from ..errors import OllamaUnavailable
from .names import parse_model_name
from .ollama import OllamaClient
from .settings import ACTIVE_MODEL
from .settings import SettingStore
from .store import iso_time
from .store import operation_json
from .store import OperationStore

CACHE = InstalledModel.__table__


class ModelService:
    """What is installed on one Ollama host, and changes to it."""

    def __init__(
        self,
        client: OllamaClient,
        engine: Engine,
        store: OperationStore,
        settings: SettingStore,
        host: str,
    ) -> None:
        self.client = client
        self.engine = engine
        self.store = store
        self.settings = settings
        self.host = host

    def installed(self) -> dict[str, Any]:
        """Installed models with disk use and active pulls; the cached list if Ollama is down."""
        stale, error, cached_at = False, None, None
        try:
            models = self.client.tags()
            self._remember(models)
        except (OllamaUnavailable, OllamaTimeout) as exc:
            stale, error = True, exc.message
            models, cached_at = self._cached()
        active = [operation_json(r) for r in self.store.list(statuses=("queued", "running"))]
        active_by_key = {op["model"].lower(): op for op in active}
        listed = []
        for model in models:
            name = model.get("name") or model.get("model") or ""
            entry = dict(model, name=name)
            entry["operation"] = active_by_key.get(_key(name))
            listed.append(entry)
        return {
            "models": listed,
            "count": len(listed),
            "total_size": sum(int(m.get("size") or 0) for m in listed),
            "pulls": active,
            "stale": stale,
            "error": error,
            "cached_at": iso_time(cached_at),
            "host": self.host,
        }

    def delete(self, name: str) -> str:
        """Delete a model from Ollama; 409 while it is being pulled, 404 if unknown."""
        model = parse_model_name(name)
        if self.store.active_for(self.host, model.key) is not None:
            raise Conflict(f"{model.display} is being pulled; cancel the pull first")
        try:
            self.client.delete(model.display)
        except ModelNotFound as exc:
            raise NotFound(exc.message, code="model_not_found") from exc
        with self.engine.begin() as conn:
            conn.execute(
                delete(CACHE).where(
                    CACHE.c.host == self.host, func.lower(CACHE.c.name) == model.key
                )
            )
        self.settings.clear_if(ACTIVE_MODEL, model.display)
        return model.display

    def unload(self, name: str) -> str:
        """Ask Ollama to free a model from memory now (keep-alive 0)."""
        model = parse_model_name(name)
        try:
            with self.client.generate(model.display, keep_alive=0) as lines:
                for line in lines:
                    if line.get("error"):
                        raise DeckError(str(line["error"]), code="ollama_error", status=502)
        except ModelNotFound as exc:
            raise NotFound(exc.message, code="model_not_found") from exc
        return model.display

    def active_model(self) -> dict[str, Any]:
        """The model other tools should use, as chosen on the page."""
        return {"model": self.settings.get(ACTIVE_MODEL)}

    def set_active_model(self, name: str | None) -> dict[str, Any]:
        """Choose the active model; it must be installed. None clears the choice."""
        if name is None:
            self.settings.set(ACTIVE_MODEL, None)
            return {"model": None}
        model = parse_model_name(name)
        try:
            self.client.show(model.display)
        except ModelNotFound as exc:
            raise NotFound(
                f"{model.display} is not installed; pull it first", code="model_not_found"
            ) from exc
        self.settings.set(ACTIVE_MODEL, model.display)
        return {"model": model.display}

    def status(self) -> dict[str, Any]:
        """Whether Ollama answers, its version and what it has loaded now."""
        try:
            version = self.client.version()
            running = self.client.ps()
        except DeckError as exc:
            return {"host": self.host, "reachable": False, "error": exc.message}
        return {"host": self.host, "reachable": True, "version": version, "running": running}

    # -- the cached list ------------------------------------------------------------

    def _remember(self, models: list[dict[str, Any]]) -> None:
        """Replace the cached list, but only when it changed: listing must not write."""
        fresh = {m.get("name") or m.get("model") or "": m for m in models}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CACHE.c.name, CACHE.c.data).where(CACHE.c.host == self.host)
            ).all()
        if {r.name: json.loads(r.data) for r in rows} == fresh:
            return
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(CACHE).where(CACHE.c.host == self.host))
                if fresh:
                    conn.execute(
                        insert(CACHE),
                        [
                            {"host": self.host, "name": n, "data": json.dumps(m), "seen_at": now}
                            for n, m in fresh.items()
                        ],
                    )
        except IntegrityError:
            pass  # another worker refreshed it at the same moment: its copy is as good

    def _cached(self) -> tuple[list[dict[str, Any]], float | None]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(CACHE).where(CACHE.c.host == self.host)).all()
        models = [json.loads(r.data) for r in rows]
        models.sort(key=lambda m: m.get("modified_at") or "", reverse=True)
        return models, max((r.seen_at for r in rows), default=None)


def _key(name: str) -> str:
    try:
        return parse_model_name(name).key
    except ValueError:
        return name.lower()
