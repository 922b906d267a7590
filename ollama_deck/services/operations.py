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
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from ..db import FINAL_STATUSES
from ..db import Operation
from ..errors import Conflict
from ..errors import DeckError
from ..errors import ModelNotFound
from ..errors import NotFound
from .names import parse_model_name
from .ollama import OllamaClient
from .ollama import Stream
from .progress import PullProgress
from .store import OperationStore

log = logging.getLogger(__name__)
OP = Operation.__table__

# A running pull writes when Ollama says something new (a status line), else when the
# whole percent moved and PERCENT_INTERVAL passed, else every IDLE_INTERVAL. That is at
# most 4 progress writes (and SSE events) a second, however fast lines come.
PERCENT_INTERVAL = 0.25
IDLE_INTERVAL = 1.0


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


@dataclass
class RunnerSettings:
    host: str
    max_concurrent: int = 2
    heartbeat_seconds: float = 5.0
    stale_seconds: float = 30.0
    keep_finished_seconds: float = 7 * 24 * 3600.0
    on_restart: str = "resume"  # or "interrupt"
    keep_alive: str = "30m"  # how long Ollama keeps a model loaded by a load operation


class Runner:
    """Runs this process's share of operations; one per app."""

    def __init__(
        self,
        store: OperationStore,
        client: OllamaClient,
        settings: RunnerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.clock = clock
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
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
        self.recover()
        self.dispatch()
        self._maintenance = threading.Thread(
            target=self._maintain, name="ollama-deck-maintenance", daemon=True
        )
        self._maintenance.start()

    def submit(self, kind: str, model: str) -> tuple[dict[str, Any], bool]:
        """Start (or join) an operation for ``model``; returns the row and whether it is new."""
        name = parse_model_name(model)
        row, created = self.store.create_or_join(
            kind=kind, model=name.display, model_key=name.key, host=self.settings.host
        )
        if not created and row["kind"] != kind:
            raise Conflict(
                f"a {row['kind']} of {name.display} is already {row['status']}; "
                "wait for it to finish or cancel it"
            )
        if created:
            self.dispatch()
            row = self.store.get(row["id"]) or row
        return row, created

    def cancel(self, op_id: str) -> dict[str, Any]:
        """Cancel a queued or running operation; returns its row as it is now."""
        fields = {"status": "cancelled", "finished_at": time.time(), "message": "cancelled"}
        row = self.store.update(
            op_id, fields, ["cancelled before it started"], where=[OP.c.status == "queued"]
        )
        if row is not None:
            return row
        row = self.store.update(
            op_id,
            {"cancel_requested": True, "message": "cancelling"},
            ["cancel requested"],
            where=[OP.c.status == "running", OP.c.cancel_requested.is_(False)],
        )
        if row is None:
            row = self.store.get(op_id)
            if row is None:
                raise NotFound(f"no operation {op_id}")
            if row["status"] in FINAL_STATUSES:
                raise Conflict(f"operation {op_id} already {row['status']}")
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
            row = self.store.claim_next_queued(self.runner_id, self.settings.max_concurrent)
            if row is None:
                return
            self._start_thread(row)

    def recover(self) -> list[str]:
        """Take over operations whose runner stopped beating: re-queue or interrupt them."""
        cutoff = time.time() - self.settings.stale_seconds
        taken = []
        for op_id in self.store.stale_running(cutoff):
            stale = [
                OP.c.status == "running",
                (OP.c.heartbeat_at < cutoff) | OP.c.heartbeat_at.is_(None),
            ]
            if self.settings.on_restart == "interrupt":
                fields = {
                    "status": "interrupted",
                    "finished_at": time.time(),
                    "message": "interrupted: the service stopped during the operation",
                    "speed": None,
                    "eta_seconds": None,
                }
                note = "interrupted: its runner stopped; pull it again to resume"
            else:
                fields = {"status": "queued", "runner_id": None, "message": "resuming"}
                note = "its runner stopped; queued to resume (Ollama keeps partial downloads)"
            if self.store.update(op_id, fields, [note], where=stale) is not None:
                taken.append(op_id)
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

    # -- threads --------------------------------------------------------------------

    def _start_thread(self, row: dict[str, Any]) -> None:
        job = Job()
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
        try:
            if row["kind"] == "load":
                tracker, done = self._load(row, job, owned), "loaded"
            else:
                tracker, done = self._pull(row, job, owned), "pulled"
            self._finish(op_id, owned, "succeeded", done, tracker=tracker)
        except OperationFailed as failure:
            self._finish(
                op_id,
                owned,
                "failed",
                failure.message,
                error=failure.error,
                tracker=failure.tracker,
            )
        except Cancelled as stop:
            if not (self._stopping.is_set() and self._release(op_id, owned)):
                self._finish(op_id, owned, "cancelled", "cancelled", tracker=stop.tracker)
        except OwnershipLost:
            log.warning("operation %s was taken over by another runner", op_id)
        except Exception as exc:  # noqa: BLE001 - anything else must still end the operation
            if isinstance(exc, DeckError):
                message = exc.message
            else:
                log.exception("operation %s crashed", op_id)
                message = f"internal error: {exc}"
            self._finish(op_id, owned, "failed", message, error=message)
        finally:
            with self._lock:
                self._jobs.pop(op_id, None)
                self._threads.pop(op_id, None)
            if not self._stopping.is_set():
                self.dispatch()

    def _pull(self, row: dict[str, Any], job: Job, owned: list[Any]) -> PullProgress:
        """Stream Ollama's pull into the operation; the tracker once Ollama said success."""
        op_id, model = row["id"], row["model"]
        clock = self.clock
        tracker = PullProgress(clock(), floor_percent=row["percent"] or 0.0)
        attempt = row["attempts"]
        start_note = f"pulling {model} from {self.settings.host}"
        if attempt > 1:
            start_note += f" (attempt {attempt}, resuming)"
        self._write(op_id, owned, tracker, [start_note], message="connecting to Ollama")
        last_write = clock()
        last_percent = -1
        feed, is_cancelled = tracker.feed, job.cancel.is_set
        with self._watched(job, tracker), self.client.pull(model) as lines:
            job.attach(lines)
            for line in lines:
                if is_cancelled():
                    raise Cancelled(tracker)
                if feed(line):  # a new status line or an error: always worth a write
                    if tracker.error is not None:
                        break
                    self._write(op_id, owned, tracker, [tracker.status])
                    last_write, last_percent = clock(), tracker.whole_percent()
                    continue
                since = clock() - last_write
                if since >= IDLE_INTERVAL or (
                    since >= PERCENT_INTERVAL and tracker.whole_percent() != last_percent
                ):
                    self._write(op_id, owned, tracker, [])
                    last_write, last_percent = clock(), tracker.whole_percent()
        if is_cancelled():
            raise Cancelled(tracker)
        if tracker.error is not None:
            raise OperationFailed(f"Ollama: {tracker.error}", tracker.error, tracker)
        if not tracker.succeeded:
            message = "the pull stream ended before Ollama reported success"
            raise OperationFailed(message, message, tracker)
        return tracker

    def _load(self, row: dict[str, Any], job: Job, owned: list[Any]) -> PullProgress:
        """Pull the model if it is missing, then have Ollama load it into memory."""
        op_id, model = row["id"], row["model"]
        try:
            self.client.show(model)
            tracker = PullProgress(self.clock())
            note = f"{model} is installed"
        except ModelNotFound:
            tracker = self._pull(row, job, owned)
            note = f"{model} pulled"
        tracker.phase = "loading"
        keep_alive = self.settings.keep_alive
        self._write(
            op_id,
            owned,
            tracker,
            [f"{note}; loading it into memory (keep-alive {keep_alive})"],
            message="loading into memory",
        )
        started = self.clock()
        with (
            self._watched(job, tracker),
            self.client.generate(model, keep_alive=keep_alive) as lines,
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
        self._write(op_id, owned, tracker, [f"loaded in {elapsed:.1f} s"], message="loaded")
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

    def _write(
        self,
        op_id: str,
        owned: list[Any],
        tracker: PullProgress,
        logs: list[str],
        *,
        message: str | None = None,
    ) -> dict[str, Any]:
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
        row = self.store.update(op_id, fields, logs, where=owned)
        if row is None:
            raise OwnershipLost(op_id)
        return row

    def _finish(
        self,
        op_id: str,
        owned: list[Any],
        status: str,
        message: str,
        *,
        error: str | None = None,
        tracker: PullProgress | None = None,
    ) -> None:
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
        self.store.update(op_id, fields, [message], where=owned)

    def _release(self, op_id: str, owned: list[Any]) -> bool:
        """Hand a pull back to the queue on shutdown, unless a user asked to cancel it."""
        fields = {"status": "queued", "runner_id": None, "message": "resuming", "speed": None}
        note = "the service stopped; queued to resume"
        keep = [*owned, OP.c.cancel_requested.is_(False)]
        return self.store.update(op_id, fields, [note], where=keep) is not None

    # -- maintenance ----------------------------------------------------------------

    def _maintain(self) -> None:
        """Heartbeat, pick up cancels from other processes, recover, dispatch, purge."""
        last_purge = 0.0
        while not self._stopping.wait(self.settings.heartbeat_seconds):
            try:
                for op_id in self.store.heartbeat(self.runner_id):
                    self._flag_cancel(op_id)
                self.recover()
                self.dispatch()
                if time.time() - last_purge > 600:
                    last_purge = time.time()
                    self.store.purge_finished(last_purge - self.settings.keep_finished_seconds)
            except Exception:  # noqa: BLE001 - keep beating through a database hiccup
                log.exception("ollama-deck maintenance failed; retrying")
