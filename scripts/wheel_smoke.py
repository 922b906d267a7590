"""Smoke test of an installed wheel: what `pip install ollama-deck` gives a user.

Run it with the Python of a fresh virtual environment that has only the wheel installed,
from a folder outside the source tree and with ``-I`` so that the source tree is not on
``sys.path``::

    cd "$(mktemp -d)" && /path/to/venv/bin/python -I path/to/scripts/wheel_smoke.py

It starts the fake Ollama and ``ollama-deck serve`` from that install (on free 127.0.0.1
ports), loads the page and every script and stylesheet it references, pulls a model to
``succeeded`` over HTTP and another with the console script's client side (``ollama-deck
pull``, then ``ps --json``), and checks that the Python client imports without Flask. It
ends with one line ``wheel-smoke: ...`` and exits non-zero on any failure.
"""

from __future__ import annotations

import json
import posixpath
import re
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from importlib import resources
from pathlib import Path
from urllib.error import URLError
from urllib.request import Request
from urllib.request import urlopen

DEADLINE = 60.0  # seconds for each wait below
# A static import of the page's ES modules: `from "./js/ops.js";` or `import "./x.js";`.
IMPORT = re.compile(r"""(?:from|import)\s+["'](\.{1,2}/[^"']+\.js)["']""")


def fail(message: str) -> None:
    print(f"wheel-smoke: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = Request(url, data=body, method=method, headers=headers)
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except URLError as exc:
        status = getattr(exc, "code", None)
        if status is None:
            raise
        return status, exc.read()  # type: ignore[attr-defined]


def wait_for(what: str, check) -> object:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, URLError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_install() -> Path:
    import ollama_deck

    where = Path(ollama_deck.__file__).resolve().parent
    if Path(sys.prefix).resolve() not in where.parents:
        fail(f"ollama_deck was imported from {where}, not from this environment")
    if ollama_deck.__version__ != metadata.version("ollama-deck"):
        fail(f"__version__ {ollama_deck.__version__!r} is not the installed version")
    package = resources.files("ollama_deck")
    for name in (
        "py.typed",
        "templates/ollama_deck/index.html",
        "static/app.js",
        "static/app.css",
        "data/catalog.toml",
        "migrations/env.py",
        "migrations/script.py.mako",
    ):
        if not package.joinpath(name).is_file():
            fail(f"the wheel lacks ollama_deck/{name}")
    if not list(Path(str(package.joinpath("migrations/versions"))).glob("0001_*.py")):
        fail("the wheel lacks the migrations")
    check_page_modules(package.joinpath("static"))
    return where


def check_page_modules(static) -> None:  # noqa: ANN001 - an importlib Traversable
    """Every ES module the page imports, from app.js on, must be in the wheel."""
    pending, seen = ["app.js"], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        module = static.joinpath(name)
        if not module.is_file():
            fail(f"the wheel lacks ollama_deck/static/{name}")
        for target in IMPORT.findall(module.read_text(encoding="utf-8")):
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    if len(seen) < 2:
        fail("app.js imports no modules: the import pattern of wheel_smoke.py is out of date")


def check_client(bin_dir: Path, base: str, http_op: str) -> None:
    """The console script's client commands, and the client importing without Flask."""
    deck = [str(bin_dir / "ollama-deck")]
    pulled = subprocess.run(
        [*deck, "pull", "--url", base, "cli:latest"], capture_output=True, text=True, timeout=60
    )
    last = (pulled.stdout.strip().splitlines() or [""])[-1]
    if pulled.returncode != 0 or not last.startswith("cli:latest  succeeded"):
        fail(f"ollama-deck pull exited {pulled.returncode}: {pulled.stdout} {pulled.stderr}")
    listed = subprocess.run(
        [*deck, "ps", "--all", "--json", "--url", base], capture_output=True, text=True, timeout=60
    )
    try:
        models = {op["model"] for op in json.loads(listed.stdout)["operations"]}
    except (ValueError, KeyError):
        fail(f"ollama-deck ps --json said {listed.stdout!r} {listed.stderr!r}")
    if not {"cli:latest", "bench:latest"} <= models:
        fail(f"ollama-deck ps --all --json lists {sorted(models)}, not both pulls ({http_op})")
    code = "import sys, ollama_deck.client; sys.exit('flask' in sys.modules)"
    if subprocess.run([sys.executable, "-I", "-c", code], timeout=60).returncode != 0:
        fail("importing ollama_deck.client imported Flask")


def main() -> None:
    where = check_install()
    bin_dir = Path(sys.executable).parent
    shown = subprocess.run(
        [str(bin_dir / "ollama-deck"), "--version"], capture_output=True, text=True, timeout=60
    )
    if shown.stdout.strip() != f"ollama-deck {metadata.version('ollama-deck')}":
        fail(f"ollama-deck --version said {shown.stdout!r} {shown.stderr!r}")
    work = Path(tempfile.mkdtemp(prefix="deck-smoke-"))
    database = f"sqlite:///{work / 'deck.db'}"
    fake = subprocess.Popen(
        [sys.executable, "-m", "ollama_deck.testing", "--bench-lines", "2000"]
        + ["--allow", "cli:latest"],
        stdout=subprocess.PIPE,
        text=True,
    )
    server = None
    try:
        ollama = fake.stdout.readline().strip()
        if not ollama.startswith("http://127.0.0.1:"):
            fail(f"the fake Ollama did not start: {ollama!r}")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                str(bin_dir / "ollama-deck"),
                "serve",
                "--port",
                str(port),
                "--ollama",
                ollama,
                "--database-url",
                database,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for("the service", lambda: server.poll() is None and http("GET", base + "/healthz"))

        status, page = http("GET", base + "/")
        if status != 200:
            fail(f"GET / answered {status}: {page[:300]!r}")
        assets = re.findall(rb'<(?:script|link)[^>]+(?:src|href)="(/[^"]+)"', page)
        if len(assets) < 2:
            fail(f"the page references {len(assets)} scripts and stylesheets, expected 2")
        for asset in assets:
            status, _ = http("GET", base + asset.decode())
            if status != 200:
                fail(f"GET {asset.decode()} answered {status}")

        status, body = http("POST", base + "/api/models/pull", b'{"model": "bench:latest"}')
        if status != 202:
            fail(f"POST /api/models/pull answered {status}: {body[:300]!r}")
        op_id = re.search(rb'"id":\s*"([0-9a-f-]{36})"', body).group(1).decode()

        def finished():
            _, data = http("GET", f"{base}/progress/{op_id}")
            state = re.search(rb'"status":\s*"(\w+)"', data).group(1).decode()
            return state if state not in ("queued", "running") else None

        final = wait_for("the pull to finish", finished)
        if final != "succeeded":
            fail(f"the pull ended {final}")
        check_client(bin_dir, base, op_id)
        current = subprocess.run(
            [str(bin_dir / "ollama-deck"), "db", "current", "--database-url", database],
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Migrated to the newest revision the wheel ships, whichever that is.
        said = dict(line.split(": ", 1) for line in current.stdout.splitlines() if ": " in line)
        if current.returncode != 0 or not said.get("head") or said.get("current") != said["head"]:
            fail(f"ollama-deck db current: {current.stdout} {current.stderr}")
    finally:
        for process in (server, fake):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)
    print(
        f"wheel-smoke: ok version={metadata.version('ollama-deck')} assets={len(assets)} "
        f"pull={final} package={where.parent.name}"
    )


if __name__ == "__main__":
    main()
