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
from typing import cast

from flask import current_app
from flask import Flask
from sqlalchemy import Engine

from .config import DeckSettings
from .db import drops_of
from .db import make_engine
from .dbhealth import harden_engine
from .dbhealth import sqlite_file
from .dbhealth import watch_writes
from .schema import ensure_current
from .schema import UPGRADE_COMMAND
from .services.activity import ActivityLog
from .services.bus import make_bus
from .services.desired import DesiredStore
from .services.events import EventHub
from .services.feed import ChangeFeed
from .services.fleet import Fleet
from .services.gpu import detect_gpus
from .services.guesses import GuessThrottle
from .services.hosts import host_entries
from .services.hosts import Hosts
from .services.knowledge import GpuCache
from .services.leases import LeaseStore
from .services.metrics import Observations
from .services.metrics import scrape
from .services.models import ModelService
from .services.ollama import OllamaClient
from .services.polling import PollAnswers
from .services.reconcile import Reconciler
from .services.runner import Runner
from .services.runner import RunnerSettings
from .services.sender import WebhookSender
from .services.sender import worst_case_seconds
from .services.sessions import SessionPolicy
from .services.sessions import SessionStore
from .services.settings import SettingStore
from .services.store import OperationStore
from .services.upkeep import Upkeep
from .services.upkeep import UpkeepSettings
from .services.webhooks import Outbox
from .services.webhooks import WebhookSettings

EXTENSION_KEY = "ollama_deck"
# /metrics asks Ollama itself when no process has heard from it for this many seconds.
PROBE_AFTER = 15.0
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
    outbox: Outbox  # webhook deliveries, written with the changes that are their events
    activity: ActivityLog  # who changed what
    observations: Observations  # this process's share of /metrics, added every few seconds
    upkeep: Upkeep  # sends webhooks, adds the observations, forgets old records
    fleet: Fleet  # actions across hosts; desired model sets planned and applied
    desired: DesiredStore  # the stored desired model set
    reconciler: Reconciler | None  # with OLLAMA_DECK_RECONCILE_SECONDS: applies it itself
    owns_engine: bool = True

    @classmethod
    def build(
        cls,
        settings: DeckSettings,
        url_prefix: str,
        engine: Engine | None,
        owns_engine: bool,
        command_line: str = UPGRADE_COMMAND,
    ) -> DeckState:
        """The parts, over ``engine`` (a Flask-SQLAlchemy one) or over an engine of our own
        (``settings.database_url``, which the caller has filled in). ``command_line``: the
        upgrade command errors about the schema name."""
        if engine is None:
            if not settings.database_url:
                raise RuntimeError("DeckState.build needs an engine or settings.database_url")
            engine = make_engine(settings.database_url)
        if owns_engine:
            # Fault handling changes how connections open: only on a database the deck owns;
            # a host's engine is the host's to configure (e.g. SQLALCHEMY_ENGINE_OPTIONS).
            harden_engine(engine, offload=settings.sqlite_offload)
        watch_writes(engine)  # what /healthz says of writing: from the first write on
        ensure_current(engine, auto_upgrade=settings.auto_upgrade, command_line=command_line)
        hub = EventHub(heartbeat_seconds=settings.sse_heartbeat_seconds)
        names = {url: name for name, url in settings.hosts.items()}  # what operations show
        feed = ChangeFeed(engine, names)
        url = engine.url.render_as_string(hide_password=True)
        bus = make_bus(settings, hub, feed, url)
        outbox = Outbox(engine, webhook_settings(settings))
        store = OperationStore(
            engine, bus, log_lines=settings.log_lines, host_names=names, outbox=outbox
        )
        observations = Observations()

        def make_client(url: str) -> OllamaClient:
            return OllamaClient(
                url,
                connect_timeout=settings.connect_timeout,
                request_timeout=settings.request_timeout,
                stall_timeout=settings.pull_stall_timeout,
                quick_timeout=settings.quick_timeout,
                observer=partial(observations.ollama_request, url),
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
        activity = ActivityLog(engine)
        upkeep = Upkeep(
            engine=engine,
            outbox=outbox,
            sender=WebhookSender(
                secret=settings.webhook_secret,
                timeout=settings.webhook_timeout,
                user_agent=f"ollama-deck/{_version()}",
            ),
            observations=observations,
            activity=activity,
            process_id=runner.runner_id,
            watchers=lambda: hub.watchers,
            settings=UpkeepSettings(
                interval=settings.heartbeat_seconds,
                keep_seconds=settings.keep_finished_hours * 3600,
                keep_count=settings.keep_finished_count,
                lease=worst_case_seconds(settings.webhook_timeout),
                watcher_stale=watcher_stale(settings),
            ),
        )
        fleet = Fleet(hosts, store, runner)
        desired = DesiredStore(engine)
        reconciler = None
        if settings.reconcile_seconds:
            reconciler = Reconciler(
                fleet,
                desired,
                LeaseStore(engine),
                every=settings.reconcile_seconds,
                holder=runner.runner_id,
            )
            runner.chores.append(reconciler.tick)  # once a heartbeat, where the runner runs
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
            PollAnswers(store, versions=hub.versions, live=polls_live(bus, engine)),
            hosts,
            SessionStore(
                engine,
                SessionPolicy(
                    max_age=settings.session_max_age,
                    idle_timeout=settings.session_idle_timeout,
                    recheck_seconds=settings.sse_heartbeat_seconds,
                ),
            ),
            outbox,
            activity,
            observations,
            upkeep,
            fleet,
            desired,
            reconciler,
            owns_engine,
        )

    def scrape(self) -> bytes:
        """The text of /metrics (services/metrics.py)."""
        settings = self.settings
        return scrape(
            self.engine,
            names=self.hosts.names,
            clients={host.url: host.client for host in self.hosts},
            observations=self.observations,
            process=self.runner.runner_id,
            watchers=self.hub.watchers,
            probe_after=max(PROBE_AFTER, 3 * settings.heartbeat_seconds),
            watcher_stale=watcher_stale(settings),
            pending=self.outbox.pending_count,
            version=_version(),
        )

    def close(self) -> None:
        """Stop the runner (running pulls are handed back to the queue) and the engine."""
        self.runner.shutdown()
        self.upkeep.close()
        self.bus.close()
        self.hub.close()
        if self.owns_engine:
            self.engine.dispose()  # a host's engine stays the host's to dispose


def webhook_settings(settings: DeckSettings) -> WebhookSettings:
    return WebhookSettings(
        urls=settings.webhook_urls,
        secret=settings.webhook_secret,
        on_start=settings.webhook_on_start,
        retry_seconds=settings.webhook_retry_seconds,
        retry_hours=settings.webhook_retry_hours,
        timeout=settings.webhook_timeout,
    )


def watcher_stale(settings: DeckSettings) -> float:
    """A process's watcher count older than this is not counted (the process is gone):
    it writes the count at least every third of this, at its flushes."""
    return max(30.0, 6 * settings.heartbeat_seconds)


def _version() -> str:
    from . import __version__

    return __version__


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
        actor: Callable[[], str | None] | None = None,
    ) -> None:
        self.url_prefix = url_prefix
        self.settings = settings or DeckSettings()  # read once, in init_app
        self.db = db  # a Flask-SQLAlchemy instance, or None for a database of the deck's own
        self.bind_key = bind_key
        self.guard = guard  # a view decorator of the host's (e.g. login_required)
        self.guard_healthz = guard_healthz  # False: /healthz answers probes without it
        # Who a request is, for the activity record (None: Flask-Login's current_user).
        self.actor = actor
        # Wrong tokens per client address, in this process (see services/guesses.py for
        # why not in the database); needs no connection, so it is made here.
        self.guesses = GuessThrottle()
        self.owns_db = False  # True when create_app made ``db`` for the deck alone
        self._state: DeckState | None = None
        self._lock = threading.Lock()
        self._runner_started = False
        self._bus_started = False
        self._upkeep_started = False
        self._drops = 0  # drops of the deck's tables seen through the host's metadata
        self._schema_lost = False  # a query found one of the deck's tables gone
        # The receiver that puts the deck's filter into the host's Flask-Migrate (extension.py).
        self.keep_out_of_autogenerate: Callable[..., None] | None = None

    @property
    def built(self) -> bool:
        return self._state is not None

    @property
    def command_line(self) -> str:
        """How this deck's user upgrades its schema: through the host's Flask CLI when the
        deck lives in the host's database."""
        if self.db is not None and not self.owns_db:
            return f"flask {UPGRADE_COMMAND}"
        return UPGRADE_COMMAND

    def _host_drops(self) -> int:
        if self.db is None:
            return 0
        metadata = self.db.metadatas.get(self.bind_key)
        return 0 if metadata is None else drops_of(metadata)

    def schema_lost(self) -> None:
        """A query found a deck table gone (dropped by another process): check the schema
        again, and make it anew, before the next request is served."""
        self._schema_lost = True

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
                drops = self._host_drops()
                self._state = DeckState.build(
                    settings, self.url_prefix, self.engine(app), owns, self.command_line
                )
                self._drops, self._schema_lost = drops, False
            return self._state

    def _recheck_schema(self, state: DeckState) -> None:
        """After the host's ``drop_all()`` (seen through its metadata) or a query that found
        a table gone: the schema is checked again and, where upgrades are on, made anew
        (empty: the tables' rows went with them). With upgrades off, a 503 names the
        command until someone runs it."""
        with self._lock:
            drops = self._host_drops()
            if drops == self._drops and not self._schema_lost:
                return
            ensure_current(
                state.engine,
                auto_upgrade=self.settings.auto_upgrade,
                command_line=self.command_line,
            )
            state.hub.versions.reset()  # the operations it knew went with the tables
            self._drops, self._schema_lost = drops, False

    def activate(self, app: Flask) -> DeckState:
        """Build the parts and, where the settings allow, start the runner in this process."""
        state = self.state(app)
        if self._schema_lost or self._host_drops() != self._drops:
            self._recheck_schema(state)
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
        if not self._upkeep_started:
            with self._lock:
                if not self._upkeep_started:
                    self._upkeep_started = True
                    state.upkeep.start()  # webhooks, this process's share of /metrics
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
            self._runner_started = self._bus_started = self._upkeep_started = False
        if state is not None:
            state.close()


def database_url(app: Flask, settings: DeckSettings | None = None) -> str:
    """``OLLAMA_DECK_DATABASE_URL``, else a SQLite file in the app's instance folder."""
    url = (settings or settings_of(app)).database_url
    if not url:
        os.makedirs(app.instance_path, exist_ok=True)
        url = f"sqlite:///{os.path.join(app.instance_path, 'ollama_deck.db')}"
    return url


def polls_live(bus: Any, engine: Engine) -> Callable[[], bool]:
    """When polls may take an operation's version from the hub's book: the bus has heard
    every commit, and the SQLite file (where it is one) is still the one it was. A file
    removed or unreadable is a 503, as a read would say, never an answer from memory."""
    guard = sqlite_file(engine)
    if guard is None:
        return cast(Callable[[], bool], bus.live)
    return lambda: bus.live() and guard.answering()


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
