"""What big header sections from clients without a token cost the one gevent worker.

Starts a fake Ollama and ``ollama-deck serve`` (gunicorn, one gevent worker) with a token,
then measures ``GET /api/status`` latency (with the token, a new connection each time):
- baseline: probes one after another, nothing else going on;
- flood: the same probes while ``--clients`` clients without a token send requests whose
  header section is ``--fields`` fields of ``--field-bytes`` bytes each (about 700 KB by
  default, what gunicorn's default limits let through), one after another, each on its
  own connection, reading whatever comes back.

A server that parses such a section before it refuses the request spends CPU on every
one (gunicorn's parser cost grows with the square of the section's size); one that
refuses it at the limit spends little. A third phase has the same clients send ordinary
small requests: what their number alone costs the worker, whatever the headers. Prints
the phases' median (and 90th percentile), their ratios, what the floods got back and the
load average; ends with one line: ``header_flood: median_ratio=<flood/baseline>
p90_ratio=... small_ratio=<flood/small requests> median_ms=<flood>/<baseline>
answers=<status x count> floods_per_s=... load=...``.

    python bench/header_flood.py [--clients 16] [--seconds 10] [--fields 88] [--field-bytes 8000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import common
import requests

from ollama_deck.testing import FakeOllama

TOKEN = "bench-header-flood-token"


def flood_request(fields: int, field_bytes: int) -> bytes:
    """A GET of /api/status without a token whose header section is ``fields`` fields of
    ``field_bytes`` bytes (name, value and CRLF)."""
    value = b"a" * (field_bytes - len(b"X-Flood-0000: \r\n"))
    lines = [b"GET /api/status HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [b"X-Flood-%04d: %s" % (number, value) for number in range(fields)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def flood(port: int, request: bytes, until: threading.Event, answers: Counter[str]) -> None:
    while not until.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                try:
                    sock.sendall(request)
                except OSError:
                    pass  # refused before the whole section was sent: read the answer
                head = sock.recv(64)
            status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "closed"
        except OSError as exc:
            status = type(exc).__name__
        answers[status] += 1


def flood_phase(
    url: str, port: int, request: bytes, args: argparse.Namespace
) -> tuple[list[float], Counter[str], float]:
    """/api/status latencies while ``args.clients`` clients send ``request`` over and over;
    what they got back and how many they sent per second."""
    answers: Counter[str] = Counter()
    done = threading.Event()
    clients = [
        threading.Thread(target=flood, args=(port, request, done, answers), daemon=True)
        for _ in range(args.clients)
    ]
    for client in clients:
        client.start()
    started = time.monotonic()
    latencies = probe_for(url, args.seconds)
    done.set()
    for client in clients:
        client.join(60)
    return latencies, answers, sum(answers.values()) / (time.monotonic() - started)


def counts(answers: Counter[str]) -> str:
    return " ".join(f"{status}x{count}" for status, count in sorted(answers.items()))


def probe(url: str, count: int) -> list[float]:
    """``count`` /api/status latencies in seconds, one request after another."""
    latencies = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(count):
        start = time.perf_counter()
        response = requests.get(url + "/api/status", headers=headers, timeout=60)
        latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise SystemExit(f"/api/status answered {response.status_code}: {response.text}")
    return latencies


def probe_for(url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        latencies += probe(url, 1)
    return latencies


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fields", type=int, default=88)
    parser.add_argument("--field-bytes", type=int, default=8000)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    fake = FakeOllama().start()
    tmp = Path(tempfile.mkdtemp(prefix="deck-header-flood-"))
    server, url = common.start_deck(
        fake.url,
        f"sqlite:///{tmp / 'deck.db'}",
        env={"OLLAMA_DECK_TOKEN": TOKEN},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    port = int(url.rsplit(":", 1)[1])
    try:
        probe(url, 20)  # warm up
        baseline = probe_for(url, args.seconds)

        flooded, answers, rate = flood_phase(
            url, port, flood_request(args.fields, args.field_bytes), args
        )
        # The same clients with ordinary requests: what their number alone costs.
        small, small_answers, small_rate = flood_phase(url, port, flood_request(1, 100), args)
        load_after = os.getloadavg()[0]

        base_median, flood_median = statistics.median(baseline), statistics.median(flooded)
        small_median = statistics.median(small)
        base_p90, flood_p90 = p90(baseline), p90(flooded)
        summary = counts(answers)
        size_kb = len(flood_request(args.fields, args.field_bytes)) / 1024
        print(
            f"{args.clients} clients without a token, header sections of {args.fields} fields"
            f" x {args.field_bytes} B = {size_kb:.0f} KB: {summary} ({rate:.0f}/s)"
        )
        print(f"the same clients with small requests: {counts(small_answers)} ({small_rate:.0f}/s)")
        print(
            f"/api/status baseline: median {base_median * 1000:.1f} ms,"
            f" p90 {base_p90 * 1000:.1f} ms (n={len(baseline)})"
        )
        print(
            f"/api/status flooded:  median {flood_median * 1000:.1f} ms,"
            f" p90 {flood_p90 * 1000:.1f} ms (n={len(flooded)})"
        )
        print(
            f"/api/status beside small requests: median {small_median * 1000:.1f} ms"
            f" (n={len(small)})"
        )
        print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after")
        print(
            f"header_flood: median_ratio={flood_median / base_median:.1f}"
            f" p90_ratio={flood_p90 / base_p90:.1f}"
            f" small_ratio={flood_median / small_median:.1f}"
            f" median_ms={flood_median * 1000:.1f}/{base_median * 1000:.1f}"
            f" answers={summary} floods_per_s={rate:.0f}"
            f" load={load_before:.2f}->{load_after:.2f}"
        )
    finally:
        server.terminate()
        server.wait(15)
        fake.stop()


if __name__ == "__main__":
    main()
