"""Faults against the real server: killed backends, a stopped and restarted server, timeouts.

Whatever fails, the caller sees a pygov error (never a driver error), nothing is half-applied,
claims recover once their lease expires, and the pools hand out working connections again.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pygov
import pygov.aio
from pygov._embedded import EmbeddedPostgres
from pygov.errors import (
    ConcurrencyError,
    GovernanceError,
    IdempotencyError,
    IdempotencyInProgressError,
)
from tests.helpers import run_threads
from tests.reliability import client_backends, database_of, rows, terminate

LEDGER = "CREATE TABLE public.ledger (key text PRIMARY KEY, amount int NOT NULL)"


@pytest.fixture
def ledger_dsn(pg_dsn: str) -> str:
    """A test database with a business table the idempotent work writes to."""
    rows(pg_dsn, LEDGER)
    return pg_dsn


def ledger(dsn: str) -> list[tuple[Any, ...]]:
    return rows(dsn, "SELECT key, amount FROM public.ledger ORDER BY key")


def records(dsn: str, op: str) -> list[tuple[Any, ...]]:
    return rows(
        dsn,
        "SELECT idempotency_key, status, result_data FROM governance.idempotency_record "
        "WHERE operation_type = %s ORDER BY idempotency_key",
        (op,),
    )


def assert_connection_lost(err: BaseException) -> None:
    """A lost connection is a ConcurrencyError that says what happened."""
    assert isinstance(err, ConcurrencyError), repr(err)
    state = str(err.context.get("sqlstate", ""))
    assert state[:2] in {"57", "08"}, err.context
    assert err.context.get("driver_error"), err.context


# --- a backend killed in the middle of an idempotent operation's work ----------------------


def test_killed_mid_work_leaves_nothing_half_applied_and_claim_recovers_after_lease(
    ledger_dsn: str, pg_server: Any
) -> None:
    gov = pygov.connect(ledger_dsn, pool_max_size=8)
    try:
        claim = gov.idempotency.claim("pay", "k1", lease=0.5)
        with pytest.raises(GovernanceError) as info, gov.transaction() as tx:
            tx.execute("INSERT INTO public.ledger VALUES ('k1', 100)")
            terminate(pg_server.admin_dsn, tx.info.backend_pid)
            gov.idempotency.complete(claim, {"paid": 100}, conn=tx)
        assert_connection_lost(info.value)
        # The work rolled back with its transaction; the claim (committed before) is still held.
        assert ledger(ledger_dsn) == []
        assert records(ledger_dsn, "pay") == [("k1", "IN_PROGRESS", None)]
        with pytest.raises(IdempotencyInProgressError):
            gov.idempotency.claim("pay", "k1")
        time.sleep(0.6)  # let the dead worker's lease run out
        retry = gov.idempotency.claim("pay", "k1", lease=30)
        assert retry.claimed and retry.token != claim.token
        with gov.transaction() as tx:
            tx.execute("INSERT INTO public.ledger VALUES ('k1', 100)")
            gov.idempotency.complete(retry, {"paid": 100}, conn=tx)
        # The dead worker's token is worthless now.
        with pytest.raises(IdempotencyError):
            gov.idempotency.complete(claim, {"paid": 999})
        assert ledger(ledger_dsn) == [("k1", 100)]
        assert records(ledger_dsn, "pay") == [("k1", "COMPLETED", {"paid": 100})]
        # The pool threw the dead connection away: every connection it hands out works.
        results = run_threads(12, lambda i: gov.idempotency.check_and_record("after", f"a{i}"))
        assert [r for r in results if isinstance(r, BaseException)] == []
    finally:
        gov.close()


def test_killed_inside_guarded_transaction_rolls_back_claim_and_work_together(
    ledger_dsn: str, pg_server: Any
) -> None:
    gov = pygov.connect(ledger_dsn, pool_max_size=4)
    try:
        with (
            pytest.raises(GovernanceError) as info,
            gov.transaction() as tx,
            gov.idempotency.guard("fee", "g1", conn=tx) as g,
        ):
            assert not g.is_duplicate
            tx.execute("INSERT INTO public.ledger VALUES ('g1', 5)")
            terminate(pg_server.admin_dsn, tx.info.backend_pid)
            g.result = {"fee": 5}
        assert_connection_lost(info.value)
        # Claim, work and completion were one transaction: none of it happened, so a retry
        # runs at once (no lease to wait for).
        assert ledger(ledger_dsn) == [] and records(ledger_dsn, "fee") == []
        with gov.transaction() as tx, gov.idempotency.guard("fee", "g1", conn=tx) as g:
            assert not g.is_duplicate
            tx.execute("INSERT INTO public.ledger VALUES ('g1', 5)")
            g.result = {"fee": 5}
        assert ledger(ledger_dsn) == [("g1", 5)]
        assert records(ledger_dsn, "fee") == [("g1", "COMPLETED", {"fee": 5})]
    finally:
        gov.close()


def test_killed_mid_work_async_leaves_nothing_half_applied(ledger_dsn: str, pg_server: Any) -> None:
    async def scenario() -> None:
        gov = await pygov.aio.connect(ledger_dsn, pool_max_size=4)
        try:
            claim = await gov.idempotency.claim("pay", "a1", lease=0.5)
            with pytest.raises(GovernanceError) as info:
                async with gov.transaction() as tx:
                    await tx.execute("INSERT INTO public.ledger VALUES ('a1', 7)")
                    await asyncio.to_thread(terminate, pg_server.admin_dsn, tx.get_server_pid())
                    await gov.idempotency.complete(claim, {"paid": 7}, conn=tx)
            assert_connection_lost(info.value)
            assert ledger(ledger_dsn) == []
            assert records(ledger_dsn, "pay") == [("a1", "IN_PROGRESS", None)]
            await asyncio.sleep(0.6)  # the lease of the dead worker's claim runs out
            retry = await gov.idempotency.claim("pay", "a1")
            assert retry.claimed
            async with gov.transaction() as tx:
                await tx.execute("INSERT INTO public.ledger VALUES ('a1', 7)")
                await gov.idempotency.complete(retry, {"paid": 7}, conn=tx)
            assert ledger(ledger_dsn) == [("a1", 7)]
            done = await asyncio.gather(
                *(gov.idempotency.check_and_record("after", f"a{i}") for i in range(8))
            )
            assert all(not r.is_duplicate for r in done)
        finally:
            await gov.close()

    asyncio.run(scenario())


# --- a backend killed while an audited bulk write or a seal is under way -----------------------


def kill_when_waiting(admin_dsn: str, pid: int) -> threading.Thread:
    """In the background: once backend ``pid`` waits for a lock, terminate it."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = rows(
                admin_dsn,
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                (pid,),
            )
            if waiting:
                terminate(admin_dsn, pid)
                return
            time.sleep(0.01)  # polling an observable condition, not guessing a duration

    thread = threading.Thread(target=run)
    thread.start()
    return thread


BLOCKER = 4242  # the advisory lock a doomed transaction is made to wait for


@pytest.fixture
def audited_items(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An audited table public.items, and a session holding advisory lock BLOCKER: a
    transaction that then asks for it waits, mid-way, until we kill it. (A session lock
    outside any transaction: it holds back no snapshot, so seals still see every row.)"""
    rows(pg_dsn, "CREATE TABLE public.items (id int PRIMARY KEY, qty int NOT NULL)")
    gov = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        gov.audit.enable("public.items")
    finally:
        gov.close()
    holder = psycopg.connect(pg_dsn, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (BLOCKER,))
    try:
        yield holder
    finally:
        holder.close()


WAIT_FOR_BLOCKER = f"SELECT pg_advisory_xact_lock({BLOCKER})"


def audit_rows(dsn: str) -> list[tuple[Any, ...]]:
    return rows(dsn, "SELECT id, operation, object_id FROM governance.audit_trail ORDER BY id")


def test_killed_mid_audited_bulk_write_leaves_neither_rows_nor_audit(
    pg_dsn: str, pg_server: Any, audited_items: Any
) -> None:
    trail = audit_rows(pg_dsn)
    gov = pygov.connect(pg_dsn, pool_max_size=4)
    try:
        with (
            pytest.raises(GovernanceError) as info,
            gov.context(user="bulk"),
            gov.transaction() as tx,
        ):
            tx.execute("INSERT INTO public.items SELECT g, g FROM generate_series(1, 20000) g")
            tx.execute("UPDATE public.items SET qty = qty + 1 WHERE id <= 5000")
            killer = kill_when_waiting(pg_server.admin_dsn, tx.info.backend_pid)
            tx.execute(WAIT_FOR_BLOCKER)  # waits, and is killed
        killer.join()
        assert_connection_lost(info.value)
        assert rows(pg_dsn, "SELECT count(*) FROM public.items") == [(0,)]
        assert audit_rows(pg_dsn) == trail  # not one of the 25 000 audit rows remains
        # The same write goes through without the fault; the trail verifies.
        with gov.context(user="bulk"), gov.transaction() as tx:
            tx.execute("INSERT INTO public.items SELECT g, g FROM generate_series(1, 20000) g")
        assert len(audit_rows(pg_dsn)) == len(trail) + 20000
        gov.audit.seal()
        assert gov.audit.verify().ok
    finally:
        gov.close()


def test_killed_mid_seal_leaves_no_partial_seal(
    pg_dsn: str, pg_server: Any, audited_items: Any
) -> None:
    gov = pygov.connect(pg_dsn, pool_max_size=4)
    try:
        for n in range(50):
            gov.audit.log_operation("seal.test", n, "CREATE", after_data={"n": n})
        # Killed while its transaction, which holds a fresh seal, waits for a lock.
        with pytest.raises(GovernanceError) as info, gov.transaction() as tx:
            sealed = gov.audit.seal(conn=tx)
            assert sealed and sum(s.row_count for s in sealed) >= 50
            killer = kill_when_waiting(pg_server.admin_dsn, tx.info.backend_pid)
            tx.execute(WAIT_FOR_BLOCKER)
        killer.join()
        assert_connection_lost(info.value)
        assert rows(pg_dsn, "SELECT count(*) FROM governance.audit_seal") == [(0,)]
        # Killed while waiting for its turn to seal (another sealer holds the lock).
        with psycopg.connect(pg_dsn) as sealer:
            sealer.execute("SELECT pg_advisory_xact_lock(hashtext('governance.seal_audit'))")
            with pytest.raises(GovernanceError) as info, gov.transaction() as tx:
                killer = kill_when_waiting(pg_server.admin_dsn, tx.info.backend_pid)
                gov.audit.seal(conn=tx)
            killer.join()
            assert_connection_lost(info.value)
        assert rows(pg_dsn, "SELECT count(*) FROM governance.audit_seal") == [(0,)]
        # Sealing again seals everything once, and the chain verifies.
        again = gov.audit.seal()
        assert sum(s.row_count for s in again) == sum(s.row_count for s in sealed)
        assert gov.audit.seal() == []
        result = gov.audit.verify()
        assert result.ok and result.rows_checked >= 50
    finally:
        gov.close()


# --- a backend killed in the middle of a stock adjustment ------------------------------------


def stock_state(dsn: str) -> tuple[Any, Any]:
    level = rows(dsn, "SELECT quantity FROM governance.stock_level WHERE item_id = 'sku'")
    moves = rows(
        dsn,
        "SELECT movement_key, delta FROM governance.stock_movement WHERE item_id = 'sku' "
        "ORDER BY id",
    )
    return level, moves


def test_killed_mid_stock_adjustment_applies_nothing_and_the_key_stays_usable(
    pg_dsn: str, pg_server: Any, audited_items: Any
) -> None:
    gov = pygov.connect(pg_dsn, pool_max_size=4)
    try:
        gov.stock.adjust("sku", "wh", 10, movement_key="in-1")
        before = stock_state(pg_dsn)
        with pytest.raises(GovernanceError) as info, gov.transaction() as tx:
            assert gov.stock.adjust("sku", "wh", -3, movement_key="out-1", conn=tx) == 7
            killer = kill_when_waiting(pg_server.admin_dsn, tx.info.backend_pid)
            tx.execute(WAIT_FOR_BLOCKER)
        killer.join()
        assert_connection_lost(info.value)
        assert stock_state(pg_dsn) == before
        # The refused movement did not use its key up: applied once now, and only once.
        assert gov.stock.adjust("sku", "wh", -3, movement_key="out-1") == 7
        assert gov.stock.adjust("sku", "wh", -3, movement_key="out-1") == 7
        assert stock_state(pg_dsn) == ([(7,)], [("in-1", 10), ("out-1", -3)])
    finally:
        gov.close()


def test_killed_while_combined_adjustments_wait_every_movement_applies_once(
    pg_dsn: str, pg_server: Any
) -> None:
    gov = pygov.connect(pg_dsn, pool_max_size=8)
    try:
        gov.stock.adjust("sku", "wh", 100, movement_key="start")
        holder = psycopg.connect(pg_dsn)  # holds the level's row: adjusters queue up behind it
        holder.execute("SELECT 1 FROM governance.stock_level WHERE item_id = 'sku' FOR UPDATE")
        errors: list[BaseException] = []

        def adjust(i: int) -> None:
            for _attempt in range(20):  # the caller's retry, with the same movement key
                try:
                    gov.stock.adjust("sku", "wh", -1, movement_key=f"sale-{i}")
                    return
                except GovernanceError as exc:
                    errors.append(exc)
            raise AssertionError(f"sale-{i} never went through")

        threads = [threading.Thread(target=adjust, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while not (
            waiting := rows(
                pg_server.admin_dsn,
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%adjust_stock%%' AND datname = %s",
                (database_of(pg_dsn),),
            )
        ):
            assert time.monotonic() < deadline, "no adjustment reached the row lock"
            time.sleep(0.01)  # polling an observable condition
        terminate(pg_server.admin_dsn, int(waiting[0][0]))
        holder.rollback()
        holder.close()
        for t in threads:
            t.join()
        # The sender's batch died with its connection: its callers were told so, and retried.
        assert errors and all(isinstance(e, ConcurrencyError) for e in errors), errors
        level, moves = stock_state(pg_dsn)
        assert level == [(92,)]
        assert sorted(moves) == sorted([("start", 100)] + [(f"sale-{i}", -1) for i in range(8)])
    finally:
        gov.close()


# --- the cursor a pooled connection keeps ---------------------------------------------------


def _only_connection(gov: pygov.Governance) -> Any:
    """The single connection of a pool of size 1 (handed back at once)."""
    pool = gov._backend._pool  # type: ignore[attr-defined]
    conn = pool.getconn()
    pool.putconn(conn)
    return conn


def test_pooled_connection_keeps_one_cursor_but_not_after_an_error_or_a_large_result(
    pg_dsn: str,
) -> None:
    gov = pygov.connect(pg_dsn, pool_min_size=1, pool_max_size=1)
    try:
        gov.idempotency.check_and_record("cursor", "a", {"n": 1}, payload={"n": 1})
        kept = _only_connection(gov).raw_cursor
        assert kept is not None
        gov.idempotency.check_and_record("cursor", "b", {"n": 2})
        assert _only_connection(gov).raw_cursor is kept
        # A failed statement drops the cursor; the next call gets a new one and works.
        with pytest.raises(pygov.errors.IdempotencyPayloadMismatchError):
            gov.idempotency.check_and_record("cursor", "a", {"n": 1}, payload={"n": 2})
        assert _only_connection(gov).raw_cursor is None
        again = gov.idempotency.check_and_record("cursor", "a", {"n": 1}, payload={"n": 1})
        assert again.is_duplicate and again.data == {"n": 1}
        assert _only_connection(gov).raw_cursor not in (None, kept)
        # A result of many rows is not kept alive by an idle connection.
        for i in range(150):
            gov.idempotency.check_and_record(f"cursor-{i}", "k")
        stats = gov.idempotency.stats()
        assert len(stats) == 151
        assert _only_connection(gov).raw_cursor is None
        assert gov.idempotency.get("cursor", "b") is not None
        assert _only_connection(gov).raw_cursor is not None
    finally:
        gov.close()


# --- idle pooled connections killed under the pool's feet -----------------------------------


def test_sync_pool_recovers_after_its_idle_backends_are_killed(pg_dsn: str, pg_server: Any) -> None:
    gov = pygov.connect(pg_dsn, pool_min_size=4, pool_max_size=4)
    try:
        run_threads(4, lambda i: gov.idempotency.check_and_record("warm", f"w{i}"))
        killed = client_backends(pg_server.admin_dsn, database_of(pg_dsn))
        assert len(killed) >= 1
        for pid in killed:
            terminate(pg_server.admin_dsn, pid)
        # A connection killed while idle is only found out when used: that one call fails
        # with a ConcurrencyError, and the pool then drops every broken idle connection.
        outcomes: list[Any] = []
        for i in range(len(killed) + 1):
            try:
                outcomes.append(gov.idempotency.check_and_record("after", f"s{i}"))
                break
            except GovernanceError as exc:
                assert_connection_lost(exc)
                outcomes.append(exc)
        assert not isinstance(outcomes[-1], BaseException)
        assert sum(isinstance(o, BaseException) for o in outcomes) <= 1
        results = run_threads(8, lambda i: gov.idempotency.check_and_record("after", f"t{i}"))
        assert [r for r in results if isinstance(r, BaseException)] == []
        alive = set(client_backends(pg_server.admin_dsn, database_of(pg_dsn)))
        assert alive and not alive & set(killed)
    finally:
        gov.close()


def test_async_pool_recovers_after_its_idle_backends_are_killed(
    pg_dsn: str, pg_server: Any
) -> None:
    async def scenario() -> None:
        gov = await pygov.aio.connect(pg_dsn, pool_min_size=4, pool_max_size=4)
        try:
            await asyncio.gather(
                *(gov.idempotency.check_and_record("warm", f"w{i}") for i in range(4))
            )
            killed = client_backends(pg_server.admin_dsn, database_of(pg_dsn))
            for pid in killed:
                await asyncio.to_thread(terminate, pg_server.admin_dsn, pid)
            # The event loop saw the sockets close: no caller gets a dead connection.
            done = await asyncio.gather(
                *(gov.idempotency.check_and_record("after", f"t{i}") for i in range(8))
            )
            assert all(not r.is_duplicate for r in done)
            alive = set(client_backends(pg_server.admin_dsn, database_of(pg_dsn)))
            assert alive and not alive & set(killed)
        finally:
            await gov.close()

    asyncio.run(scenario())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files in /proc")
def test_sqlite_threads_that_come_and_go_leak_no_file_handles(tmp_path: Path) -> None:
    gov = pygov.connect(f"sqlite:///{tmp_path}/churn.db")
    try:
        gov.migrate()

        def open_files() -> int:
            return len(list(Path("/proc/self/fd").iterdir()))

        def one_request(i: int) -> None:
            thread = threading.Thread(
                target=lambda: gov.idempotency.check_and_record("churn", f"k{i}")
            )
            thread.start()
            thread.join()

        one_request(-1)
        before = open_files()
        for i in range(200):  # a thread per request, as some servers do
            one_request(i)
        assert open_files() <= before + 2
        assert gov.idempotency.stats()["churn"].completed == 201
    finally:
        gov.close()


# --- statement_timeout and lock_timeout inside governance functions --------------------------


@pytest.fixture
def held_key(pg_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An open transaction that has inserted ('held', 'k') and not committed: anyone else
    recording that key waits on its row lock."""
    conn = psycopg.connect(pg_dsn)
    conn.execute(
        "SELECT * FROM governance.check_and_record('held', 'k', '{\"by\": \"holder\"}'::jsonb)"
    )
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def _set_database(dsn: str, setting: str, value: str) -> None:
    rows(dsn, f"ALTER DATABASE {database_of(dsn)} SET {setting} = '{value}'")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("setting", "sqlstate", "reason"),
    [
        ("lock_timeout", "55P03", "lock_timeout"),
        ("statement_timeout", "57014", "statement_timeout"),
    ],
)
def test_timeouts_inside_governance_functions_are_concurrency_errors_with_context(
    pg_dsn: str,
    held_key: psycopg.Connection[Any],
    mode: str,
    setting: str,
    sqlstate: str,
    reason: str,
) -> None:
    _set_database(pg_dsn, setting, "200ms")  # new connections of this database get it

    def check(err: BaseException) -> None:
        assert isinstance(err, ConcurrencyError), repr(err)
        ctx = err.context
        assert ctx["sqlstate"] == sqlstate and ctx["reason"] == reason, ctx
        assert ctx["call"] == "idempotency.check_and_record", ctx
        # Where it waited: on the claiming INSERT inside the governance function (its first
        # claim attempt, or the slow path's), not in the wrapper.
        assert 'relation "idempotency_record"' in ctx["where"], ctx
        assert "governance.check_and_record" in ctx["where"], ctx

    if mode == "sync":
        gov = pygov.connect(pg_dsn, pool_max_size=2)
        try:
            with pytest.raises(GovernanceError) as info:
                gov.idempotency.check_and_record("held", "k", {"by": "waiter"})
            check(info.value)
            # The pool's connection survived the cancelled statement.
            assert gov.idempotency.check_and_record("other", "k").is_duplicate is False
        finally:
            gov.close()
    else:

        async def scenario() -> BaseException:
            gov = await pygov.aio.connect(pg_dsn, pool_max_size=2)
            try:
                with pytest.raises(GovernanceError) as info:
                    await gov.idempotency.check_and_record("held", "k", {"by": "waiter"})
                assert (await gov.idempotency.check_and_record("other", "k")).is_duplicate is False
                return info.value
            finally:
                await gov.close()

        check(asyncio.run(scenario()))
    # The waiter changed nothing: once the holder commits, its record is the one stored.
    held_key.commit()
    assert records(pg_dsn, "held") == [("k", "COMPLETED", {"by": "holder"})]


def test_cancelled_async_call_is_not_wrapped_and_leaves_the_pool_usable(
    pg_dsn: str, held_key: psycopg.Connection[Any]
) -> None:
    async def scenario() -> None:
        gov = await pygov.aio.connect(pg_dsn, pool_min_size=1, pool_max_size=1)
        try:
            # The caller gives up (asyncio.timeout): cancellation is the caller's, never a
            # pygov error, and the server stops waiting too.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await gov.idempotency.check_and_record("held", "k", {"by": "waiter"})
            # The pool's only connection is healthy again and not stuck in the old wait.
            assert not (await gov.idempotency.check_and_record("other", "k")).is_duplicate
        finally:
            await gov.close()

    asyncio.run(scenario())
    waiting = rows(
        pg_dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'",
    )
    assert waiting == [(0,)]
    held_key.commit()
    assert records(pg_dsn, "held") == [("k", "COMPLETED", {"by": "holder"})]


def test_timeout_inside_callers_transaction_rolls_it_back(
    pg_dsn: str, held_key: psycopg.Connection[Any]
) -> None:
    rows(pg_dsn, LEDGER)
    _set_database(pg_dsn, "lock_timeout", "200ms")
    gov = pygov.connect(pg_dsn, pool_max_size=2)
    try:
        with pytest.raises(ConcurrencyError) as info, gov.transaction() as tx:
            tx.execute("INSERT INTO public.ledger VALUES ('x', 1)")
            gov.idempotency.check_and_record("held", "k", conn=tx)
        assert info.value.context["reason"] == "lock_timeout"
        assert ledger(pg_dsn) == []
    finally:
        gov.close()


# --- the server stopped and restarted under 8 workers -----------------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[EmbeddedPostgres]:
    """A server of our own: the restart test must not disturb the session's server.

    ``synchronous_commit`` stays on: with it off, a crash (immediate stop) loses transactions
    that were already acknowledged, which is exactly what the restart test must rule out.
    ``fsync`` off is safe here: the operating system keeps the written WAL across a crash of
    the server process."""
    server = EmbeddedPostgres({"fsync": "off"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_embedded_server_stop_and_start_are_idempotent(own_server: EmbeddedPostgres) -> None:
    dsn = own_server.dsn()
    started = rows(dsn, "SELECT pg_postmaster_start_time()")[0][0]
    own_server.stop_server()
    own_server.stop_server()  # already down: nothing to do
    assert not own_server.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    own_server.start_server()
    own_server.start_server()  # already up: nothing to do
    own_server.stop_server(mode="immediate")  # as after a crash: recovery on next start
    own_server.restart()  # a stopped server is simply started
    own_server.restart()
    assert own_server.is_running()
    assert rows(own_server.dsn(), "SELECT pg_postmaster_start_time()")[0][0] > started


class Workload:
    """8 workers applying idempotent operations (claim + business write + completion in one
    transaction), in pairs that share their keys, until told to finish. Every key a worker
    starts is retried until it is applied; errors are collected by class."""

    def __init__(self, dsn: str, workers: int = 8) -> None:
        self.dsn = dsn
        self.workers = workers
        self.finish = threading.Event()
        self.lock = threading.Condition()
        self.applied = 0
        self.errors: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.attempted: set[str] = set()

    def key(self, worker: int, n: int) -> str:
        return f"pair{worker // 2}-{n}"

    def record_error(self, exc: BaseException) -> None:
        with self.lock:
            if isinstance(exc, GovernanceError):
                self.errors[type(exc).__name__] += 1
            else:
                self.unexpected.append("".join(traceback.format_exception(exc)))

    def done_one(self, key: str) -> None:
        with self.lock:
            self.attempted.add(key)
            self.applied += 1
            self.lock.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: self.applied >= count, timeout), (
                f"workers stalled at {self.applied} applied, errors {self.errors}, "
                f"unexpected {self.unexpected}"
            )

    def run(self, worker: int, apply: Callable[[str], None]) -> None:
        """Apply this worker's keys one after the other, retrying each until it is applied."""
        n = 0
        while not self.finish.is_set():
            key = self.key(worker, n)
            while True:
                try:
                    with pygov.context(user=f"worker-{worker}"):
                        apply(key)
                    break
                except GovernanceError as exc:
                    self.record_error(exc)
                    time.sleep(0.05)  # back off while the server is away
                except Exception as exc:  # a driver error leaked: the test fails
                    self.record_error(exc)
                    return
            self.done_one(key)
            n += 1

    def sync_worker(self, worker: int) -> None:
        gov = pygov.connect(self.dsn, pool_min_size=1, pool_max_size=2)

        def apply(key: str) -> None:
            with gov.transaction() as tx, gov.idempotency.guard("restart", key, conn=tx) as g:
                if not g.is_duplicate:
                    tx.execute("INSERT INTO public.ledger VALUES (%s, 1)", (key,))
                    g.result = {"by": worker}

        try:
            self.run(worker, apply)
        finally:
            gov.close()

    def async_worker(self, worker: int) -> None:
        loop = asyncio.new_event_loop()
        gov = loop.run_until_complete(pygov.aio.connect(self.dsn, pool_min_size=1, pool_max_size=2))

        async def apply(key: str) -> None:
            async with (
                gov.transaction() as tx,
                gov.idempotency.guard("restart", key, conn=tx) as g,
            ):
                if not g.is_duplicate:
                    await tx.execute("INSERT INTO public.ledger VALUES ($1, 1)", key)
                    g.result = {"by": worker}

        try:
            self.run(worker, lambda key: loop.run_until_complete(apply(key)))
        finally:
            loop.run_until_complete(gov.close())
            loop.close()

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(
                target=self.sync_worker if w % 2 == 0 else self.async_worker, args=(w,)
            )
            for w in range(self.workers)
        ]
        for t in threads:
            t.start()
        return threads


def test_server_restart_under_eight_workers_applies_every_key_exactly_once(
    own_server: EmbeddedPostgres,
) -> None:
    dsn = own_server.dsn()
    rows(dsn, "DROP DATABASE IF EXISTS restart_test WITH (FORCE)")
    rows(dsn, "CREATE DATABASE restart_test")
    db = dsn.replace("/postgres?", "/restart_test?")
    setup = pygov.connect(db, pool_min_size=0)
    setup.migrate()
    setup.close()
    rows(db, LEDGER)

    work = Workload(db)
    threads = work.start()
    try:
        for mode in ("fast", "immediate"):  # a clean shutdown, then a crash-like one
            work.wait_for(work.applied + 40)
            own_server.stop_server(mode=mode)
            time.sleep(1.0)  # the outage: workers keep trying meanwhile
            own_server.start_server()
            work.wait_for(work.applied + 40)  # every worker pair carries on
    finally:
        work.finish.set()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert work.unexpected == [], work.unexpected
    # The outages were seen, and only as pygov's connection-loss error.
    assert work.errors and set(work.errors) == {"ConcurrencyError"}, work.errors

    applied = ledger(db)
    keys = [k for k, _ in applied]
    assert len(keys) == len(set(keys)) == len(work.attempted)
    assert set(keys) == work.attempted
    stored = records(db, "restart")
    assert {k for k, *_ in stored} == work.attempted
    assert {status for _, status, _ in stored} == {"COMPLETED"}
