"""Idempotency: check_and_record against a bare INSERT ... ON CONFLICT DO NOTHING.

PostgreSQL: new keys and repeated keys, 1 and 16 concurrent clients, sync (psycopg); async
(asyncpg) against sync at 16 callers. SQLite: against a bare INSERT OR IGNORE through sqlite3.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import psycopg_pool

import pygov
import pygov.aio
from bench.common import BenchServer, Result, throughput
from pygov._asyncpg import asyncpg_dsn

SECONDS = 16.0  # per side and configuration, in ROUNDS alternating rounds
ROUNDS = 8

# An equivalent table: the same columns, defaults, constraints and indexes as
# governance.idempotency_record (LIKE ... INCLUDING ALL), outside the governance schema.
BASELINE_TABLE = """
CREATE TABLE bench_idempotency (LIKE governance.idempotency_record INCLUDING ALL);
"""
BASELINE_INSERT = (
    "INSERT INTO bench_idempotency (operation_type, idempotency_key, status, result_data,"
    " created_by, created_service, completed_at, expires_at)"
    " VALUES ($1, $2, 'COMPLETED', $3::text::jsonb, $4, $4, now(), now() + interval '24 hours')"
    " ON CONFLICT DO NOTHING"
)


def _pg(server: BenchServer) -> list[Result]:
    results: list[Result] = []
    with server.database() as dsn:
        pool = psycopg_pool.ConnectionPool(
            dsn, min_size=16, max_size=16, kwargs={"autocommit": True}, open=True
        )
        pool.wait()
        with pool.connection() as conn:
            conn.execute(BASELINE_TABLE.encode())
        gov = pygov.connect(dsn, pool_min_size=16, pool_max_size=16)
        run_id = uuid.uuid4().hex[:6]

        def bare(prefix: str, repeated: bool) -> Callable[[int, int], None]:
            def op(client: int, i: int) -> None:
                key = f"{prefix}-{client}-{0 if repeated else i}"
                with pool.connection() as conn:
                    psycopg.RawCursor(conn).execute(
                        BASELINE_INSERT, ("fee", key, '{"entry_id": 1}', "bench")
                    )

            return op

        kept_cursors: dict[int, psycopg.RawCursor[Any]] = {}

        def bare_kept(prefix: str, repeated: bool) -> Callable[[int, int], None]:
            # The same INSERT written as tightly as pygov's own calls: getconn/putconn and one
            # cursor kept per connection (see _pg.PooledConnection).
            def op(client: int, i: int) -> None:
                key = f"{prefix}-{client}-{0 if repeated else i}"
                conn = pool.getconn()
                try:
                    cur = kept_cursors.get(id(conn))
                    if cur is None:
                        cur = kept_cursors[id(conn)] = psycopg.RawCursor(conn)
                    cur.execute(BASELINE_INSERT, ("fee", key, '{"entry_id": 1}', "bench"))
                finally:
                    pool.putconn(conn)

            return op

        def governed(prefix: str, repeated: bool) -> Callable[[int, int], None]:
            def op(client: int, i: int) -> None:
                key = f"{prefix}-{client}-{0 if repeated else i}"
                gov.idempotency.check_and_record("fee", key, {"entry_id": 1})

            return op

        with gov.context(user="bench", service="bench"):
            for clients in (1, 16):
                for repeated in (False, True):
                    label = "repeated" if repeated else "new"
                    # Warm both paths (plans, prepared statements) before measuring.
                    throughput(clients, 0.5, bare(f"w{run_id}b{clients}{label}", repeated))
                    throughput(
                        clients,
                        0.5,
                        governed(f"w{run_id}g{clients}{label}", repeated),
                        inherit_context=True,
                    )
                    # Short rounds in turns (ABBA), medians: drift on a shared machine
                    # then hits both sides alike. Each round uses keys of its own.
                    base_rates: list[float] = []
                    our_rates: list[float] = []
                    for r in range(ROUNDS):
                        prefix = f"{run_id}r{r}"
                        pair = [
                            (base_rates, bare(f"{prefix}b{clients}{label}", repeated), False),
                            (our_rates, governed(f"{prefix}g{clients}{label}", repeated), True),
                        ]
                        for rates, op, inherit in pair if r % 2 == 0 else pair[::-1]:
                            rates.append(
                                throughput(clients, SECONDS / ROUNDS, op, inherit_context=inherit)
                            )
                    base = statistics.median(base_rates)
                    ours = statistics.median(our_rates)
                    target, passed = "", None
                    if clients == 16 and not repeated:
                        target, passed = ">= 0.70x", ours / base >= 0.7
                    results.append(
                        Result(
                            f"check_and_record, {label} keys, {clients} client(s) [PG]",
                            ours,
                            base,
                            "ops/s",
                            target,
                            passed,
                        )
                    )
            # Informational: against the INSERT sent the way pygov sends its statements.
            throughput(16, 0.5, bare_kept(f"w{run_id}k", False))
            kept_rates: list[float] = []
            governed_rates: list[float] = []
            for r in range(ROUNDS):
                pair = [
                    (kept_rates, bare_kept(f"{run_id}r{r}k", False), False),
                    (governed_rates, governed(f"{run_id}r{r}gk", False), True),
                ]
                for rates, op, inherit in pair if r % 2 == 0 else pair[::-1]:
                    rates.append(throughput(16, SECONDS / ROUNDS, op, inherit_context=inherit))
            results.append(
                Result(
                    "check_and_record, new keys, 16 clients vs bare INSERT on kept cursors [PG]",
                    statistics.median(governed_rates),
                    statistics.median(kept_rates),
                    "ops/s",
                )
            )
            # The workers ran inside the caller's governance context, as the baseline's rows
            # carry created_by: check that it reached the records.
            sample = gov.idempotency.get("fee", f"{run_id}r0g16new-0-0")
            if sample is None or sample.created_by != "bench":
                raise RuntimeError("the governance context did not reach the benchmark records")
            sync_16 = throughput(
                16, SECONDS / 2, governed(f"{run_id}sync16", False), inherit_context=True
            )
        gov.close()
        pool.close()
        async_16, async_bare = asyncio.run(_async_pair(dsn, 16, SECONDS, run_id))
        results.append(
            Result(
                "check_and_record, new keys, 16 callers [PG, asyncpg]",
                async_16,
                async_bare,
                "ops/s",
            )
        )
        results.append(
            Result(
                "check_and_record, new keys, 16 callers: async vs sync",
                async_16,
                sync_16,
                "ops/s",
            )
        )
    return results


async def _async_rate(
    callers: int, seconds: float, op: Callable[[int, int], Awaitable[object]]
) -> float:
    """``op(caller, i)`` from ``callers`` tasks for ``seconds``; operations per second."""
    counts = [0] * callers
    stop = asyncio.Event()

    async def caller(c: int) -> None:
        i = 0
        while not stop.is_set():
            await op(c, i)
            i += 1
        counts[c] = i

    started = time.perf_counter()
    tasks = [asyncio.create_task(caller(c)) for c in range(callers)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)
    return sum(counts) / (time.perf_counter() - started)


async def _async_pair(dsn: str, callers: int, seconds: float, run_id: str) -> tuple[float, float]:
    """check_and_record through pygov.aio against the bare INSERT through asyncpg itself, new
    keys, in alternating rounds: (pygov, bare) medians."""
    agov = await pygov.aio.connect(dsn, pool_min_size=callers, pool_max_size=callers)
    apool = await asyncpg.create_pool(asyncpg_dsn(dsn), min_size=callers, max_size=callers)

    def ours(prefix: str) -> Callable[[int, int], Awaitable[object]]:
        async def op(c: int, i: int) -> None:
            await agov.idempotency.check_and_record("fee", f"{prefix}-{c}-{i}", {"entry_id": 1})

        return op

    def bare(prefix: str) -> Callable[[int, int], Awaitable[object]]:
        async def op(c: int, i: int) -> None:
            await apool.execute(
                BASELINE_INSERT, "fee", f"{prefix}-{c}-{i}", '{"entry_id": 1}', "bench"
            )

        return op

    our_rates: list[float] = []
    bare_rates: list[float] = []
    with agov.context(user="bench", service="bench"):
        await _async_rate(callers, 0.5, ours(f"w{run_id}ao"))
        await _async_rate(callers, 0.5, bare(f"w{run_id}ab"))
        for r in range(ROUNDS):
            pair = [(our_rates, ours(f"{run_id}r{r}ao")), (bare_rates, bare(f"{run_id}r{r}ab"))]
            for rates, op in pair if r % 2 == 0 else pair[::-1]:
                rates.append(await _async_rate(callers, seconds / ROUNDS, op))
    await apool.close()
    await agov.close()
    return statistics.median(our_rates), statistics.median(bare_rates)


def _sqlite() -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        gov = pygov.connect(f"sqlite:///{path}")
        gov.migrate()
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        raw.execute(
            "CREATE TABLE bench_idempotency (id INTEGER PRIMARY KEY, operation_type TEXT NOT NULL,"
            " idempotency_key TEXT NOT NULL, status TEXT NOT NULL, result_data TEXT,"
            " created_at TEXT NOT NULL, expires_at TEXT NOT NULL,"
            " UNIQUE (operation_type, idempotency_key))"
        )

        def bare(key: str) -> None:
            now = datetime.now(UTC)
            raw.execute(
                "INSERT OR IGNORE INTO bench_idempotency (operation_type, idempotency_key, status,"
                " result_data, created_at, expires_at) VALUES (?, ?, 'COMPLETED', ?, ?, ?)",
                (
                    "fee",
                    key,
                    '{"entry_id": 1}',
                    now.isoformat(),
                    (now + timedelta(days=1)).isoformat(),
                ),
            )

        def governed(key: str) -> None:
            gov.idempotency.check_and_record("fee", key, {"entry_id": 1})

        for repeated in (False, True):
            label = "repeated" if repeated else "new"
            timings = []
            for func in (bare, governed):
                n = 3000
                started = time.perf_counter()
                for i in range(n):
                    func(f"{label}-{0 if repeated else i}")
                timings.append(n / (time.perf_counter() - started))
            results.append(
                Result(
                    f"check_and_record, {label} keys, 1 client [SQLite WAL]",
                    timings[1],
                    timings[0],
                    "ops/s",
                )
            )
        raw.close()
        gov.close()
    return results


def run(server: BenchServer) -> list[Result]:
    return _pg(server) + _sqlite()
