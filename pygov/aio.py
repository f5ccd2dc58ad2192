"""``AsyncGovernance``: the same API as :class:`pygov.Governance`, as coroutines, on asyncpg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

from pygov._asyncpg import AsyncpgBackend
from pygov._core import Call, Settings, T
from pygov.audit import AsyncAudit
from pygov.authority import AsyncAuthority, record_violation_async
from pygov.context import GovernanceContext, governance_context
from pygov.errors import AuthorityViolationError, ConfigurationError, GovernanceError, translate
from pygov.governance import make_settings, parse_dsn
from pygov.health import HealthReport, health_call
from pygov.idempotency import AsyncIdempotency
from pygov.locks import AsyncLocks
from pygov.migrate import MigrationReport, migrate_postgres
from pygov.monitor import ConcurrencyMonitor
from pygov.quarantine import AsyncQuarantine
from pygov.stock import AsyncStock

P = ParamSpec("P")
R = TypeVar("R")


class AsyncGovernance:
    """The governance layer over an asyncpg pool. Create it with :func:`pygov.aio.connect`."""

    def __init__(self, backend: AsyncpgBackend, settings: Settings) -> None:
        self.settings = settings
        self._backend = backend
        self.monitor = ConcurrencyMonitor(settings.high_concurrency_threshold)
        self.idempotency = AsyncIdempotency(self)
        self.audit = AsyncAudit(self)
        self.authority = AsyncAuthority(self)
        self.quarantine = AsyncQuarantine(self)
        self.locks = AsyncLocks(self)
        self.stock = AsyncStock(self)

    @property
    def backend(self) -> str:
        return self._backend.kind

    async def _run(self, call: Call[T]) -> T:
        name = call.op_name or call.statement.name
        # monitor.begin/end rather than monitor.track: this is every call's path, and a
        # generator-based context manager costs more than the rest of the bookkeeping.
        self.monitor.begin(name)
        failed = True
        try:
            rows = await self._backend.fetch(call.statement, call.args, call.conn)
            failed = False
        except GovernanceError as exc:
            if "sqlstate" in exc.context:
                # A driver or server error (timeout, lost connection ...): say which
                # operation it hit. Domain errors keep the context their code gave them.
                exc.context.setdefault("call", name)
            raise
        finally:
            self.monitor.end(name, failed)
        try:
            return call.result(rows)
        except GovernanceError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    async def migrate(self) -> MigrationReport:
        """Apply pending migrations and reload ``sql/`` (yoyo is synchronous: run in a thread)."""
        return await asyncio.to_thread(migrate_postgres, self._backend.dsn)

    async def health(self, *, conn: Any = None) -> HealthReport:
        return await self._run(health_call(self.backend, conn))

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> AsyncGovernance:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def context(self, **fields: Any) -> AbstractContextManager[GovernanceContext]:
        """Set who is acting for the block (follows asyncio tasks through contextvars)."""
        return governance_context(**fields)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """An asyncpg connection in a transaction with the governance context applied."""
        try:
            async with self._backend.transaction() as conn:
                yield conn
        except AuthorityViolationError as exc:
            # A write refused by a protected table: make sure the violation is in the trail.
            await record_violation_async(self, exc)
            raise

    def idempotent(
        self,
        operation_type: str,
        *,
        key: str | Callable[..., str],
        ttl: timedelta | float | None = None,
        payload: Any = None,
        lease: timedelta | float | None = None,
        wait: float = 0,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorator for ``async def`` functions: run once per key."""
        return self.idempotency.idempotent(
            operation_type, key=key, ttl=ttl, payload=payload, lease=lease, wait=wait
        )


async def connect(dsn: str, **options: Any) -> AsyncGovernance:
    """Open the async governance layer on ``postgresql://...`` (same options as
    :func:`pygov.connect`)."""
    kind, target = parse_dsn(dsn)
    if kind != "postgresql":
        raise ConfigurationError(
            "the async API runs on PostgreSQL; use pygov.connect() for SQLite", {"dsn": dsn}
        )
    settings = make_settings(dict(options))
    backend = AsyncpgBackend(target, settings)
    await backend.open()
    return AsyncGovernance(backend, settings)


__all__ = ["AsyncGovernance", "connect"]
