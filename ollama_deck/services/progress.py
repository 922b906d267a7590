"""Ollama pull lines -> one overall view: percent, phase, bytes, speed, ETA.

Pure: lines and timestamps in, numbers out; no clock, database or Flask. ``feed`` runs
once per line Ollama sends (tens of thousands per pull), so it only adds and compares;
percent, speed and ETA are computed when someone asks for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..lifecycle import Phase

# Phases after the bytes: the bar waits just below 100 until Ollama says success.
AFTER_DOWNLOAD = (Phase.VERIFYING, Phase.WRITING, Phase.LOADING)

# While bytes still come, stay below 100: the next layer's size is not known yet.
RUNNING_CAP = 99.0
# Weight of the newest speed sample in the moving average, and the shortest sample.
SPEED_ALPHA = 0.3
MIN_SAMPLE_SECONDS = 0.5


def human_bytes(count: float) -> str:
    """``1.5 MB``: decimal units, as the page shows sizes."""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def phase_of(status: str) -> Phase | None:
    """The phase an Ollama status text belongs to, or None for text we do not know."""
    if status == "success":
        return Phase.DONE
    if status == "pulling manifest":
        return Phase.MANIFEST
    if status.startswith("pulling "):
        return Phase.DOWNLOADING
    if status.startswith("verifying"):
        return Phase.VERIFYING
    if status.startswith(("writing", "removing")):
        return Phase.WRITING
    return None


@dataclass(frozen=True)
class Snapshot:
    """What a user sees of a pull at one moment."""

    phase: str | None
    percent: float
    completed_bytes: int
    total_bytes: int
    speed: float | None
    eta_seconds: float | None
    message: str | None


class PullProgress:
    """Folds one pull's lines into a running total.

    Ollama reports each layer (blob) separately and one after the other, so the bytes of
    every layer seen so far are summed: a new layer adds to the total instead of sending
    the bar back to 0, and the percent never goes down while the pull runs.
    """

    def __init__(self, now: float, *, floor_percent: float = 0.0) -> None:
        self.status: str | None = None
        self.phase: str | None = None
        self.error: str | None = None
        self.succeeded = False
        self.layers: dict[str, list[int]] = {}  # digest -> [completed, total]
        self.completed = 0
        self.total = 0
        # Bytes that were on disk before this pull (resumed or present layers): not speed.
        self._downloaded = 0
        self._floor = floor_percent
        self._sample_time = now
        self._sample_bytes = 0
        self._speed: float | None = None

    def feed(self, line: dict[str, Any]) -> bool:
        """Take one line; return True when it says something new worth logging.

        That is a new status text (a new layer, verifying, success...) or an error line.
        The common line (more bytes of a known layer) is handled first and cheaply.
        """
        digest = line.get("digest")
        if digest is not None:
            completed = line.get("completed") or 0
            layer = self.layers.get(digest)
            if layer is None:
                total = line.get("total") or 0
                self.layers[digest] = [completed, total]
                self.completed += completed
                self.total += total
            else:
                if completed > layer[0]:
                    delta = completed - layer[0]
                    layer[0] = completed
                    self.completed += delta
                    self._downloaded += delta
                total = line.get("total")
                if total and total != layer[1]:
                    self.total += total - layer[1]
                    layer[1] = total
        elif "error" in line:
            self.error = str(line["error"]) or "Ollama reported an error"
            return True
        status = line.get("status")
        if status == self.status or status is None:
            return False
        return self._new_status(status)

    def _new_status(self, status: str) -> bool:
        self.status = status
        phase = phase_of(status)
        if phase is not None:
            self.phase = phase
        if status == "success":
            self.complete()
        return True

    def complete(self) -> None:
        """Mark the whole operation done (e.g. a load after its pull)."""
        self.succeeded = True
        self.phase = Phase.DONE

    def percent(self) -> float:
        """Overall percent, one decimal; 100 only once Ollama said success."""
        if self.succeeded:
            return 100.0
        if self.phase in AFTER_DOWNLOAD:
            value = RUNNING_CAP
        elif self.total:
            value = min(self.completed * 100.0 / self.total, RUNNING_CAP)
        else:
            value = 0.0
        self._floor = max(self._floor, round(value, 1))
        return self._floor

    def whole_percent(self) -> int:
        """The percent as a whole number, cheap enough to compare on every line."""
        if not self.total:
            return 0
        return self.completed * 100 // self.total

    def sample_speed(self, now: float) -> float | None:
        """Update the moving average of download speed (bytes/s) and return it."""
        elapsed = now - self._sample_time
        if elapsed >= MIN_SAMPLE_SECONDS:
            rate = (self._downloaded - self._sample_bytes) / elapsed
            if self._speed is None:
                self._speed = rate
            else:
                self._speed = SPEED_ALPHA * rate + (1 - SPEED_ALPHA) * self._speed
            self._sample_time = now
            self._sample_bytes = self._downloaded
        return self._speed

    def eta_seconds(self) -> float | None:
        """Seconds left at the current speed, when there is a speed and bytes left."""
        if self.succeeded:
            return 0.0
        if not self._speed or self._speed <= 0 or not self.total:
            return None
        return max(self.total - self.completed, 0) / self._speed

    def snapshot(self, now: float) -> Snapshot:
        """The current view; also samples the speed."""
        speed = self.sample_speed(now)
        downloading = self.phase == Phase.DOWNLOADING and not self.succeeded
        eta = self.eta_seconds() if downloading or self.succeeded else None
        return Snapshot(
            phase=self.phase,
            percent=self.percent(),
            completed_bytes=self.completed,
            total_bytes=self.total,
            speed=round(speed, 1) if downloading and speed is not None else None,
            eta_seconds=round(eta, 1) if eta is not None else None,
            message=self.status,
        )


class Flow(StrEnum):
    """What :class:`FlowWatch` says of a download over its last period."""

    STALLED = "stalled"  # no new bytes for a whole period
    CRAWLING = "crawling"  # bytes, but fewer per second than the crawl limit
    HEALTHY = "healthy"  # a whole period at or above the limit: earlier retries worked


@dataclass(frozen=True)
class Verdict:
    flow: Flow
    seconds: float  # the period judged
    rate: float  # bytes per second over it


class FlowWatch:
    """Judges a download's flow, one ``period`` at a time; pure: the caller gives the times.

    Stalled: the bytes have not grown for ``period`` seconds (Ollama may still be sending
    its progress lines). Crawling: over a whole period they grew by less than
    ``crawl_bytes`` per second (0: never). Healthy: a whole period at or above that, with
    bytes still coming at its end (what resets the retries of a stall). Outside the phases
    that download (``expecting`` false: verifying, writing) nothing is judged and the
    period starts again.
    """

    def __init__(self, period: float, crawl_bytes: float, now: float, completed: int) -> None:
        self.period = period
        self.crawl_bytes = crawl_bytes
        self._restart(now, completed)

    def _restart(self, now: float, completed: int) -> None:
        self.moved_at = now  # when the bytes last grew
        self.bytes = completed
        self.window_start = now
        self.window_bytes = completed

    def observe(self, now: float, completed: int, *, expecting: bool = True) -> Verdict | None:
        """The verdict at ``now`` with ``completed`` bytes, or None while a period runs."""
        if not expecting:
            self._restart(now, completed)
            return None
        if completed > self.bytes:
            self.bytes, self.moved_at = completed, now
        if now - self.moved_at >= self.period:
            return Verdict(Flow.STALLED, now - self.moved_at, 0.0)
        elapsed = now - self.window_start
        if elapsed < self.period:
            return None
        rate = max(completed - self.window_bytes, 0) / elapsed
        if self.crawl_bytes and rate < self.crawl_bytes:
            return Verdict(Flow.CRAWLING, elapsed, rate)
        if now - self.moved_at >= self.period / 2:
            return None  # enough bytes, but none lately: a stall may be coming
        self.window_start, self.window_bytes = now, completed
        return Verdict(Flow.HEALTHY, elapsed, rate)

    def still_for(self, now: float) -> float:
        """Seconds since the bytes last grew."""
        return now - self.moved_at
