"""Start, run, cancel and recover operations in background threads.

The database is the truth: a runner owns an operation only while its row says so
(``runner_id``) and its heartbeat is fresh, so several processes can share one database
and none loses work when another dies. Each pull thread turns Ollama's lines into state
with ``PullProgress`` and writes only when it matters (a whole percent moved, a new
status line, a second passed, the end), so writes per pull stay bounded however many
lines Ollama sends.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from contextlib import ExitStack
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from ..config import DeckSettings
from ..db import FINAL_STATUSES
from ..db import Operation
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import Conflict
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import NotFound
from ..errors import OllamaUnavailable
from . import modelcache
from .names import parse_model_name
from .ollama import OllamaClient
from .ollama import Stream
from .progress import PullProgress
from .store import OperationStore
from .updates import installed_digest
from .updates import update_message

log = logging.getLogger(__name__)
OP = Operation.__table__

# A running pull writes when Ollama says something new (a status line), else when the
# whole percent moved and PERCENT_INTERVAL passed, else every IDLE_INTERVAL. That is at
# most 4 progress writes (and SSE events) a second, however fast lines come.
PERCENT_INTERVAL = 0.25
IDLE_INTERVAL = 1.0
# Waits for an unreachable Ollama double from 1 s up to this.
MAX_WAIT_INTERVAL = 30.0
# Finished operations older than the keep time are looked for this often (seconds).
PURGE_INTERVAL = 600.0
# Phases in which a pull expects bytes; silence there is a stall.
STALLABLE_PHASES = (None, "manifest", "downloading")


class Cancelled(Exception):
    """A user cancelled the operation, or this process is shutting down."""

    def __init__(self, tracker: PullProgress | None = None) -> None:
        super().__init__("cancelled")
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
class Job:
    """This process's handle on a running operation: its cancel flag and open stream."""

    cancel: threading.Event = field(default_factory=threading.Event)
    stream: Stream | None = None
    tracker: PullProgress | None = None  # while a pull streams: seen by the stall check
    # Log lines a failed write could not record: they go with the next write.
    pending_logs: list[str] = field(default_factory=list)
    # (completed bytes, status) last seen by the stall check, and since when.
    progress_mark: tuple[int, str | None] = (-1, None)
    progress_since: float = 0.0
    stall_shown: int = 0  # whole seconds of stall the row shows now
    client: Any = None  # the OllamaClient of the operation's host

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


@dataclass
class RunnerSettings:
    host: str
    max_concurrent: int = 2
    heartbeat_seconds: float = 5.0
    stale_seconds: float = 30.0
    keep_finished_seconds: float = 7 * 24 * 3600.0
    keep_finished_count: int = 1000
    max_queued: int = 100
    on_restart: str = "resume"  # or "interrupt"
    keep_alive: str = "30m"  # how long Ollama keeps a model loaded by a load operation
    stall_notice_seconds: float = 5.0
    ollama_wait_seconds: float = 300.0  # a pull waits this long for an unreachable Ollama
    finish_retry_seconds: float = 60.0  # the final write is retried this long

    @classmethod
    def from_settings(cls, host: str, settings: DeckSettings) -> RunnerSettings:
        """The runner's part of the deck's settings (checked when the deck started)."""
        return cls(
            host=host,
            max_concurrent=settings.max_concurrent_pulls,
            heartbeat_seconds=settings.heartbeat_seconds,
            stale_seconds=settings.stale_seconds,
            keep_finished_seconds=settings.keep_finished_hours * 3600,
            keep_finished_count=settings.keep_finished_count,
            max_queued=settings.max_queued,
            on_restart=settings.on_restart,
            keep_alive=settings.keep_alive,
            stall_notice_seconds=settings.stall_notice_seconds,
            ollama_wait_seconds=settings.ollama_wait_seconds,
        )


def runner_identity() -> tuple[str, int]:
    """This machine's name and this process's id, as they appear in runner ids."""
    return socket.gethostname(), os.getpid()


def process_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class Runner:
    """Runs this process's share of operations; one per app."""

    def __init__(
        self,
        store: OperationStore,
        client: OllamaClient,
        settings: RunnerSettings,
        *,
        clients: Mapping[str, OllamaClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.client = client  # the default host's
        # Ollama URL -> client; operations name their host by URL.
        self.clients: dict[str, OllamaClient] = dict(clients or {settings.host: client})
        self.settings = settings
        self.clock = clock
        hostname, pid = runner_identity()
        # host:pid:random. The pid lets a process on the same host see at once that the
        # runner is gone; the random part tells apart runners of one process (tests).
        self.runner_id = f"{hostname}:{pid}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        # Held from claiming an operation until its job is registered, so the orphan
        # check never mistakes an operation being started for one nobody runs.
        self._dispatch_lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()
        self._started = False  # no pull thread before start(): see dispatch()
        self._maintenance: threading.Thread | None = None

    # -- public ---------------------------------------------------------------------

    def start(self) -> None:
        """Recover what a vanished runner left, then keep heartbeats and the queue going."""
        if self._maintenance is not None:
            return
        self._started = True
        try:
            self.recover()
            self.dispatch()
        except DATABASE_ERRORS as exc:  # the maintenance thread tries again
            log.warning("ollama-deck could not recover at start: %s", first_line(exc))
        self._maintenance = threading.Thread(
            target=self._maintain, name="ollama-deck-maintenance", daemon=True
        )
        self._maintenance.start()

    def submit(self, kind: str, model: str, host: str | None = None) -> tuple[dict[str, Any], bool]:
        """Start (or join) an operation for ``model`` on ``host`` (an Ollama URL of the
        configuration; default: the first); returns the row and whether it is new.

        QueueFull (429) when ``max_queued`` operations wait already.
        """
        name = parse_model_name(model)
        row, created = self.store.create_or_join(
            kind=kind,
            model=name.display,
            model_key=name.key,
            host=host or self.settings.host,
            max_queued=self.settings.max_queued,
        )
        if not created and row["kind"] != kind:
            raise Conflict(
                f"a {row['kind']} of {name.display} is already {row['status']}; "
                "wait for it to finish or cancel it"
            )
        if created:
            # Accepted and recorded: from here a database fault must not turn the answer
            # into an error, as the maintenance thread starts it anyway.
            try:
                self.dispatch()
                row = self.store.get(row["id"]) or row
            except DATABASE_ERRORS as exc:
                log.warning("dispatch after submit failed: %s", first_line(exc))
        return row, created

    def cancel(self, op_id: str) -> dict[str, Any]:
        """Cancel a queued or running operation; returns its row as it is now.

        An operation that no live runner holds is ended here and now.
        """
        fields = {"status": "cancelled", "finished_at": time.time(), "message": "cancelled"}
        row = self.store.update(
            op_id, fields, ["cancelled before it started"], where=[OP.c.status == "queued"]
        )
        if row is not None:
            return row
        row = self.store.get(op_id)
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if row["status"] in FINAL_STATUSES:
            raise Conflict(f"operation {op_id} already {row['status']}")
        orphan = self._orphan_condition(row)
        if orphan is not None:
            fields = dict(fields, speed=None, eta_seconds=None)
            note = "cancelled (no runner held it)"
            where = [OP.c.status == "running", orphan]
            ended = self.store.update(op_id, fields, [note], where=where)
            if ended is not None:
                return ended
        requested = self.store.update(
            op_id,
            {"cancel_requested": True, "message": "cancelling"},
            ["cancel requested"],
            where=[OP.c.status == "running", OP.c.cancel_requested.is_(False)],
        )
        if requested is None:
            row = self.store.get(op_id) or row
            if row["status"] == "queued":  # recovered into the queue meanwhile
                return self.cancel(op_id)
        else:
            row = requested
        self._flag_cancel(op_id)
        return row

    def wait_finished(self, op_id: str, timeout: float) -> bool:
        """Wait for this process's thread of ``op_id`` to end; True if it did or none runs here."""
        with self._lock:
            thread = self._threads.get(op_id)
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def dispatch(self) -> None:
        """Start queued operations while fewer than the limit run.

        Only once started: a process that merely registered the deck (a CLI command, a
        shell, the reloader's parent) leaves queued work to a runner that serves.
        """
        while self._started and not self._stopping.is_set():
            with self._dispatch_lock:
                row = self.store.claim_next_queued(self.runner_id, self.settings.max_concurrent)
                if row is None:
                    return
                self._start_thread(row)

    def recover(self) -> list[str]:
        """Take over operations nobody runs: re-queue or interrupt them, or end them as
        cancelled when a cancel was asked for.

        Nobody runs an operation whose runner stopped beating, whose runner was a process of
        this machine that is gone (taken over at once, without waiting for the stale
        timeout), or that this runner holds without a live job (its final write failed).
        """
        taken = []
        for row in self.store.running():
            orphan = self._orphan_condition(row)
            if orphan is None:
                continue
            if row["cancel_requested"]:
                fields = {
                    "status": "cancelled",
                    "finished_at": time.time(),
                    "message": "cancelled",
                    "speed": None,
                    "eta_seconds": None,
                }
                note = "its runner stopped; cancelled as requested"
            elif self.settings.on_restart == "interrupt":
                fields = {
                    "status": "interrupted",
                    "finished_at": time.time(),
                    "message": "interrupted: the service stopped during the operation",
                    "speed": None,
                    "eta_seconds": None,
                }
                note = "interrupted: its runner stopped; pull it again to resume"
            else:
                fields = {
                    "status": "queued",
                    "runner_id": None,
                    "message": "resuming",
                    "speed": None,
                    "eta_seconds": None,
                }
                note = "its runner stopped; queued to resume (Ollama keeps partial downloads)"
            where = [OP.c.status == "running", orphan]
            if self.store.update(row["id"], fields, [note], where=where) is not None:
                taken.append(row["id"])
        return taken

    def shutdown(self, *, timeout: float = 5.0) -> None:
        """Stop taking work; running pulls go back to `queued` for the next process."""
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
            threads = list(self._threads.values())
        for job in jobs:
            job.stop()
        for thread in threads:
            thread.join(timeout)
        if self._maintenance is not None:
            self._maintenance.join(timeout)

    # -- ownership ------------------------------------------------------------------

    def _orphan_condition(self, row: dict[str, Any]) -> Any | None:
        """A condition that holds while ``row`` (running) stays unowned, or None if a live
        runner may hold it. The condition guards the takeover against a race."""
        runner_id = row["runner_id"]
        if runner_id == self.runner_id:
            # Ours: alive exactly while our job is, even if a database fault kept its
            # heartbeat from being written.
            with self._dispatch_lock, self._lock:
                if row["id"] in self._jobs:
                    return None
            return OP.c.runner_id == runner_id
        cutoff = time.time() - self.settings.stale_seconds
        if runner_id is None or row["heartbeat_at"] is None or row["heartbeat_at"] < cutoff:
            return (OP.c.heartbeat_at < cutoff) | OP.c.heartbeat_at.is_(None)
        hostname, pid = runner_identity()
        parts = runner_id.rsplit(":", 2)
        if len(parts) == 3 and parts[0] == hostname and parts[1].isdigit():
            other = int(parts[1])
            if other != pid and process_gone(other):
                return OP.c.runner_id == runner_id
        return None

    # -- threads --------------------------------------------------------------------

    def _start_thread(self, row: dict[str, Any]) -> None:
        job = Job(progress_since=self.clock(), client=self.clients.get(row["host"]))
        thread = threading.Thread(
            target=self._run, args=(row, job), name=f"ollama-deck-{row['id'][:8]}", daemon=True
        )
        with self._lock:
            self._jobs[row["id"]] = job
            self._threads[row["id"]] = thread
        thread.start()

    def _flag_cancel(self, op_id: str) -> None:
        with self._lock:
            job = self._jobs.get(op_id)
        if job is not None:
            job.stop()

    def _run(self, row: dict[str, Any], job: Job) -> None:
        op_id = row["id"]
        owned = [OP.c.runner_id == self.runner_id, OP.c.status == "running"]
        pulled = False
        try:
            if job.client is None:
                message = f"the Ollama host {row['host']} is not configured any more"
                raise OperationFailed(message, message, None)
            if row["kind"] == "load":
                tracker, done = self._load(row, job, owned), "loaded"
            elif row["kind"] == "update":
                tracker, done = self._update(row, job, owned)
            else:
                tracker, done = self._pull(row, job, owned), "pulled"
            pulled = True
            self._finish(job, op_id, owned, "succeeded", done, tracker=tracker)
        except OperationFailed as failure:
            self._finish(
                job,
                op_id,
                owned,
                "failed",
                failure.message,
                error=failure.error,
                tracker=failure.tracker,
            )
        except Cancelled as stop:
            if not (self._stopping.is_set() and self._release(op_id, owned)):
                self._finish(job, op_id, owned, "cancelled", "cancelled", tracker=stop.tracker)
        except OwnershipLost:
            log.warning("operation %s was taken over by another runner", op_id)
        except Exception as exc:  # noqa: BLE001 - anything else must still end the operation
            if isinstance(exc, DeckError):
                message = exc.message
            else:
                log.exception("operation %s crashed", op_id)
                message = f"internal error: {exc}"
            self._finish(job, op_id, owned, "failed", message, error=message)
        finally:
            with self._lock:
                self._jobs.pop(op_id, None)
                self._threads.pop(op_id, None)
            if pulled:
                self._refresh_models(row["host"], job.client)
            if not self._stopping.is_set():
                try:
                    self.dispatch()
                except DATABASE_ERRORS as exc:  # the maintenance thread tries again
                    log.warning("dispatch failed: %s", first_line(exc))

    def _refresh_models(self, host: str, client: OllamaClient) -> None:
        """Cache Ollama's list after a pull, so the list shown while Ollama is down has it."""
        try:
            modelcache.remember(self.store.engine, host, client.tags())
        except DeckError as exc:
            log.warning("could not refresh the model list: %s", exc.message)
        except Exception as exc:  # noqa: BLE001 - a cache: it must not crash the runner thread
            log.warning("could not store the model list: %s", first_line(exc))

    def _pull(self, row: dict[str, Any], job: Job, owned: list[Any]) -> PullProgress:
        """Stream Ollama's pull into the operation; the tracker once Ollama said success."""
        op_id, model = row["id"], row["model"]
        clock = self.clock
        tracker = PullProgress(clock(), floor_percent=row["percent"] or 0.0)
        attempt = row["attempts"]
        host = row["host"]
        start_note = f"pulling {model} from {self.store.host_names.get(host, host)} ({host})"
        if attempt > 1:
            start_note += f" (attempt {attempt}, resuming)"
        self._write(job, op_id, owned, tracker, [start_note], message="connecting to Ollama")
        last_write = clock()
        last_percent = -1
        feed, is_cancelled = tracker.feed, job.cancel.is_set
        with self._watched(job, tracker), ExitStack() as stack:
            lines = self._open_pull(job, op_id, model, owned, tracker, stack)
            job.attach(lines)
            job.tracker = tracker
            for line in lines:
                if is_cancelled():
                    raise Cancelled(tracker)
                if feed(line):  # a new status line or an error: always worth a write
                    if tracker.error is not None:
                        break
                    self._write(job, op_id, owned, tracker, [tracker.status])
                    last_write, last_percent = clock(), tracker.whole_percent()
                    continue
                since = clock() - last_write
                if since >= IDLE_INTERVAL or (
                    since >= PERCENT_INTERVAL and tracker.whole_percent() != last_percent
                ):
                    self._write(job, op_id, owned, tracker, [])
                    last_write, last_percent = clock(), tracker.whole_percent()
        if is_cancelled():
            raise Cancelled(tracker)
        if tracker.error is not None:
            raise OperationFailed(f"Ollama: {tracker.error}", tracker.error, tracker)
        if not tracker.succeeded:
            message = "the pull stream ended before Ollama reported success"
            raise OperationFailed(message, message, tracker)
        return tracker

    def _update(self, row: dict[str, Any], job: Job, owned: list[Any]) -> tuple[PullProgress, str]:
        """Pull an installed model again; the message says whether its digest changed."""
        before = installed_digest(job.client, row["model"])
        tracker = self._pull(row, job, owned)
        return tracker, update_message(before, installed_digest(job.client, row["model"]))

    def _open_pull(
        self,
        job: Job,
        op_id: str,
        model: str,
        owned: list[Any],
        tracker: PullProgress,
        stack: ExitStack,
    ) -> Stream:
        """Open Ollama's pull stream; while Ollama is not reachable, wait with backoff."""
        give_up = self.clock() + self.settings.ollama_wait_seconds
        delay = 1.0
        while True:
            try:
                return stack.enter_context(job.client.pull(model))
            except OllamaUnavailable as exc:
                left = give_up - self.clock()
                if left <= 0 or job.cancel.is_set():
                    raise
                wait = min(delay, left)
                note = [] if delay > 1.0 else [f"{exc.message}; waiting for it"]
                message = f"waiting for Ollama: not reachable; next try in {wait:.0f} s"
                self._write(job, op_id, owned, tracker, note, message=message)
                if job.cancel.wait(wait):
                    raise Cancelled(tracker) from None
                delay = min(delay * 2, MAX_WAIT_INTERVAL)

    def _load(self, row: dict[str, Any], job: Job, owned: list[Any]) -> PullProgress:
        """Pull the model if it is missing, then have Ollama load it into memory."""
        op_id, model = row["id"], row["model"]
        try:
            job.client.show(model)
            tracker = PullProgress(self.clock())
            note = f"{model} is installed"
        except ModelNotFound:
            tracker = self._pull(row, job, owned)
            note = f"{model} pulled"
        tracker.phase = "loading"
        job.tracker = None  # loading sends no bytes: not a stall
        keep_alive = self.settings.keep_alive
        self._write(
            job,
            op_id,
            owned,
            tracker,
            [f"{note}; loading it into memory (keep-alive {keep_alive})"],
            message="loading into memory",
        )
        started = self.clock()
        with (
            self._watched(job, tracker),
            job.client.generate(model, keep_alive=keep_alive) as lines,
        ):
            job.attach(lines)
            for line in lines:
                if job.cancel.is_set():
                    raise Cancelled(tracker)
                if line.get("error"):
                    error = str(line["error"])
                    raise OperationFailed(f"Ollama: {error}", error, tracker)
        tracker.complete()
        elapsed = self.clock() - started
        self._write(job, op_id, owned, tracker, [f"loaded in {elapsed:.1f} s"], message="loaded")
        return tracker

    @staticmethod
    @contextmanager
    def _watched(job: Job, tracker: PullProgress) -> Iterator[None]:
        """A stream broken because we aborted it is a cancel, not an Ollama failure."""
        try:
            yield
        except DeckError:
            if job.cancel.is_set():
                raise Cancelled(tracker) from None
            raise
        finally:
            job.stream = None
            job.tracker = None

    def _write(
        self,
        job: Job,
        op_id: str,
        owned: list[Any],
        tracker: PullProgress,
        logs: list[str],
        *,
        message: str | None = None,
    ) -> dict[str, Any] | None:
        """Record the pull's state; a database fault keeps the log lines for the next write.

        The pull goes on through a database fault: its state lives in the tracker, and the
        next write (or the final one, which is retried) records it.
        """
        snap = tracker.snapshot(self.clock())
        fields = {
            "phase": snap.phase,
            "percent": snap.percent,
            "completed_bytes": snap.completed_bytes,
            "total_bytes": snap.total_bytes,
            "speed": snap.speed,
            "eta_seconds": snap.eta_seconds,
            "message": message or snap.message,
            "heartbeat_at": time.time(),
        }
        lines = job.take_logs(logs)
        try:
            row = self.store.update(op_id, fields, lines, where=owned)
        except DATABASE_ERRORS as exc:
            job.pending_logs = lines[-self.store.log_lines :]
            log.warning("could not record progress of %s: %s", op_id, first_line(exc))
            return None
        if row is None:
            raise OwnershipLost(op_id)
        job.stall_shown = 0
        return row

    def _finish(
        self,
        job: Job,
        op_id: str,
        owned: list[Any],
        status: str,
        message: str,
        *,
        error: str | None = None,
        tracker: PullProgress | None = None,
    ) -> None:
        """Record the end, retrying with backoff while the database fails.

        If it keeps failing, the row is left as it is: once this thread is gone no
        heartbeat covers it, so recovery (here or in another process) takes it over.
        """
        fields: dict[str, Any] = {
            "status": status,
            "message": message,
            "error": error,
            "finished_at": time.time(),
            "speed": None,
            "eta_seconds": None if status != "succeeded" else 0.0,
        }
        if tracker is not None:
            snap = tracker.snapshot(self.clock())
            fields.update(
                phase=snap.phase,
                percent=snap.percent,
                completed_bytes=snap.completed_bytes,
                total_bytes=snap.total_bytes,
            )
        lines = job.take_logs([message])
        give_up = self.clock() + self.settings.finish_retry_seconds
        delay = 0.1
        while True:
            try:
                self.store.update(op_id, fields, lines, where=owned)
                return
            except DATABASE_ERRORS as exc:
                if self.clock() + delay > give_up or self._stopping.is_set():
                    log.error(
                        "could not record the end of %s (%s); left for recovery",
                        op_id,
                        first_line(exc),
                    )
                    return
                log.warning("could not record the end of %s; retrying", op_id)
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _release(self, op_id: str, owned: list[Any]) -> bool:
        """Hand a pull back to the queue on shutdown, unless a user asked to cancel it.

        True also when the database fails: the next start recovers the row then.
        """
        fields = {"status": "queued", "runner_id": None, "message": "resuming", "speed": None}
        note = "the service stopped; queued to resume"
        keep = [*owned, OP.c.cancel_requested.is_(False)]
        try:
            return self.store.update(op_id, fields, [note], where=keep) is not None
        except DATABASE_ERRORS:
            return True

    # -- maintenance ----------------------------------------------------------------

    def _maintain(self) -> None:
        """Heartbeat, show stalls, pick up cancels from other processes, recover,
        dispatch, purge."""
        last_purge = 0.0
        while not self._stopping.wait(self.settings.heartbeat_seconds):
            try:
                with self._lock:
                    live = list(self._jobs)
                for op_id in self.store.heartbeat(self.runner_id, live):
                    self._flag_cancel(op_id)
                self._show_stalls()
                self.recover()
                self.dispatch()
                purge_by_age = time.time() - last_purge > PURGE_INTERVAL
                if purge_by_age:
                    last_purge = time.time()
                self.store.purge_finished(
                    time.time() - self.settings.keep_finished_seconds if purge_by_age else None,
                    keep=self.settings.keep_finished_count,
                )
            except Exception as exc:  # noqa: BLE001 - keep beating through a database hiccup
                if isinstance(exc, DATABASE_ERRORS):
                    log.warning("ollama-deck maintenance: %s; retrying", first_line(exc))
                else:
                    log.exception("ollama-deck maintenance failed; retrying")

    def _show_stalls(self) -> None:
        """Write speed 0, no ETA and "stalled for N s" for pulls that got no bytes lately.

        The pull's own thread cannot: it is blocked reading a silent stream.
        """
        now = self.clock()
        with self._lock:
            jobs = list(self._jobs.items())
        for op_id, job in jobs:
            tracker = job.tracker
            if tracker is None or tracker.phase not in STALLABLE_PHASES:
                continue
            mark = (tracker.completed, tracker.status)
            if mark != job.progress_mark:
                job.progress_mark, job.progress_since = mark, now
                continue
            stalled = int(now - job.progress_since)
            if stalled < self.settings.stall_notice_seconds or stalled == job.stall_shown:
                continue
            owned = [OP.c.runner_id == self.runner_id, OP.c.status == "running"]
            fields = {
                "speed": 0.0,
                "eta_seconds": None,
                "message": f"stalled: no data from Ollama for {stalled} s",
            }
            note = [] if job.stall_shown else ["stalled: Ollama sends no data"]
            if self.store.update(op_id, fields, note, where=owned) is not None:
                job.stall_shown = stalled
