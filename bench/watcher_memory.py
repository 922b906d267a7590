"""Memory per idle SSE watcher, and what is given back when they leave.

Serves the deck (``ollama-deck serve``, one gevent worker, SQLite, nothing pulling), reads
the worker's RSS, opens ``--watchers`` event streams of every operation from this process
(raw sockets, nothing read after the first bytes), waits until ``/api/status`` counts them
all, reads the RSS again, closes them, waits until the count is 0, for one turn of the
deck's upkeep (which gives memory back after a large drop) and for the RSS to settle, and
reads it again; then a second wave of as many, to show whether what the first kept is
reused. Several rounds, each with a fresh deck; medians. Ends with:
``watcher_memory: watchers=<n> kb_per_watcher=<x> kept_mb=<after close - before>
kept_after_second_mb=<after the second wave - before> rss_mb=<before>/<open>/<closed>/<again>``.

    python bench/watcher_memory.py [--watchers 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import tempfile
import time

import common
import requests

from ollama_deck.testing import FakeOllama


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no RSS for {pid}")


def watchers(base: str) -> int:
    return requests.get(base + "/api/status", timeout=30).json()["watchers"]


def wait_for(what: str, check, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def settled_rss(pid: int) -> float:
    """The RSS once it stops moving (two readings a second apart within 0.5 MB)."""
    last = rss_mb(pid)
    for _ in range(20):
        time.sleep(1.0)
        now = rss_mb(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def wave(base: str, port: int, worker: int, count: int) -> tuple[float, float]:
    """Open ``count`` watchers, then close them: the worker's RSS with them and after."""
    sockets: list[socket.socket] = []
    request = b"GET /progress/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(request)
            sockets.append(sock)
        wait_for(f"{count} watchers", lambda: watchers(base) >= count)
        opened = settled_rss(worker)
    finally:
        for sock in sockets:
            sock.close()
    wait_for("no watchers", lambda: watchers(base) == 0)
    time.sleep(6)  # the deck's upkeep looks at the count every 5 s
    return opened, settled_rss(worker)


def one_round(fake: FakeOllama, count: int) -> tuple[float, float, float, float]:
    """RSS before, with the first wave of watchers, after it, after a second wave."""
    folder = tempfile.mkdtemp(prefix="deck-bench-memory-")
    env = {"OLLAMA_DECK_ACCESS_LOG": "0"}
    process, base = common.start_deck(fake.url, f"sqlite:///{folder}/deck.db", env=env)
    port = int(base.rsplit(":", 1)[1])
    worker = common.worker_pids(process.pid, 1)[0]
    try:
        for _ in range(3):  # warm up: the pools, the stream's code paths
            requests.get(base + "/api/status", timeout=10)
            with requests.get(base + "/progress/stream", stream=True, timeout=10) as stream:
                next(stream.iter_content(64))
        wait_for("no watchers", lambda: watchers(base) == 0)
        before = settled_rss(worker)
        opened, closed = wave(base, port, worker, count)
        # A second wave shows whether what the first kept is reused or grows.
        _, closed_again = wave(base, port, worker, count)
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(folder, ignore_errors=True)
    return before, opened, closed, closed_again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.watchers + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    with FakeOllama() as fake:
        for round_ in range(args.rounds):
            before, opened, closed, again = one_round(fake, args.watchers)
            per = (opened - before) * 1024 / args.watchers
            print(
                f"round {round_ + 1}: RSS {before:.1f} -> {opened:.1f} MB with "
                f"{args.watchers} watchers ({per:.1f} KB each) -> {closed:.1f} MB after they "
                f"left, {again:.1f} MB after a second wave; load {os.getloadavg()[0]:.2f}"
            )
            results.append((before, opened, closed, again))
    before, opened, closed, again = (statistics.median(r[i] for r in results) for i in range(4))
    print(
        f"watcher_memory: watchers={args.watchers} "
        f"kb_per_watcher={(opened - before) * 1024 / args.watchers:.1f} "
        f"kept_mb={closed - before:.1f} kept_after_second_mb={again - before:.1f} "
        f"rss_mb={before:.1f}/{opened:.1f}/{closed:.1f}/{again:.1f}"
    )


if __name__ == "__main__":
    main()
