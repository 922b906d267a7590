"""Running totals in the database (table ``ollama_deck_tally``): what /metrics reports.

Every worker must report the same numbers, so none of them lives in a process alone:

- what the deck did (finished operations, bytes pulled, how long pulls took) is added in
  the transaction that ends the operation, so it is counted exactly once and survives the
  purge of old operations (a count of surviving rows would go down at each purge, which
  Prometheus reads as a counter reset);
- what each process saw (its Ollama requests, its open event streams) is added by that
  process every few seconds (services/metrics.py).

A row is one metric and one set of labels. Histograms keep one row per bucket, counting
the observations that fell in it (not cumulative, so an observation changes one row); the
bucket's upper bound is the label ``le``, written as Prometheus writes it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Connection

from ..db import table_of
from ..db import Tally
from ..lifecycle import Kind
from ..lifecycle import Status

TALLY = table_of(Tally)

OPERATIONS = "operations_total"  # labels: kind, status, host (the Ollama URL)
PULL_BYTES = "pull_bytes_total"  # labels: host
PULL_DURATION = "pull_duration_seconds"  # a histogram; labels: host
OLLAMA_REQUESTS = "ollama_request_seconds"  # a histogram; labels: host, endpoint
OLLAMA_UP = "ollama_up"  # labels: host; the newest outcome any process saw (updated_at)
SSE_WATCHERS = "sse_watchers"  # labels: process; each process's own count
WEBHOOKS = "webhook_deliveries_total"  # labels: status (delivered or failed, when settled)

BUCKET = "_bucket"
SUM = "_sum"
# Pulls take seconds to hours.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# Requests to Ollama take milliseconds to its timeouts.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Kinds whose duration and bytes are those of a pull (a load's include loading it).
PULLS = (Kind.PULL, Kind.UPDATE)

Key = tuple[str, str]  # (metric, labels JSON)


def labels(**values: str) -> str:
    """The labels column: JSON with sorted keys, so equal labels are equal text."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def bound(value: float) -> str:
    """A bucket bound as Prometheus writes it (``0.5``, ``30.0``, ``+Inf``)."""
    if math.isinf(value):
        return "+Inf"
    return repr(float(value))


def bucket_of(value: float, bounds: Iterable[float]) -> str:
    """The bound of the first bucket that holds ``value``."""
    for upper in bounds:
        if value <= upper:
            return bound(upper)
    return bound(math.inf)


def observe(deltas: dict[Key, float], metric: str, value: float, bounds: Iterable[float], **lab):
    """Add one observation of a histogram to ``deltas``: its bucket and its sum."""
    bucket_labels = labels(**lab, le=bucket_of(value, bounds))
    key = (metric + BUCKET, bucket_labels)
    deltas[key] = deltas.get(key, 0.0) + 1
    total = (metric + SUM, labels(**lab))
    deltas[total] = deltas.get(total, 0.0) + value


def final_deltas(row: Mapping[str, Any]) -> dict[Key, float]:
    """What an operation that just ended adds: one finished operation; for a pull or an
    update that succeeded, its bytes and its duration (first start to end)."""
    host = str(row["host"])
    deltas: dict[Key, float] = {
        (OPERATIONS, labels(kind=str(row["kind"]), status=str(row["status"]), host=host)): 1.0
    }
    if row["kind"] in PULLS and row["status"] == Status.SUCCEEDED:
        deltas[(PULL_BYTES, labels(host=host))] = float(row["completed_bytes"] or 0)
        started, finished = row["started_at"], row["finished_at"]
        if started is not None and finished is not None:
            seconds = max(0.0, finished - started)
            observe(deltas, PULL_DURATION, seconds, DURATION_BUCKETS, host=host)
    return deltas


def add(conn: Connection, deltas: Mapping[Key, float], now: float) -> None:
    """Add ``deltas`` to their rows (made at 0 when missing), in ``conn``'s transaction.

    Rows are written in one order (sorted), so two transactions never wait for each other
    in a cycle.
    """
    rows = [
        {"metric": metric, "labels": lab, "value": value, "updated_at": now}
        for (metric, lab), value in sorted(deltas.items())
        if value
    ]
    if rows:
        _upsert(conn, rows, additive=True)


def put(conn: Connection, values: Mapping[Key, float], now: float) -> None:
    """Set gauges to ``values`` (made when missing)."""
    rows = [
        {"metric": metric, "labels": lab, "value": value, "updated_at": now}
        for (metric, lab), value in sorted(values.items())
    ]
    if rows:
        _upsert(conn, rows, additive=False)


def put_newer(conn: Connection, key: Key, value: float, seen_at: float) -> None:
    """Set a gauge to what was seen at ``seen_at``, unless something newer is stored."""
    metric, lab = key
    row = {"metric": metric, "labels": lab, "value": value, "updated_at": seen_at}
    _upsert(conn, [row], additive=False, only_newer=True)


def forget_older(conn: Connection, metric: str, before: float) -> int:
    """Delete the rows of ``metric`` not written since ``before`` (e.g. the watcher counts
    of processes long gone: one row per process that ever served)."""
    stale = delete(TALLY).where(TALLY.c.metric == metric, TALLY.c.updated_at < before)
    return conn.execute(stale).rowcount


def read(conn: Connection, metrics: Iterable[str]) -> list[dict[str, Any]]:
    """Every row of ``metrics``: metric, labels (a dict), value, updated_at."""
    query = select(TALLY).where(TALLY.c.metric.in_(list(metrics)))
    return [
        {
            "metric": r.metric,
            "labels": json.loads(r.labels),
            "value": r.value,
            "updated_at": r.updated_at,
        }
        for r in conn.execute(query)
    ]


def _upsert(
    conn: Connection, rows: list[dict[str, Any]], *, additive: bool, only_newer: bool = False
) -> None:
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        statement = insert(TALLY)
        excluded = statement.excluded
        value = TALLY.c.value + excluded.value if additive else excluded.value
        statement = statement.on_conflict_do_update(
            index_elements=[TALLY.c.metric, TALLY.c.labels],
            set_={"value": value, "updated_at": excluded.updated_at},
            where=(TALLY.c.updated_at < excluded.updated_at) if only_newer else None,
        )
        conn.execute(statement, rows)
        return
    # Other databases: update, then insert what was missing (in the caller's transaction).
    for row in rows:
        key = (TALLY.c.metric == row["metric"], TALLY.c.labels == row["labels"])
        new = TALLY.c.value + row["value"] if additive else row["value"]
        change = update(TALLY).where(*key).values(value=new, updated_at=row["updated_at"])
        if only_newer:
            change = change.where(TALLY.c.updated_at < row["updated_at"])
        if conn.execute(change).rowcount == 0:
            exists = conn.execute(select(TALLY.c.metric).where(*key)).first()
            if exists is None:
                conn.execute(TALLY.insert().values(**row))
