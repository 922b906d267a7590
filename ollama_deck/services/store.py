"""Every read and write of operations and their logs, and the events they publish.

Each change takes the next numbers of one global sequence inside its own transaction.
Taking them is an UPDATE of one counter row, so it also serialises writers: on
PostgreSQL the row lock, on SQLite the write lock. Hence changes commit in sequence
order, and "everything after id N" is a complete answer for an SSE client that resumes.
Events are published to the hub only after their transaction committed, and under one
in-process lock, so watchers see them in sequence order too.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db import ACTIVE_STATUSES
from ..db import Counter
from ..db import FINAL_STATUSES
from ..db import Operation
from ..db import OperationLog
from ..db import SEQ_COUNTER
from ..dbhealth import run_statement
from ..errors import QueueFull
from ..serializers import log_event
from ..serializers import operation_event
from .events import DeckEvent
from .events import EventHub

OP = Operation.__table__
LOG = OperationLog.__table__
RUNNING = OP.alias("running")
# Built once: the hot reads of polling skip SQLAlchemy's statement construction.
SEQ_OF = select(OP.c.seq).where(OP.c.id == bindparam("op_id"))
ONE_OP = select(OP).where(OP.c.id == bindparam("op_id"))
NEWEST_LOGS = (
    select(LOG)
    .where(LOG.c.operation_id == bindparam("op_id"))
    .order_by(LOG.c.seq.desc())
    .limit(bindparam("limit"))
)
PURGE_BATCH = 500  # ids per DELETE ... IN (...): well under SQLite's variable limit


class FrameCache:
    """Operation events rendered once for every client that replays at the same time.

    A storm of clients resuming from far back reads the same rows: rendering each state
    once instead of once per client is most of the CPU a replay costs. The cache lives
    only while some replay runs (``with cache:``), so memory goes back when they end.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._frames: dict[tuple[str, int], DeckEvent] = {}
        self._users = 0
        self._lock = threading.Lock()

    def __enter__(self) -> FrameCache:
        with self._lock:
            self._users += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._users -= 1
            if not self._users:
                self._frames = {}

    def event(self, row: Any, names: Mapping[str, str] | None = None) -> DeckEvent:
        """The event of an operation row, rendered once per (id, seq) while replays run."""
        if not self._users:
            return operation_event(row, names)
        key = (row["id"], row["seq"])
        found = self._frames.get(key)
        if found is None:
            found = operation_event(row, names)
            if len(self._frames) < self.limit:
                self._frames[key] = found
        return found


class OperationStore:
    """Operations in the database; publishes each committed change to ``hub``."""

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        *,
        log_lines: int = 300,
        host_names: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self.host_names = dict(host_names or {})  # Ollama URL -> its configured name
        self.hub = hub
        self.log_lines = log_lines
        # Held from taking a sequence number until the event is published. The database
        # serialises writers anyway; this keeps publishing in the same order as committing.
        self._write_lock = threading.Lock()
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._seq_sql = f"SELECT seq FROM {OP.name} WHERE id = {marker}"
        self.replay_frames = FrameCache()

    # -- reads ----------------------------------------------------------------------

    def get(self, op_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(OP).where(OP.c.id == op_id)).mappings().first()
        return dict(row) if row else None

    def version(self, op_id: str) -> int | None:
        """The operation's sequence number: it changes with every change of the operation or
        its log (one transaction), so it tells whether anything a poll shows has changed.

        The hottest read of all (every poll): one statement on the pooled connection's own
        cursor, skipping SQLAlchemy's execution machinery (~100 us of ~115 us on SQLite).
        A driver error is read again through SQLAlchemy, which maps it and replaces a broken
        connection as for any other statement.
        """
        dbapi = self.engine.dialect.dbapi
        try:
            connection = self.engine.raw_connection()  # checked out as any: faults still heal
            try:
                cursor = connection.cursor()
                try:
                    run_statement(self.engine, cursor, self._seq_sql, (op_id,))
                    found = cursor.fetchone()
                finally:
                    cursor.close()
            finally:
                connection.close()  # back to the pool
            return found[0] if found else None
        except dbapi.Error:
            with self.engine.connect() as conn:
                return conn.execute(SEQ_OF, {"op_id": op_id}).scalar()

    def get_with_logs(
        self, op_id: str, limit: int
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The operation and its newest ``limit`` log lines (oldest first), in one read."""
        with self.engine.connect() as conn:
            row = conn.execute(ONE_OP, {"op_id": op_id}).mappings().first()
            if row is None or not limit:
                return (dict(row) if row else None), []
            logs = conn.execute(NEWEST_LOGS, {"op_id": op_id, "limit": limit}).mappings().all()
        return dict(row), [dict(r) for r in reversed(logs)]

    def logs(self, op_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` log lines of an operation, oldest first."""
        query = select(LOG).where(LOG.c.operation_id == op_id).order_by(LOG.c.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in reversed(rows)]

    def list(
        self, *, statuses: Iterable[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Operations, newest first."""
        query = select(OP).order_by(OP.c.created_at.desc()).limit(limit)
        if statuses:
            query = query.where(OP.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def active_for(self, host: str, model_key: str) -> dict[str, Any] | None:
        query = select(OP).where(
            OP.c.host == host, OP.c.model_key == model_key, OP.c.status.in_(ACTIVE_STATUSES)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def committed_seq(self) -> int:
        """The newest sequence number taken; every change up to it has committed."""
        with self.engine.connect() as conn:
            return self._committed_seq(conn)

    def replay(self, after_seq: int, op_id: str | None = None) -> tuple[list[DeckEvent], int]:
        """What changed after ``after_seq``: every log line and each operation's newest state.

        Also returns a sequence number that everything committed before the read is at or
        below: a watcher skips later events up to it, as the replay covered them.
        One read of everything: streams use ``replay_window`` page by page instead.
        """
        with self.engine.connect() as conn:
            covered = self._committed_seq(conn)
        events = self.replay_window(after_seq, covered, op_id)
        return events, max([covered, after_seq] + [e.seq for e in events])

    def replay_window(
        self, after_seq: int, upto_seq: int, op_id: str | None = None
    ) -> list[DeckEvent]:
        """Log lines and operation states with ``after_seq < seq <= upto_seq``, in seq order.

        A window of N sequence numbers holds at most N events (each number belongs to one
        row at most), so windows bound what one read brings into memory.
        """
        window = (LOG.c.seq > after_seq) & (LOG.c.seq <= upto_seq)
        logs = select(LOG).where(window)
        ops = select(OP).where(OP.c.seq > after_seq, OP.c.seq <= upto_seq)
        if op_id is not None:
            logs = logs.where(LOG.c.operation_id == op_id)
            ops = ops.where(OP.c.id == op_id)
        with self.engine.connect() as conn:
            events = [log_event(r) for r in conn.execute(logs).mappings()]
            events += [
                self.replay_frames.event(r, self.host_names) for r in conn.execute(ops).mappings()
            ]
        events.sort(key=lambda e: e.seq)
        return events

    def states_since(
        self, after_seq: int, upto_seq: int, op_id: str | None = None, *, limit: int = 200
    ) -> list[DeckEvent]:
        """The current state (no logs) of up to ``limit`` operations that changed in
        ``(after_seq, upto_seq]``, in seq order; page on with the last one's seq."""
        query = (
            select(OP)
            .where(OP.c.seq > after_seq, OP.c.seq <= upto_seq)
            .order_by(OP.c.seq)
            .limit(limit)
        )
        if op_id is not None:
            query = query.where(OP.c.id == op_id)
        with self.engine.connect() as conn:
            return [
                self.replay_frames.event(r, self.host_names) for r in conn.execute(query).mappings()
            ]

    def current_events(self, op_id: str | None = None) -> tuple[list[DeckEvent], int]:
        """The state of one operation, or of every active one, as events in seq order.

        Returns the covered sequence number too, as ``replay`` does.
        """
        query = select(OP).order_by(OP.c.seq)
        if op_id is not None:
            query = query.where(OP.c.id == op_id)
        else:
            query = query.where(OP.c.status.in_(ACTIVE_STATUSES))
        with self.engine.connect() as conn:
            covered = self._committed_seq(conn)
            events = [operation_event(r, self.host_names) for r in conn.execute(query).mappings()]
        return events, max([covered] + [e.seq for e in events])

    def has_queued(self) -> bool:
        with self.engine.connect() as conn:
            query = select(OP.c.id).where(OP.c.status == "queued").limit(1)
            return conn.execute(query).first() is not None

    # -- writes ---------------------------------------------------------------------

    def create(
        self,
        *,
        kind: str,
        model: str,
        model_key: str,
        host: str,
        max_queued: int | None = None,
    ) -> dict[str, Any]:
        """Insert a queued operation; IntegrityError if one is already active for the model,
        QueueFull if ``max_queued`` operations are queued already."""
        now = time.time()
        op_id = str(uuid.uuid4())
        with self._write_lock, self.engine.connect() as conn:
            # Taking the sequence first serialises creators (the counter row's lock), so
            # the queue bound holds across processes too.
            first = self._take_seq(conn, 2)
            if max_queued is not None:
                queued = conn.execute(
                    select(func.count()).select_from(OP).where(OP.c.status == "queued")
                ).scalar_one()
                if queued >= max_queued:
                    conn.rollback()
                    raise QueueFull(
                        f"{queued} operations are queued already (the limit is {max_queued}); "
                        "try again when some have started"
                    )
            conn.execute(
                insert(OP).values(
                    id=op_id,
                    kind=kind,
                    model=model,
                    model_key=model_key,
                    host=host,
                    status="queued",
                    phase=None,
                    percent=0.0,
                    completed_bytes=0,
                    total_bytes=0,
                    message="queued",
                    cancel_requested=False,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                    seq=first + 1,
                )
            )
            log = {"seq": first, "operation_id": op_id, "created_at": now}
            log["text"] = f"{kind} of {model} queued"
            conn.execute(insert(LOG).values(**log))
            row = dict(conn.execute(select(OP).where(OP.c.id == op_id)).mappings().one())
            conn.commit()
            self.hub.publish([log_event(log), operation_event(row, self.host_names)])
        return row

    def create_or_join(
        self,
        *,
        kind: str,
        model: str,
        model_key: str,
        host: str,
        max_queued: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The new operation and True, or the one already active for the model and False."""
        for _ in range(3):
            try:
                row = self.create(
                    kind=kind, model=model, model_key=model_key, host=host, max_queued=max_queued
                )
                return row, True
            except QueueFull:
                existing = self.active_for(host, model_key)  # joining needs no room
                if existing is None:
                    raise
                return existing, False
            except IntegrityError:
                existing = self.active_for(host, model_key)
                if existing is not None:
                    return existing, False
                # It finished between our insert and our read: try again.
        raise RuntimeError(f"could not create or find an operation for {model}")

    def update(
        self,
        op_id: str,
        fields: dict[str, Any],
        logs: Iterable[str] = (),
        *,
        where: Iterable[Any] = (),
    ) -> dict[str, Any] | None:
        """Change an operation and append log lines in one transaction, then publish.

        ``where`` adds conditions (e.g. the status it must still have, or the runner that
        must still own it); when they do not hold nothing is written and None is returned.
        """
        logs = list(logs)
        now = time.time()
        with self._write_lock, self.engine.connect() as conn:
            first = self._take_seq(conn, len(logs) + 1)
            values = dict(fields, updated_at=now, seq=first + len(logs))
            statement = update(OP).where(OP.c.id == op_id, *where).values(**values)
            row = conn.execute(statement.returning(*OP.c)).mappings().first()
            if row is None:
                conn.rollback()
                return None
            rows = [
                {"seq": first + i, "operation_id": op_id, "created_at": now, "text": text}
                for i, text in enumerate(logs)
            ]
            if rows:
                conn.execute(insert(LOG), rows)
                self._trim_logs(conn, op_id)
            row = dict(row)
            conn.commit()
            self.hub.publish([log_event(r) for r in rows] + [operation_event(row, self.host_names)])
        return row

    def claim_next_queued(self, runner_id: str, limit: int) -> dict[str, Any] | None:
        """Atomically move the oldest queued operation to running, if fewer than ``limit``
        run on its Ollama host."""
        if not self.has_queued():
            return None
        now = time.time()
        with self._write_lock, self.engine.connect() as conn:
            seq = self._take_seq(conn, 1)  # taken first: it serialises concurrent claims
            # The oldest queued operation whose Ollama host runs fewer than ``limit``: each
            # host downloads on its own, so the limit is per host.
            running_there = (
                select(func.count())
                .select_from(RUNNING)
                .where(RUNNING.c.status == "running", RUNNING.c.host == OP.c.host)
                .scalar_subquery()
            )
            candidate = conn.execute(
                select(OP.c.id)
                .where(OP.c.status == "queued", running_there < limit)
                .order_by(OP.c.created_at)
                .limit(1)
            ).first()
            if candidate is None:
                conn.rollback()
                return None
            statement = (
                update(OP)
                .where(OP.c.id == candidate.id, OP.c.status == "queued")
                .values(
                    status="running",
                    runner_id=runner_id,
                    heartbeat_at=now,
                    started_at=func.coalesce(OP.c.started_at, now),
                    attempts=OP.c.attempts + 1,
                    message="starting",
                    updated_at=now,
                    seq=seq,
                )
                .returning(*OP.c)
            )
            row = dict(conn.execute(statement).mappings().one())
            conn.commit()
            self.hub.publish([operation_event(row, self.host_names)])
        return row

    def heartbeat(self, runner_id: str, op_ids: Iterable[str]) -> list[str]:
        """Mark alive the operations this runner has a live job for; return those someone
        asked to cancel.

        Only live jobs: a row this runner holds without a job (its final write failed)
        must go stale, so that recovery takes it over.
        Not a visible change, so it takes no sequence number and publishes nothing.
        """
        op_ids = list(op_ids)
        if not op_ids:
            return []
        now = time.time()
        owned = (OP.c.runner_id == runner_id, OP.c.status == "running", OP.c.id.in_(op_ids))
        with self.engine.begin() as conn:
            conn.execute(update(OP).where(*owned).values(heartbeat_at=now))
            rows = conn.execute(select(OP.c.id).where(*owned, OP.c.cancel_requested)).all()
        return [r.id for r in rows]

    def running(self) -> list[dict[str, Any]]:
        """Who holds each running operation: id, runner_id, heartbeat_at, cancel_requested."""
        query = select(OP.c.id, OP.c.runner_id, OP.c.heartbeat_at, OP.c.cancel_requested).where(
            OP.c.status == "running"
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def purge_finished(self, before: float | None, *, keep: int | None = None) -> int:
        """Forget finished operations, with their logs: those that finished before
        ``before``, and all but the newest ``keep``."""
        final = OP.c.status.in_(FINAL_STATUSES)
        with self.engine.begin() as conn:
            ids: list[str] = []
            if before is not None:
                old = select(OP.c.id).where(final, OP.c.finished_at < before)
                ids += [r.id for r in conn.execute(old)]
            if keep is not None:
                surplus = (
                    select(OP.c.id)
                    .where(final)
                    .order_by(OP.c.finished_at.desc(), OP.c.seq.desc())
                    .offset(keep)
                )
                ids += [r.id for r in conn.execute(surplus)]
            ids = list(dict.fromkeys(ids))
            for start in range(0, len(ids), PURGE_BATCH):
                batch = ids[start : start + PURGE_BATCH]
                conn.execute(delete(LOG).where(LOG.c.operation_id.in_(batch)))
                conn.execute(delete(OP).where(OP.c.id.in_(batch), final))
        return len(ids)

    def delete_finished(self, op_id: str) -> bool:
        """Delete one finished operation and its logs; False if it is still active."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(OP).where(OP.c.id == op_id, OP.c.status.in_(FINAL_STATUSES))
            )
            if not result.rowcount:
                return False
            conn.execute(delete(LOG).where(LOG.c.operation_id == op_id))
        return True

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    def _committed_seq(conn: Connection) -> int:
        """The newest sequence number taken; every change up to it has committed.

        Read first: later reads may see more (PostgreSQL reads each statement afresh),
        never less.
        """
        query = select(Counter.value).where(Counter.name == SEQ_COUNTER)
        return conn.execute(query).scalar_one()

    @staticmethod
    def _take_seq(conn: Connection, count: int) -> int:
        """Reserve ``count`` sequence numbers; return the first."""
        statement = (
            update(Counter)
            .where(Counter.name == SEQ_COUNTER)
            .values(value=Counter.value + count)
            .returning(Counter.value)
        )
        last = conn.execute(statement).scalar_one()
        return last - count + 1

    def _trim_logs(self, conn: Connection, op_id: str) -> None:
        """Keep only the newest ``log_lines`` lines of the operation."""
        cutoff = conn.execute(
            select(LOG.c.seq)
            .where(LOG.c.operation_id == op_id)
            .order_by(LOG.c.seq.desc())
            .offset(self.log_lines)
            .limit(1)
        ).scalar()
        if cutoff is not None:
            conn.execute(delete(LOG).where(LOG.c.operation_id == op_id, LOG.c.seq <= cutoff))
