"""Advisory and row locks: contract tests on every backend, PostgreSQL-only ones for the SQL."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest

import pygov
from pygov.errors import ConcurrencyError, GovernanceError, ValidationError
from pygov.locks import lock_key
from tests.conftest import Backend
from tests.helpers import run_threads
from tests.polling import eventually


def make_counter_table(backend: Backend, rows: int = 1) -> None:
    backend.query("CREATE TABLE lock_item (id integer PRIMARY KEY, n integer NOT NULL)")
    for i in range(1, rows + 1):
        backend.query("INSERT INTO lock_item (id, n) VALUES (?, 0)", (i,))


class Holder:
    """A thread holding a lock until told to let go."""

    def __init__(self, enter: Any) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self.info: Any = None
        self._enter = enter
        self._thread = threading.Thread(target=self._run)
        self._thread.start()
        assert self.held.wait(10), "the holder never got its lock"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self._enter() as conn:
                self.info = conn
                self.held.set()
                self.release.wait(10)
        except BaseException as exc:
            self.error = exc
            self.held.set()

    def stop(self) -> None:
        self.release.set()
        self._thread.join()
        if self.error is not None:
            raise self.error


# --- advisory locks ----------------------------------------------------------------------


def test_advisory_lock_excludes_other_holders(gov: Any, backend: Backend) -> None:
    make_counter_table(backend)
    inside = 0
    most_inside = 0
    guard = threading.Lock()

    def work(i: int) -> None:
        nonlocal inside, most_inside
        for _ in range(5):
            with gov.locks.advisory("counter", timeout=30) as conn:
                with guard:
                    inside += 1
                    most_inside = max(most_inside, inside)
                # A read-modify-write in two statements: only the lock keeps it from losing
                # updates.
                (n,) = backend.execute(conn, "SELECT n FROM lock_item WHERE id = 1")[0]
                backend.execute(conn, "UPDATE lock_item SET n = ? WHERE id = 1", (n + 1,))
                with guard:
                    inside -= 1

    assert run_threads(8, work) == [None] * 8
    assert most_inside == 1
    assert backend.query("SELECT n FROM lock_item WHERE id = 1") == [(40,)]
    stats = gov.monitor.stats()["locks.advisory"]
    assert stats.total == 40 and stats.running == 0 and stats.errors == 0


def test_different_names_do_not_exclude_each_other(pg_gov: pygov.Governance) -> None:
    barrier = threading.Barrier(4)

    def work(i: int) -> int:
        with pg_gov.locks.advisory(f"order:{i}", timeout=5):
            barrier.wait(5)  # all four hold their own lock at the same time
            return i

    assert run_threads(4, work) == [0, 1, 2, 3]


def test_advisory_timeout_is_a_concurrency_error_naming_the_lock(gov: Any) -> None:
    holder = Holder(lambda: gov.locks.advisory("nightly-close"))
    try:
        started = time.monotonic()
        with (
            pytest.raises(ConcurrencyError) as info,
            gov.locks.advisory("nightly-close", timeout=0.3),
        ):
            pytest.fail("the lock was held by another transaction")
        waited = time.monotonic() - started
    finally:
        holder.stop()
    context = info.value.context
    assert context["lock"] == "nightly-close"
    assert context["lock_key"] == lock_key("nightly-close")
    assert context["timeout_seconds"] == 0.3
    assert 0.25 <= context["waited_seconds"] <= waited + 0.01
    stats = gov.monitor.stats()["locks.advisory"]
    assert stats.waited == 1
    assert stats.wait_max_seconds >= 0.25
    assert stats.errors == 1
    # Released with the holder's transaction: free again at once.
    with gov.locks.advisory("nightly-close", timeout=1):
        pass


def test_the_lock_is_released_when_the_block_raises(gov: Any, backend: Backend) -> None:
    make_counter_table(backend)
    with pytest.raises(RuntimeError), gov.locks.advisory("boom") as conn:
        backend.execute(conn, "UPDATE lock_item SET n = 99 WHERE id = 1")
        raise RuntimeError("boom")
    assert backend.query("SELECT n FROM lock_item WHERE id = 1") == [(0,)]
    holder = Holder(lambda: gov.locks.advisory("boom", timeout=1))
    holder.stop()


def test_joining_a_transaction_holds_the_lock_until_it_ends(gov: Any, backend: Backend) -> None:
    make_counter_table(backend)
    outcome: list[Any] = []

    def try_lock() -> None:
        try:
            with gov.locks.advisory("month-end", timeout=0.2):
                outcome.append("acquired")
        except ConcurrencyError as exc:
            outcome.append(exc)

    with gov.transaction() as tx:
        with gov.locks.advisory("month-end", conn=tx) as conn:
            assert conn is tx
            backend.execute(conn, "UPDATE lock_item SET n = 1 WHERE id = 1")
        # The block is over but the caller's transaction is not: the lock is still held.
        t = threading.Thread(target=try_lock)
        t.start()
        t.join()
    assert isinstance(outcome[0], ConcurrencyError)
    try_lock()
    assert outcome[1] == "acquired"
    assert backend.query("SELECT n FROM lock_item WHERE id = 1") == [(1,)]


@pytest.mark.parametrize("name", ["", "   ", "x" * 256, "nul\x00", None, 7])
def test_bad_lock_names_are_validation_errors(gov: Any, name: Any) -> None:
    with pytest.raises(ValidationError), gov.locks.advisory(name):
        pytest.fail("entered the block")


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "soon"])
def test_bad_timeouts_are_validation_errors(gov: Any, timeout: Any) -> None:
    with pytest.raises(ValidationError), gov.locks.advisory("t", timeout=timeout):
        pytest.fail("entered the block")


def test_lock_key_is_the_same_in_python_and_sql(pg_dsn: str) -> None:
    names = ["a", "stock:item-1:main", "clé 日本語 🙂", "x" * 255, "pygov.migrate"]
    with psycopg.connect(pg_dsn) as conn:
        for name in names:
            row = conn.execute("SELECT governance.lock_key(%s)", (name,)).fetchone()
            assert row is not None and row[0] == lock_key(name)
    assert len({lock_key(n) for n in names}) == len(names)
    assert all(-(2**63) <= lock_key(n) < 2**63 for n in names)


def test_lock_is_transaction_scoped_never_session_scoped(pg_gov: pygov.Governance) -> None:
    with pg_gov.locks.advisory("scoped") as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    # Back in the pool, the same backend holds no advisory lock at all.
    with pg_gov.transaction() as conn:
        rows = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", (pid,)
        ).fetchone()
    assert rows == (0,)


def test_a_read_only_transaction_can_take_a_lock(pg_gov: pygov.Governance) -> None:
    with pg_gov.transaction() as tx:
        tx.execute("SET TRANSACTION READ ONLY")
        with pg_gov.locks.advisory("read-only-report", conn=tx) as conn:
            assert conn.execute("SELECT count(*) FROM governance.lock_activity").fetchone() == (1,)


def test_sql_lock_and_try_lock_for_dbas(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    holder = Holder(lambda: pg_gov.locks.advisory("psql-job"))
    try:
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("SELECT governance.try_lock('psql-job')").fetchone()
            assert row == (False,)
            conn.rollback()
            started = time.monotonic()
            with pytest.raises(psycopg.Error) as info:
                conn.execute("SELECT governance.lock('psql-job', interval '200 milliseconds')")
            assert time.monotonic() - started >= 0.19
        err = pygov.errors.translate(info.value)
        assert isinstance(err, ConcurrencyError)
        assert err.context["lock"] == "psql-job"
        assert err.context["lock_key"] == lock_key("psql-job")
        assert err.context["waited_seconds"] >= 0.19
    finally:
        holder.stop()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT governance.lock('psql-job', '1 second')").fetchone()
        assert row == (lock_key("psql-job"),)
        with pytest.raises(psycopg.Error) as bad:
            conn.execute("SELECT governance.lock('')")
        assert bad.value.sqlstate == "GV002"


def test_lock_activity_shows_holder_and_waiter(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    with pg_gov.locks.advisory("inventory:recount"):
        pass  # first use registers the name (once committed)
    holder = Holder(lambda: pg_gov.locks.advisory("inventory:recount"))
    holder_pid = holder.info.execute("SELECT pg_backend_pid()").fetchone()[0]
    waiter_result: list[Any] = []

    def wait_for_lock() -> None:
        with pg_gov.locks.advisory("inventory:recount", timeout=30) as conn:
            waiter_result.append(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as dba:

            def rows() -> list[Any]:
                return dba.execute(
                    "SELECT lock_key, lock_name, granted, pid, blocked_by, waiting_since, mode"
                    " FROM governance.lock_activity ORDER BY granted DESC"
                ).fetchall()

            def with_waiter() -> list[Any] | None:
                # The waiter queues in slices (backoff between them), so a snapshot can catch
                # it between pg_locks and pg_blocking_pids(): wait for a consistent one.
                current = rows()
                waiting = [r for r in current if not r[2] and r[5] is not None and r[4]]
                return current if waiting else None

            seen = eventually(with_waiter)
    finally:
        holder.stop()
        waiter.join()
    held, waiting = seen[0], seen[1]
    assert held[:4] == (lock_key("inventory:recount"), "inventory:recount", True, holder_pid)
    assert held[4] is None and held[5] is None
    assert waiting[:3] == (lock_key("inventory:recount"), "inventory:recount", False)
    assert holder_pid in waiting[4]
    assert waiting[5] is not None and waiting[6] == "ExclusiveLock"
    assert waiter_result == [waiting[3]]
    stats = pg_gov.monitor.stats()["locks.advisory"]
    assert stats.waited == 1 and stats.wait_max_seconds > 0


def test_lock_activity_names_only_names_it_has_seen_committed(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    holder = Holder(lambda: pg_gov.locks.advisory("brand-new-name"))
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as dba:
            rows = dba.execute(
                "SELECT lock_key, lock_name, granted FROM governance.lock_activity"
            ).fetchall()
            raw_key = 4242
            dba.execute("BEGIN")
            dba.execute("SELECT pg_advisory_xact_lock(%s)", (raw_key,))
            mine = dba.execute(
                "SELECT lock_name, granted FROM governance.lock_activity WHERE lock_key = %s",
                (raw_key,),
            ).fetchall()
            dba.execute("COMMIT")
    finally:
        holder.stop()
    # The holder's registration is not committed yet: the key shows, the name does not.
    assert rows == [(lock_key("brand-new-name"), None, True)]
    # Other code's bigint advisory locks show too, unnamed.
    assert mine == [(None, True)]
    with psycopg.connect(pg_dsn) as dba:
        row = dba.execute(
            "SELECT name FROM governance.lock_name WHERE lock_key = %s",
            (lock_key("brand-new-name"),),
        ).fetchone()
    assert row == ("brand-new-name",)


def test_async_advisory_lock(pg_dsn: str) -> None:
    import asyncio

    import pygov.aio

    async def main() -> tuple[int, list[int]]:
        agov = await pygov.aio.connect(pg_dsn)
        order: list[int] = []
        try:

            async def worker(i: int) -> None:
                async with agov.locks.advisory("async-lock", timeout=10) as conn:
                    order.append(i)
                    await asyncio.sleep(0.01)  # hold it while others queue
                    order.append(i)
                    assert await conn.fetchval("SELECT 1") == 1

            await asyncio.gather(*(worker(i) for i in range(6)))
            with pytest.raises(ConcurrencyError):
                async with (
                    agov.locks.advisory("async-lock", timeout=0.2),
                    agov.locks.advisory("async-lock", timeout=0.2),
                ):
                    pass
            return agov.monitor.stats()["locks.advisory"].waited, order
        finally:
            await agov.close()

    waited, order = asyncio.run(main())
    # Each holder's two marks are adjacent: nobody else got in between.
    assert all(order[i] == order[i + 1] for i in range(0, len(order), 2))
    assert waited >= 1


# --- row locks -----------------------------------------------------------------------------


def test_lock_rows_in_any_order_never_deadlocks(gov: Any, backend: Backend) -> None:
    make_counter_table(backend, rows=6)

    def work(i: int) -> int:
        rng = random.Random(i)
        done = 0
        for _ in range(15):
            keys = rng.sample(range(1, 7), rng.randint(2, 6))
            if i % 2:
                keys.reverse()
            with gov.locks.lock_rows("lock_item", keys, timeout=30) as conn:
                # Update in the caller's own (shuffled) order: the locks are already held.
                for key in keys:
                    backend.execute(conn, "UPDATE lock_item SET n = n + 1 WHERE id = ?", (key,))
                    done += 1
        return done

    results = run_threads(8, work)
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert backend.query("SELECT sum(n) FROM lock_item") == [(sum(results),)]
    assert gov.monitor.stats()["locks.lock_rows"].errors == 0


def test_lock_rows_holds_the_rows_for_the_block(gov: Any, backend: Backend) -> None:
    make_counter_table(backend, rows=3)
    holder = Holder(lambda: gov.locks.lock_rows("lock_item", [2, 1]))
    try:
        with (
            pytest.raises(ConcurrencyError) as info,
            gov.locks.lock_rows("lock_item", ["1"], timeout=0.2),
        ):
            pytest.fail("row 1 was locked by another transaction")
    finally:
        holder.stop()
    assert info.value.context["table"] == "lock_item"
    with gov.locks.lock_rows("lock_item", ["1"], timeout=1):
        pass


def test_lock_rows_missing_keys(gov: Any, backend: Backend) -> None:
    make_counter_table(backend, rows=3)
    with pytest.raises(ValidationError) as info, gov.locks.lock_rows("lock_item", [1, 99, 98]):
        pytest.fail("missing rows were not reported")
    assert info.value.context["missing"] == ["98", "99"]
    assert info.value.context["missing_count"] == 2
    with gov.locks.lock_rows("lock_item", [1, 99], skip_missing=True) as conn:
        backend.execute(conn, "UPDATE lock_item SET n = 5 WHERE id = 1")
    assert backend.query("SELECT n FROM lock_item WHERE id = 1") == [(5,)]


def test_lock_rows_by_another_column(gov: Any, backend: Backend) -> None:
    backend.query("CREATE TABLE sku (id integer PRIMARY KEY, code text NOT NULL UNIQUE)")
    backend.query("INSERT INTO sku (id, code) VALUES (1, 'B-2'), (2, 'A-1')")
    with gov.locks.lock_rows("sku", ["B-2", "A-1"], column="code") as conn:
        assert backend.execute(conn, "SELECT count(*) FROM sku") == [(2,)]
    with pytest.raises(ValidationError), gov.locks.lock_rows("sku", ["A-1"], column="nope"):
        pass


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("lock_item; DROP TABLE lock_item", None),
        ('lock_item"; DROP TABLE lock_item; --', None),
        ("a.b.c.d", None),
        ("no_such_table", None),
        ("", None),
        ("lock_item", "id; DROP TABLE lock_item"),
        ("lock_item", 'n"'),
    ],
)
def test_hostile_names_are_refused_and_change_nothing(
    gov: Any, backend: Backend, table: str, column: str | None
) -> None:
    make_counter_table(backend, rows=1)
    with pytest.raises(ValidationError), gov.locks.lock_rows(table, [1], column=column):
        pytest.fail("entered the block")
    assert backend.query("SELECT id, n FROM lock_item") == [(1, 0)]


@pytest.mark.parametrize("keys", [[], "12", [None], [True], [1.5], list(range(10_001))])
def test_bad_keys_are_validation_errors(gov: Any, backend: Backend, keys: Any) -> None:
    make_counter_table(backend, rows=1)
    with pytest.raises(ValidationError), gov.locks.lock_rows("lock_item", keys):
        pytest.fail("entered the block")


def test_lock_rows_needs_update_rights(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
        conn.execute("INSERT INTO ledger VALUES (1)")
        conn.execute("GRANT USAGE ON SCHEMA public TO governance_app")
        conn.execute("GRANT SELECT ON ledger TO governance_app")
    with pg_gov.transaction() as tx:
        tx.execute("SET LOCAL ROLE governance_app")
        with (
            pytest.raises(GovernanceError) as info,
            pg_gov.locks.lock_rows("public.ledger", [1], conn=tx),
        ):
            pass
    assert isinstance(info.value, pygov.errors.AuthorityViolationError)


def test_lock_rows_sql_for_dbas(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE bins (id int PRIMARY KEY)")
        setup.execute("INSERT INTO bins SELECT generate_series(1, 5)")
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT * FROM governance.lock_rows('public.bins', ARRAY['5', '1', '03'])"
        ).fetchall()
        assert rows == [("1",), ("3",), ("5",)]
        with psycopg.connect(pg_dsn) as other:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute("SELECT * FROM bins WHERE id = 3 FOR UPDATE NOWAIT")
            other.rollback()
            assert other.execute("SELECT id FROM bins WHERE id = 2 FOR UPDATE NOWAIT").fetchone()


def test_sqlite_reads_schema_dot_table_as_schema_underscore_table(
    sqlite_gov: pygov.Governance,
) -> None:
    with sqlite_gov.transaction() as tx:
        tx.execute("CREATE TABLE inventory_bin (code TEXT PRIMARY KEY)")
        tx.execute("INSERT INTO inventory_bin VALUES ('A'), ('B')")
    with sqlite_gov.locks.lock_rows("inventory.bin", ["B", "A"]) as conn:
        assert conn.execute("SELECT count(*) FROM inventory_bin").fetchone() == (2,)
    with pytest.raises(ValidationError), sqlite_gov.locks.lock_rows("inventory.nope", ["A"]):
        pass
