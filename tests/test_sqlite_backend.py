"""SQLite-specific guarantees: one winner per key across processes, WAL, no "database is locked"."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import pygov
from pygov.errors import ConcurrencyError, ConfigurationError, ValidationError


def _claim_worker(path: str, worker: int, queue: Any) -> None:
    won: list[str] = []
    errors: list[str] = []
    gov = pygov.connect(f"sqlite:///{path}")
    keys = [f"key-{i % 50}" for i in range(200)]
    random.Random(worker).shuffle(keys)
    for key in keys:
        try:
            claim = gov.idempotency.claim("xproc", key, wait=30)
            if claim.claimed:
                gov.idempotency.complete(claim, {"winner": worker})
                won.append(key)
        except Exception as exc:  # reported to the parent, which fails the test
            errors.append(repr(exc))
    gov.close()
    queue.put((worker, won, errors))


def test_four_processes_two_hundred_claims_each_one_winner_per_key(sqlite_path: str) -> None:
    gov = pygov.connect(f"sqlite:///{sqlite_path}")
    gov.migrate()
    gov.close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_worker, args=(sqlite_path, w, queue)) for w in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [e for _, _, errs in results for e in errs]
    assert errors == []
    winners = [key for _, won, _ in results for key in won]
    assert sorted(winners) == sorted(f"key-{i}" for i in range(50))
    with sqlite3.connect(sqlite_path) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, status, json_extract(result_data, '$.winner')"
            " FROM governance_idempotency_record WHERE operation_type = 'xproc'"
        ).fetchall()
    assert len(rows) == 50
    assert all(status == "COMPLETED" for _, status, _ in rows)
    by_key = {key: winner for key, _, winner in rows}
    for worker, won, _ in results:
        assert all(by_key[key] == worker for key in won)


def test_file_database_uses_wal(sqlite_gov: pygov.Governance, sqlite_path: str) -> None:
    with sqlite3.connect(sqlite_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_context_superuser_stands_in_for_governance_admin(
    sqlite_gov: pygov.Governance,
) -> None:
    with pytest.raises(pygov.AuthorityViolationError):
        sqlite_gov.idempotency.cleanup_expired()
    with sqlite_gov.context(superuser=True):
        assert sqlite_gov.idempotency.cleanup_expired() == 0


def test_postgres_ignores_the_superuser_flag(pg_dsn: str) -> None:
    # Only database roles grant admin duties in PostgreSQL: a context flag must not.
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pygov_flag_test")
        conn.execute("CREATE ROLE pygov_flag_test LOGIN")
        conn.execute("GRANT governance_app TO pygov_flag_test")
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(pg_dsn)
        params["user"] = "pygov_flag_test"
        gov = pygov.connect(make_conninfo(**params))
        try:
            with gov.context(superuser=True), pytest.raises(pygov.AuthorityViolationError):
                gov.idempotency.cleanup_expired()
        finally:
            gov.close()
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP OWNED BY pygov_flag_test")
            conn.execute("DROP ROLE pygov_flag_test")


def test_an_unmigrated_sqlite_file_is_a_configuration_error_not_a_retryable_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as app:  # an application's file that pygov never migrated
        app.execute("CREATE TABLE invoice (id INTEGER PRIMARY KEY)")
    gov = pygov.connect(f"sqlite:///{path}")
    try:
        with pytest.raises(ConfigurationError) as info:
            gov.idempotency.check_and_record("op", "k")
        assert info.value.context["sqlstate"] == "3F000"
        assert not isinstance(info.value, ConcurrencyError)
    finally:
        gov.close()


def test_infinite_reals_are_recorded_as_postgresql_records_float_infinities(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    with sqlite3.connect(sqlite_path) as app:
        app.execute("CREATE TABLE gauge (id INTEGER PRIMARY KEY, level REAL, note TEXT)")
        app.execute("INSERT INTO gauge VALUES (1, -1e999, 'low'), (2, 5.5, 'ok')")
    # older SQLite versions write -Inf, which is not JSON, into json_object()
    assert sqlite_gov.quarantine.scan_negative("gauge", "level") == 1
    [record] = sqlite_gov.quarantine.list()
    assert record.data == {"id": 1, "level": "-Infinity", "note": "low"}
    sqlite_gov.audit.enable("gauge")
    with sqlite_gov.transaction() as tx:
        tx.execute("UPDATE gauge SET level = 1e999 WHERE id = 2")
    [update] = sqlite_gov.audit.history("gauge", 2)
    assert (update.before_data["level"], update.after_data["level"]) == (5.5, "Infinity")


def test_a_null_primary_key_fails_the_scan_with_a_clear_error_and_stores_nothing(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    with sqlite3.connect(sqlite_path) as app:  # SQLite allows NULL in a TEXT primary key
        app.execute("CREATE TABLE bin (code TEXT PRIMARY KEY, qty INTEGER)")
        app.execute("INSERT INTO bin VALUES ('a', -1), (NULL, -2)")
    with pytest.raises(ValidationError) as info:
        sqlite_gov.quarantine.scan_negative("bin", "qty")
    assert info.value.context["reason"] == "null_primary_key"
    assert info.value.context["key_columns"] == ["code"]
    assert sqlite_gov.quarantine.list() == []
    with sqlite3.connect(sqlite_path) as app:
        app.execute("UPDATE bin SET code = 'b' WHERE code IS NULL")
    assert sqlite_gov.quarantine.scan_negative("bin", "qty") == 2


def test_guard_refuses_insert_or_replace_of_a_quarantined_row(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    from pygov.errors import QuarantineError

    with sqlite3.connect(sqlite_path) as app:
        app.execute("CREATE TABLE bin (code TEXT PRIMARY KEY, qty INTEGER)")
        app.execute("INSERT INTO bin VALUES ('a', -1), ('b', 2)")
    with sqlite_gov.context(superuser=True):
        assert sqlite_gov.quarantine.guard("bin") is True
    assert sqlite_gov.quarantine.scan_negative("bin", "qty") == 1
    # REPLACE deletes the row it replaces without firing DELETE triggers: the INSERT is refused
    with pytest.raises(QuarantineError), sqlite_gov.transaction() as tx:
        tx.execute("INSERT OR REPLACE INTO bin VALUES ('a', 100)")
    app = sqlite3.connect(sqlite_path)  # any client, not only pygov's connections
    try:
        with pytest.raises(sqlite3.IntegrityError, match="GV005"):
            app.execute("REPLACE INTO bin VALUES ('a', 100)")
        app.execute("INSERT OR REPLACE INTO bin VALUES ('b', 3)")  # not quarantined
        app.execute("INSERT INTO bin VALUES ('c', 1)")
        # inserts that change nothing behave as they would without the guard
        app.execute("INSERT OR IGNORE INTO bin VALUES ('a', 0)")
        app.execute("INSERT INTO bin VALUES ('a', 0) ON CONFLICT DO NOTHING")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            app.execute("INSERT INTO bin VALUES ('a', 0)")
        app.commit()
        assert app.execute("SELECT code, qty FROM bin ORDER BY code").fetchall() == [
            ("a", -1),
            ("b", 3),
            ("c", 1),
        ]
    finally:
        app.close()


def test_only_admins_log_models_of_the_governance_schema(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    from pygov.errors import AuthorityViolationError

    model = "governance.quarantine_record"
    with sqlite3.connect(sqlite_path) as app:
        app.execute("CREATE TABLE fake (id INTEGER PRIMARY KEY)")
    for forge in (
        lambda: sqlite_gov.audit.log_operation(model, "1", "UPDATE"),
        lambda: sqlite_gov.audit.log_gateway_operation("gw", model, "1", "DELETE"),
        lambda: sqlite_gov.audit.enable("fake", model_name=model),
    ):
        with pytest.raises(AuthorityViolationError):
            forge()
    assert sqlite_gov.audit.history(model, "1") == []
    sqlite_gov.audit.log_operation("ledger.Entry", "1", "CREATE")  # an application's own model
    with sqlite_gov.context(superuser=True):
        sqlite_gov.audit.log_operation("governance.quarantine_record", "1", "UPDATE")
    assert len(sqlite_gov.audit.history("governance.quarantine_record", "1")) == 1
