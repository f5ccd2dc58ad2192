"""The PostgreSQL backend for the async API: an asyncpg pool running the same SQL text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import asyncpg
from psycopg.conninfo import conninfo_to_dict

from pygov._core import Row, Settings, Statement
from pygov._pg import APPLY_CONTEXT_SQL
from pygov.context import current_context
from pygov.errors import GovernanceError, translate

#: What asyncpg raises when the server or the connection fails (InternalClientError: its
#: protocol state broke, e.g. the connection died in the middle of an operation).
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


async def _init_connection(conn: Any) -> None:
    # psycopg decodes json/jsonb to Python objects; make asyncpg do the same so that the
    # result mapping is shared. Arguments are always passed as text (``$n::text::jsonb``).
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


def asyncpg_dsn(dsn: str) -> str:
    """asyncpg takes URLs only: turn a libpq ``key=value`` DSN into one."""
    if urlsplit(dsn).scheme in {"postgresql", "postgres"}:
        return dsn
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if v is not None}
    database = quote(str(params.pop("dbname", "")))
    return f"postgresql:///{database}?{urlencode(params)}"


async def _keep_session(conn: Any) -> None:
    """Pool release without asyncpg's reset query (one more round trip per call otherwise).

    pygov leaves no session state behind: its settings are transaction-local and its advisory
    locks transaction-scoped, and asyncpg still rolls back a transaction left open. Like
    psycopg's pool, connections are handed out as the last user left them: do not change session
    state (``SET`` without ``LOCAL``, session advisory locks) on pygov's connections.
    """


class AsyncpgBackend:
    """Runs statements on an asyncpg pool, or on the caller's asyncpg connection."""

    kind = "postgresql"

    def __init__(self, dsn: str, settings: Settings) -> None:
        self.dsn = dsn
        self._url = asyncpg_dsn(dsn)
        self._settings = settings
        self._pool: Any = None

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=self._settings.pool_min_size,
                max_size=self._settings.pool_max_size,
                init=_init_connection,
                reset=_keep_session,
                statement_cache_size=100 if self._settings.prepared_statements else 0,
            )
        except Exception as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def fetch(
        self, statement: Statement, args: tuple[Any, ...], conn: Any = None
    ) -> list[Row]:
        try:
            if conn is not None:
                return list(await conn.fetch(statement.sql, *args))
            async with self._pool.acquire() as pooled:
                return list(await pooled.fetch(statement.sql, *args))
        except GovernanceError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def execute_script(self, sql: str) -> None:
        try:
            async with self._pool.acquire() as pooled, pooled.transaction():
                await pooled.execute(sql)
        except Exception as exc:
            raise translate(exc) from exc

    @asynccontextmanager
    async def transaction(self, conn: Any = None) -> AsyncIterator[Any]:
        """A transaction with the governance context applied; errors come out translated."""
        try:
            if conn is not None:
                async with conn.transaction():
                    await conn.fetch(APPLY_CONTEXT_SQL, current_context().to_json())
                    yield conn
                return
            async with self._pool.acquire() as pooled, pooled.transaction():
                await pooled.fetch(APPLY_CONTEXT_SQL, current_context().to_json())
                yield pooled
        except GovernanceError:
            raise
        except DRIVER_ERRORS as exc:
            # When the connection died inside the block, leaving the transaction fails too
            # ("connection is closed"); report the first failure, which says what happened.
            first = exc.__context__
            if isinstance(first, GovernanceError):
                raise first from None
            if isinstance(first, DRIVER_ERRORS):
                raise translate(first) from first
            raise translate(exc) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire() as pooled:
                yield pooled
        except GovernanceError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
