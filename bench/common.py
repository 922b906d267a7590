"""What the benchmarks share: free ports, a served deck, its worker processes.

The scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
``import common``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_deck(
    ollama: str,
    database_url: str,
    *,
    env: dict[str, str] | None = None,
    args: tuple = (),
    headers: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """``ollama-deck serve`` on a free port (its own session, output discarded); returns
    the process and its base URL once ``/api/status`` answers (sent with ``headers``, e.g.
    the token's)."""
    port = free_port()
    command = [sys.executable, "-m", "ollama_deck.cli", "serve", "--port", str(port)]
    command += ["--ollama", ollama, "--database-url", database_url, *map(str, args)]
    process = subprocess.Popen(
        command,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the deck exited with {process.returncode}")
        try:
            if requests.get(url + "/api/status", headers=headers, timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the deck did not start")


def worker_pids(arbiter: int, expected: int = 1) -> list[int]:
    """The pids of a gunicorn arbiter's workers, once ``expected`` of them run."""
    deadline = time.monotonic() + 30
    while True:
        children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
        if len(children) >= expected:
            return [int(c) for c in children]
        if time.monotonic() > deadline:
            raise SystemExit(f"gunicorn has {len(children)} of {expected} workers")
        time.sleep(0.1)


@contextmanager
def bench_database(kind: str, postgres: str | None = None) -> Iterator[str]:
    """A fresh database for one measurement: a SQLite file in a temporary folder, or (kind
    ``postgresql``) a schema of its own in ``postgres``; removed after."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="deck-bench-")
        try:
            yield f"sqlite:///{folder}/deck.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    from sqlalchemy import create_engine
    from sqlalchemy import text

    if not postgres:
        raise SystemExit("a PostgreSQL URL is needed (--postgres)")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres else "?"
    try:
        yield f"{postgres}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def start_fake(lines: int) -> tuple[subprocess.Popen, str]:
    """The fake Ollama in a process of its own, serving a pull of ``lines`` progress lines
    (``bench:latest``); the process and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.testing", "--port", "0", "--bench-lines", str(lines)],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit(f"the fake Ollama did not start: {url!r}")
    return process, url


def timed_gets(port: int, path: str, count: int, timeout: float = 60) -> list[float]:
    """Milliseconds of ``count`` GETs of ``path`` on one keep-alive connection; each must
    answer 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - start) * 1000)
        if response.status != 200:
            raise SystemExit(f"{path} answered {response.status}")
    conn.close()
    return times
