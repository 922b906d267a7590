"""Events during a Redis outage: how late do watchers get them, and what does status say?

Starts a redis-server of its own (a free port, nothing saved), a fake Ollama in its own
process serving a long pull, and ``ollama-deck serve --workers 2`` on a SQLite file with the
Redis bus. Watchers of every operation's stream sit on both workers; the pull runs on one,
so the other's watchers get its events through the bus. Four phases of ``--seconds`` each:

- ``up``: Redis answers (the baseline);
- ``hung``: Redis stopped with SIGSTOP (accepting connections, answering nothing);
- ``down``: Redis killed (connections refused);
- ``back``: a new Redis on the same port.

For each phase: the delivery delay of log events (about ten a second), from the moment the
service wrote the event (its ``time``) to the moment a watcher read it, p50 and max over
all watchers; and, at the phase's end, what each worker's ``/api/status`` says of the bus.
Ends with ``redis_outage: up_p50_ms=... up_max_ms=... hung_max_ms=... down_max_ms=...
back_max_ms=... hung_ratio=... down_ratio=... hung_connected=... down_connected=...``
(the ratios are against the ``up`` max; ``*_connected`` is how many workers said
``connected: true`` at the end of that phase).

    python bench/redis_outage.py [--seconds 12]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import common
import requests

MODEL = "outage:1"
WATCHERS = 4  # on each worker


def start_redis(port: int) -> subprocess.Popen:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import redis

            if redis.Redis(port=port, socket_timeout=1).ping():
                return process
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


def start_fake() -> tuple[subprocess.Popen, str]:
    # Thousands of small layers of two lines each, 0.1 s apart: each layer starts with a new
    # status line, so the pull logs about ten lines a second. Log events are never coalesced
    # for a watcher that fell behind (states are), so each one's delay is exactly what a
    # watcher waited.
    layers = ",".join(["1000000"] * 3000)
    command = [sys.executable, "-m", "ollama_deck.testing", "--allow", MODEL]
    command += ["--layers", layers, "--step", "500000", "--interval", "0.1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


class Watchers:
    """SSE readers of /progress/stream; each arrival is stamped with its delay."""

    def __init__(self, url: str, count: int, workers: int = 2) -> None:
        """``count`` watchers on each of ``workers`` workers (the kernel decides where a
        connection lands, so extra ones are opened and closed, a bounded number of times)."""
        self.delays: list[tuple[float, float]] = []  # (arrival, delay)
        self.workers: dict[str, int] = {}
        self.lock = threading.Lock()
        self.connections: list[http.client.HTTPConnection] = []
        port = int(url.rsplit(":", 1)[1])
        for _ in range(50 * count * workers):
            if len(self.workers) == workers and min(self.workers.values()) >= count:
                return
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("GET", "/progress/stream")
            response = connection.getresponse()
            worker = ""
            while not worker.startswith(": worker "):  # each stream names its worker first
                worker = response.readline().decode().strip()
            if self.workers.get(worker, 0) >= count:
                connection.close()
                continue
            self.workers[worker] = self.workers.get(worker, 0) + 1
            self.connections.append(connection)
            threading.Thread(target=self._read, args=(response,), daemon=True).start()
        raise SystemExit(f"watchers landed on {self.workers}, not {count} on each of {workers}")

    def _read(self, response: http.client.HTTPResponse) -> None:
        # http.client reads a chunked body line by line as it arrives: no byte-sized reads.
        event = None
        try:
            while line := response.readline().decode():
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: ") and event == "log":
                    now = time.time()
                    stamp = json.loads(line[6:])["time"]
                    written = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                    with self.lock:
                        self.delays.append((now, now - written))
        except Exception:  # noqa: BLE001 - closed at the end, mid-read
            return

    def since(self, start: float) -> list[float]:
        with self.lock:
            return sorted(delay for arrival, delay in self.delays if arrival >= start)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


def bus_states(url: str) -> dict[int, bool]:
    """Each worker's ``bus.connected``, asked on fresh connections until both answered."""
    seen: dict[int, bool] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        with requests.Session() as fresh:
            status = fresh.get(url + "/api/status", timeout=30).json()
        seen[status["pid"]] = bool(status["bus"].get("connected"))
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each phase")
    args = parser.parse_args()
    port = common.free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis_server = start_redis(port)
    fake, ollama = start_fake()
    results: dict[str, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {"OLLAMA_DECK_REDIS_URL": redis_url, "OLLAMA_DECK_EVENT_BUS": "redis"}
        database = f"sqlite:///{Path(tmp) / 'deck.db'}"
        deck, url = common.start_deck(ollama, database, env=env, args=("--workers", "2"))
        watchers = None
        try:
            watchers = Watchers(url, WATCHERS)
            requests.post(url + "/api/models/pull", json={"model": MODEL}, timeout=10)
            time.sleep(2.0)  # the pull is streaming
            for phase in ("up", "hung", "down", "back"):
                if phase == "hung":
                    redis_server.send_signal(signal.SIGSTOP)
                elif phase == "down":
                    redis_server.send_signal(signal.SIGKILL)
                    redis_server.wait(10)
                elif phase == "back":
                    redis_server = start_redis(port)
                start = time.time()
                time.sleep(args.seconds)
                delays = watchers.since(start)
                states = bus_states(url)
                p50 = delays[len(delays) // 2] if delays else float("nan")
                worst = delays[-1] if delays else float("nan")
                results[phase] = (p50, worst, sum(states.values()))
                print(
                    f"{phase:>5}: {len(delays):5d} events, delay p50 {p50 * 1000:7.0f} ms, "
                    f"max {worst * 1000:7.0f} ms; workers saying connected: "
                    f"{sum(states.values())} of {len(states)}"
                )
            print(f"watchers per worker: {watchers.workers}")
        finally:
            if watchers is not None:
                watchers.close()
            os.killpg(deck.pid, signal.SIGTERM)
            deck.wait(20)
            fake.kill()
            redis_server.send_signal(signal.SIGCONT)
            redis_server.kill()
            redis_server.wait(10)
    up = results["up"][1]
    print(
        f"redis_outage: up_p50_ms={results['up'][0] * 1000:.0f} up_max_ms={up * 1000:.0f} "
        f"hung_max_ms={results['hung'][1] * 1000:.0f} "
        f"down_max_ms={results['down'][1] * 1000:.0f} "
        f"back_max_ms={results['back'][1] * 1000:.0f} "
        f"hung_ratio={results['hung'][1] / up:.1f} down_ratio={results['down'][1] / up:.1f} "
        f"hung_connected={results['hung'][2]} down_connected={results['down'][2]}"
    )


if __name__ == "__main__":
    main()
