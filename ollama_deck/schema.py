"""The deck's schema under its own Alembic migrations (``ollama_deck/migrations``).

Upgrades run under a database lock so that several processes starting at once never race:
a PostgreSQL advisory lock, or SQLite's write lock (``BEGIN IMMEDIATE``) held for the whole
upgrade. The version is kept in ``ollama_deck_alembic_version``, apart from any host's
Alembic history.

Tables the migrations did not make are adopted: a database made by 0.1.0 (which created
its tables without Alembic), by a host's ``db.create_all()`` or by a host migration that
copied the deck's tables. The migrations run over them, and each step that creates a table
or an index skips it when it is there with the right shape (``migrations/ops.py``); at the
end the deck's tables are compared with what this version declares. A difference stops
the upgrade (nothing is changed: the upgrade is one transaction) with a
:class:`SchemaMismatch` that says what differs and what to run.
"""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import func
from sqlalchemy import inspect
from sqlalchemy import MetaData
from sqlalchemy import select
from sqlalchemy import Table
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError
from sqlalchemy.pool import NullPool

from .db import Base
from .db import is_deck_table
from .db import Operation
from .db import TABLE_PREFIX
from .db import VERSION_TABLE
from .errors import DeckError

# Any fixed 64-bit number; it names the deck's upgrade lock among PostgreSQL advisory locks.
ADVISORY_LOCK_KEY = 0x0D3C_0011_A3A0
# What the standalone service's users run; embedded, DeckSetup names the flask command.
UPGRADE_COMMAND = "ollama-deck db upgrade"
ADOPTED = "ollama_deck_adopted"  # Config.attributes: tables a migration found made already


class SchemaOutdated(DeckError):
    """Automatic upgrades are off and the database is behind the installed deck."""

    status = 503
    code = "schema_outdated"


class SchemaMismatch(DeckError):
    """The deck's tables are there but not as this version needs them; nothing changed."""

    status = 503
    code = "schema_mismatch"


class TablesDiffer(Exception):
    """A migration step found a deck table made already, but with another shape."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UpgradeFailed(DeckError):
    """A migration could not be applied (an unknown revision, a database error)."""

    status = 503
    code = "schema_upgrade_failed"


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
    """The revision the database is at; None for an empty or unversioned database."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def unversioned(engine: Engine) -> bool:
    """Whether the deck's tables are there without a version (what ``upgrade`` adopts)."""
    with engine.connect() as conn:
        return _revision(conn) is None and bool(_deck_tables(conn) - {VERSION_TABLE})


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def upgrade(engine: Engine, revision: str = "head", *, command_line: str = UPGRADE_COMMAND) -> str:
    """Bring the database of ``engine`` to ``revision`` under a lock; return where it is.

    Deck tables without a version (made by 0.1.0, a host's create_all or a host's own
    migration) are adopted; SchemaMismatch when they differ from what the deck needs,
    UpgradeFailed when a migration cannot run. ``command_line`` is what the user runs
    to try again, named in those messages.
    """
    locking = _locking_engine(engine)
    try:
        with locking.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                # Held until this transaction ends; PostgreSQL's DDL is transactional, so
                # a second process waits here and then finds the schema done.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            config = _config(conn)
            config.attributes[ADOPTED] = []
            adopting = _revision(conn) is None and bool(_deck_tables(conn) - {VERSION_TABLE})
            try:
                command.upgrade(config, revision)
            except TablesDiffer as exc:
                raise SchemaMismatch(
                    _mismatch_message(conn, engine, exc.problems, command_line)
                ) from None
            except CommandError as exc:  # e.g. an unknown revision: Alembic's words
                raise UpgradeFailed(f"ollama-deck: {exc}") from None
            except DatabaseError as exc:  # a step the database refused: all rolled back
                raise UpgradeFailed(
                    f"ollama-deck: upgrading the schema of {describe_url(engine)} failed and "
                    f"changed nothing: {_first_line(exc)}; fix that and run `{command_line}`"
                ) from exc
            after = _revision(conn) or ""
            if (adopting or config.attributes[ADOPTED]) and after == head_revision():
                problems = schema_differences(conn)
                if problems:
                    raise SchemaMismatch(_mismatch_message(conn, engine, problems, command_line))
            return after
    finally:
        if locking is not engine:
            locking.dispose()


def ensure_current(
    engine: Engine, *, auto_upgrade: bool, command_line: str = UPGRADE_COMMAND
) -> None:
    """Upgrade if needed (or, with upgrades off, refuse to run on an outdated schema)."""
    if is_current(engine):
        return  # the common case: one read, no lock
    if not auto_upgrade:
        raise SchemaOutdated(
            f"the database schema of Ollama Deck is not up to date; run `{command_line}`"
        )
    upgrade(engine, command_line=command_line)


def describe_url(engine_or_url: Engine | str) -> str:
    """A database URL as the deck shows it: the password hidden."""
    url = make_url(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url.url
    return url.render_as_string(hide_password=True)


# -- how the database differs from the deck's declarations ---------------------------------


def schema_differences(conn: Connection, metadata: MetaData | None = None) -> list[str]:
    """How the deck's tables in the database differ from ``metadata`` (default: the
    tables this version declares), one phrase per difference; [] when they match."""
    include = _deck_tables_only
    if metadata is not None:
        names = set(metadata.tables)
        include = _only(names)
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return [describe_difference(d) for d in compare_metadata(context, metadata or Base.metadata)]


def table_differences(conn: Connection, table: Table) -> list[str]:
    """How the table of the same name in the database lacks ``table``'s columns or differs
    in them. Extra columns are no difference here: a later migration may have added them
    (the comparison at the end of the upgrade sees every column); indexes are compared by
    their own steps."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": _columns_of(table.name)}
    )
    found = compare_metadata(context, table.metadata)
    return [describe_difference(d) for d in found if _first(d)[0] != "remove_column"]


def _deck_tables_only(_obj: Any, name: str | None, type_: str, _r: bool, _c: Any) -> bool:
    # The version table is Alembic's own, and the host's tables are none of the deck's business.
    return type_ != "table" or (name is not None and is_deck_table(name) and name != VERSION_TABLE)


def _only(names: set[str]) -> Any:
    def include(_obj: Any, name: str | None, type_: str, _r: bool, _c: Any) -> bool:
        return type_ != "table" or name in names

    return include


def _columns_of(table_name: str) -> Any:
    def include(_obj: Any, name: str | None, type_: str, _r: bool, _c: Any) -> bool:
        if type_ == "table":
            return name == table_name
        return type_ == "column"

    return include


def _first(diff: Any) -> tuple[Any, ...]:
    # compare_metadata gives tuples, and lists of tuples for changes of one column.
    return diff[0] if isinstance(diff, list) else diff


def describe_difference(diff: Any) -> str:
    """One of compare_metadata's differences in words (database first, declaration second)."""
    item = _first(diff)
    kind = item[0]
    if kind == "add_table":
        return f"table {item[1].name} is missing"
    if kind == "remove_table":
        return f"table {item[1].name} is not one of this version's"
    if kind == "add_column":
        return f"column {item[2]}.{item[3].name} is missing"
    if kind == "remove_column":
        return f"column {item[2]}.{item[3].name} is not one of this version's"
    if kind in ("add_index", "remove_index"):
        index = item[1]
        columns = ", ".join(c.name for c in index.columns) or "expressions"
        where = "is missing" if kind == "add_index" else "is not one of this version's"
        return f"index {index.name} on {index.table.name} ({columns}) {where}"
    if kind in ("add_constraint", "remove_constraint"):
        constraint = item[1]
        where = "is missing" if kind == "add_constraint" else "is not one of this version's"
        return f"constraint {constraint.name or ''} on {constraint.table.name} {where}".replace(
            "  ", " "
        )
    if kind == "modify_nullable":
        _, _, table, column, _, existing, wanted = item
        said = {True: "NULL", False: "NOT NULL"}
        return f"column {table}.{column} is {said[existing]}, should be {said[wanted]}"
    if kind == "modify_type":
        _, _, table, column, _, existing, wanted = item
        return f"column {table}.{column} is {existing}, should be {wanted}"
    if kind == "modify_default":
        _, _, table, column = item[:4]
        return f"column {table}.{column} has another default"
    return " ".join(str(part) for part in item if part is not None)


def _mismatch_message(
    conn: Connection, engine: Engine, problems: list[str], command_line: str
) -> str:
    tables = sorted(_deck_tables(conn) - {VERSION_TABLE})
    head = head_revision()
    message = (
        f"ollama-deck: the deck's tables in {describe_url(engine)} were not made by its "
        f"migrations and differ from what this version (revision {head}) needs: "
        f"{'; '.join(problems)}. Nothing was changed."
    )
    operations = 0
    if Operation.__tablename__ in tables:
        operations = conn.execute(select(func.count()).select_from(Operation)).scalar_one()
    if operations:
        return (
            f"{message} They hold {operations} operations: change them to match (or move "
            f"them aside) and run `{command_line}` again."
        )
    drops = " ".join(f"DROP TABLE {name};" for name in sorted(tables) + [VERSION_TABLE])
    return (
        f"{message} They hold no operations: drop them ({drops}) and run `{command_line}`, "
        "which makes them anew."
    )


def _deck_tables(conn: Connection) -> set[str]:
    return {name for name in inspect(conn).get_table_names() if is_deck_table(name)}


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or ["database error"])[0]


def missing_table(exc: BaseException) -> bool:
    """Whether a database error says one of the deck's tables is gone (dropped by someone
    else, e.g. a host's ``drop_all()`` in another process)."""
    message = _first_line(exc).lower()
    return TABLE_PREFIX in message and ("no such table" in message or "does not exist" in message)


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
