"""The progress math: Ollama pull lines in, one overall view out."""

from __future__ import annotations

import pytest

from ollama_deck.services.progress import phase_of
from ollama_deck.services.progress import PullProgress

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64


def layer_lines(digest: str, total: int, steps: int, start: int = 0) -> list[dict]:
    """What Ollama sends for one layer: a line without ``completed``, then growing bytes."""
    status = f"pulling {digest[7:19]}"
    lines = [{"status": status, "digest": digest, "total": total}]
    for i in range(1, steps + 1):
        completed = start + (total - start) * i // steps
        lines.append({"status": status, "digest": digest, "total": total, "completed": completed})
    return lines


def realistic_pull() -> list[dict]:
    """A three-layer pull: a big model blob, then two small ones, like a real manifest."""
    return (
        [{"status": "pulling manifest"}]
        + layer_lines(DIGEST_A, 2_000_000_000, 40)
        + layer_lines(DIGEST_B, 1_429, 1)
        + layer_lines(DIGEST_C, 485, 1)
        + [
            {"status": "verifying sha256 digest"},
            {"status": "writing manifest"},
            {"status": "success"},
        ]
    )


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("pulling manifest", "manifest"),
        ("pulling dde5aa3fc5ff", "downloading"),
        ("pulling model", "downloading"),
        ("verifying sha256 digest", "verifying"),
        ("writing manifest", "writing"),
        ("removing unused layers", "writing"),
        ("removing any unused layers", "writing"),
        ("success", "done"),
        ("something new", None),
    ],
)
def test_phase_of(status, phase):
    assert phase_of(status) == phase


def test_percent_never_goes_back_across_layers():
    tracker = PullProgress(0.0)
    seen = []
    for line in realistic_pull():
        tracker.feed(line)
        seen.append(tracker.percent())
    assert seen == sorted(seen), "the bar went backwards"
    # The big layer alone brings the bar near the top; the small layers do not reset it.
    big_done = seen[1 + 41]
    assert big_done == 99.0
    assert seen[-1] == 100.0
    assert tracker.succeeded
    assert tracker.total == 2_000_000_000 + 1_429 + 485
    assert tracker.completed == tracker.total


def test_new_layer_adds_to_total_instead_of_resetting():
    tracker = PullProgress(0.0)
    for line in layer_lines(DIGEST_A, 1000, 2) + layer_lines(DIGEST_B, 1000, 1)[:1]:
        tracker.feed(line)
    # Layer A done (1000 of 1000), layer B announced with no bytes yet: 50 %, not 0.
    assert tracker.percent() == 50.0


def test_percent_stays_below_100_until_success():
    tracker = PullProgress(0.0)
    for line in layer_lines(DIGEST_A, 1000, 4):
        tracker.feed(line)
    assert tracker.percent() == 99.0
    tracker.feed({"status": "verifying sha256 digest"})
    assert tracker.percent() == 99.0
    tracker.feed({"status": "success"})
    assert tracker.percent() == 100.0


def test_floor_keeps_a_resumed_pull_from_going_back():
    tracker = PullProgress(0.0, floor_percent=40.0)
    tracker.feed({"status": "pulling manifest"})
    assert tracker.percent() == 40.0


def test_feed_reports_new_status_lines_only():
    tracker = PullProgress(0.0)
    notable = [tracker.feed(line) for line in realistic_pull()]
    statuses = [line["status"] for line, n in zip(realistic_pull(), notable, strict=True) if n]
    assert statuses == [
        "pulling manifest",
        "pulling aaaaaaaaaaaa",
        "pulling bbbbbbbbbbbb",
        "pulling cccccccccccc",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]


def test_error_line_is_a_failure():
    tracker = PullProgress(0.0)
    tracker.feed({"status": "pulling manifest"})
    assert tracker.feed({"error": "pull model manifest: file does not exist"}) is True
    assert tracker.error == "pull model manifest: file does not exist"
    assert not tracker.succeeded


def test_stream_without_success_is_not_succeeded():
    tracker = PullProgress(0.0)
    for line in realistic_pull()[:-1]:
        tracker.feed(line)
    assert not tracker.succeeded
    assert tracker.percent() < 100


def test_speed_is_a_moving_average_and_eta_follows():
    tracker = PullProgress(0.0)
    status = {"status": "pulling aaaaaaaaaaaa", "digest": DIGEST_A, "total": 10_000_000}
    tracker.feed(dict(status))
    # 1 MB per second for 3 seconds.
    for second in range(1, 4):
        tracker.feed(dict(status, completed=second * 1_000_000))
        speed = tracker.sample_speed(float(second))
    assert speed == pytest.approx(1_000_000)
    assert tracker.eta_seconds() == pytest.approx(7.0)
    # The speed doubles: the average moves toward it without jumping all the way.
    tracker.feed(dict(status, completed=5_000_000))
    speed = tracker.sample_speed(4.0)
    assert 1_000_000 < speed < 2_000_000


def test_resumed_bytes_do_not_count_as_speed():
    tracker = PullProgress(0.0)
    # A resumed layer's first line already shows 900 MB on disk.
    line = {"status": "pulling a", "digest": DIGEST_A, "total": 10**9}
    tracker.feed(dict(line, completed=900 * 10**6))
    tracker.feed(dict(line, completed=901 * 10**6))
    assert tracker.sample_speed(1.0) == pytest.approx(1_000_000)
    assert tracker.percent() == 90.1


def test_snapshot_has_no_speed_outside_downloading():
    tracker = PullProgress(0.0)
    for line in realistic_pull():
        tracker.feed(line)
    snap = tracker.snapshot(5.0)
    assert snap.phase == "done"
    assert snap.percent == 100.0
    assert snap.speed is None
    assert snap.eta_seconds == 0.0
