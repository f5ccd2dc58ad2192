"""Quarantine: scan_orphans over 1,000,000 child rows with 1% orphans (10,000 quarantined)
against a bare anti-join SELECT of the same rows, in the same run.

The scan does what the SELECT does, and then stores a record with a JSON snapshot for every
orphan and writes its audit row, all committed. Each round times the bare SELECT (rows fetched
by the client) and then the scan on an empty quarantine table; the figures are the medians.
SQLite: the same comparison through the fallback (informational).
"""

from __future__ import annotations

import sqlite3
import statistics
import tempfile
from pathlib import Path
from typing import Any

import psycopg

import pygov
from bench.common import BenchServer, Result, timed

CHILD_ROWS = 1_000_000
PARENT_ROWS = 100_000
ORPHANS = CHILD_ROWS // 100
ROUNDS = 7

# The shapes of the demo's student_fee and journal_entry; every 100th entry's fee is missing.
PG_SETUP = f"""
CREATE TABLE fee (id int PRIMARY KEY, student_id int NOT NULL, amount numeric(12, 2) NOT NULL);
INSERT INTO fee SELECT g, g % 5000, 100 + g % 400 FROM generate_series(1, {PARENT_ROWS}) g;
CREATE TABLE journal_entry (
    id bigint PRIMARY KEY, fee_id int, amount numeric(12, 2) NOT NULL, description text NOT NULL,
    posted_at timestamptz NOT NULL DEFAULT now());
INSERT INTO journal_entry (id, fee_id, amount, description)
SELECT g, CASE WHEN g % 100 = 0 THEN {PARENT_ROWS} + g ELSE 1 + g % {PARENT_ROWS} END,
       (g % 1000) + 0.5, 'fee payment ' || g
  FROM generate_series(1, {CHILD_ROWS}) g;
"""
BARE_SELECT = (
    "SELECT c.* FROM journal_entry c WHERE c.fee_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM fee p WHERE p.id = c.fee_id)"
)


def _measure(gov: pygov.Governance, conn: Any, reset_sql: str) -> tuple[float, float, float]:
    """Median seconds of the scan, of the bare SELECT (on ``conn``, psycopg or sqlite3) and of a
    second scan that finds nothing new. Both paths are warmed first, then alternated."""

    def bare() -> int:
        return len(conn.execute(BARE_SELECT).fetchall())

    def scan(expected: int) -> None:
        got = gov.quarantine.scan_orphans("journal_entry", "fee_id", "fee")
        if got != expected:
            raise RuntimeError(f"scan quarantined {got} rows, expected {expected}")

    if bare() != ORPHANS:
        raise RuntimeError("the benchmark tables do not have the expected orphans")
    scan(ORPHANS)
    conn.execute(reset_sql)
    bare_times: list[float] = []
    scan_times: list[float] = []
    for _ in range(ROUNDS):
        bare_times.append(timed(bare))
        scan_times.append(timed(lambda: scan(ORPHANS)))
        conn.execute(reset_sql)
    scan(ORPHANS)
    rescan = statistics.median(timed(lambda: scan(0)) for _ in range(3))
    return statistics.median(scan_times), statistics.median(bare_times), rescan


def _pg(server: BenchServer) -> list[Result]:
    with server.database() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(PG_SETUP.encode())
        conn.execute("VACUUM ANALYZE fee, journal_entry")
        gov = pygov.connect(dsn, pool_min_size=1, pool_max_size=2)
        try:
            with gov.context(user="bench", service="bench"):
                ours, base, rescan = _measure(gov, conn, "TRUNCATE governance.quarantine_record")
        finally:
            gov.close()
    return [
        Result(
            "scan_orphans, 1M rows, 1% orphans vs bare anti-join SELECT [PG]",
            ours,
            base,
            "s",
            "<= 1.5x",
            ours / base <= 1.5,
        ),
        Result("scan_orphans again (all already open) vs the same SELECT [PG]", rescan, base, "s"),
    ]


def _sqlite() -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="pygov-bench-") as tmp:
        path = str(Path(tmp) / "quarantine.db")
        gov = pygov.connect(f"sqlite:///{path}")
        try:
            gov.migrate()
            conn = sqlite3.connect(path, isolation_level=None)
            conn.executescript(
                "CREATE TABLE fee (id INTEGER PRIMARY KEY, student_id INTEGER, amount NUMERIC);"
                "CREATE TABLE journal_entry (id INTEGER PRIMARY KEY, fee_id INTEGER,"
                " amount NUMERIC NOT NULL, description TEXT NOT NULL, posted_at TEXT NOT NULL"
                " DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));"
                "BEGIN;"
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g"
                f" WHERE n < {PARENT_ROWS})"
                " INSERT INTO fee SELECT n, n % 5000, 100 + n % 400 FROM g;"
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g"
                f" WHERE n < {CHILD_ROWS})"
                " INSERT INTO journal_entry (id, fee_id, amount, description)"
                f" SELECT n, CASE WHEN n % 100 = 0 THEN {PARENT_ROWS} + n"
                f" ELSE 1 + n % {PARENT_ROWS} END, (n % 1000) + 0.5, 'fee payment ' || n FROM g;"
                "COMMIT; ANALYZE;"
            )
            ours, base, rescan = _measure(gov, conn, "DELETE FROM governance_quarantine_record")
            conn.close()
        finally:
            gov.close()
    return [
        Result(
            "scan_orphans, 1M rows, 1% orphans vs bare anti-join SELECT [SQLite]", ours, base, "s"
        ),
        Result(
            "scan_orphans again (all already open) vs the same SELECT [SQLite]", rescan, base, "s"
        ),
    ]


def run(server: BenchServer) -> list[Result]:
    return _pg(server) + _sqlite()
