"""Per-app state of the deck, kept in ``app.extensions["ollama_deck"]``.

Registering the extension records a :class:`DeckSetup` and nothing else. The working parts
(:class:`DeckState`: engine, store, runner, ...) are built on first use, inside the app, and
the runner starts only in a process that serves the deck: on the first request the deck
handles, or eagerly in each worker of ``ollama-deck serve``. So ``flask routes``, a shell, a
migration or the reloader's parent process never connect, migrate or run pulls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import replace
from functools import partial
from typing import Any

from flask import current_app
from flask import Flask
from sqlalchemy import Engine

from .config import DeckSettings
from .db import make_engine
from .dbhealth import harden_engine
from .dbhealth import watch_writes
from .schema import ensure_current
from .services.bus import make_bus
from .services.events import EventHub
from .services.feed import ChangeFeed
from .services.gpu import detect_gpus
from .services.guesses import GuessThrottle
from .services.hosts import host_entries
from .services.hosts import Hosts
from .services.knowledge import GpuCache
from .services.models import ModelService
from .services.ollama import OllamaClient
from .services.polling import PollAnswers
from .services.runner import Runner
from .services.runner import RunnerSettings
from .services.sessions import SessionPolicy
from .services.sessions import SessionStore
from .services.settings import SettingStore
from .services.store import OperationStore

EXTENSION_KEY = "ollama_deck"
log = logging.getLogger(__name__)


@dataclass
class DeckState:
    """Everything one app's deck holds once it runs: no module-level state anywhere else."""

    settings: DeckSettings
    url_prefix: str
    engine: Engine
    hub: EventHub
    store: OperationStore
    feed: ChangeFeed  # committed changes read back by sequence number (SSE replay)
    client: OllamaClient
    runner: Runner
    models: ModelService
    gpus: GpuCache
    bus: Any  # carries committed events to the hub of every serving process (services/bus.py)
    polls: PollAnswers
    hosts: Hosts
    sessions: SessionStore  # the page's sessions, kept in the database
    owns_engine: bool = True

    @classmethod
    def build(
        cls, settings: DeckSettings, url_prefix: str, engine: Engine | None, owns_engine: bool
    ) -> DeckState:
        """The parts, over ``engine`` (a Flask-SQLAlchemy one) or over an engine of our own
        (``settings.database_url``, which the caller has filled in)."""
        if engine is None:
            if not settings.database_url:
                raise RuntimeError("DeckState.build needs an engine or settings.database_url")
            engine = make_engine(settings.database_url)
        if owns_engine:
            # Fault handling changes how connections open: only on a database the deck owns;
            # a host's engine is the host's to configure (e.g. SQLALCHEMY_ENGINE_OPTIONS).
            harden_engine(engine, offload=settings.sqlite_offload)
        watch_writes(engine)  # what /healthz says of writing: from the first write on
        ensure_current(engine, auto_upgrade=settings.auto_upgrade)
        hub = EventHub(heartbeat_seconds=settings.sse_heartbeat_seconds)
        names = {url: name for name, url in settings.hosts.items()}  # what operations show
        feed = ChangeFeed(engine, names)
        url = engine.url.render_as_string(hide_password=True)
        bus = make_bus(settings, hub, feed, url)
        store = OperationStore(engine, bus, log_lines=settings.log_lines, host_names=names)

        def make_client(url: str) -> OllamaClient:
            return OllamaClient(
                url,
                connect_timeout=settings.connect_timeout,
                request_timeout=settings.request_timeout,
                stall_timeout=settings.pull_stall_timeout,
                quick_timeout=settings.quick_timeout,
            )

        settings_store = SettingStore(engine)
        hosts = Hosts(
            host_entries(
                settings.hosts,
                make_client,
                lambda client, url: ModelService(client, engine, store, settings_store, url),
            )
        )
        default = hosts.default
        runner = Runner(
            store,
            default.client,
            RunnerSettings.from_settings(default.url, settings),
            clients={host.url: host.client for host in hosts},
        )
        return cls(
            settings,
            url_prefix,
            engine,
            hub,
            store,
            feed,
            default.client,
            runner,
            default.models,
            GpuCache(partial(detect_gpus, configured_bytes=settings.gpu_memory)),
            bus,
            PollAnswers(store),
            hosts,
            SessionStore(
                engine,
                SessionPolicy(
                    max_age=settings.session_max_age,
                    idle_timeout=settings.session_idle_timeout,
                    recheck_seconds=settings.sse_heartbeat_seconds,
                ),
            ),
            owns_engine,
        )

    def close(self) -> None:
        """Stop the runner (running pulls are handed back to the queue) and the engine."""
        self.runner.shutdown()
        self.bus.close()
        self.hub.close()
        if self.owns_engine:
            self.engine.dispose()  # a host's engine stays the host's to dispose


class DeckSetup:
    """What ``init_app`` records: the settings, where the deck mounts and which database
    it uses."""

    def __init__(
        self,
        url_prefix: str,
        *,
        settings: DeckSettings | None = None,
        db: Any = None,
        bind_key: str | None = None,
        guard: Callable[..., Any] | None = None,
        guard_healthz: bool = False,
    ) -> None:
        self.url_prefix = url_prefix
        self.settings = settings or DeckSettings()  # read once, in init_app
        self.db = db  # a Flask-SQLAlchemy instance, or None for a database of the deck's own
        self.bind_key = bind_key
        self.guard = guard  # a view decorator of the host's (e.g. login_required)
        self.guard_healthz = guard_healthz  # False: /healthz answers probes without it
        # Wrong tokens per client address, in this process (see services/guesses.py for
        # why not in the database); needs no connection, so it is made here.
        self.guesses = GuessThrottle()
        self.owns_db = False  # True when create_app made ``db`` for the deck alone
        self._state: DeckState | None = None
        self._lock = threading.Lock()
        self._runner_started = False
        self._bus_started = False

    @property
    def built(self) -> bool:
        return self._state is not None

    def engine(self, app: Flask) -> Engine | None:
        """The engine of the Flask-SQLAlchemy instance (or its bind), or None for our own."""
        if self.db is None:
            return None
        with app.app_context():
            engines = self.db.engines
            if self.bind_key not in engines:
                raise RuntimeError(
                    f"OllamaDeck(bind_key={self.bind_key!r}): the app's SQLALCHEMY_BINDS "
                    "has no such key"
                )
            return engines[self.bind_key]

    def state(self, app: Flask) -> DeckState:
        """The working parts, built on first use (connects and upgrades the schema)."""
        state = self._state
        if state is not None:
            return state
        with self._lock:
            if self._state is None:
                settings = self.settings
                if self.db is None:
                    settings = replace(settings, database_url=database_url(app, settings))
                owns = self.db is None or self.owns_db
                self._state = DeckState.build(settings, self.url_prefix, self.engine(app), owns)
            return self._state

    def activate(self, app: Flask) -> DeckState:
        """Build the parts and, where the settings allow, start the runner in this process."""
        state = self.state(app)
        if not self._runner_started and self.settings.start_runner:
            with self._lock:
                if not self._runner_started:
                    self._runner_started = True
                    state.runner.start()
        if not self._bus_started:
            with self._lock:
                if not self._bus_started:
                    self._bus_started = True
                    state.bus.start()  # this process serves: its watchers need events
        return state

    def end_streams(self) -> None:
        """End every event stream of this process now (the server is stopping): each ends
        cleanly and is counted out, instead of holding the stop until clients hang up."""
        state = self._state
        if state is not None:
            state.hub.close()

    def close(self) -> None:
        with self._lock:
            state, self._state = self._state, None
            self._runner_started = self._bus_started = False
        if state is not None:
            state.close()


def database_url(app: Flask, settings: DeckSettings | None = None) -> str:
    """``OLLAMA_DECK_DATABASE_URL``, else a SQLite file in the app's instance folder."""
    url = (settings or settings_of(app)).database_url
    if not url:
        os.makedirs(app.instance_path, exist_ok=True)
        url = f"sqlite:///{os.path.join(app.instance_path, 'ollama_deck.db')}"
    return url


def setup_of(app: Flask) -> DeckSetup:
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("OllamaDeck is not registered on this app") from None


def settings_of(app: Flask) -> DeckSettings:
    """The settings of the deck registered on ``app``, read once when it was registered."""
    return setup_of(app).settings


def current_settings() -> DeckSettings:
    """The settings of the current app's deck; cheap, and builds nothing."""
    return setup_of(current_app).settings


def deck() -> DeckState:
    """The deck of the current app."""
    return setup_of(current_app).state(current_app)


def activate_deck() -> None:
    """A ``before_request`` of every deck blueprint: the deck runs where it serves."""
    setup_of(current_app).activate(current_app)
