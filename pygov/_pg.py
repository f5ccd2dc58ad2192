"""The PostgreSQL backend for the sync API: a psycopg 3 connection pool."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
import psycopg_pool

from pygov._core import Row, Settings, Statement
from pygov.context import current_context
from pygov.errors import ConcurrencyError, GovernanceError, translate

APPLY_CONTEXT_SQL = "SELECT governance.apply_context($1::text::jsonb)"
#: A statement that returned more rows than this does not keep its cursor: the cursor holds the
#: last result (libpq memory) while the connection sits idle in the pool.
KEEP_CURSOR_MAX_ROWS = 100


class PooledConnection(psycopg.Connection[Any]):
    """A connection of pygov's pool. It keeps one raw cursor for pygov's statements: a new
    cursor looks up the dumper of every parameter and the loader of every result column again,
    and at 16 threads that cost the wrapper a fifth of its throughput."""

    raw_cursor: psycopg.RawCursor[Any] | None = None


def _is_connection_error(err: GovernanceError) -> bool:
    state = str(err.context.get("sqlstate", ""))
    return isinstance(err, ConcurrencyError) and state[:2] in {"08", "57"}


def _rows(cur: psycopg.RawCursor[Any], sql: str, args: tuple[Any, ...]) -> list[Row]:
    cur.execute(sql, args)
    # pgresult.nfields, not cur.description: the description builds a Column object per column
    # on every call, which costs more than the rest of the wrapper together.
    result = cur.pgresult
    return cur.fetchall() if result is not None and result.nfields else []


def _probe(dsn: str) -> GovernanceError | None:
    """Connect once before the pool does: a wrong database, role or password is then a
    ConfigurationError at once, with the server's reason, instead of a pool timeout 30 s later.
    A server that is down (or starting) is returned, not raised: the pool waits for it."""
    try:
        psycopg.connect(dsn, autocommit=True).close()
    except Exception as exc:
        err = translate(exc)
        if not isinstance(err, ConcurrencyError):
            raise err from exc
        return err
    return None


class PgBackend:
    """Runs statements on pooled autocommit connections, or on the caller's connection."""

    kind = "postgresql"

    def __init__(self, dsn: str, settings: Settings) -> None:
        self.dsn = dsn
        self._prepare_threshold: int | None = 5 if settings.prepared_statements else None
        probe = _probe(dsn)
        try:
            self._pool = psycopg_pool.ConnectionPool(
                dsn,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
                connection_class=PooledConnection,
                kwargs={"autocommit": True, "prepare_threshold": self._prepare_threshold},
                open=False,
                name="pygov",
            )
            self._pool.open(wait=True, timeout=settings.open_timeout)
        except Exception as exc:
            err = translate(exc)
            if probe is not None:
                err.context.setdefault("reason", probe.message)
            raise err from exc

    def close(self) -> None:
        self._pool.close()

    def _execute(
        self,
        conn: psycopg.Connection[Any],
        sql: str,
        args: tuple[Any, ...],
    ) -> list[Row]:
        if not isinstance(conn, PooledConnection):  # the caller's own connection
            with psycopg.RawCursor(conn) as own:
                return _rows(own, sql, args)
        cur = conn.raw_cursor
        if cur is None:
            cur = psycopg.RawCursor(conn)
            conn.raw_cursor = cur
        try:
            rows = _rows(cur, sql, args)
        except BaseException:
            conn.raw_cursor = None
            cur.close()
            raise
        result = cur.pgresult
        if result is not None and result.ntuples > KEEP_CURSOR_MAX_ROWS:
            conn.raw_cursor = None
            cur.close()
        return rows

    def _failed(self, exc: Exception) -> GovernanceError:
        err = translate(exc)
        if _is_connection_error(err):
            # The server went away: drop every idle connection that is broken too, so the
            # pool hands out working ones as soon as the server is back.
            with suppress(Exception):
                self._pool.check()
        return err

    def fetch(self, statement: Statement, args: tuple[Any, ...], conn: Any = None) -> list[Row]:
        try:
            if conn is not None:
                return self._execute(conn, statement.sql, args)
            # getconn/putconn rather than pool.connection(): on an autocommit connection the
            # context manager's commit has nothing to do but costs a lock and a generator, and
            # putconn still rolls back or replaces a connection left in a bad state.
            pooled = self._pool.getconn()
            try:
                return self._execute(pooled, statement.sql, args)
            finally:
                self._pool.putconn(pooled)
        except GovernanceError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def execute_script(self, sql: str) -> None:
        """Run SQL without parameters (several statements allowed), in its own transaction."""
        try:
            with self._pool.connection() as pooled, pooled.transaction():
                pooled.execute(sql.encode())
        except Exception as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def transaction(self, conn: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """A transaction with the governance context applied; errors come out translated."""
        try:
            if conn is not None:
                with conn.transaction():
                    self._execute(conn, APPLY_CONTEXT_SQL, (current_context().to_json(),))
                    yield conn
                return
            with self._pool.connection() as pooled, pooled.transaction():
                self._execute(pooled, APPLY_CONTEXT_SQL, (current_context().to_json(),))
                yield pooled
        except GovernanceError:
            raise
        except psycopg.Error as exc:
            raise self._failed(exc) from exc
        except psycopg_pool.PoolTimeout as exc:
            raise self._failed(exc) from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode (for multi-step wrapper operations)."""
        try:
            with self._pool.connection() as pooled:
                yield pooled
        except GovernanceError:
            raise
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._failed(exc) from exc
