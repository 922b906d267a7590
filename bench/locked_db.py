"""Does a SQLite database locked by another process freeze a gevent worker?

Runs ``ollama-deck serve`` (gunicorn, one gevent worker, SQLite) against a fake Ollama in
its own process that serves a slow pull, so the runner writes progress all the time. A
prober asks ``GET /api/status`` (which needs no database) every 50 ms. First for a few
seconds as the baseline, then while this script holds SQLite's write lock
(``BEGIN IMMEDIATE``) for ``--hold`` seconds from its own process: the pull's next write
waits for the lock (SQLite's busy timeout), and the question is whether the worker's event
loop, and with it every other request, waits too.

Then the lock is held once more after Ollama's state changed (a model loaded, another
deleted, straight on the fake): ``/api/status`` and ``/api/models`` would now cache the new
state, and the question is whether they wait for the lock to do it.

Done twice: with the deck as shipped (a statement that finds the database locked waits in
gevent's thread pool) and with that turned off (``OLLAMA_DECK_SQLITE_OFFLOAD=0``). Prints
the worst /api/status latency of each phase and its ratio to the baseline of the same run,
the worst of status and models while their state changed, and what the protection costs
when nothing is locked (pulls accepted per second, 4 clients); ends with ``locked_db:
protected_max_ms=... unprotected_max_ms=... baseline_max_ms=... ratio=... changed_max_ms=...
changed_ratio=... pulls_ratio=...``.

    python bench/locked_db.py [--hold 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import requests

MODEL = "slow:1"


def start_fake() -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "ollama_deck.testing", "--allow", MODEL]
    command += ["--layers", "100000000000", "--step", "1000000", "--interval", "0.02"]
    for run in (0, 1):  # one model to load and one to delete, for each run
        command += ["--model", f"warm-{run}:1", "--model", f"gone-{run}:1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def start_deck(ollama: str, database: Path, offload: bool) -> tuple[subprocess.Popen, str]:
    env = {"OLLAMA_DECK_SQLITE_OFFLOAD": "1" if offload else "0"}
    env["OLLAMA_DECK_MAX_QUEUED"] = "100000"
    return common.start_deck(ollama, f"sqlite:///{database}", env=env)


def probe(url: str, seconds: float, paths: tuple[str, ...] = ("/api/status",)) -> list[float]:
    """Latencies (s) of ``paths`` in turn, one request every 50 ms for ``seconds``."""
    latencies = []
    end = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < end:
            for path in paths:
                start = time.perf_counter()
                session.get(url + path, timeout=60)
                latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    return latencies


def change_ollama(ollama: str, run: int) -> None:
    """Load one model and delete another on the fake itself: what status and the model
    list show changes, so the deck would cache it."""
    requests.post(ollama + "/api/generate", json={"model": f"warm-{run}:1"}, timeout=10)
    requests.delete(ollama + "/api/delete", json={"model": f"gone-{run}:1"}, timeout=10)


def pull_rate(url: str, count: int = 400) -> float:
    """Pulls of missing names accepted per second, from 4 clients (each a database write)."""
    local = threading.local()

    def post(index: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        model = f"missing-{index}:1"
        local.session.post(url + "/api/models/pull", json={"model": model}, timeout=60)

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(count)))
    return count / (time.perf_counter() - start)


def while_locked(database: Path, seconds: float, measure: Callable[[], list[float]]) -> float:
    """The worst of ``measure()`` while another process holds the write lock."""
    held = threading.Event()
    holder = threading.Thread(target=hold_lock, args=(database, seconds, held))
    holder.start()
    held.wait()
    worst = max(measure())
    holder.join()
    return worst


def hold_lock(database: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def one_run(
    ollama: str, workdir: Path, offload: bool, hold: float
) -> tuple[float, float, float, float]:
    """Worst /api/status latency (s) without and with the lock held, worst of status and
    models with the lock held after Ollama's state changed; pulls accepted/s."""
    database = workdir / f"deck-{int(offload)}.db"
    deck, url = start_deck(ollama, database, offload)
    try:
        response = requests.post(url + "/api/models/pull", json={"model": MODEL}, timeout=10)
        op = response.json()["id"]
        while requests.get(f"{url}/progress/{op}", timeout=10).json()["percent"] <= 0:
            time.sleep(0.05)
        both = ("/api/status", "/api/models")
        baseline = max(probe(url, 3.0, both))  # both cached as they are now
        locked = while_locked(database, hold, lambda: probe(url, hold))
        change_ollama(ollama, int(offload))
        changed = while_locked(database, hold, lambda: probe(url, hold, both))
        return baseline, locked, changed, pull_rate(url)
    finally:
        os.killpg(deck.pid, signal.SIGTERM)
        deck.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the lock is held")
    args = parser.parse_args()
    fake, ollama = start_fake()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base_on, locked_on, changed_on, rate_on = one_run(ollama, Path(tmp), True, args.hold)
            base_off, locked_off, changed_off, rate_off = one_run(
                ollama, Path(tmp), False, args.hold
            )
    finally:
        fake.kill()
    baseline = max(base_on, base_off)
    print(f"baseline (no lock):     worst /api/status {baseline * 1000:8.1f} ms")
    print(
        f"lock held {args.hold:g} s, thread pool: worst /api/status {locked_on * 1000:8.1f} ms "
        f"({locked_on / baseline:.1f}x baseline)"
    )
    print(
        f"lock held {args.hold:g} s, no pool:     worst /api/status {locked_off * 1000:8.1f} ms "
        f"({locked_off / baseline:.1f}x baseline)"
    )
    print(
        f"lock held {args.hold:g} s, Ollama changed, thread pool: worst status/models "
        f"{changed_on * 1000:8.1f} ms ({changed_on / baseline:.1f}x baseline)"
    )
    print(
        f"lock held {args.hold:g} s, Ollama changed, no pool:     worst status/models "
        f"{changed_off * 1000:8.1f} ms ({changed_off / baseline:.1f}x baseline)"
    )
    print(f"pulls accepted, nothing locked: {rate_on:.0f}/s protected, {rate_off:.0f}/s not")
    print(
        f"locked_db: protected_max_ms={locked_on * 1000:.0f} "
        f"unprotected_max_ms={locked_off * 1000:.0f} baseline_max_ms={baseline * 1000:.0f} "
        f"ratio={locked_on / baseline:.1f} changed_max_ms={changed_on * 1000:.0f} "
        f"changed_ratio={changed_on / baseline:.1f} pulls_ratio={rate_on / rate_off:.2f} "
        f"hold_s={args.hold:g}"
    )


if __name__ == "__main__":
    main()
