"""The operation store on a real database: SQLite always, PostgreSQL when configured."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from ollama_deck import schema
from ollama_deck.db import make_engine
from ollama_deck.db import Operation
from ollama_deck.lifecycle import Status
from ollama_deck.services.events import EventHub
from ollama_deck.services.feed import ChangeFeed
from ollama_deck.services.runner import Runner
from ollama_deck.services.runner import RunnerSettings
from ollama_deck.services.store import OperationStore

from .helpers import wait_until

OP = Operation.__table__
HOST = "http://127.0.0.1:1"


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    schema.upgrade(engine)
    schema.upgrade(engine)  # a second start over the same database changes nothing
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine):
    return OperationStore(engine, EventHub(), log_lines=5)


def new_op(store: OperationStore, model: str = "llama3.2:1b") -> dict:
    return store.create(kind="pull", model=model, model_key=model.lower(), host=HOST)


@pytest.fixture
def racing_stores(engine, database_url):
    """One engine and store per racing thread: only the database can keep them apart (a
    shared store's in-process lock would line them up before the database is involved)."""
    engines = []

    def make(count: int) -> list[OperationStore]:
        for _ in range(count):
            engines.append(make_engine(database_url))
        return [OperationStore(e, EventHub(), log_lines=5) for e in engines[-count:]]

    yield make
    for other in engines:
        other.dispose()


def test_one_active_operation_per_model_even_when_racing(racing_stores):
    stores = racing_stores(6)
    barrier = threading.Barrier(6)
    results = []

    def create(store: OperationStore) -> None:
        barrier.wait()
        results.append(store.create_or_join(kind="pull", model="m:1", model_key="m:1", host=HOST))

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 6
    assert len({row["id"] for row, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_a_finished_operation_frees_the_model(store):
    first = new_op(store)
    store._update(first["id"], {"status": "failed", "finished_at": 1.0})
    second, created = store.create_or_join(
        kind="pull", model="llama3.2:1b", model_key="llama3.2:1b", host=HOST
    )
    assert created and second["id"] != first["id"]


def test_a_pull_after_a_cancel_request_is_new_and_waits_for_the_old_stream(store):
    old = new_op(store, "m:1")
    store.claim_next_queued("r1", limit=2)
    assert store.request_cancel(old["id"]) is not None  # its stream is still open
    other = new_op(store, "other:1")

    fresh, created = store.create_or_join(kind="pull", model="m:1", model_key="m:1", host=HOST)
    assert created and fresh["id"] != old["id"] and fresh["status"] == "queued"
    joined, again = store.create_or_join(kind="pull", model="m:1", model_key="m:1", host=HOST)
    assert (joined["id"], again) == (fresh["id"], False)  # the new one is joined, not the old
    # One stream per model: the new pull waits while the cancelled one runs; others go on.
    assert store.claim_next_queued("r2", limit=2)["id"] == other["id"]
    assert store.claim_next_queued("r2", limit=3) is None
    store.finish(old["id"], "r1", Status.CANCELLED, "cancelled")
    assert store.claim_next_queued("r2", limit=3)["id"] == fresh["id"]
    assert store.get(old["id"])["status"] == "cancelled"


def test_the_database_refuses_two_running_operations_of_one_model(store, engine):
    from sqlalchemy.exc import IntegrityError

    old = new_op(store, "m:1")
    store.claim_next_queued("r1", limit=2)
    store.request_cancel(old["id"])
    fresh = new_op(store, "m:1")
    with pytest.raises(IntegrityError):  # as a claim that skipped the check would do
        store._update(fresh["id"], {"status": "running", "runner_id": "r2"})
    assert store.get(fresh["id"])["status"] == "queued"


def test_an_orphan_whose_cancel_came_meanwhile_is_not_queued_again(store):
    from ollama_deck.lifecycle import Orphan
    from ollama_deck.lifecycle import OrphanReason

    op = new_op(store, "m:1")
    store.claim_next_queued("dead", limit=2)
    orphan = Orphan(OrphanReason.NO_JOB, "dead", 0.0)  # judged before the cancel came
    store.request_cancel(op["id"])
    assert store.requeue_orphan(op["id"], orphan, note="x") is None
    assert store.get(op["id"])["status"] == "running"  # the next recovery ends it cancelled


def test_racing_pulls_after_a_cancel_request_make_one_new_operation(store, racing_stores):
    old = new_op(store, "m:1")
    store.claim_next_queued("r1", limit=2)
    store.request_cancel(old["id"])
    stores = racing_stores(6)
    barrier = threading.Barrier(6)
    results = []

    def create(racer: OperationStore) -> None:
        barrier.wait()
        results.append(racer.create_or_join(kind="pull", model="m:1", model_key="m:1", host=HOST))

    threads = [threading.Thread(target=create, args=(racer,)) for racer in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(results) == 6
    ids = {row["id"] for row, _ in results}
    assert len(ids) == 1 and old["id"] not in ids
    assert sum(created for _, created in results) == 1


def test_racing_batches_are_all_or_nothing_within_the_queue_bound(store, racing_stores):
    from ollama_deck.errors import QueueFull

    stores = racing_stores(4)
    barrier = threading.Barrier(4)
    outcomes = []

    def create(index: int, racer: OperationStore) -> None:
        models = [(f"b{index}-{i}:1", f"b{index}-{i}:1") for i in range(3)]
        barrier.wait()
        try:
            racer.create_all(kind="update", models=models, host=HOST, max_queued=7)
            outcomes.append(index)
        except QueueFull:
            outcomes.append(None)

    threads = [threading.Thread(target=create, args=item) for item in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    made = [index for index in outcomes if index is not None]
    assert len(outcomes) == 4 and len(made) == 2  # 3 + 3 fit in 7, a third batch does not
    models = sorted(row["model"] for row in store.list())
    assert models == sorted(f"b{index}-{i}:1" for index in made for i in range(3))
    seqs = sorted(e.seq for e in ChangeFeed(store.engine).replay(0)[0])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the sequence"


def test_racing_pulls_never_pass_the_queue_bound(store, racing_stores):
    """Each pull counts the queue in the statement that inserts it, under the counter's
    lock: eight racing for the last three places make three, and five are refused."""
    from ollama_deck.errors import QueueFull

    for i in range(2):
        new_op(store, f"old-{i}:1")
    stores = racing_stores(8)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create(index: int, racer: OperationStore) -> None:
        barrier.wait()
        try:
            racer.create(kind="pull", model=f"r{index}:1", model_key=f"r{index}:1", host=HOST,
                         max_queued=5)  # fmt: skip
            outcomes.append("made")
        except QueueFull as exc:
            assert "5 operations are queued or scheduled already (the limit is 5)" in str(exc)
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=item) for item in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(outcomes) == ["made"] * 3 + ["refused"] * 5
    assert len(store.list()) == 5
    rows = {row["id"]: row for row in store.list()}
    events = ChangeFeed(store.engine).replay(0)[0]
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the sequence"
    # Each operation came with its first log line, one sequence number before it.
    lines = {e.operation_id: e.seq for e in events if e.kind == "log"}
    assert {op_id: row["seq"] - 1 for op_id, row in rows.items()} == lines


@pytest.mark.parametrize("attempt", range(3))
def test_claims_respect_the_limit_when_racing(store, racing_stores, attempt):
    for i in range(8):
        new_op(store, f"m:{i}")
    stores = racing_stores(8)
    barrier = threading.Barrier(8)
    claimed = []

    def claim(runner: str, racer: OperationStore) -> None:
        barrier.wait()
        row = racer.claim_next_queued(runner, limit=2)
        if row is not None:
            claimed.append(row["id"])

    threads = [
        threading.Thread(target=claim, args=(f"r{i}", racer)) for i, racer in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(claimed) == len(set(claimed)) == 2
    running = store.list(statuses=["running"])
    assert {r["id"] for r in running} == set(claimed)


def test_sequence_orders_changes_across_operations_and_replay_resumes(store):
    a = new_op(store, "a:1")
    b = new_op(store, "b:1")
    assert b["seq"] > a["seq"]
    mark = b["seq"]
    store._update(a["id"], {"percent": 10.0}, ["line one"])
    store._update(b["id"], {"percent": 20.0}, ["line two", "line three"])
    store._update(a["id"], {"percent": 30.0})
    feed = ChangeFeed(store.engine)
    events, covered = feed.replay(mark)
    kinds = [(e.kind, e.operation_id) for e in events]
    # Every log line after the mark, and the newest state of each changed operation.
    assert kinds == [
        ("log", a["id"]),
        ("log", b["id"]),
        ("log", b["id"]),
        ("progress", b["id"]),
        ("progress", a["id"]),
    ]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert covered == seqs[-1]
    only_b, _ = feed.replay(mark, b["id"])
    assert {e.operation_id for e in only_b} == {b["id"]}


def test_log_is_bounded_to_the_newest_lines(store):
    op = new_op(store)
    for i in range(12):
        store._update(op["id"], {}, [f"line {i}"])
    texts = [r["text"] for r in store.logs(op["id"])]
    assert texts == [f"line {i}" for i in range(7, 12)]


@pytest.mark.parametrize(
    "transition",
    [
        lambda store, op_id: store.finish(op_id, "me", Status.FAILED, "x", ["x"]),
        lambda store, op_id: store.release(op_id, "me", note="x"),
        lambda store, op_id: store.request_cancel(op_id),
        lambda store, op_id: store.mark_stalled(op_id, "me", 5, ["x"]),
    ],
    ids=["finish", "release", "request_cancel", "mark_stalled"],
)
def test_a_transition_from_a_state_the_row_is_not_in_writes_nothing(store, transition):
    op = new_op(store)  # queued, held by nobody
    before = store.get(op["id"])
    assert transition(store, op["id"]) is None
    after = store.get(op["id"])
    assert after == before
    assert [r["text"] for r in store.logs(op["id"])] == ["pull of llama3.2:1b queued"]


def test_a_finish_by_the_holder_ends_the_operation(store):
    op = new_op(store)
    store.claim_next_queued("me", limit=2)
    assert store.finish(op["id"], "someone else", Status.SUCCEEDED, "pulled") is None
    row = store.finish(op["id"], "me", Status.SUCCEEDED, "pulled", ["pulled"])
    assert row["status"] == "succeeded" and row["eta_seconds"] == 0.0
    assert row["finished_at"] is not None
    assert store.cancel_waiting(op["id"]) is None


def test_only_one_runner_takes_over_a_stale_operation(engine):
    store = OperationStore(engine, EventHub())
    op = new_op(store)
    store.claim_next_queued("dead-runner", limit=2)
    with engine.begin() as conn:  # its last heartbeat was long ago
        conn.execute(OP.update().where(OP.c.id == op["id"]).values(heartbeat_at=0.0))

    runners = [
        Runner(store, client=None, settings=RunnerSettings(host=HOST, stale_seconds=5))
        for _ in range(4)
    ]
    barrier = threading.Barrier(4)
    taken = []

    def recover(runner: Runner) -> None:
        barrier.wait()
        taken.extend(runner.recover())

    threads = [threading.Thread(target=recover, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert taken == [op["id"]]
    row = store.get(op["id"])
    assert row["status"] == "queued"
    assert row["runner_id"] is None


def test_purge_forgets_only_old_finished_operations(store, engine):
    old = new_op(store, "old:1")
    store._update(old["id"], {"status": "succeeded", "finished_at": 100.0}, ["done"])
    recent = new_op(store, "recent:1")
    store._update(recent["id"], {"status": "succeeded", "finished_at": 10_000.0})
    active = new_op(store, "active:1")
    assert store.purge_finished(before=5_000.0) == 1
    with engine.connect() as conn:
        ids = {r.id for r in conn.execute(select(OP.c.id))}
    assert ids == {recent["id"], active["id"]}
    assert store.logs(old["id"]) == []


def test_purge_by_count_looks_again_only_after_a_change(store, engine):
    """Beyond the newest ``keep`` finished operations: forgotten at the first purge, and
    again after another one finishes; in between, a purge finds nothing to look at."""
    from sqlalchemy import event

    def finish(model: str, at: float) -> dict:
        op = new_op(store, model)
        store._update(op["id"], {"status": "succeeded", "finished_at": at})
        return op

    ops = [finish(f"m{i}:1", 1_000.0 + i) for i in range(4)]
    assert store.purge_finished(None, keep=2) == 2
    looks: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: looks.append(a[2]))
    assert store.purge_finished(None, keep=2) == 0
    assert not [sql for sql in looks if "OFFSET" in sql.upper()]  # nothing changed
    newest = finish("m9:1", 2_000.0)
    assert store.purge_finished(None, keep=2) == 1
    with engine.connect() as conn:
        ids = {r.id for r in conn.execute(select(OP.c.id))}
    assert ids == {ops[3]["id"], newest["id"]}


def test_the_listing_and_the_purge_walk_indexes(store, engine):
    """Newest first, and finished ones by age or beyond the newest kept: the queries the
    store sends read an index, not a sort of every row."""
    if engine.dialect.name != "sqlite":
        pytest.skip("the plan is read on SQLite; PostgreSQL picks by its statistics")
    from sqlalchemy import event

    sent: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "OP.ID IN" not in statement:
            sent.append((statement, parameters))

    op = new_op(store, "done:1")
    store._update(op["id"], {"status": "succeeded", "finished_at": 1.0})
    event.listen(engine, "before_cursor_execute", keep)
    store.list(limit=100)
    store.purge_finished(5.0, keep=10)
    event.remove(engine, "before_cursor_execute", keep)
    plans = []
    with engine.connect() as conn:
        for statement, parameters in sent:
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            plans.append(" ".join(r[-1] for r in rows))
    listing = [p for p in plans if "created_at" in p]
    purges = [p for p in plans if "finished_at" in p]
    assert len(listing) == 1 and len(purges) == 2, plans
    assert "USING INDEX ix_ollama_deck_operation_created_at" in listing[0], listing
    for plan in purges:
        assert "USING INDEX ix_ollama_deck_operation_finished_at" in plan, plan
    assert not [plan for plan in listing + purges if "TEMP B-TREE" in plan], plans


def test_a_changed_model_list_writes_only_what_changed(engine):
    from ollama_deck.services import modelcache
    from ollama_deck.services.modelcache import CACHE

    def rows() -> dict[str, tuple[str, float]]:
        with engine.connect() as conn:
            found = conn.execute(select(CACHE).where(CACHE.c.host == HOST)).all()
        return {r.name: (r.data, r.seen_at) for r in found}

    first = [{"name": f"m{i}:1", "size": i} for i in range(5)]
    assert modelcache.remember(engine, HOST, first)
    before = rows()
    second = [*first[1:4], {"name": "m4:1", "size": 40}, {"name": "new:1", "size": 1}]
    assert modelcache.remember(engine, HOST, second)
    after = rows()
    assert set(after) == {"m1:1", "m2:1", "m3:1", "m4:1", "new:1"}  # m0 gone, new added
    for name in ("m1:1", "m2:1", "m3:1"):
        assert after[name] == before[name]  # untouched rows are not written again
    assert after["m4:1"][1] > before["m4:1"][1]
    assert [m["size"] for m in modelcache.cached(engine, HOST)[0] if m["name"] == "m4:1"] == [40]


def test_pull_end_to_end_on_this_database(fake_ollama, database_url, make_app, serve):
    # database_url comes before make_app: torn down after the app, so the runner's last
    # writes never meet a dropped schema.
    from ollama_deck.testing import PullScript

    from .helpers import wait_until

    fake_ollama.allow_pull("llama3.2:1b", PullScript(layers=[40_000, 300], step=4_000))
    live = serve(make_app(database_url=database_url))
    op = live.post("/api/models/pull", json={"model": "llama3.2:1b"}).json()
    final = wait_until(
        lambda: (s := live.get(f"/progress/{op['id']}").json())["status"] == "succeeded" and s
    )
    assert final["percent"] == 100.0


def test_a_cache_write_gives_up_at_once_on_a_held_lock(engine, database_url):
    from sqlalchemy import text

    from ollama_deck.services import modelcache

    assert modelcache.remember(engine, HOST, [{"name": "a:1"}])
    other = make_engine(database_url)
    try:
        with other.connect() as holder:
            if other.dialect.name == "sqlite":
                holder.exec_driver_sql("BEGIN IMMEDIATE")  # the whole file's write lock
            else:
                holder.begin()
                holder.execute(text("SELECT * FROM ollama_deck_installed_model FOR UPDATE"))
            # Without giving up it would wait 30 s (SQLite) or for ever (PostgreSQL).
            answers: list[bool] = []
            writer = threading.Thread(
                target=lambda: answers.append(modelcache.remember(engine, HOST, [{"name": "b:1"}]))
            )
            writer.start()
            wait_until(lambda: answers, timeout=10)
            holder.rollback()
            writer.join(60)
    finally:
        other.dispose()
    assert answers == [False]
    assert modelcache.remember(engine, HOST, [{"name": "b:1"}]) is True
    assert [m["name"] for m in modelcache.cached(engine, HOST)[0]] == ["b:1"]
