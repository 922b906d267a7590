"""One operation run by this process: pull, load, update or delete, from claim to final
write.

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
from contextlib import ExitStack
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any
from typing import Protocol

from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import OllamaTimeout
from ..errors import OllamaUnavailable
from ..lifecycle import Hold
from ..lifecycle import Kind
from ..lifecycle import Phase
from ..lifecycle import STALLABLE
from ..lifecycle import Status
from . import modelcache
from .backoff import Backoff
from .names import check_registry
from .names import parse_model_name
from .ollama import OllamaClient
from .ollama import Stream
from .progress import Flow
from .progress import FlowWatch
from .progress import human_bytes
from .progress import PullProgress
from .progress import Verdict
from .settings import ACTIVE_MODEL
from .settings import SettingStore
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


class Stalled(Exception):
    """The pull stream brought no new bytes (or too few) for a whole period: reopen it."""

    def __init__(self, text: str, verdict: Verdict | None = None) -> None:
        super().__init__(text)
        self.text = text  # what the log says, e.g. "stalled: no new bytes for 60 s"
        self.crawled = verdict is not None and verdict.flow == Flow.CRAWLING


class Schedule(Protocol):
    """A host's download window as a job reads it (runner.HostSchedule)."""

    def closes_at(self, now: float) -> float | None: ...

    def opens_at(self, now: float) -> float: ...

    def describe(self, host_name: str, moment: float, now: float) -> str: ...


def stalled_message(seconds: int) -> str:
    """What a pull without new bytes says (the page reads the number from it)."""
    return f"stalled: no data from Ollama for {seconds} s"


@dataclass
class JobSettings:
    """What a job needs of the runner's settings."""

    keep_alive: str = "30m"  # how long Ollama keeps a model loaded by a load operation
    stall_notice_seconds: float = 5.0
    ollama_wait_seconds: float = 300.0  # a pull waits this long for an unreachable Ollama
    finish_retry_seconds: float = 60.0  # the final write is retried this long
    # Registries besides the default ones that pulls may fetch from (names.check_registry).
    allowed_registries: tuple[str, ...] = ()
    # No new bytes for this long (or fewer than crawl_bytes a second over it): reopen the
    # stream, up to pull_retries times in a row.
    stall_retry_seconds: float = 60.0
    crawl_bytes: float = 0.0
    pull_retries: int = 3


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
    wall: Callable[[], float] = time.time  # for the download window
    schedule: Schedule | None = None  # its host's download window (None: not windowed)
    # Set (with ``cancel``) when the stream is closed to pause, not to end: by whom.
    hold: Hold | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    stream: Stream | None = None
    tracker: PullProgress | None = None  # while a pull streams: seen by the stall check
    # Log lines a failed write could not record: they go with the next write.
    pending_logs: list[str] = field(default_factory=list)
    # (completed bytes, status) last seen by the stall check, and since when.
    progress_mark: tuple[int, str | None] = (-1, None)
    progress_since: float = 0.0
    stall_shown: int = 0  # whole seconds of stall the row shows now
    watch: FlowWatch | None = None  # the open pull stream's flow (the job thread's own)
    retries: int = 0  # streams reopened in a row for a stall or a crawl

    @property
    def op_id(self) -> str:
        return str(self.row["id"])

    def attach(self, stream: Stream) -> None:
        """Remember the open stream; abort it at once if a stop came first."""
        self.stream = stream
        if self.cancel.is_set():
            stream.abort()

    def stop(self) -> None:
        """Close the stream to end the operation (a cancel; on shutdown, a hand-back)."""
        self.hold = None  # a cancel wins over a pause
        self._close()

    def pause(self, hold: Hold) -> None:
        """Close the stream to pause the operation: by a user, or by its window."""
        if self.cancel.is_set() and self.hold is None:
            return  # a cancel came first
        if self.hold != Hold.USER:  # the user's pause outlasts the window's
            self.hold = hold
        self._close()

    def _close(self) -> None:
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
        """Run the operation to its end and record it; True if it changed what Ollama has
        (then the runner refreshes the cached model list)."""
        row = self.row
        try:
            if self.client is None:
                message = f"the Ollama host {row['host']} is not configured any more"
                raise OperationFailed(message, message, None)
            if row["kind"] == Kind.LOAD:
                tracker, done = self._load(self.client), "loaded"
            elif row["kind"] == Kind.UPDATE:
                tracker, done = self._update(self.client)
            elif row["kind"] == Kind.DELETE:
                tracker, done = self._delete(self.client)
            else:
                tracker, done = self._pull(self.client), "pulled"
        except OperationFailed as failure:
            self.finish(
                Status.FAILED, failure.message, error=failure.error, tracker=failure.tracker
            )
        except Cancelled as stop:
            self.settle_stop(stop.tracker)
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

        A stream that stalls or crawls is closed and opened again (Ollama resumes from its
        partial files), up to ``pull_retries`` times in a row; one tracker spans them all,
        so the percent never goes back. While Ollama cannot be reached, before the stream
        or in its middle (a restart), the pull waits for it with backoff, up to
        ``ollama_wait_seconds`` an outage, and then opens the stream again.
        """
        row = self.row
        host = row["host"]
        # Checked when it was submitted too; again here for operations recorded before
        # the registry rule (or its setting) changed, which recovery would resume.
        check_registry(parse_model_name(row["model"]), self.settings.allowed_registries)
        tracker = PullProgress(self.clock(), floor_percent=row["percent"] or 0.0)
        note = f"pulling {row['model']} from {self.store.host_names.get(host, host)} ({host})"
        if row["attempts"] > 1:
            note += f" (attempt {row['attempts']}, resuming)"
        limit = self.settings.pull_retries
        self.retries = 0
        outage = self._outage()  # the wait left for an unreachable Ollama
        completed_then = tracker.completed  # bytes when it was last lost: more, a new outage
        while True:
            try:
                self._stream_pull(client, tracker, note, outage)
                break
            except Stalled as stall:
                if self.retries >= limit:
                    tried = f"; {limit} retries did not help" if limit else ""
                    message = f"{stall.text}{tried}; pull it again to resume"
                    raise OperationFailed(message, message, tracker) from None
                self.retries += 1
                note = (
                    f"{stall.text}; closing the stream and opening it again "
                    f"(retry {self.retries} of {limit}; Ollama resumes its partial download)"
                )
            except OllamaUnavailable as lost:
                # Not reachable, or the stream broke (Ollama restarting): wait for it as a
                # queued pull does, then open the stream again.
                if tracker.succeeded:  # lost after Ollama said success: nothing is missing
                    break
                if tracker.completed > completed_then:
                    outage = self._outage()
                completed_then = tracker.completed
                self._wait_for_ollama(lost, tracker, outage)
                note = "opening the stream again (Ollama resumes its partial download)"
        if self.cancel.is_set():
            raise Cancelled(tracker)
        if tracker.error is not None:
            raise OperationFailed(f"Ollama: {tracker.error}", tracker.error, tracker)
        if not tracker.succeeded:
            message = "the pull stream ended before Ollama reported success"
            raise OperationFailed(message, message, tracker)
        return tracker

    def _stream_pull(
        self, client: OllamaClient, tracker: PullProgress, note: str, outage: Backoff
    ) -> None:
        """One stream of Ollama's pull, fed into ``tracker`` until it ends; Stalled when it
        brought no new bytes (or too few) for a period, or nothing at all (a read timeout)
        while downloading; Cancelled (with ``hold`` set) when the window closed;
        OllamaUnavailable when Ollama stayed unreachable through ``outage`` or the
        connection broke."""
        clock = self.clock
        self._check_window(tracker)
        message = "connecting to Ollama" if self.retries == 0 else "reopening the stream"
        self.write(tracker, [note], message=message)
        last_write = clock()
        last_percent = -1
        feed, is_cancelled = tracker.feed, self.cancel.is_set
        period = self.settings.stall_retry_seconds
        check_every = min(IDLE_INTERVAL, period / 4)
        try:
            with self._watched(tracker), ExitStack() as stack:
                lines = self._open_pull(client, self.row["model"], tracker, stack, outage)
                self.attach(lines)
                self.tracker = tracker
                watch = FlowWatch(period, self.settings.crawl_bytes, clock(), tracker.completed)
                self.watch = watch
                next_check = clock() + check_every
                for line in lines:
                    if is_cancelled():
                        raise Cancelled(tracker)
                    if feed(line):  # a new status line or an error: always worth a write
                        if tracker.error is not None:
                            break
                        self.write(tracker, [tracker.status] if tracker.status else [])
                        last_write, last_percent = clock(), tracker.whole_percent()
                        continue
                    now = clock()
                    since = now - last_write
                    if since >= IDLE_INTERVAL or (
                        since >= PERCENT_INTERVAL and tracker.whole_percent() != last_percent
                    ):
                        self.write(tracker, [])
                        last_write, last_percent = now, tracker.whole_percent()
                    if now >= next_check:  # a few times a period, not per line
                        next_check = now + check_every
                        self._check_flow(tracker, watch, now)
                        self._check_window(tracker)
        except OllamaTimeout as exc:
            if tracker.phase not in STALLABLE or self.cancel.is_set():
                raise
            silent = self.store.host_names.get(self.row["host"], "Ollama")
            raise Stalled(f"stalled: {silent} sent nothing ({exc.message})") from None
        finally:
            self.watch = None

    def _check_flow(self, tracker: PullProgress, watch: FlowWatch, now: float) -> None:
        """Raise Stalled when the period just judged brought no new bytes, or too few."""
        verdict = watch.observe(now, tracker.completed, expecting=tracker.phase in STALLABLE)
        if verdict is None:
            return
        if verdict.flow == Flow.HEALTHY:
            self.retries = 0  # the last reopening worked
        elif verdict.flow == Flow.STALLED:
            raise Stalled(f"stalled: no new bytes for {verdict.seconds:.0f} s", verdict)
        else:
            limit = human_bytes(self.settings.crawl_bytes)
            raise Stalled(
                f"crawled: {human_bytes(verdict.rate)}/s over {verdict.seconds:.0f} s, under "
                f"the {limit}/s of OLLAMA_DECK_PULL_CRAWL_BYTES",
                verdict,
            )

    def _check_window(self, tracker: PullProgress) -> None:
        """Pause (Cancelled with ``hold`` WINDOW) when the host's window is closed now."""
        if self.schedule is None:
            return
        now = self.wall()
        closes = self.schedule.closes_at(now)
        if closes is not None and closes > now:
            return
        self.pause(Hold.WINDOW)
        raise Cancelled(tracker)

    def _update(self, client: OllamaClient) -> tuple[PullProgress, str]:
        """Pull an installed model again; the message says whether its digest changed."""
        model = self.row["model"]
        before = installed_digest(client, model)
        tracker = self._pull(client)
        return tracker, update_message(before, installed_digest(client, model))

    def _delete(self, client: OllamaClient) -> tuple[PullProgress, str]:
        """Delete the model from Ollama: one quick call. A model that is not there is as
        the delete wanted it, so that is a success too (``not installed``)."""
        model = self.row["model"]
        try:
            client.delete(model)
            done = "deleted"
        except ModelNotFound:
            done = "not installed"
        # The active model is chosen by name: one that was deleted is chosen no more.
        SettingStore(self.store.engine).clear_if(ACTIVE_MODEL, model)
        tracker = PullProgress(self.clock())
        tracker.complete()
        return tracker, done

    def _outage(self) -> Backoff:
        """The waits for an unreachable Ollama, from now: up to ``ollama_wait_seconds``."""
        return Backoff(
            1.0, cap=MAX_WAIT_INTERVAL, seconds=self.settings.ollama_wait_seconds, clock=self.clock
        )

    def _open_pull(
        self,
        client: OllamaClient,
        model: str,
        tracker: PullProgress,
        stack: ExitStack,
        outage: Backoff,
    ) -> Stream:
        """Open Ollama's pull stream; while Ollama is not reachable, wait with ``outage``."""
        while True:
            try:
                return stack.enter_context(client.pull(model))
            except OllamaUnavailable as exc:
                self._wait_for_ollama(exc, tracker, outage)

    def _wait_for_ollama(
        self, lost: OllamaUnavailable, tracker: PullProgress, outage: Backoff
    ) -> None:
        """Wait before trying Ollama again, with the backoff of this outage; ``lost``
        again once ``ollama_wait_seconds`` have passed, Cancelled on a cancel or a
        shutdown."""
        if self.cancel.is_set():
            raise Cancelled(tracker)
        first = outage.tries == 0
        wait = outage.next()
        if wait is None:
            raise lost
        note = [f"{lost.message}; waiting for it"] if first else []
        message = f"waiting for Ollama: not reachable; next try in {wait:.0f} s"
        self.write(tracker, note, message=message)
        if self.cancel.wait(wait):
            raise Cancelled(tracker)

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
        now = self.clock()
        snap = tracker.snapshot(now)
        if not snap.total_bytes and self.row["total_bytes"]:
            # A resumed pull before Ollama's first byte line: keep the bytes it had.
            snap = replace(
                snap,
                completed_bytes=self.row["completed_bytes"],
                total_bytes=self.row["total_bytes"],
            )
        watch = self.watch
        if message is None and watch is not None and tracker.phase in STALLABLE:
            # Ollama still sends lines, but no bytes: say so, as show_stall does for silence.
            still = int(watch.still_for(now))
            if still >= self.settings.stall_notice_seconds:
                message = stalled_message(still)
                snap = replace(snap, speed=0.0, eta_seconds=None)
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
        # What other processes asked, seen at once instead of at the next heartbeat.
        if row["cancel_requested"]:
            self.stop()
        elif row["paused_by"] is not None:
            self.pause(Hold(row["paused_by"]))
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

    def settle_stop(self, tracker: PullProgress | None) -> None:
        """Record why the stream was closed on purpose: paused (by a user or the window),
        handed back to the queue on shutdown, or cancelled."""
        if self.stopping.is_set():
            if self.release():
                return
            # Not handed back: a pause or a cancel was asked through the database meanwhile.
            try:
                row = self.store.get(self.op_id)
            except DATABASE_ERRORS:
                return  # left running: recovery ends, pauses or resumes it
            if row is not None and row["paused_by"] is not None:
                if self.pause_row(Hold(row["paused_by"]), tracker):
                    return
        elif self.hold is not None and self.pause_row(self.hold, tracker):
            return
        self.finish(Status.CANCELLED, Status.CANCELLED, tracker=tracker)

    def pause_row(self, hold: Hold, tracker: PullProgress | None) -> bool:
        """running -> paused, its stream closed; False when a cancel was asked meanwhile
        (or another runner holds it)."""
        now = self.wall()
        snap = tracker.snapshot(self.clock()) if tracker is not None else None
        starts_at = None
        if hold == Hold.WINDOW and self.schedule is not None:
            starts_at = self.schedule.opens_at(now)
            host = self.row["host"]
            name = self.store.host_names.get(host, host)
            reason = self.schedule.describe(name, starts_at, now).replace("starts", "resumes")
            message = f"paused: {reason}"
            note = f"paused by the download window: {reason}"
        else:
            message = "paused (Ollama keeps the partial download)"
            note = "paused: the stream from Ollama is closed; Ollama keeps the partial download"
        lines = self.take_logs([note])
        try:
            row = self.store.pause_running(
                self.op_id,
                self.runner_id,
                hold,
                message,
                lines,
                at=now,
                starts_at=starts_at,
                snap=snap,
            )
        except DATABASE_ERRORS as exc:
            # Left running with no job: recovery pauses it (a user's pause is in the row)
            # or queues it again (a window's: the queue waits for the window anyway).
            log.warning("could not record the pause of %s: %s", self.op_id, first_line(exc))
            return True
        return row is not None

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
