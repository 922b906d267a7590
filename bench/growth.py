"""What a long history costs: 1,000, 10,000 and 100,000 finished operations.

Serves the deck (``ollama-deck serve``, one gevent worker, the runner on, so its upkeep
runs as in production) with ``OLLAMA_DECK_KEEP_FINISHED_COUNT`` and ``..._HOURS`` raised
so that nothing is purged, against a fake Ollama. At each size (finished operations with
two log lines each, written straight into the database and analyzed as autovacuum would,
then 20 active ones) it measures
on one keep-alive connection: ``GET /progress`` (the first page, 100 operations) and the
page past the middle of the history (``?before=``, when the deck pages), p50 and p99 of
``--requests``; a replay from event 0 of the stream of everything (bytes and seconds
until it goes quiet); and the worker's CPU while idle for ``--idle`` seconds. On SQLite,
and on PostgreSQL with ``--postgres URL`` (a schema of its own, dropped after). Several
rounds; the median of each figure. Ends with one line per database:
``growth: store=<name> list_ratio=<p50 at 100k / p50 at 1k> list_p50_ms=<1k>/<100k>
 list_p99_ms=<100k> page_p50_ms=<100k> replay_mb=<at 100k> replay_s=<at 100k>
 idle_cpu=<1k %>/<100k %>``.

    python bench/growth.py [--sizes 1000,10000,100000] [--rounds 2] [--postgres URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import time
import uuid
from typing import Any

import common
from sqlalchemy import create_engine
from sqlalchemy import insert
from sqlalchemy import text
from sqlalchemy import update

from ollama_deck.db import Counter
from ollama_deck.db import Operation
from ollama_deck.db import OperationLog
from ollama_deck.db import SEQ_COUNTER
from ollama_deck.db import table_of
from ollama_deck.lifecycle import FINAL
from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

OP = table_of(Operation)
LOG = table_of(OperationLog)
COUNTER = table_of(Counter)
BATCH = 5000


def fill(database_url: str, host: str, start: int, stop: int) -> None:
    """Finished operations ``start`` to ``stop``, two log lines each, with sequence numbers
    reserved from the deck's counter as the deck reserves them (it may write meanwhile)."""
    engine = create_engine(database_url)
    rng = random.Random(start)
    now = time.time()
    with engine.begin() as conn:
        reserve = 3 * (stop - start)
        taken = conn.execute(
            update(COUNTER)
            .where(COUNTER.c.name == SEQ_COUNTER)
            .values(value=COUNTER.c.value + reserve)
            .returning(COUNTER.c.value)
        ).scalar_one()
        seq = taken - reserve + 1
        ops, logs = [], []
        for n in range(start, stop):
            created = now - 7 * 86400 + n  # older first, one a second
            op_id = str(uuid.uuid4())
            model = f"hist{n}:1b"
            for line in (f"pull of {model} queued", "success"):
                logs.append(
                    {"seq": seq, "operation_id": op_id, "created_at": created, "text": line}
                )
                seq += 1
            size = rng.randrange(1_000_000, 5_000_000_000)
            ops.append(
                {
                    "id": op_id,
                    "kind": "pull",
                    "model": model,
                    "model_key": model,
                    "host": host,
                    "status": rng.choice(FINAL),
                    "phase": None,
                    "percent": 100.0,
                    "completed_bytes": size,
                    "total_bytes": size,
                    "cancel_requested": False,
                    "attempts": 1,
                    "created_at": created,
                    "updated_at": created + 30,
                    "started_at": created,
                    "finished_at": created + 30,
                    "seq": seq,
                }
            )
            seq += 1
            if len(ops) == BATCH:
                conn.execute(insert(OP), ops)
                conn.execute(insert(LOG), logs)
                ops, logs = [], []
        if ops:
            conn.execute(insert(OP), ops)
            conn.execute(insert(LOG), logs)
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk insert, a little later: without statistics the
        # planner's estimates are off by far enough to turn on JIT (+20 ms a query).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    engine.dispose()


def replay(port: int) -> tuple[int, float]:
    """Bytes of a replay of everything from event 0, and the seconds until it went quiet
    (half a second without a byte; heartbeats come every 15 s)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(b"GET /progress/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 0\r\n\r\n")
    received, started, last = 0, time.perf_counter(), time.perf_counter()
    sock.settimeout(0.5)
    try:
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                break
            if not chunk:
                break
            received += len(chunk)
            last = time.perf_counter()
    finally:
        sock.close()
    return received, last - started


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def next_cursor(port: int, path: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body.get("next")


def one_round(name: str, url: str, fake: FakeOllama, args: argparse.Namespace) -> dict[int, dict]:
    env = {
        "OLLAMA_DECK_KEEP_FINISHED_COUNT": "1000000",
        "OLLAMA_DECK_KEEP_FINISHED_HOURS": "100000",
        "OLLAMA_DECK_ACCESS_LOG": "0",
        "OLLAMA_DECK_MAX_QUEUED": "1000",
    }
    process, base = common.start_deck(fake.url, url, env=env)
    port = int(base.rsplit(":", 1)[1])
    worker = common.worker_pids(process.pid, 1)[0]
    figures: dict[int, dict] = {}
    try:
        import requests

        done = 0
        for size in args.sizes:
            fill(url, fake.url, done, size)
            done = size
            for n in range(20 if size == args.sizes[0] else 0):  # active: 2 held, 18 queued
                fake.allow_pull(f"now{n}:1b", PullScript(hold_after=1))
                requests.post(base + "/api/models/pull", json={"model": f"now{n}:1b"}, timeout=30)
            common.timed_gets(port, "/progress", 10)  # warm up
            first = common.timed_gets(port, "/progress", args.requests)
            cursor = None
            for _ in range(max(1, size // 2000)):  # to the middle, 1,000 a page
                page = "/progress?limit=1000" + (f"&before={cursor}" if cursor else "")
                cursor = next_cursor(port, page) or cursor
            deep = []
            if cursor:
                deep = common.timed_gets(port, f"/progress?before={cursor}", args.requests)
            replayed, replay_s = replay(port)
            before = cpu_seconds(worker)
            time.sleep(args.idle)
            idle = (cpu_seconds(worker) - before) / args.idle * 100
            figures[size] = {
                "p50": statistics.median(first),
                "p99": statistics.quantiles(first, n=100)[98],
                "page_p50": statistics.median(deep) if deep else float("nan"),
                "replay_mb": replayed / 1e6,
                "replay_s": replay_s,
                "idle_cpu": idle,
            }
            f = figures[size]
            print(
                f"{name} {size}: list p50 {f['p50']:.1f} ms p99 {f['p99']:.1f} ms, deep page "
                f"p50 {f['page_p50']:.1f} ms, replay {f['replay_mb']:.2f} MB in "
                f"{f['replay_s']:.2f} s, idle CPU {f['idle_cpu']:.2f} %, load "
                f"{os.getloadavg()[0]:.2f}"
            )
    finally:
        process.terminate()
        process.wait(20)
    return figures


def median_of(rounds: list[dict[int, dict]], size: int, key: str) -> float:
    return statistics.median(r[size][key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--postgres", help="a PostgreSQL URL (postgresql+psycopg://...)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    stores = ["sqlite"] + (["postgresql"] if args.postgres else [])
    lines = []
    with FakeOllama() as fake:
        for name in stores:
            rounds: list[dict[int, Any]] = []
            for _ in range(args.rounds):
                with common.bench_database(name, args.postgres) as url:
                    rounds.append(one_round(name, url, fake, args))
            small, large = args.sizes[0], args.sizes[-1]
            p50s = median_of(rounds, small, "p50"), median_of(rounds, large, "p50")
            lines.append(
                f"growth: store={name} list_ratio={p50s[1] / p50s[0]:.2f} "
                f"list_p50_ms={p50s[0]:.1f}/{p50s[1]:.1f} "
                f"list_p99_ms={median_of(rounds, large, 'p99'):.1f} "
                f"page_p50_ms={median_of(rounds, large, 'page_p50'):.1f} "
                f"replay_mb={median_of(rounds, large, 'replay_mb'):.2f} "
                f"replay_s={median_of(rounds, large, 'replay_s'):.2f} "
                f"idle_cpu={median_of(rounds, small, 'idle_cpu'):.2f}/"
                f"{median_of(rounds, large, 'idle_cpu'):.2f}"
            )
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
