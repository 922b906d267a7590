"""SSE fan-out: N watchers of one running pull, on one gunicorn gevent worker.

Starts the fake Ollama (its own process, pulling at Ollama's pace of a line per ~60 ms)
and ``ollama-deck serve`` (gunicorn -k gevent -w 1). For each N it starts a pull, opens N
watchers of that pull's stream from a separate process (one epoll loop, raw sockets, large
reads), waits until all are connected and one more event has reached them all, then
measures for a window of seconds:
- connected: watchers still connected at the end;
- events received per watcher against events the service published in the window
  (the distinct event ids any watcher saw);
- delivery delay from the moment the service wrote the event (its ``updated_at``) to the
  moment a watcher read it, p50 and p99;
- the worker process's CPU share over the window (from /proc).
Ends with one line for the largest N:
``fanout: watchers=<n> connected=<c> p50_ms=<x> p99_ms=<y> cpu=<z>``.

    python bench/sse_fanout.py [--watchers 100,1000,3000] [--window 10]
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

import requests

FAKE_SCRIPT = """
import sys, threading
from ollama_deck.testing import FakeOllama, PullScript
fake = FakeOllama().start()
# A 40 s pull at Ollama's pace: one line per 60 ms, the percent moving about twice a second.
for n in sys.argv[1].split(","):
    fake.allow_pull(f"fanout{n}:latest", PullScript(layers=[7_000_000_000, 500], step=10_500_000,
                                                     interval=0.06))
print(fake.url, flush=True)
threading.Event().wait()
"""

UPDATED_AT = re.compile(rb'"updated_at":"([^"]+)"')
EVENT_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        self.delays: list[float] = []
        self.last_id = 0


def watchers_main(port: int, path: str, count: int, window: float, pid: int) -> dict:
    request = f"GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
    selector = selectors.DefaultSelector()
    watchers: list[Watcher] = []
    state = {"ready": 0, "measuring": False}

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
                watcher.last_id = int(match.group(1))
                if state["measuring"]:
                    watcher.ids.add(int(match.group(1)))
                    stamp = UPDATED_AT.search(frame)
                    if stamp:
                        watcher.delays.append(now - parse_time(stamp.group(1)))

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

    cpu_before = cpu_seconds(pid)
    state["measuring"] = True
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < window:
        pump(min(0.1, window - elapsed))
    state["measuring"] = False
    cpu = (cpu_seconds(pid) - cpu_before) / elapsed
    for watcher in watchers:
        watcher.sock.close()

    published = set().union(*(w.ids for w in watchers))
    delays = sorted(d for w in watchers for d in w.delays)
    received = [len(w.ids) for w in watchers]
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


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if not children:
        raise SystemExit("gunicorn has no worker process")
    return int(children[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", default="100,1000,3000")
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument(
        "--watch", nargs=4, metavar=("PORT", "PATH", "N", "PID"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.watch:
        port, path, count, pid = args.watch
        result = watchers_main(int(port), path, int(count), args.window, int(pid))
        print(json.dumps(result), flush=True)
        return

    counts = [int(n) for n in args.watchers.split(",")]
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_SCRIPT, args.watchers], stdout=subprocess.PIPE, text=True
    )
    ollama_url = fake.stdout.readline().strip()
    port = free_port()
    tmp = tempfile.mkdtemp()
    env = dict(
        os.environ,
        OLLAMA_HOST=ollama_url,
        OLLAMA_DECK_DATABASE_URL=f"sqlite:///{tmp}/fanout.db",
        OLLAMA_DECK_MAX_CONCURRENT_PULLS="8",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ollama_deck.cli",
            "serve",
            "--port",
            str(port),
            "--connections",
            "10000",
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
                requests.get(base + "/api/status", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not start") from None
                time.sleep(0.1)
        pid = worker_pid(server.pid)
        for count in counts:
            op = requests.post(
                base + "/api/models/pull", json={"model": f"fanout{count}"}, timeout=10
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
                    str(pid),
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if watcher.returncode != 0:
                raise SystemExit(watcher.stderr)
            result = json.loads(watcher.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"N={result['watchers']:>5}: connected {result['connected']}, "
                f"events published {result['published']}, received min {result['received_min']} "
                f"avg {result['received_avg']:.1f}, delay p50 {result['p50_ms']:.1f} ms "
                f"p99 {result['p99_ms']:.1f} ms, worker CPU {result['cpu'] * 100:.0f} %",
                flush=True,
            )
            requests.post(base + op["urls"]["cancel"], timeout=30)
    finally:
        server.terminate()
        server.wait(20)
        fake.terminate()
        fake.wait(10)
    last = results[-1]
    print(
        f"fanout: watchers={last['watchers']} connected={last['connected']} "
        f"p50_ms={last['p50_ms']:.1f} p99_ms={last['p99_ms']:.1f} cpu={last['cpu']:.2f}"
    )


if __name__ == "__main__":
    main()
