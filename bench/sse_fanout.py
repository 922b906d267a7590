"""SSE fan-out: N watchers of one running pull, on 1 or more gunicorn gevent workers.

Starts the fake Ollama (its own process, pulling at Ollama's pace of a line per ~60 ms)
and ``ollama-deck serve`` (gunicorn -k gevent) with each number of ``--workers``: one worker
uses the local bus; more use Redis (``OLLAMA_DECK_REDIS_URL``, default the local one) and
the database of ``OLLAMA_DECK_BENCH_DATABASE_URL`` (default a SQLite file), so the pull runs
on one worker and most watchers sit on the others. For each N it starts a pull, opens N
watchers of that pull's stream from a separate process (one epoll loop, raw sockets, large
reads), waits until all are connected and one more event has reached them all, then
measures for a window of seconds:
- connected: watchers still connected at the end;
- events received per watcher against events the service published in the window: the
  events some watcher saw first inside it, each counted for every watcher that got it,
  also after the window ends (the pump goes on until every watcher is past the last of
  them, at most 10 s), so an event on its way across the watchers at either edge of the
  window is neither counted as lost nor left out;
- delivery delay of those events from the moment the service wrote the event (its
  ``updated_at``) to the moment a watcher read it, p50 and p99;
- the worker processes' CPU share over the window, summed (from /proc).
Ends with one line for the largest N of each worker count:
``fanout: workers=<w> watchers=<n> connected=<c> p50_ms=<x> p99_ms=<y> cpu=<z> ...``.

    python bench/sse_fanout.py [--watchers 100,1000,3000] [--workers 1,4] [--window 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import common
import requests

FAKE_SCRIPT = """
import sys, threading
from ollama_deck.testing import FakeOllama, PullScript
fake = FakeOllama().start()
# A 120 s pull at Ollama's pace: one line per 60 ms, the percent moving about twice a second.
# It outlasts connecting 10,000 watchers and the window (a 40 s one ended inside it).
for n in sys.argv[1].split(","):
    fake.allow_pull(f"fanout{n}:latest", PullScript(layers=[21_000_000_000, 500],
                                                     step=10_500_000, interval=0.06))
print(fake.url, flush=True)
threading.Event().wait()
"""

UPDATED_AT = re.compile(rb'"updated_at":"([^"]+)"')
EVENT_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")


def parse_time(text: bytes) -> float:
    return datetime.fromisoformat(text.decode().replace("Z", "+00:00")).timestamp()


# -- the watcher process --------------------------------------------------------------
#
# One epoll loop over plain non-blocking sockets. Arrival is stamped once per select()
# return, before any parsing, so the watcher's own Python cost does not count as delivery
# delay.


class Watcher:
    __slots__ = ("sock", "buffer", "connected", "closed", "ids", "delays", "last_id")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.connected = False
        self.closed = False
        self.ids: set[int] = set()
        self.delays: list[tuple[int, float]] = []  # (event id, delay)
        self.last_id = 0


def watchers_main(port: int, path: str, count: int, window: float, pids: list[int]) -> dict:
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    selector = selectors.DefaultSelector()
    watchers: list[Watcher] = []
    state = {"ready": 0}
    first_seen: dict[int, float] = {}  # event id -> when a watcher first read it

    def pump(timeout: float) -> None:
        ready = selector.select(timeout)
        now = time.time()
        for key, _ in ready:
            watcher: Watcher = key.data
            try:
                chunk = watcher.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                watcher.closed = True
                selector.unregister(watcher.sock)
                continue
            *frames, watcher.buffer = (watcher.buffer + chunk).split(b"\n\n")
            for frame in frames:
                match = EVENT_ID.search(frame)
                if match is None:
                    continue
                if not watcher.connected:
                    watcher.connected = True
                    state["ready"] += 1
                event_id = watcher.last_id = int(match.group(1))
                first_seen.setdefault(event_id, now)
                watcher.ids.add(event_id)
                stamp = UPDATED_AT.search(frame)
                if stamp:
                    watcher.delays.append((event_id, now - parse_time(stamp.group(1))))

    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request.encode())
        sock.setblocking(False)
        watcher = Watcher(sock)
        watchers.append(watcher)
        selector.register(sock, selectors.EVENT_READ, watcher)
        if i % 200 == 199:
            pump(0.01)  # let the server accept in batches
    deadline = time.monotonic() + 120
    while state["ready"] < count and time.monotonic() < deadline:
        pump(0.1)
    # Settle: the first event after the connection storm reaches some watchers hundreds of
    # milliseconds late (the worker is still finishing the last handshakes). Start the
    # window once one more event has reached every watcher.
    settled = max(w.last_id for w in watchers)
    while min(w.last_id for w in watchers) <= settled and time.monotonic() < deadline:
        pump(0.1)

    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    started, opened_at = time.monotonic(), time.time()
    while (elapsed := time.monotonic() - started) < window:
        pump(min(0.1, window - elapsed))
    cpu = (sum(cpu_seconds(pid) for pid in pids) - cpu_before) / elapsed
    closed_at = time.time()
    published = {i for i, seen in first_seen.items() if opened_at <= seen < closed_at}
    # Those still on their way to some watchers arrive now.
    drain = time.monotonic() + 10
    last = max(published, default=0)
    while time.monotonic() < drain and any(
        w.last_id < last for w in watchers if w.connected and not w.closed
    ):
        pump(0.1)
    for watcher in watchers:
        watcher.sock.close()

    delays = sorted(d for w in watchers for i, d in w.delays if i in published)
    received = [len(w.ids & published) for w in watchers]
    return {
        "watchers": count,
        "connected": sum(1 for w in watchers if w.connected and not w.closed),
        "published": len(published),
        "received_min": min(received, default=0),
        "received_avg": sum(received) / len(received) if received else 0,
        "p50_ms": percentile(delays, 0.50) * 1000,
        "p99_ms": percentile(delays, 0.99) * 1000,
        "cpu": cpu,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the orchestrator -----------------------------------------------------------------


def raise_file_limit() -> None:
    """Thousands of sockets each side: take the hard limit on open files."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="100,1000,3000")
    parser.add_argument("--workers", default="1", help="worker counts to run, e.g. 1,4")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--watch", nargs=4, metavar=("PORT", "PATH", "N", "PIDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    raise_file_limit()
    if args.watch:
        port, path, count, pids = args.watch
        pid_list = [int(p) for p in pids.split(",")]
        result = watchers_main(int(port), path, int(count), args.window, pid_list)
        print(json.dumps(result), flush=True)
        return

    counts = [int(n) for n in args.watchers.split(",")]
    worker_counts = [int(n) for n in args.workers.split(",")]
    names = ",".join(f"{w}x{n}" for w in worker_counts for n in counts)
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SCRIPT, names], stdout=subprocess.PIPE, text=True
    )
    ollama_url = fake.stdout.readline().strip()
    summaries = []
    try:
        for workers in worker_counts:
            results = run_workers(args, ollama_url, workers, counts)
            last = results[-1]
            summaries.append(
                f"workers={workers} watchers={last['watchers']} connected={last['connected']} "
                f"p50_ms={last['p50_ms']:.1f} p99_ms={last['p99_ms']:.1f} cpu={last['cpu']:.2f}"
            )
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"load: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("fanout: " + " | ".join(summaries))


def run_workers(args, ollama_url: str, workers: int, counts: list[int]) -> list[dict]:
    port = common.free_port()
    tmp = tempfile.mkdtemp()
    env = dict(
        os.environ,
        OLLAMA_HOST=ollama_url,
        OLLAMA_DECK_DATABASE_URL=f"sqlite:///{tmp}/fanout.db",
        OLLAMA_DECK_MAX_CONCURRENT_PULLS="8",
    )
    if workers > 1:
        env.setdefault("OLLAMA_DECK_REDIS_URL", "redis://127.0.0.1:6379/0")
        if os.environ.get("OLLAMA_DECK_BENCH_DATABASE_URL"):
            env["OLLAMA_DECK_DATABASE_URL"] = os.environ["OLLAMA_DECK_BENCH_DATABASE_URL"]
    else:
        env.pop("OLLAMA_DECK_REDIS_URL", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ollama_deck.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--connections",
            "12000",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    results = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                bus = requests.get(base + "/api/status", timeout=10).json()["bus"]["name"]
                break
            except requests.RequestException:  # not listening yet, or busy starting
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.1)
        pids = common.worker_pids(server.pid, workers)
        for count in counts:
            op = requests.post(
                base + "/api/models/pull", json={"model": f"fanout{workers}x{count}"}, timeout=10
            ).json()
            watcher = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--window",
                    str(args.window),
                    "--watch",
                    str(port),
                    op["urls"]["stream"],
                    str(count),
                    ",".join(str(p) for p in pids),
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if watcher.returncode != 0:
                raise SystemExit(watcher.stderr)
            result = json.loads(watcher.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"workers={workers} ({bus}) N={result['watchers']:>5}: connected "
                f"{result['connected']}, events published {result['published']}, received min "
                f"{result['received_min']} avg {result['received_avg']:.1f}, delay p50 "
                f"{result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms, workers' CPU "
                f"{result['cpu'] * 100:.0f} %, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
            requests.post(base + op["urls"]["cancel"], timeout=30)
    finally:
        server.terminate()
        server.wait(20)
    return results


if __name__ == "__main__":
    main()
