"""The SQLite fallback backend: the same API on a single file (or in memory).

Each operation runs its Python implementation inside ``BEGIN IMMEDIATE`` (one writer at a time,
which is what makes the check-then-write logic atomic). The governance context reaches SQLite
triggers through functions registered on every connection (``governance_ctx('user')`` ...).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pygov._core import Row, Settings, Statement, backoff_delays
from pygov.context import EMPTY_CONTEXT, GovernanceContext, current_context
from pygov.errors import ConcurrencyError, ConfigurationError, GovernanceError, translate

BUSY_TIMEOUT_SECONDS = 30.0

logger = logging.getLogger("pygov.sqlite")


def now_text() -> str:
    """Timestamps are stored as ISO 8601 text in UTC, which sorts like the instants it names."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


class SqliteConnection(sqlite3.Connection):
    """A connection that carries the governance context its triggers read."""

    gov_ctx: GovernanceContext = EMPTY_CONTEXT
    in_governance_txn: bool = False


def _ctx_value(conn: SqliteConnection | None, name: str) -> str | None:
    if conn is None:
        return None
    if name == "superuser":
        return "true" if conn.gov_ctx.superuser else None
    value = getattr(conn.gov_ctx, name, None)
    return None if value in (None, "") else str(value)


def _sha256(text: str | bytes | None) -> str | None:
    if text is None:
        return None
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def open_connection(path: str) -> SqliteConnection:
    """A configured connection: autocommit (we issue BEGIN ourselves), WAL, busy timeout."""
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,
        factory=SqliteConnection,
    )
    assert isinstance(conn, SqliteConnection)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # A weak reference: a closure holding the connection would make a reference cycle, and the
    # connection of a finished thread would stay open until the cycle collector ran.
    ref = weakref.ref(conn)
    conn.create_function("governance_ctx", 1, lambda name: _ctx_value(ref(), name))
    conn.create_function("governance_now", 0, now_text)
    conn.create_function("sha256", 1, _sha256, deterministic=True)
    for hook in CONNECTION_HOOKS:
        hook(conn)
    return conn


#: Capabilities hook in here: CONNECTION_HOOKS run on every new connection (to register SQL
#: functions their triggers call); AFTER_TRANSACTION_HOOKS run after every outermost COMMIT or
#: ROLLBACK of a pygov transaction (for work that must outlive a rollback, such as recording an
#: authority violation). An after-transaction hook must not raise; if one does, it is logged.
CONNECTION_HOOKS: list[Callable[[SqliteConnection], None]] = []
AFTER_TRANSACTION_HOOKS: list[Callable[[SqliteConnection], None]] = []


def _after_transaction(conn: SqliteConnection) -> None:
    for hook in AFTER_TRANSACTION_HOOKS:
        try:
            hook(conn)
        except Exception:
            logger.exception("pygov: SQLite after-transaction hook %r failed", hook)


class _ThreadConnection:
    """A thread's own connection, closed when the thread ends. sqlite3 connections sit in a
    reference cycle (their statement cache refers back to them), so without this a finished
    thread's connection and its file handles would wait for the cycle collector."""

    __slots__ = ("conn",)

    def __init__(self, conn: SqliteConnection) -> None:
        self.conn: SqliteConnection | None = conn

    def __del__(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class SqliteBackend:
    """Runs each operation's SQLite implementation in its own ``BEGIN IMMEDIATE`` transaction."""

    kind = "sqlite"

    def __init__(self, path: str, settings: Settings) -> None:
        self.path = path
        self._settings = settings
        self._memory = path == ":memory:"
        self._local = threading.local()
        self._shared: SqliteConnection | None = None
        # An in-memory database exists only inside its one connection: share it, one at a time.
        self._shared_lock = threading.RLock()
        # Weak: a thread's connection closes when the thread ends (thread-local storage is
        # its only strong reference), so threads that come and go do not leak file handles.
        self._all: weakref.WeakSet[SqliteConnection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        if not self._memory:
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigurationError(
                    "the SQLite database's directory does not exist", {"path": path}
                )

    def close(self) -> None:
        with self._all_lock:
            for conn in list(self._all):
                conn.close()
            self._all.clear()
        self._shared = None
        self._local = threading.local()

    def _connection(self) -> SqliteConnection:
        if self._memory:
            if self._shared is None:
                self._shared = open_connection(":memory:")
                self._all.add(self._shared)
            return self._shared
        owned: _ThreadConnection | None = getattr(self._local, "owned", None)
        if owned is None or owned.conn is None:
            try:
                conn = open_connection(self.path)
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            owned = self._local.owned = _ThreadConnection(conn)
            with self._all_lock:
                self._all.add(conn)
        assert owned.conn is not None
        return owned.conn

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        if self._memory:
            with self._shared_lock:
                yield
        else:
            yield

    def _begin(self, conn: SqliteConnection, delays: Iterator[float] | None = None) -> None:
        # busy_timeout already waits inside SQLite; this retry covers the cases where SQLite
        # gives up at once (e.g. a deadlock-avoidance SQLITE_BUSY) so "database is locked"
        # never reaches the caller before the lock timeout. With ``delays`` (a lock with its
        # own timeout, pygov._wait) SQLite does not wait by itself: the delays are the wait.
        waited = time.monotonic()
        if delays is not None:
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            retries = (
                delays
                if delays is not None
                else backoff_delays(max(self._settings.lock_timeout, BUSY_TIMEOUT_SECONDS))
            )
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                delay = next(retries, None)
                if delay is None:
                    break
                time.sleep(delay)
        finally:
            if delays is not None:
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        raise ConcurrencyError(
            "the SQLite database stayed locked by another writer",
            {"path": self.path, "waited_seconds": round(time.monotonic() - waited, 3)},
        )

    def fetch(self, statement: Statement, args: tuple[Any, ...], conn: Any = None) -> list[Row]:
        if statement.sqlite is None:
            raise ConfigurationError(
                "this operation is not available on SQLite", {"operation": statement.name}
            )
        impl = statement.sqlite
        try:
            if conn is not None:
                # The caller's transaction: a savepoint keeps a failed operation all-or-nothing.
                conn.gov_ctx = current_context()
                conn.execute("SAVEPOINT pygov_op")
                try:
                    rows = impl(conn, args)
                except BaseException:
                    conn.execute("ROLLBACK TO pygov_op")
                    conn.execute("RELEASE pygov_op")
                    raise
                conn.execute("RELEASE pygov_op")
                return rows
            with self._serialised():
                own = self._connection()
                own.gov_ctx = current_context()
                self._begin(own)
                try:
                    rows = impl(own, args)
                except BaseException:
                    own.execute("ROLLBACK")
                    _after_transaction(own)
                    raise
                own.execute("COMMIT")
                _after_transaction(own)
                return rows
        except GovernanceError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    def execute_script(self, sql: str) -> None:
        with self._serialised():
            try:
                self._connection().executescript(sql)
            except sqlite3.Error as exc:
                raise translate(exc) from exc

    @contextmanager
    def transaction(
        self, conn: Any = None, *, delays: Iterator[float] | None = None
    ) -> Iterator[SqliteConnection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` with the governance context applied. ``delays``
        (optional) are the waits between attempts to begin while another writer holds the
        database; when they run out, ConcurrencyError."""
        with self._serialised():
            own: SqliteConnection = conn if conn is not None else self._connection()
            previous = own.gov_ctx
            own.gov_ctx = current_context()
            nested = own.in_transaction
            try:
                if nested:
                    own.execute("SAVEPOINT pygov_txn")
                else:
                    self._begin(own, delays)
                try:
                    yield own
                except BaseException:
                    own.execute("ROLLBACK TO pygov_txn" if nested else "ROLLBACK")
                    if nested:
                        own.execute("RELEASE pygov_txn")
                    else:
                        _after_transaction(own)
                    raise
                own.execute("RELEASE pygov_txn" if nested else "COMMIT")
                if not nested:
                    _after_transaction(own)
            except GovernanceError:
                raise
            except sqlite3.Error as exc:
                raise translate(exc) from exc
            finally:
                own.gov_ctx = previous

    @contextmanager
    def connection(self) -> Iterator[SqliteConnection]:
        with self._serialised():
            yield self._connection()
