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

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Column
from sqlalchemy import create_engine
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import Float
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import Text
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
    status: Mapped[str] = mapped_column(String(16), index=True)
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
    seq: Mapped[int] = mapped_column(BigInteger, index=True)

    __table_args__ = (
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


class OperationLog(Base):
    """One log line of an operation; only the newest few hundred per operation are kept."""

    __tablename__ = "ollama_deck_operation_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operation_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


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


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class, typed as one (``__table__`` is a FromClause to
    type checkers), for the modules that query with SQLAlchemy Core."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def register_tables(metadata: MetaData) -> None:
    """Add the deck's tables, and its Alembic version table, to a host's ``metadata``.

    A host's Flask-Migrate compares its metadata with the database: tables it does not
    know it proposes to drop. Known, and made by our migrations to match, they stay silent.
    """
    for table in Base.metadata.sorted_tables:
        if table.name not in metadata.tables:  # a second app on the same db: already there
            table.to_metadata(metadata)
    if VERSION_TABLE not in metadata.tables:
        # As Alembic creates it: one VARCHAR(32) primary key.
        Table(VERSION_TABLE, metadata, Column("version_num", String(32), primary_key=True))


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
