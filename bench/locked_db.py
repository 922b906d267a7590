"""Does a SQLite database locked by another process freeze a gevent worker?

Runs ``ollama-deck serve`` (gunicorn, one gevent worker, SQLite) against a fake Ollama in
its own process that serves a slow pull, so the runner writes progress all the time. A
prober asks ``GET /api/status`` (which needs no database) every 50 ms. First for a few
seconds as the baseline, then while this script holds SQLite's write lock
(``BEGIN IMMEDIATE``) for ``--hold`` seconds from its own process: the pull's next write
waits for the lock (SQLite's busy timeout), and the question is whether the worker's event
loop, and with it every other request, waits too.

Done twice: with the deck as shipped (a statement that finds the database locked waits in
gevent's thread pool) and with that turned off (``OLLAMA_DECK_SQLITE_OFFLOAD=0``). Prints
the worst /api/status latency of each phase and its ratio to the baseline of the same run,
and what the protection costs when nothing is locked (pulls accepted per second, 4 clients);
ends with ``locked_db: protected_max_ms=... unprotected_max_ms=... baseline_max_ms=...
ratio=... pulls_ratio=...``.

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import requests

MODEL = "slow:1"


def start_fake() -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "ollama_deck.testing", "--allow", MODEL]
    command += ["--layers", "100000000000", "--step", "1000000", "--interval", "0.02"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def start_deck(ollama: str, database: Path, offload: bool) -> tuple[subprocess.Popen, str]:
    env = {"OLLAMA_DECK_SQLITE_OFFLOAD": "1" if offload else "0"}
    env["OLLAMA_DECK_MAX_QUEUED"] = "100000"
    return common.start_deck(ollama, f"sqlite:///{database}", env=env)


def probe(url: str, seconds: float) -> list[float]:
    """/api/status latencies (s), one request every 50 ms for ``seconds``."""
    latencies = []
    end = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < end:
            start = time.perf_counter()
            session.get(url + "/api/status", timeout=60)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)
    return latencies


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


def hold_lock(database: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


def one_run(ollama: str, workdir: Path, offload: bool, hold: float) -> tuple[float, float, float]:
    """Worst /api/status latency (s) without and with the lock held; pulls accepted/s."""
    database = workdir / f"deck-{int(offload)}.db"
    deck, url = start_deck(ollama, database, offload)
    try:
        response = requests.post(url + "/api/models/pull", json={"model": MODEL}, timeout=10)
        op = response.json()["id"]
        while requests.get(f"{url}/progress/{op}", timeout=10).json()["percent"] <= 0:
            time.sleep(0.05)
        baseline = max(probe(url, 3.0))
        held = threading.Event()
        holder = threading.Thread(target=hold_lock, args=(database, hold, held))
        holder.start()
        held.wait()
        locked = max(probe(url, hold))
        holder.join()
        return baseline, locked, pull_rate(url)
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
            base_on, locked_on, rate_on = one_run(ollama, Path(tmp), True, args.hold)
            base_off, locked_off, rate_off = one_run(ollama, Path(tmp), False, args.hold)
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
    print(f"pulls accepted, nothing locked: {rate_on:.0f}/s protected, {rate_off:.0f}/s not")
    print(
        f"locked_db: protected_max_ms={locked_on * 1000:.0f} "
        f"unprotected_max_ms={locked_off * 1000:.0f} baseline_max_ms={baseline * 1000:.0f} "
        f"ratio={locked_on / baseline:.1f} pulls_ratio={rate_on / rate_off:.2f} "
        f"hold_s={args.hold:g}"
    )


if __name__ == "__main__":
    main()
