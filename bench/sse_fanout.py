"""SSE fan-out: N watchers of one running pull, on one gunicorn gevent worker.

Starts the fake Ollama (its own process, pulling at Ollama's pace of a line per ~60 ms)
and ``ollama-deck serve`` (gunicorn -k gevent -w 1). For each N it starts a pull, opens N
watchers of that pull's stream from a separate process (asyncio, raw sockets, large
reads), waits until all are connected, then measures for a window of seconds:
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
import asyncio
import json
import os
import re
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


async def watch(port: int, path: str, results: dict, ready: asyncio.Event, total: int) -> None:
    record = {"connected": False, "ids": set(), "delays": []}
    results[id(record)] = record
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        buffer = b""
        while True:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            now = time.time()
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                match = EVENT_ID.search(frame)
                if match is None:
                    continue
                if not record["connected"]:
                    record["connected"] = True
                    results["ready_count"] += 1
                    if results["ready_count"] == total:
                        ready.set()
                if results["measuring"]:
                    record["ids"].add(int(match.group(1)))
                    stamp = UPDATED_AT.search(frame)
                    if stamp:
                        record["delays"].append(now - parse_time(stamp.group(1)))
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        record["closed"] = True


async def watchers_main(port: int, path: str, count: int, window: float, pid: int) -> dict:
    results: dict = {"ready_count": 0, "measuring": False}
    ready = asyncio.Event()
    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(watch(port, path, results, ready, count)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # let the server accept in batches
    try:
        await asyncio.wait_for(ready.wait(), timeout=120)
    except TimeoutError:
        pass
    cpu_before = cpu_seconds(pid)
    results["measuring"] = True
    started = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - started
    results["measuring"] = False
    cpu = (cpu_seconds(pid) - cpu_before) / elapsed
    records = [v for k, v in results.items() if isinstance(v, dict)]
    for task in tasks:
        task.cancel()
    published = set().union(*(r["ids"] for r in records)) if records else set()
    delays = sorted(d for r in records for d in r["delays"])
    connected = sum(1 for r in records if r["connected"] and not r.get("closed"))
    received = [len(r["ids"]) for r in records]
    return {
        "watchers": count,
        "connected": connected,
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
        result = asyncio.run(watchers_main(int(port), path, int(count), args.window, int(pid)))
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
