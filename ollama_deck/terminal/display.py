"""How followed operations are shown: a live block on a terminal, plain lines elsewhere,
or NDJSON events.

Every display keeps one row per operation it hears of, in order of arrival: the ones it
was asked to follow, and any other an event names (an operation's children, once
operations have them). Rows of pulls the deck refused show the refusal.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import IO

import click

from ..client import DeckAPIError
from ..client import dumps
from ..client import Event
from ..lifecycle import FINAL
from ..lifecycle import Kind
from ..lifecycle import Status
from ..lifecycle import WAITING
from ..schemas import Operation
from ..schemas import OperationState
from . import text

REDRAW_SECONDS = 0.1  # the live block is redrawn at most this often
BAR_WIDTH = 24
COLORS = {
    Status.SUCCEEDED: "green",
    Status.FAILED: "red",
    Status.CANCELLED: "yellow",
    Status.INTERRUPTED: "yellow",
}


@dataclass
class Row:
    """One operation (or a pull refused before it started) as the display knows it."""

    model: str  # what the row is called (text.label)
    state: OperationState | None = None
    refusal: str | None = None
    child: bool = False  # an operation of a group the display follows

    @property
    def final(self) -> bool:
        return self.refusal is not None or (self.state is not None and self.state.status in FINAL)


class Display:
    """Rows of operations; subclasses draw them. Methods are called from one thread."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out = out
        self.err = err
        self.rows: dict[str, Row] = {}
        self.groups = False  # it follows a group: other operations' events are its children

    def follow(self, op: Operation) -> None:
        """An operation to show from now on (its current state)."""
        self._row(op.id, text.label(op)).state = op
        self.groups = self.groups or op.kind == Kind.GROUP
        self.changed(op.id)

    def refused(self, model: str, error: DeckAPIError) -> None:
        """A pull the deck would not start."""
        self.rows[f"refused:{model}"] = Row(model, refusal=error.message)
        self.changed(f"refused:{model}")

    def event(self, event: Event) -> None:
        if isinstance(event.data, OperationState):
            # An operation not followed, on a group's stream: one of the group's children.
            child = self.groups and event.data.id not in self.rows
            row = self._row(event.data.id, text.label(event.data, child=child))
            row.child = row.child or child
            row.state = event.data
            self.changed(event.data.id)

    def trouble(self, message: str | None) -> None:
        """The connection to the deck was lost (``message``), or is back (None)."""

    def tick(self) -> None:
        """Called a few times a second while nothing arrives."""

    def close(self) -> None:
        """The end (or an interrupt): show the last state of every row."""

    def changed(self, key: str) -> None:
        """Row ``key`` has a new state."""

    def _row(self, key: str, model: str) -> Row:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row(model)
        return row

    def width(self) -> int:
        return min(40, max([len(r.model) + 2 * r.child for r in self.rows.values()] + [8]))


def final_words(row: Row) -> str:
    """``succeeded  2.0 GB in 28s``, ``failed: <why>``, ``refused: <why>``."""
    if row.refusal is not None:
        return f"refused: {row.refusal}"
    assert row.state is not None
    return text.final_line(row.state)


class PlainDisplay(Display):
    """Lines a log file can hold: one per change of stage and per 10 %, not per event."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        super().__init__(out, err)
        self._said: dict[str, tuple[str, int]] = {}  # row -> (stage, tenth) last printed
        self._trouble: str | None = None

    def changed(self, key: str) -> None:
        row = self.rows[key]
        if row.final:
            line = final_words(row)
            stage, tenth = "final", 10
        else:
            state = row.state
            assert state is not None
            stage = text.stage(state)
            tenth = text.percent(state) // 10 if state.total_bytes else 0
            line = f"{stage}  {text.summary(state)}" if state.total_bytes else stage
            if state.status in WAITING and state.message:  # "starts at 01:00", why paused
                line = f"{stage}  {state.message}"
        last = self._said.get(key)
        if last is not None and last[0] == stage and tenth <= last[1]:
            return
        self._said[key] = (stage, tenth)
        self.out.write(f"{row.model}  {line}\n")
        self.out.flush()

    def trouble(self, message: str | None) -> None:
        if message != self._trouble:
            self._trouble = message
            said = f"lost the deck: {message}; reconnecting" if message else "reconnected"
            self.err.write(f"ollama-deck: {said}\n")
            self.err.flush()


class LiveDisplay(Display):
    """A block of one line per operation, redrawn in place (ANSI, on a terminal)."""

    def __init__(self, out: IO[str], err: IO[str], *, color: bool = True) -> None:
        super().__init__(out, err)
        self.color = color
        self._drawn = 0
        self._dirty = False
        self._last = 0.0
        self._trouble: str | None = None
        try:
            "━─".encode(getattr(out, "encoding", None) or "ascii")
            self._bar = ("━", "─")
        except (UnicodeEncodeError, LookupError):
            self._bar = ("#", "-")

    def changed(self, key: str) -> None:
        self._dirty = True
        if self.rows[key].final or time.monotonic() - self._last >= REDRAW_SECONDS:
            self.draw()

    def trouble(self, message: str | None) -> None:
        self._trouble = message
        self.draw()

    def tick(self) -> None:
        if self._dirty:
            self.draw()

    def close(self) -> None:
        self._trouble = None
        self.draw()

    def draw(self) -> None:
        columns = shutil.get_terminal_size((100, 24)).columns
        lines = [self._line(row, columns - 1) for row in self.rows.values()]
        if self._trouble:
            note = f"lost the deck: {self._trouble}; reconnecting (Ctrl-C detaches)"
            lines.append(self._paint(note[: columns - 1], "yellow"))
        up = f"\r\x1b[{self._drawn}A" if self._drawn else "\r"
        body = "".join(f"\x1b[2K{line}\n" for line in lines)
        # Clear to the end of the screen: a shorter block, or a "^C" the terminal echoed.
        self.out.write(f"{up}{body}\x1b[J")
        self.out.flush()
        self._drawn = len(lines)
        self._dirty = False
        self._last = time.monotonic()

    def _line(self, row: Row, columns: int) -> str:
        name = (f"  {row.model}" if row.child else row.model).ljust(self.width())
        state = row.state
        if row.final:
            status = state.status if state is not None else Status.FAILED
            return self._paint(f"{name}  {final_words(row)}"[:columns], COLORS.get(status))
        if state is None or state.status in (Status.QUEUED, Status.SCHEDULED):
            said = state.message if state is not None and state.message else ""
            status = state.status if state is not None else Status.QUEUED
            return f"{name}  {status}  {said}".rstrip()[:columns]
        figures = text.summary(state) if state.total_bytes else ""
        plain = f"{name}  {self._bar_of(state)}  {figures}  {text.stage(state)}"
        return plain[:columns]

    def _bar_of(self, state: OperationState) -> str:
        filled = int(BAR_WIDTH * text.percent(state) / 100)
        done, left = self._bar
        return done * filled + left * (BAR_WIDTH - filled)

    def _paint(self, line: str, color: str | None) -> str:
        return click.style(line, fg=color) if self.color and color else line


class JsonDisplay(Display):
    """Each event as one JSON line (NDJSON) on stdout; anything else on stderr."""

    def refused(self, model: str, error: DeckAPIError) -> None:
        super().refused(model, error)
        refusal = {"code": error.code, "message": error.message, "status": error.status}
        self._write({"event": "error", "id": None, "data": {"model": model, "error": refusal}})
        self.err.write(f"ollama-deck: {model} refused: {error.message}\n")
        self.err.flush()

    def event(self, event: Event) -> None:
        super().event(event)
        self._write(event.to_json())

    def trouble(self, message: str | None) -> None:
        said = f"lost the deck: {message}; reconnecting" if message else "reconnected"
        self.err.write(f"ollama-deck: {said}\n")
        self.err.flush()

    def _write(self, document: dict) -> None:
        self.out.write(dumps(document) + "\n")
        self.out.flush()


def display_for(
    json_lines: bool, out: IO[str] | None = None, err: IO[str] | None = None
) -> Display:
    """NDJSON with ``--json``; a live block on a terminal; plain lines on anything else."""
    out = out or sys.stdout
    err = err or sys.stderr
    if json_lines:
        return JsonDisplay(out, err)
    if out.isatty() and os.environ.get("TERM") != "dumb":
        return LiveDisplay(out, err, color="NO_COLOR" not in os.environ)
    return PlainDisplay(out, err)
