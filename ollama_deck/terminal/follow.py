"""Following operations to their end: one watch per operation, each in a thread that hands
its events to the calling thread, which draws them and is the one Ctrl-C interrupts."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

from ..client import DeckAPIError
from ..client import DeckClient
from ..client import DEFAULT_PATIENCE
from ..client import Event
from ..schemas import Operation
from ..schemas import OperationState
from .display import Display

TICK_SECONDS = 0.25  # the display is called this often while nothing arrives


@dataclass(frozen=True)
class _Trouble:
    op_id: str
    error: DeckAPIError


@dataclass(frozen=True)
class _Lost:
    op_id: str
    error: DeckAPIError


@dataclass
class Outcome:
    """How the followed operations ended: their final states, and the ones that could not
    be followed to the end (the deck stayed away, or forgot them)."""

    finals: dict[str, OperationState] = field(default_factory=dict)
    lost: dict[str, DeckAPIError] = field(default_factory=dict)


def follow(
    client: DeckClient,
    operations: Iterable[Operation],
    display: Display,
    *,
    patience: float | None = DEFAULT_PATIENCE,
) -> Outcome:
    """Show ``operations`` on ``display`` until each has ended; KeyboardInterrupt passes
    through (the watches are daemon threads: they end with the process)."""
    inbox: queue.Queue[Event | _Trouble | _Lost] = queue.Queue()
    pending: set[str] = set()
    for op in operations:
        if op.id in pending:
            continue  # the same operation named twice (a pull joined)
        pending.add(op.id)
        display.follow(op)
        thread = threading.Thread(
            target=_pump,
            args=(client, op.id, inbox, patience),
            name=f"ollama-deck-watch-{op.id[:8]}",
            daemon=True,
        )
        thread.start()
    outcome = Outcome()
    troubled: set[str] = set()
    while pending:
        try:
            item = inbox.get(timeout=TICK_SECONDS)
        except queue.Empty:
            display.tick()
            continue
        if isinstance(item, _Trouble):
            troubled.add(item.op_id)
            display.trouble(item.error.message)
            continue
        if isinstance(item, _Lost):
            outcome.lost[item.op_id] = item.error
            pending.discard(item.op_id)
            continue
        op_id = item.data.id if isinstance(item.data, OperationState) else item.data.operation_id
        if op_id in troubled:
            troubled.discard(op_id)
            if not troubled:
                display.trouble(None)
        display.event(item)
        if item.final and isinstance(item.data, OperationState) and op_id in pending:
            outcome.finals[op_id] = item.data
            pending.discard(op_id)
    return outcome


def _pump(
    client: DeckClient,
    op_id: str,
    inbox: queue.Queue[Event | _Trouble | _Lost],
    patience: float | None,
) -> None:
    def retrying(error: DeckAPIError) -> None:
        inbox.put(_Trouble(op_id, error))

    try:
        for event in client.watch(op_id, patience=patience, on_retry=retrying):
            inbox.put(event)
    except DeckAPIError as exc:
        inbox.put(_Lost(op_id, exc))
    except Exception as exc:  # never leave the drawing thread waiting for this one
        inbox.put(_Lost(op_id, DeckAPIError(f"{type(exc).__name__}: {exc}", code="client")))
