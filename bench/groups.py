"""What a group costs over the pulls it is made of: one pull on each of two hosts, then the
same as one group across both.

Two fake Ollama processes each serve a ~50,000-line pull. A round runs, on a fresh SQLite
deck: the two pulls alone (the baseline), then one group pull of both hosts; it counts the
writes of the operations' rows (a child's progress, and the group's rewrites) and the time
until all ended. Prints each round, the best of each, and ends with:
``groups: time_ratio=<group/alone> group_writes=<n> child_writes=<n> write_ratio=<group/children>``.

    python bench/groups.py [--lines 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common
from sqlalchemy import event

from ollama_deck import create_app
from ollama_deck import OllamaDeck
from ollama_deck.state import setup_of

MODEL = "bench:latest"


def one_round(urls: list[str], workdir: Path, name: str, group: bool) -> tuple[float, int, int]:
    """Seconds until every operation ended, child writes and group writes."""
    hosts = {f"gpu{i + 1}": url for i, url in enumerate(urls)}
    app = create_app(
        {
            "OLLAMA_DECK_OLLAMA_HOSTS": hosts,
            "OLLAMA_DECK_DATABASE_URL": f"sqlite:///{workdir / f'{name}.db'}",
        }
    )
    state = setup_of(app).state(app)
    client = app.test_client()
    group_id: list[str] = []
    writes = {"child": 0, "group": 0}

    def count(conn, cursor, statement, params, context, executemany):
        if not statement.startswith("UPDATE ollama_deck_operation "):
            return
        values = params.values() if isinstance(params, dict) else params
        writes["group" if group_id and group_id[0] in values else "child"] += 1

    try:
        client.get("/api/status")  # the deck runs from here
        event.listen(state.engine, "before_cursor_execute", count)
        start = time.perf_counter()
        if group:
            op = client.post("/api/models/pull", json={"model": MODEL, "hosts": "*"}).get_json()
            group_id.append(op["id"])
            ids = [child["id"] for child in op["children"]]
        else:
            ids = [
                client.post("/api/models/pull", json={"model": MODEL, "host": h}).get_json()["id"]
                for h in hosts
            ]
        for op_id in ids:
            if not state.runner.wait_finished(op_id, 120):
                raise SystemExit("a pull did not finish in 120 s")
        if group_id:
            deadline = time.monotonic() + 10
            while (state.store.get(group_id[0]) or {}).get("status") != "succeeded":
                if time.monotonic() > deadline:
                    raise SystemExit(f"the group ended {state.store.get(group_id[0])}")
                time.sleep(0.01)
        elapsed = time.perf_counter() - start
        for op_id in ids:
            final = state.store.get(op_id)
            if final["status"] != "succeeded":
                raise SystemExit(f"a pull ended {final['status']}: {final['error']}")
    finally:
        OllamaDeck.shutdown(app)
    return elapsed, writes["child"], writes["group"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    fakes = [common.start_fake(args.lines) for _ in range(2)]
    urls = [url for _, url in fakes]
    alone, grouped, group_writes, child_writes = [], [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.rounds):
                seconds, children, _ = one_round(urls, Path(tmp), f"alone-{index}", False)
                alone.append(seconds)
                seconds, children, groups = one_round(urls, Path(tmp), f"group-{index}", True)
                grouped.append(seconds)
                group_writes.append(groups)
                child_writes.append(children)
                print(
                    f"round {index + 1}: alone {alone[-1]:.2f} s, as a group {grouped[-1]:.2f} s "
                    f"({children} child writes, {groups} group writes)"
                )
    finally:
        for process, _ in fakes:
            process.terminate()
            process.wait(10)
    ratio = min(grouped) / min(alone)
    writes, children = max(group_writes), max(child_writes)
    print(f"two pulls alone    {min(alone):.2f} s (best of {args.rounds})")
    print(f"the same as group  {min(grouped):.2f} s (best of {args.rounds})")
    print(
        f"groups: time_ratio={ratio:.2f} group_writes={writes} child_writes={children} "
        f"write_ratio={writes / max(children, 1):.2f}"
    )


if __name__ == "__main__":
    main()
