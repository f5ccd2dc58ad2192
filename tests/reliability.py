"""Helpers shared by the reliability suite (faults, hostile input, privileges, pooling)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def rows(dsn: str, statement: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """Run SQL as the owner on a fresh autocommit connection (bypassing pygov)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return list(cur.fetchall()) if cur.description else []


def terminate(admin_dsn: str, pid: int) -> None:
    """pg_terminate_backend, waiting until the backend has really gone."""
    gone = rows(admin_dsn, "SELECT pg_terminate_backend(%s, 10000)", (pid,))
    assert gone == [(True,)], f"backend {pid} did not terminate"


def client_backends(admin_dsn: str, database: str) -> list[int]:
    """The pids of every client backend connected to ``database`` (but ours)."""
    found = rows(
        admin_dsn,
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'",
        (database,),
    )
    return [int(r[0]) for r in found]


def with_params(dsn: str, **params: Any) -> str:
    """``dsn`` with libpq parameters replaced (user, dbname, options ...)."""
    merged = {**conninfo_to_dict(dsn), **params}
    return make_conninfo(**{k: v for k, v in merged.items() if v is not None})


def database_of(dsn: str) -> str:
    return str(conninfo_to_dict(dsn)["dbname"])


def unique_name(prefix: str) -> str:
    """A name unique across the cluster (roles are cluster-wide, tests run in parallel)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def login_role(admin_dsn: str, database_dsn: str, *grants: str) -> Iterator[str]:
    """A LOGIN role (unique name) granted ``grants``; dropped again afterwards."""
    name = unique_name("pygov_rel")
    rows(admin_dsn, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        for grant in grants:
            rows(
                admin_dsn,
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(grant), sql.Identifier(name)),
            )
        yield name
    finally:
        rows(
            database_dsn,
            sql.SQL(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = {}"
            ).format(sql.Literal(name)),
        )
        rows(database_dsn, sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        rows(admin_dsn, sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def snapshot(dsn: str, table: str, order_by: str = "1") -> list[tuple[Any, ...]]:
    """Every row of a table (as the owner), in a stable order, for before/after comparisons."""
    return rows(dsn, f"SELECT * FROM {table} ORDER BY {order_by}")
