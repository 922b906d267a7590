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
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import tzinfo
from datetime import UTC
from typing import Any

from ..config import DeckSettings
from ..dbhealth import DATABASE_ERRORS
from ..dbhealth import first_line
from ..errors import BadRequest
from ..errors import Conflict
from ..errors import NotFound
from ..lifecycle import Hold
from ..lifecycle import is_final
from ..lifecycle import is_orphan
from ..lifecycle import Kind
from ..lifecycle import may_resume
from ..lifecycle import Orphan
from ..lifecycle import PRUNE_AFTER_SECONDS
from ..lifecycle import Recovery
from ..lifecycle import recovery_for
from ..lifecycle import Status
from ..lifecycle import stop_request
from ..lifecycle import WINDOWED
from ..windows import clock_text
from ..windows import closes_at
from ..windows import is_open
from ..windows import resolve_not_before
from ..windows import start_time
from ..windows import Window
from ..windows import window_for
from .jobs import Job
from .jobs import JobSettings
from .names import check_registry
from .names import parse_model_name
from .ollama import OllamaClient
from .store import ChildSpec
from .store import GroupCreated
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
    # Ollama URL -> its download window (hosts without one are always open), and the zone
    # of the windows' times.
    windows: Mapping[str, Window] = field(default_factory=dict)
    zone: tzinfo = UTC

    @classmethod
    def from_settings(cls, host: str, settings: DeckSettings) -> RunnerSettings:
        """The runner's part of the deck's settings (checked when the deck started)."""
        windows = {}
        for name, url in settings.hosts.items():
            window = window_for(settings.pull_windows or {}, name)
            if window is not None:
                windows[url] = window
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
            allowed_registries=settings.allowed_registries,
            stall_retry_seconds=settings.pull_stall_retry_seconds,
            crawl_bytes=settings.pull_crawl_bytes,
            pull_retries=settings.pull_retries,
            windows=windows,
            zone=settings.zone,
        )


@dataclass(frozen=True)
class HostSchedule:
    """One host's download window in the deck's zone, read with a wall clock: what a job
    asks to know when its window closes and when it opens again."""

    window: Window | None
    zone: tzinfo

    def closes_at(self, now: float) -> float | None:
        return closes_at(self.window, now, self.zone)

    def opens_at(self, now: float) -> float:
        return start_time(now, None, self.window, self.zone)

    def describe(self, host_name: str, moment: float, now: float) -> str:
        """``outside the download window 01:00-06:00 of gpu1; starts at 01:00``."""
        return (
            f"outside the download window {self.window} of {host_name}; "
            f"starts at {clock_text(moment, self.zone, now=now)}"
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


def _why_not_resumable(row: Mapping[str, Any], op_id: str) -> str:
    if row["status"] == Status.PAUSED:  # by the window
        return (
            f"operation {op_id} was paused by its host's download window; it resumes when "
            "the window opens (pause it yourself to hold it past that)"
        )
    if is_final(row["status"]):
        return f"operation {op_id} already {row['status']}"
    return f"operation {op_id} is {row['status']}, not paused"


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
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.client = client  # the default host's
        # Ollama URL -> client; operations name their host by URL.
        self.clients: dict[str, OllamaClient] = dict(clients or {settings.host: client})
        self.settings = settings
        self.clock = clock  # for durations: speeds, stalls
        # For times of day: windows, not_before, how long a pull was paused. Tests give
        # one they move by hand, as no test waits for 01:00.
        self.wall = wall
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
        # More work for the maintenance thread, each called once a heartbeat (the
        # reconciler): a chore decides itself, through the database, whether it is due.
        self.chores: list[Callable[[], object]] = []

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
        self,
        kind: Kind,
        model: str,
        host: str | None = None,
        *,
        not_before: float | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Start (or join) an operation for ``model`` on ``host`` (an Ollama URL of the
        configuration; default: the first); returns the row and whether it is new.

        A pull or update starts no earlier than ``not_before`` (UNIX seconds) and only in
        its host's download window: until then it is ``scheduled``. An active operation of
        the model is joined as it is: a paused one stays paused (a second request must not
        undo someone's pause; the answer says it is paused, and resume is one call away).
        QueueFull (429) when ``max_queued`` operations wait already; RegistryNotAllowed
        (400) when the name names a registry Ollama must not fetch from for this deck (a
        load may pull, an update does).
        """
        name = parse_model_name(model)
        check_registry(name, self.settings.allowed_registries)
        url = host or self.settings.host
        now = self.wall()
        starts_at, note = None, None
        if kind in WINDOWED:
            starts_at, note = self._start_of(url, not_before, now)
        row, created = self.store.create_or_join(
            kind=kind,
            model=name.display,
            model_key=name.key,
            host=url,
            max_queued=self.settings.max_queued,
            not_before=not_before if kind in WINDOWED else None,
            starts_at=starts_at,
            schedule_note=note,
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
                if row["id"] in self.dispatch():  # started: the answer says running
                    row = self.store.get(row["id"]) or row
            except DATABASE_ERRORS as exc:
                log.warning("dispatch after submit failed: %s", first_line(exc))
        return row, created

    def submit_group(
        self,
        title: str,
        children: Sequence[tuple[Kind, str, str]],
        *,
        skip_busy: bool = False,
        not_before: float | None = None,
    ) -> GroupCreated:
        """One action across hosts: a group of ``children`` (kind, model, host URL), each
        new or joined to the operation already active for its model there.

        Every name is checked (and, for what fetches, its registry) before anything is
        recorded; pulls and updates are scheduled as :meth:`submit` schedules them (each
        host's window, ``not_before``). Then the group and its children are created at
        once, or not at all (QueueFull, or Conflict for a child that cannot join what is
        active: with ``skip_busy`` such a child is left out instead).
        """
        specs = []
        now = self.wall()
        for kind, model, host in children:
            name = parse_model_name(model)
            if kind != Kind.DELETE:
                check_registry(name, self.settings.allowed_registries)
            spec = ChildSpec(kind, name.display, name.key, host)
            if kind in WINDOWED:  # as submit: no earlier than not_before, in its window
                starts_at, note = self._start_of(host, not_before, now)
                spec = replace(spec, not_before=not_before, starts_at=starts_at, schedule_note=note)
            specs.append(spec)
        made = self.store.create_group(
            title=title,
            children=specs,
            max_queued=self.settings.max_queued,
            skip_busy=skip_busy,
        )
        if made.group is not None and any(created for _, created in made.children):
            try:  # recorded: as in submit, a database fault here must not undo the answer
                self.dispatch()
                made.group = self.store.get(made.group["id"]) or made.group
            except DATABASE_ERRORS as exc:
                log.warning("dispatch after a group failed: %s", first_line(exc))
        return made

    def submit_all(
        self, kind: Kind, models: list[str], host: str | None = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """Start (or join) an operation for each of ``models`` at once: all of them, or,
        when the new ones do not fit in the queue, none (QueueFull, 429). As in
        :meth:`submit`, each name's registry is checked first, and pulls and updates wait
        ``scheduled`` while their host's download window is closed."""
        names = [parse_model_name(model) for model in models]
        for name in names:
            check_registry(name, self.settings.allowed_registries)
        url = host or self.settings.host
        starts_at, note = None, None
        if kind in WINDOWED:
            starts_at, note = self._start_of(url, None, self.wall())
        results = self.store.create_all(
            kind=kind,
            models=[(name.display, name.key) for name in names],
            host=url,
            max_queued=self.settings.max_queued,
            starts_at=starts_at,
            schedule_note=note,
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

        An operation that no live runner holds is ended here and now. A group is
        cancelled by cancelling its active children: it ends once they have.
        """
        group = self._for_children(op_id, self.cancel)
        if group is not None:
            return group
        row = self.store.cancel_waiting(op_id)
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
            if row["status"] != Status.RUNNING and not is_final(row["status"]):
                return self.cancel(op_id)  # paused or re-queued meanwhile
        else:
            row = requested
        self._flag_cancel(op_id)
        return row

    def _for_children(
        self, op_id: str, act: Callable[[str], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """Do ``act`` (cancel, pause, resume) to each unfinished child of group ``op_id``;
        its row as it is then (None when ``op_id`` is no group). A child that cannot (it
        ended, or is paused already) is left as it is; Conflict when none could."""
        children = self.store.children(op_id)
        if not children:
            return None
        done = 0
        for child in children:
            if is_final(child["status"]):
                continue
            try:
                act(child["id"])
                done += 1
            except (Conflict, NotFound):
                continue  # it ended, was paused already, or was forgotten meanwhile
        row = self.store.get(op_id)
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if not done:
            if is_final(row["status"]):
                raise Conflict(f"operation {op_id} already {row['status']}")
            raise Conflict(
                f"no operation of group {op_id} could be changed (it is {row['status']})"
            )
        return row

    def pause(self, op_id: str) -> dict[str, Any]:
        """Pause an operation: one that waits is paused here and now; a running one is
        asked of the runner that holds it (this process's job at once, another process's
        at its next heartbeat), which closes Ollama's stream. Returns the row as it is.

        Conflict when it ended, or when a user paused it already. Pausing a group pauses
        its children.
        """
        group = self._for_children(op_id, self.pause)
        if group is not None:
            return group
        row = self.store.hold_waiting(op_id, at=self.wall())
        if row is not None:
            return row
        row = self.store.get(op_id)
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if is_final(row["status"]):
            raise Conflict(f"operation {op_id} already {row['status']}")
        if row["status"] == Status.PAUSED or row["paused_by"] is not None:
            raise Conflict(f"operation {op_id} is paused already; resume it instead")
        if row["cancel_requested"]:
            raise Conflict(f"operation {op_id} is being cancelled")
        if row["status"] != Status.RUNNING:
            return self.pause(op_id)  # it moved between our two reads: try again
        requested = self.store.request_pause(op_id)
        if requested is None:
            return self.pause(op_id)
        orphan = self._orphan(requested)
        if orphan is not None:  # nobody runs it: nothing to close, pause it here
            note = "paused (no runner held it)"
            return self.store.pause_orphan(op_id, orphan, at=self.wall(), note=note) or requested
        self._flag_stop(op_id, Status.PAUSED)
        return requested

    def resume(self, op_id: str) -> dict[str, Any]:
        """Queue a paused operation again (scheduled, when its window is closed or its
        not_before is ahead); Ollama resumes from the partial download it kept.

        Conflict unless a user paused it: a window's pause ends when the window opens.
        Resuming a group resumes its children that a user paused.
        """
        group = self._for_children(op_id, self._resume_child)
        if group is not None:
            return group
        row = self.store.get(op_id)
        if row is None:
            raise NotFound(f"no operation {op_id}")
        if not may_resume(row):
            raise Conflict(_why_not_resumable(row, op_id))
        now = self.wall()
        starts_at, note = None, None
        if row["kind"] in WINDOWED:
            starts_at, note = self._start_of(row["host"], row["not_before"], now)
        resumed = self.store.resume(op_id, starts_at=starts_at, message=note)
        if resumed is None:
            return self.resume(op_id)  # changed meanwhile: judge it again
        try:
            self.dispatch()
            resumed = self.store.get(op_id) or resumed
        except DATABASE_ERRORS as exc:  # recorded: the maintenance thread starts it
            log.warning("dispatch after resume failed: %s", first_line(exc))
        return resumed

    def _resume_child(self, op_id: str) -> dict[str, Any]:
        """Resume a group's child if a user paused it (the window's pauses end by themselves)."""
        row = self.store.get(op_id)
        if row is None or not may_resume(row):
            raise Conflict(f"operation {op_id} is not paused by a user")
        return self.resume(op_id)

    def wait_finished(self, op_id: str, timeout: float) -> bool:
        """Wait for this process's thread of ``op_id`` (of each child, for a group) to end;
        True if it did or none runs here."""
        deadline = time.monotonic() + timeout
        with self._lock:
            thread = self._threads.get(op_id)
        ids = [] if thread is not None else [c["id"] for c in self.store.children(op_id)]
        with self._lock:
            threads = [thread] + [self._threads.get(i) for i in ids]
        for thread in threads:
            if thread is None:
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def dispatch(self) -> list[str]:
        """Start queued operations while fewer than the limit run; the ids started.

        Only once started: a process that merely registered the deck (a CLI command, a
        shell, the reloader's parent) leaves queued work to a runner that serves.
        """
        started: list[str] = []
        while self._started and not self._stopping.is_set():
            with self._dispatch_lock:
                row = self._claim()
                if row is None:
                    break
                self._start_thread(row)
                started.append(row["id"])
        return started

    def drain(self) -> list[str]:
        """Run queued operations one by one in the calling thread until none is queued;
        return their ids in the order they ran.

        rq's burst mode: no threads and nothing to wait for, so a test (or a one-shot
        command) gets every operation finished when this returns. A job waiting on a held
        stream blocks here, as it would block its thread. What the wall clock makes due
        (see :meth:`keep_time`) is queued first; scheduled and paused operations stay.
        """
        ran: list[str] = []
        while not self._stopping.is_set():
            self.keep_time()
            with self._dispatch_lock:
                row = self._claim()
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
            fate = recovery_for(row, self.settings.on_restart)
            if fate == Recovery.CANCEL:
                note = "its runner stopped; cancelled as requested"
                done = self.store.end_orphan(
                    op_id, orphan, Status.CANCELLED, message=Status.CANCELLED, note=note
                )
            elif fate == Recovery.PAUSE:
                note = "its runner stopped; paused as requested"
                done = self.store.pause_orphan(op_id, orphan, at=self.wall(), note=note)
            elif fate == Recovery.INTERRUPT:
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

    # -- time -----------------------------------------------------------------------

    def resolve_time(self, text: str) -> float:
        """A ``not_before`` text in the deck's zone and by its clock -> UNIX seconds;
        BadRequest when it is not one (windows.resolve_not_before says what it takes)."""
        try:
            return resolve_not_before(text, self.wall(), self.settings.zone)
        except (ValueError, OverflowError, OSError) as exc:
            raise BadRequest(f"not_before: {exc}", code="invalid_not_before") from None

    def schedule_of(self, host: str) -> HostSchedule:
        """The download window of the Ollama host ``host`` (a URL), if it has one."""
        return HostSchedule(self.settings.windows.get(host), self.settings.zone)

    def _start_of(
        self, host: str, not_before: float | None, now: float
    ) -> tuple[float | None, str | None]:
        """When an operation on ``host`` may start and why not now; (None, None): now."""
        window = self.settings.windows.get(host)
        starts = start_time(now, not_before, window, self.settings.zone)
        if starts <= now:
            return None, None
        when = clock_text(starts, self.settings.zone, now=now)
        if window is not None and not is_open(
            window, max(now, not_before or now), self.settings.zone
        ):
            name = self.store.host_names.get(host, host)
            return starts, self.schedule_of(host).describe(name, starts, now)
        return starts, f"starts at {when} (not before)"

    def _closed_hosts(self, now: float) -> list[str]:
        zone = self.settings.zone
        return [url for url, w in self.settings.windows.items() if not is_open(w, now, zone)]

    def _claim(self) -> dict[str, Any] | None:
        closed = self._closed_hosts(self.wall())
        return self.store.claim_next_queued(
            self.runner_id, self.settings.max_concurrent, closed_hosts=closed
        )

    def keep_time(self) -> None:
        """What the wall clock decides: queue the scheduled and window-paused operations
        whose time has come, schedule the queued ones of a host whose window closed (and
        pause this process's pulls there), and have long-paused ones warn that an Ollama
        restart would delete their partial download."""
        now = self.wall()
        self.store.wake_due(now)
        for url in self._closed_hosts(now):
            schedule = self.schedule_of(url)
            opens = schedule.opens_at(now)
            name = self.store.host_names.get(url, url)
            self.store.defer_queued(url, opens, schedule.describe(name, opens, now))
            with self._lock:
                jobs = [j for j in self._jobs.values() if j.row["host"] == url]
            for job in jobs:
                if job.row["kind"] in WINDOWED:
                    job.pause(Hold.WINDOW)
        self.store.note_prune_risk(now - PRUNE_AFTER_SECONDS)

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
        # Only pulls and updates on a host with a window watch it.
        windowed = row["kind"] in WINDOWED and row["host"] in self.settings.windows
        return Job(
            row=row,
            store=self.store,
            runner_id=self.runner_id,
            client=self.clients.get(row["host"]),
            settings=self.settings,
            stopping=self._stopping,
            clock=self.clock,
            wall=self.wall,
            schedule=self.schedule_of(row["host"]) if windowed else None,
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
        self._flag_stop(op_id, Status.CANCELLED)

    def _flag_stop(self, op_id: str, what: Status) -> None:
        """Have this process's job of ``op_id`` (if any) stop: CANCELLED or PAUSED."""
        with self._lock:
            job = self._jobs.get(op_id)
        if job is None:
            return
        if what == Status.PAUSED:
            job.pause(Hold.USER)
        else:
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
                for asked in self.store.heartbeat(self.runner_id, live):
                    what = stop_request(asked)
                    if what is not None:
                        self._flag_stop(asked["id"], what)
                self._show_stalls()
                self.keep_time()
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
            self._run_chores()

    def _run_chores(self) -> None:
        """Each chore once; one that fails is logged and tried again next heartbeat."""
        for chore in self.chores:
            name = getattr(chore, "__qualname__", repr(chore))
            try:
                chore()
            except Exception as exc:  # noqa: BLE001 - a chore must not stop the heartbeat
                if isinstance(exc, DATABASE_ERRORS):
                    log.warning("ollama-deck %s: %s; retrying", name, first_line(exc))
                else:
                    log.exception("ollama-deck %s failed; retrying", name)

    def _show_stalls(self) -> None:
        """Let each live job show whether its pull got no bytes lately."""
        now = self.clock()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.show_stall(now)
