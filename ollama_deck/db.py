"""Tables of Ollama Deck, and the engine settings of a database the deck owns.

The tables are declared once here, on the deck's own metadata. Embedded with a host's
Flask-SQLAlchemy ``db``, copies of them (and of the deck's Alembic version table) are added
to the host's metadata by :func:`register_tables`, so the host's autogenerate knows them;
queries are compiled by table name, so the same ``Table`` objects serve either way. Every
table name starts with ``ollama_deck_`` so ours never collide with a host's tables.
Times are stored as UNIX seconds (floats): the same on SQLite and PostgreSQL, no time zones.
The schema itself is made and changed only by the migrations in ``ollama_deck/migrations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import create_engine
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import Float
from sqlalchemy import func
from sqlalchemy import Index
from sqlalchemy import insert
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import select
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .lifecycle import ACTIVE
from .lifecycle import FINAL
from .lifecycle import Status

ACTIVE_STATUSES = ACTIVE  # names kept for the modules that import them from here
FINAL_STATUSES = FINAL
SEQ_COUNTER = "seq"
# The deck's own Alembic history lives here, apart from any host's ``alembic_version``.
VERSION_TABLE = "ollama_deck_alembic_version"
TABLE_PREFIX = "ollama_deck_"
# Keys of a host metadata's ``info``: listeners attached; drops of the deck's tables seen.
LISTENING = "ollama_deck_listening"
DROPS = "ollama_deck_drops"


class Base(DeclarativeBase):
    pass


class Operation(Base):
    """A long action (a pull, a load) with a UUID; its newest state lives here."""

    __tablename__ = "ollama_deck_operation"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(600))
    # Lower-case display name: Ollama matches local names case-insensitively.
    model_key: Mapped[str] = mapped_column(String(600))
    host: Mapped[str] = mapped_column(String(600))
    status: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str | None] = mapped_column(String(16))
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    completed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    speed: Mapped[float | None] = mapped_column(Float)
    eta_seconds: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    runner_id: Mapped[str | None] = mapped_column(String(120))
    # The earliest start its request asked for (``not_before``), if any.
    not_before: Mapped[float | None] = mapped_column(Float)
    # Scheduled, or paused by its host's window: when it is queued again.
    starts_at: Mapped[float | None] = mapped_column(Float)
    # Paused: who paused it (lifecycle.Hold); running: a pause asked, for its runner to do.
    paused_by: Mapped[str | None] = mapped_column(String(16))
    paused_at: Mapped[float | None] = mapped_column(Float)
    # Grows with every change of any operation: the SSE event id.
    seq: Mapped[int] = mapped_column(BigInteger)
    # A group's children as they were when the group was last written: ids and outcomes,
    # as JSON (services/groups.py), so every read of a group renders it without a join.
    children: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        # Named here, not by a naming convention: in a host's metadata the host's convention
        # would rename them, and create_all would then make other names than the migrations.
        Index("ix_ollama_deck_operation_status", "status"),
        Index("ix_ollama_deck_operation_seq", "seq"),
        # The listing, newest first, and the purge of finished ones (migration 0007).
        Index("ix_ollama_deck_operation_created_at", "created_at", "id"),
        Index("ix_ollama_deck_operation_finished_at", "finished_at", "seq"),
        # Held by the database itself, so they also hold across worker processes. At most
        # one operation per (host, model) that new requests join: an active one with no
        # cancel asked for (a pull after a cancel makes a new one) ...
        Index(
            "ollama_deck_one_joinable_per_model",
            "host",
            "model_key",
            unique=True,
            sqlite_where=status.in_(ACTIVE_STATUSES) & ~cancel_requested,
            postgresql_where=status.in_(ACTIVE_STATUSES) & ~cancel_requested,
        ),
        # ... and at most one running: one stream from Ollama per model, so that new one
        # waits queued until the cancelled stream has closed.
        Index(
            "ollama_deck_one_running_per_model",
            "host",
            "model_key",
            unique=True,
            sqlite_where=status == Status.RUNNING,
            postgresql_where=status == Status.RUNNING,
        ),
    )


class GroupMember(Base):
    """A child of a group operation. A child may belong to several groups: a group that
    found the operation it needed already active joined it."""

    __tablename__ = "ollama_deck_group_member"

    group_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    operation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the children's order in the group

    __table_args__ = (
        # Which groups a changed operation belongs to. Named here, not by a convention.
        Index("ix_ollama_deck_group_member_operation_id", "operation_id"),
    )


class OperationLog(Base):
    """One log line of an operation; only the newest few hundred per operation are kept."""

    __tablename__ = "ollama_deck_operation_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operation_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_ollama_deck_operation_log_operation_id", "operation_id"),)


class InstalledModel(Base):
    """The last model list seen from an Ollama host, shown (stale) while it is down."""

    __tablename__ = "ollama_deck_installed_model"

    host: Mapped[str] = mapped_column(String(600), primary_key=True)
    name: Mapped[str] = mapped_column(String(600), primary_key=True)
    data: Mapped[str] = mapped_column(Text)  # the model's JSON as Ollama sent it
    seen_at: Mapped[float] = mapped_column(Float)


class Setting(Base):
    """A key/value setting that users change at run time, e.g. the active model."""

    __tablename__ = "ollama_deck_setting"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class Counter(Base):
    """Named counters; ``seq`` orders every change across all operations."""

    __tablename__ = "ollama_deck_counter"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class DeckSession(Base):
    """A signed-in page (the session cookie ``POST /api/session`` gives for the token).

    Neither the session id nor the token is stored: a copy of this table opens nothing.
    ``token_check`` is an HMAC of the token keyed with the session id, so a session made
    under another token fails the check, and without the id it says nothing of the token.
    """

    __tablename__ = "ollama_deck_session"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the id, hex
    token_check: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    # The last use, refreshed at most every so many seconds (see services/sessions.py).
    seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)  # absolute: created_at + the max age
    # The name of the token it was opened with (its role follows that name's, as now
    # configured); None for sessions from before named tokens: OLLAMA_DECK_TOKEN's.
    token_name: Mapped[str | None] = mapped_column(String(40))


class Tally(Base):
    """The numbers behind /metrics that no single process knows, kept so that every
    worker answers the same.

    Totals (finished operations, bytes pulled, the duration histogram's buckets) grow in
    the transaction that ends an operation, so they survive the purge of old operations;
    each process adds its Ollama request timings and writes its SSE watcher count every
    few seconds. ``labels`` is the labels' JSON with sorted keys; a histogram keeps one
    row per bucket (not cumulative) with the bound as label ``le``.
    """

    __tablename__ = "ollama_deck_tally"

    metric: Mapped[str] = mapped_column(String(60), primary_key=True)
    labels: Mapped[str] = mapped_column(String(1000), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class WebhookDelivery(Base):
    """One webhook to send (the outbox): an event of an operation for one configured URL.

    Written in the transaction that changes the operation, so no event is lost between the
    change and the send. A worker that sends it first claims it until ``claimed_until``
    (a lease: a worker that dies mid-send leaves it to another once that passes); retries
    keep the id, which receivers use to drop duplicates.
    """

    __tablename__ = "ollama_deck_webhook_delivery"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    operation_id: Mapped[str] = mapped_column(String(36))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the exact bytes sent (and signed), as text
    status: Mapped[str] = mapped_column(String(16))  # lifecycle.DeliveryStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    claimed_until: Mapped[float | None] = mapped_column(Float)
    last_attempt_at: Mapped[float | None] = mapped_column(Float)
    last_status: Mapped[int | None] = mapped_column(Integer)  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[float | None] = mapped_column(Float)  # delivered or given up

    __table_args__ = (
        # What the senders ask every few seconds: pending deliveries that are due.
        Index("ollama_deck_webhook_due", "status", "next_attempt_at"),
        # Named here, not by a convention: a host's naming convention must not rename them.
        Index("ix_ollama_deck_webhook_delivery_operation_id", "operation_id"),
        Index("ix_ollama_deck_webhook_delivery_created_at", "created_at"),
    )


class Activity(Base):
    """One state-changing request: when, what, its outcome, from where and who."""

    __tablename__ = "ollama_deck_activity"

    # SQLite autoincrements only an INTEGER PRIMARY KEY (its rowid).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(600))  # a model name, usually
    host: Mapped[str | None] = mapped_column(String(600))  # the Ollama host's name
    operation_id: Mapped[str | None] = mapped_column(String(36))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1000))
    status: Mapped[int] = mapped_column(Integer)  # the HTTP status answered
    error: Mapped[str | None] = mapped_column(String(60))  # the error's code, if any
    # Who: the host app's user, else the token's name, else "local".
    actor: Mapped[str] = mapped_column(String(200))
    token: Mapped[str | None] = mapped_column(String(40))  # the token's name, if one was used
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_ollama_deck_activity_at", "at"),
        Index("ix_ollama_deck_activity_action", "action"),
        Index("ix_ollama_deck_activity_actor", "actor"),
    )


class DesiredModels(Base):
    """A stored desired model set (``PUT /api/desired-models``): which models each host
    should have. One row, named ``default``; the document is the set's JSON."""

    __tablename__ = "ollama_deck_desired_models"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """A named lease: while ``expires_at`` is in the future only ``holder`` does the work it
    names (the reconciler), whichever worker or machine it runs in."""

    __tablename__ = "ollama_deck_lease"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class, typed as one (``__table__`` is a FromClause to
    type checkers), for the modules that query with SQLAlchemy Core."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def is_deck_table(name: str) -> bool:
    """Whether a table of that name is the deck's (its version table included)."""
    return name.startswith(TABLE_PREFIX)


def deck_table_names() -> set[str]:
    """Every table the deck's migrations make, its version table included."""
    return {table.name for table in Base.metadata.sorted_tables} | {VERSION_TABLE}


def register_tables(metadata: MetaData) -> None:
    """Add the deck's tables, and its Alembic version table, to a host's ``metadata``.

    A host's Flask-Migrate compares its metadata with the database: tables it does not
    know it proposes to drop. Known, and made by our migrations to match, they stay silent.
    Known, they are also what the host's ``create_all()`` and ``drop_all()`` make and drop:
    the listeners below keep the deck's history right when they do.
    """
    for table in Base.metadata.sorted_tables:
        if table.name not in metadata.tables:  # a second app on the same db: already there
            table.to_metadata(metadata)
    if VERSION_TABLE not in metadata.tables:
        # As Alembic creates it: one VARCHAR(32) primary key.
        Table(VERSION_TABLE, metadata, Column("version_num", String(32), primary_key=True))
    if not metadata.info.get(LISTENING):  # once per metadata, however many apps share it
        metadata.info[LISTENING] = True
        event.listen(metadata, "after_create", _after_host_create)
        event.listen(metadata, "after_drop", _after_host_drop)


def _after_host_create(metadata: MetaData, connection: Connection, **kw: Any) -> None:
    """The host's ``create_all()`` made deck tables: finish what the migrations would do.

    It made them from the deck's own declarations, which are its newest revision, so when
    it made all of them at once (a new database) that revision is stamped, and the
    sequence counter gets its row, as after ``db upgrade``. Made only in part (some were
    there), they are left to ``db upgrade``, which adopts what matches and says what not.
    """
    created = {table.name for table in kw.get("tables", ()) if is_deck_table(table.name)}
    if not created:
        return
    if Counter.__tablename__ in created:
        counter = metadata.tables[Counter.__tablename__]
        seq = highest_seq(connection, metadata)
        connection.execute(insert(counter).values(name=SEQ_COUNTER, value=seq))
    if created >= deck_table_names():
        from .schema import head_revision

        version = metadata.tables[VERSION_TABLE]
        connection.execute(insert(version).values(version_num=head_revision()))


def highest_seq(connection: Connection, metadata: MetaData | None = None) -> int:
    """The highest sequence number operations and log lines hold (0 if none): where a
    counter made anew must start, so that event ids never go back."""
    tables = (metadata or Base.metadata).tables
    return max(
        connection.execute(select(func.coalesce(func.max(tables[name].c.seq), 0))).scalar_one()
        for name in (Operation.__tablename__, OperationLog.__tablename__)
    )


def _after_host_drop(metadata: MetaData, _connection: Connection, **kw: Any) -> None:
    """The host's ``drop_all()`` dropped deck tables: the decks of this process check
    their schema again before they next serve (see DeckSetup.activate)."""
    if any(is_deck_table(table.name) for table in kw.get("tables", ())):
        metadata.info[DROPS] = metadata.info.get(DROPS, 0) + 1


def drops_of(metadata: MetaData) -> int:
    """How many times the deck's tables were dropped through ``metadata`` in this process."""
    return int(metadata.info.get(DROPS, 0))


IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def without_deck_tables(include_object: IncludeObject | None = None) -> IncludeObject:
    """An Alembic ``include_object`` that leaves the deck's tables out of a host's
    autogenerate, then asks the host's own ``include_object`` (if any) about the rest.

    The deck's tables are the deck's migrations' business: a host's ``flask db migrate``
    must neither create them (run before the deck's upgrade) nor drop or change them.
    """

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name is not None and is_deck_table(name):
            return False
        if include_object is None:
            return True
        return include_object(obj, name, type_, reflected, compare_to)

    include.ollama_deck = True  # type: ignore[attr-defined]
    return include


def sqlite_engine_options() -> dict:
    """Engine options for SQLite: usable from the runner threads, patient with writers."""
    return {"connect_args": {"check_same_thread": False, "timeout": 30}}


def tune_sqlite(engine: Engine) -> None:
    """WAL, cheap commits and a busy timeout on every new connection of ``engine``.

    Only for a database the deck owns: journal mode is a property of the file, and a host's
    database is the host's to configure.
    """

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
        cur = dbapi_conn.cursor()
        # The busy timeout first: connections opening while others write must wait, not fail.
        cur.execute("PRAGMA busy_timeout=30000")
        # WAL lets readers go on while a pull writes. It is a property of the file, set once;
        # asking again on every connection can meet "database is locked" mid-write.
        if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL sync is safe with WAL and makes a commit ~10x cheaper than FULL.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def make_engine(url: str) -> Engine:
    """An engine for a database the deck owns; SQLite gets WAL, PostgreSQL pre-ping."""
    if url.startswith("sqlite"):
        engine = create_engine(url, **sqlite_engine_options())
        tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)
