"""Migrations: yoyo applies the versioned DDL, then ``sql/`` is re-applied every time.

PostgreSQL: a session advisory lock on a dedicated connection serialises concurrent migrators
(yoyo's own lock table would itself be created concurrently), so two processes migrating an
empty database at once both succeed and leave one schema.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pygov._resources import migrations_dir
from pygov.errors import GovernanceError, translate

# pg_advisory_lock key for migrations: hashtext('pygov.migrate') computed once, kept stable.
MIGRATION_LOCK_KEY = 0x70796776  # "pygv"


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate()`` did."""

    applied: list[str]
    functions_reloaded: bool


def yoyo_uri(dsn: str) -> str:
    """A yoyo URI (psycopg 3 driver) carrying every libpq parameter of ``dsn``."""
    params: dict[str, Any] = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    dbname = str(params.pop("dbname", "") or "")
    return f"postgresql+psycopg:///{quote(dbname)}?{urlencode(params)}"


def _apply_with_yoyo(uri: str, source: str) -> list[str]:
    from yoyo import get_backend, read_migrations

    backend = get_backend(uri)
    try:
        migrations = read_migrations(str(migrations_dir(source)))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            # yoyo runs post-apply hooks only after a pending migration: run them every time.
            backend.run_post_apply(migrations)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def migrate_postgres(dsn: str) -> MigrationReport:
    """Apply pending migrations and reload every function from ``sql/``."""
    try:
        with psycopg.connect(dsn, autocommit=True) as lock_conn:
            lock_conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                applied = _apply_with_yoyo(yoyo_uri(dsn), "postgres")
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    except GovernanceError:
        raise
    except Exception as exc:
        raise translate(exc) from exc
    return MigrationReport(applied, True)


def migrate_sqlite(path: str, conn: sqlite3.Connection | None = None) -> MigrationReport:
    """Apply ``migrations/sqlite`` to a file with yoyo, or straight onto ``conn`` in memory."""
    try:
        if path == ":memory:":
            assert conn is not None
            applied = _apply_scripts(conn)
        else:
            applied = _apply_with_yoyo(f"sqlite:///{path}", "sqlite")
    except GovernanceError:
        raise
    except Exception as exc:
        raise translate(exc) from exc
    return MigrationReport(applied, False)


def _apply_scripts(conn: sqlite3.Connection) -> list[str]:
    # An in-memory database lives in one connection, which yoyo cannot share: apply the same
    # files directly and keep yoyo's bookkeeping table so that the shapes stay alike.
    conn.execute("CREATE TABLE IF NOT EXISTS _yoyo_migration (migration_id TEXT PRIMARY KEY)")
    done = {row[0] for row in conn.execute("SELECT migration_id FROM _yoyo_migration")}
    applied: list[str] = []
    for path in sorted(migrations_dir("sqlite").glob("*.sql")):
        if path.name.endswith(".rollback.sql") or path.stem in done:
            continue
        conn.executescript(
            "BEGIN;\n" + path.read_text(encoding="utf-8") + "\n;"
            f"INSERT INTO _yoyo_migration VALUES ('{path.stem}');\nCOMMIT;"
        )
        applied.append(path.stem)
    return applied
