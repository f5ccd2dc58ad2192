"""Audit trail benchmarks, each against an identical unaudited baseline in the same run.

(a) one ``INSERT ... SELECT`` of 100,000 rows: audited time / unaudited time (target <= 3.0x),
    beside (a') the floor: a bare statement-level trigger copying rows as jsonb into a
    one-index table;
(b) single-row UPDATEs from 4 concurrent clients, each its own transaction, for a fixed time:
    audited throughput / unaudited throughput (target >= 0.7x);
(c) ``gov.audit.history()`` of one object in a 1,000,000-row trail: median latency (target
    < 2 ms), beside the same query sent by hand.
"""

from __future__ import annotations

import random
import statistics
import time

import psycopg

import pygov
from bench.common import BenchServer, Result, throughput, timed

ROWS = 100_000
UPDATE_ROWS = 10_000
CLIENTS = 4
SECONDS = 3.0
ROUNDS = 3
TRAIL_ROWS = 1_000_000
OBJECTS = 20_000
HISTORY_CALLS = 2_000

TABLE = (
    "CREATE TABLE public.{name} (id bigint PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, "
    "price numeric(12, 2) NOT NULL, note text, updated_at timestamptz NOT NULL DEFAULT now())"
)
FILL = (
    "INSERT INTO public.{name} (id, sku, qty, price, note) "
    "SELECT g, 'SKU-' || g, g % 100, (g % 1000) / 10.0, 'row ' || g "
    "FROM generate_series({start}, {start} + {count} - 1) g"
)


# The floor the issue measures against: a bare statement-level trigger that copies the rows as
# jsonb into a table with one index, nothing else (no context, key, partitions or seals).
BARE = """
CREATE TABLE public.bare_sink (id bigserial PRIMARY KEY, row_data jsonb NOT NULL);
CREATE FUNCTION public.bare_copy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bare_sink (row_data) SELECT to_jsonb(n) FROM new_rows n;
    RETURN NULL;
END $$;
CREATE TRIGGER bare_copy AFTER INSERT ON public.bare_bulk REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION public.bare_copy();
"""


def _bulk_insert(dsn: str) -> list[Result]:
    names = ("plain_bulk", "audited_bulk", "bare_bulk")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(TABLE.format(name=name))
        conn.execute("SELECT governance.enable_audit('public.audited_bulk')")
        conn.execute(BARE)
        times: dict[str, list[float]] = {name: [] for name in names}
        for run in range(5):
            # Alternate the order so that no side always runs on a warmer cache.
            order = list(names) if run % 2 == 0 else list(reversed(names))
            for name in order:
                sql = FILL.format(name=name, start=run * ROWS + 1, count=ROWS)
                times[name].append(timed(lambda sql=sql: conn.execute(sql)))
            conn.execute("CHECKPOINT")
        audited = statistics.median(times["audited_bulk"])
        plain = statistics.median(times["plain_bulk"])
        bare = statistics.median(times["bare_bulk"])
        count = conn.execute(
            "SELECT count(*) FROM governance.audit_trail WHERE model_name = 'public.audited_bulk'"
            " AND operation = 'CREATE'"
        ).fetchone()
    assert count is not None and count[0] == 5 * ROWS, count
    return [
        Result(
            f"audit (a) INSERT...SELECT {ROWS:,} rows, audited vs not (s)",
            audited,
            plain,
            "s",
            "<= 3.0x",
            audited / plain <= 3.0,
        ),
        Result("audit (a') same, bare jsonb-copy trigger vs not (s)", bare, plain, "s", "floor"),
    ]


def _concurrent_updates(dsn: str) -> list[Result]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in ("plain_upd", "audited_upd"):
            conn.execute(TABLE.format(name=name))
            conn.execute(FILL.format(name=name, start=1, count=UPDATE_ROWS))
        conn.execute("SELECT governance.enable_audit('public.audited_upd')")
        conn.execute("VACUUM ANALYZE public.plain_upd, public.audited_upd")
    # Alternate short rounds so that both sides see the same load on a shared machine.
    rates: dict[str, list[float]] = {"plain_upd": [], "audited_upd": []}
    for _ in range(ROUNDS):
        for name in rates:
            rates[name].append(_update_rate(dsn, name))
    audited = statistics.median(rates["audited_upd"])
    plain = statistics.median(rates["plain_upd"])
    return [
        Result(
            f"audit (b) 1-row UPDATEs, {CLIENTS} clients, audited vs not (ops/s)",
            audited,
            plain,
            "ops/s",
            ">= 0.7x",
            audited / plain >= 0.7,
        )
    ]


def _update_rate(dsn: str, table: str) -> float:
    """Single-row UPDATEs per second from CLIENTS connections, each its own transaction."""
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(CLIENTS)]
    rngs = [random.Random(c) for c in range(CLIENTS)]
    sql = f"UPDATE public.{table} SET qty = qty + 1, updated_at = now() WHERE id = %s"

    def update(client: int, _i: int) -> None:
        conns[client].execute(sql, (rngs[client].randint(1, UPDATE_ROWS),))

    try:
        return throughput(CLIENTS, SECONDS, update)
    finally:
        for c in conns:
            c.close()


def _history(dsn: str) -> list[Result]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO governance.audit_trail (transaction_id, model_name, object_id, "
            "operation, user_name, db_role, before_data, after_data, changed_fields) "
            "SELECT pg_current_xact_id()::text::bigint, 'shop.item', (g %% %s)::text, 'UPDATE', "
            "'user-' || (g %% 300), 'bench', jsonb_build_object('id', g %% %s, 'qty', g - 1), "
            "jsonb_build_object('id', g %% %s, 'qty', g), '{qty}' "
            "FROM generate_series(1, %s) g",
            (OBJECTS, OBJECTS, OBJECTS, TRAIL_ROWS),
        )
        conn.execute("VACUUM ANALYZE governance.audit_trail")
    rng = random.Random(7)
    keys = [str(rng.randrange(OBJECTS)) for _ in range(HISTORY_CALLS)]
    gov = pygov.connect(dsn, pool_min_size=1, pool_max_size=1)
    try:
        for k in keys[:100]:  # warm the pool, the caches and the prepared statement
            gov.audit.history("shop.item", k)
        samples = []
        for k in keys:
            started = time.perf_counter()
            records = gov.audit.history("shop.item", k)
            samples.append(time.perf_counter() - started)
        assert len(records) == 50, len(records)
    finally:
        gov.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        query = (
            "SELECT * FROM governance.audit_trail WHERE model_name = %s "
            "AND octet_length(object_id) = octet_length(%s) AND object_id = %s "
            "ORDER BY id DESC LIMIT 50"
        )
        for k in keys[:100]:
            conn.execute(query, ("shop.item", k, k), prepare=True).fetchall()
        raw = []
        for k in keys:
            started = time.perf_counter()
            conn.execute(query, ("shop.item", k, k), prepare=True).fetchall()
            raw.append(time.perf_counter() - started)
    median_ms = statistics.median(samples) * 1000
    return [
        Result(
            f"audit (c) history() in a {TRAIL_ROWS:,}-row trail, median (ms)",
            median_ms,
            statistics.median(raw) * 1000,
            "ms",
            "< 2 ms",
            median_ms < 2.0,
        )
    ]


def run(server: BenchServer) -> list[Result]:
    results: list[Result] = []
    for bench in (_bulk_insert, _concurrent_updates, _history):
        with server.database() as dsn:
            for r in bench(dsn):
                print(f"  {r.name}: {r.pygov:.4g} vs {r.baseline:.4g} -> {r.ratio:.2f}x")
                results.append(r)
    return results
