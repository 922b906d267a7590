"""The Redis bus without Redis: what it says of itself, and events from the database.

Nothing listens on the Redis port here, so the bus is lost from the start; the Redis
outages of a live server (stopped, killed, restarted) are in test_faults.py.
"""

from __future__ import annotations

import pytest

from ollama_deck import schema
from ollama_deck.db import make_engine
from ollama_deck.services.bus import RedisBus
from ollama_deck.services.events import EventHub
from ollama_deck.services.feed import ChangeFeed
from ollama_deck.services.store import OperationStore

from .helpers import free_port
from .helpers import wait_until

HOST = "http://127.0.0.1:1"


@pytest.fixture
def engine(sqlite_url):
    engine = make_engine(sqlite_url)
    schema.upgrade(engine)
    yield engine
    engine.dispose()


def test_without_redis_events_come_from_the_database_and_status_says_so(engine):
    hub = EventHub()
    before = OperationStore(engine, hub)  # a change committed before the bus started
    before.create(kind="pull", model="old:1", model_key="old:1", host=HOST)
    bus = RedisBus(
        hub,
        ChangeFeed(engine),
        f"redis://127.0.0.1:{free_port()}/0",  # refused: Redis is down
        "test-channel",
        fallback_interval=0.05,
    )
    start = hub.position()
    bus.start()
    try:
        wait_until(lambda: bus.describe()["error"] != "not connected yet")
        state = bus.describe()
        assert (state["connected"], state["via"]) == (False, "database"), state
        other = OperationStore(engine, EventHub())  # another process: it publishes elsewhere
        op = other.create(kind="pull", model="new:1", model_key="new:1", host=HOST)
        wait_until(lambda: any(e.operation_id == op["id"] for e in hub.read(start)[0]))
        events, _, _ = hub.read(start)
        assert {e.operation_id for e in events} == {op["id"]}, "the past was replayed"
        assert [e.seq for e in events] == sorted(e.seq for e in events)
    finally:
        bus.close()
