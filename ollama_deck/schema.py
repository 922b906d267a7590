"""The deck's schema under its own Alembic migrations (``ollama_deck/migrations``).

Upgrades run under a database lock so that several processes starting at once never race:
a PostgreSQL advisory lock, or SQLite's write lock (``BEGIN IMMEDIATE``) held for the whole
upgrade. The version is kept in ``ollama_deck_alembic_version``, apart from any host's
Alembic history. A database made by 0.1.0, which created its tables without Alembic, is
stamped with the first revision (its schema) and upgraded from there.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from .db import VERSION_TABLE
from .errors import DeckError

BASELINE = "0001"  # the schema that 0.1.0 created with create_all
# Any fixed 64-bit number; it names the deck's upgrade lock among PostgreSQL advisory locks.
ADVISORY_LOCK_KEY = 0x0D3C_0011_A3A0


class SchemaOutdated(DeckError):
    """Automatic upgrades are off and the database is behind the installed deck."""

    status = 503
    code = "schema_outdated"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "ollama_deck:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of the deck ships."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty (or 0.1.0) database."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the database of ``engine`` to ``revision`` under a lock; return where it is."""
    locking = _locking_engine(engine)
    try:
        with locking.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # Held until this transaction ends; PostgreSQL's DDL is transactional, so
                # a second process waits here and then finds the schema done.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            config = _config(conn)
            if _made_by_0_1_0(conn):
                command.stamp(config, BASELINE)
            command.upgrade(config, revision)
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision() or ""
    finally:
        if locking is not engine:
            locking.dispose()


def ensure_current(engine: Engine, *, auto_upgrade: bool) -> None:
    """Upgrade if needed (or, with upgrades off, refuse to run on an outdated schema)."""
    if is_current(engine):
        return  # the common case: one read, no lock
    if not auto_upgrade:
        raise SchemaOutdated(
            "the database schema of Ollama Deck is not up to date; "
            "run `ollama-deck db upgrade` (or `flask ollama-deck db upgrade`)"
        )
    upgrade(engine)


def _made_by_0_1_0(conn: Connection) -> bool:
    names = set(inspect(conn).get_table_names())
    return "ollama_deck_operation" in names and VERSION_TABLE not in names


def _locking_engine(engine: Engine) -> Engine:
    """For SQLite, an engine whose transactions start with ``BEGIN IMMEDIATE``.

    Python's sqlite3 module starts transactions late (and never for DDL), so SQLite would
    not be locked while the migration reads the version and creates tables. With the
    driver's own transaction handling off, each transaction takes the write lock up front.
    """
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine  # in memory: one process only, and a second engine would be another db
    locking = create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": 60})

    @event.listens_for(locking, "connect")
    def _no_driver_transactions(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.isolation_level = None

    @event.listens_for(locking, "begin")
    def _begin_immediate(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return locking
