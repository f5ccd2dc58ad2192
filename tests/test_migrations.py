"""Migrations: repeatable, concurrent-safe, and edited function files always reach the database."""

from __future__ import annotations

import multiprocessing
from typing import Any

import psycopg
import pytest

import pygov

CATALOG_SNAPSHOT = """
SELECT 'table', c.relname, c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'governance'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, md5(p.prosrc)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'governance'
UNION ALL
SELECT 'column', c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'governance' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
 WHERE n.nspname = 'governance'
ORDER BY 1, 2, 3
"""


def snapshot(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(CATALOG_SNAPSHOT).fetchall()


def test_migrate_twice_is_a_no_op(empty_pg_dsn: str) -> None:
    gov = pygov.connect(empty_pg_dsn, pool_min_size=0)
    try:
        first = gov.migrate()
        assert "0001_governance_schema" in first.applied
        after_first = snapshot(empty_pg_dsn)
        second = gov.migrate()
        assert second.applied == []
        assert snapshot(empty_pg_dsn) == after_first
    finally:
        gov.close()


def _migrate_in_process(dsn: str, queue: Any) -> None:
    try:
        gov = pygov.connect(dsn, pool_min_size=0)
        try:
            queue.put(("ok", gov.migrate().applied))
        finally:
            gov.close()
    except BaseException as exc:
        queue.put(("error", repr(exc)))


def test_two_processes_migrating_an_empty_database_both_succeed(
    empty_pg_dsn: str, pg_dsn: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_migrate_in_process, args=(empty_pg_dsn, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert all(status == "ok" for status, _ in results), results
    applied = sorted(len(a) for _, a in results)
    assert applied[0] == 0 and applied[1] > 0  # one applied everything, the other nothing
    # One correct schema: identical to the session's template, migrated once.
    assert snapshot(empty_pg_dsn) == snapshot(pg_dsn)


def test_edited_function_files_reach_the_database_on_migrate(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION governance.key_part(p text) RETURNS text"
            " LANGUAGE sql IMMUTABLE AS $$ SELECT 'stale' $$"
        )
        assert conn.execute("SELECT governance.key_part('a:b')").fetchone() == ("stale",)
    gov = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        assert gov.migrate().applied == []  # nothing pending, yet sql/ is re-applied
    finally:
        gov.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT governance.key_part('a:b')").fetchone() == ("a%3Ab",)


def test_roles_exist_after_migrate(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        roles = {
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'governance\\_%'"
            ).fetchall()
        }
    assert {"governance_admin", "governance_app", "governance_auditor"} <= roles


def test_sqlite_migrate_twice_is_a_no_op(sqlite_path: str) -> None:
    gov = pygov.connect(f"sqlite:///{sqlite_path}")
    try:
        assert gov.migrate().applied  # the fixture-free first run applies everything
        assert gov.migrate().applied == []
    finally:
        gov.close()


def test_sqlite_memory_database_migrates_and_works() -> None:
    gov = pygov.connect("sqlite:///:memory:")
    try:
        assert gov.migrate().applied
        assert gov.migrate().applied == []
        assert not gov.idempotency.check_and_record("op", "k").is_duplicate
        assert gov.idempotency.check_and_record("op", "k").is_duplicate
    finally:
        gov.close()


def _migrate_up_to(dsn: str, last: str) -> None:
    """What an older pygov left behind: the migrations up to ``last``, then its sql/."""
    from yoyo import get_backend, read_migrations

    from pygov._resources import migrations_dir
    from pygov.migrate import yoyo_uri

    backend = get_backend(yoyo_uri(dsn))
    try:
        migrations = read_migrations(str(migrations_dir("postgres")))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id <= last)))
            backend.run_post_apply(migrations)
    finally:
        backend.connection.close()


def test_quarantine_keys_migration_keeps_records_and_their_rules(empty_pg_dsn: str) -> None:
    _migrate_up_to(empty_pg_dsn, "0006_stock")
    long_model = "é" * 255  # 510 bytes, 255 characters: allowed before and after
    # Records as 0006's schema holds them (written directly: today's functions expect the
    # tables of later migrations).
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        before = [
            conn.execute(
                "INSERT INTO governance.quarantine_record"
                " (model_name, object_id, corruption_type, reason, status, resolution,"
                " resolution_notes, resolved_at)"
                " VALUES (%s, %s, 'OTHER', 'before', %s, %s, %s, %s) RETURNING id",
                (model, object_id, *resolved),
            ).fetchone()[0]  # type: ignore[index]
            for model, object_id, resolved in (
                ("public.ledger", "7", ("QUARANTINED", None, None, None)),
                (long_model, "ünï", ("QUARANTINED", None, None, None)),
                ("public.ledger", "8", ("RESOLVED", "FALSE_POSITIVE", "checked", "now")),
            )
        ]
    gov = pygov.connect(empty_pg_dsn, pool_min_size=0)
    try:
        with gov.context(user="root", superuser=True):
            assert gov.migrate().applied == ["0007_quarantine_keys", "0008_model_sources"]
            # The open records are still the open records: quarantining again finds them.
            assert gov.quarantine.quarantine_data("public.ledger", "7", "OTHER", "x") == before[0]
            assert gov.quarantine.quarantine_data(long_model, "ünï", "OTHER", "x") == before[1]
            reopened = gov.quarantine.quarantine_data("public.ledger", "8", "OTHER", "again")
            assert reopened not in before
            with pytest.raises(pygov.errors.ValidationError):
                gov.quarantine.quarantine_data("é" * 256, "1", "OTHER", "too long")
        with psycopg.connect(empty_pg_dsn) as conn:
            rows = conn.execute("SELECT id FROM governance.open_quarantine ORDER BY id").fetchall()
            open_ids = [r[0] for r in rows]
            assert open_ids == [before[0], before[1], reopened]
            # The table's own checks, below the wrapper's validation, count characters.
            for model, ok in ((long_model, True), ("é" * 256, False), ("", False)):
                with conn.transaction(force_rollback=True):
                    insert = (
                        "INSERT INTO governance.quarantine_record"
                        " (model_name, object_id, corruption_type, reason)"
                        " VALUES (%s, 'x', 'OTHER', 'r')"
                    )
                    if ok:
                        conn.execute(insert, (model,))
                    else:
                        with pytest.raises(psycopg.errors.CheckViolation):
                            conn.execute(insert, (model,))
    finally:
        gov.close()
