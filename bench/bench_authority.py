"""Authority: validate() against a bare indexed SELECT of the same matrix row, and writes to a
protected table against the same writes to an identical unprotected one (target: at most 1.3x
the time), same run, same server.

Writes run through ``gov.transaction()`` on both sides (context applied, one INSERT, COMMIT), so
the only difference is the guard trigger. They are measured with durable commits (what a
deployment sees) and with ``synchronous_commit = off`` (no fsync to hide behind: the guard's CPU
cost shows fully).
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

import pygov
from bench.common import BenchServer, Result, throughput, timed

SECONDS = 4.0
MODEL = "accounting.journal_entry"
MATRIX = {
    "AccountingGateway": {MODEL: ["CREATE", "UPDATE"]},
    "FeesGateway": {"students.student_fee": ["CREATE", "UPDATE"]},
}
# The same lookup validate() makes first: the matrix row, by its primary key.
BARE_SELECT = (
    "SELECT 1 FROM governance.authority_matrix"
    " WHERE service = $1 AND model_name = $2 AND operation = $3"
)
TABLES = """
CREATE TABLE public.bench_plain (id bigint PRIMARY KEY, amount numeric NOT NULL, note text);
CREATE TABLE public.bench_protected (id bigint PRIMARY KEY, amount numeric NOT NULL, note text);
"""


ROUNDS = 5


def _alternating(measure: Callable[[str], float]) -> tuple[float, float]:
    """Median of ``ROUNDS`` measurements (a rate) of the plain and the protected table, taken
    in turns."""
    plain: list[float] = []
    guarded: list[float] = []
    for _ in range(ROUNDS):
        plain.append(measure("bench_plain"))
        guarded.append(measure("bench_protected"))
    return statistics.median(plain), statistics.median(guarded)


def _pg(server: BenchServer) -> list[Result]:
    results: list[Result] = []
    with server.database() as dsn:
        pool = psycopg_pool.ConnectionPool(
            dsn, min_size=16, max_size=16, kwargs={"autocommit": True}, open=True
        )
        pool.wait()
        with pool.connection() as conn:
            conn.execute(TABLES.encode())
        gov = pygov.connect(dsn, pool_min_size=16, pool_max_size=16)
        with gov.context(user="bench", superuser=True):
            gov.authority.load_matrix(MATRIX)
            gov.authority.protect("public.bench_protected", MODEL)

        def bare(client: int, i: int) -> None:
            with pool.connection() as conn:
                psycopg.RawCursor(conn).execute(BARE_SELECT, ("AccountingGateway", MODEL, "CREATE"))

        def validate(client: int, i: int) -> None:
            gov.authority.validate("AccountingGateway", MODEL, "CREATE")

        for clients in (1, 16):
            throughput(clients, 0.5, bare)
            throughput(clients, 0.5, validate)
            base = throughput(clients, SECONDS, bare)
            ours = throughput(clients, SECONDS, validate)
            results.append(
                Result(
                    f"validate() vs bare matrix SELECT, {clients} client(s) [PG]",
                    ours,
                    base,
                    "ops/s",
                )
            )

        ids = itertools.count(1)

        def writer(table: str, durable: bool) -> Callable[[int, int], None]:
            def op(client: int, i: int) -> None:
                # Worker threads start with an empty context: set it on both sides alike.
                with (
                    gov.context(user="bench", service="AccountingGateway"),
                    gov.transaction() as tx,
                ):
                    if not durable:
                        tx.execute("SET LOCAL synchronous_commit = off")
                    tx.execute(
                        f"INSERT INTO public.{table} (id, amount, note) VALUES (%s, %s, %s)",
                        (next(ids), 10, "fee"),
                    )

            return op

        with gov.context(user="bench", service="AccountingGateway"):
            for durable in (True, False):
                label = "durable commits" if durable else "synchronous_commit off"
                for table in ("bench_plain", "bench_protected"):
                    throughput(4, 0.5, writer(table, durable))
                # Alternate short rounds so that drift on a shared machine hits both sides.
                plain, guarded = _alternating(
                    lambda t, d=durable: throughput(4, SECONDS / ROUNDS, writer(t, d))
                )
                # Time per write (4 clients): lower is better; the target is on the ratio.
                ours, base = 4 / guarded * 1000, 4 / plain * 1000
                results.append(
                    Result(
                        f"protected vs plain single-row INSERT, 4 clients, {label} [PG]",
                        ours,
                        base,
                        "ms",
                        "<= 1.30x",
                        ours / base <= 1.3,
                    )
                )

            def bulk(table: str) -> float:
                first = next(ids) + 1_000_000
                for _ in range(100_000):
                    next(ids)
                statement = (
                    f"INSERT INTO public.{table} (id, amount, note)"
                    f" SELECT {first} + g, 10, 'bulk' FROM generate_series(1, 100000) g"
                ).encode()

                def insert() -> None:
                    with gov.transaction() as tx:
                        tx.execute(statement)

                return 1 / timed(insert)

            bulk("bench_plain")
            bulk("bench_protected")
            plain_rate, guarded_rate = _alternating(bulk)
            results.append(
                Result(
                    "protected vs plain INSERT ... SELECT of 100,000 rows [PG]",
                    1 / guarded_rate,
                    1 / plain_rate,
                    "s",
                    "<= 1.30x",
                    plain_rate / guarded_rate <= 1.3,
                )
            )
        gov.close()
        pool.close()
    return results


def _sqlite() -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        gov = pygov.connect(f"sqlite:///{path}")
        gov.migrate()
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        for table in ("bench_plain", "bench_protected"):
            raw.execute(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL, note TEXT)"
            )
        with gov.context(user="bench", superuser=True):
            gov.authority.load_matrix(MATRIX)
            gov.authority.protect("bench_protected", MODEL)

        def rate(func: Callable[[int], Any], n: int = 3000) -> float:
            started = time.perf_counter()
            for i in range(n):
                func(i)
            return n / (time.perf_counter() - started)

        base = rate(
            lambda i: raw.execute(
                "SELECT 1 FROM governance_authority_matrix"
                " WHERE service = ? AND model_name = ? AND operation = ?",
                ("AccountingGateway", MODEL, "CREATE"),
            ).fetchall()
        )
        ours = rate(lambda i: gov.authority.validate("AccountingGateway", MODEL, "CREATE"))
        results.append(
            Result("validate() vs bare matrix SELECT, 1 client [SQLite WAL]", ours, base, "ops/s")
        )

        def writer(table: str) -> Callable[[int], None]:
            def op(i: int) -> None:
                with gov.transaction() as tx:
                    tx.execute(f"INSERT INTO {table} VALUES (?, 10, 'fee')", (i,))

            return op

        ids = itertools.count(1)
        with gov.context(user="bench", service="AccountingGateway"):
            plain, guarded = _alternating(lambda t: rate(lambda i: writer(t)(next(ids)), 1000))
        results.append(
            Result(
                "protected vs plain single-row INSERT, 1 client [SQLite WAL]",
                1000 / guarded,
                1000 / plain,
                "ms",
                "<= 1.30x",
                plain / guarded <= 1.3,
            )
        )
        raw.close()
        gov.close()
    return results


def run(server: BenchServer) -> list[Result]:
    return _pg(server) + _sqlite()
