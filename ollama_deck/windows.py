"""Download windows and start times: pure arithmetic on clock times, no I/O.

A window is a daily span of local wall-clock time, ``01:00-06:00``; one whose end is not
after its start crosses midnight (``22:00-02:00``). Times are local to the deck's time zone
(``OLLAMA_DECK_TIMEZONE``, default the machine's). Every function takes UNIX seconds and a
``tzinfo`` and returns UNIX seconds, so callers store and compare plain numbers and the
time zone only matters here. The start is inclusive and the end exclusive: ``01:00-06:00``
is open at 01:00:00 and closed at 06:00:00.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from datetime import tzinfo
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
# A pull may be scheduled this far ahead at most: further is a typo of the year.
MAX_AHEAD_SECONDS = 366 * 24 * 3600.0


@dataclass(frozen=True)
class Window:
    """A daily span of local time: minutes after midnight, start inclusive, end exclusive."""

    start: int
    end: int

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def contains(self, minute: float) -> bool:
        """Whether the local time ``minute`` (minutes after midnight) is inside."""
        if self.crosses_midnight:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_clock(text: str) -> int:
    """``HH:MM`` -> minutes after midnight; ValueError for anything else."""
    match = CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text.strip()!r} is not a time of day HH:MM (00:00 to 23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_window(text: str) -> Window:
    """``01:00-06:00`` (or ``22:00-02:00``, across midnight) -> a Window."""
    start, sep, end = text.strip().partition("-")
    if not sep:
        raise ValueError(f"{text.strip()!r} is not a window START-END such as 01:00-06:00")
    window = Window(parse_clock(start), parse_clock(end))
    if window.start == window.end:
        raise ValueError(f"{text.strip()!r} starts and ends at the same time")
    return window


ALL_HOSTS = "*"


def parse_windows(text: str) -> dict[str, Window]:
    """``gpu1=01:00-06:00,gpu2=22:00-02:00`` -> {host name: Window}; a window without a
    name (or named ``*``) applies to every host that has none of its own."""
    windows: dict[str, Window] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        name, sep, span = item.rpartition("=")
        name = name.strip().lower() if sep else ALL_HOSTS
        if name in windows:
            raise ValueError(f"the host {name!r} has two windows")
        windows[name] = parse_window(span)
    return windows


def window_for(windows: Mapping[str, Window], host_name: str) -> Window | None:
    """The window of the host named ``host_name``: its own, else the one for every host."""
    return windows.get(host_name, windows.get(ALL_HOSTS))


def local_zone(name: str | None = None) -> tzinfo:
    """The zone ``name`` (IANA, e.g. Europe/Berlin), else the machine's local zone: the
    ``TZ`` variable, else /etc/localtime, else the fixed offset the C library reports."""
    if name:
        return ZoneInfo(name)  # ZoneInfoNotFoundError (a KeyError) for an unknown name
    tz_name = os.environ.get("TZ", "").lstrip(":")
    if tz_name:
        try:
            return ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        pass
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


def zone_name(zone: tzinfo) -> str:
    """A zone's name for people: its IANA key, else its abbreviation now."""
    key = getattr(zone, "key", None)
    if key and key != "localtime":
        return str(key)
    return datetime.now(zone).strftime("%Z") or "local time"


def _local(moment: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(moment, zone)


def _minute(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def _at(day: date, minute: int, zone: tzinfo) -> float:
    """UNIX seconds of local time ``minute`` on ``day`` in ``zone``."""
    return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone).timestamp()


def is_open(window: Window | None, moment: float, zone: tzinfo) -> bool:
    """Whether pulls may run at ``moment`` (always, without a window)."""
    return window is None or window.contains(_minute(_local(moment, zone)))


def next_open(window: Window | None, moment: float, zone: tzinfo) -> float:
    """The first time at or after ``moment`` when the window is open (``moment`` if it is)."""
    if is_open(window, moment, zone):
        return moment
    assert window is not None
    today = _local(moment, zone).date()
    for days in (0, 1, 2):  # a missing local time (a DST gap) can push past the next day
        start = _at(today + timedelta(days=days), window.start, zone)
        if start > moment:
            return start
    raise AssertionError("a daily window opens within two days")


def closes_at(window: Window | None, moment: float, zone: tzinfo) -> float | None:
    """When the open window around ``moment`` closes; None without a window (or while it
    is closed)."""
    if window is None or not is_open(window, moment, zone):
        return None
    today = _local(moment, zone).date()
    for days in (-1, 0, 1, 2):
        end = _at(today + timedelta(days=days), window.end, zone)
        if end > moment:
            return end
    raise AssertionError("an open daily window closes within two days")


def start_time(
    moment: float, not_before: float | None, window: Window | None, zone: tzinfo
) -> float:
    """When an operation asked for at ``moment`` may start: not before ``not_before``, and
    inside the window (the earliest such time; ``moment`` when it may start at once)."""
    earliest = max(moment, not_before or moment)
    return next_open(window, earliest, zone)


def resolve_not_before(text: str, moment: float, zone: tzinfo) -> float:
    """``not_before`` as a client sent it -> UNIX seconds.

    An ISO 8601 date and time, with a zone or offset (``Z``, ``+02:00``) or without one (the
    deck's zone); or a time of day ``HH:MM`` (the next such time from ``moment``).
    ValueError with what is wrong, for a text that is none of these or is more than a year
    ahead.
    """
    text = text.strip()
    if CLOCK.fullmatch(text):
        minute = parse_clock(text)
        today = _local(moment, zone).date()
        when = _at(today, minute, zone)
        if when < moment:
            when = _at(today + timedelta(days=1), minute, zone)
        return when
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "use an ISO 8601 date and time such as 2026-12-01T01:00 (the deck's time zone) "
            "or 2026-12-01T01:00:00Z, or a time of day such as 01:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    when = parsed.timestamp()
    if when - moment > MAX_AHEAD_SECONDS:
        raise ValueError("it is more than a year ahead")
    return when


def clock_text(moment: float, zone: tzinfo, *, now: float) -> str:
    """``01:00`` for a time within the next day, ``2026-12-03 01:00`` further out."""
    local = _local(moment, zone)
    if abs(moment - now) < 20 * 3600:
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")
