"""Small helpers shared by the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import requests

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_command(app: str, port: int) -> list[str]:
    """gunicorn with one gevent worker on 127.0.0.1:``port``, serving ``app`` (module:name)."""
    bind = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", bind, app]


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    """Wait until ``url`` answers at all; fail early if ``process`` died meanwhile."""

    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
        except requests.ConnectionError:
            return False
        return True

    wait_until(answers, timeout=timeout, interval=0.1)


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it lingers; never leaves a child behind."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
