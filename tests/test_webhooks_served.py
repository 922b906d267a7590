"""Webhooks lose nothing across a failing receiver, a receiver that is down, workers that
die (kill -9) and a restart of the deck: ``ollama-deck serve --workers 2`` on a SQLite file,
a receiver on 127.0.0.1 (tests/receiver.py).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .harness import deck_command
from .harness import ServerProcess
from .helpers import free_port
from .helpers import wait_until
from .receiver import Receiver

pytestmark = [pytest.mark.gunicorn, pytest.mark.fault]
SECRET = "served-hook-secret"
FINAL = {"succeeded", "failed", "cancelled", "interrupted"}


def serve_deck(fake: FakeOllama, database: Path, hook: str, log: Path) -> ServerProcess:
    port = free_port()
    env = dict(
        os.environ,
        OLLAMA_HOST=fake.url,
        OLLAMA_DECK_HEARTBEAT_SECONDS="0.2",
        OLLAMA_DECK_WEBHOOK_URLS=hook,
        OLLAMA_DECK_WEBHOOK_SECRET=SECRET,
        OLLAMA_DECK_WEBHOOK_ON_START="1",
        OLLAMA_DECK_WEBHOOK_RETRY_SECONDS="0.2",
        OLLAMA_DECK_WEBHOOK_TIMEOUT="2",
    )
    command = deck_command(
        "serve", "--port", str(port), "--workers", "2", "--database-url", f"sqlite:///{database}"
    )
    deck = ServerProcess(command, port=port, env=env, log=log, keep_alive=False)
    deck.start()
    return deck.wait_ready()


def outbox(database: Path) -> list[tuple[str, str, int, str]]:
    """(id, status, attempts, event) of every delivery, read from the file itself."""
    with sqlite3.connect(database, timeout=30) as conn:
        return conn.execute(
            "SELECT id, status, attempts, event FROM ollama_deck_webhook_delivery"
        ).fetchall()


def run_pulls(deck: ServerProcess, models: list[str]) -> list[str]:
    ids = []
    for model in models:
        response = deck.post("/api/models/pull", json={"model": model})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    for op_id in ids:
        wait_until(lambda op_id=op_id: deck.get(f"/progress/{op_id}").json()["status"] in FINAL)
    return ids


def test_every_delivery_arrives_through_failures_an_outage_and_a_restart(tmp_path):
    database = tmp_path / "deck.db"
    log = tmp_path / "deck.log"
    receiver = Receiver(fail_first=3).start()  # its first answers are 500s
    fake = FakeOllama().start()
    decks: list[ServerProcess] = []
    try:
        for name in ("one", "two", "three"):
            fake.allow_pull(f"{name}:1b", PullScript(layers=[20_000], step=10_000))
        deck = serve_deck(fake, database, receiver.url + "/hook", log)
        decks.append(deck)
        ops = run_pulls(deck, ["one:1b", "two:1b", "nosuch:1b"])
        wait_until(lambda: len(receiver.delivered()) >= 2, timeout=30)

        receiver.stop()  # down: what is left and what comes now waits in the outbox
        ops += run_pulls(deck, ["three:1b"])

        def retried_in_vain() -> bool:
            rows = outbox(database)
            return any(status == "pending" and attempts >= 1 for _, status, attempts, _ in rows)

        wait_until(retried_in_vain, timeout=30)
        deck.kill()  # every worker dies at once: no clean shutdown, leases left as they are

        deck = serve_deck(fake, database, receiver.url + "/hook", log)  # still down
        decks.append(deck)
        before = {row[0]: row[2] for row in outbox(database)}

        def tried_after_restart() -> bool:
            return any(
                status == "pending" and attempts > before.get(delivery_id, 0)
                for delivery_id, status, attempts, _ in outbox(database)
            )

        wait_until(tried_after_restart, timeout=30)
        receiver.start()  # back, on the same port

        def all_settled() -> bool:
            rows = outbox(database)
            return bool(rows) and all(status != "pending" for _, status, _, _ in rows)

        wait_until(all_settled, timeout=60)
    finally:
        for deck in decks:
            deck.stop()
        receiver.stop()
        fake.stop()

    rows = outbox(database)
    # Each operation told once that it started and once that it ended.
    assert len(rows) == 2 * len(ops)
    assert {status for _, status, _, _ in rows} == {"delivered"}, rows
    taken = receiver.delivered()
    assert {r.delivery for r in taken} == {row[0] for row in rows}  # no delivery id lost
    assert all(r.signed_by(SECRET) for r in receiver.received)
    finished = {r.json["operation"]["id"] for r in taken if r.json["event"] == "operation.finished"}
    assert finished == set(ops)
    assert any(attempts > 1 for _, _, attempts, _ in rows)  # some needed more than one try
