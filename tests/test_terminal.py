"""The terminal commands' parts without a deck: figures, the plain and live displays, and
finding an operation by id, id prefix or model. The commands against a served deck are in
test_terminal_served.py."""

from __future__ import annotations

import io
import re

import pytest
from click.testing import CliRunner

from ollama_deck.cli import cli
from ollama_deck.client import DeckAPIError
from ollama_deck.client import Event
from ollama_deck.schemas import OperationState
from ollama_deck.terminal import text
from ollama_deck.terminal.display import JsonDisplay
from ollama_deck.terminal.display import LiveDisplay
from ollama_deck.terminal.display import PlainDisplay

from .test_client import operation

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def state(status: str = "running", **fields) -> OperationState:
    return OperationState.model_validate(operation(status, **fields))


@pytest.mark.parametrize(
    ("count", "shown"),
    [(None, "?"), (0, "0 B"), (999, "999 B"), (1_429, "1.4 kB"), (840_000_000, "840 MB"),
     (2_019_393_189, "2.0 GB"), (12_500_000_000, "12 GB")],
)  # fmt: skip
def test_sizes_read_as_ollama_shows_them(count, shown):
    assert text.size(count) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, ""), (0.4, "0s"), (45, "45s"), (245, "4m05s"), (3720, "1h02m"), (277_200, "3d05h")],
)
def test_durations(seconds, shown):
    assert text.duration(seconds) == shown


def test_percent_shows_100_only_once_it_succeeded():
    assert text.percent(state(percent=99.7)) == 99
    assert text.percent(state("succeeded", percent=100.0)) == 100


def test_final_lines():
    took = {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:28Z"}
    assert text.final_line(state("succeeded", total_bytes=2_000_000_000, **took)) == (
        "succeeded  2.0 GB in 28s"
    )
    failed = state("failed", error="pull model manifest: file does not exist")
    assert text.final_line(failed) == "failed: pull model manifest: file does not exist"
    current = state("succeeded", result={"status": "current"})
    assert text.final_line(current) == "succeeded  already current"


def progress(percent: float, phase: str = "downloading", seq: int = 0, **fields) -> Event:
    data = state(percent=percent, phase=phase, seq=seq, completed_bytes=int(percent * 10))
    return Event(seq, "progress", data.model_copy(update=fields))


def test_the_plain_display_prints_a_line_per_stage_and_per_tenth_not_per_event():
    out, err = io.StringIO(), io.StringIO()
    display = PlainDisplay(out, err)
    display.event(progress(0, phase=None))
    for seq, percent in enumerate([0.5, 3, 9.9, 10, 10.5, 19, 25, 25.1, 99, 99.9], 1):
        display.event(progress(percent, seq=seq))
    display.event(progress(99.9, phase="verifying", seq=20))
    display.event(Event(21, "done", state("succeeded", percent=100.0, total_bytes=1000)))
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines] == [
        "starting",
        "downloading",  # 0.5 %: the stage changed
        "downloading",  # 10 %
        "downloading",  # 25 %
        "downloading",  # 99 %
        "verifying",
        "succeeded",
    ]
    assert lines[2] == "llama3.2:1b  downloading  10%  100 B/1.0 kB  100 B/s  ETA 6s"
    assert lines[-1] == "llama3.2:1b  succeeded  1.0 kB"


def test_the_plain_display_says_a_lost_deck_once():
    out, err = io.StringIO(), io.StringIO()
    display = PlainDisplay(out, err)
    display.trouble("connection refused")
    display.trouble("connection refused")
    display.trouble(None)
    assert err.getvalue().splitlines() == [
        "ollama-deck: lost the deck: connection refused; reconnecting",
        "ollama-deck: reconnected",
    ]


def test_the_live_display_redraws_its_block_in_place(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    display = LiveDisplay(out, io.StringIO(), color=False)
    other = state(seq=1).model_copy(update={"id": "other", "model": "qwen2.5:7b"})
    display.event(Event(1, "progress", other))
    display.event(progress(40, seq=2))
    display.event(Event(3, "done", state("failed", error="x" * 200)))
    display.close()
    screen = out.getvalue()
    assert "\x1b[2A" in screen  # back up over the two lines drawn
    last = screen.rsplit("\r\x1b[2A", 1)[1]
    lines = [ANSI.sub("", line) for line in last.split("\n") if ANSI.sub("", line)]
    assert lines[0].startswith("qwen2.5:7b   ") and "40%" in lines[0]
    assert lines[1].startswith("llama3.2:1b  failed: xxx")
    assert all(len(line) <= 59 for line in lines), lines  # never wraps


def test_the_live_display_draws_a_block_with_a_bar():
    out = io.StringIO()
    display = LiveDisplay(out, io.StringIO(), color=False)
    display.event(progress(50, seq=1))
    assert "############------------  50%  500 B/1.0 kB" in out.getvalue()


def test_json_lines_are_the_events():
    out = io.StringIO()
    display = JsonDisplay(out, io.StringIO())
    display.event(progress(40, seq=7))
    display.refused("bad name", DeckAPIError("no such thing", code="invalid_model_name"))
    first, second = out.getvalue().splitlines()
    assert first.startswith('{"event":"progress","id":7,"data":{"id":')
    assert second == (
        '{"event":"error","id":null,"data":{"model":"bad name","error":{"code":'
        '"invalid_model_name","message":"no such thing","status":null}}}'
    )


def test_client_commands_are_in_the_group_and_say_where_the_deck_is():
    result = CliRunner().invoke(cli, ["--help"])
    for name in ("pull", "attach", "ps", "logs", "cancel", "ls", "rm", "update", "serve"):
        assert f"\n  {name} " in result.output
    shown = CliRunner().invoke(cli, ["pull", "--help"])
    assert "OLLAMA_DECK_URL" in shown.output and "OLLAMA_DECK_TOKEN" in shown.output


def test_an_unreachable_deck_is_one_line_and_exit_3(monkeypatch):
    from .helpers import free_port

    monkeypatch.delenv("OLLAMA_DECK_TOKEN", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["ps"], ["pull", "m:1"], ["attach", "m:1"], ["ls"], ["rm", "m:1"]):
        result = CliRunner().invoke(cli, [*args, "--url", url])
        assert result.exit_code == 3, (args, result.output)
        assert result.output == (
            f"ollama-deck: cannot reach the deck at {url}: connection refused (is the deck "
            "running? ollama-deck serve) (set --url or OLLAMA_DECK_URL)\n"
        )
