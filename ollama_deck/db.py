"""Tables of Ollama Deck and the engine that reaches them.

Plain SQLAlchemy, not a Flask-SQLAlchemy ``db``: Flask-SQLAlchemy allows one instance per
app (``app.extensions["sqlalchemy"]``), so an extension that brought its own would clash
with the host app's, and our runner threads write outside any app context. Every table
name starts with ``ollama_deck_`` so ours never collide with a host's tables.
Times are stored as UNIX seconds (floats): the same on SQLite and PostgreSQL, no time zones.
"""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import create_engine
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import Float
from sqlalchemy import Index
from sqlalchemy import insert
from sqlalchemy import Integer
from sqlalchemy import select
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "interrupted")
SEQ_COUNTER = "seq"


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
    # Grows with every change of any operation: the SSE event id.
    seq: Mapped[int] = mapped_column(BigInteger, index=True)

    __table_args__ = (
        # At most one active operation per (host, model), held by the database itself so
        # it also holds across worker processes.
        Index(
            "ollama_deck_one_active_per_model",
            "host",
            "model_key",
            unique=True,
            sqlite_where=status.in_(ACTIVE_STATUSES),
            postgresql_where=status.in_(ACTIVE_STATUSES),
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


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and cheap commits."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            # WAL lets readers go on while a pull writes; NORMAL sync is safe with WAL
            # and makes a commit ~10x cheaper than FULL.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create missing tables and the sequence counter; safe to run from several processes."""
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        exists = conn.execute(select(Counter.value).where(Counter.name == SEQ_COUNTER)).first()
    if exists is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(Counter).values(name=SEQ_COUNTER, value=0))
        except IntegrityError:
            pass  # another process created it first
