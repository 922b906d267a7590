"""How fast one worker answers polls of an operation, against a trivial JSON route.

Serves the deck with gunicorn (one gevent worker, SQLite, the fake Ollama in its own
process) plus two routes to compare with: ``/bench/trivial`` returns a constant JSON object
through Flask and nothing else, and ``/bench/bare`` is a bare WSGI app in front of Flask
that returns cached bytes (the server's own floor). Records a pull, then runs wrk against
the three in turn, round after round: ``GET /progress/<id>`` (what curl loops and scripts
poll), the trivial route and the bare app. Prints each round's requests/s and ratios, then
the median and minimum of the rounds' ratios and the load average. Where taskset is
there, the server runs on CPU 0 and wrk on CPU 1. Needs wrk (``apt-get install wrk``).
Ends with ``poll: ratio=<median poll/trivial> ratio_min=... bare_ratio=<median poll/bare>
rps=... trivial=... bare=... load=...``.

    python bench/poll.py [--seconds 5] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
BARE_BODY = b'{"ok":true,"status":"succeeded","percent":100.0}'


def create():
    """The app gunicorn serves: the deck, plus the trivial route and the bare app."""
    from flask import jsonify

    from ollama_deck import create_app

    app = create_app()

    @app.get("/bench/trivial")
    def trivial():
        return jsonify({"ok": True, "status": "succeeded", "percent": 100.0})

    flask_app = app.wsgi_app
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(BARE_BODY)))]

    def bare(environ, start_response):
        if environ["PATH_INFO"] != "/bench/bare":
            return flask_app(environ, start_response)
        start_response("200 OK", headers)
        return [BARE_BODY]

    app.wsgi_app = bare
    return app


def pinned(cpu: int) -> list[str]:
    """A command prefix that keeps a process on one CPU, where the machine has two or more
    and taskset: the server and wrk then do not take each other's time slices, which
    otherwise moves the ratios by more than the differences measured."""
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


def wrk(url: str, seconds: int, connections: int) -> float:
    threads = "-t1" if pinned(1) else "-t2"
    out = subprocess.run(
        [*pinned(1), "wrk", threads, f"-c{connections}", f"-d{seconds}s", url],
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
    parser.add_argument("--rounds", type=int, default=5)
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
                *pinned(0),
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
        urls = {
            "poll": f"{base}/progress/{op_id}",
            "trivial": base + "/bench/trivial",
            "bare": base + "/bench/bare",
        }
        for url in urls.values():
            wrk(url, 1, args.connections)  # warm up
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            rps = {name: wrk(url, args.seconds, args.connections) for name, url in urls.items()}
            rounds.append(rps)
            print(
                f"round: poll {rps['poll']:.0f} req/s, trivial {rps['trivial']:.0f}, "
                f"bare {rps['bare']:.0f}; poll/trivial {rps['poll'] / rps['trivial']:.2f}, "
                f"poll/bare {rps['poll'] / rps['bare']:.2f}; load {os.getloadavg()[0]:.2f}"
            )
    finally:
        for process in (server, fake):
            if process is not None:
                process.terminate()
                process.wait(15)
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = [r["poll"] / r["trivial"] for r in rounds]
    bare_ratios = [r["poll"] / r["bare"] for r in rounds]
    median = {name: statistics.median(r[name] for r in rounds) for name in urls}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load: {load}")
    print(
        f"poll: ratio={statistics.median(ratios):.2f} ratio_min={min(ratios):.2f} "
        f"bare_ratio={statistics.median(bare_ratios):.2f} rps={median['poll']:.0f} "
        f"trivial={median['trivial']:.0f} bare={median['bare']:.0f} "
        f"load={os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
