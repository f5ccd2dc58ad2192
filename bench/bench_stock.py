"""Guarded stock under contention: ``gov.stock.adjust`` against a bare guarded UPDATE.

16 client threads adjust one hot item, then 16 items (one each). The baseline is the least a
guarded stock change can be: ``UPDATE ... SET quantity = quantity + $1 WHERE ... AND quantity +
$1 >= 0`` through the same driver (psycopg, autocommit, a pool of the same size), on a table of
the same shape, measured in the same run. pygov does more per change (creates a missing level,
records the movement with its context, reports refusals with figures), in one call; and on the
hot item the changes concurrent clients make share round trips and commits (pygov.stock).

The four cases run in turns, ROUNDS times, and each figure is the mean of its turns, so that a
change in the machine's load during the run (other processes) weighs on all of them alike.

Targets: on the hot item at least 0.6x the bare UPDATE, and the hot item's throughput at least a
third of the spread case's.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool

import pygov
from bench.common import BenchServer, Result, throughput

CLIENTS = 16
ROUNDS = 3
SECONDS = 1.5
WARMUP_SECONDS = 0.3
START = 10**12

BARE_TABLE = """
CREATE TABLE bench_stock_level (
    item_id text NOT NULL, location_id text NOT NULL, quantity bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (item_id, location_id), CHECK (quantity >= 0)
) WITH (fillfactor = 70)
"""
BARE_UPDATE = (
    "UPDATE bench_stock_level SET quantity = quantity + $1::bigint "
    "WHERE item_id = $2::text AND location_id = $3::text AND quantity + $1::bigint >= 0"
)


def _delta(i: int) -> int:
    # Alternate withdrawals and deposits: the level stays put, every change is accepted.
    return 1 if i % 2 else -1


def _measure(ops: dict[str, Any]) -> dict[str, float]:
    for op in ops.values():
        throughput(CLIENTS, WARMUP_SECONDS, op)
    means = dict.fromkeys(ops, 0.0)
    for _ in range(ROUNDS):
        for name, op in ops.items():
            means[name] += throughput(CLIENTS, SECONDS, op) / ROUNDS
    return means


def run(server: BenchServer) -> list[Result]:
    with server.database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(BARE_TABLE)
            conn.execute(
                "INSERT INTO bench_stock_level (item_id, location_id, quantity) "
                "SELECT 'item-' || g, 'main', %s FROM generate_series(0, %s) g "
                "UNION ALL SELECT 'hot', 'main', %s",
                (START, CLIENTS - 1, START),
            )
        gov = pygov.connect(dsn, pool_min_size=CLIENTS, pool_max_size=CLIENTS)
        pool = psycopg_pool.ConnectionPool(
            dsn,
            min_size=CLIENTS,
            max_size=CLIENTS,
            kwargs={"autocommit": True, "prepare_threshold": 5},
            open=True,
        )
        try:
            for item in ["hot", *(f"item-{c}" for c in range(CLIENTS))]:
                gov.stock.adjust(item, "main", START)

            def bare(item: str, i: int) -> None:
                with pool.connection() as c, psycopg.RawCursor(c) as cur:
                    cur.execute(BARE_UPDATE, (_delta(i), item, "main"))
                    if cur.rowcount != 1:
                        raise RuntimeError("the bare update was refused")

            def adjust(item: str, i: int) -> None:
                gov.stock.adjust(item, "main", _delta(i))

            m = _measure(
                {
                    "hot_bare": lambda c, i: bare("hot", i),
                    "hot_gov": lambda c, i: adjust("hot", i),
                    "spread_bare": lambda c, i: bare(f"item-{c}", i),
                    "spread_gov": lambda c, i: adjust(f"item-{c}", i),
                }
            )
            hot_bare, hot_gov = m["hot_bare"], m["hot_gov"]
            spread_bare, spread_gov = m["spread_bare"], m["spread_gov"]
            levels = {gov.stock.level(item, "main") for item in ["hot", "item-0"]}
        finally:
            pool.close()
            gov.close()
    # Each client ends a run one withdrawal down at most: the levels barely moved.
    if not all(START - 4 * CLIENTS <= level <= START for level in levels):
        raise RuntimeError(f"unexpected stock levels after the benchmark: {levels}")
    hot = Result(
        f"stock.adjust, {CLIENTS} clients, 1 hot item (vs bare UPDATE)",
        hot_gov,
        hot_bare,
        "ops/s",
        ">= 0.6x",
    )
    hot.passed = hot.ratio >= 0.6
    spread = Result(
        f"stock.adjust, {CLIENTS} clients, {CLIENTS} items (vs bare UPDATE)",
        spread_gov,
        spread_bare,
        "ops/s",
    )
    contention = Result(
        "stock.adjust, hot item (vs the same on 16 items)", hot_gov, spread_gov, "ops/s", ">= 0.33x"
    )
    contention.passed = contention.ratio >= 1 / 3
    bare_contention = Result(
        "bare UPDATE, hot item (vs the same on 16 items)", hot_bare, spread_bare, "ops/s"
    )
    results = [hot, spread, contention, bare_contention]
    for r in results:
        print(f"  {r.name}: {r.pygov:.0f} vs {r.baseline:.0f} ops/s = {r.ratio:.2f}x {r.target}")
    return results
