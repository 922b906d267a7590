"""Installed models: list (with a cached copy for when Ollama is down), delete, status."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Engine

from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import log_skipped
from ..errors import Conflict
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import NotFound
from ..errors import OllamaTimeout
from ..errors import OllamaUnavailable
from ..lifecycle import ACTIVE
from ..serializers import iso_time
from ..serializers import operation_json
from . import modelcache
from .knowledge import InstalledEstimates
from .names import parse_model_name
from .ollama import OllamaClient
from .settings import ACTIVE_MODEL
from .settings import SettingStore
from .store import OperationStore

log = logging.getLogger(__name__)


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
        self._status_key = f"ollama_status:{host}"[:200]
        self._stored_status: str | None = None
        self.estimates = InstalledEstimates(client)  # VRAM of installed models, by digest

    def installed(self) -> dict[str, Any]:
        """Installed models with disk use and active pulls; the cached list if Ollama is down."""
        stale, error, cached_at = False, None, None
        try:
            models = self.client.tags()
            modelcache.remember(self.engine, self.host, models)
        except (OllamaUnavailable, OllamaTimeout) as exc:
            stale, error = True, exc.message
            models, cached_at = modelcache.cached(self.engine, self.host)
        names = self.store.host_names
        active = [
            operation_json(r, names)
            for r in self.store.list(statuses=ACTIVE)
            if r["host"] == self.host
        ]
        # Newest first: a pull made after a cancel, not the cancelled one winding down.
        active_by_key: dict[str, dict[str, Any]] = {}
        for op in active:
            active_by_key.setdefault(op["model"].lower(), op)
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
            **self._host_fields(),
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
        self.refresh_cache()
        self.settings.clear_if(ACTIVE_MODEL, model.display)
        return model.display

    def refresh_cache(self) -> None:
        """Cache Ollama's list now (after a pull or a delete); a failure is only logged."""
        try:
            modelcache.remember(self.engine, self.host, self.client.tags())
        except DeckError as exc:
            log.warning("could not refresh the model list of %s: %s", self.host, exc.message)

    def cached_entry(self, key: str) -> dict[str, Any] | None:
        """The cached list's entry for a model key (lower-case display name), if any."""
        models, _ = modelcache.cached(self.engine, self.host)
        return next((m for m in models if _key(m.get("name") or m.get("model") or "") == key), None)

    def unload(self, name: str) -> str:
        """Ask Ollama to free a model from memory now (keep-alive 0)."""
        model = parse_model_name(name)
        try:
            with self.client.generate(model.display, keep_alive=0, quick=True) as lines:
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
        """Whether Ollama answers, its version and what it has loaded now.

        When it does not, the last answer seen (``stale``, with ``cached_at``) comes along:
        what it had loaded then, and its version.
        """
        try:
            version = self.client.version()
            running = self.client.ps()
        except DeckError as exc:
            answer = {**self._host_fields(), "reachable": False, "error": exc.message}
            return dict(answer, **self._cached_status())
        self._remember_status({"version": version, "running": running})
        return {**self._host_fields(), "reachable": True, "version": version, "running": running}

    def _host_fields(self) -> dict[str, str]:
        """``host`` is the configured name, ``host_url`` the URL: the same in every answer."""
        return {"host": self.store.host_names.get(self.host, self.host), "host_url": self.host}

    def _remember_status(self, seen: dict[str, Any]) -> None:
        """Store the last answer, only when it changed; a database fault is only logged,
        and a locked database is not waited for (the next answer stores it)."""
        text = json.dumps(dict(seen, seen_at=None), sort_keys=True)
        if text == self._stored_status:  # the last one this process stored: no write
            return
        value = json.dumps(dict(seen, seen_at=time.time()))
        try:
            self.settings.set(self._status_key, value, wait=False)
        except DATABASE_ERRORS as exc:
            log_skipped("Ollama's status", exc)
            return
        self._stored_status = text

    def _cached_status(self) -> dict[str, Any]:
        try:
            raw = self.settings.get(self._status_key)
        except DATABASE_ERRORS:
            raw = None
        if not raw:
            return {}
        seen = json.loads(raw)
        return {
            "version": seen.get("version"),
            "running": seen.get("running") or [],
            "stale": True,
            "cached_at": iso_time(seen.get("seen_at")),
        }


def _key(name: str) -> str:
    try:
        return parse_model_name(name).key
    except ValueError:
        return name.lower()
