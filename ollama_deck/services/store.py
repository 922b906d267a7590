"""Every read and write of operations and their logs, and the events they publish.

Each change of state is one method named after its transition (claim, cancel, finish...),
guarded in SQL by the state it must still find, and returning the new row or None when
the row had moved on: callers never build conditions themselves.

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
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import NoReturn
from typing import Protocol

from sqlalchemy import BigInteger
from sqlalchemy import bindparam
from sqlalchemy import delete
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..db import ACTIVE_STATUSES
from ..db import Counter
from ..db import FINAL_STATUSES
from ..db import GroupMember
from ..db import Operation
from ..db import OperationLog
from ..db import SEQ_COUNTER
from ..db import table_of
from ..dbhealth import run_statement
from ..errors import Conflict
from ..errors import QueueFull
from ..lifecycle import Hold
from ..lifecycle import Kind
from ..lifecycle import may_join
from ..lifecycle import Orphan
from ..lifecycle import OrphanReason
from ..lifecycle import PRUNE_NOTE
from ..lifecycle import Status
from ..lifecycle import WAITING
from ..lifecycle import WINDOWED
from ..serializers import log_event
from ..serializers import operation_event
from . import tally
from .events import DeckEvent
from .events import gone_event
from .groups import aggregate
from .groups import ended_note
from .groups import write_due
from .progress import Snapshot
from .rows import OPERATION_ROW
from .webhooks import Outbox

OP = table_of(Operation)
LOG = table_of(OperationLog)
MEMBER = table_of(GroupMember)
# Read with a changed row: whether some group counts it as a child (then the group follows).
IN_GROUP = select(MEMBER.c.group_id).where(MEMBER.c.operation_id == OP.c.id).exists()
GROUPED = "in_group"
# Kinds the runner never starts (a group's children do its work) ...
NOT_RUN = OP.c.kind != Kind.GROUP
# ... and kinds that take no slot of the per-host limit: a delete is one quick call.
SLOTLESS = (Kind.DELETE, Kind.GROUP)
GROUP = OP.alias("grp")
# Finished operations that may be forgotten: not the children of a group still running,
# whose state is added up from theirs (a forgotten failure would turn it into a success).
FORGETTABLE = OP.c.status.in_(FINAL_STATUSES) & OP.c.id.notin_(
    select(MEMBER.c.operation_id)
    .join(GROUP, GROUP.c.id == MEMBER.c.group_id)
    .where(GROUP.c.status.notin_(FINAL_STATUSES))
)
# Waiting to start: what OLLAMA_DECK_MAX_QUEUED bounds (scheduled ones will be queued).
WAITING_TO_START = (Status.QUEUED, Status.SCHEDULED)
RUNNING = OP.alias("running")
# Built once: the hot reads of polling skip SQLAlchemy's statement construction.
SEQ_OF = select(OP.c.seq).where(OP.c.id == bindparam("op_id"))
ONE_OP = select(*OPERATION_ROW).where(OP.c.id == bindparam("op_id"))
NEWEST_LOGS = (
    select(LOG)
    .where(LOG.c.operation_id == bindparam("op_id"))
    .order_by(LOG.c.seq.desc())
    .limit(bindparam("limit"))
)
# ... and so are the writes of accepting a pull: they run under the counter's lock, where
# every microsecond of Python is a microsecond every other writer waits.
TAKE_SEQ = (
    update(Counter)
    .where(Counter.name == SEQ_COUNTER)
    .values(value=Counter.value + bindparam("count"))
    .returning(Counter.value)
)
WAITING_COUNT = (
    select(func.count()).select_from(OP).where(OP.c.status.in_(WAITING_TO_START), NOT_RUN)
)
INSERT_LOG = insert(LOG)
# The columns a new operation is written with (the rest keep their defaults), its INSERT,
# and its INSERT when the queue is bounded: the count of those waiting to start is in the
# same statement, a round trip less under the counter's lock than counting first.
NEW_OP_COLUMNS = (
    "id", "kind", "model", "model_key", "host", "status", "phase", "percent",
    "completed_bytes", "total_bytes", "message", "cancel_requested", "attempts",
    "not_before", "starts_at", "created_at", "updated_at", "seq",
)  # fmt: skip
NEW_OP = select(*(bindparam(name, type_=OP.c[name].type) for name in NEW_OP_COLUMNS))
INSERT_OP = insert(OP).from_select(NEW_OP_COLUMNS, NEW_OP).returning(*OP.c)
INSERT_OP_IF_ROOM = (
    insert(OP)
    .from_select(
        NEW_OP_COLUMNS,
        NEW_OP.where(WAITING_COUNT.scalar_subquery() + 1 <= bindparam("room", type_=BigInteger)),
    )
    .returning(*OP.c)
)


def _with_first_line(insert_op: Any) -> Any:
    """``insert_op`` and the operation's first log line in one statement (PostgreSQL: an
    INSERT in a WITH clause): one more round trip less under the lock."""
    made = insert_op.cte("made")
    line = select(
        bindparam("log_seq", type_=LOG.c.seq.type),
        made.c.id,
        made.c.created_at,
        bindparam("log_text", type_=LOG.c.text.type),
    )
    logged = insert(LOG).from_select(("seq", "operation_id", "created_at", "text"), line)
    return select(made).add_cte(logged.cte("logged"))


WITH_FIRST_LINE = {
    INSERT_OP: _with_first_line(INSERT_OP),
    INSERT_OP_IF_ROOM: _with_first_line(INSERT_OP_IF_ROOM),
}
PURGE_BATCH = 500  # ids per DELETE ... IN (...): well under SQLite's variable limit


def _delete_finished(conn: Connection, ids: list[str]) -> None:
    """Delete the operations ``ids`` that are finished, and their logs (and a group's list
    of children), in batches."""
    for start in range(0, len(ids), PURGE_BATCH):
        batch = ids[start : start + PURGE_BATCH]
        conn.execute(delete(LOG).where(LOG.c.operation_id.in_(batch)))
        conn.execute(delete(MEMBER).where(MEMBER.c.group_id.in_(batch)))
        conn.execute(delete(OP).where(OP.c.id.in_(batch), OP.c.status.in_(FINAL_STATUSES)))


@dataclass(frozen=True)
class ChildSpec:
    """One child a group needs: this kind of operation on this model on this host (URL),
    now or, for a pull that must wait (its not_before, its host's window), scheduled."""

    kind: Kind
    model: str
    model_key: str
    host: str
    not_before: float | None = None
    starts_at: float | None = None
    schedule_note: str | None = None


@dataclass
class GroupCreated:
    """What :meth:`OperationStore.create_group` did: the group (None when every child was
    skipped), each child with whether it is new (else joined), and the children skipped
    because another operation of theirs was active (with that operation)."""

    group: dict[str, Any] | None
    children: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    skipped: list[tuple[ChildSpec, dict[str, Any]]] = field(default_factory=list)


# Inside OperationStore ``list`` names its method, so its annotations use these.
Rows = list[dict[str, Any]]
Ids = list[str]
Events = list[DeckEvent]
Joined = list[tuple[dict[str, Any], bool]]  # each row, and whether it was created


class Publisher(Protocol):
    """Where committed events go: a bus (services/bus.py) or, alone, an EventHub."""

    def publish(self, events: list[DeckEvent]) -> None: ...


def _held_by(runner_id: str) -> list[Any]:
    """The row is running and ``runner_id`` still holds it."""
    return [OP.c.runner_id == runner_id, OP.c.status == Status.RUNNING]


def _still_orphan(orphan: Orphan) -> Any:
    """The SQL form of :func:`~..lifecycle.is_orphan`'s decision: it still holds when the
    row is written, so a runner that came back (a fresh heartbeat) keeps its operation."""
    if orphan.reason == OrphanReason.STALE:
        return (OP.c.heartbeat_at < orphan.stale_before) | OP.c.heartbeat_at.is_(None)
    return OP.c.runner_id == orphan.runner_id


def _ended(status: Status, message: str, *, keep_speed: bool = False) -> dict[str, Any]:
    """The fields of an operation that ends now with ``status``."""
    fields: dict[str, Any] = {"status": status, "finished_at": time.time(), "message": message}
    if not keep_speed:
        fields.update(speed=None, eta_seconds=None)
    return fields


class OperationStore:
    """Operations in the database; publishes each committed change to ``bus``."""

    def __init__(
        self,
        engine: Engine,
        bus: Publisher,
        *,
        log_lines: int = 300,
        host_names: Mapping[str, str] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.engine = engine
        self.host_names = dict(host_names or {})  # Ollama URL -> its configured name
        self.bus = bus
        self.outbox = outbox  # webhooks to write with the changes that are their events
        self.log_lines = log_lines
        # Held from taking a sequence number until the event is published. The database
        # serialises writers anyway; this keeps publishing in the same order as committing.
        self._write_lock = threading.Lock()
        # The newest seq when the purge last looked beyond the newest ``keep``: while no
        # operation changed since, nothing new finished and it need not look again.
        self._kept_at_seq: int | None = None
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._seq_sql = f"SELECT seq FROM {OP.name} WHERE id = {marker}"

    # -- reads ----------------------------------------------------------------------

    def get(self, op_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(*OPERATION_ROW).where(OP.c.id == op_id)).mappings().first()
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
        assert dbapi is not None  # a dialect that runs statements has its driver
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
        self,
        *,
        statuses: Iterable[str] | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Operations, newest first; with ``before`` (a ``created_at`` and an ``id``, the
        last row of the previous page), those after it in that order: keyset pages, each
        a walk of ix_ollama_deck_operation_created_at however long the history."""
        order = (OP.c.created_at.desc(), OP.c.id.desc())
        query = select(*OPERATION_ROW).order_by(*order).limit(limit)
        if statuses:
            query = query.where(OP.c.status.in_(list(statuses)))
        if before is not None:
            # A row value: both databases walk the index from it.
            query = query.where(tuple_(OP.c.created_at, OP.c.id) < tuple_(*before))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def active_for(self, host: str, model_key: str) -> dict[str, Any] | None:
        """An operation queued or running for the model (one being cancelled too)."""
        query = select(*OPERATION_ROW).where(
            OP.c.host == host, OP.c.model_key == model_key, OP.c.status.in_(ACTIVE_STATUSES)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def joinable_for(self, host: str, model_key: str) -> dict[str, Any] | None:
        """The operation a new request for the model joins: an active one with no cancel
        asked for. One being cancelled is never joined: it ends ``cancelled``."""
        query = select(*OPERATION_ROW).where(
            OP.c.host == host,
            OP.c.model_key == model_key,
            OP.c.status.in_(ACTIVE_STATUSES),
            OP.c.cancel_requested.is_(False),
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def has_queued(self) -> bool:
        with self.engine.connect() as conn:
            query = select(OP.c.id).where(OP.c.status == Status.QUEUED, NOT_RUN).limit(1)
            return conn.execute(query).first() is not None

    def active(self) -> Rows:
        """Every active operation: id, kind, host, model_key, status."""
        query = select(OP.c.id, OP.c.kind, OP.c.host, OP.c.model_key, OP.c.status).where(
            OP.c.status.in_(ACTIVE_STATUSES)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def children(self, group_id: str) -> Rows:
        """The children of a group, in its order (none for an operation that is no group)."""
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(_children_query(group_id)).mappings()]

    # -- writes ---------------------------------------------------------------------

    def create(
        self,
        *,
        kind: str,
        model: str,
        model_key: str,
        host: str,
        max_queued: int | None = None,
        not_before: float | None = None,
        starts_at: float | None = None,
        schedule_note: str | None = None,
    ) -> dict[str, Any]:
        """Insert a queued operation, or a scheduled one when ``starts_at`` is given (with
        ``schedule_note``, what its message says); IntegrityError if one is already active
        for the model, QueueFull if ``max_queued`` operations wait to start already."""
        now = time.time()
        with self._write_lock, self.engine.connect() as conn:
            # Taking the sequence first serialises creators (the counter row's lock), so
            # the queue bound holds across processes too.
            first = self._take_seq(conn, 2)
            log, row = self._insert_waiting(
                conn,
                first,
                room=max_queued,
                kind=kind,
                model=model,
                model_key=model_key,
                host=host,
                now=now,
                not_before=not_before,
                starts_at=starts_at,
                schedule_note=schedule_note,
            )
            conn.commit()
            self.bus.publish([log_event(log), operation_event(row, self.host_names)])
        return row

    def create_all(
        self,
        *,
        kind: str,
        models: Iterable[tuple[str, str]],
        host: str,
        max_queued: int | None = None,
        starts_at: float | None = None,
        schedule_note: str | None = None,
    ) -> Joined:
        """For each (model, model_key): the operation joinable for it (and False), else a
        new one (and True), queued or scheduled as :meth:`create` makes it, in one
        transaction.

        All or nothing: QueueFull, and nothing created, when the new ones do not fit in
        ``max_queued``, so a caller never gets a refusal after some were made.
        """
        wanted = list(dict((key, model) for model, key in models).items())  # one per key
        now = time.time()
        with self._write_lock, self.engine.connect() as conn:
            # Locks the counter row without taking a number: how many we need is known only
            # once we know which to join, and the sequence must have no gaps (see bus.py).
            self._take_seq(conn, 0)
            query = select(*OPERATION_ROW).where(
                OP.c.host == host,
                OP.c.model_key.in_([key for key, _ in wanted]),
                OP.c.status.in_(ACTIVE_STATUSES),
                OP.c.cancel_requested.is_(False),
            )
            joined = {r["model_key"]: dict(r) for r in conn.execute(query).mappings()}
            new = [(key, model) for key, model in wanted if key not in joined]
            if max_queued is not None and new:
                self._check_room(conn, max_queued, len(new))
            logs = []
            if new:
                first = self._take_seq(conn, 2 * len(new))
                for index, (key, model) in enumerate(new):
                    log, _ = self._insert_waiting(
                        conn,
                        first + 2 * index,
                        kind=kind,
                        model=model,
                        model_key=key,
                        host=host,
                        now=now,
                        starts_at=starts_at,
                        schedule_note=schedule_note,
                    )
                    logs.append(log)
            made: dict[str, dict[str, Any]] = {}
            if logs:
                ids = [log["operation_id"] for log in logs]
                query = select(*OPERATION_ROW).where(OP.c.id.in_(ids))
                made = {r["model_key"]: dict(r) for r in conn.execute(query).mappings()}
            conn.commit()
            if logs:
                by_id = {row["id"]: row for row in made.values()}
                events: Events = []
                for log in logs:  # in sequence order: each log line, then its operation
                    row = by_id[log["operation_id"]]
                    events += [log_event(log), operation_event(row, self.host_names)]
                self.bus.publish(events)
        return [(joined[key], False) if key in joined else (made[key], True) for key, _ in wanted]

    def create_group(
        self,
        *,
        title: str,
        children: Sequence[ChildSpec],
        max_queued: int | None = None,
        skip_busy: bool = False,
    ) -> GroupCreated:
        """A group of kind ``group`` over ``children``, created with them in one transaction.

        A child whose model already has a joinable operation on its host (active, no cancel
        asked for) joins it when :func:`~..lifecycle.may_join` allows (as it is: a paused
        one stays paused);
        otherwise the whole group is refused (Conflict), or with ``skip_busy`` that child
        is left out (``skipped``). QueueFull when the new children do not fit in
        ``max_queued``: nothing is created then. Created in one transaction with its
        children, the group misses none of their changes: each later change of a child
        rewrites the group in its own transaction.
        """
        now = time.time()
        group_id = str(uuid.uuid4())
        outcome = GroupCreated(group=None)
        with self._write_lock, self.engine.connect() as conn:
            self._take_seq(conn, 0)  # the counter's lock: no other writer moves from here
            planned: list[tuple[ChildSpec, dict[str, Any] | None]] = []
            for spec in dict.fromkeys(children):  # one child per (kind, model, host)
                active = _joinable_on(conn, spec.host, spec.model_key)
                if active is not None and not may_join(spec.kind, active["kind"]):
                    if skip_busy:
                        outcome.skipped.append((spec, active))
                        continue
                    conn.rollback()
                    where = self.host_names.get(spec.host, spec.host)
                    raise Conflict(
                        f"a {active['kind']} of {spec.model} is {active['status']} on {where}; "
                        "wait for it to finish or cancel it"
                    )
                planned.append((spec, active))
            if not planned:
                conn.rollback()
                return outcome
            fresh = sum(1 for _, active in planned if active is None)
            if max_queued is not None and fresh:
                self._check_room(conn, max_queued, fresh)
            seq = self._take_seq(conn, 2 * fresh + 2)
            logs: Rows = []
            ids: Ids = []
            for spec, active in planned:
                if active is not None:
                    ids.append(active["id"])
                    continue
                log, _ = self._insert_waiting(
                    conn,
                    seq,
                    kind=spec.kind,
                    model=spec.model,
                    model_key=spec.model_key,
                    host=spec.host,
                    now=now,
                    not_before=spec.not_before,
                    starts_at=spec.starts_at,
                    schedule_note=spec.schedule_note,
                )
                logs.append(log)
                ids.append(log["operation_id"])
                seq += 2
            rows = [dict(conn.execute(ONE_OP, {"op_id": i}).mappings().one()) for i in ids]
            state = aggregate(rows, self.host_names)
            hosts = dict.fromkeys(self.host_names.get(s.host, s.host) for s, _ in planned)
            conn.execute(
                insert(OP).values(
                    id=group_id,
                    kind=Kind.GROUP,
                    model=title,
                    # Unique: a group never holds the one-active slot of a model.
                    model_key=f"group:{group_id}",
                    host=",".join(hosts),
                    phase=None,
                    cancel_requested=False,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                    started_at=None if state.status in WAITING_TO_START else now,
                    seq=seq + 1,
                    **state.fields(),
                )
            )
            joined = len(ids) - fresh
            text: str = f"{title}: {len(ids)} operation{'s' if len(ids) != 1 else ''} on "
            text += ", ".join(hosts) + (f" ({joined} already active, joined)" if joined else "")
            logs.append({"seq": seq, "operation_id": group_id, "created_at": now, "text": text})
            conn.execute(insert(LOG).values(**logs[-1]))
            conn.execute(
                insert(MEMBER),
                [
                    {"group_id": group_id, "operation_id": child, "position": index}
                    for index, child in enumerate(ids)
                ],
            )
            group = dict(conn.execute(ONE_OP, {"op_id": group_id}).mappings().one())
            conn.commit()
            created = {r["id"] for r, (_, active) in zip(rows, planned, strict=True) if not active}
            events = [log_event(log) for log in logs]
            events += [operation_event(r, self.host_names) for r in rows if r["id"] in created]
            events.append(operation_event(group, self.host_names))
            self.bus.publish(sorted(events, key=lambda e: e.seq))
        outcome.group = group
        outcome.children = [(row, row["id"] in created) for row in rows]
        return outcome

    def create_or_join(
        self,
        *,
        kind: str,
        model: str,
        model_key: str,
        host: str,
        max_queued: int | None = None,
        **schedule: Any,
    ) -> tuple[dict[str, Any], bool]:
        """The new operation and True, or the one already active for the model and False
        (paused or scheduled too: joining changes nothing of it). ``schedule``: the
        scheduling arguments of :meth:`create`.

        An operation whose cancel was asked for is not joined: the new one waits until
        its stream has closed (see :meth:`claim_next_queued`).
        """
        for _ in range(3):
            try:
                row = self.create(
                    kind=kind,
                    model=model,
                    model_key=model_key,
                    host=host,
                    max_queued=max_queued,
                    **schedule,
                )
                return row, True
            except QueueFull:
                existing = self.joinable_for(host, model_key)  # joining needs no room
                if existing is None:
                    raise
                return existing, False
            except IntegrityError:
                existing = self.joinable_for(host, model_key)
                if existing is not None:
                    return existing, False
                # It finished between our insert and our read: try again.
        raise RuntimeError(f"could not create or find an operation for {model}")

    def _update(
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
        Private: every change goes through a named transition below (tests may set up rows
        with it).
        """
        now = time.time()
        with self._write_lock, self.engine.connect() as conn:
            written = self._write(conn, op_id, fields, list(logs), where, now)
            if written is None:
                conn.rollback()
                return None
            changed, events = written
            enqueued = self._count_and_notify(conn, fields, changed, now)
            if changed.pop(GROUPED):  # some group counts it as a child
                grouped, notified = self._follow_groups(conn, changed, now)
                events += grouped
                enqueued = enqueued or notified
            conn.commit()
            self.bus.publish(events)
        if enqueued and self.outbox is not None:
            self.outbox.wake()
        return changed

    def _write(
        self,
        conn: Connection,
        op_id: str,
        fields: dict[str, Any],
        logs: Ids,
        where: Iterable[Any],
        now: float,
    ) -> tuple[dict[str, Any], Events] | None:
        """Inside a transaction: change the row and append its log lines, with new sequence
        numbers; the changed row and its events, or None when ``where`` does not hold."""
        first = self._take_seq(conn, len(logs) + 1)
        values = dict(fields, updated_at=now, seq=first + len(logs))
        statement = update(OP).where(OP.c.id == op_id, *where).values(**values)
        returning = statement.returning(*OPERATION_ROW, IN_GROUP.label(GROUPED))
        row = conn.execute(returning).mappings().first()
        if row is None:
            return None
        rows = [
            {"seq": first + i, "operation_id": op_id, "created_at": now, "text": text}
            for i, text in enumerate(logs)
        ]
        if rows:
            conn.execute(insert(LOG), rows)
            self._trim_logs(conn, op_id)
        changed = dict(row)
        # Counted before these lines went in; the trim keeps the newest log_lines.
        changed["log_count"] = min(changed["log_count"] + len(rows), self.log_lines)
        events = [log_event(r) for r in rows] + [operation_event(changed, self.host_names)]
        return changed, events

    def _follow_groups(
        self, conn: Connection, child: dict[str, Any], now: float
    ) -> tuple[Events, bool]:
        """Rewrite each active group of ``child`` whose state its change moved, in the same
        transaction (later sequence numbers, so a group's end comes after its last child's);
        its events, and whether webhook deliveries were written (a group's end is one).

        Bounded: a child is written a few times a second at most, and its group only when
        what it shows changed (:func:`~.groups.write_due`).
        """
        note = [ended_note(child, self.host_names)] if child["status"] in FINAL_STATUSES else []
        query = select(MEMBER.c.group_id).where(MEMBER.c.operation_id == child["id"])
        events: Events = []
        enqueued = False
        for group_id in conn.execute(query).scalars().all():
            group = conn.execute(ONE_OP, {"op_id": group_id}).mappings().first()
            if group is None or group["status"] in FINAL_STATUSES:
                continue
            rows = [dict(r) for r in conn.execute(_children_query(group_id)).mappings()]
            state = aggregate(rows, self.host_names, floor=group["percent"] or 0.0)
            if not note and not write_due(dict(group), state, now):
                continue
            fields = state.fields()
            if state.status in FINAL_STATUSES:
                fields["finished_at"] = now
            elif state.status not in WAITING_TO_START:
                fields["started_at"] = func.coalesce(OP.c.started_at, now)
            where = [OP.c.status.notin_(FINAL_STATUSES)]
            written = self._write(conn, group_id, fields, note, where, now)
            if written is not None:
                events += written[1]
                enqueued = self._count_and_notify(conn, fields, written[0], now) or enqueued
        return events, enqueued

    def _count_and_notify(
        self, conn: Connection, fields: Mapping[str, Any], row: dict[str, Any], now: float
    ) -> bool:
        """In the transaction of a change: an end adds to /metrics' tallies, and a change
        that is a webhook event writes its deliveries (so neither can be lost or doubled
        apart from the change). True when deliveries were written."""
        # A group's end is counted by its children's, not again by itself.
        if fields.get("status") in FINAL_STATUSES and row["kind"] != Kind.GROUP:
            tally.add(conn, tally.final_deltas(row), now)
        outbox = self.outbox
        if outbox is None:
            return False
        event = outbox.event_of(fields, row)
        if event is None or not outbox.wants(event):
            return False
        outbox.enqueue(conn, event, row, self.host_names, now)
        return True

    # -- transitions ----------------------------------------------------------------
    # Each returns the changed row, or None when the row is no longer in the state the
    # transition starts from (another runner, a cancel or a recovery came first).

    def cancel_waiting(self, op_id: str) -> dict[str, Any] | None:
        """queued, scheduled or paused -> cancelled: no runner holds it, so it ends here."""
        row = self.get(op_id)
        started = row is not None and row["started_at"] is not None
        fields = _ended(Status.CANCELLED, Status.CANCELLED, keep_speed=True)
        where = [OP.c.status.in_(WAITING), NOT_RUN]  # a group ends with its children
        note = "cancelled" if started else "cancelled before it started"
        return self._update(op_id, fields, [note], where=where)

    def request_cancel(self, op_id: str) -> dict[str, Any] | None:
        """Ask the runner of a running operation to stop it (once)."""
        fields = {"cancel_requested": True, "message": "cancelling"}
        where = [OP.c.status == Status.RUNNING, OP.c.cancel_requested.is_(False)]
        return self._update(op_id, fields, ["cancel requested"], where=where)

    def hold_waiting(self, op_id: str, *, at: float) -> dict[str, Any] | None:
        """queued, scheduled or paused by the window -> paused by a user: it waits for a
        resume (the window opening no longer starts it). ``at``: the runner's wall time,
        from which lifecycle.PRUNE_AFTER_SECONDS counts."""
        fields = {
            "status": Status.PAUSED,
            "paused_by": Hold.USER,
            "paused_at": func.coalesce(OP.c.paused_at, at),
            "starts_at": None,
            "message": Status.PAUSED,
        }
        where = [
            OP.c.status.in_((Status.QUEUED, Status.SCHEDULED))
            | ((OP.c.status == Status.PAUSED) & (OP.c.paused_by == Hold.WINDOW)),
            NOT_RUN,  # a group pauses through its children
        ]
        return self._update(op_id, fields, ["paused"], where=where)

    def request_pause(self, op_id: str) -> dict[str, Any] | None:
        """Ask the runner of a running operation to pause it (once; a cancel wins)."""
        fields = {"paused_by": Hold.USER, "message": "pausing"}
        where = [
            OP.c.status == Status.RUNNING,
            OP.c.cancel_requested.is_(False),
            OP.c.paused_by.is_(None),
            NOT_RUN,
        ]
        return self._update(op_id, fields, ["pause requested"], where=where)

    def pause_running(
        self,
        op_id: str,
        runner_id: str,
        hold: Hold,
        message: str,
        logs: Iterable[str] = (),
        *,
        at: float,
        starts_at: float | None = None,
        snap: Snapshot | None = None,
    ) -> dict[str, Any] | None:
        """running -> paused (``hold`` says by whom) at wall time ``at``, by the runner that
        holds it, whose stream is closed; not once a cancel was asked. ``starts_at``: when
        the window opens."""
        fields: dict[str, Any] = {
            "status": Status.PAUSED,
            "paused_by": hold,
            "paused_at": at,
            "starts_at": starts_at,
            "runner_id": None,
            "speed": None,
            "eta_seconds": None,
            "message": message,
        }
        if snap is not None:
            fields.update(
                phase=snap.phase,
                percent=snap.percent,
                completed_bytes=snap.completed_bytes,
                total_bytes=snap.total_bytes,
            )
        where = [*_held_by(runner_id), OP.c.cancel_requested.is_(False)]
        return self._update(op_id, fields, logs, where=where)

    def pause_orphan(
        self, op_id: str, orphan: Orphan, *, at: float, note: str
    ) -> dict[str, Any] | None:
        """running -> paused (at wall time ``at``) for an operation nobody runs whose pause
        was asked."""
        fields = {
            "status": Status.PAUSED,
            "paused_at": at,
            "runner_id": None,
            "speed": None,
            "eta_seconds": None,
            "message": Status.PAUSED,
        }
        where = [
            OP.c.status == Status.RUNNING,
            OP.c.paused_by.is_not(None),
            OP.c.cancel_requested.is_(False),
            _still_orphan(orphan),
        ]
        return self._update(op_id, fields, [note], where=where)

    def resume(
        self, op_id: str, *, starts_at: float | None, message: str | None = None
    ) -> dict[str, Any] | None:
        """paused by a user -> queued, or scheduled until ``starts_at`` (its window or its
        not_before is still ahead; ``message`` says when)."""
        status = Status.QUEUED if starts_at is None else Status.SCHEDULED
        fields = {
            "status": status,
            "paused_by": None,
            "paused_at": None,
            "starts_at": starts_at,
            "message": message or "resuming",
        }
        where = [OP.c.status == Status.PAUSED, OP.c.paused_by == Hold.USER, NOT_RUN]
        note = "resumed" if status == Status.QUEUED else f"resumed: {message}"
        return self._update(op_id, fields, [note], where=where)

    def wake_due(self, now: float) -> Rows:
        """scheduled, or paused by the window, whose start time has come -> queued."""
        due = (OP.c.status == Status.SCHEDULED) | (
            (OP.c.status == Status.PAUSED) & (OP.c.paused_by == Hold.WINDOW)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(OP.c.id, OP.c.status).where(due, OP.c.starts_at <= now)
            ).all()
        woken = []
        fields = {
            "status": Status.QUEUED,
            "paused_by": None,
            "paused_at": None,
            "starts_at": None,
            "message": Status.QUEUED,
        }
        for op_id, status in rows:
            note = "its start time has come" if status == Status.SCHEDULED else "resuming"
            row = self._update(op_id, fields, [note], where=[due, OP.c.starts_at <= now])
            if row is not None:
                woken.append(row)
        return woken

    def defer_queued(self, host: str, starts_at: float, message: str) -> Rows:
        """Every queued pull and update of ``host`` -> scheduled until ``starts_at`` (its
        download window closed while they waited for a slot)."""
        queued_here = [OP.c.status == Status.QUEUED, OP.c.host == host, OP.c.kind.in_(WINDOWED)]
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(OP.c.id).where(*queued_here)).scalars())
        fields = {"status": Status.SCHEDULED, "starts_at": starts_at, "message": message}
        deferred = []
        for op_id in ids:
            where = [OP.c.status == Status.QUEUED]
            row = self._update(op_id, fields, [f"scheduled: {message}"], where=where)
            if row is not None:
                deferred.append(row)
        return deferred

    def note_prune_risk(self, paused_before: float) -> Rows:
        """Paused operations paused before ``paused_before`` say, once, that an Ollama
        restart would delete their partial download (lifecycle.PRUNE_NOTE)."""
        old = [
            OP.c.status == Status.PAUSED,
            OP.c.paused_at < paused_before,
            (OP.c.message != PRUNE_NOTE) | OP.c.message.is_(None),
        ]
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(OP.c.id).where(*old)).scalars())
        noted = []
        for op_id in ids:
            row = self._update(op_id, {"message": PRUNE_NOTE}, [PRUNE_NOTE], where=old)
            if row is not None:
                noted.append(row)
        return noted

    def end_orphan(
        self, op_id: str, orphan: Orphan, status: Status, *, message: str, note: str
    ) -> dict[str, Any] | None:
        """running -> ``status`` (final) for an operation nobody runs, while it stays so."""
        fields = _ended(status, message)
        where = [OP.c.status == Status.RUNNING, _still_orphan(orphan)]
        return self._update(op_id, fields, [note], where=where)

    def requeue_orphan(self, op_id: str, orphan: Orphan, *, note: str) -> dict[str, Any] | None:
        """running -> queued for an operation nobody runs: the next runner resumes it.

        Not once a cancel was asked for (it may come after the caller read the row): the
        next recovery ends that one as cancelled instead.
        """
        fields = {
            "status": Status.QUEUED,
            "runner_id": None,
            "message": "resuming",
            "speed": None,
            "eta_seconds": None,
        }
        where = [
            OP.c.status == Status.RUNNING,
            OP.c.paused_by.is_(None),
            OP.c.cancel_requested.is_(False),
            _still_orphan(orphan),
        ]
        return self._update(op_id, fields, [note], where=where)

    def record_progress(
        self,
        op_id: str,
        runner_id: str,
        snap: Snapshot,
        logs: Iterable[str] = (),
        *,
        message: str | None = None,
    ) -> dict[str, Any] | None:
        """A running pull's state and new log lines, with a heartbeat; None if
        ``runner_id`` does not hold it any more."""
        fields = {
            "phase": snap.phase,
            "percent": snap.percent,
            "completed_bytes": snap.completed_bytes,
            "total_bytes": snap.total_bytes,
            "speed": snap.speed,
            "eta_seconds": snap.eta_seconds,
            "message": message or snap.message,
            "heartbeat_at": time.time(),
        }
        return self._update(op_id, fields, logs, where=_held_by(runner_id))

    def mark_stalled(
        self, op_id: str, runner_id: str, seconds: int, logs: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        """Show that a running pull got no bytes for ``seconds``: no speed, no ETA."""
        fields = {
            "speed": 0.0,
            "eta_seconds": None,
            "message": f"stalled: no data from Ollama for {seconds} s",
        }
        return self._update(op_id, fields, logs, where=_held_by(runner_id))

    def finish(
        self,
        op_id: str,
        runner_id: str,
        status: Status,
        message: str,
        logs: Iterable[str] = (),
        *,
        error: str | None = None,
        snap: Snapshot | None = None,
    ) -> dict[str, Any] | None:
        """running -> ``status`` (final), by the runner that holds it."""
        fields = _ended(status, message)
        fields["error"] = error
        if status == Status.SUCCEEDED:
            fields["eta_seconds"] = 0.0
        if snap is not None:
            fields.update(
                phase=snap.phase,
                percent=snap.percent,
                completed_bytes=snap.completed_bytes,
                total_bytes=snap.total_bytes,
            )
        return self._update(op_id, fields, logs, where=_held_by(runner_id))

    def release(self, op_id: str, runner_id: str, *, note: str) -> dict[str, Any] | None:
        """running -> queued on shutdown, unless a user asked to cancel or pause it meanwhile."""
        fields = {
            "status": Status.QUEUED,
            "runner_id": None,
            "message": "resuming",
            "speed": None,
        }
        where = [*_held_by(runner_id), OP.c.cancel_requested.is_(False), OP.c.paused_by.is_(None)]
        return self._update(op_id, fields, [note], where=where)

    def claim_next_queued(
        self, runner_id: str, limit: int, *, closed_hosts: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        """Atomically move the oldest queued operation to running, if fewer than ``limit``
        run on its Ollama host, that host is not in ``closed_hosts`` (outside its download
        window) and none of its model runs there (a cancelled stream that has not closed
        yet: Ollama gets one pull of a model at a time). Paused and scheduled operations
        take no slot."""
        if not self.has_queued():
            return None
        with self._write_lock, self.engine.connect() as conn:
            seq = self._take_seq(conn, 1)  # taken first: it serialises concurrent claims
            # After the lock: the start time follows the end of whatever it waited for.
            now = time.time()
            # The oldest queued operation whose Ollama host runs fewer than ``limit``: each
            # host downloads on its own, so the limit is per host.
            running_there = (
                select(func.count())
                .select_from(RUNNING)
                .where(
                    RUNNING.c.status == Status.RUNNING,
                    RUNNING.c.host == OP.c.host,
                    RUNNING.c.kind.notin_(SLOTLESS),
                )
                .scalar_subquery()
            )
            model_running = (
                select(RUNNING.c.id)
                .where(
                    RUNNING.c.status == Status.RUNNING,
                    RUNNING.c.host == OP.c.host,
                    RUNNING.c.model_key == OP.c.model_key,
                )
                .exists()
            )
            query = select(OP.c.id).where(
                OP.c.status == Status.QUEUED,
                NOT_RUN,
                (running_there < limit) | OP.c.kind.in_(SLOTLESS),
                ~model_running,
            )
            closed = list(closed_hosts)
            if closed:  # outside their window; loads are not held by windows (WINDOWED)
                query = query.where(~(OP.c.host.in_(closed) & OP.c.kind.in_(WINDOWED)))
            candidate = conn.execute(query.order_by(OP.c.created_at).limit(1)).first()
            if candidate is None:
                conn.rollback()
                return None
            statement = (
                update(OP)
                .where(OP.c.id == candidate.id, OP.c.status == Status.QUEUED)
                .values(
                    status=Status.RUNNING,
                    runner_id=runner_id,
                    heartbeat_at=now,
                    started_at=func.coalesce(OP.c.started_at, now),
                    attempts=OP.c.attempts + 1,
                    message="starting",
                    updated_at=now,
                    seq=seq,
                )
                .returning(*OPERATION_ROW)
            )
            row = dict(conn.execute(statement).mappings().one())
            enqueued = self._count_and_notify(conn, {"status": Status.RUNNING}, row, now)
            conn.commit()
            self.bus.publish([operation_event(row, self.host_names)])
        if enqueued and self.outbox is not None:
            self.outbox.wake()
        return row

    def heartbeat(self, runner_id: str, op_ids: Iterable[str]) -> Rows:
        """Mark alive the operations this runner has a live job for; return those someone
        asked to cancel or pause (id, cancel_requested, paused_by: see
        lifecycle.stop_request).

        Only live jobs: a row this runner holds without a job (its final write failed)
        must go stale, so that recovery takes it over.
        Not a visible change, so it takes no sequence number and publishes nothing.
        """
        op_ids = list(op_ids)
        if not op_ids:
            return []
        now = time.time()
        owned = (OP.c.runner_id == runner_id, OP.c.status == Status.RUNNING, OP.c.id.in_(op_ids))
        asked = OP.c.cancel_requested | OP.c.paused_by.is_not(None)
        with self.engine.begin() as conn:
            conn.execute(update(OP).where(*owned).values(heartbeat_at=now))
            query = select(OP.c.id, OP.c.cancel_requested, OP.c.paused_by).where(*owned, asked)
            rows = conn.execute(query).mappings().all()
        return [dict(r) for r in rows]

    def running(self) -> Rows:
        """Who holds each running operation and what was asked of it: id, runner_id,
        heartbeat_at, cancel_requested, paused_by."""
        query = select(
            OP.c.id, OP.c.runner_id, OP.c.heartbeat_at, OP.c.cancel_requested, OP.c.paused_by
        ).where(OP.c.status == Status.RUNNING, NOT_RUN)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def purge_finished(self, before: float | None, *, keep: int | None = None) -> int:
        """Forget finished operations, with their logs: those that finished before
        ``before``, and all but the newest ``keep`` (the children of a running group stay)."""
        mark = None
        with self.engine.begin() as conn:
            # Both walk ix_ollama_deck_operation_finished_at (only finished operations have
            # a finished_at), then keep those that may be forgotten: with the status in the
            # same query, SQLite would read every finished row and sort them.
            found: list[str] = []
            if before is not None:
                old = select(OP.c.id).where(OP.c.finished_at < before)
                found += [r.id for r in conn.execute(old)]
            if keep is not None:
                mark = conn.execute(select(func.max(OP.c.seq))).scalar()
            if mark is not None and mark != self._kept_at_seq:
                surplus = (
                    select(OP.c.id)
                    .where(OP.c.finished_at.is_not(None))
                    .order_by(OP.c.finished_at.desc(), OP.c.seq.desc())
                    .offset(keep)
                )
                found += [r.id for r in conn.execute(surplus)]
            found = list(dict.fromkeys(found))
            ids: list[str] = []
            for start in range(0, len(found), 500):
                chunk = found[start : start + 500]
                ids += [
                    r.id
                    for r in conn.execute(select(OP.c.id).where(FORGETTABLE, OP.c.id.in_(chunk)))
                ]
            self._forget(conn, ids)
        if mark is not None:
            self._kept_at_seq = mark  # committed: this state has been looked at
        return len(ids)

    def forget_finished(self) -> Ids:
        """Delete every finished operation with its log (what "Clear finished" asks);
        the ids deleted. Active ones stay, whatever happens meanwhile, and so do the
        finished children of a group still running."""
        with self.engine.begin() as conn:
            query = select(OP.c.id).where(FORGETTABLE)
            ids = [r.id for r in conn.execute(query)]
            self._forget(conn, ids)
        return ids

    def delete_finished(self, op_id: str) -> Ids | None:
        """Delete one finished operation and its logs; for a group, its finished children
        too (they were its parts). The ids deleted; None if it is still active (or is a
        child of a group that is)."""
        with self.engine.begin() as conn:
            finished = select(OP.c.id).where(FORGETTABLE)
            if conn.execute(finished.where(OP.c.id == op_id)).first() is None:
                return None
            children = select(MEMBER.c.operation_id).where(MEMBER.c.group_id == op_id)
            ids = [op_id] + [r.id for r in conn.execute(finished.where(OP.c.id.in_(children)))]
            self._forget(conn, ids)
        return ids

    def _forget(self, conn: Connection, ids: Ids) -> None:
        """Inside a transaction that only read so far: delete these finished operations
        with their logs, commit, and publish that they are gone (the version book of every
        process's polls must hear it). The deletion takes a sequence number, as every
        change does, so a bus that loses its event sees a gap."""
        if not ids:
            return
        with self._write_lock:
            seq = self._take_seq(conn, 1)  # the counter's lock first, as every writer
            _delete_finished(conn, ids)
            conn.commit()
            self.bus.publish([gone_event(seq, ids)])

    # -- helpers --------------------------------------------------------------------

    @staticmethod
    def _check_room(conn: Connection, max_queued: int, adding: int) -> None:
        """QueueFull (after a rollback) unless ``adding`` more fit in ``max_queued``.
        Scheduled ones count: each will be queued by itself; groups run nothing."""
        queued = conn.execute(WAITING_COUNT).scalar_one()
        if queued + adding > max_queued:
            OperationStore._refuse(conn, queued, max_queued, adding)

    @staticmethod
    def _refuse(conn: Connection, queued: int, max_queued: int, adding: int) -> NoReturn:
        conn.rollback()
        more = "" if adding == 1 else f" and {adding} more do not fit"
        raise QueueFull(
            f"{queued} operations are queued or scheduled already{more} (the limit is "
            f"{max_queued}); try again when some have started"
        )

    @staticmethod
    def _insert_waiting(
        conn: Connection,
        first: int,
        *,
        room: int | None = None,
        kind: str,
        model: str,
        model_key: str,
        host: str,
        now: float,
        not_before: float | None = None,
        starts_at: float | None = None,
        schedule_note: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Insert a queued operation (scheduled with ``starts_at``) and its first log line,
        with sequence numbers ``first + 1`` and ``first``; return the log line and the
        operation's row, as it was written (a creator holds the counter's lock: no read
        after the write). With ``room``, only while fewer than ``room`` wait to start,
        else QueueFull after a rollback."""
        op_id = str(uuid.uuid4())
        status = Status.QUEUED if starts_at is None else Status.SCHEDULED
        text = f"{kind} of {model} {status}"
        if schedule_note and status == Status.SCHEDULED:
            text += f": {schedule_note}"
        values = {
            "id": op_id,
            "kind": kind,
            "model": model,
            "model_key": model_key,
            "host": host,
            "status": status,
            "phase": None,
            "percent": 0.0,
            "completed_bytes": 0,
            "total_bytes": 0,
            # The message until it starts.
            "message": schedule_note if status == Status.SCHEDULED else Status.QUEUED,
            "cancel_requested": False,
            "attempts": 0,
            "not_before": not_before,
            "starts_at": starts_at,
            "created_at": now,
            "updated_at": now,
            "seq": first + 1,
        }
        log = {"seq": first, "operation_id": op_id, "created_at": now, "text": text}
        statement = INSERT_OP if room is None else INSERT_OP_IF_ROOM
        params = values if room is None else {**values, "room": room}
        together = conn.dialect.name == "postgresql"
        if together:
            statement = WITH_FIRST_LINE[statement]
            params = {**params, "log_seq": first, "log_text": text}
        row = conn.execute(statement, params).mappings().first()
        if row is None:  # no room: counted again for the refusal's message
            assert room is not None
            OperationStore._refuse(conn, conn.execute(WAITING_COUNT).scalar_one(), room, 1)
        if not together:
            conn.execute(INSERT_LOG, log)
        return log, {**row, "log_count": 1}  # its one line, just written

    @staticmethod
    def _take_seq(conn: Connection, count: int) -> int:
        """Reserve ``count`` sequence numbers; return the first. With 0 it only takes the
        counter's lock (every writer takes it first), for a transaction that decides what
        to write by what it reads."""
        last = conn.execute(TAKE_SEQ, {"count": count}).scalar_one()
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


def _children_query(group_id: str) -> Any:
    return (
        select(*OPERATION_ROW)
        .join(MEMBER, MEMBER.c.operation_id == OP.c.id)
        .where(MEMBER.c.group_id == group_id)
        .order_by(MEMBER.c.position)
    )


def _joinable_on(conn: Connection, host: str, model_key: str) -> dict[str, Any] | None:
    """The operation of a model on a host that new requests join (active, no cancel asked
    for), if any."""
    query = select(*OPERATION_ROW).where(
        OP.c.host == host,
        OP.c.model_key == model_key,
        OP.c.status.in_(ACTIVE_STATUSES),
        OP.c.cancel_requested.is_(False),
    )
    found = conn.execute(query).mappings().first()
    return dict(found) if found is not None else None
