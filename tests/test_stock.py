"""Guarded stock: contract tests on every backend, PostgreSQL-only ones for the SQL."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from typing import Any

import psycopg
import pytest

import pygov
from pygov import keys
from pygov.errors import IdempotencyPayloadMismatchError, ValidationError
from tests.conftest import Backend
from tests.helpers import run_threads
from tests.polling import eventually


def movement_count(backend: Backend) -> int:
    return int(backend.query(f"SELECT count(*) FROM {backend.table('stock_movement')}")[0][0])


def test_adjust_creates_the_level_and_returns_the_new_quantity(gov: Any) -> None:
    assert gov.stock.level("pen", "main") == 0
    assert gov.stock.adjust("pen", "main", 10) == 10
    assert gov.stock.adjust("pen", "main", -4) == 6
    assert gov.stock.adjust("pen", "main", 5) == 11
    assert gov.stock.level("pen", "main") == 11
    assert gov.stock.level("pen", "annex") == 0
    assert gov.stock.adjust(42, 7, 3) == 3
    assert gov.stock.level("42", "7") == 3


def test_withdrawal_below_zero_is_refused_and_changes_nothing(gov: Any, backend: Backend) -> None:
    gov.stock.adjust("pen", "main", 3)
    before = movement_count(backend)
    with pytest.raises(ValidationError) as info:
        gov.stock.adjust("pen", "main", -5)
    assert info.value.context["available"] == 3
    assert info.value.context["requested"] == 5
    assert info.value.context["item_id"] == "pen"
    with pytest.raises(ValidationError) as never:
        gov.stock.adjust("ghost", "main", -1)
    assert (never.value.context["available"], never.value.context["requested"]) == (0, 1)
    assert gov.stock.level("pen", "main") == 3
    assert gov.stock.level("ghost", "main") == 0
    assert movement_count(backend) == before
    assert gov.stock.adjust("pen", "main", -3) == 0


def test_movement_key_applies_the_movement_once(gov: Any, backend: Backend) -> None:
    key = keys.stock_movement("pen", "main", "IN", "PO-1")
    assert gov.stock.adjust("pen", "main", 10, movement_key=key) == 10
    gov.stock.adjust("pen", "main", -2)
    # The repeat returns the first result and moves nothing.
    assert gov.stock.adjust("pen", "main", 10, movement_key=key) == 10
    assert gov.stock.level("pen", "main") == 8
    assert movement_count(backend) == 2
    with pytest.raises(IdempotencyPayloadMismatchError) as info:
        gov.stock.adjust("pen", "main", 11, movement_key=key)
    assert info.value.context["first"]["delta"] == 10
    with pytest.raises(IdempotencyPayloadMismatchError):
        gov.stock.adjust("pen", "annex", 10, movement_key=key)
    assert gov.stock.level("pen", "main") == 8


def test_a_refused_movement_does_not_use_its_key_up(gov: Any) -> None:
    with pytest.raises(ValidationError):
        gov.stock.adjust("pen", "main", -5, movement_key="SO-1")
    gov.stock.adjust("pen", "main", 5)
    assert gov.stock.adjust("pen", "main", -5, movement_key="SO-1") == 0
    assert gov.stock.adjust("pen", "main", -5, movement_key="SO-1") == 0


def test_two_first_movements_at_once_both_count(gov: Any, backend: Backend) -> None:
    results = run_threads(16, lambda i: gov.stock.adjust("fresh", "main", i + 1))
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert gov.stock.level("fresh", "main") == sum(range(1, 17))
    assert sorted(results)[-1] == sum(range(1, 17))
    assert len(set(results)) == 16
    assert movement_count(backend) == 16


def test_racing_the_same_movement_key_applies_it_once(gov: Any, backend: Backend) -> None:
    gov.stock.adjust("pen", "main", 100)
    results = run_threads(16, lambda i: gov.stock.adjust("pen", "main", -7, movement_key="SO-9"))
    assert results == [93] * 16
    assert gov.stock.level("pen", "main") == 93
    assert movement_count(backend) == 2


def test_thirty_two_threads_fifty_random_adjustments_on_three_items(
    gov: Any, backend: Backend
) -> None:
    items = ["bolt", "nut", "washer"]

    def work(i: int) -> list[tuple[str, int]]:
        rng = random.Random(i)
        accepted: list[tuple[str, int]] = []
        for _ in range(50):
            item = rng.choice(items)
            delta = rng.choice([-5, -3, -2, -1, 1, 2, 3, 4])
            try:
                quantity = gov.stock.adjust(item, "main", delta)
            except ValidationError as exc:
                # The only refusal there may be: not enough stock, with the figures.
                assert delta < 0 and exc.context["requested"] == -delta
                assert 0 <= exc.context["available"] < -delta
                continue
            assert quantity >= 0
            accepted.append((item, delta))
        return accepted

    results = run_threads(32, work)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    expected: dict[str, int] = defaultdict(int)
    for accepted in results:
        for item, delta in accepted:
            expected[item] += delta
    for item in items:
        assert gov.stock.level(item, "main") == expected[item]
    # The history replays to the same levels, one movement at a time, never below zero.
    rows = backend.query(
        f"SELECT item_id, delta, quantity_after FROM {backend.table('stock_movement')} ORDER BY id"
    )
    assert len(rows) == sum(len(a) for a in results)
    running: dict[str, int] = defaultdict(int)
    for item, delta, after in rows:
        running[item] += delta
        assert after == running[item] >= 0
    assert dict(running) == {k: v for k, v in expected.items()}


def test_movements_list_the_history_with_its_context(gov: Any) -> None:
    with gov.context(user="alice", service="Warehouse", request_id="req-1"):
        gov.stock.adjust("pen", "main", 10, movement_key="PO-7")
    with gov.context(user="bob"):
        gov.stock.adjust("pen", "main", -4)
        gov.stock.adjust("pen", "main", 1)
    gov.stock.adjust("pen", "annex", 1)
    history = gov.stock.movements("pen", "main")
    assert [(m.delta, m.quantity_after) for m in history] == [(1, 7), (-4, 6), (10, 10)]
    first = history[-1]
    assert (first.user, first.service, first.request_id) == ("alice", "Warehouse", "req-1")
    assert first.movement_key == "PO-7" and first.item_id == "pen"
    assert history[0].user == "bob" and history[0].movement_key is None
    assert history[0].occurred_at >= first.occurred_at
    page = gov.stock.movements("pen", "main", limit=2)
    assert [m.delta for m in page] == [1, -4]
    rest = gov.stock.movements("pen", "main", before_id=page[-1].id)
    assert [m.delta for m in rest] == [10]


@pytest.mark.parametrize(
    ("item", "location", "delta", "key"),
    [
        ("", "main", 1, None),
        ("pen", "  ", 1, None),
        (None, "main", 1, None),
        ("x" * 256, "main", 1, None),
        ("pen", "main", 0, None),
        ("pen", "main", 1.5, None),
        ("pen", "main", True, None),
        ("pen", "main", "3", None),
        ("pen", "main", 2**63, None),
        ("pen", "main", 1, ""),
        ("pen", "main", 1, "k" * 256),
        ("pen", 1.0, 1, None),
    ],
)
def test_bad_arguments_are_validation_errors_and_store_nothing(
    gov: Any, backend: Backend, item: Any, location: Any, delta: Any, key: Any
) -> None:
    with pytest.raises(ValidationError):
        gov.stock.adjust(item, location, delta, movement_key=key)
    assert movement_count(backend) == 0


def test_quantity_overflow_is_a_validation_error(gov: Any) -> None:
    gov.stock.adjust("pen", "main", 2**63 - 1)
    with pytest.raises(ValidationError) as info:
        gov.stock.adjust("pen", "main", 1)
    assert info.value.message == "the quantity would be out of range"
    assert info.value.context["available"] == 2**63 - 1
    assert gov.stock.level("pen", "main") == 2**63 - 1


def test_adjust_joins_the_callers_transaction(gov: Any) -> None:
    gov.stock.adjust("pen", "main", 5)
    with pytest.raises(RuntimeError), gov.transaction() as tx:
        gov.stock.adjust("pen", "main", -5, conn=tx)
        assert gov.stock.level("pen", "main", conn=tx) == 0
        raise RuntimeError("the order failed")
    assert gov.stock.level("pen", "main") == 5


def test_dbas_adjust_stock_from_psql(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("SELECT set_config('governance.user', 'dba-carol', true)")
        row = conn.execute("SELECT governance.adjust_stock('pen', 'main', 12)").fetchone()
        assert row == (12,)
        conn.commit()
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT governance.adjust_stock('pen', 'main', -13)")
        assert info.value.sqlstate == "GV002"
    assert pygov.errors.translate(info.value).context["available"] == 12
    with psycopg.connect(pg_dsn) as conn:
        level = conn.execute("SELECT governance.get_stock_level('pen', 'main')").fetchone()
        history = conn.execute(
            "SELECT delta, user_name FROM governance.stock_history('pen', 'main')"
        ).fetchall()
    assert level == (12,)
    assert history == [(12, "dba-carol")]
    assert pg_gov.stock.level("pen", "main") == 12


def test_the_level_can_never_be_negative_even_by_hand(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SELECT governance.adjust_stock('pen', 'main', 1)")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE governance.stock_level SET quantity = -1")


def test_async_adjust_many_tasks_on_one_item(pg_dsn: str) -> None:
    import asyncio

    import pygov.aio

    async def main() -> tuple[int, int, int]:
        agov = await pygov.aio.connect(pg_dsn)
        try:
            await agov.stock.adjust("hot", "main", 50)

            async def withdraw() -> bool:
                try:
                    await agov.stock.adjust("hot", "main", -1)
                except ValidationError:
                    return False
                return True

            done = await asyncio.gather(*(withdraw() for _ in range(80)))
            history = await agov.stock.movements("hot", "main", limit=1000)
            return sum(done), await agov.stock.level("hot", "main"), len(history)
        finally:
            await agov.close()

    accepted, level, movements = asyncio.run(main())
    assert (accepted, level, movements) == (50, 0, 51)


def test_the_stock_queries_use_their_indexes(pg_dsn: str) -> None:
    import json

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO governance.stock_movement (item_id, location_id, movement_key, delta,"
            " quantity_after) SELECT 'i' || (g % 200), 'main',"
            " CASE WHEN g % 2 = 0 THEN 'k' || g END, 1, g FROM generate_series(1, 20000) g"
        )
        conn.execute("ANALYZE governance.stock_movement")

        def plan(query: str) -> str:
            row = conn.execute(f"EXPLAIN (FORMAT JSON) {query}").fetchone()
            assert row is not None
            return json.dumps(row[0])

        # The movement-key check of every keyed adjust_stock, and the history of one level.
        assert "stock_movement_key_unique" in plan(
            "SELECT * FROM governance.stock_movement sm WHERE sm.movement_key = 'k10'"
        )
        assert "stock_movement_level_idx" in plan(
            "SELECT m.* FROM governance.stock_movement m WHERE m.item_id = 'i1'"
            " AND m.location_id = 'main' AND m.id < 5000 ORDER BY m.id DESC LIMIT 100"
        )


# --- combining concurrent changes of one level (PostgreSQL) ----------------------------------


class LevelLock:
    """Another transaction holding a level's row lock, as another process's change would, so
    that this process's callers queue up behind the one that is waiting for it."""

    def __init__(self, dsn: str, item: str, location: str) -> None:
        self.conn = psycopg.connect(dsn)
        self.conn.execute(
            "SELECT 1 FROM governance.stock_level WHERE item_id = %s AND location_id = %s"
            " FOR UPDATE",
            (item, location),
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def run_in_background(count: int, target: Any) -> Any:
    """``run_threads(count, target)`` in a thread of its own; returns a function that joins it
    and gives the results."""
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.extend(run_threads(count, target)))
    thread.start()

    def join() -> list[Any]:
        thread.join()
        return results

    return join


def queued(gov: Any, item: str, location: str) -> int:
    return int(gov.stock._combiner.queued((item, location)))


def waiting_for_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and row[0] > 0


def queue_behind_a_locked_level(
    gov: Any, backend: Backend, first: Any, others: Any, count: int
) -> tuple[Any, list[Any]]:
    """Hold the hot level's row lock; ``first()`` runs alone and waits for it in the database;
    then ``count`` threads run ``others(i)`` and queue behind it. Release the lock; return the
    first's result and the others'."""
    lock = LevelLock(backend.dsn, "hot", "main")
    try:
        join_first = run_in_background(1, lambda _: first())
        eventually(lambda: waiting_for_a_lock(backend.dsn))
        join_others = run_in_background(count, others)
        eventually(lambda: queued(gov, "hot", "main") == count)
    finally:
        lock.release()
    return join_first()[0], join_others()


def test_concurrent_changes_of_one_level_share_a_round_trip(gov: Any, backend: Backend) -> None:
    if not backend.is_postgres:
        pytest.skip("SQLite has one writer at a time: there is nothing to combine")
    gov.stock.adjust("hot", "main", 100)

    def sell(i: int) -> int:
        with gov.context(user=f"till-{i}", request_id=f"req-{i}"):
            quantity: int = gov.stock.adjust("hot", "main", -(i + 1), movement_key=f"sale-{i}")
            return quantity

    first, results = queue_behind_a_locked_level(gov, backend, lambda: sell(7), sell, 7)
    results.append(first)
    assert not [r for r in results if isinstance(r, BaseException)], results
    stats = gov.monitor.stats()
    assert stats["stock.adjust_batch"].total == 1  # the seven that queued went as one batch
    assert stats["stock.adjust"].waited == 7
    assert gov.stock.level("hot", "main") == 100 - sum(range(1, 9))
    # Each change kept its own key, context and result.
    sales = {m.movement_key: m for m in gov.stock.movements("hot", "main") if m.movement_key}
    assert len(sales) == 8
    for i, quantity in enumerate(results):
        sale = sales[f"sale-{i}"]
        assert (sale.user, sale.request_id, sale.delta) == (f"till-{i}", f"req-{i}", -(i + 1))
        assert sale.quantity_after == quantity


def test_a_batch_that_fails_is_retried_change_by_change(gov: Any, backend: Backend) -> None:
    if not backend.is_postgres:
        pytest.skip("SQLite has one writer at a time: there is nothing to combine")
    gov.stock.adjust("hot", "main", 100)
    backend.query(
        "CREATE FUNCTION public.no_thirteen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.quantity - OLD.quantity = -13 THEN RAISE EXCEPTION 'unlucky'; END IF;"
        " RETURN NEW; END $$"
    )
    backend.query(
        "CREATE TRIGGER no_thirteen BEFORE UPDATE ON governance.stock_level"
        " FOR EACH ROW EXECUTE FUNCTION public.no_thirteen()"
    )
    deltas = [-2, -13, -3, -4]
    first, results = queue_behind_a_locked_level(
        gov,
        backend,
        lambda: gov.stock.adjust("hot", "main", -1),
        lambda i: gov.stock.adjust("hot", "main", deltas[i]),
        4,
    )
    assert first == 99
    # The batch's transaction failed as a whole, then each change was sent alone: only the
    # change the trigger refuses fails, exactly as it would have alone.
    failed = [d for d, r in zip(deltas, results, strict=True) if isinstance(r, BaseException)]
    assert failed == [-13]
    assert "unlucky" in str(results[1])
    assert gov.monitor.stats()["stock.adjust_batch"].errors == 1
    assert gov.stock.level("hot", "main") == 100 - 10
    assert len(gov.stock.movements("hot", "main")) == 5


def test_cancelled_async_callers_do_not_strand_the_others(pg_dsn: str) -> None:
    import asyncio

    import pygov.aio

    async def main() -> tuple[list[Any], int, int]:
        agov = await pygov.aio.connect(pg_dsn)
        try:
            await agov.stock.adjust("hot", "main", 100)
            lock = LevelLock(pg_dsn, "hot", "main")
            try:
                # The first task sends alone and waits for the row lock; five queue behind it.
                tasks = [asyncio.create_task(agov.stock.adjust("hot", "main", -1))]
                await asyncio.to_thread(eventually, lambda: waiting_for_a_lock(pg_dsn))
                tasks += [
                    asyncio.create_task(agov.stock.adjust("hot", "main", -1)) for _ in range(5)
                ]
                for _ in range(1000):
                    if agov.stock._combiner.queued(("hot", "main")) == 5:
                        break
                    await asyncio.sleep(0.01)
                assert agov.stock._combiner.queued(("hot", "main")) == 5
                # The sender (waiting for the row lock) and two waiting callers are cancelled.
                for i in (0, 2, 3):
                    tasks[i].cancel()
                await asyncio.wait([tasks[2], tasks[3]])
            finally:
                lock.release()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            level = await agov.stock.level("hot", "main")
            history = await agov.stock.movements("hot", "main")
            return results, level, len(history)
        finally:
            await agov.close()

    results, level, movements = asyncio.run(main())
    cancelled = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert cancelled == [0, 2, 3]
    assert all(
        isinstance(r, asyncio.CancelledError) for r in results if isinstance(r, BaseException)
    )
    # The sender's change was already on its way (it is shielded) and went through; the two
    # waiting callers' changes were never sent; the others' were.
    assert level == 100 - 1 - 3
    assert movements == 1 + 4


def test_a_movement_and_its_audit_entry_commit_together(gov: Any) -> None:
    with gov.context(user="alice"), gov.transaction() as tx:
        quantity = gov.stock.adjust("pen", "main", 5, conn=tx)
        gov.audit.log_operation(
            "inventory.stock", "pen@main", "UPDATE", after_data={"quantity": quantity}, conn=tx
        )
    with pytest.raises(RuntimeError), gov.transaction() as tx:
        gov.stock.adjust("pen", "main", -5, conn=tx)
        gov.audit.log_operation("inventory.stock", "pen@main", "UPDATE", conn=tx)
        raise RuntimeError("the sale failed")
    assert gov.stock.level("pen", "main") == 5
    history = gov.audit.history("inventory.stock", "pen@main")
    assert [(h.user_name, h.after_data) for h in history] == [("alice", {"quantity": 5})]


@pytest.mark.parametrize("which", ["pg_gov", "sqlite_gov"])
def test_demo_step_claims_hold(which: str, request: pytest.FixtureRequest) -> None:
    from pygov.demo import Demo, schema, step_stock

    lines: list[str] = []
    demo = Demo(request.getfixturevalue(which), lines.append)
    schema.create(demo)
    step_stock.run(demo)
    assert demo.failures == [], "\n".join(lines)
    assert sum(line.strip().startswith("✔") for line in lines) == 6
