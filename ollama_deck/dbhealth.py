"""Database fault handling on the engine: heal after faults, never freeze a gevent worker.

``harden_engine(engine)`` attaches listeners so that:

- a connection that saw a fault (a dropped server connection; on SQLite a file that was
  read-only, unreachable or broken) is thrown away, so the service heals by itself once
  the database is writable again instead of keeping bad connections in its pool;
- a pooled connection is checked before use: PostgreSQL and others are pinged; SQLite
  connections are checked against the file they opened, so a deleted database (or its
  directory) fails loudly instead of taking writes into an unlinked file, and a connection
  opened while the file was read-only is replaced once it is writable;
- after the first connection, SQLite never creates the database file again: a file that
  vanished is an error, not a fresh empty database;
- under gevent, a SQLite statement that finds the database locked waits in gevent's thread
  pool: SQLite waits for a lock inside C code (its busy timeout), which would otherwise
  stop the worker's event loop, and every request on it, for as long as another process
  holds the lock.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import InternalError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLite errors after which a connection must not be reused: it was opened read-only, or
# its file or directory changed under it. A fresh connection may work where it cannot.
SQLITE_BROKEN = (
    "readonly database",
    "disk i/o error",
    "unable to open database file",
    "database file is gone",
    "no such table",
)
IDENTITY = "ollama_deck_file"  # connection record info: (st_dev, st_ino) it opened
READ_ONLY = "ollama_deck_read_only"  # connection record info: opened while not writable
# Faults of the database itself (as opposed to bugs such as an IntegrityError): unwritable,
# locked, gone, unreachable, out of pooled connections.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    InternalError,
    PoolTimeout,
    DisconnectionError,
)
log = logging.getLogger(__name__)
SQLITE_BUSY = 5  # the primary result code of "database is locked"
# The execution option of a transaction that must not wait for a lock (see no_lock_wait).
NO_LOCK_WAIT = "ollama_deck_no_lock_wait"
# PostgreSQL's bound on such a transaction's lock waits, in milliseconds.
PG_LOCK_WAIT_MS = 100


def harden_engine(engine: Engine, *, offload: bool = True) -> None:
    """Attach the fault handling described in this module's docstring to ``engine``;
    ``offload`` (the ``OLLAMA_DECK_SQLITE_OFFLOAD`` setting) moves lock waits off gevent's
    event loop."""
    if getattr(engine, "_ollama_deck_hardened", False):
        return
    engine._ollama_deck_hardened = True  # type: ignore[attr-defined]
    if engine.dialect.name != "sqlite":
        # Disconnects are detected by the driver; a ping on checkout catches the rest.
        engine.pool._pre_ping = True  # type: ignore[attr-defined]
        return
    event.listen(engine, "handle_error", _sqlite_error)
    path = sqlite_path(engine)
    if path is not None:
        guard = SqliteFile(path)
        engine._ollama_deck_sqlite_file = guard  # type: ignore[attr-defined]
        event.listen(engine, "do_connect", guard.before_connect)
        event.listen(engine, "connect", guard.after_connect)
        event.listen(engine, "checkout", guard.checkout)
        guard.guard_closing(engine.dialect)
    run = gevent_runner() if offload else None
    if run is not None:
        waits = LockWaits(run)
        waits.attach(engine)
        engine._ollama_deck_lock_waits = waits  # type: ignore[attr-defined]


def sqlite_path(engine: Engine) -> str | None:
    """The absolute path of an engine's SQLite file; None for memory and URI databases."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def _sqlite_error(context: ExceptionContext) -> None:
    """Treat SQLite file faults as disconnects: SQLAlchemy then discards the pool."""
    message = str(context.original_exception).lower()
    if any(part in message for part in SQLITE_BROKEN):
        context.is_disconnect = True


class SqliteFile:
    """Watches the SQLite file an engine opened.

    Its shared-memory file (``-shm``, WAL's index) is mapped into memory by every
    connection of the process and written through the map, even to read: once it cannot
    be written (made immutable, say), the kernel answers such a write with SIGBUS, which
    kills the process. So while it is not writable no connection is used, opened or
    closed (closing the last one writes it too): each is set aside, and the database
    answers 503 until the file is writable again.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.shm = path + "-shm"
        self.identity: tuple[int, int] | None = None  # the file first opened
        self.set_aside: list[Any] = []  # driver connections not closed while -shm is not writable
        self._lock = threading.Lock()

    def shm_unwritable(self) -> bool:
        """Whether the -shm file exists and cannot be written (one syscall when it can)."""
        return not os.access(self.shm, os.W_OK) and os.path.exists(self.shm)

    def shm_error(self) -> str:
        return f"the database's shared-memory file is not writable ({self.shm})"

    def guard_closing(self, dialect: Any) -> None:
        """Set connections aside instead of closing them while -shm is not writable."""
        close = dialect.do_close

        def do_close(dbapi_connection: Any) -> None:
            if self.shm_unwritable():
                with self._lock:
                    self.set_aside.append(dbapi_connection)
                return
            close(dbapi_connection)

        dialect.do_close = do_close

    def _close_set_aside(self) -> None:
        with self._lock:
            connections, self.set_aside = self.set_aside, []
        for connection in connections:
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def before_connect(
        self, _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        """Open the file read-write without creating it, once it has existed."""
        if self.shm_unwritable():  # opening reads the database, which writes -shm
            raise sqlite3.OperationalError(self.shm_error())
        if not os.path.exists(self.path):
            if self.identity is not None:
                raise sqlite3.OperationalError(
                    f"unable to open database file: the database file is gone ({self.path})"
                )
            return  # the very first start: let SQLite create it
        cargs[:] = [f"file:{quote(self.path)}?mode=rw"]
        cparams["uri"] = True

    def after_connect(self, _dbapi_conn: Any, record: Any) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return  # checkout will notice
        identity = (stat.st_dev, stat.st_ino)
        if self.identity is None:
            self.identity = identity
        record.info[IDENTITY] = identity
        record.info[READ_ONLY] = not self.writable()

    def checkout(self, _dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Refuse a connection to a file that is gone, or a read-only one that can now
        write, or any while -shm is not writable (it is set aside, and a new one refused)."""
        if self.shm_unwritable():
            raise DisconnectionError(self.shm_error())
        if self.set_aside:
            self._close_set_aside()  # writable again: they may close now
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise DisconnectionError(f"the database file is gone ({self.path})") from None
        if (stat.st_dev, stat.st_ino) != record.info.get(IDENTITY):
            raise DisconnectionError(f"the database file was replaced ({self.path})")
        if record.info.get(READ_ONLY) and self.writable():
            raise DisconnectionError("the database file is writable again")

    def answering(self) -> bool:
        """Whether the file first opened is still there and may be read (two syscalls):
        what an answer from memory checks first, as a checkout would."""
        if self.shm_unwritable():
            return False
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return self.identity is None or (stat.st_dev, stat.st_ino) == self.identity

    def writable(self) -> bool:
        """Whether the file, its WAL files and its directory can be written now."""
        paths = [self.path, self.path + "-wal", self.path + "-shm"]
        present = [p for p in paths if os.path.exists(p)]
        return os.access(os.path.dirname(self.path), os.W_OK) and all(
            os.access(p, os.W_OK) for p in present
        )

    def healthy(self) -> tuple[bool, str]:
        """Whether the file the engine opened is still there and writable, and why not."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False, f"the database file is gone ({self.path})"
        if self.identity is not None and (stat.st_dev, stat.st_ino) != self.identity:
            return False, f"the database file was replaced ({self.path})"
        if not self.writable():
            return False, f"the database file is not writable ({self.path})"
        return True, "ok"


def gevent_runner() -> Callable[..., Any] | None:
    """``apply`` of gevent's thread pool when this process runs under gevent, else None."""
    try:
        from gevent import monkey
    except ImportError:
        return None
    if not monkey.is_module_patched("threading"):
        return None
    import gevent

    hub = gevent.get_hub()
    native_ident = monkey.get_original("threading", "get_ident")
    # The native thread the event loop runs in (taken from the hub, not from threading:
    # after gunicorn's fork, threading's idea of the main thread is stale).
    loop_thread = hub.thread_ident

    def run(function: Callable[..., Any], *args: Any) -> Any:
        # Only the event loop's thread hands work over; a pool thread runs it directly.
        if native_ident() != loop_thread:
            return function(*args)
        return hub.threadpool.apply(function, args)

    return run


def sqlite_file(engine: Engine) -> SqliteFile | None:
    """The watch on the SQLite file of an engine the deck hardened, if any."""
    return getattr(engine, "_ollama_deck_sqlite_file", None)


def run_statement(engine: Engine, cursor: Any, statement: str, parameters: Any) -> None:
    """Execute on a raw driver cursor of ``engine`` as its own statements run: under gevent,
    a SQLite lock wait happens in the thread pool (see LockWaits), never on the loop."""
    waits: LockWaits | None = getattr(engine, "_ollama_deck_lock_waits", None)
    if waits is None:
        cursor.execute(statement, parameters)
    else:
        waits.execute(cursor, statement, parameters, None)


class LockWaits:
    """SQLite lock waits moved off the event loop: each statement first runs at once with
    no busy wait (the common case, no cost); only if the database is locked does it run
    again in gevent's thread pool, waiting there with the engine's busy timeout.

    Retrying is safe: a statement that found the database locked changed nothing.
    """

    def __init__(self, run: Callable[..., Any]) -> None:
        self.run = run
        self.wait_ms = 30_000  # replaced by the busy timeout the connections were given

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "connect", self.no_busy_wait)  # after db.py's own pragmas
        event.listen(engine, "do_execute", self.execute)
        event.listen(engine, "do_execute_no_params", self.execute_no_params)
        event.listen(engine, "do_executemany", self.executemany)

    def no_busy_wait(self, dbapi_conn: Any, _record: Any) -> None:
        self.wait_ms = dbapi_conn.execute("PRAGMA busy_timeout").fetchone()[0] or self.wait_ms
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    def execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        self._first_then_waiting(context, cursor.execute, cursor, statement, parameters)
        return True

    def execute_no_params(self, cursor: Any, statement: str, context: Any) -> bool:
        self._first_then_waiting(context, cursor.execute, cursor, statement)
        return True

    def executemany(self, cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        self._first_then_waiting(context, cursor.executemany, cursor, statement, parameters)
        return True

    def _first_then_waiting(
        self, context: Any, call: Callable[..., Any], cursor: Any, *args: Any
    ) -> None:
        try:
            call(*args)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != SQLITE_BUSY:
                raise
            if context is not None and context.execution_options.get(NO_LOCK_WAIT):
                raise  # a cache write: skipped rather than waited for
            self.run(self._waiting, call, cursor.connection, *args)

    def _waiting(self, call: Callable[..., Any], connection: Any, *args: Any) -> None:
        connection.execute(f"PRAGMA busy_timeout={int(self.wait_ms)}")
        try:
            call(*args)
        finally:
            connection.execute("PRAGMA busy_timeout=0")


@contextmanager
def no_lock_wait(engine: Engine) -> Iterator[Connection]:
    """A transaction that fails at once (OperationalError) where it would wait for a lock.

    For writes that only cache something (the model list, Ollama's last status): a request
    must never wait for them. SQLite's busy timeout is 0 for it, and it is not retried in
    gevent's thread pool; PostgreSQL waits at most PG_LOCK_WAIT_MS for a row lock. The
    caller skips the write; the next read tries again.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(**{NO_LOCK_WAIT: True})
        if engine.dialect.name != "sqlite":
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {PG_LOCK_WAIT_MS}")
                yield conn
            return
        raw = conn.connection.driver_connection
        assert raw is not None
        before = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        raw.execute("PRAGMA busy_timeout=0")
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                raw.execute(f"PRAGMA busy_timeout={int(before)}")
            except sqlite3.Error:
                conn.invalidate()  # it will not be reused with the wrong timeout


def log_skipped(what: str, exc: BaseException) -> None:
    """Say that a cache write of ``what`` was skipped: quietly when the database was only
    busy (it happens on every read while another process holds the lock)."""
    reason = first_line(exc)
    level = logging.DEBUG if is_busy(exc) else logging.WARNING
    log.log(level, "ollama-deck did not cache %s: %s", what, reason)


def is_busy(exc: BaseException) -> bool:
    """Whether a database error only says that another writer holds a lock."""
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError):
        return getattr(orig, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY
    return getattr(orig, "sqlstate", None) == "55P03"  # PostgreSQL's lock_not_available


# Write faults that a read (``SELECT 1``) does not show. SQLite primary result codes:
# READONLY, IOERR, CANTOPEN, FULL; PostgreSQL SQLSTATE prefixes: insufficient resources
# (53100 disk full), a read-only transaction (25006, e.g. a standby or
# default_transaction_read_only), system errors (58: I/O).
SQLITE_WRITE_FAULTS = frozenset({8, 10, 13, 14})
POSTGRES_WRITE_FAULTS = ("53", "25006", "58")
WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE")
# Less free space than this next to a SQLite file is a full disk: writes are about to
# fail, or do already (SQLite may still fit a small write into its WAL file meanwhile).
MIN_FREE_BYTES = 1 << 20


def is_write_fault(exc: BaseException) -> bool:
    """Whether a driver error means the database cannot take writes (full, read-only,
    I/O), as opposed to a busy lock, a lost connection or a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_WRITE_FAULTS
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return bool(state) and str(state).startswith(POSTGRES_WRITE_FAULTS)


class WriteOutcomes:
    """The newest outcome of this process's own writes to one database, and a small write
    of its own when none is recent: what /healthz says of writing.

    A read answers on a full disk or a read-only database while every write fails, so
    the check that matters is a write; the deck's writes are watched for free (engine
    events), and a probe writes only when they say nothing new, at most once per
    ``every`` seconds. Kept per process: each worker reports what it sees.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.ok_at: float | None = None
        self.failed_at: float | None = None
        self.failure = ""
        self._probed_at: float | None = None
        self._probing = threading.Lock()

    def executed(
        self, _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: Any
    ) -> None:
        if statement.lstrip()[:6].upper() in WRITE_STATEMENTS:
            self.ok_at = self.clock()

    def failed(self, context: ExceptionContext) -> None:
        error = context.original_exception
        if is_write_fault(error):
            self.failed_at = self.clock()
            self.failure = first_line(error)

    @property
    def failing(self) -> bool:
        if self.failed_at is None:
            return False
        return self.ok_at is None or self.failed_at >= self.ok_at

    def check(self, probe: Callable[[], None], every: float) -> tuple[bool, str]:
        """(writable, why not): from the newest outcome, after probing with ``probe`` (a
        small real write) when no outcome is newer than ``every`` seconds."""
        now = self.clock()
        newest = max((t for t in (self.ok_at, self.failed_at) if t is not None), default=None)
        stale = newest is None or now - newest >= every
        due = self._probed_at is None or now - self._probed_at >= every
        if stale and due and self._probing.acquire(blocking=False):
            try:
                self._probed_at = now
                probe()
            except Exception:  # noqa: BLE001 - a write fault was recorded by failed()
                pass
            finally:
                self._probing.release()
        if self.failing:
            return False, f"writes fail: {self.failure}"
        return True, "ok"


def watch_writes(engine: Engine) -> WriteOutcomes:
    """The write outcomes of ``engine`` in this process, watched from the first call on.

    Listening changes nothing of how the engine works, so a host's engine is watched too.
    """
    outcomes: WriteOutcomes | None = getattr(engine, "_ollama_deck_writes", None)
    if outcomes is None:
        outcomes = WriteOutcomes()
        event.listen(engine, "after_cursor_execute", outcomes.executed)
        event.listen(engine, "handle_error", outcomes.failed)
        engine._ollama_deck_writes = outcomes  # type: ignore[attr-defined]
    return outcomes


def disk_full(engine: Engine) -> str | None:
    """For a SQLite file: why its disk counts as full, or None."""
    path = sqlite_path(engine)
    if path is None:
        return None
    try:
        stat = os.statvfs(os.path.dirname(path))
    except OSError:
        return None  # a directory that is gone: the file check says so
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE_BYTES:
        return f"the disk of the database file is full ({free} bytes free)"
    return None


def database_health(
    engine: Engine, probe: Callable[[], None] | None = None, probe_every: float = 60.0
) -> dict[str, Any]:
    """``{"ok": bool, "dialect", "error"?}``: for SQLite the state of the file it opened and
    its disk, one read, and whether writes work (``probe`` writes when nothing else did
    for ``probe_every`` seconds; see WriteOutcomes)."""
    result: dict[str, Any] = {"ok": True, "dialect": engine.dialect.name}
    guard = sqlite_file(engine)
    if guard is not None:
        ok, why = guard.healthy()
        if not ok:
            return dict(result, ok=False, error=why)
    full = disk_full(engine)
    if full is not None:
        return dict(result, ok=False, error=full)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure is the answer here
        return dict(result, ok=False, error=first_line(exc))
    if probe is not None:
        ok, why = watch_writes(engine).check(probe, probe_every)
        if not ok:
            return dict(result, ok=False, error=why)
    return result


def first_line(exc: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy appends the statement)."""
    return (str(getattr(exc, "orig", None) or exc).splitlines() or ["database error"])[0]
