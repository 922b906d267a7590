"""The installed ``ollama-deck`` console script against ``ollama-deck serve`` (gunicorn,
gevent) and the fake Ollama, as a person in a terminal or a script uses it: pulls to the
end, failures, Ctrl-C that leaves the pull running, attach, ps, cancel, tokens, a deck that
is not there, and both displays (a pseudo-terminal, a pipe)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript
from ollama_deck.testing import UNKNOWN_MANIFEST

from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .processes import FAST_SETTINGS

pytestmark = pytest.mark.gunicorn

SCRIPT = Path(sys.executable).with_name("ollama-deck")  # the venv's console script
TOKEN = "cli-test-token"
QUICK = PullScript(layers=[1_000_000, 1_429], step=50_000, interval=0.01)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def deck(fake, tmp_path_factory) -> Iterator[ServerProcess]:
    """One served deck for the module, with a token: every command below sends it."""
    assert SCRIPT.exists(), f"no console script at {SCRIPT}: pip install -e '.[test]'"
    folder = tmp_path_factory.mktemp("deck")
    port = free_port()
    env = {**os.environ, **FAST_SETTINGS, "OLLAMA_DECK_TOKEN": TOKEN}
    command = [str(SCRIPT), "serve", "--port", str(port), "--ollama", fake.url]
    command += ["--database-url", f"sqlite:///{folder / 'deck.db'}"]
    server = ServerProcess(
        command,
        port=port,
        env=env,
        log=folder / "deck.log",
        ready_path="/healthz",
        ready_headers={"Authorization": f"Bearer {TOKEN}"},
    )
    server.session.headers["Authorization"] = f"Bearer {TOKEN}"
    with server:
        yield server


def client_env(deck: ServerProcess, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OLLAMA_DECK_URL": deck.url, "OLLAMA_DECK_TOKEN": TOKEN}
    env.pop("COLUMNS", None)
    env.update(extra)
    return env


def run(deck: ServerProcess, *args: str, timeout: float = 60, **extra: str):
    """Run the console script to its end; stdout and stderr apart."""
    return subprocess.run(
        [str(SCRIPT), *args],
        env=client_env(deck, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Running:
    """The console script running with its output read as it comes."""

    def __init__(self, deck: ServerProcess, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(SCRIPT), *args],
            env=client_env(deck),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def wait(self, timeout: float = 60) -> int:
        """Its exit status, once all it wrote has been read."""
        code = self.process.wait(timeout)
        for reader in self.readers:
            reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for process in started:
        process.kill()


def operations(deck: ServerProcess, model: str) -> list[dict]:
    answer = deck.get("/progress", params={"limit": "1000"})
    assert answer.status_code == 200, answer.text
    return [op for op in answer.json()["operations"] if op["model"] == model]


def lines_of(output: str, model: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(model + "  ")]


# ---------------------------------------------------------------------- pulls to the end


def test_pull_of_several_models_to_success_in_plain_lines(deck, fake):
    for name in ("one:1", "two:1", "three:1"):
        fake.allow_pull(name, QUICK)
    result = run(deck, "pull", "one:1", "two:1", "three:1")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("one:1", "two:1", "three:1"):
        said = lines_of(result.stdout, name)
        assert said[-1].startswith(f"{name}  succeeded  1.0 MB in "), said
        # A pipe gets a line per stage and per 10 %, not one per event (~40 here).
        tenths = [int(m) // 10 for m in re.findall(r"downloading  (\d+)%", "\n".join(said))]
        assert tenths == sorted(set(tenths)), said
        assert 3 <= len(said) <= 15, said
        assert name in fake.installed()
    assert "\x1b[" not in result.stdout
    assert result.stderr == ""


def test_json_events_are_one_per_line(deck, fake):
    fake.allow_pull("json:1", QUICK)
    result = run(deck, "pull", "--json", "json:1")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["event"] for e in events} >= {"progress", "log", "done"}
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    assert events[-1]["event"] == "done" and events[-1]["data"]["status"] == "succeeded"


def test_a_failing_pull_exits_1_with_its_message(deck, fake):
    fake.allow_pull("good:1", QUICK)
    fake.allow_pull("flaky:1", PullScript(layers=[1_000_000], step=100_000, error_after=3))
    result = run(deck, "pull", "good:1", "flaky:1", "nosuch:1", "bad name")
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines_of(result.stdout, "good:1")[-1].startswith("good:1  succeeded")
    assert lines_of(result.stdout, "flaky:1")[-1] == (
        "flaky:1  failed: max retries exceeded: unexpected EOF"
    )
    assert lines_of(result.stdout, "nosuch:1")[-1] == f"nosuch:1  failed: {UNKNOWN_MANIFEST}"
    assert lines_of(result.stdout, "bad name") == [
        "bad name  refused: invalid model name 'bad name': bad characters in model 'bad name'"
    ]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------- Ctrl-C, attach


def test_ctrl_c_detaches_and_attach_follows_the_pull_to_its_end(deck, fake, running):
    fake.allow_pull("held:1", PullScript(layers=[1_000_000], step=50_000, hold_after=3))
    pull = Running(deck, "pull", "held:1")
    running.append(pull)
    wait_until(lambda: any("downloading" in line for line in pull.out), timeout=30)
    pull.process.send_signal(signal.SIGINT)
    assert pull.wait() == 130
    (op,) = operations(deck, "held:1")
    assert op["status"] == "running"  # it goes on in the deck
    assert pull.err == [
        "Detached: 1 pull goes on in the deck.",
        f"  {op['id']}  held:1",
        f"Attach again: ollama-deck attach {op['id'][:8]}",
    ]
    attach = Running(deck, "attach", op["id"][:8])  # as printed, and as ps shows it
    running.append(attach)
    wait_until(lambda: any("downloading" in line for line in attach.out), timeout=30)
    fake.release("held:1")
    assert attach.wait() == 0, attach.out + attach.err
    assert attach.out[-1].startswith("held:1  succeeded")


def test_cancel_on_interrupt_cancels(deck, fake, running):
    fake.allow_pull("stop:1", PullScript(layers=[1_000_000], step=50_000, hold_after=3))
    pull = Running(deck, "pull", "--cancel-on-interrupt", "stop:1")
    running.append(pull)
    wait_until(lambda: any("downloading" in line for line in pull.out), timeout=30)
    pull.process.send_signal(signal.SIGINT)
    assert pull.wait() == 130
    (op,) = operations(deck, "stop:1")
    assert op["status"] == "cancelled"
    assert pull.err == [f"cancelled stop:1 ({op['id']})"]


def test_detach_ps_cancel(deck, fake):
    fake.allow_pull("bg:1", PullScript(layers=[1_000_000], step=50_000, hold_after=2))
    started = run(deck, "pull", "--detach", "bg:1")
    assert started.returncode == 0, started.stderr
    (op,) = operations(deck, "bg:1")
    assert started.stdout == f"{op['id']}  bg:1\n"
    assert started.stderr == f"Follow: ollama-deck attach {op['id'][:8]}\n"

    listed = run(deck, "ps", "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    mine = [o for o in document["operations"] if o["id"] == op["id"]]
    assert mine and mine[0]["model"] == "bg:1" and mine[0]["status"] in ("queued", "running")
    table = run(deck, "ps")
    assert re.search(rf"^{op['id'][:8]}  bg:1 +default +\w+", table.stdout, re.M), table.stdout

    cancelled = run(deck, "cancel", "bg:1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == f"cancelled bg:1 ({op['id']})\n"
    assert operations(deck, "bg:1")[0]["status"] == "cancelled"
    again = run(deck, "cancel", "bg:1")
    assert again.returncode == 1
    assert again.stderr.startswith("ollama-deck: no active operation 'bg:1'")
    assert again.stderr.count("\n") == 1

    shown = run(deck, "logs", op["id"])
    assert shown.returncode == 0 and "cancelled" in shown.stdout.splitlines()[-1]


def test_pause_resume_and_pull_at_a_time(deck, fake):
    fake.allow_pull("nap:1", PullScript(layers=[1_000_000], step=50_000, hold_after=2))
    started = run(deck, "pull", "--detach", "nap:1")
    assert started.returncode == 0, started.stderr
    (op,) = operations(deck, "nap:1")
    wait_until(lambda: operations(deck, "nap:1")[0]["status"] == "running", timeout=30)

    paused = run(deck, "pause", "nap:1")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout in (
        f"paused nap:1 ({op['id']})\n",
        f"pausing nap:1 ({op['id']}): its download is closing\n",
    )
    wait_until(lambda: operations(deck, "nap:1")[0]["status"] == "paused", timeout=30)
    again = run(deck, "pause", op["id"][:8])
    assert again.returncode == 1
    assert again.stderr.startswith("ollama-deck: ") and "paused" in again.stderr
    assert again.stderr.count("\n") == 1
    table = run(deck, "ps")
    assert re.search(rf"^{op['id'][:8]}  nap:1 +default +paused", table.stdout, re.M), table.stdout

    fake.release("nap:1")
    resumed = run(deck, "resume", "nap:1")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resumed nap:1 ({op['id']}), ")
    follow = run(deck, "attach", op["id"])
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert lines_of(follow.stdout, "nap:1")[-1].startswith("nap:1  succeeded")
    not_paused = run(deck, "resume", op["id"])
    assert not_paused.returncode == 1 and not_paused.stderr.startswith("ollama-deck: ")

    at = run(deck, "pull", "--at", "01:00", "--detach", "late:1")
    assert at.returncode == 0, at.stderr
    (late,) = operations(deck, "late:1")
    assert late["status"] == "scheduled" and late["starts_at"] is not None
    assert at.stdout == f"{late['id']}  late:1\n"
    followed = Running(deck, "pull", "late:1")  # joins it; says when it starts
    try:
        wait_until(lambda: any("scheduled  starts at 01:00" in line for line in followed.out))
    finally:
        followed.kill()
    assert run(deck, "cancel", "late:1").returncode == 0
    bad = run(deck, "pull", "--at", "soon", "late:1")
    assert bad.returncode == 2 and "Invalid value for '--at': use a time of day" in bad.stderr
    assert len(operations(deck, "late:1")) == 1  # nothing started


def test_ls_and_rm(deck, fake):
    fake.add_model("listed:1", size=3_000_000_000)
    shown = run(deck, "ls", "--json")
    assert shown.returncode == 0, shown.stderr
    listing = json.loads(shown.stdout)
    assert "listed:1" in [m["name"] for m in listing["models"]]
    table = run(deck, "ls")
    assert re.search(r"^listed:1 +3\.0 GB$", table.stdout, re.M), table.stdout
    assert re.search(r"^\d+ models, .* on default$", table.stdout, re.M)
    removed = run(deck, "rm", "listed:1")
    assert (removed.returncode, removed.stdout) == (0, "deleted listed:1\n")
    missing = run(deck, "rm", "listed:1")
    assert missing.returncode == 1
    assert missing.stderr.startswith("ollama-deck: ") and missing.stderr.count("\n") == 1


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("token", "said"),
    [
        ("wrong", "ollama-deck: the deck refused the token in OLLAMA_DECK_TOKEN (401)\n"),
        ("", "ollama-deck: the deck needs a token: set OLLAMA_DECK_TOKEN to it (401)\n"),
    ],
)
def test_a_wrong_or_missing_token_is_one_line(deck, token, said):
    for args in (["pull", "m:1"], ["ps"], ["attach", "m:1"]):
        result = run(deck, *args, OLLAMA_DECK_TOKEN=token)
        assert (result.returncode, result.stderr, result.stdout) == (1, said, ""), args


def test_an_unreachable_deck_is_one_line(deck):
    url = f"http://127.0.0.1:{free_port()}"
    result = run(deck, "pull", "m:1", OLLAMA_DECK_URL=url)
    assert result.returncode == 3
    assert result.stderr == (
        f"ollama-deck: cannot reach the deck at {url}: connection refused (is the deck "
        "running? ollama-deck serve) (set --url or OLLAMA_DECK_URL)\n"
    )


def test_an_unknown_operation_is_one_line(deck):
    result = run(deck, "attach", "never-pulled:1")
    assert result.returncode == 1
    assert result.stderr == (
        "ollama-deck: no operation 'never-pulled:1': give an id (ollama-deck ps --all "
        "lists them) or a model name\n"
    )


# ---------------------------------------------------------------------- the terminal


def run_in_terminal(deck: ServerProcess, *args: str, columns: int = 80) -> tuple[int, str]:
    """Run the console script on a pseudo-terminal ``columns`` wide; its status and screen
    output (stdout and stderr, as a terminal shows them)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [str(SCRIPT), *args],
        env=client_env(deck, TERM="xterm"),
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process has ended
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        return process.wait(10), output.decode()
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_terminal_display_redraws_one_line_per_model(deck, fake):
    fake.allow_pull("tty-a:1", QUICK)
    fake.allow_pull("tty-b:1", QUICK)
    code, screen = run_in_terminal(deck, "pull", "tty-a:1", "tty-b:1", columns=70)
    assert code == 0, screen
    assert "\x1b[2A" in screen  # the block of two lines is redrawn in place
    assert "━" in screen and "%" in screen  # a bar and its percent
    final = screen.rsplit("\x1b[2A", 1)[1]
    shown = [ANSI.sub("", line).strip("\r") for line in final.split("\n")]
    shown = [line for line in shown if line]
    assert re.match(r"tty-a:1 +succeeded  1\.0 MB in \d+s$", shown[0]), shown
    assert re.match(r"tty-b:1 +succeeded  1\.0 MB in \d+s$", shown[1]), shown
    lines = [ANSI.sub("", line) for line in re.split(r"[\r\n]", screen)]
    assert max(len(line) for line in lines) < 70, "a line wrapped"
    assert "\x1b[32m" in screen  # success in green


def test_update_says_what_changed(deck, fake):
    fake.add_model("fresh:1")
    fake.add_model("stale:1")
    fake.publish_update("stale:1")
    result = run(deck, "update", "fresh:1", "stale:1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result.stdout, "fresh:1")[-1] == "fresh:1  succeeded  already current"
    assert re.fullmatch(
        r"stale:1  succeeded  updated [0-9a-f]{12} -> [0-9a-f]{12}",
        lines_of(result.stdout, "stale:1")[-1],
    )


def test_logs_follow_prints_new_lines_to_the_end(deck, fake, running):
    fake.allow_pull("logged:1", PullScript(layers=[1_000_000], step=50_000, hold_after=3))
    assert run(deck, "pull", "--detach", "logged:1").returncode == 0
    follow = Running(deck, "logs", "-f", "logged:1")
    running.append(follow)
    wait_until(lambda: any("pull of logged:1 queued" in line for line in follow.out), timeout=30)
    fake.release("logged:1")
    assert follow.wait() == 0, follow.err
    texts = [line.split("  ", 1)[1] for line in follow.out]
    assert texts[-2:] == ["success", "pulled"]
    assert len(texts) == len(set(texts)), "a line came twice"
