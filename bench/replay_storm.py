"""Memory and latency of a storm of SSE clients that resume from event 1.

Runs ``ollama-deck serve`` (gunicorn, one gevent worker, SQLite) against a fake Ollama in
its own process, fills the history with 2,000 pulls of unknown names (each ends failed,
leaving its log lines), then opens 50 SSE streams with ``Last-Event-ID: 1`` at once while
a prober asks ``GET /api/status``. Measures the worker's resident memory before, at the
peak and after the streams closed, the bytes each client received, and the worst status
latency; once with the default bounds (1,000 finished operations kept, replays from further
back than 1,000 events get current states) and once with both set so high that every
operation is kept and every client gets the whole history (the behaviour before them).
Ends with ``replay_storm: bounded_kb_per_client=... unbounded_kb_per_client=...
bounded_rss_after_ratio=... bounded_status_max_ms=... unbounded_status_max_ms=...``.

    python bench/replay_storm.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common
import requests

CLIENTS = 50
PULLS = 2000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_deck(ollama: str, database: Path, bounded: bool) -> tuple[subprocess.Popen, str]:
    env = {"OLLAMA_DECK_MAX_QUEUED": "100000"}
    if not bounded:  # as before the bounds: every operation kept, every replay whole
        env["OLLAMA_DECK_KEEP_FINISHED_COUNT"] = "100000"
        env["OLLAMA_DECK_REPLAY_MAX_EVENTS"] = "1000000000"
    return common.start_deck(ollama, f"sqlite:///{database}", env=env)


def fill_history(url: str) -> None:
    local = threading.local()

    def post(index: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        local.session.post(url + "/api/models/pull", json={"model": f"gone-{index}:1"}, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(PULLS)))
    while requests.get(url + "/progress?status=queued,running", timeout=30).json()["operations"]:
        time.sleep(0.2)


def read_storm(url: str, clients: int) -> None:
    """In its own process: open ``clients`` streams from event 1 on raw sockets and read
    them with one epoll loop until all were silent for a second; print the bytes each got.
    (Reader threads in the prober's process would slow the prober, not the deck.)"""
    import selectors

    host, port = url.removeprefix("http://").split(":")
    request = (
        f"GET /progress/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\nLast-Event-ID: 1\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    received = {}
    for _ in range(clients):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = 0
    while True:
        ready = selector.select(timeout=1.0)
        if not ready:
            break
        for key, _ in ready:
            data = key.fileobj.recv(262144)
            received[key.fileobj] += len(data)
    for sock in received:
        sock.close()
    print(" ".join(str(n) for n in received.values()), flush=True)


def storm(url: str, pid: int) -> tuple[float, float, float, float, float]:
    """KB per client, RSS before/peak/after (MB), worst /api/status latency (ms)."""
    before = rss_mb(pid)
    readers = subprocess.Popen(
        [sys.executable, __file__, "--read-storm", url, str(CLIENTS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak, worst = before, 0.0
    with requests.Session() as session:
        while readers.poll() is None:
            start = time.perf_counter()
            session.get(url + "/api/status", timeout=60)
            worst = max(worst, time.perf_counter() - start)
            peak = max(peak, rss_mb(pid))
            time.sleep(0.05)
    received = [int(n) for n in readers.stdout.read().split()]
    time.sleep(2)  # let the worker free what the closed streams held
    after = rss_mb(pid)
    return sum(received) / len(received) / 1024, before, peak, after, worst * 1000


def one_run(ollama: str, workdir: Path, bounded: bool) -> tuple[float, ...]:
    deck, url = start_deck(ollama, workdir / f"deck-{bounded}.db", bounded)
    try:
        fill_history(url)
        (pid,) = common.worker_pids(deck.pid)
        first = storm(url, pid)
        second = storm(url, pid)  # a second storm shows whether memory keeps growing
        return (*first, second[3], max(first[4], second[4]))
    finally:
        os.killpg(deck.pid, signal.SIGTERM)
        deck.wait(20)


def main() -> None:
    if sys.argv[1:2] == ["--read-storm"]:
        read_storm(sys.argv[2], int(sys.argv[3]))
        return
    fake = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.testing"], stdout=subprocess.PIPE, text=True
    )
    ollama = fake.stdout.readline().strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bounded = one_run(ollama, Path(tmp), True)
            unbounded = one_run(ollama, Path(tmp), False)
    finally:
        fake.kill()
    for name, run in (("bounded", bounded), ("unbounded", unbounded)):
        kb, before, peak, after, _, after_second, worst = run
        print(
            f"{name:9}: {kb:6.0f} KB per client, worker RSS {before:.0f} MB -> peak {peak:.0f} "
            f"-> after {after:.0f} -> after a 2nd storm {after_second:.0f} MB, "
            f"worst /api/status {worst:.0f} ms"
        )
    print(
        f"replay_storm: bounded_kb_per_client={bounded[0]:.0f} "
        f"unbounded_kb_per_client={unbounded[0]:.0f} "
        f"bounded_rss_after_ratio={bounded[3] / bounded[1]:.2f} "
        f"bounded_rss_after_second_ratio={bounded[5] / bounded[1]:.2f} "
        f"bounded_rss_peak_mb={bounded[2]:.0f} unbounded_rss_peak_mb={unbounded[2]:.0f} "
        f"bounded_status_max_ms={bounded[6]:.0f} unbounded_status_max_ms={unbounded[6]:.0f}"
    )


if __name__ == "__main__":
    main()
