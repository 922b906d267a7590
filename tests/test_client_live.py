"""The Python client against a real deck over real sockets: the werkzeug live server for
the quick run, and ``ollama-deck serve`` restarted under a watch (marked)."""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime
from datetime import timedelta
from datetime import UTC

import pytest

from ollama_deck.client import DeckAPIError
from ollama_deck.client import DeckClient
from ollama_deck.client import Event
from ollama_deck.client import WaitTimeout
from ollama_deck.testing import PullScript

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .processes import FAST_SETTINGS

QUICK = PullScript(layers=[1_000_000, 1_429], step=100_000, interval=0.005)


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    monkeypatch.delenv("OLLAMA_DECK_URL", raising=False)
    monkeypatch.delenv("OLLAMA_DECK_TOKEN", raising=False)


@pytest.fixture
def deck(live) -> DeckClient:
    with DeckClient(live.url) as client:
        yield client


def assert_each_once(events: list[Event]) -> None:
    ids = [e.id for e in events]
    assert all(i is not None for i in ids)
    assert ids == sorted(set(ids)), f"an event came twice or out of order: {ids}"


def test_pull_watch_and_wait(deck, fake_ollama):
    fake_ollama.allow_pull("m:1", QUICK)
    op = deck.pull("m:1")
    assert op.kind == "pull" and op.created is True
    events = list(deck.watch(op.id))
    assert_each_once(events)
    assert {e.kind for e in events} >= {"progress", "log", "done"}
    assert events[-1].final and events[-1].data.status == "succeeded"
    assert deck.wait(op.id).status == "succeeded"  # an ended operation: at once
    assert "m:1" in [m.name for m in deck.models().models]
    assert [o.id for o in deck.list(status="succeeded")] == [op.id]
    assert deck.list(status=["queued", "running"]) == []
    assert [h.name for h in deck.hosts()] == ["default"]


def test_pull_of_several_joins_an_active_one(deck, fake_ollama):
    fake_ollama.allow_pull("a:1", PullScript(hold_after=1))
    fake_ollama.allow_pull("b:1", QUICK)
    first = deck.pull("a:1")
    joined, other = deck.pull(["a:1", "b:1"])
    assert joined.id == first.id and joined.created is False
    assert deck.wait(other.id, timeout=30).status == "succeeded"
    fake_ollama.release("a:1")
    assert deck.wait(first.id, timeout=30).status == "succeeded"


def test_wait_times_out_and_the_operation_goes_on(deck, fake_ollama):
    fake_ollama.allow_pull("slow:1", PullScript(hold_after=2))
    op = deck.pull("slow:1")
    with pytest.raises(WaitTimeout):
        deck.wait(op.id, timeout=0.2)
    assert deck.get(op.id).status == "running"
    fake_ollama.release("slow:1")
    assert deck.wait(op.id, timeout=30).status == "succeeded"


def test_cancel_then_the_errors_of_the_deck(deck, fake_ollama):
    fake_ollama.allow_pull("held:1", PullScript(hold_after=1))
    op = deck.pull("held:1")
    wait_until(lambda: deck.get(op.id).status == "running")
    assert deck.cancel(op.id).status == "cancelled"
    assert deck.wait(op.id).status == "cancelled"
    with pytest.raises(DeckAPIError) as again:
        deck.cancel(op.id)
    assert (again.value.status, again.value.code) == (409, "conflict")
    with pytest.raises(DeckAPIError) as unknown:
        deck.get("3f1c2d7e-0000-4000-8000-000000000001")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")
    with pytest.raises(DeckAPIError) as missing:
        deck.delete("never-installed:1")
    assert missing.value.status == 404
    with pytest.raises(DeckAPIError) as no_host:
        deck.pull("m:1", host="nowhere")
    assert no_host.value.code == "unknown_host"


def test_pause_resume_and_a_start_time(deck, fake_ollama):
    fake_ollama.allow_pull("held:1", PullScript(layers=[1_000_000], step=50_000, hold_after=2))
    op = deck.pull("held:1")
    wait_until(lambda: deck.get(op.id).status == "running")
    paused = deck.pause(op.id)
    assert paused.status in ("paused", "running")  # running: its stream is being closed
    wait_until(lambda: deck.get(op.id).status == "paused")
    assert deck.get(op.id).paused_by == "user"
    with pytest.raises(DeckAPIError) as twice:
        deck.pause(op.id)
    assert (twice.value.status, twice.value.code) == (409, "conflict")
    joined = deck.pull("held:1")
    assert (joined.id, joined.created, joined.status) == (op.id, False, "paused")
    fake_ollama.release("held:1")
    assert deck.resume(op.id).status in ("queued", "running", "succeeded")
    assert deck.wait(op.id, timeout=30).status == "succeeded"
    with pytest.raises(DeckAPIError) as ended:
        deck.resume(op.id)
    assert ended.value.status == 409

    when = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = deck.pull("later:1", not_before=when)
    assert later.status == "scheduled" and later.not_before == when[:-1] + ".000Z"
    assert later.starts_at is not None
    deck.cancel(later.id)
    with pytest.raises(DeckAPIError) as bad:
        deck.pull("later:1", not_before="soon")
    assert bad.value.code == "invalid_not_before"


def test_a_pull_that_fails_ends_failed_with_the_reason(deck):
    op = deck.pull("nosuch:1")  # the fake knows no such model, as Ollama would not
    state = deck.wait(op.id, timeout=30)
    assert state.status == "failed"
    assert "file does not exist" in (state.error or "")


def test_update_and_delete(deck, fake_ollama):
    fake_ollama.add_model("old:1")
    fake_ollama.publish_update("old:1")
    (op,) = deck.update(["old:1"])
    assert op.kind == "update"
    final = deck.wait(op.id, timeout=30)
    assert final.status == "succeeded" and final.result and final.result.status == "updated"
    assert deck.delete("old:1") == "old:1"
    assert "old:1" not in fake_ollama.installed()


def test_the_token(fake_ollama, make_app, serve):
    live = serve(make_app(OLLAMA_DECK_TOKEN="right-token"))
    fake_ollama.allow_pull("m:1", QUICK)
    with pytest.raises(DeckAPIError) as refused:
        DeckClient(live.url).list()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with pytest.raises(DeckAPIError):
        DeckClient(live.url, token="wrong").list()
    client = DeckClient(live.url, token="right-token")
    op = client.pull("m:1")
    assert client.wait(op.id, timeout=30).status == "succeeded"  # the stream took it too


def test_a_deck_under_a_prefix(fake_ollama, make_app, serve):
    live = serve(make_app(OLLAMA_DECK_URL_PREFIX="/models"))
    fake_ollama.allow_pull("m:1", QUICK)
    client = DeckClient(live.url + "/models")
    assert client.wait(client.pull("m:1").id, timeout=30).status == "succeeded"
    with pytest.raises(DeckAPIError) as wrong:
        DeckClient(live.url).hosts()
    assert wrong.value.status == 404  # the URL without the prefix


# ---------------------------------------------------------------------- a deck restarted


def serve_deck(port: int, ollama_url: str, database: str, log) -> ServerProcess:
    env = {**os.environ, **FAST_SETTINGS}
    env.pop("OLLAMA_DECK_TOKEN", None)
    command = deck_command(
        "serve", "--port", str(port), "--ollama", ollama_url, "--database-url", database
    )
    return ServerProcess(command, port=port, env=env, log=log, timeout=30)


@pytest.mark.gunicorn
@pytest.mark.fault
@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_watch_survives_a_deck_restart_mid_pull(how, fake_ollama, tmp_path):
    """The deck stops (SIGTERM: it hands the pull back to the queue) or dies (SIGKILL of
    the arbiter and worker) mid-pull and starts again on the same port: the watch
    reconnects with Last-Event-ID, misses nothing, repeats nothing, and ends with done."""
    port = free_port()
    database = f"sqlite:///{tmp_path / 'deck.db'}"
    log = tmp_path / "deck.log"
    fake_ollama.allow_pull("m:1", PullScript(layers=[2_000_000, 1_429], step=50_000, hold_after=4))
    first = serve_deck(port, fake_ollama.url, database, log)
    second = serve_deck(port, fake_ollama.url, database, log)
    try:
        with first:
            client = DeckClient(first.url)
            op = client.pull("m:1")
            events: list[Event] = []
            retries: list[DeckAPIError] = []
            done = threading.Event()

            def watch() -> None:
                try:
                    for event in client.watch(op.id, patience=60, on_retry=retries.append):
                        events.append(event)
                finally:
                    done.set()

            threading.Thread(target=watch, daemon=True).start()
            wait_until(lambda: any(e.kind == "progress" and e.data.percent > 0 for e in events))
            if how == "killed":
                first.signal_group(signal.SIGKILL)
        wait_until(lambda: retries, timeout=30)  # the watch noticed
        before = len(events)
        with second:
            wait_until(lambda: client.get(op.id).attempts >= 2, timeout=30)
            fake_ollama.release("m:1")
            assert done.wait(60), f"the watch did not end; events: {events[-3:]}"
            kept = client.get(op.id, log=300).log or []
    finally:
        first.stop()
        second.stop()
    assert_each_once(events)
    assert len(events) > before, "nothing came after the restart"
    assert events[-1].final and events[-1].data.status == "succeeded", log.read_text()[-3000:]
    assert sum(1 for e in events if e.final) == 1
    # Nothing missed: every log line after the first event came, across the restart.
    watched = {e.id for e in events if e.kind == "log"}
    assert {line.seq for line in kept if line.seq > events[0].id} <= watched
