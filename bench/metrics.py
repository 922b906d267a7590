"""What ``GET /metrics`` costs with 100,000 finished operations in the database.

Serves the deck (``ollama-deck serve``, one gevent worker, runner off so queued operations
stay queued) against a fake Ollama, and on one keep-alive connection times ``GET /metrics``
with an empty database (the baseline, measured in the same run), then again after
100,000 finished operations (pulls, updates and loads over two hosts, every final status)
and 50 queued ones were written, with the tallies their ends add (``tally.final_deltas``,
what the store writes in each operation's final transaction). On SQLite, and on
PostgreSQL with ``--postgres URL`` (a schema of its own, dropped after). Ends with one line
per database:
``metrics: db=<name> operations=<n> full_vs_empty=<ratio> empty_ms=<ms> full_ms=<ms>
 full_p95_ms=<ms>``

    python bench/metrics.py [--operations 100000] [--requests 300] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid

import common
from sqlalchemy import create_engine
from sqlalchemy import insert

from ollama_deck.db import Operation
from ollama_deck.db import table_of
from ollama_deck.lifecycle import FINAL
from ollama_deck.lifecycle import Kind
from ollama_deck.lifecycle import Status
from ollama_deck.services import tally
from ollama_deck.testing import FakeOllama

OP = table_of(Operation)
BATCH = 5000


def fill(database_url: str, hosts: list[str], operations: int) -> None:
    """``operations`` finished operations, 50 queued ones, and the tallies of the ends."""
    engine = create_engine(database_url)
    rng = random.Random(7)
    kinds = [Kind.PULL, Kind.PULL, Kind.UPDATE, Kind.LOAD]
    now = time.time()
    seq = 1_000_000
    with engine.begin() as conn:
        deltas: dict[tally.Key, float] = {}
        rows = []
        for n in range(operations + 50):
            queued = n >= operations
            started = now - rng.uniform(60, 7 * 86400)
            model = f"bench{n}:1b"
            status = Status.QUEUED if queued else rng.choice(FINAL)
            size = rng.randrange(1_000_000, 5_000_000_000)
            row = {
                "id": str(uuid.uuid4()),
                "kind": rng.choice(kinds),
                "model": model,
                "model_key": model,
                "host": rng.choice(hosts),
                "status": status,
                "phase": None,
                "percent": 0.0 if queued else 100.0,
                "completed_bytes": 0 if queued else size,
                "total_bytes": size,
                "cancel_requested": False,
                "attempts": 0 if queued else 1,
                "created_at": started,
                "updated_at": started,
                "started_at": None if queued else started,
                "finished_at": None if queued else started + rng.uniform(5, 3600),
                "seq": seq + n,
            }
            rows.append(row)
            if not queued:
                for key, value in tally.final_deltas(row).items():
                    deltas[key] = deltas.get(key, 0.0) + value
            if len(rows) == BATCH:
                conn.execute(insert(OP), rows)
                rows = []
        if rows:
            conn.execute(insert(OP), rows)
        tally.add(conn, deltas, now)
    engine.dispose()


def measure(name: str, url: str, ollama: list[FakeOllama], args: argparse.Namespace) -> str:
    hosts = {f"h{i}": fake.url for i, fake in enumerate(ollama)}
    env = {
        "OLLAMA_HOSTS": ",".join(f"{k}={v}" for k, v in hosts.items()),
        "OLLAMA_DECK_START_RUNNER": "0",
    }
    env.pop("OLLAMA_HOST", None)
    process, base = common.start_deck(ollama[0].url, url, env=env)
    port = int(base.rsplit(":", 1)[1])
    try:
        # Warm up: connections, the first probe of each Ollama.
        common.timed_gets(port, "/metrics", 20, timeout=30)
        empty = common.timed_gets(port, "/metrics", args.requests, timeout=30)
        started = time.monotonic()
        fill(url, list(hosts.values()), args.operations)
        filled_in = time.monotonic() - started
        common.timed_gets(port, "/metrics", 20, timeout=30)
        full = common.timed_gets(port, "/metrics", args.requests, timeout=30)
    finally:
        process.terminate()
        process.wait(15)
    empty_ms, full_ms = statistics.median(empty), statistics.median(full)
    p95 = statistics.quantiles(full, n=20)[-1]
    print(f"{name}: filled in {filled_in:.1f} s; load {os.getloadavg()[0]:.2f}")
    return (
        f"metrics: db={name} operations={args.operations} "
        f"full_vs_empty={full_ms / empty_ms:.2f} empty_ms={empty_ms:.2f} "
        f"full_ms={full_ms:.2f} full_p95_ms={p95:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", help="a PostgreSQL URL (postgresql+psycopg://...)")
    args = parser.parse_args()
    fakes = [FakeOllama().start(), FakeOllama().start()]
    lines = []
    try:
        for name in ["sqlite"] + (["postgresql"] if args.postgres else []):
            with common.bench_database(name, args.postgres) as url:
                lines.append(measure(name, url, fakes, args))
    finally:
        for fake in fakes:
            fake.stop()
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
