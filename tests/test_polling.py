"""Poll answers are rendered once per version of an operation, and never stale."""

from __future__ import annotations

import json

import pytest

from ollama_deck import schema
from ollama_deck.db import make_engine
from ollama_deck.services.events import EventHub
from ollama_deck.services.polling import PollAnswers
from ollama_deck.services.store import OperationStore

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
