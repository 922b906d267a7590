"""One operation run by this process: pull, load or update, from claim to final write.

A job turns Ollama's lines into state with ``PullProgress`` and writes only when it matters
(a whole percent moved, a new status line, a second passed, the end), so writes per pull
stay bounded however many lines Ollama sends. It knows nothing of threads: the runner
(``services/runner.py``) runs it in one, or in the calling thread when draining.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import OllamaUnavailable
from ..lifecycle import Kind
from ..lifecycle import Phase
from ..lifecycle import STALLABLE
from ..lifecycle import Status
from . import modelcache
from .backoff import Backoff
from .ollama import OllamaClient
from .ollama import Stream
from .progress import PullProgress
from .store import OperationStore
from .updates import installed_digest
from .updates import update_message

log = logging.getLogger(__name__)

# A running pull writes when Ollama says something new (a status line), else when the
# whole percent moved and PERCENT_INTERVAL passed, else every IDLE_INTERVAL. That is at
# most 4 progress writes (and SSE events) a second, however fast lines come.
PERCENT_INTERVAL = 0.25
IDLE_INTERVAL = 1.0
# Waits for an unreachable Ollama double from 1 s up to this.
MAX_WAIT_INTERVAL = 30.0
# The final write is retried from this delay, doubling up to FINISH_RETRY_CAP.
FINISH_RETRY_START = 0.1
FINISH_RETRY_CAP = 5.0


class Cancelled(Exception):
    """A user cancelled the operation, or this process is shutting down."""

    def __init__(self, tracker: PullProgress | None = None) -> None:
        super().__init__(Status.CANCELLED)
        self.tracker = tracker


class OperationFailed(Exception):
    """The operation cannot succeed; ``message`` is what the user reads."""

    def __init__(self, message: str, error: str, tracker: PullProgress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error
        self.tracker = tracker


class OwnershipLost(Exception):
    """Another runner took the operation over (ours was thought dead)."""


@dataclass
class JobSettings:
    """What a job needs of the runner's settings."""

    keep_alive: str = "30m"  # how long Ollama keeps a model loaded by a load operation
    stall_notice_seconds: float = 5.0
    ollama_wait_seconds: float = 300.0  # a pull waits this long for an unreachable Ollama
    finish_retry_seconds: float = 60.0  # the final write is retried this long


@dataclass
class Job:
    """This process's handle on one claimed operation: its cancel flag, open stream and
    write throttling, and the code that runs it."""

    row: dict[str, Any]
    store: OperationStore
    runner_id: str
    client: OllamaClient | None  # the client of the operation's host (None: not configured)
    settings: JobSettings
    stopping: threading.Event  # set when the process shuts down
    clock: Callable[[], float] = time.monotonic
    cancel: threading.Event = field(default_factory=threading.Event)
    stream: Stream | None = None
    tracker: PullProgress | None = None  # while a pull streams: seen by the stall check
    # Log lines a failed write could not record: they go with the next write.
    pending_logs: list[str] = field(default_factory=list)
    # (completed bytes, status) last seen by the stall check, and since when.
    progress_mark: tuple[int, str | None] = (-1, None)
    progress_since: float = 0.0
    stall_shown: int = 0  # whole seconds of stall the row shows now

    @property
    def op_id(self) -> str:
        return str(self.row["id"])

    def attach(self, stream: Stream) -> None:
        """Remember the open stream; abort it at once if a stop came first."""
        self.stream = stream
        if self.cancel.is_set():
            stream.abort()

    def stop(self) -> None:
        self.cancel.set()
        stream = self.stream
        if stream is not None:
            stream.abort()

    def take_logs(self, logs: list[str]) -> list[str]:
        """Lines still to record: those a failed write left, then ``logs``."""
        if not self.pending_logs:
            return logs
        pending, self.pending_logs = self.pending_logs + logs, []
        return pending

    # -- running ----------------------------------------------------------------------

    def run(self) -> bool:
        """Run the operation to its end and record it; True if Ollama now has the model."""
        row = self.row
        try:
            if self.client is None:
                message = f"the Ollama host {row['host']} is not configured any more"
                raise OperationFailed(message, message, None)
            if row["kind"] == Kind.LOAD:
                tracker, done = self._load(self.client), "loaded"
            elif row["kind"] == Kind.UPDATE:
                tracker, done = self._update(self.client)
            else:
                tracker, done = self._pull(self.client), "pulled"
        except OperationFailed as failure:
            self.finish(
                Status.FAILED, failure.message, error=failure.error, tracker=failure.tracker
            )
        except Cancelled as stop:
            if not (self.stopping.is_set() and self.release()):
                self.finish(Status.CANCELLED, Status.CANCELLED, tracker=stop.tracker)
        except OwnershipLost:
            log.warning("operation %s was taken over by another runner", self.op_id)
        except Exception as exc:  # noqa: BLE001 - anything else must still end the operation
            if isinstance(exc, DeckError):
                message = exc.message
            else:
                log.exception("operation %s crashed", self.op_id)
                message = f"internal error: {exc}"
            self.finish(Status.FAILED, message, error=message)
        else:
            self.finish(Status.SUCCEEDED, done, tracker=tracker)
            return True
        return False

    def refresh_models(self) -> None:
        """Cache Ollama's list after a pull, so the list shown while Ollama is down has it."""
        if self.client is None:
            return
        try:
            modelcache.remember(self.store.engine, self.row["host"], self.client.tags())
        except DeckError as exc:
            log.warning("could not refresh the model list: %s", exc.message)
        except Exception as exc:  # noqa: BLE001 - a cache: it must not crash the runner thread
            log.warning("could not store the model list: %s", first_line(exc))

    def _pull(self, client: OllamaClient) -> PullProgress:
        """Stream Ollama's pull into the operation; the tracker once Ollama said success.

        While Ollama cannot be reached, before the stream or in its middle (a restart), the
        pull waits for it with backoff and then opens the stream again: Ollama resumes from
        the partial blobs it kept, and the percent never goes back.
        """
        row = self.row
        model, host = row["model"], row["host"]
        tracker = PullProgress(self.clock(), floor_percent=row["percent"] or 0.0)
        attempt = row["attempts"]
        start_note = f"pulling {model} from {self.store.host_names.get(host, host)} ({host})"
        if attempt > 1:
            start_note += f" (attempt {attempt}, resuming)"
        self.write(tracker, [start_note], message="connecting to Ollama")
        outage: Backoff | None = None  # while Ollama is unreachable: how long we still wait
        completed_then = -1  # bytes when it was last lost: more since means a new outage
        while True:
            try:
                self._stream_pull(client, model, tracker)
                break
            except OllamaUnavailable as exc:
                if tracker.succeeded:  # lost after Ollama said success: nothing is missing
                    break
                if tracker.completed > completed_then:
                    outage = None
                outage = self._wait_for_ollama(exc, tracker, outage)
                completed_then = tracker.completed
        if self.cancel.is_set():
            raise Cancelled(tracker)
        if tracker.error is not None:
            raise OperationFailed(f"Ollama: {tracker.error}", tracker.error, tracker)
        if not tracker.succeeded:
            message = "the pull stream ended before Ollama reported success"
            raise OperationFailed(message, message, tracker)
        return tracker

    def _stream_pull(self, client: OllamaClient, model: str, tracker: PullProgress) -> None:
        """Open Ollama's pull stream and feed it to ``tracker`` until it ends (or says an
        error), writing when it matters; OllamaUnavailable when Ollama cannot be reached or
        the connection is lost."""
        clock = self.clock
        last_write = clock()
        last_percent = -1
        feed, is_cancelled = tracker.feed, self.cancel.is_set
        with self._watched(tracker), client.pull(model) as lines:
            self.attach(lines)
            self.tracker = tracker
            for line in lines:
                if is_cancelled():
                    raise Cancelled(tracker)
                if feed(line):  # a new status line or an error: always worth a write
                    if tracker.error is not None:
                        return
                    self.write(tracker, [tracker.status] if tracker.status else [])
                    last_write, last_percent = clock(), tracker.whole_percent()
                    continue
                since = clock() - last_write
                if since >= IDLE_INTERVAL or (
                    since >= PERCENT_INTERVAL and tracker.whole_percent() != last_percent
                ):
                    self.write(tracker, [])
                    last_write, last_percent = clock(), tracker.whole_percent()

    def _update(self, client: OllamaClient) -> tuple[PullProgress, str]:
        """Pull an installed model again; the message says whether its digest changed."""
        model = self.row["model"]
        before = installed_digest(client, model)
        tracker = self._pull(client)
        return tracker, update_message(before, installed_digest(client, model))

    def _wait_for_ollama(
        self, lost: OllamaUnavailable, tracker: PullProgress, outage: Backoff | None
    ) -> Backoff:
        """Wait before trying Ollama again, with the backoff of this outage (a new one for
        None); ``lost`` again once ``ollama_wait_seconds`` have passed, Cancelled on a
        cancel or a shutdown."""
        if self.cancel.is_set():
            raise Cancelled(tracker)
        if outage is None:
            outage = Backoff(
                1.0,
                cap=MAX_WAIT_INTERVAL,
                seconds=self.settings.ollama_wait_seconds,
                clock=self.clock,
            )
        first = outage.tries == 0
        wait = outage.next()
        if wait is None:
            raise lost
        note = [f"{lost.message}; waiting for it"] if first else []
        message = f"waiting for Ollama: not reachable; next try in {wait:.0f} s"
        self.write(tracker, note, message=message)
        if self.cancel.wait(wait):
            raise Cancelled(tracker)
        return outage

    def _load(self, client: OllamaClient) -> PullProgress:
        """Pull the model if it is missing, then have Ollama load it into memory."""
        model = self.row["model"]
        try:
            client.show(model)
            tracker = PullProgress(self.clock())
            note = f"{model} is installed"
        except ModelNotFound:
            tracker = self._pull(client)
            note = f"{model} pulled"
        tracker.phase = Phase.LOADING
        self.tracker = None  # loading sends no bytes: not a stall
        keep_alive = self.settings.keep_alive
        self.write(
            tracker,
            [f"{note}; loading it into memory (keep-alive {keep_alive})"],
            message="loading into memory",
        )
        started = self.clock()
        with self._watched(tracker), client.generate(model, keep_alive=keep_alive) as lines:
            self.attach(lines)
            for line in lines:
                if self.cancel.is_set():
                    raise Cancelled(tracker)
                if line.get("error"):
                    error = str(line["error"])
                    raise OperationFailed(f"Ollama: {error}", error, tracker)
        tracker.complete()
        elapsed = self.clock() - started
        self.write(tracker, [f"loaded in {elapsed:.1f} s"], message="loaded")
        return tracker

    @contextmanager
    def _watched(self, tracker: PullProgress) -> Iterator[None]:
        """A stream broken because we aborted it is a cancel, not an Ollama failure."""
        try:
            yield
        except DeckError:
            if self.cancel.is_set():
                raise Cancelled(tracker) from None
            raise
        finally:
            self.stream = None
            self.tracker = None

    # -- writes -----------------------------------------------------------------------

    def write(
        self, tracker: PullProgress, logs: list[str], *, message: str | None = None
    ) -> dict[str, Any] | None:
        """Record the pull's state; a database fault keeps the log lines for the next write.

        The pull goes on through a database fault: its state lives in the tracker, and the
        next write (or the final one, which is retried) records it.
        """
        snap = tracker.snapshot(self.clock())
        lines = self.take_logs(logs)
        try:
            row = self.store.record_progress(
                self.op_id, self.runner_id, snap, lines, message=message
            )
        except DATABASE_ERRORS as exc:
            self.pending_logs = lines[-self.store.log_lines :]
            log.warning("could not record progress of %s: %s", self.op_id, first_line(exc))
            return None
        if row is None:
            raise OwnershipLost(self.op_id)
        self.stall_shown = 0
        return row

    def finish(
        self,
        status: Status,
        message: str,
        *,
        error: str | None = None,
        tracker: PullProgress | None = None,
    ) -> None:
        """Record the end, retrying with backoff while the database fails.

        If it keeps failing, the row is left as it is: once this job is gone no heartbeat
        covers it, so recovery (here or in another process) takes it over.
        """
        snap = tracker.snapshot(self.clock()) if tracker is not None else None
        lines = self.take_logs([message])
        backoff = Backoff(
            FINISH_RETRY_START,
            cap=FINISH_RETRY_CAP,
            seconds=self.settings.finish_retry_seconds,
            clock=self.clock,
        )
        while True:
            try:
                self.store.finish(
                    self.op_id, self.runner_id, status, message, lines, error=error, snap=snap
                )
                return
            except DATABASE_ERRORS as exc:
                wait = backoff.next()
                if wait is None or self.stopping.is_set():
                    log.error(
                        "could not record the end of %s (%s); left for recovery",
                        self.op_id,
                        first_line(exc),
                    )
                    return
                log.warning("could not record the end of %s; retrying", self.op_id)
                self.stopping.wait(wait)

    def release(self) -> bool:
        """Hand the operation back to the queue on shutdown, unless a user asked to cancel it.

        True also when the database fails: the next start recovers the row then.
        """
        note = "the service stopped; queued to resume"
        try:
            return self.store.release(self.op_id, self.runner_id, note=note) is not None
        except DATABASE_ERRORS:
            return True

    def show_stall(self, now: float) -> None:
        """Write speed 0, no ETA and "stalled for N s" if the pull got no bytes lately.

        Called by the runner's maintenance: the job's own thread cannot, it is blocked
        reading a silent stream.
        """
        tracker = self.tracker
        if tracker is None or tracker.phase not in STALLABLE:
            return
        mark = (tracker.completed, tracker.status)
        if mark != self.progress_mark:
            self.progress_mark, self.progress_since = mark, now
            return
        stalled = int(now - self.progress_since)
        if stalled < self.settings.stall_notice_seconds or stalled == self.stall_shown:
            return
        note = [] if self.stall_shown else ["stalled: Ollama sends no data"]
        if self.store.mark_stalled(self.op_id, self.runner_id, stalled, note) is not None:
            self.stall_shown = stalled
