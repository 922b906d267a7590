"""Webhooks from the outbox: signed, retried, never sent elsewhere, shown in
``GET /api/webhooks/deliveries``; a receiver on 127.0.0.1 (tests/receiver.py).

The restart and worker-death case runs real processes: tests/test_webhooks_served.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from ollama_deck.services.webhooks import redact
from ollama_deck.services.webhooks import sign
from ollama_deck.services.webhooks import verify
from ollama_deck.state import setup_of
from ollama_deck.testing import PullScript

from .helpers import wait_until
from .receiver import Receiver

SECRET = "hook-secret-5d0c"


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


def hooked_app(make_app, urls: str, **overrides):
    settings = {
        "OLLAMA_DECK_WEBHOOK_URLS": urls,
        "OLLAMA_DECK_WEBHOOK_SECRET": SECRET,
        "OLLAMA_DECK_WEBHOOK_RETRY_SECONDS": 0.05,
        "OLLAMA_DECK_WEBHOOK_TIMEOUT": 5,
        **overrides,
    }
    app = make_app(**settings)
    app.test_client().get("/progress")  # serving from here: the upkeep thread sends
    return app


def pull(app, model: str) -> dict:
    client = app.test_client()
    response = client.post("/api/models/pull", json={"model": model})
    assert response.status_code == 202, response.get_data(as_text=True)
    op_id = response.json["id"]
    return wait_until(
        lambda: (
            (op := client.get(f"/progress/{op_id}").json)["status"] != "queued"
            and not op["active"]
            and op
        )
    )


def deliveries(app, **query) -> list[dict]:
    response = app.test_client().get("/api/webhooks/deliveries", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json["deliveries"]


def test_the_signature_is_githubs_convention():
    body = b'{"event":"operation.finished"}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    assert verify(SECRET, body, expected)
    assert not verify(SECRET, body + b" ", expected)
    assert not verify("other", body, expected) and not verify(SECRET, body, None)


def test_receivers_are_shown_without_their_secret_parts():
    assert redact("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com/…"
    assert redact("https://ntfy.sh/mytopic?auth=tk_123") == "https://ntfy.sh/…"
    assert redact("http://user:pw@127.0.0.1:9000/") == "http://127.0.0.1:9000"


def test_an_ended_pull_is_posted_signed_with_its_delivery_id(fake_ollama, make_app, receiver):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[20_000], step=10_000))
    app = hooked_app(make_app, receiver.url + "/hook")
    op = pull(app, "llama3.2:1b")
    (got,) = wait_until(receiver.delivered)
    assert got.path == "/hook"
    assert got.signed_by(SECRET)
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Ollama-Deck-Event"] == "operation.finished"
    assert got.headers["User-Agent"].startswith("ollama-deck/")
    body = got.json
    assert body["delivery"] == got.delivery
    assert body["event"] == "operation.finished"
    assert body["title"] == "Pull of llama3.2:1b succeeded"
    assert body["text"] == "Pull of llama3.2:1b succeeded on default: pulled"  # Slack's field
    assert {k: body["operation"][k] for k in ("id", "model", "host", "status", "message")} == {
        "id": op["id"],
        "model": "llama3.2:1b",
        "host": "default",
        "status": "succeeded",
        "message": "pulled",
    }
    (shown,) = wait_until(lambda: deliveries(app, status="delivered"))
    assert shown["id"] == got.delivery
    assert (shown["attempts"], shown["last_status"], shown["target"]) == (
        1,
        200,
        receiver.url + "/…",
    )
    assert shown["next_attempt_at"] is None and shown["finished_at"]


def test_a_failing_receiver_gets_the_same_delivery_again_until_it_takes_it(
    fake_ollama, make_app, receiver
):
    receiver.fail_first = 3
    app = hooked_app(make_app, receiver.url + "/hook")
    failed = pull(app, "nosuch:7b")  # an operation that fails is an event too
    assert failed["status"] == "failed"
    (got,) = wait_until(receiver.delivered)
    attempts = [r for r in receiver.received if r.delivery == got.delivery]
    assert [r.answered for r in attempts] == [500, 500, 500, 200]
    assert len({r.body for r in attempts}) == 1  # the same bytes, the same signature
    assert all(r.signed_by(SECRET) for r in attempts)
    assert got.json["text"].startswith("Pull of nosuch:7b failed on default: ")
    (shown,) = wait_until(lambda: deliveries(app, status="delivered"))
    assert shown["attempts"] == 4


def test_a_refusal_is_final_and_a_redirect_elsewhere_is_not_followed(
    fake_ollama, make_app, receiver
):
    receiver.answers["/gone"] = (410, {})
    receiver.answers["/moved"] = (307, {"Location": "/hook"})  # the same host: followed
    # Another host (by name: nothing is sent there, the sender refuses before connecting).
    elsewhere = f"http://localhost:{receiver.port}/hook"
    receiver.answers["/away"] = (307, {"Location": elsewhere})
    urls = ",".join(receiver.url + path for path in ("/gone", "/moved", "/away"))
    app = hooked_app(make_app, urls)
    pull(app, "nosuch:7b")

    def settled() -> list[dict]:
        found = deliveries(app)
        return len(found) == 3 and all(d["status"] != "pending" for d in found) and found

    by_target = {}
    for delivery in wait_until(settled):
        by_target[delivery["last_status"]] = delivery
    assert by_target[410]["status"] == "failed" and by_target[410]["attempts"] == 1
    assert by_target[200]["status"] == "delivered"  # /moved, then /hook
    away = by_target[307]
    assert away["status"] == "failed"
    assert "another host (localhost): not followed" in away["last_error"]
    assert sorted(r.path for r in receiver.received) == ["/away", "/gone", "/hook", "/moved"]


def test_starts_are_sent_when_asked(fake_ollama, make_app, receiver):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[20_000], step=10_000))
    app = hooked_app(make_app, receiver.url, OLLAMA_DECK_WEBHOOK_ON_START=True)
    op = pull(app, "llama3.2:1b")
    got = wait_until(lambda: len(receiver.delivered()) == 2 and receiver.delivered())
    assert sorted(r.json["event"] for r in got) == ["operation.finished", "operation.started"]
    assert {r.json["operation"]["id"] for r in got} == {op["id"]}
    started = deliveries(app, operation=op["id"])
    assert {d["event"] for d in started} == {"operation.started", "operation.finished"}


def test_without_urls_nothing_is_written(fake_ollama, make_app):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[1_000]))
    app = make_app()
    pull(app, "llama3.2:1b")
    response = app.test_client().get("/api/webhooks/deliveries")
    assert response.json == {"deliveries": [], "receivers": 0}


def test_a_delivery_is_written_with_the_end_it_tells_of(fake_ollama, make_app, receiver):
    """The outbox row commits in the transaction of the final write: seen from the
    database, no operation is final without its deliveries."""
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[1_000]))
    receiver.stop()  # nothing is taken: every delivery stays in the outbox
    app = hooked_app(make_app, receiver.url, OLLAMA_DECK_START_RUNNER=False)
    client = app.test_client()
    op_id = client.post("/api/models/pull", json={"model": "llama3.2:1b"}).json["id"]
    state = setup_of(app).state(app)
    assert deliveries(app) == []  # queued: no event yet
    state.runner.drain()
    (written,) = deliveries(app, operation=op_id)
    assert written["event"] == "operation.finished"
    with state.engine.connect() as conn:
        body = conn.exec_driver_sql(
            "SELECT body FROM ollama_deck_webhook_delivery WHERE id = ?", (written["id"],)
        ).scalar()
    assert json.loads(body)["operation"]["status"] == "succeeded"


def test_a_delivery_held_by_a_dead_process_is_taken_over_at_once(make_app, receiver):
    """A lease keeps others off a delivery being sent; a process of this machine that died
    mid-send (kill -9) holds it no longer, while one of another machine holds it till the
    lease passes."""
    import socket
    import subprocess
    import sys
    import time

    from ollama_deck.services.upkeep import holder_gone

    app = hooked_app(make_app, receiver.url, OLLAMA_DECK_START_RUNNER=False)
    state = setup_of(app).state(app)
    state.upkeep.close()  # this test claims by hand
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holders = {
        "dead": f"{socket.gethostname()}:{dead.pid}:abcd1234",
        "elsewhere": "another-machine:1:abcd1234",
    }
    now = time.time()
    with state.engine.begin() as conn:
        for name, holder in holders.items():
            conn.exec_driver_sql(
                "INSERT INTO ollama_deck_webhook_delivery (id, event, operation_id, url, body,"
                " status, attempts, created_at, next_attempt_at, claimed_by, claimed_until)"
                " VALUES (?, 'operation.finished', 'op', ?, '{}', 'pending', 1, ?, ?, ?, ?)",
                (name, receiver.url, now, now, holder, now + 3600),
            )
    assert holder_gone(holders["dead"]) and not holder_gone(holders["elsewhere"])
    taken = state.outbox.claim("me:1:x", 5, 60, holder_gone)
    assert [row["id"] for row in taken] == ["dead"]
    assert taken[0]["attempts"] == 2 and taken[0]["claimed_by"] == "me:1:x"
