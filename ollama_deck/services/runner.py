"""Start, cancel and recover operations: threads, dispatch, heartbeats, maintenance.

The database is the truth: a runner owns an operation only while its row says so
(``runner_id``) and its heartbeat is fresh, so several processes can share one database
and none loses work when another dies. What an operation does is a :class:`~.jobs.Job`;
the runner decides where and when jobs run: each in a thread of its own, or one after the
other in the calling thread (:meth:`Runner.drain`, as rq's burst mode).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import DeckSettings
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import Conflict
from ..errors import NotFound
from ..lifecycle import is_final
from ..lifecycle import is_orphan
from ..lifecycle import Kind
from ..lifecycle import Orphan
from ..lifecycle import Status
from .jobs import Job
from .jobs import JobSettings
from .names import parse_model_name
from .ollama import OllamaClient
from .store import OperationStore

log = logging.getLogger(__name__)

# Finished operations older than the keep time are looked for this often (seconds).
PURGE_INTERVAL = 600.0


@dataclass(kw_only=True)
class RunnerSettings(JobSettings):
    host: str
    max_concurrent: int = 2
    heartbeat_seconds: float = 5.0
    stale_seconds: float = 30.0
    keep_finished_seconds: float = 7 * 24 * 3600.0
    keep_finished_count: int = 1000
    max_queued: int = 100
    on_restart: str = "resume"  # or "interrupt"

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


def _pid_alive(pid: int) -> bool:
    return not process_gone(pid)


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

    def submit(
        self, kind: Kind, model: str, host: str | None = None
    ) -> tuple[dict[str, Any], bool]:
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

    def submit_all(
        self, kind: Kind, models: list[str], host: str | None = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """Start (or join) an operation for each of ``models`` at once: all of them, or,
        when the new ones do not fit in the queue, none (QueueFull, 429)."""
        names = [parse_model_name(model) for model in models]
        results = self.store.create_all(
            kind=kind,
            models=[(name.display, name.key) for name in names],
            host=host or self.settings.host,
            max_queued=self.settings.max_queued,
        )
        if any(created for _, created in results):
            try:  # accepted and recorded: as in submit, a fault here is not the answer
                self.dispatch()
                results = [(self.store.get(r["id"]) or r, c) for r, c in results]
            except DATABASE_ERRORS as exc:
                log.warning("dispatch after submit failed: %s", first_line(exc))
        return results

    def cancel(self, op_id: str) -> dict[str, Any]:
        """Cancel a queued or running operation; returns its row as it is now.

        An operation that no live runner holds is ended here and now.
        """
        row = self.store.cancel_queued(op_id)
        if row is not None:
            return row
        row = self.store.get(op_id)
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if is_final(row["status"]):
            raise Conflict(f"operation {op_id} already {row['status']}")
        orphan = self._orphan(row)
        if orphan is not None:
            ended = self.store.end_orphan(
                op_id,
                orphan,
                Status.CANCELLED,
                message=Status.CANCELLED,
                note="cancelled (no runner held it)",
            )
            if ended is not None:
                return ended
        requested = self.store.request_cancel(op_id)
        if requested is None:
            row = self.store.get(op_id) or row
            if row["status"] == Status.QUEUED:  # recovered into the queue meanwhile
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

    def drain(self) -> list[str]:
        """Run queued operations one by one in the calling thread until none is queued;
        return their ids in the order they ran.

        rq's burst mode: no threads and nothing to wait for, so a test (or a one-shot
        command) gets every operation finished when this returns. A job waiting on a held
        stream blocks here, as it would block its thread.
        """
        ran: list[str] = []
        while not self._stopping.is_set():
            with self._dispatch_lock:
                row = self.store.claim_next_queued(self.runner_id, self.settings.max_concurrent)
                if row is None:
                    return ran
                job = self._new_job(row)
                with self._lock:
                    self._jobs[job.op_id] = job
            try:
                pulled = job.run()
            finally:
                with self._lock:
                    self._jobs.pop(job.op_id, None)
            if pulled:
                job.refresh_models()
            ran.append(job.op_id)
        return ran

    def recover(self) -> list[str]:
        """Take over operations nobody runs: re-queue or interrupt them, or end them as
        cancelled when a cancel was asked for.

        Nobody runs an operation whose runner stopped beating, whose runner was a process of
        this machine that is gone (taken over at once, without waiting for the stale
        timeout), or that this runner holds without a live job (its final write failed).
        """
        taken = []
        for row in self.store.running():
            orphan = self._orphan(row)
            if orphan is None:
                continue
            op_id = row["id"]
            if row["cancel_requested"]:
                note = "its runner stopped; cancelled as requested"
                done = self.store.end_orphan(
                    op_id, orphan, Status.CANCELLED, message=Status.CANCELLED, note=note
                )
            elif self.settings.on_restart == "interrupt":
                done = self.store.end_orphan(
                    op_id,
                    orphan,
                    Status.INTERRUPTED,
                    message="interrupted: the service stopped during the operation",
                    note="interrupted: its runner stopped; pull it again to resume",
                )
            else:
                note = "its runner stopped; queued to resume (Ollama keeps partial downloads)"
                done = self.store.requeue_orphan(op_id, orphan, note=note)
            if done is not None:
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

    # -- ownership ------------------------------------------------------------------

    def _orphan(self, row: dict[str, Any]) -> Orphan | None:
        """Whether nobody runs ``row`` (running), judged with this runner's live jobs."""
        with self._dispatch_lock, self._lock:
            live = set(self._jobs)
        hostname, pid = runner_identity()
        return is_orphan(
            row,
            now=time.time(),
            stale_seconds=self.settings.stale_seconds,
            my_runner_id=self.runner_id,
            my_live_jobs=live,
            this_host=hostname,
            this_pid=pid,
            pid_alive=_pid_alive,
        )

    # -- threads --------------------------------------------------------------------

    def _new_job(self, row: dict[str, Any]) -> Job:
        return Job(
            row=row,
            store=self.store,
            runner_id=self.runner_id,
            client=self.clients.get(row["host"]),
            settings=self.settings,
            stopping=self._stopping,
            clock=self.clock,
            progress_since=self.clock(),
        )

    def _start_thread(self, row: dict[str, Any]) -> None:
        job = self._new_job(row)
        thread = threading.Thread(
            target=self._run, args=(job,), name=f"ollama-deck-{row['id'][:8]}", daemon=True
        )
        with self._lock:
            self._jobs[job.op_id] = job
            self._threads[job.op_id] = thread
        thread.start()

    def _run(self, job: Job) -> None:
        """A job's thread: run it, forget it, then start what the freed slot allows."""
        pulled = False
        try:
            pulled = job.run()
        finally:
            with self._lock:
                self._jobs.pop(job.op_id, None)
                self._threads.pop(job.op_id, None)
            if pulled:
                job.refresh_models()
            if not self._stopping.is_set():
                try:
                    self.dispatch()
                except DATABASE_ERRORS as exc:  # the maintenance thread tries again
                    log.warning("dispatch failed: %s", first_line(exc))

    def _flag_cancel(self, op_id: str) -> None:
        with self._lock:
            job = self._jobs.get(op_id)
        if job is not None:
            job.stop()

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
        """Let each live job show whether its pull got no bytes lately."""
        now = self.clock()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.show_stall(now)
