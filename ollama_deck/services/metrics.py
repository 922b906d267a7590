"""``GET /metrics``: what the deck did and sees, the same whichever worker answers.

Nothing here is a counter of the process that answers. A scrape reads the database:

- the tallies (services/tally.py): finished operations, bytes, pull durations, written
  with each operation's end; Ollama request timings and SSE watchers, which each process
  adds every few seconds (:class:`Observations`);
- the operations active now, by status and host: one grouped count over the status index;
- the webhook deliveries that wait.

``ollama_deck_ollama_up`` is the newest outcome of a request to each Ollama host that any
process recorded; when none is newer than ``probe_after`` seconds, the scrape asks Ollama
itself (its version, within the quick timeout) and records that for the others.

Rendered with prometheus_client, in Prometheus' text format (0.0.4). Not OpenMetrics: it
names a family once per name, and the issue's ``ollama_deck_operations`` gauge shares its
name with the ``ollama_deck_operations_total`` counter's family.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.core import Metric
from sqlalchemy import Engine
from sqlalchemy import func
from sqlalchemy import select

from ..db import Operation
from ..db import table_of
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import DeckError
from ..lifecycle import ACTIVE
from . import tally
from .tally import Key

OP = table_of(Operation)
PREFIX = "ollama_deck_"
log = logging.getLogger(__name__)
# Metrics' text format, as prometheus_client writes it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TALLIES = (
    tally.OPERATIONS,
    tally.PULL_BYTES,
    tally.PULL_DURATION + tally.BUCKET,
    tally.PULL_DURATION + tally.SUM,
    tally.OLLAMA_REQUESTS + tally.BUCKET,
    tally.OLLAMA_REQUESTS + tally.SUM,
    tally.OLLAMA_UP,
    tally.SSE_WATCHERS,
    tally.WEBHOOKS,
)


class Observations:
    """What this process saw since it last added to the tallies: its requests to Ollama
    (time, endpoint, whether Ollama answered at all) and its open event streams."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._deltas: dict[Key, float] = {}
        self._reach: dict[str, tuple[bool, float]] = {}  # Ollama URL -> (answered, when)
        self._watchers_written: tuple[int, float] | None = None

    def ollama_request(self, host: str, endpoint: str, seconds: float, answered: bool) -> None:
        """One request to the Ollama at ``host`` (its URL): how long until it answered (or
        failed), and whether it answered at all (any HTTP status counts)."""
        with self._lock:
            tally.observe(
                self._deltas,
                tally.OLLAMA_REQUESTS,
                seconds,
                tally.REQUEST_BUCKETS,
                host=host,
                endpoint=endpoint,
            )
            self._reach[host] = (answered, self.clock())

    def flush(self, engine: Engine, process: str, watchers: int, stale: float) -> None:
        """Add what was seen to the tallies in one transaction; write this process's
        watcher count when it changed, or (while not 0) when the stored one is older than
        a third of ``stale``.

        On a database fault nothing is lost: the observations wait for the next flush.
        """
        with self._lock:
            deltas, self._deltas = self._deltas, {}
            reach, self._reach = self._reach, {}
        now = self.clock()
        written = self._watchers_written
        if written is None or written[0] != watchers:
            due = written is not None or watchers > 0  # a change (a first 0 says nothing)
        else:  # the same: kept fresh while there are any (a stale row is not counted)
            due = watchers > 0 and now - written[1] > stale / 3
        if not (deltas or reach or due):
            return
        try:
            with engine.begin() as conn:
                tally.add(conn, deltas, now)
                for host, (answered, seen_at) in sorted(reach.items()):
                    key = (tally.OLLAMA_UP, tally.labels(host=host))
                    tally.put_newer(conn, key, 1.0 if answered else 0.0, seen_at)
                if due:
                    key = (tally.SSE_WATCHERS, tally.labels(process=process))
                    tally.put(conn, {key: float(watchers)}, now)
        except DATABASE_ERRORS as exc:
            log.warning("could not add this process's observations: %s", first_line(exc))
            with self._lock:
                for key, value in deltas.items():
                    self._deltas[key] = self._deltas.get(key, 0.0) + value
                for host, seen in reach.items():
                    self._reach.setdefault(host, seen)
            return
        if due:
            self._watchers_written = (watchers, now)


@dataclass
class Snapshot:
    """What one scrape read."""

    database_up: bool
    tallies: list[dict[str, Any]] = field(default_factory=list)
    active: list[tuple[str, str, int]] = field(default_factory=list)  # status, host, count
    pending_deliveries: int = 0


def read_snapshot(
    engine: Engine, *, pending: Callable[[Any], int] | None, watcher_stale: float
) -> Snapshot:
    """The database's part of /metrics, in one connection: three small reads."""
    now = time.time()
    try:
        with engine.connect() as conn:
            rows = tally.read(conn, TALLIES)
            active = conn.execute(
                select(OP.c.status, OP.c.host, func.count())
                .where(OP.c.status.in_(list(ACTIVE)))
                .group_by(OP.c.status, OP.c.host)
            ).all()
            waiting = pending(conn) if pending is not None else 0
    except DATABASE_ERRORS as exc:
        log.warning("metrics could not read the database: %s", first_line(exc))
        return Snapshot(database_up=False)
    fresh = [
        r
        for r in rows
        if r["metric"] != tally.SSE_WATCHERS or r["updated_at"] >= now - watcher_stale
    ]
    return Snapshot(True, fresh, [(s, h, n) for s, h, n in active], waiting)


def stale_hosts(snapshot: Snapshot, urls: Iterable[str], older_than: float) -> list[str]:
    """The Ollama URLs whose newest recorded outcome is older than ``older_than`` (or none)."""
    seen = {
        r["labels"].get("host"): r["updated_at"]
        for r in snapshot.tallies
        if r["metric"] == tally.OLLAMA_UP
    }
    return [url for url in urls if seen.get(url, 0.0) < older_than]


class DeckCollector:
    """Turns one snapshot into metric families (prometheus_client's collector protocol)."""

    def __init__(self, snapshot: Snapshot, names: Mapping[str, str], version: str) -> None:
        self.snapshot = snapshot
        self.names = dict(names)  # Ollama URL -> configured name, in order
        self.version = version

    def host(self, url: str) -> str:
        return self.names.get(url, url)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            PREFIX + "info", "The deck's version (always 1).", labels=["version"]
        )
        info.add_metric([self.version], 1)
        yield info
        up = GaugeMetricFamily(
            PREFIX + "database_up", "1 when the deck's database answered this scrape, else 0."
        )
        up.add_metric([], 1 if self.snapshot.database_up else 0)
        yield up
        if not self.snapshot.database_up:
            return
        rows = self.snapshot.tallies
        yield self._operations_total(rows)
        yield self._active()
        yield self._by_host(
            rows,
            tally.PULL_BYTES,
            CounterMetricFamily(
                PREFIX + "pull_bytes",
                "Bytes of the pulls and updates that succeeded, as Ollama counted them "
                "(layers it had already count too).",
                labels=["host"],
            ),
        )
        yield self._histogram(
            rows,
            tally.PULL_DURATION,
            tally.DURATION_BUCKETS,
            ["host"],
            "Seconds from first start to success of pulls and updates.",
        )
        yield self._ollama_up(rows)
        yield self._histogram(
            rows,
            tally.OLLAMA_REQUESTS,
            tally.REQUEST_BUCKETS,
            ["host", "endpoint"],
            "Seconds until Ollama answered a request of the deck (for streams: until it "
            "began to answer), by endpoint.",
        )
        watchers = GaugeMetricFamily(
            PREFIX + "sse_watchers", "Open event streams, summed over every worker."
        )
        watchers.add_metric([], sum(r["value"] for r in rows if r["metric"] == tally.SSE_WATCHERS))
        yield watchers
        yield from self._deliveries(rows)

    def _operations_total(self, rows: list[dict[str, Any]]) -> Metric:
        family = CounterMetricFamily(
            PREFIX + "operations",
            "Operations that ended, by kind, final status and Ollama host.",
            labels=["kind", "status", "host"],
        )
        totals: dict[tuple[str, str, str], float] = {}
        for row in rows:
            if row["metric"] == tally.OPERATIONS:
                lab = row["labels"]
                key = (lab["kind"], lab["status"], self.host(lab["host"]))
                totals[key] = totals.get(key, 0.0) + row["value"]
        for key, value in sorted(totals.items()):
            family.add_metric(list(key), value)
        return family

    def _active(self) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "operations",
            "Operations active now, by status (every active status of the lifecycle) "
            "and Ollama host.",
            labels=["status", "host"],
        )
        counts = {(str(s), self.host(h)): 0.0 for s in ACTIVE for h in self.names}
        for status, url, count in self.snapshot.active:
            key = (str(status), self.host(url))
            counts[key] = counts.get(key, 0.0) + count
        for key, value in sorted(counts.items()):
            family.add_metric(list(key), value)
        return family

    def _by_host(self, rows: list[dict[str, Any]], metric: str, family: Any) -> Metric:
        totals: dict[str, float] = {}
        for row in rows:
            if row["metric"] == metric:
                name = self.host(row["labels"]["host"])
                totals[name] = totals.get(name, 0.0) + row["value"]
        for name, value in sorted(totals.items()):
            family.add_metric([name], value)
        return family

    def _ollama_up(self, rows: list[dict[str, Any]]) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "ollama_up",
            "1 when the newest request to the Ollama host got an answer, else 0.",
            labels=["host"],
        )
        seen = {r["labels"]["host"]: r["value"] for r in rows if r["metric"] == tally.OLLAMA_UP}
        for url, name in self.names.items():
            if url in seen:
                family.add_metric([name], seen[url])
        return family

    def _histogram(
        self,
        rows: list[dict[str, Any]],
        metric: str,
        bounds: tuple[float, ...],
        label_names: list[str],
        text: str,
    ) -> Metric:
        family = HistogramMetricFamily(PREFIX + metric, text, labels=label_names)
        buckets: dict[tuple[str, ...], dict[float, float]] = {}
        sums: dict[tuple[str, ...], float] = {}
        for row in rows:
            if row["metric"] not in (metric + tally.BUCKET, metric + tally.SUM):
                continue
            lab = dict(row["labels"])
            lab["host"] = self.host(lab["host"])
            key = tuple(lab[name] for name in label_names)
            if row["metric"] == metric + tally.SUM:
                sums[key] = sums.get(key, 0.0) + row["value"]
            else:
                upper = float(lab["le"])
                into = buckets.setdefault(key, {})
                into[upper] = into.get(upper, 0.0) + row["value"]
        for key in sorted(buckets):
            counts = buckets[key]
            uppers = sorted(set(bounds) | set(counts) | {math.inf})
            running = 0.0
            cumulative = []
            for upper in uppers:
                running += counts.get(upper, 0.0)
                cumulative.append((tally.bound(upper), running))
            family.add_metric(list(key), cumulative, sum_value=sums.get(key, 0.0))
        return family

    def _deliveries(self, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        settled = CounterMetricFamily(
            PREFIX + "webhook_deliveries",
            "Webhook deliveries settled: delivered, or given up (failed).",
            labels=["status"],
        )
        for row in sorted(rows, key=lambda r: r["labels"].get("status", "")):
            if row["metric"] == tally.WEBHOOKS:
                settled.add_metric([row["labels"]["status"]], row["value"])
        yield settled
        waiting = GaugeMetricFamily(
            PREFIX + "webhook_deliveries_pending",
            "Webhook deliveries not yet delivered (first try or a retry to come).",
        )
        waiting.add_metric([], self.snapshot.pending_deliveries)
        yield waiting


class Prober(Protocol):
    def version(self) -> str: ...


def scrape(
    engine: Engine,
    *,
    names: Mapping[str, str],
    clients: Mapping[str, Prober],
    observations: Observations,
    process: str,
    watchers: int,
    probe_after: float,
    watcher_stale: float,
    pending: Callable[[Any], int] | None,
    version: str,
) -> bytes:
    """The text of /metrics. Reads the database; asks an Ollama host for its version only
    when no process recorded an outcome with it for ``probe_after`` seconds (every host
    at once, each within its quick timeout), and records what it found for the others."""
    snapshot = read_snapshot(engine, pending=pending, watcher_stale=watcher_stale)
    if snapshot.database_up:
        stale = stale_hosts(snapshot, names, time.time() - probe_after)
        if stale:
            threads = [
                threading.Thread(target=_probe, args=(clients[url],), daemon=True)
                for url in stale
                if url in clients
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            observations.flush(engine, process, watchers, watcher_stale)
            snapshot = read_snapshot(engine, pending=pending, watcher_stale=watcher_stale)
    return render(snapshot, names, version)


def _probe(client: Prober) -> None:
    try:
        client.version()  # its outcome reaches the observations through the client
    except DeckError:
        pass


def render(snapshot: Snapshot, names: Mapping[str, str], version: str) -> bytes:
    """The text of /metrics for ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeckCollector(snapshot, names, version))  # type: ignore[arg-type]
    return generate_latest(registry)
