"""Download windows, start times and the flow of a download: pure arithmetic, no I/O.

Times are given as local wall-clock times in zones without daylight saving time (UTC, a
fixed +09:00, India's +05:30), so every expected value reads as it is written.
"""

from __future__ import annotations

from datetime import datetime
from datetime import timedelta
from datetime import timezone
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from ollama_deck.config import DeckSettings
from ollama_deck.config import SettingError
from ollama_deck.services.progress import Flow
from ollama_deck.services.progress import FlowWatch
from ollama_deck.windows import closes_at
from ollama_deck.windows import is_open
from ollama_deck.windows import next_open
from ollama_deck.windows import parse_window
from ollama_deck.windows import parse_windows
from ollama_deck.windows import resolve_not_before
from ollama_deck.windows import start_time
from ollama_deck.windows import Window

TOKYO = timezone(timedelta(hours=9))  # a fixed offset
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30, no DST
ZONES = {"utc": UTC, "tokyo": TOKYO, "kolkata": KOLKATA}


def at(text: str, zone) -> float:
    """``2026-12-01 05:30`` local to ``zone`` -> UNIX seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).timestamp()


def local(seconds: float | None, zone) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("zone_name", list(ZONES))
@pytest.mark.parametrize(
    ("span", "now", "open_", "opens", "closes"),
    [
        # A window inside one day: start inclusive, end exclusive.
        ("01:00-06:00", "2026-12-01 00:59:59", False, "2026-12-01 01:00:00", None),
        ("01:00-06:00", "2026-12-01 01:00:00", True, "2026-12-01 01:00:00", "2026-12-01 06:00:00"),
        ("01:00-06:00", "2026-12-01 05:59:00", True, "2026-12-01 05:59:00", "2026-12-01 06:00:00"),
        ("01:00-06:00", "2026-12-01 06:00:00", False, "2026-12-02 01:00:00", None),
        ("01:00-06:00", "2026-12-01 23:30:00", False, "2026-12-02 01:00:00", None),
        # Across midnight: open late in the evening and early in the morning.
        ("22:00-02:00", "2026-12-01 21:59:00", False, "2026-12-01 22:00:00", None),
        ("22:00-02:00", "2026-12-01 22:00:00", True, "2026-12-01 22:00:00", "2026-12-02 02:00:00"),
        ("22:00-02:00", "2026-12-01 23:59:59", True, "2026-12-01 23:59:59", "2026-12-02 02:00:00"),
        ("22:00-02:00", "2026-12-02 00:00:00", True, "2026-12-02 00:00:00", "2026-12-02 02:00:00"),
        ("22:00-02:00", "2026-12-02 01:59:00", True, "2026-12-02 01:59:00", "2026-12-02 02:00:00"),
        ("22:00-02:00", "2026-12-02 02:00:00", False, "2026-12-02 22:00:00", None),
        # Ending at midnight, and across the end of a month and a year.
        ("20:00-00:00", "2026-12-31 23:00:00", True, "2026-12-31 23:00:00", "2027-01-01 00:00:00"),
        ("20:00-00:00", "2027-01-01 00:00:00", False, "2027-01-01 20:00:00", None),
        ("23:30-00:30", "2026-11-30 23:45:00", True, "2026-11-30 23:45:00", "2026-12-01 00:30:00"),
    ],
)
def test_window_arithmetic(zone_name, span, now, open_, opens, closes):
    zone = ZONES[zone_name]
    window = parse_window(span)
    moment = at(now, zone)
    assert is_open(window, moment, zone) is open_
    assert local(next_open(window, moment, zone), zone) == opens
    assert local(closes_at(window, moment, zone), zone) == closes


def test_no_window_is_always_open():
    assert is_open(None, 0.0, UTC)
    assert next_open(None, 123.0, UTC) == 123.0
    assert closes_at(None, 123.0, UTC) is None


@pytest.mark.parametrize(
    ("not_before", "span", "now", "expected"),
    [
        (None, None, "2026-12-01 12:00", "2026-12-01 12:00:00"),  # at once
        ("2026-12-01 11:00", None, "2026-12-01 12:00", "2026-12-01 12:00:00"),  # in the past
        ("2026-12-01 14:30", None, "2026-12-01 12:00", "2026-12-01 14:30:00"),
        (None, "01:00-06:00", "2026-12-01 12:00", "2026-12-02 01:00:00"),  # the window
        ("2026-12-02 03:00", "01:00-06:00", "2026-12-01 12:00", "2026-12-02 03:00:00"),
        ("2026-12-02 07:00", "01:00-06:00", "2026-12-01 12:00", "2026-12-03 01:00:00"),  # both
    ],
)
def test_start_time_is_the_first_moment_allowed_by_both(not_before, span, now, expected):
    zone = TOKYO
    window = parse_window(span) if span else None
    wanted = at(not_before, zone) if not_before else None
    assert local(start_time(at(now, zone), wanted, window, zone), zone) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T14:30", "2026-12-01 14:30:00"),  # no zone: the deck's
        ("2026-12-01T05:30:00Z", "2026-12-01 14:30:00"),  # UTC
        ("2026-12-01T14:30:00+09:00", "2026-12-01 14:30:00"),
        ("2026-12-01T07:30:00+02:00", "2026-12-01 14:30:00"),
        ("14:30", "2026-12-01 14:30:00"),  # a time of day: the next one
        ("01:00", "2026-12-02 01:00:00"),  # already past today: tomorrow
        ("12:00", "2026-12-01 12:00:00"),  # now itself
    ],
)
def test_not_before_is_read_in_the_decks_zone(text, expected):
    now = at("2026-12-01 12:00", TOKYO)
    assert local(resolve_not_before(text, now, TOKYO), TOKYO) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("tomorrow", "ISO 8601"),
        ("2026-13-01T00:00", "ISO 8601"),
        ("25:00", "ISO 8601"),
        ("2029-01-01T00:00", "more than a year ahead"),
    ],
)
def test_bad_not_before_says_what_it_takes(text, why):
    with pytest.raises(ValueError, match=why):
        resolve_not_before(text, at("2026-12-01 12:00", UTC), UTC)


def test_windows_setting_per_host_and_for_all():
    assert parse_windows("gpu1=01:00-06:00, gpu2=22:00-02:00") == {
        "gpu1": Window(60, 360),
        "gpu2": Window(22 * 60, 120),
    }
    assert parse_windows("01:00-06:00") == {"*": Window(60, 360)}
    assert str(Window(22 * 60, 120)) == "22:00-02:00"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"OLLAMA_DECK_PULL_WINDOWS": "01:00-25:00"}, "not a time of day"),
        ({"OLLAMA_DECK_PULL_WINDOWS": "01:00-01:00"}, "same time"),
        ({"OLLAMA_DECK_PULL_WINDOWS": "default=0100"}, "not a window"),
        ({"OLLAMA_DECK_PULL_WINDOWS": "a=01:00-02:00,a=03:00-04:00"}, "two windows"),
        ({"OLLAMA_DECK_PULL_WINDOWS": "gpu9=01:00-06:00"}, "'gpu9', not a configured host"),
        ({"OLLAMA_DECK_TIMEZONE": "Mars/Olympus"}, "IANA time zone"),
        ({"OLLAMA_DECK_PULL_RETRIES": "-1"}, "PULL_RETRIES"),
        ({"OLLAMA_DECK_PULL_CRAWL_BYTES": "fast"}, "bytes per second"),
        ({"OLLAMA_DECK_PULL_STALL_RETRY_SECONDS": "4"}, "must be less than"),
    ],
)
def test_bad_pull_control_settings_are_refused_at_start(variables, message):
    with pytest.raises(SettingError, match=message):
        DeckSettings.from_config({}, variables)


def test_pull_control_settings_read():
    settings = DeckSettings.from_config(
        {},
        {
            "OLLAMA_HOSTS": "gpu1=http://127.0.0.1:1,gpu2=http://127.0.0.1:2",
            "OLLAMA_DECK_PULL_WINDOWS": "gpu1=01:00-06:00",
            "OLLAMA_DECK_TIMEZONE": "Asia/Kolkata",
            "OLLAMA_DECK_PULL_CRAWL_BYTES": "512KB",
            "OLLAMA_DECK_PULL_RETRIES": "0",
        },
    )
    assert settings.pull_windows == {"gpu1": Window(60, 360)}
    assert settings.zone == KOLKATA
    assert settings.pull_crawl_bytes == 512_000
    assert settings.pull_retries == 0
    assert (settings.pull_stall_retry_seconds, settings.stall_notice_seconds) == (60.0, 5.0)


def test_flow_watch_tells_stalls_crawls_and_healthy_periods():
    watch = FlowWatch(10.0, 1_000, now=0.0, completed=0)
    assert watch.observe(5.0, 50_000) is None  # a period is still running
    healthy = watch.observe(10.0, 60_000)
    assert healthy is not None and healthy.flow == Flow.HEALTHY and healthy.rate == 6_000
    assert watch.observe(15.0, 60_000) is None
    crawl = watch.observe(20.0, 65_000)  # 5,000 bytes in 10 s: 500/s, under 1,000
    assert crawl is not None and crawl.flow == Flow.CRAWLING and crawl.rate == 500
    # Ollama ticks with the same count: a stall once a whole period passed without bytes.
    stalled = FlowWatch(10.0, 0, now=0.0, completed=100)
    assert stalled.observe(9.9, 100) is None
    verdict = stalled.observe(10.0, 100)
    assert verdict is not None and verdict.flow == Flow.STALLED
    assert stalled.still_for(10.0) == 10.0
    # Verifying or writing expects no bytes: nothing is judged, the period starts again.
    assert stalled.observe(30.0, 100, expecting=False) is None
    assert stalled.observe(35.0, 100) is None
