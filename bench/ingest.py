"""How fast the service takes in a pull stream, against a bare client on the same stream.

Starts the fake Ollama in its own process with a ~200,000-line pull, then alternates:
- bare: requests + iter_lines + json.loads over the stream, nothing else;
- service: a real app (temporary SQLite file) pulls the same stream in its runner thread,
  from POST /api/models/pull until the operation is recorded as succeeded.
Prints lines/s of both, their ratio (best round of each), and how many times the
operation row was written. Ends with: ``ingest: ratio=<r> writes=<w> lines=<n>``.

    python bench/ingest.py [--lines 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import common
import requests
from sqlalchemy import event

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck.state import setup_of

MODEL = "bench:latest"


def bare_round(url: str) -> tuple[int, float]:
    """Lines and seconds for the plain client loop."""
    loads = json.loads
    start = time.perf_counter()
    count = 0
    with requests.post(f"{url}/api/pull", json={"model": MODEL}, stream=True, timeout=60) as r:
        for raw in r.iter_lines(chunk_size=64 * 1024):
            if raw:
                loads(raw)
                count += 1
    return count, time.perf_counter() - start


def service_round(url: str, workdir: Path, index: int) -> tuple[int, float, int]:
    """Lines, seconds and operation-row writes for one pull through the service."""
    app = create_app(
        {
            "OLLAMA_DECK_OLLAMA_HOST": url,
            "OLLAMA_DECK_DATABASE_URL": f"sqlite:///{workdir / f'ingest-{index}.db'}",
        }
    )
    state = setup_of(app).state(app)
    writes = 0

    def count(conn, cursor, statement, params, context, executemany):
        nonlocal writes
        if statement.startswith("UPDATE ollama_deck_operation "):
            writes += 1

    event.listen(state.engine, "before_cursor_execute", count)
    client = app.test_client()
    try:
        start = time.perf_counter()
        op = client.post("/api/models/pull", json={"model": MODEL}).get_json()
        if not state.runner.wait_finished(op["id"], 120):
            raise SystemExit("the service pull did not finish in 120 s")
        elapsed = time.perf_counter() - start
        final = state.store.get(op["id"])
        if final["status"] != "succeeded":
            raise SystemExit(f"the service pull ended {final['status']}: {final['error']}")
    finally:
        OllamaDeck.shutdown(app)
    return 0, elapsed, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    fake, url = common.start_fake(args.lines)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bare_rates, service_rates, write_counts = [], [], []
            lines = 0
            for index in range(args.rounds):
                lines, seconds = bare_round(url)
                bare_rates.append(lines / seconds)
                _, seconds, writes = service_round(url, Path(tmp), index)
                service_rates.append(lines / seconds)
                write_counts.append(writes)
                print(
                    f"round {index + 1}: bare {bare_rates[-1]:,.0f} lines/s, "
                    f"service {service_rates[-1]:,.0f} lines/s, {writes} operation writes"
                )
    finally:
        fake.terminate()
        fake.wait(10)

    bare, service = max(bare_rates), max(service_rates)
    ratio = service / bare
    print(f"lines per pull:          {lines:,}")
    print(f"bare requests+json.loads {bare:,.0f} lines/s (best of {args.rounds})")
    print(f"through the service      {service:,.0f} lines/s (best of {args.rounds})")
    print(f"ratio service/bare       {ratio:.2f}")
    print(f"operation row writes     {max(write_counts)} per pull (max of rounds)")
    print(f"ingest: ratio={ratio:.2f} writes={max(write_counts)} lines={lines}")


if __name__ == "__main__":
    main()
