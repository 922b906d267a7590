"""The background work of operators' features, in each serving process: send the webhook
deliveries that are due, add this process's observations to /metrics' tallies, and forget
old deliveries and activity as the keep settings say.

One thread (a greenlet under gevent) per process, never a request: it sleeps until the
next flush, the next delivery due, or a wake-up from this process's own store (a change
that wrote deliveries). At most ``max_sending`` deliveries are on their way at once per
process, each in a thread of its own, each bounded by the sender's timeouts; a lease
longer than the worst of those keeps other processes off the ones it sends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from . import tally
from .activity import ActivityLog
from .memory import StreamMemory
from .metrics import Observations
from .runner import process_gone
from .runner import runner_identity
from .sender import WebhookSender
from .webhooks import Outbox

log = logging.getLogger(__name__)
PURGE_INTERVAL = 600.0  # as the runner's purge of finished operations


@dataclass(frozen=True)
class UpkeepSettings:
    interval: float = 5.0  # seconds between flushes (and polls for due deliveries)
    keep_seconds: float = 7 * 24 * 3600.0
    keep_count: int = 1000
    max_sending: int = 4
    lease: float = 85.0  # longer than a send can take (sender.worst_case_seconds)
    watcher_stale: float = 30.0  # a process's watcher count older than this is not counted


def holder_gone(holder: str) -> bool:
    """Whether the process that claimed a delivery is a process of this machine that no
    longer exists (ids are host:pid:random, as the runner's): its lease need not pass."""
    parts = holder.rsplit(":", 2)
    hostname, pid = runner_identity()
    if len(parts) != 3 or parts[0] != hostname or not parts[1].isdigit():
        return False
    return int(parts[1]) != pid and process_gone(int(parts[1]))


class Upkeep:
    """Runs in one background thread of a serving process; ``start`` and ``close``."""

    def __init__(
        self,
        *,
        engine: Engine,
        outbox: Outbox,
        sender: WebhookSender,
        observations: Observations,
        activity: ActivityLog,
        process_id: str,
        watchers: Callable[[], int],
        settings: UpkeepSettings,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.sender = sender
        self.observations = observations
        self.activity = activity
        self.process_id = process_id
        self.watchers = watchers
        self.settings = settings
        self.stream_memory = StreamMemory()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sending: set[threading.Thread] = set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="ollama-deck-upkeep", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.outbox.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.observations.flush(self.engine, self.process_id, 0, self.settings.watcher_stale)
        except SQLAlchemyError as exc:  # stopping with the database (or its tables) gone
            log.warning("ollama-deck: the last metrics were not written: %s", first_line(exc))
        self.sender.close()

    # -- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        interval = self.settings.interval
        next_flush = 0.0
        next_purge = time.monotonic() + interval  # not at once: starting is busy enough
        while not self._stopping.is_set():
            wait = interval
            try:
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + interval
                    watching = self.watchers()
                    self.stream_memory.check(watching)
                    self.observations.flush(
                        self.engine,
                        self.process_id,
                        watching,
                        self.settings.watcher_stale,
                    )
                if self.outbox.settings.enabled:
                    wait = min(wait, self._send_due())
                if now >= next_purge:
                    next_purge = now + PURGE_INTERVAL
                    self._purge()
                wait = max(0.05, min(wait, next_flush - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - keep going through a database hiccup
                if isinstance(exc, DATABASE_ERRORS):
                    log.warning("ollama-deck upkeep: %s; retrying", first_line(exc))
                else:
                    log.exception("ollama-deck upkeep failed; retrying")
            if self._stopping.is_set():
                return
            self.outbox.wait(wait)

    def _send_due(self) -> float:
        """Start sending what is due while slots are free; seconds until the next is due."""
        with self._lock:
            self._sending = {t for t in self._sending if t.is_alive()}
            free = self.settings.max_sending - len(self._sending)
        if free > 0:
            claimed = self.outbox.claim(self.process_id, free, self.settings.lease, holder_gone)
            for row in claimed:
                thread = threading.Thread(
                    target=self._send, args=(row,), name="ollama-deck-webhook", daemon=True
                )
                with self._lock:
                    self._sending.add(thread)
                thread.start()
        due = self.outbox.next_due()
        if due is None:
            return self.settings.interval
        return max(0.0, due - time.time())

    def _send(self, row: dict[str, Any]) -> None:
        """One attempt of one delivery, and its record. A record that cannot be written
        leaves the delivery claimed: once the lease passes it is sent again (same id)."""
        try:
            if row["url"] not in self.outbox.settings.urls:
                self.outbox.failed(
                    row,
                    status_code=None,
                    error="its URL is not configured any more (OLLAMA_DECK_WEBHOOK_URLS)",
                    final=True,
                )
                return
            attempt = self.sender.send(row["url"], row["id"], row["event"], row["body"].encode())
            if attempt.ok:
                self.outbox.delivered(row["id"], attempt.status or 0)
            else:
                self.outbox.failed(
                    row,
                    status_code=attempt.status,
                    error=attempt.error or "failed",
                    final=attempt.final,
                    retry_after=attempt.retry_after,
                )
        except DATABASE_ERRORS as exc:
            log.warning("could not record webhook delivery %s: %s", row["id"], first_line(exc))
        except Exception:  # noqa: BLE001 - one delivery must not end the others
            log.exception("webhook delivery %s failed", row["id"])
        finally:
            self.outbox.wake()  # a slot is free: look for more at once

    def _purge(self) -> None:
        keep_seconds, keep = self.settings.keep_seconds, self.settings.keep_count
        before = time.time() - keep_seconds
        self.outbox.purge(before, keep=keep)
        self.activity.purge(before, keep=keep)
        with self.engine.begin() as conn:  # processes gone for a day or more
            tally.forget_older(conn, tally.SSE_WATCHERS, time.time() - 86400)
