"""How many pulls the deck accepts per second: ``POST /api/models/pull`` of distinct models.

Serves the deck (``ollama-deck serve``) against a fake Ollama with the runner off, so the
accepted operations stay queued and only accepting is measured, and sends pulls of
distinct models from ``--concurrency`` keep-alive connections: with wrk (a C client, one
thread, for ``--seconds``; the default where wrk is installed) or ``--pulls`` of them from
Python threads (``--client python``, whose own CPU then bounds what it measures on a small
machine). Every answer must be a 2xx, and the database must hold one new operation for
each. Two set-ups: one worker on SQLite, and four workers on PostgreSQL (``--postgres
URL``, a schema of its own, dropped after; Redis with ``--redis URL``). In the same run,
each set-up's ``GET /api/status`` (a read that writes nothing) is timed the same way, as
the baseline: the ratio says what a write costs above a request. Several rounds, each on a
fresh database; min and median. Ends with: ``accept: rps_1w=<median> rps_4w=<median> ...``.

    python bench/accept.py [--seconds 8] [--concurrency 8] [--rounds 3]
                           [--client wrk|python] [--pulls 500]
                           [--postgres URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from queue import Queue

import common
import requests
from sqlalchemy import create_engine
from sqlalchemy import text

from ollama_deck.testing import FakeOllama


def blast(count: int, concurrency: int, send: Callable[[requests.Session, int], None]) -> float:
    """Requests per second of ``count`` calls of ``send`` from ``concurrency`` threads."""
    work: Queue[int | None] = Queue()
    for n in range(count):
        work.put(n)
    for _ in range(concurrency):
        work.put(None)
    failures: list[str] = []

    def worker() -> None:
        with requests.Session() as session:
            while (n := work.get()) is not None:
                try:
                    send(session, n)
                except Exception as exc:  # noqa: BLE001 - reported below
                    failures.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return count / took


PULL_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"b%s' .. n .. ':1b"}'
  return wrk.format("POST", "/api/models/pull", {["Content-Type"] = "application/json"}, body)
end
"""


def wrk_blast(
    url: str, seconds: float, concurrency: int, script: str | None = None
) -> tuple[float, int]:
    """Requests per second and responses of wrk (one thread: a C client takes little of
    the CPU the server needs) for ``seconds``; every answer must be a 2xx."""
    # A generous timeout: a slow answer is counted as slow, not as a failed one.
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script is not None:
            lua.write(script)
            lua.flush()
            command[1:1] = ["-s", lua.name]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or "Socket errors" in out:
        raise SystemExit(f"{url}: not every answer was a 2xx:\n{out}")
    completed = int(re.search(r"(\d+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), completed


def created_with(database_url: str, prefix: str) -> int:
    """How many operations the database holds for models named with ``prefix``."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM ollama_deck_operation WHERE model LIKE :p")
            return conn.execute(query, {"p": f"{prefix}%"}).scalar_one()
    finally:
        engine.dispose()


def one_round(
    fake: FakeOllama, database_url: str, workers: int, redis: str | None, args: argparse.Namespace
) -> tuple[float, float]:
    env = {
        "OLLAMA_DECK_START_RUNNER": "0",
        "OLLAMA_DECK_MAX_QUEUED": "1000000",  # every one accepted: no 429 to count
        "OLLAMA_DECK_ACCESS_LOG": "0",
    }
    if redis:
        env["OLLAMA_DECK_REDIS_URL"] = redis
    process, base = common.start_deck(fake.url, database_url, env=env, args=("--workers", workers))
    try:
        common.worker_pids(process.pid, workers)
        prefix = uuid.uuid4().hex[:6]

        def pull(session: requests.Session, n: int) -> None:
            answer = session.post(
                base + "/api/models/pull", json={"model": f"b{prefix}{n}:1b"}, timeout=30
            )
            if answer.status_code != 202 or answer.json().get("created") is not True:
                raise RuntimeError(f"{answer.status_code} {answer.text[:200]}")

        def status(session: requests.Session, n: int) -> None:
            answer = session.get(base + "/api/status", timeout=30)
            if answer.status_code != 200:
                raise RuntimeError(f"{answer.status_code} {answer.text[:200]}")

        blast(40, args.concurrency, status)  # warm up: every worker, its pools
        if args.client == "python":
            baseline = blast(args.pulls, args.concurrency, status)
            accepted = blast(args.pulls, args.concurrency, pull)
        else:
            baseline, _ = wrk_blast(base + "/api/status", args.seconds, args.concurrency)
            accepted, answered = wrk_blast(
                base, args.seconds, args.concurrency, PULL_SCRIPT % prefix
            )
            # Each 2xx was a new operation: as many rows (and those still in flight).
            made = created_with(database_url, f"b{prefix}")
            if not answered <= made <= answered + args.concurrency:
                raise SystemExit(f"{answered} pulls answered, but {made} operations made")
    finally:
        process.terminate()
        process.wait(20)
    return accepted, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pulls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk for --seconds (default where installed), or --pulls from Python threads",
    )
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--postgres", help="a PostgreSQL URL for the 4-worker set-up")
    parser.add_argument("--redis", help="a Redis URL for the 4-worker set-up")
    args = parser.parse_args()
    setups = [("1w", 1, None)]
    if args.postgres:
        setups.append(("4w", 4, args.postgres))
    else:
        print("no --postgres: the 4-worker set-up is skipped")
    summary = []
    print(f"client: {args.client}, {args.concurrency} connections")
    with FakeOllama() as fake:
        for name, workers, postgres in setups:
            rates, bases = [], []
            for round_ in range(args.rounds):
                kind = "postgresql" if postgres else "sqlite"
                with common.bench_database(kind, postgres) as url:
                    redis = args.redis if postgres else None
                    rate, base = one_round(fake, url, workers, redis, args)
                rates.append(rate)
                bases.append(base)
                load = os.getloadavg()[0]
                print(
                    f"{name} round {round_ + 1}: {rate:.0f} pulls/s, status {base:.0f}/s, "
                    f"load {load:.2f}"
                )
            rate, base = statistics.median(rates), statistics.median(bases)
            summary += [
                f"rps_{name}={rate:.0f}",
                f"min_{name}={min(rates):.0f}",
                f"ratio_{name}={rate / base:.2f}",
            ]
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("accept: " + " ".join(summary))


if __name__ == "__main__":
    main()
