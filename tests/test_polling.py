"""Poll answers are rendered once per version of an operation, and never stale."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from sqlalchemy import event

from ollama_deck import schema
from ollama_deck.db import make_engine
from ollama_deck.services.bus import LocalBus
from ollama_deck.services.bus import PollBus
from ollama_deck.services.bus import RedisBus
from ollama_deck.services.events import EventHub
from ollama_deck.services.events import gone_event
from ollama_deck.services.events import GONE_NAMED
from ollama_deck.services.events import make_event
from ollama_deck.services.events import VersionBook
from ollama_deck.services.feed import ChangeFeed
from ollama_deck.services.polling import PollAnswers
from ollama_deck.services.store import OperationStore

from .helpers import wait_until
from .test_scaleout import REDIS_VARIABLE

HOST = "http://127.0.0.1:1"


@pytest.fixture
def store(database_url):
    engine = make_engine(database_url)
    schema.upgrade(engine)
    yield OperationStore(engine, EventHub(), log_lines=10)
    engine.dispose()


def render(row, logs) -> bytes:
    return json.dumps({"percent": row["percent"], "log": [r["text"] for r in logs]}).encode()


def test_every_committed_change_shows_at_the_next_poll(store):
    answers = PollAnswers(store)
    op = store.create(kind="pull", model="m:1", model_key="m:1", host=HOST)
    first = json.loads(answers.answer(op["id"], 5, render))
    assert first == {"percent": 0.0, "log": ["pull of m:1 queued"]}
    assert answers.answer(op["id"], 5, render) is answers.answer(op["id"], 5, render)
    assert (answers.hits, answers.misses) == (2, 1)

    store._update(op["id"], {"percent": 40.0})
    assert json.loads(answers.answer(op["id"], 5, render))["percent"] == 40.0
    store._update(op["id"], {}, ["a log line alone also changes the answer"])
    assert json.loads(answers.answer(op["id"], 5, render))["log"][-1].startswith("a log line")
    # Another process's commit (a second store over the same database) shows as well.
    other = OperationStore(store.engine, EventHub())
    other._update(op["id"], {"percent": 70.0})
    assert json.loads(answers.answer(op["id"], 5, render))["percent"] == 70.0


def test_log_lengths_are_answered_apart_and_a_forgotten_operation_is_gone(store):
    answers = PollAnswers(store)
    op = store.create(kind="pull", model="m:1", model_key="m:1", host=HOST)
    store._update(op["id"], {"status": "failed", "finished_at": 1.0}, ["one", "two"])
    assert json.loads(answers.answer(op["id"], 1, render))["log"] == ["two"]
    assert json.loads(answers.answer(op["id"], 0, render))["log"] == []
    assert len(json.loads(answers.answer(op["id"], 10, render))["log"]) == 3
    assert store.delete_finished(op["id"])
    assert answers.answer(op["id"], 1, render) is None


def test_the_answers_kept_are_bounded(store):
    answers = PollAnswers(store, capacity=3)
    ids = [
        store.create(kind="pull", model=f"m:{i}", model_key=f"m:{i}", host=HOST)["id"]
        for i in range(5)
    ]
    for op_id in ids:
        answers.answer(op_id, 5, render)
    assert len(answers._answers) == 3


# -- answers from the version book: no read while the bus has heard every commit ----------


class Reads:
    """Counts the connections taken from the engine's pool: each read takes one."""

    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine, "checkout", self._taken)

    def _taken(self, *_args) -> None:
        self.count += 1


def book_of(store: OperationStore, hub: EventHub, bus) -> PollAnswers:
    return PollAnswers(store, versions=hub.versions, live=bus.live)


def test_with_one_process_polls_read_nothing_yet_show_every_change(database_url):
    engine = make_engine(database_url)
    schema.upgrade(engine)
    hub = EventHub()
    bus = LocalBus(hub)
    store = OperationStore(engine, bus, log_lines=10)
    answers = book_of(store, hub, bus)
    try:
        op = store.create(kind="pull", model="m:1", model_key="m:1", host=HOST)
        reads = Reads(engine)
        first = json.loads(answers.answer(op["id"], 5, render))
        assert first["percent"] == 0.0
        assert reads.count == 1, "rendered once: one read, no version read"
        for _ in range(20):
            assert json.loads(answers.answer(op["id"], 5, render)) == first
        assert reads.count == 1, "polls of an unchanged operation read nothing"

        store._update(op["id"], {"percent": 40.0}, ["forty"])
        reads.count = 0
        polled = json.loads(answers.answer(op["id"], 5, render))
        assert (polled["percent"], polled["log"][-1]) == (40.0, "forty")
        assert reads.count == 1, "the change is read once, to render it"

        store._update(op["id"], {"status": "failed", "finished_at": 1.0})
        assert json.loads(answers.answer(op["id"], 5, render))["percent"] == 40.0
        assert store.delete_finished(op["id"]) == [op["id"]]
        assert answers.answer(op["id"], 5, render) is None, "a deletion is heard as well"
        assert answers.answer(str(uuid.uuid4()), 5, render) is None
    finally:
        engine.dispose()


def test_a_bus_that_hears_late_leaves_every_poll_to_the_database(store):
    """The poll bus reads other processes' commits a tick late: polls read each time."""
    hub = EventHub()
    bus = PollBus(hub, ChangeFeed(store.engine))
    answers = book_of(store, hub, bus)
    op = store.create(kind="pull", model="m:1", model_key="m:1", host=HOST)
    answers.answer(op["id"], 5, render)
    reads = Reads(store.engine)
    for _ in range(5):
        answers.answer(op["id"], 5, render)
    assert reads.count == 5


def test_the_book_forgets_what_was_deleted_and_what_a_gap_may_hide():
    book = VersionBook(capacity=3)
    book.note([make_event(5, "a", "progress", {}), make_event(4, "a", "log", {})])
    book.note([make_event(6, "b", "progress", {})])
    assert (book.known("a"), book.known("b"), book.known("c")) == (5, 6, None)

    generation = book.generation  # a reader starts a database read of c ...
    book.note([gone_event(7, ["a"])])  # ... a deletion arrives meanwhile ...
    book.learn("c", 3, generation)  # ... so what it read may be stale: not kept
    assert (book.known("a"), book.known("c")) == (None, None)
    book.learn("c", 3, book.generation)
    book.learn("b", 2, book.generation)  # older than what it heard: kept as it was
    assert (book.known("b"), book.known("c")) == (6, 3)

    book.note([gone_event(8, [f"x{i}" for i in range(GONE_NAMED + 1)])])  # many: all
    assert book.known("b") is None
    generation = book.generation  # a read of d begins; d changes and is heard (seq 10) ...
    for i, name in enumerate("defg"):
        book.note([make_event(10 + i, name, "progress", {})])
    assert len(book._seqs) <= 3, "bounded: over capacity it starts again"
    book.learn("d", 9, generation)  # ... then forgotten at capacity: the older read is not kept
    assert book.known("d") is None
    book.reset()
    assert book.known("g") is None


def test_a_hub_keeps_deletions_out_of_its_streams():
    hub = EventHub()
    start = hub.position()
    hub.publish([make_event(1, "a", "progress", {}), gone_event(2, ["a"])])
    events, _, _ = hub.read(start)
    assert [e.seq for e in events] == [1] and hub.last_seq == 2
    assert hub.versions.known("a") is None


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get(REDIS_VARIABLE)
    if not url:
        pytest.skip(f"the Redis bus needs Redis: set {REDIS_VARIABLE}")
    return url


def test_with_redis_other_processes_changes_and_deletions_reach_the_book(database_url, redis_url):
    """Two processes (two stores, hubs and buses over one database and one channel)."""
    engine = make_engine(database_url)
    schema.upgrade(engine)
    channel = f"ollama-deck:test:{uuid.uuid4().hex}"
    buses = []

    def process() -> tuple[OperationStore, PollAnswers]:
        hub = EventHub()
        bus = RedisBus(hub, ChangeFeed(engine), redis_url, channel, safety_interval=0.2)
        buses.append(bus)
        bus.start()
        wait_until(bus.live)
        store = OperationStore(engine, bus, log_lines=10)
        return store, book_of(store, hub, bus)

    try:
        (here, answers), (there, _) = process(), process()
        op = there.create(kind="pull", model="m:1", model_key="m:1", host=HOST)
        op_id = op["id"]

        def percent() -> float:
            return json.loads(answers.answer(op_id, 5, render))["percent"]

        assert percent() == 0.0
        there._update(op_id, {"percent": 55.0})
        wait_until(lambda: percent() == 55.0)
        here._update(op_id, {"percent": 60.0})
        assert percent() == 60.0, "this process's own commit shows at once"
        there._update(op_id, {"status": "failed", "finished_at": 1.0})
        wait_until(lambda: answers.versions.known(op_id) == there.version(op_id))
        assert there.delete_finished(op_id)
        wait_until(lambda: answers.answer(op_id, 5, render) is None)

        # A deletion whose event never came (a publisher that lost it): the gap is read
        # from the database within the safety interval, and the book starts again.
        lost = there.create(kind="pull", model="m:2", model_key="m:2", host=HOST)
        there._update(lost["id"], {"status": "failed", "finished_at": 1.0})
        wait_until(lambda: answers.answer(lost["id"], 5, render) is not None)
        wait_until(lambda: answers.versions.known(lost["id"]) is not None)
        silent = OperationStore(engine, EventHub())  # publishes to nobody
        assert silent.delete_finished(lost["id"])
        wait_until(lambda: answers.answer(lost["id"], 5, render) is None, timeout=10)
    finally:
        for bus in buses:
            bus.close()
        engine.dispose()
