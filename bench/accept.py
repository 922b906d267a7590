"""How many pulls the deck accepts per second: ``POST /api/models/pull`` of distinct models.

Serves the deck (``ollama-deck serve``) against a fake Ollama with the runner off, so the
accepted operations stay queued and only accepting is measured, and sends ``--pulls``
pulls of distinct models from ``--concurrency`` threads, each on its own keep-alive
connection. Every answer must be a 202 with a new operation. Two set-ups: one worker on
SQLite, and four workers on PostgreSQL (``--postgres URL``, a schema of its own, dropped
after; Redis with ``--redis URL``). In the same run, each set-up's ``GET /api/status``
(a read that writes nothing) is timed the same way, as the baseline: the ratio says what
a write costs above a request. Several rounds, each on a fresh database; min and median.
Ends with: ``accept: rps_1w=<median> rps_4w=<median> ...``.

    python bench/accept.py [--pulls 500] [--concurrency 8] [--rounds 3]
                           [--postgres URL] [--redis URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from queue import Queue

import common
import requests

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


def one_round(
    fake: FakeOllama, database_url: str, workers: int, redis: str | None, args: argparse.Namespace
) -> tuple[float, float]:
    env = {
        "OLLAMA_DECK_START_RUNNER": "0",
        "OLLAMA_DECK_MAX_QUEUED": str(args.pulls * 2),
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
        baseline = blast(args.pulls, args.concurrency, status)
        accepted = blast(args.pulls, args.concurrency, pull)
    finally:
        process.terminate()
        process.wait(20)
    return accepted, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pulls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL URL for the 4-worker set-up")
    parser.add_argument("--redis", help="a Redis URL for the 4-worker set-up")
    args = parser.parse_args()
    setups = [("1w", 1, None)]
    if args.postgres:
        setups.append(("4w", 4, args.postgres))
    else:
        print("no --postgres: the 4-worker set-up is skipped")
    summary = []
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
