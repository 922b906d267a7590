"""README.md's curl examples, run top to bottom against ``ollama-deck serve`` and the demo
fake Ollama (``python -m ollama_deck.testing --demo``), so they cannot drift from the code.

How the examples are found and checked (keep to this when you add one):

- The examples are the fenced ``sh`` blocks under the heading "## Use it from curl" (up to
  the next "## " heading), in order. In them, each line that starts with ``curl`` is a
  command; a trailing backslash continues it on the next line. Other lines (a ``while``
  loop, a pipe into jq) are shown to readers, not run: keep every command a single curl.
- A command runs once, as written (no shell; its own ``# comment`` is dropped), with
  ``localhost:8000`` pointed at the test's deck. It must exit 0 and answer 2xx.
  ``curl -N`` follows an event stream: it runs for at most ``STREAM_SECONDS`` and must print
  an event stream (a stream that does not end by then is cut, curl's exit status 28).
- ``# ...`` lines right under a command show its answer: JSON in which ``…`` stands for what
  is left out (a value, a whole list or object, the rest of an object or list, part of a
  string). Every key shown must be in the answer with the value shown (other keys are not
  checked); list items are matched in order, and a list that does not end with ``…`` must
  have just those items. Write ``…`` for whatever varies between runs.
- Hex digits followed by ``…`` (``3f1c…``) are a placeholder for an id: the first answer
  that shows it says what it stands for; later commands and answers use that value. Give
  different ids different placeholders.
- A command whose own comment starts with ``# once`` (``# once it has ended:``) is repeated
  until its answer matches what is shown (for at most ``ONCE_SECONDS``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import pytest

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .processes import FakeOllamaProcess

pytestmark = pytest.mark.gunicorn

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Use it from curl"
DOCUMENTED_ADDRESS = "localhost:8000"
STREAM_SECONDS = 3
ONCE_SECONDS = 60
CURL_TIMED_OUT = 28
STATUS_MARK = "\n--http-status:"
PLACEHOLDER = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{4,}…")
ELLIPSIS = "…"


@dataclass
class Example:
    """One command of the README, with the answer it shows (JSON text, or '')."""

    line: int  # in README.md, for failure messages
    args: list[str]
    shown: str = ""
    once: bool = False
    follows_stream: bool = field(init=False)

    def __post_init__(self) -> None:
        self.follows_stream = "-N" in self.args


def examples(text: str) -> list[Example]:
    """The commands of the curl section of ``text`` (README.md), in order."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    first_line = text[:start].count("\n") + 1
    found: list[Example] = []
    in_block = False
    command = ""  # a command being read (continued lines)
    answer_follows = False  # "# ..." lines now belong to the last command
    for number, raw in enumerate(section.split("\n"), start=first_line):
        line = raw.strip()
        if line.startswith("```"):
            in_block = line == "```sh" if not in_block else False
            answer_follows = False
            continue
        if not in_block:
            continue
        if command or line.startswith("curl "):
            command = f"{command} {line}" if command else line
            if command.endswith("\\"):
                command = command[:-1].rstrip()
                continue
            own_comment = command.partition(" # ")[2].strip()
            args = shlex.split(command, comments=True)
            found.append(Example(line=number, args=args, once=own_comment.startswith("once")))
            command = ""
            answer_follows = True
        elif line.startswith("#") and answer_follows:
            found[-1].shown += " " + line[1:].strip()
        else:
            answer_follows = False
    return found


REST = "…rest"  # in a list: more items may follow


def loose_json(shown: str) -> Any:
    """The JSON a comment shows, with its ``…`` made JSON: "…" (anything) where it stands
    for a value or a whole list or object, a REST item where it ends a list, nothing where
    it ends an object (keys not shown are never checked)."""
    text = re.sub(r",\s*…\s*}", "}", shown)
    text = re.sub(r",\s*…\s*]", f', "{REST}"]', text)
    text = re.sub(r"(?<=[:\[,])\s*(\[…\]|{…}|…)", ' "…"', text)
    return json.loads(text)


class Run:
    """What the examples have run so far: the placeholders' values."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.values: dict[str, str] = {}

    def command(self, example: Example) -> list[str]:
        args = [
            self.substitute(arg, example).replace(DOCUMENTED_ADDRESS, self.address)
            for arg in example.args
        ]
        args += ["--write-out", STATUS_MARK + "%{http_code}"]
        if example.follows_stream:
            args += ["--max-time", str(STREAM_SECONDS)]
        return args

    def substitute(self, text: str, example: Example) -> str:
        def value(match: re.Match[str]) -> str:
            placeholder = match.group(0)
            if placeholder not in self.values:
                raise AssertionError(
                    f"README.md line {example.line}: {placeholder} is used before an answer "
                    "showed what it stands for"
                )
            return self.values[placeholder]

        return PLACEHOLDER.sub(value, text)

    def run(self, example: Example) -> tuple[int, str]:
        """Run ``example``'s command; its HTTP status and what it printed."""
        result = subprocess.run(
            self.command(example), capture_output=True, text=True, timeout=STREAM_SECONDS + 30
        )
        allowed = (0, CURL_TIMED_OUT) if example.follows_stream else (0,)
        assert result.returncode in allowed, (
            f"README.md line {example.line}: curl exited with {result.returncode}: {result.stderr}"
        )
        body, _, status = result.stdout.rpartition(STATUS_MARK)
        if not status:  # cut before --write-out printed: the headers had come, it streams
            body, status = result.stdout, "200"
        return int(status), body

    def mismatch(self, shown: Any, answer: Any, path: str = "") -> str | None:
        """Where ``answer`` differs from what the README shows, or None; binds placeholders
        the first time they are met (only when the whole answer matches)."""
        bound: dict[str, str] = {}
        problem = self._compare(shown, answer, path or "answer", bound)
        if problem is None:
            self.values.update(bound)
        return problem

    def _compare(self, shown: Any, answer: Any, path: str, bound: dict[str, str]) -> str | None:
        if shown == ELLIPSIS:
            return None
        if isinstance(shown, dict):
            if not isinstance(answer, dict):
                return f"{path} is {answer!r}, not an object"
            for key, value in shown.items():
                if key not in answer:
                    return f"{path} has no {key!r} (keys: {sorted(answer)})"
                problem = self._compare(value, answer[key], f"{path}.{key}", bound)
                if problem:
                    return problem
            return None
        if isinstance(shown, list):
            more = bool(shown) and shown[-1] == REST
            if more:
                shown = shown[:-1]
            if not isinstance(answer, list) or len(answer) < len(shown):
                return f"{path} is {answer!r}, not a list of at least {len(shown)} items"
            if not more and len(answer) != len(shown):
                return f"{path} has {len(answer)} items, the README shows {len(shown)}"
            for index, value in enumerate(shown):
                problem = self._compare(value, answer[index], f"{path}[{index}]", bound)
                if problem:
                    return problem
            return None
        if isinstance(shown, str) and ELLIPSIS in shown:
            return self._compare_text(shown, answer, path, bound)
        if shown != answer or type(shown) is not type(answer) and not _both_numbers(shown, answer):
            return f"{path} is {answer!r}, the README shows {shown!r}"
        return None

    def _compare_text(
        self, shown: str, answer: Any, path: str, bound: dict[str, str]
    ) -> str | None:
        if not isinstance(answer, str):
            return f"{path} is {answer!r}, not text"
        known = {**self.values, **bound}
        pattern = ""
        names: list[str] = []
        for piece in re.split(f"({PLACEHOLDER.pattern})", shown):
            if PLACEHOLDER.fullmatch(piece):
                if piece in known:
                    pattern += re.escape(known[piece])
                else:
                    pattern += f"(?P<p{len(names)}>.+?)"
                    names.append(piece)
            else:
                pattern += ".*".join(re.escape(part) for part in piece.split(ELLIPSIS))
        match = re.fullmatch(pattern, answer)
        if match is None:
            return f"{path} is {answer!r}, the README shows {shown!r}"
        for index, name in enumerate(names):
            bound[name] = match.group(f"p{index}")
        return None


def _both_numbers(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return all(isinstance(x, numbers) and not isinstance(x, bool) for x in (a, b))


@pytest.fixture
def served_demo(tmp_path) -> Iterator[ServerProcess]:
    """``ollama-deck serve`` against the demo fake Ollama, with a clean environment."""
    fake = FakeOllamaProcess("--demo").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_DECK_", "OLLAMA_"))}
    port = free_port()
    command = deck_command(
        "serve",
        "--port",
        str(port),
        "--ollama",
        fake.url,
        "--database-url",
        f"sqlite:///{tmp_path / 'deck.db'}",
    )
    try:
        with ServerProcess(command, port=port, env=env, log=tmp_path / "serve.log") as server:
            yield server
    finally:
        fake.kill()


def test_the_extraction_finds_every_example():
    """The rule above finds the commands a reader sees: a guard against a README edit
    that silently takes examples out of the test (a new fence, a renamed heading)."""
    found = examples(README.read_text())
    assert len(found) >= 20
    assert all(example.args[0] == "curl" for example in found)
    assert any(example.once for example in found)
    assert sum(1 for example in found if example.follows_stream) >= 4
    # The delete of a model comes last: every example before it may use that model.
    assert found[-1].args[-1].endswith("/api/models/qwen2.5-coder:1.5b")


def test_the_curl_examples_run_as_written(served_demo):
    run = Run(served_demo.url.removeprefix("http://"))
    for example in examples(README.read_text()):
        deadline = time.monotonic() + (ONCE_SECONDS if example.once else 0)
        while True:
            status, body = run.run(example)
            assert 200 <= status < 300, (
                f"README.md line {example.line}: answered {status}: {body[:300]}"
            )
            if example.follows_stream:
                assert body.startswith("retry:") or "event:" in body, body[:300]
            problem = None
            if example.shown:
                problem = run.mismatch(loose_json(example.shown), json.loads(body))
            if problem is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert problem is None, f"README.md line {example.line}: {problem}"
