"""What oversized and slow request bodies cost the one gevent worker of ``ollama-deck serve``.

Starts the fake Ollama and ``ollama-deck serve`` (gunicorn, one gevent worker), then:
- baseline: ``GET /api/status`` probes, one after another, with nothing else going on;
- attack: the same probes while clients POST 50 MB JSON bodies, four at a time, and one
  client holds a half-sent body open.
Prints what the big bodies got and how long they took, the probes' slowest answer in both
phases and the worker's memory before and after. Ends with:
``bodies: answers=<status x count> probe_max_ms=<attack>/<baseline> rss_mb=<before>-><after>``.

    python bench/bodies.py [--rounds 3] [--megabytes 50]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import common
import requests

from ollama_deck.testing import FakeOllama


def worker_rss_mb(master: int) -> int:
    children = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True
    ).stdout.split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(int(status.split("VmRSS:")[1].split()[0]))
    return max(sizes) // 1024


def probe(url: str, until: threading.Event, times: list[float]) -> None:
    while not until.is_set():
        start = time.monotonic()
        requests.get(url + "/api/status", timeout=60)
        times.append(time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()

    fake = FakeOllama().start()
    tmp = Path(tempfile.mkdtemp(prefix="deck-bodies-"))
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "serve.log", "w")  # noqa: SIM115 - closed at the end
    server = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.cli", "serve", "--port", str(port)]
        + ["--ollama", fake.url, "--database-url", f"sqlite:///{tmp / 'deck.db'}"],
        env=dict(os.environ, OLLAMA_DECK_BODY_TIMEOUT="5"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/api/status", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit((tmp / "serve.log").read_text())
            time.sleep(0.1)

        baseline: list[float] = []
        for _ in range(200):
            start = time.monotonic()
            requests.get(url + "/api/status", timeout=10)
            baseline.append(time.monotonic() - start)
        rss_before = worker_rss_mb(server.pid)

        body = b'{"model": "' + b"x" * (args.megabytes * 2**20) + b'"}'
        answers: Counter[str] = Counter()
        durations: list[float] = []

        def push() -> None:
            start = time.monotonic()
            try:
                response = requests.post(
                    url + "/api/models/pull",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                answers[str(response.status_code)] += 1
            except requests.RequestException as exc:
                answers[type(exc).__name__] += 1
            durations.append(time.monotonic() - start)

        # One client holds a half-sent body the whole time.
        holder = socket.create_connection(("127.0.0.1", port), timeout=30)
        holder.sendall(
            b"POST /api/models/pull HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        done = threading.Event()
        attack: list[float] = []
        prober = threading.Thread(target=probe, args=(url, done, attack))
        prober.start()
        for _ in range(args.rounds):
            clients = [threading.Thread(target=push) for _ in range(4)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
        try:
            held = holder.recv(200).split(b"\r\n", 1)[0].decode() or "closed, no answer"
        except TimeoutError:
            held = "no answer after 30 s"
        holder.close()
        done.set()
        prober.join()
        rss_after = worker_rss_mb(server.pid)

        summary = " ".join(f"{status}x{count}" for status, count in sorted(answers.items()))
        print(f"{args.megabytes} MB bodies, 4 at a time x {args.rounds}: {summary}")
        print(f"  each answered in {min(durations):.2f}-{max(durations):.2f} s")
        print(f"half-sent body: {held!r}")
        print(
            f"/api/status probes: baseline max {max(baseline) * 1000:.0f} ms (n={len(baseline)}),"
            f" under attack max {max(attack) * 1000:.0f} ms (n={len(attack)})"
        )
        print(f"worker RSS: {rss_before} MB before, {rss_after} MB after")
        print(
            f"bodies: answers={summary} probe_max_ms={max(attack) * 1000:.0f}/"
            f"{max(baseline) * 1000:.0f} rss_mb={rss_before}->{rss_after}"
        )
    finally:
        server.terminate()
        server.wait(15)
        log.close()
        fake.stop()


if __name__ == "__main__":
    main()
