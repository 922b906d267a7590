"""Real processes for the fault tests: the deck under `ollama-deck serve` (gunicorn, one
gevent worker), a fake Ollama in its own process, and faults injected into them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until

# Quick machinery so faults show within a test's patience (see tests/conftest.py).
FAST_SETTINGS = {
    "OLLAMA_DECK_HEARTBEAT_SECONDS": "0.2",
    "OLLAMA_DECK_STALE_SECONDS": "3600",  # only the dead-pid check can take over quickly
    "OLLAMA_DECK_PULL_STALL_TIMEOUT": "60",
    "OLLAMA_DECK_QUICK_TIMEOUT": "1",
    "OLLAMA_DECK_REQUEST_TIMEOUT": "5",
    "OLLAMA_DECK_STALL_NOTICE_SECONDS": "1",
}


def _stop_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process's whole group (gunicorn's arbiter and its worker)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


class FakeOllamaProcess:
    """``python -m ollama_deck.testing`` in its own process, to stop, continue or kill."""

    def __init__(self, *args: str, port: int = 0) -> None:
        self.args = list(args)
        self.port = port
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> FakeOllamaProcess:
        command = [sys.executable, "-m", "ollama_deck.testing", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command + self.args, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.url = self.process.stdout.readline().strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGKILL)
            self.process.wait(10)
            self.process.stdout.close()
            self.process = None

    def restart(self) -> None:
        """A new process on the same port, as an Ollama that was restarted."""
        self.kill()
        self.start()


class RedisProcess:
    """A redis-server of the test's own on a free port (never the machine's shared one),
    to stop, continue, kill and start again on the same port."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("the Redis outage tests need redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisProcess:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    return conn.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until(answers, timeout=10)
        return self

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None:
            _stop_group(self.process, signal.SIGCONT)  # a stopped process dies as well
            _stop_group(self.process, signal.SIGKILL)
            self.process.wait(10)
            self.process = None


class Deck(ServerProcess):
    """``ollama-deck serve`` in its own process group, talked to over HTTP."""

    def __init__(
        self,
        ollama_url: str,
        database_url: str,
        log_path: Path,
        *,
        workers: int = 1,
        **settings: Any,
    ) -> None:
        port = free_port()
        env = dict(os.environ)
        env.update(FAST_SETTINGS)
        env.update({k: str(v) for k, v in settings.items()})
        command = deck_command(
            "serve",
            "--port",
            str(port),
            "--ollama",
            ollama_url,
            "--database-url",
            database_url,
            "--workers",
            str(workers),
        )
        super().__init__(command, port=port, env=env, log=log_path, timeout=30)
        self.start()

    def wait_ready(self, timeout: float = 30.0) -> Deck:
        self.ready_timeout = timeout
        super().wait_ready()
        return self

    def op(self, op_id: str, **params: Any) -> dict[str, Any]:
        response = self.get(f"/progress/{op_id}", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def pids(self) -> list[int]:
        """The arbiter and its worker(s)."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            return [pid] + [int(p) for p in children.read_text().split()]
        except OSError:
            return [pid]

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the arbiter and its worker: no clean shutdown of any kind."""
        self.signal_all(signal.SIGKILL)
        super().kill()

    def stop(self, timeout: float = 15.0) -> None:
        """Killed, not stopped cleanly: a fault test may have left it stopped or wedged."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        super().stop(timeout)


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """Processes a test started (Deck, FakeOllamaProcess, RedisProcess): all killed after it."""
    started: list[Any] = []
    yield started
    for process in started:
        if isinstance(process, Deck):
            process.stop()
        else:
            process.kill()


def needs_root_and_chattr(directory: Path) -> None:
    """Skip unless this process can make files immutable (root and chattr on this fs)."""
    if os.geteuid() != 0:
        pytest.skip("making the database unwritable needs root (chattr +i)")
    if shutil.which("chattr") is None:
        pytest.skip("making the database unwritable needs chattr (e2fsprogs)")
    probe = directory / "chattr-probe"
    probe.write_text("x")
    try:
        result = subprocess.run(["chattr", "+i", str(probe)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"chattr +i does not work here: {result.stderr.decode().strip()}")
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
        probe.unlink()


@contextmanager
def immutable(database: Path, *, shm: bool = False) -> Iterator[None]:
    """The SQLite file and its WAL made immutable (unwritable even for root).

    The -shm file only with ``shm``: SQLite maps it into memory and writes it through the
    map, and the kernel may answer a write fault on an immutable file's shared map with
    SIGBUS, which kills the process using the database.
    """
    names = (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
    paths = [p for p in names[: 3 if shm else 2] if p.exists()]
    try:
        subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=False)
