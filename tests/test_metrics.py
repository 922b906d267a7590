"""``GET /metrics``: parsed with prometheus_client's own parser, the same from any process.

The numbers come from the database (tallies written with each operation's end, each
process's observations added every few seconds), so two apps on one database, as two
workers are, answer alike; the scale-out test (tests/test_scaleout.py) does it with four
gunicorn workers on PostgreSQL.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollama_deck.lifecycle import ACTIVE
from ollama_deck.testing import PullScript
from ollama_deck.testing import UNKNOWN_MANIFEST

from .helpers import wait_until

READ = "read-token-3b1e"
WRITE = "write-token-77aa"
TOKENS = f"grafana:read:{READ},ops:write:{WRITE}"

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """Every sample by (name, labels), as Prometheus would read the page."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(client, headers=None) -> Samples:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.get_data(as_text=True))


def drain_pulls(app, fake_ollama, *models: str) -> list[dict]:
    client = app.test_client()
    ops = []
    for model in models:
        response = client.post("/api/models/pull", json={"model": model})
        assert response.status_code == 202, response.get_data(as_text=True)
        ops.append(response.json)
    from ollama_deck.state import setup_of

    setup_of(app).state(app).runner.drain()
    return [client.get(f"/progress/{op['id']}").json for op in ops]


@pytest.fixture
def drained_app(make_app):
    return make_app(OLLAMA_DECK_START_RUNNER=False)


def test_metrics_after_pulls_that_succeed_and_fail(fake_ollama, drained_app):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[300_000, 1_000], step=100_000))
    ok, failed = drain_pulls(drained_app, fake_ollama, "llama3.2:1b", "nosuch:7b")
    assert (ok["status"], failed["status"]) == ("succeeded", "failed")
    assert UNKNOWN_MANIFEST in failed["error"]
    client = drained_app.test_client()

    samples = scrape(client)
    assert sample(samples, "ollama_deck_database_up") == 1
    total = "ollama_deck_operations_total"
    assert sample(samples, total, kind="pull", status="succeeded", host="default") == 1
    assert sample(samples, total, kind="pull", status="failed", host="default") == 1
    assert sample(samples, "ollama_deck_pull_bytes_total", host="default") == 301_000
    duration = "ollama_deck_pull_duration_seconds"
    assert sample(samples, duration + "_count", host="default") == 1  # the success only
    assert sample(samples, duration + "_bucket", host="default", le="+Inf") == 1
    # Every active status of the lifecycle is listed, at 0 now.
    for status in ACTIVE:
        assert sample(samples, "ollama_deck_operations", status=status, host="default") == 0
    assert sample(samples, "ollama_deck_ollama_up", host="default") == 1
    assert sample(samples, "ollama_deck_sse_watchers") == 0
    assert sample(samples, "ollama_deck_webhook_deliveries_pending") == 0

    # The Ollama requests of the pulls reach the tallies at the process's next flush.
    requests = "ollama_deck_ollama_request_seconds_count"
    assert wait_until(
        lambda: sample(scrape(client), requests, host="default", endpoint="/api/pull") == 2
    )


def test_a_queued_operation_counts_as_active(fake_ollama, drained_app):
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[1_000]))
    client = drained_app.test_client()
    assert client.post("/api/models/pull", json={"model": "llama3.2:1b"}).status_code == 202
    samples = scrape(client)
    assert sample(samples, "ollama_deck_operations", status="queued", host="default") == 1
    assert sample(samples, "ollama_deck_operations", status="running", host="default") == 0


def test_counters_outlive_the_operations_they_count(fake_ollama, drained_app):
    """Finished operations are forgotten (retention, Clear finished); what /metrics counted
    must not go down with them, or Prometheus sees a counter reset."""
    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[5_000], step=5_000))
    drain_pulls(drained_app, fake_ollama, "llama3.2:1b", "nosuch:7b")
    client = drained_app.test_client()
    assert len(client.delete("/progress").json["deleted"]) == 2

    samples = scrape(client)
    total = "ollama_deck_operations_total"
    assert sample(samples, total, kind="pull", status="succeeded", host="default") == 1
    assert sample(samples, total, kind="pull", status="failed", host="default") == 1
    assert sample(samples, "ollama_deck_pull_bytes_total", host="default") == 5_000


def test_two_processes_on_one_database_answer_alike(fake_ollama, make_app):
    """What one process saw (its Ollama requests) shows in the other's answer too."""
    first = make_app(OLLAMA_DECK_START_RUNNER=False)
    second = make_app(OLLAMA_DECK_START_RUNNER=False)
    fake_ollama.add_model("llama3.2:1b")
    one, two = first.test_client(), second.test_client()
    assert two.get("/metrics").status_code == 200  # the second is up (and flushing)
    for _ in range(3):
        assert one.get("/api/models").status_code == 200  # only the first asks Ollama

    def alike() -> bool:
        a, b = scrape(one), scrape(two)
        tags = sample(a, "ollama_deck_ollama_request_seconds_count", host="default",
                      endpoint="/api/tags")  # fmt: skip
        return a == b and tags is not None and tags >= 3

    assert wait_until(alike)


def test_an_unreachable_ollama_is_down(fake_ollama, drained_app):
    fake_ollama.stop()  # nobody heard from it yet: the scrape asks it itself
    samples = scrape(drained_app.test_client())
    assert sample(samples, "ollama_deck_ollama_up", host="default") == 0
    assert sample(samples, "ollama_deck_database_up") == 1


def test_with_tokens_metrics_needs_one_and_a_read_token_will_do(make_app):
    client = make_app(OLLAMA_DECK_TOKENS=TOKENS).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (
        sample(scrape(client, {"Authorization": f"Bearer {READ}"}), "ollama_deck_database_up") == 1
    )


def test_event_streams_are_summed_over_processes(make_app, serve):
    from .sse import SSEClient

    # A closed stream is noticed at its next frame: a heartbeat comes every 0.2 s here.
    first = serve(make_app(OLLAMA_DECK_SSE_HEARTBEAT_SECONDS=0.2))
    second = make_app().test_client()
    stream = SSEClient(first.url + "/progress/stream")
    try:

        def watching() -> float | None:
            return sample(scrape(second), "ollama_deck_sse_watchers")

        assert wait_until(lambda: watching() == 1)  # open in the first, seen by the second
    finally:
        stream.close()
    assert wait_until(lambda: watching() == 0)
