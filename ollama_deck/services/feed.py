"""The change feed: what committed, read back from the database by sequence number.

Every change of an operation or its log takes numbers of one global sequence, and changes
commit in sequence order (see :mod:`.store`). So "everything after N" is a complete answer,
and it is all a resuming SSE client (``streams``) or a bus filling a gap (``bus``) needs.
The feed only reads: the store writes, the bus carries, and neither knows the other.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from collections.abc import Mapping
from typing import Any
from typing import cast

from sqlalchemy import Engine
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..db import ACTIVE_STATUSES
from ..db import Counter
from ..db import GroupMember
from ..db import Operation
from ..db import OperationLog
from ..db import SEQ_COUNTER
from ..db import table_of
from ..serializers import log_event
from ..serializers import operation_event
from .events import DeckEvent
from .rows import OPERATION_ROW

OP = table_of(Operation)
LOG = table_of(OperationLog)
MEMBER = table_of(GroupMember)
# One operation (its id), several (a group and its children), or every one (None).
Which = str | Collection[str] | None


def _ids(which: Which) -> list[str] | None:
    if which is None:
        return None
    return [which] if isinstance(which, str) else list(which)


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


class ChangeFeed:
    """Reads committed changes as events, in sequence order.

    ``names`` maps Ollama URLs to their configured names, as the events show them.
    """

    def __init__(self, engine: Engine, names: Mapping[str, str] | None = None) -> None:
        self.engine = engine
        self.names = dict(names or {})
        self.frames = FrameCache()

    def committed_seq(self) -> int:
        """The newest sequence number taken; every change up to it has committed."""
        with self.engine.connect() as conn:
            return _committed_seq(conn)

    def family(self, op_id: str) -> list[str]:
        """The operation and, for a group, its children: what its event stream carries."""
        query = select(MEMBER.c.operation_id).where(MEMBER.c.group_id == op_id)
        with self.engine.connect() as conn:
            return [op_id] + list(conn.execute(query).scalars())

    def replay(self, after_seq: int, op_id: Which = None) -> tuple[list[DeckEvent], int]:
        """What changed after ``after_seq``: every log line and each operation's newest state.

        Also returns a sequence number that everything committed before the read is at or
        below: a watcher skips later events up to it, as the replay covered them.
        One read of everything: streams use ``replay_window`` page by page instead.
        """
        covered = self.committed_seq()
        events = self.replay_window(after_seq, covered, op_id)
        return events, max([covered, after_seq] + [e.seq for e in events])

    def replay_window(self, after_seq: int, upto_seq: int, op_id: Which = None) -> list[DeckEvent]:
        """Log lines and operation states with ``after_seq < seq <= upto_seq``, in seq order.

        A window of N sequence numbers holds at most N events (each number belongs to one
        row at most), so windows bound what one read brings into memory.
        """
        logs = select(LOG).where(LOG.c.seq > after_seq, LOG.c.seq <= upto_seq)
        ops = select(*OPERATION_ROW).where(OP.c.seq > after_seq, OP.c.seq <= upto_seq)
        ids = _ids(op_id)
        if ids is not None:
            logs = logs.where(LOG.c.operation_id.in_(ids))
            ops = ops.where(OP.c.id.in_(ids))
        with self.engine.connect() as conn:
            events = [log_event(cast(dict, r)) for r in conn.execute(logs).mappings()]
            events += [self.frames.event(r, self.names) for r in conn.execute(ops).mappings()]
        events.sort(key=lambda e: e.seq)
        return events

    def states_since(
        self, after_seq: int, upto_seq: int, op_id: Which = None, *, limit: int = 200
    ) -> list[DeckEvent]:
        """The current state (no logs) of up to ``limit`` operations that changed in
        ``(after_seq, upto_seq]``, in seq order; page on with the last one's seq."""
        query = (
            select(*OPERATION_ROW)
            .where(OP.c.seq > after_seq, OP.c.seq <= upto_seq)
            .order_by(OP.c.seq)
            .limit(limit)
        )
        ids = _ids(op_id)
        if ids is not None:
            query = query.where(OP.c.id.in_(ids))
        with self.engine.connect() as conn:
            return [self.frames.event(r, self.names) for r in conn.execute(query).mappings()]

    def states_worth_replaying(
        self, after_seq: int, upto_seq: int, *, newest_finished: int
    ) -> list[DeckEvent]:
        """The current state of every active operation that changed in ``(after_seq,
        upto_seq]`` and of the newest ``newest_finished`` finished ones, in seq order."""
        changed = (OP.c.seq > after_seq) & (OP.c.seq <= upto_seq)
        active = select(*OPERATION_ROW).where(changed, OP.c.status.in_(ACTIVE_STATUSES))
        finished = (
            select(*OPERATION_ROW)
            .where(changed, OP.c.status.notin_(ACTIVE_STATUSES))
            .order_by(OP.c.seq.desc())
            .limit(newest_finished)
        )
        with self.engine.connect() as conn:
            rows = [*conn.execute(active).mappings(), *conn.execute(finished).mappings()]
        events = [self.frames.event(r, self.names) for r in rows]
        events.sort(key=lambda e: e.seq)
        return events

    def current_events(self, op_id: Which = None) -> tuple[list[DeckEvent], int]:
        """The state of one operation (or a group and its children), or of every active
        one, as events in seq order.

        Returns the covered sequence number too, as ``replay`` does.
        """
        query = select(*OPERATION_ROW).order_by(OP.c.seq)
        ids = _ids(op_id)
        if ids is not None:
            query = query.where(OP.c.id.in_(ids))
        else:
            query = query.where(OP.c.status.in_(ACTIVE_STATUSES))
        with self.engine.connect() as conn:
            covered = _committed_seq(conn)
            rows = conn.execute(query).mappings()
            events = [operation_event(cast(dict, r), self.names) for r in rows]
        return events, max([covered] + [e.seq for e in events])


def _committed_seq(conn: Connection) -> int:
    """The newest sequence number taken, read first: later reads may see more (PostgreSQL
    reads each statement afresh), never less."""
    query = select(Counter.value).where(Counter.name == SEQ_COUNTER)
    return conn.execute(query).scalar_one()
