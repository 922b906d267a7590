"""Fleets: one action across hosts as a group, declared model sets planned and applied.

Two fake Ollama hosts (``gpu1``, ``gpu2``) over real sockets, the deck over a real SQLite
file; the plan's and the group's decisions are also checked alone, as tables.
"""

from __future__ import annotations

import pytest

from ollama_deck.lifecycle import group_status
from ollama_deck.lifecycle import may_join
from ollama_deck.lifecycle import Status
from ollama_deck.services.fleet import HostDesire
from ollama_deck.services.fleet import plan_fleet
from ollama_deck.services.fleet import plan_host
from ollama_deck.services.groups import aggregate
from ollama_deck.testing import FakeOllama
from ollama_deck.testing import PullScript

from .conftest import deck_of
from .helpers import wait_until
from .sse import SSEClient

QUICK = PullScript(layers=[40_000, 1_429], step=10_000)
HELD = PullScript(layers=[100_000], step=10_000, hold_after=2)
BROKEN = "max retries exceeded: unexpected EOF"


@pytest.fixture
def second_ollama():
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture
def fleet_app(make_app, fake_ollama, second_ollama):
    """A deck over both hosts (SQLite)."""
    return make_app(OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url, "gpu2": second_ollama.url})


@pytest.fixture
def fleet(fleet_app):
    return fleet_app.test_client()


@pytest.fixture
def any_fleet(database_url, make_app, fake_ollama, second_ollama):
    """The same on SQLite and on PostgreSQL where the tests have it (its schema is asked
    for first, so it is dropped only after the deck stopped): for the cases where the
    database decides (groups made with their children, a child's change rewriting them)."""
    hosts = {"gpu1": fake_ollama.url, "gpu2": second_ollama.url}
    return make_app(OLLAMA_DECK_OLLAMA_HOSTS=hosts, database_url=database_url).test_client()


def finished(client, op_id: str) -> dict:
    """The operation once it has ended."""

    def ended():
        op = client.get(f"/progress/{op_id}").json
        return op if not op["active"] else None

    return wait_until(ended)


def group_rows(client) -> list[dict]:
    return [op for op in client.get("/progress").json["operations"] if op["kind"] == "group"]


# ---------------------------------------------------------------------- one action, hosts


def test_a_group_pull_on_both_hosts(any_fleet, fake_ollama, second_ollama):
    fleet = any_fleet
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", QUICK)
    answer = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": ["gpu1", "gpu2"]})
    assert answer.status_code == 202
    group = answer.json
    assert (group["kind"], group["model"], group["host"]) == ("group", "m:1", "gpu1,gpu2")
    assert group["host_url"] == ""  # no one URL
    assert [c["host"] for c in group["children"]] == ["gpu1", "gpu2"]
    done = finished(fleet, group["id"])
    assert done["status"] == "succeeded" and done["percent"] == 100.0
    assert [c["status"] for c in done["children"]] == ["succeeded", "succeeded"]
    # Each host saw exactly one pull; the group's bytes add up its children's.
    assert fake_ollama.pull_count("m:1") == 1 and second_ollama.pull_count("m:1") == 1
    children = [fleet.get(f"/progress/{c['id']}").json for c in done["children"]]
    assert all(c["status"] == "succeeded" and c["kind"] == "pull" for c in children)
    assert done["total_bytes"] == sum(c["total_bytes"] for c in children) > 0
    assert "m:1" in fake_ollama.installed() and "m:1" in second_ollama.installed()


def test_a_group_whose_children_fail_fails_and_each_says_why(any_fleet, fake_ollama, second_ollama):
    fleet = any_fleet
    fake_ollama.allow_pull("m:1", PullScript(layers=[40_000], step=10_000, error_after=2))
    second_ollama.allow_pull(
        "m:1", PullScript(layers=[40_000], step=10_000, error_after=1, error="disk full")
    )
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    done = finished(fleet, group["id"])
    assert done["status"] == "failed"
    reasons = {c["host"]: (c["status"], c["error"]) for c in done["children"]}
    assert reasons == {"gpu1": ("failed", BROKEN), "gpu2": ("failed", "disk full")}
    assert "gpu1: pull of m:1 failed" in done["error"] and "disk full" in done["error"]
    lines = [line["text"] for line in fleet.get(f"/progress/{group['id']}?log=50").json["log"]]
    assert any(line.startswith("gpu2: pull of m:1 failed") for line in lines)


def test_a_group_ends_only_when_every_child_has(fleet, fake_ollama, second_ollama):
    fake_ollama.allow_pull("m:1", PullScript(layers=[40_000], step=10_000, error_after=1))
    second_ollama.allow_pull("m:1", HELD)
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    gpu1 = group["children"][0]["id"]
    wait_until(lambda: fleet.get(f"/progress/{gpu1}").json["status"] == "failed")
    wait_until(lambda: second_ollama.active_pulls == 1)
    assert fleet.get(f"/progress/{group['id']}").json["status"] == "running"
    second_ollama.release("m:1")
    assert finished(fleet, group["id"])["status"] == "failed"


def test_a_child_joins_the_pull_already_running_on_its_host(fleet, fake_ollama, second_ollama):
    fake_ollama.allow_pull("m:1", HELD)
    second_ollama.allow_pull("m:1", QUICK)
    alone = fleet.post("/api/models/pull", json={"model": "m:1", "host": "gpu1"}).json
    wait_until(lambda: fake_ollama.active_pulls == 1)
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    assert group["children"][0]["id"] == alone["id"]  # joined, not a second pull
    fake_ollama.release("m:1")
    assert finished(fleet, group["id"])["status"] == "succeeded"
    assert fake_ollama.pull_count("m:1") == 1 and second_ollama.pull_count("m:1") == 1


def test_the_group_stream_carries_the_children_and_ends_with_the_group(
    fleet_app, serve, fake_ollama, second_ollama
):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", HELD)
    live = serve(fleet_app)
    group = live.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json()
    children = {c["id"] for c in group["children"]}
    stream = SSEClient(live.url + group["urls"]["stream"])
    wait_until(lambda: fake_ollama.active_pulls == 1 and second_ollama.active_pulls == 1)
    for fake in (fake_ollama, second_ollama):
        fake.release("m:1")
    events = stream.read_to_end(timeout=20)
    stream.close()
    states = [e.data for e in events if e.event in ("progress", "done")]
    assert {s["id"] for s in states} == children | {group["id"]}
    assert events[-1].event == "done" and events[-1].data["id"] == group["id"]
    ends = [s["id"] for s in states if not s["active"]]
    assert ends[-1] == group["id"] and set(ends[:-1]) == children  # the children ended first


def test_cancelling_a_group_cancels_its_children(fleet, fake_ollama, second_ollama):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", HELD)
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    wait_until(lambda: fake_ollama.active_pulls == 1 and second_ollama.active_pulls == 1)
    assert fleet.post(group["urls"]["cancel"]).status_code in (200, 202)
    done = finished(fleet, group["id"])
    assert done["status"] == "cancelled"
    assert [c["status"] for c in done["children"]] == ["cancelled", "cancelled"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"model": "m:1", "host": "gpu1", "hosts": ["gpu2"]}, "duplicate_field"),
        ({"model": "m:1", "hosts": ["gpu1", "gpu9"]}, "unknown_host"),
        ({"model": "m:1", "hosts": []}, "unknown_host"),
        ({"model": "m:1", "hosts": "all"}, "unknown_host"),
        ({"model": "evil.example:8080/x/m:1", "hosts": "*"}, "registry_not_allowed"),
    ],
)
def test_a_bad_scope_is_refused_and_nothing_starts(fleet, body, code):
    answer = fleet.post("/api/models/pull", json=body)
    assert answer.status_code == 400
    assert answer.json["error"]["code"] == code
    assert fleet.get("/progress").json["operations"] == []


def test_delete_across_hosts_is_a_group_of_deletes(fleet, fake_ollama, second_ollama):
    fake_ollama.add_model("old:1")
    fleet.put("/api/active-model", json={"model": "old:1"})
    answer = fleet.delete("/api/models/old:1?hosts=*")
    assert answer.status_code == 202
    done = finished(fleet, answer.json["id"])
    assert done["status"] == "succeeded"
    outcomes = [(c["host"], c["kind"], c["message"]) for c in done["children"]]
    assert outcomes == [("gpu1", "delete", "deleted"), ("gpu2", "delete", "not installed")]
    assert "old:1" not in fake_ollama.installed()
    assert fleet.get("/api/active-model").json == {"model": None}


def test_a_delete_waits_for_no_pull_slot(make_app, fake_ollama, second_ollama):
    """Deletes take no slot of the per-host limit: with a limit of 1 and a pull held on
    gpu1, a delete there still runs at once."""
    client = make_app(
        OLLAMA_DECK_OLLAMA_HOSTS={"gpu1": fake_ollama.url, "gpu2": second_ollama.url},
        OLLAMA_DECK_MAX_CONCURRENT_PULLS=1,
    ).test_client()
    fake_ollama.allow_pull("big:1", HELD)
    fake_ollama.add_model("old:1")
    pulling = client.post("/api/models/pull", json={"model": "big:1", "host": "gpu1"}).json
    wait_until(lambda: fake_ollama.active_pulls == 1)
    group = client.delete("/api/models/old:1?hosts=gpu1").json
    assert finished(client, group["id"])["status"] == "succeeded"
    assert client.get(f"/progress/{pulling['id']}").json["status"] == "running"
    fake_ollama.release("big:1")


def test_delete_across_hosts_is_refused_while_the_model_is_pulled(
    fleet, fake_ollama, second_ollama
):
    second_ollama.allow_pull("m:1", HELD)
    fake_ollama.add_model("m:1")
    fleet.post("/api/models/pull", json={"model": "m:1", "host": "gpu2"})
    wait_until(lambda: second_ollama.active_pulls == 1)
    answer = fleet.delete("/api/models/m:1?hosts=gpu1,gpu2")
    assert answer.status_code == 409
    assert "gpu2" in answer.json["error"]["message"]
    assert "m:1" in fake_ollama.installed()  # nothing was deleted anywhere
    assert group_rows(fleet) == []
    second_ollama.release("m:1")


def test_update_across_hosts(fleet, fake_ollama, second_ollama):
    fake_ollama.add_model("m:1")
    second_ollama.add_model("m:1")
    second_ollama.add_model("other:1")
    fake_ollama.publish_update("m:1")
    answer = fleet.post("/api/models/update", json={"models": ["m:1"], "hosts": "*"})
    assert answer.status_code == 202
    (group,) = answer.json["operations"]
    assert answer.json["ids"] == [group["id"]]
    done = finished(fleet, group["id"])
    assert done["status"] == "succeeded"
    assert [(c["host"], c["kind"]) for c in done["children"]] == [
        ("gpu1", "update"),
        ("gpu2", "update"),
    ]
    results = [fleet.get(f"/progress/{c['id']}").json["result"] for c in done["children"]]
    assert [r["status"] for r in results] == ["updated", "current"]
    missing = fleet.post("/api/models/update", json={"models": ["nope:1"], "hosts": "*"})
    assert missing.status_code == 404


def test_the_delete_query_takes_host_or_hosts(fleet):
    answer = fleet.delete("/api/models/m:1?host=gpu1&hosts=gpu2")
    assert (answer.status_code, answer.json["error"]["code"]) == (400, "duplicate_field")
    answer = fleet.delete("/api/models/m:1?hosts=gpu1,gpu7")
    assert (answer.status_code, answer.json["error"]["code"]) == (400, "unknown_host")


# ---------------------------------------------------------------------- the group, alone


@pytest.mark.parametrize(
    ("children", "status"),
    [
        ([], "succeeded"),
        (["queued", "queued"], "queued"),
        (["queued", "running"], "running"),
        (["succeeded", "queued"], "queued"),
        (["paused", "running"], "running"),
        (["paused", "paused", "succeeded"], "paused"),  # nothing moves until a resume
        (["paused", "scheduled"], "scheduled"),
        (["paused", "queued"], "queued"),
        (["failed", "running"], "running"),  # failed only after all ended
        (["succeeded", "succeeded"], "succeeded"),
        (["succeeded", "failed"], "failed"),
        (["cancelled", "failed"], "failed"),
        (["cancelled", "succeeded"], "cancelled"),
        (["interrupted", "cancelled"], "interrupted"),
    ],
)
def test_a_group_status_from_its_childrens(children, status):
    assert group_status(children) == status


@pytest.mark.parametrize(
    ("wanted", "running", "joins"),
    [
        ("pull", "pull", True),
        ("pull", "update", True),
        ("pull", "load", True),
        ("update", "pull", True),
        ("delete", "delete", True),
        ("delete", "pull", False),  # never delete under a pull
        ("delete", "load", False),
        ("pull", "delete", False),
    ],
)
def test_which_child_joins_what(wanted, running, joins):
    assert may_join(wanted, running) is joins


def child(status: str, percent: float = 0.0, done: int = 0, total: int = 0, **extra) -> dict:
    row = {
        "id": f"id-{status}-{percent}",
        "kind": "pull",
        "model": "m:1",
        "host": "http://a",
        "status": status,
        "percent": percent,
        "completed_bytes": done,
        "total_bytes": total,
        "speed": None,
        "eta_seconds": None,
        "message": status,
        "error": None,
    }
    return row | extra


def test_a_groups_figures_add_up_and_never_go_back():
    names = {"http://a": "gpu1"}
    state = aggregate(
        [
            child("running", 50.0, 50, 100, speed=10.0, eta_seconds=5.0),
            child("succeeded", 100.0, 20, 20),
        ],
        names,
    )
    assert (state.status, state.percent) == (Status.RUNNING, 75.0)
    assert (state.completed_bytes, state.total_bytes, state.speed) == (70, 120, 10.0)
    assert state.message == "1 of 2 done: 1 running, 1 succeeded"
    slower = aggregate([child("running", 10.0), child("queued")], names, floor=75.0)
    assert slower.percent == 75.0
    failed = aggregate([child("failed", 30.0, error="boom"), child("succeeded")], names)
    assert failed.status == Status.FAILED and failed.error == "gpu1: pull of m:1 failed (boom)"


# ---------------------------------------------------------------------- plans, alone


PLAN_CASES = {
    "missing and in place": (
        HostDesire(("a:1", "b:1"), False),
        ["b:1", "x:1"],
        {},
        {"missing": ["a:1"], "in_place": ["b:1"], "undeclared": ["x:1"]},
    ),
    "prune deletes only the undeclared": (
        HostDesire(("a:1",), True),
        ["a:1", "x:1", "y:1"],
        {},
        {"in_place": ["a:1"], "delete": ["x:1", "y:1"]},
    ),
    "never delete what an operation uses": (
        HostDesire(("a:1",), True),
        ["a:1", "x:1", "y:1"],
        {"x:1": "update", "y:1": "load"},
        {"in_place": ["a:1"], "busy": ["x:1", "y:1"]},
    ),
    "a pull under way is in progress, not missing": (
        HostDesire(("a:1",), False),
        [],
        {"a:1": "pull"},
        {"in_progress": ["a:1"]},
    ),
    "names match as Ollama matches them": (
        HostDesire(("Llama3.2",), True),
        ["llama3.2:latest"],
        {},
        {"in_place": ["llama3.2:latest"]},
    ),
}


@pytest.mark.parametrize("case", PLAN_CASES, ids=list(PLAN_CASES))
def test_plan_of_one_host(case):
    desire, installed, active, expected = PLAN_CASES[case]
    plan = plan_host("gpu1", desire, installed, active)
    lists = ("missing", "delete", "in_place", "in_progress", "undeclared", "busy")
    assert {key: getattr(plan, key) for key in lists} == {k: expected.get(k, []) for k in lists}


def test_plan_of_the_fleet_counts_changes_and_errors():
    wanted = {"gpu1": HostDesire(("a:1",), True), "gpu2": HostDesire(("a:1",), False)}
    plan = plan_fleet(
        wanted, {"gpu1": ["a:1", "x:1"], "gpu2": "Ollama is not reachable"}, {"gpu1": {}}
    )
    assert (plan.changes, plan.pending, plan.errors) == (1, 1, 1)
    assert plan.hosts[1].error == "Ollama is not reachable"


# ---------------------------------------------------------------------- desired sets


SET = {
    "all": {"models": ["nomic-embed-text"]},
    "hosts": {"gpu1": {"models": ["qwen2.5:0.5b"], "prune": True}},
}


def test_plan_then_apply_then_nothing_to_do(any_fleet, fake_ollama, second_ollama):
    fleet = any_fleet
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("nomic-embed-text", QUICK)
    fake_ollama.allow_pull("qwen2.5:0.5b", QUICK)
    fake_ollama.add_model("old:1")
    second_ollama.add_model("kept:1")
    plan = fleet.post("/api/plan", json=SET).json
    assert (plan["changes"], plan["pending"], plan["errors"]) == (4, 4, 0)
    gpu1, gpu2 = plan["hosts"]
    assert gpu1["missing"] == ["nomic-embed-text:latest", "qwen2.5:0.5b"]
    assert gpu1["delete"] == ["old:1"] and gpu1["prune"] is True
    assert gpu2["missing"] == ["nomic-embed-text:latest"] and gpu2["undeclared"] == ["kept:1"]
    applied = fleet.post("/api/apply", json=SET)
    assert applied.status_code == 202
    group = applied.json["group"]
    kinds = sorted((c["host"], c["kind"], c["model"]) for c in group["children"])
    assert kinds == [
        ("gpu1", "delete", "old:1"),
        ("gpu1", "pull", "nomic-embed-text:latest"),
        ("gpu1", "pull", "qwen2.5:0.5b"),
        ("gpu2", "pull", "nomic-embed-text:latest"),
    ]
    assert finished(fleet, group["id"])["status"] == "succeeded"
    again = fleet.post("/api/plan", json=SET).json
    assert (again["changes"], again["pending"]) == (0, 0)
    assert "old:1" not in fake_ollama.installed() and "kept:1" in second_ollama.installed()
    nothing = fleet.post("/api/apply", json=SET)
    assert (nothing.status_code, nothing.json["group"]) == (200, None)


def test_prune_never_deletes_a_model_an_operation_is_using(fleet, fake_ollama):
    fake_ollama.add_model("busy:1")
    fake_ollama.add_model("idle:1")
    fake_ollama.publish_update("busy:1", HELD)
    updating = fleet.post("/api/models/update", json={"models": ["busy:1"], "host": "gpu1"})
    wait_until(lambda: fake_ollama.active_pulls == 1)
    pruned = {"hosts": {"gpu1": {"models": [], "prune": True}}}
    plan = fleet.post("/api/plan", json=pruned).json["hosts"][0]
    assert (plan["delete"], plan["busy"]) == (["idle:1"], ["busy:1"])
    group = fleet.post("/api/apply", json=pruned).json["group"]
    assert [c["model"] for c in group["children"]] == ["idle:1"]
    assert finished(fleet, group["id"])["status"] == "succeeded"
    assert "busy:1" in fake_ollama.installed() and "idle:1" not in fake_ollama.installed()
    fake_ollama.release("busy:1")
    op = updating.json["operations"][0]
    assert finished(fleet, op["id"])["status"] == "succeeded"
    assert "busy:1" in fake_ollama.installed()


def test_without_prune_nothing_is_deleted(fleet, fake_ollama):
    fake_ollama.add_model("extra:1")
    plan = fleet.post("/api/plan", json={"all": {"models": []}}).json
    assert plan["changes"] == 0 and plan["hosts"][0]["undeclared"] == ["extra:1"]
    assert fleet.post("/api/apply", json={"all": {"models": []}}).json["group"] is None


def test_a_host_prune_false_wins_over_all(fleet, fake_ollama):
    fake_ollama.add_model("extra:1")
    desired = {"all": {"models": [], "prune": True}, "hosts": {"gpu1": {"prune": False}}}
    stored = fleet.put("/api/desired-models", json=desired).json["set"]
    assert stored == desired  # as given: the host's explicit false is kept
    plan = fleet.post("/api/plan").json
    assert [h["prune"] for h in plan["hosts"]] == [False, True]
    assert plan["hosts"][0]["undeclared"] == ["extra:1"]


def test_a_stored_set_is_planned_and_applied_without_a_body(fleet, fake_ollama, second_ollama):
    assert fleet.get("/api/desired-models").json == {"set": None, "updated_at": None}
    missing = fleet.post("/api/plan")
    assert (missing.status_code, missing.json["error"]["code"]) == (404, "no_desired_models")
    fake_ollama.allow_pull("m:1", QUICK)
    stored = fleet.put("/api/desired-models", json={"hosts": {"gpu1": {"models": ["m:1"]}}})
    assert stored.status_code == 200 and stored.json["updated_at"]
    assert fleet.post("/api/plan").json["hosts"][0]["missing"] == ["m:1"]
    group = fleet.post("/api/apply").json["group"]
    assert finished(fleet, group["id"])["status"] == "succeeded"
    assert fleet.delete("/api/desired-models").json["set"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"hosts": {"gpu9": {"models": ["m:1"]}}}, "unknown_host"),
        ({"all": {"models": ["bad name"]}}, "invalid_model_name"),
        ({"all": {"models": ["127.0.0.1:6379/x/y"]}}, "registry_not_allowed"),
        ({"all": {"models": ["m:1"], "prnue": True}}, "unknown_field"),
        ({"everything": {}}, "unknown_field"),
    ],
)
def test_a_bad_set_is_refused(fleet, body, code):
    for method, path in (("put", "/api/desired-models"), ("post", "/api/plan")):
        answer = getattr(fleet, method)(path, json=body)
        assert answer.status_code == 400, (path, answer.json)
        assert answer.json["error"]["code"] == code
    assert fleet.get("/api/desired-models").json["set"] is None


# ---------------------------------------------------------------------- the reconciler


def test_two_reconcilers_apply_a_stored_set_once(make_app, fake_ollama, second_ollama, tmp_path):
    """Two decks on one database (two workers): a tick of each applies the set once, as
    the lease is held for the interval; the pull fails, and still nobody applies it again
    before the interval is over."""
    hosts = {"gpu1": fake_ollama.url, "gpu2": second_ollama.url}
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=1_000, error_after=1))
    apps = [
        make_app(
            OLLAMA_DECK_OLLAMA_HOSTS=hosts,
            OLLAMA_DECK_RECONCILE_SECONDS=3600,
            OLLAMA_DECK_START_RUNNER=False,
        )
        for _ in range(2)
    ]
    decks = [deck_of(app) for app in apps]
    assert all(d.reconciler is not None for d in decks)
    assert decks[0].reconciler.tick() is None  # no set stored yet: nothing, and no lease
    apps[0].test_client().put("/api/desired-models", json={"hosts": {"gpu1": {"models": ["m:1"]}}})
    first = decks[0].reconciler.tick()
    assert first is not None
    decks[0].runner.drain()  # the pull runs (and fails) here
    assert decks[0].store.get(first)["status"] == "failed"
    # The host still lacks the model; the other worker's first look would apply the set
    # again, but the lease is held for the interval.
    assert decks[1].reconciler.tick() is None and decks[0].reconciler.tick() is None
    assert fake_ollama.pull_count("m:1") == 1
    assert [g["id"] for g in group_rows(apps[1].test_client())] == [first]


def test_the_database_keeps_deletes_and_fetches_of_a_model_apart(make_app, fake_ollama):
    """Between a plan and its apply a pull may start: the delete is then left out (skipped),
    or refused; and while a delete waits, a pull of the model is refused."""
    from ollama_deck.errors import Conflict
    from ollama_deck.lifecycle import Kind

    deck = deck_of(make_app(OLLAMA_DECK_START_RUNNER=False))
    url = deck.runner.settings.host
    deck.runner.submit(Kind.PULL, "x:1")
    made = deck.runner.submit_group("prune", [(Kind.DELETE, "x:1", url)], skip_busy=True)
    assert made.group is None and [spec.model for spec, _ in made.skipped] == ["x:1"]
    with pytest.raises(Conflict):
        deck.runner.submit_group("prune", [(Kind.DELETE, "x:1", url)])
    made = deck.runner.submit_group("prune", [(Kind.DELETE, "y:1", url)])
    assert made.group is not None and made.group["status"] == "queued"
    with pytest.raises(Conflict):
        deck.runner.submit(Kind.PULL, "y:1")


def test_clear_finished_keeps_the_children_of_a_running_group(fleet, fake_ollama, second_ollama):
    fake_ollama.allow_pull("m:1", PullScript(layers=[10_000], step=1_000, error_after=1))
    second_ollama.allow_pull("m:1", HELD)
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    failed = group["children"][0]["id"]
    wait_until(lambda: fleet.get(f"/progress/{failed}").json["status"] == "failed")
    assert failed not in fleet.delete("/progress").json["deleted"]
    assert fleet.delete(f"/progress/{failed}").status_code == 409
    wait_until(lambda: second_ollama.active_pulls == 1)
    second_ollama.release("m:1")
    done = finished(fleet, group["id"])
    assert done["status"] == "failed"  # the failure still counts
    forgotten = fleet.delete(f"/progress/{group['id']}")
    assert forgotten.status_code == 200
    assert all(fleet.get(f"/progress/{c['id']}").status_code == 404 for c in done["children"])


def test_pausing_a_group_pauses_its_children_and_resume_resumes_them(
    fleet, fake_ollama, second_ollama
):
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", PullScript(layers=[100_000], step=10_000, hold_after=2))
    group = fleet.post("/api/models/pull", json={"model": "m:1", "hosts": "*"}).json
    wait_until(lambda: fake_ollama.active_pulls == 1 and second_ollama.active_pulls == 1)
    assert fleet.post(f"/progress/{group['id']}/pause").status_code in (200, 202)

    def paused():
        op = fleet.get(f"/progress/{group['id']}").json
        return op if op["status"] == "paused" else None

    held = wait_until(paused)
    assert held["paused_by"] == "user"
    assert [c["status"] for c in held["children"]] == ["paused", "paused"]
    assert fleet.post(f"/progress/{group['id']}/pause").status_code == 409  # nothing to pause
    for fake in (fake_ollama, second_ollama):
        fake.allow_pull("m:1", QUICK)  # the next pull of it goes through
    assert fleet.post(f"/progress/{group['id']}/resume").status_code == 200
    assert finished(fleet, group["id"])["status"] == "succeeded"
    assert fleet.post(f"/progress/{group['id']}/cancel").status_code == 409  # it ended


def test_a_child_never_joins_a_pull_being_cancelled(make_app, fake_ollama):
    """A pull whose cancel was asked for still runs until its stream closes: a group's
    child for that model is a new operation, and waits until then (one stream per model)."""
    from ollama_deck.lifecycle import Kind

    deck = deck_of(make_app(OLLAMA_DECK_START_RUNNER=False))
    url = deck.runner.settings.host
    first, _ = deck.runner.submit(Kind.PULL, "x:1")
    assert deck.store.claim_next_queued("another-runner", 2)["id"] == first["id"]
    assert deck.store.request_cancel(first["id"]) is not None
    made = deck.runner.submit_group("x:1", [(Kind.PULL, "x:1", url)])
    ((child, created),) = made.children
    assert created and child["id"] != first["id"]
    assert deck.store.claim_next_queued("another-runner", 2) is None  # not while it runs
