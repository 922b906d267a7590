"""One way for the tests to talk to a server over HTTP and to run a server in a process.

``HttpClient`` is every test's client of a deck it reaches over a socket: the werkzeug live
server of ``conftest.py``, a gunicorn process, ``ollama-deck serve``. ``ServerProcess`` starts
a server in its own process group, waits until it answers, and stops it (SIGTERM, then
SIGKILL for the whole group), so no test leaves a child behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import IO

import requests

from .helpers import free_port
from .helpers import wait_until


class HttpClient:
    """Requests to paths under ``url``, each with a timeout; every status is noted.

    With ``keep_alive`` (the default) one session reuses its connection; without it each
    request opens its own, so under several workers any worker may answer it.
    """

    def __init__(self, url: str, *, timeout: float = 10, keep_alive: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session() if keep_alive else None
        self.statuses: list[int] = []  # every HTTP status this client saw

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        send = self.session.request if self.session is not None else requests.request
        response = send(method, self.url + path, **kwargs)
        self.statuses.append(response.status_code)
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def gunicorn_command(app: str, port: int) -> list[str]:
    """gunicorn with one gevent worker on 127.0.0.1:``port``, serving ``app`` (module:name)."""
    bind = f"127.0.0.1:{port}"
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "-b", bind, app]


def deck_command(*args: str) -> list[str]:
    """The ``ollama-deck`` command line with ``args``, run by this interpreter."""
    main = "import sys; from ollama_deck.cli import main; sys.exit(main())"
    return [sys.executable, "-c", main, *args]


class ServerProcess(HttpClient):
    """A server process in its own group, and a client of it.

    ``command`` is built for a port (``free_port()`` by default); its output goes to ``log``
    (a file, or nowhere). Use it as a context manager, or ``start()`` and ``stop()``.
    ``ready_path`` is asked until it answers ``ready_status`` (any status when None).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        log: Path | None = None,
        ready_path: str = "/api/status",
        ready_status: int | None = 200,
        ready_headers: dict[str, str] | None = None,
        ready_timeout: float = 30.0,
        keep_alive: bool = True,
        timeout: float = 10,
    ) -> None:
        self.port = port if port is not None else free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", timeout=timeout, keep_alive=keep_alive)
        self.command = list(command)
        self.env = env
        self.cwd = cwd
        self.log = log
        self.ready_path = ready_path
        self.ready_status = ready_status
        self.ready_headers = ready_headers
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> ServerProcess:
        if self.log is not None:
            self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        out = self._log_file if self._log_file is not None else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self) -> ServerProcess:
        """Wait until the server answers; fail at once, with its log, if it exited."""

        def ready() -> bool:
            process = self.process
            assert process is not None
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}{self.output()}")
            try:
                with requests.Session() as probe:
                    response = probe.get(
                        self.url + self.ready_path, headers=self.ready_headers, timeout=5
                    )
            except requests.RequestException:
                return False
            return self.ready_status is None or response.status_code == self.ready_status

        wait_until(ready, timeout=self.ready_timeout, interval=0.05)
        return self

    def output(self) -> str:
        """The server's log so far, for failure messages."""
        if self.log is None or not self.log.exists():
            return ""
        return "\n" + self.log.read_text(errors="replace")[-4000:]

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process's whole group (an arbiter and its workers)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole group: no clean shutdown of any kind."""
        if self.process is None:
            return
        self.signal_group(signal.SIGCONT)  # a stopped process group dies as well
        self.signal_group(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL to the group if it lingers; closes the client and the log."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever lingers, and any child the server left behind in its group.
            self.signal_group(signal.SIGCONT)
            self.signal_group(signal.SIGKILL)
            process.wait(10)
        self.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
