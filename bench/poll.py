"""How fast one worker answers polls of an operation, against a trivial JSON route.

Serves the deck with gunicorn (one gevent worker, SQLite, the fake Ollama in its own
process) plus one extra route, ``/bench/trivial``, that returns a constant JSON object
through Flask and nothing else. Records a pull, then runs wrk against both, alternating,
in the same run: ``GET /progress/<id>`` (what curl loops and scripts poll) and the trivial
route. Prints requests/s of each and their ratio (best round of each). Needs wrk
(``apt-get install wrk``). Ends with: ``poll: ratio=<r> rps=<n> trivial=<n>``.

    python bench/poll.py [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent


def create():
    """The app gunicorn serves: the deck, plus the trivial route to compare with."""
    from flask import jsonify

    from ollama_deck import create_app

    app = create_app()

    @app.get("/bench/trivial")
    def trivial():
        return jsonify({"ok": True, "status": "succeeded", "percent": 100.0})

    return app


def wrk(url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url} answered {errors.group(1)} errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def wait_for(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited")
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench/poll.py needs wrk: apt-get install wrk")

    fake = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.testing", "--bench-lines", "2000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="deck-poll-"))
    server = None
    try:
        ollama = fake.stdout.readline().strip()
        env = dict(
            os.environ,
            OLLAMA_HOST=ollama,
            OLLAMA_DECK_DATABASE_URL=f"sqlite:///{workdir / 'deck.db'}",
            OLLAMA_DECK_EVENT_BUS="local",
        )
        base = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gevent",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{args.port}",
                "--chdir",
                str(HERE),
                "poll:create()",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(base + "/bench/trivial", server)
        op = requests.post(base + "/api/models/pull", json={"model": "bench:latest"}, timeout=10)
        op_id = op.json()["id"]
        deadline = time.monotonic() + 60
        while requests.get(f"{base}/progress/{op_id}", timeout=5).json()["status"] != "succeeded":
            if time.monotonic() > deadline:
                raise SystemExit("the pull did not succeed")
            time.sleep(0.1)
        poll_url, trivial_url = f"{base}/progress/{op_id}", base + "/bench/trivial"
        wrk(poll_url, 1, args.connections)  # warm up both
        wrk(trivial_url, 1, args.connections)
        polls, trivials = [], []
        for _ in range(args.rounds):
            polls.append(wrk(poll_url, args.seconds, args.connections))
            trivials.append(wrk(trivial_url, args.seconds, args.connections))
            print(f"round: poll {polls[-1]:.0f} req/s, trivial {trivials[-1]:.0f} req/s")
    finally:
        for process in (server, fake):
            if process is not None:
                process.terminate()
                process.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)
    best_poll, best_trivial = max(polls), max(trivials)
    print(
        f"poll: ratio={best_poll / best_trivial:.2f} rps={best_poll:.0f} trivial={best_trivial:.0f}"
    )


if __name__ == "__main__":
    main()
