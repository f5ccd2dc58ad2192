"""``gov.locks``: advisory locks and row locks, always scoped to a transaction.

PostgreSQL: ``advisory(name)`` takes ``pg_advisory_xact_lock`` on :func:`lock_key` (name) and
``lock_rows`` runs ``SELECT ... FOR UPDATE`` in key order. Both are released when the transaction
ends, so nothing leaks when a connection returns to a pool or passes through a transaction-pooling
proxy such as PgBouncer; pygov never takes a session-level advisory lock for you.

SQLite has one writer at a time: every governance transaction is ``BEGIN IMMEDIATE``, so holding
*any* lock means holding the whole database for writing. ``advisory(name)`` there waits (up to
its timeout) for ``BEGIN IMMEDIATE`` and holds it for the block, whatever the name; ``lock_rows``
checks that the rows exist inside that transaction. Same API and guarantees, less concurrency.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import (
    AbstractContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from datetime import timedelta
from typing import Any

from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    scalar,
    sync_method,
    text_arg,
)
from pygov._wait import Wait, timeout_arg
from pygov.errors import ConcurrencyError, ValidationError
from pygov.sqlite_ops import locks as sqlite_impl

MAX_NAME_LENGTH = 255
MAX_KEYS = 10_000
#: The name the concurrency monitor reports advisory locks under (running, peak, waits).
MONITOR_NAME = "locks.advisory"


def lock_key(name: str) -> int:
    """The 64-bit advisory lock key of a lock name, as ``governance.lock_key(name)`` computes it:
    the first 8 bytes of the SHA-256 of its UTF-8 text, as a signed integer."""
    checked = _name_arg(name)
    return int.from_bytes(hashlib.sha256(checked.encode("utf-8")).digest()[:8], signed=True)


def _name_arg(name: Any) -> str:
    checked = text_arg("name", name, max_length=MAX_NAME_LENGTH)
    assert checked is not None
    return checked


def _key_text(key: Any) -> str:
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise ValidationError(
            "row keys must be strings or integers", {"field": "keys", "type": type(key).__name__}
        )
    text = str(key)
    if "\x00" in text:
        raise ValidationError("row keys cannot contain NUL characters", {"field": "keys"})
    return text


def _keys_arg(keys: Any) -> list[str]:
    if isinstance(keys, str | bytes) or not isinstance(keys, Sequence | set | frozenset):
        raise ValidationError(
            "keys must be a list of row keys", {"field": "keys", "type": type(keys).__name__}
        )
    texts = [_key_text(k) for k in keys]
    if not 1 <= len(texts) <= MAX_KEYS:
        raise ValidationError(
            f"keys must hold 1 to {MAX_KEYS} row keys", {"field": "keys", "count": len(texts)}
        )
    return texts


def _locked(rows: list[Row]) -> bool:
    return bool(scalar(rows))


def _keys(rows: list[Row]) -> list[str]:
    return [str(row[0]) for row in rows]


TRY_LOCK = Statement(
    "try_lock",
    "SELECT governance.try_lock($1::text, $2::float8 * interval '1 second')",
    sqlite_impl.try_lock,
)
LOCK_ROWS = Statement(
    "lock_rows",
    "SELECT governance.lock_rows($1::text, $2::text[], $3::text, "
    "$4::float8 * interval '1 second', $5::boolean)",
    sqlite_impl.lock_rows,
)


class LocksPlans:
    """Argument building and result mapping for gov.locks, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def timeout(self, timeout: timedelta | float | None) -> float:
        return timeout_arg("timeout", timeout, self.settings.lock_timeout)

    def try_lock(self, name: str, wait: float | None = None, *, conn: Any = None) -> Call[bool]:
        """Take the advisory lock of ``name`` in ``conn``'s transaction if it is free, or once
        it is released within ``wait`` seconds (queued in PostgreSQL's lock manager)."""
        return Call(TRY_LOCK, (_name_arg(name), wait), _locked, conn, "locks.try_lock")

    def lock_rows(
        self,
        table: str,
        keys: Sequence[str | int],
        *,
        column: str | None = None,
        timeout: timedelta | float | None = None,
        skip_missing: bool = False,
        conn: Any = None,
    ) -> Call[list[str]]:
        """Lock rows of ``table`` by key, in key order (see :meth:`Locks.lock_rows`)."""
        args = (
            text_arg("table", table, max_length=200),
            _keys_arg(keys),
            text_arg("column", column, max_length=63, required=False),
            self.timeout(timeout),
            bool(skip_missing),
        )
        return Call(LOCK_ROWS, args, _keys, conn, "locks.lock_rows")


LOCK_HELD = "advisory lock is held by another transaction"


def _lock_error(name: str, wait: Wait, error: ConcurrencyError) -> ConcurrencyError:
    """Say which lock and how long: for timeouts, SQLite's busy writer, deadlocks alike."""
    return wait.give_up(error, lock=name, lock_key=lock_key(name))


class Locks(Namespace):
    """``gov.locks``: transaction-scoped advisory locks and row locks (sync)."""

    _plans_class = LocksPlans

    _try_lock = sync_method(LocksPlans.try_lock)

    def _begin(self, conn: Any, wait: Wait) -> AbstractContextManager[Any]:
        # SQLite's lock is BEGIN IMMEDIATE itself: it waits there, by the same rules.
        if self._gov.backend == "sqlite":
            return self._gov._backend.transaction(conn, delays=wait.delays())  # type: ignore[no-any-return]
        return self._gov._backend.transaction(conn)  # type: ignore[no-any-return]

    @contextmanager
    def advisory(
        self, name: str, *, timeout: timedelta | float | None = None, conn: Any = None
    ) -> Iterator[Any]:
        """Hold the advisory lock ``name`` for the block; the block gets the connection whose
        transaction holds it (run your SQL there, or pass it as ``conn=`` to pygov calls).

        Waits up to ``timeout`` (default: the ``lock_timeout`` connect option) with exponential
        backoff and jitter, then raises ConcurrencyError whose context names the lock and says
        how long it waited. With ``conn`` the lock joins the caller's transaction (a savepoint)
        and is held until *that* transaction ends.
        """
        key_name = _name_arg(name)
        wait = Wait(self._gov.monitor, MONITOR_NAME, self._plans.timeout(timeout))
        with self._gov.monitor.track(MONITOR_NAME), ExitStack() as stack:
            try:
                tx = stack.enter_context(self._begin(conn, wait))
                if not self._try_lock(key_name, conn=tx):
                    for delay in wait.delays():
                        if self._try_lock(key_name, delay, conn=tx):
                            break
                    else:
                        raise ConcurrencyError(LOCK_HELD)
            except ConcurrencyError as exc:
                _lock_error(key_name, wait, exc)
                raise
            wait.done()
            yield tx

    @contextmanager
    def lock_rows(
        self,
        table: str,
        keys: Sequence[str | int],
        *,
        column: str | None = None,
        timeout: timedelta | float | None = None,
        skip_missing: bool = False,
        conn: Any = None,
    ) -> Iterator[Any]:
        """Lock rows of ``table`` (``schema.table``) for the block, by the values of ``column``
        (default: the single-column primary key), and yield the connection holding them.

        The rows are always locked in key order, so two callers locking overlapping sets, in
        whatever order they list them, cannot deadlock each other. Waits up to ``timeout``
        (default ``lock_timeout``), then ConcurrencyError. Keys with no row raise
        ValidationError (nothing stays locked) unless ``skip_missing``. The caller needs the
        UPDATE privilege on the table, as for ``SELECT ... FOR UPDATE`` itself. On SQLite the
        table may be named ``schema.table`` for ``schema_table``.
        """
        call = self._plans.lock_rows(
            table, keys, column=column, timeout=timeout, skip_missing=skip_missing
        )
        wait = Wait(self._gov.monitor, "locks.lock_rows", self._plans.timeout(timeout))
        with ExitStack() as stack:
            try:
                tx = stack.enter_context(self._begin(conn, wait))
            except ConcurrencyError as exc:
                wait.give_up(exc, table=table)
                raise
            self._gov._run(dataclasses.replace(call, conn=tx))
            wait.done()
            yield tx


class AsyncLocks(Namespace):
    """``gov.locks`` on AsyncGovernance: the same locks, as ``async with`` blocks."""

    _plans_class = LocksPlans

    _try_lock = async_method(LocksPlans.try_lock)

    @asynccontextmanager
    async def advisory(
        self, name: str, *, timeout: timedelta | float | None = None, conn: Any = None
    ) -> AsyncIterator[Any]:
        """Hold the advisory lock ``name`` for the block (see :meth:`Locks.advisory`)."""
        key_name = _name_arg(name)
        wait = Wait(self._gov.monitor, MONITOR_NAME, self._plans.timeout(timeout))
        with self._gov.monitor.track(MONITOR_NAME):
            async with AsyncExitStack() as stack:
                try:
                    tx = await stack.enter_async_context(self._gov._backend.transaction(conn))
                    if not await self._try_lock(key_name, conn=tx):
                        for delay in wait.delays():
                            if await self._try_lock(key_name, delay, conn=tx):
                                break
                        else:
                            raise ConcurrencyError(LOCK_HELD)
                except ConcurrencyError as exc:
                    _lock_error(key_name, wait, exc)
                    raise
                wait.done()
                yield tx

    @asynccontextmanager
    async def lock_rows(
        self,
        table: str,
        keys: Sequence[str | int],
        *,
        column: str | None = None,
        timeout: timedelta | float | None = None,
        skip_missing: bool = False,
        conn: Any = None,
    ) -> AsyncIterator[Any]:
        """Lock rows of ``table`` for the block, in key order (see :meth:`Locks.lock_rows`)."""
        call = self._plans.lock_rows(
            table, keys, column=column, timeout=timeout, skip_missing=skip_missing
        )
        async with self._gov._backend.transaction(conn) as tx:
            await self._gov._run(dataclasses.replace(call, conn=tx))
            yield tx
