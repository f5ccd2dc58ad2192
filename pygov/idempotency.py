"""Idempotency keys: exactly-once operations.

The plans below are shared by the sync (:class:`Idempotency`) and async
(:class:`AsyncIdempotency`) namespaces; only the waiting loops and the guard differ by I/O mode.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, ParamSpec, TypeVar

from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    int_arg,
    json_arg,
    seconds_arg,
    sync_method,
    text_arg,
    to_datetime,
    utcnow,
)
from pygov._wait import Wait, wait_arg
from pygov.errors import (
    GovernanceError,
    IdempotencyError,
    IdempotencyInProgressError,
    ValidationError,
)
from pygov.sqlite_ops import idempotency as sqlite_impl

P = ParamSpec("P")
R = TypeVar("R")

MAX_KEY_LENGTH = 255
MAX_OPERATION_TYPE_LENGTH = 100
#: The name the concurrency monitor reports waits for in-progress claims under.
CLAIM_MONITOR_NAME = "idempotency.claim"


class IdempotencyRecord(NamedTuple):
    """One stored idempotency record (the holder token is never part of it).

    A named tuple, immutable like the frozen dataclass it was: every ``check_and_record`` builds
    one, and the dataclass's field-by-field ``__init__`` cost a twentieth of the 16-client
    throughput. ``record._asdict()`` gives its fields as a dict."""

    id: int
    operation_type: str
    idempotency_key: str
    status: str
    result_data: Any
    created_by: str | None
    created_at: datetime
    completed_at: datetime | None
    expires_at: datetime
    lease_expires_at: datetime | None

    def is_expired(self, at: datetime | None = None) -> bool:
        """True once ``expires_at`` has passed: the key can then be used again."""
        return self.expires_at <= (at or utcnow())

    @property
    def in_progress(self) -> bool:
        return self.status == "IN_PROGRESS"


class IdempotencyResult(NamedTuple):
    """What ``check_and_record`` found: unpack it as ``is_duplicate, record, data``."""

    is_duplicate: bool
    record: IdempotencyRecord
    data: Any


@dataclass(frozen=True, slots=True)
class Claim:
    """The result of ``claim``: either you hold the key (``claimed``) or it already completed."""

    claimed: bool
    record: IdempotencyRecord
    token: str | None
    #: The stored result when the operation had already completed.
    data: Any = None

    @property
    def is_duplicate(self) -> bool:
        return not self.claimed


@dataclass(frozen=True, slots=True)
class IdempotencyStats:
    """Per operation type: live completed records, live claims, expired ones, duplicates served."""

    operation_type: str
    completed: int
    in_progress: int
    expired: int
    duplicates_served: int


def _record(
    row: Row, operation_type: str | None = None, key: str | None = None
) -> IdempotencyRecord:
    """The record in ``row``; ``operation_type`` and ``key``, when given, replace its columns."""
    created_at, completed_at, expires_at, lease_expires_at = row[7], row[8], row[9], row[10]
    if not isinstance(created_at, datetime):  # SQLite: ISO text (PostgreSQL: datetimes)
        created_at, completed_at = to_datetime(created_at), to_datetime(completed_at)
        expires_at, lease_expires_at = to_datetime(expires_at), to_datetime(lease_expires_at)
    assert created_at is not None and expires_at is not None
    return IdempotencyRecord(
        id=int(row[1]),
        operation_type=row[2] if operation_type is None else operation_type,
        idempotency_key=row[3] if key is None else key,
        status=row[4],
        result_data=row[5],
        created_by=row[6],
        created_at=created_at,
        completed_at=completed_at,
        expires_at=expires_at,
        lease_expires_at=lease_expires_at,
    )


def _check_result(
    operation_type: str, key: str, result_json: str | None, rows: list[Row]
) -> IdempotencyResult:
    """Map check_and_record's row. CHECK_AND_RECORD leaves out what the caller already knows:
    the operation type and key always, and on RECORDED the status, data and completion time
    (a recorded operation is COMPLETED at its creation, with the data just sent)."""
    row = rows[0]
    if row[0] != "RECORDED":
        record = _record(row, operation_type, key)
        return IdempotencyResult(True, record, record.result_data)
    created_at, expires_at = row[7], row[9]
    if not isinstance(created_at, datetime):  # SQLite: ISO text
        created_at, expires_at = to_datetime(created_at), to_datetime(expires_at)
    assert created_at is not None and expires_at is not None
    # Decoded from the JSON text that was stored: a fresh object, as a duplicate gets.
    data = None if result_json is None else json.loads(result_json)
    record = IdempotencyRecord(
        int(row[1]),
        operation_type,
        key,
        "COMPLETED",
        data,
        row[6],
        created_at,
        created_at,
        expires_at,
        None,
    )
    return IdempotencyResult(False, record, data)


def _claim_result(rows: list[Row]) -> Claim:
    row = rows[0]
    record = _record(row)
    if row[0] == "CLAIMED":
        return Claim(True, record, str(row[11]))
    return Claim(False, record, None, record.result_data)


def _record_result(rows: list[Row]) -> IdempotencyRecord:
    return _record(rows[0])


def _optional_record(rows: list[Row]) -> IdempotencyRecord | None:
    return _record(rows[0]) if rows else None


def _stats_result(rows: list[Row]) -> dict[str, IdempotencyStats]:
    return {
        row[0]: IdempotencyStats(row[0], int(row[1]), int(row[2]), int(row[3]), int(row[4]))
        for row in rows
    }


def _count(rows: list[Row]) -> int:
    return int(rows[0][0])


_TTL = "$4::float8 * interval '1 second'"
# The row keeps governance.idempotency_result's shape, but the columns the caller already knows
# come back NULL (see _check_result): fewer values to send and decode made the 16-client
# benchmark about 10% faster.
_UNLESS_RECORDED = "CASE WHEN r.outcome <> 'RECORDED' THEN r.{} END"
CHECK_AND_RECORD = Statement(
    "check_and_record",
    "SELECT r.outcome, r.id, NULL::text, NULL::text, "
    f"{_UNLESS_RECORDED.format('status')}, {_UNLESS_RECORDED.format('result_data')}, "
    f"r.created_by, r.created_at, {_UNLESS_RECORDED.format('completed_at')}, r.expires_at, "
    "r.lease_expires_at, NULL::uuid "
    "FROM governance.check_and_record($1::text, $2::text, $3::text::jsonb, "
    f"{_TTL}, $5::text::jsonb, $6::text::jsonb) r",
    sqlite_impl.check_and_record,
)
CLAIM = Statement(
    "claim",
    "SELECT * FROM governance.claim_idempotency($1::text, $2::text, "
    "$3::float8 * interval '1 second', $4::float8 * interval '1 second', $5::text::jsonb, "
    "$6::text::jsonb)",
    sqlite_impl.claim,
)
COMPLETE = Statement(
    "complete",
    "SELECT * FROM governance.complete_idempotency($1::text, $2::text, $3::text::uuid, "
    "$4::text::jsonb, $5::float8 * interval '1 second', $6::text::jsonb)",
    sqlite_impl.complete,
)
RELEASE = Statement(
    "release",
    "SELECT * FROM governance.release_idempotency($1::text, $2::text, $3::text::uuid, "
    "$4::text::jsonb)",
    sqlite_impl.release,
)
GET = Statement(
    "get",
    "SELECT * FROM governance.get_idempotency_record($1::text, $2::text)",
    sqlite_impl.get,
)
CLEANUP = Statement(
    "cleanup_expired",
    "SELECT governance.cleanup_expired($1::int, $2::int, $3::text::jsonb)",
    sqlite_impl.cleanup_expired,
)
STATS = Statement(
    "idempotency_stats",
    "SELECT * FROM governance.idempotency_stats()",
    sqlite_impl.stats,
)


def _op_and_key(operation_type: Any, key: Any) -> tuple[str, str]:
    op = text_arg("operation_type", operation_type, max_length=MAX_OPERATION_TYPE_LENGTH)
    k = text_arg("key", key, max_length=MAX_KEY_LENGTH)
    assert op is not None and k is not None
    return op, k


class IdempotencyPlans:
    """Argument building and result mapping for every idempotency operation."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._default_ttl = seconds_arg("ttl", settings.default_ttl)

    def _ttl(self, ttl: timedelta | float | None) -> float:
        seconds = self._default_ttl if ttl is None else seconds_arg("ttl", ttl)
        assert seconds is not None
        return seconds

    def check_and_record(
        self,
        operation_type: str,
        key: str,
        result_data: Any = None,
        *,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        conn: Any = None,
    ) -> Call[IdempotencyResult]:
        """Record the operation once; later calls get ``is_duplicate=True`` and the first data.

        One atomic ``INSERT ... ON CONFLICT``: of any number of concurrent callers exactly one
        records. An expired record counts as absent. With ``payload``, reusing the key with a
        different payload raises IdempotencyPayloadMismatchError and changes nothing.
        """
        op, k = _op_and_key(operation_type, key)
        result_json = json_arg("result_data", result_data)
        args = (op, k, result_json, self._ttl(ttl), json_arg("payload", payload), context_arg())
        return Call(
            CHECK_AND_RECORD,
            args,
            functools.partial(_check_result, op, k, result_json),
            conn,
            "idempotency.check_and_record",
        )

    def claim(
        self,
        operation_type: str,
        key: str,
        *,
        lease: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        conn: Any = None,
    ) -> Call[Claim]:
        """First phase: claim the key with a lease. ``claimed`` is False when already done."""
        op, k = _op_and_key(operation_type, key)
        lease_s = seconds_arg("lease", lease if lease is not None else self.settings.default_lease)
        args = (op, k, lease_s, self._ttl(ttl), json_arg("payload", payload), context_arg())
        return Call(CLAIM, args, _claim_result, conn, "idempotency.claim")

    def complete(
        self,
        claim: Claim,
        result_data: Any = None,
        *,
        ttl: timedelta | float | None = None,
        conn: Any = None,
    ) -> Call[IdempotencyRecord]:
        """Second phase: store the result. Only the holder of a live claim may complete it."""
        op, k, token = self._held(claim)
        seconds = seconds_arg("ttl", ttl)
        args = (op, k, token, json_arg("result_data", result_data), seconds, context_arg())
        return Call(COMPLETE, args, _record_result, conn, "idempotency.complete")

    def release(self, claim: Claim, *, conn: Any = None) -> Call[IdempotencyRecord]:
        """Give the claim up after a failure, so that a retry can run."""
        op, k, token = self._held(claim)
        args = (op, k, token, context_arg())
        return Call(RELEASE, args, _record_result, conn, "idempotency.release")

    @staticmethod
    def _held(claim: Any) -> tuple[str, str, str]:
        """(operation_type, key, token) of a claim held by the caller, checked like any input:
        a Claim is a plain dataclass, so it may have been built by hand."""
        if not isinstance(claim, Claim) or not isinstance(claim.record, IdempotencyRecord):
            raise ValidationError(
                "expected the Claim returned by claim()", {"got": type(claim).__name__}
            )
        if not claim.claimed or claim.token is None:
            raise IdempotencyError(
                "this claim does not hold the key (the operation had already completed)",
                {
                    "operation_type": claim.record.operation_type,
                    "key": claim.record.idempotency_key,
                },
            )
        op, k = _op_and_key(claim.record.operation_type, claim.record.idempotency_key)
        token = text_arg("token", claim.token, max_length=100)
        assert token is not None
        try:
            canonical = str(uuid.UUID(token))  # the form both backends store
        except ValueError:
            raise ValidationError("the claim's token is not a UUID", {"field": "token"}) from None
        return op, k, canonical

    def get(
        self, operation_type: str, key: str, *, conn: Any = None
    ) -> Call[IdempotencyRecord | None]:
        """The stored record for the key, or None."""
        op, k = _op_and_key(operation_type, key)
        return Call(GET, (op, k), _optional_record, conn, "idempotency.get")

    def cleanup_batch(self, batch_size: int, *, conn: Any = None) -> Call[int]:
        """Delete one batch of expired records (admin); returns how many it deleted."""
        size = int_arg("batch_size", batch_size, minimum=1)
        if size > 1_000_000:
            raise ValidationError("batch_size must be at most 1000000", {"batch_size": size})
        return Call(CLEANUP, (size, 1, context_arg()), _count, conn, "idempotency.cleanup_expired")

    def stats(self, *, conn: Any = None) -> Call[dict[str, IdempotencyStats]]:
        """Per operation type: completed, in progress, expired, duplicates served."""
        return Call(STATS, (), _stats_result, conn, "idempotency.stats")


def _resolve_key(
    key: str | Callable[..., str], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    value = key(*args, **kwargs) if callable(key) else key
    return str(value) if not isinstance(value, str) else value


def _resolve_payload(payload: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return payload(*args, **kwargs) if callable(payload) else payload


class Guard:
    """The state of a ``guard`` block: whether it is a duplicate, and the result to store."""

    def __init__(self, claim: Claim) -> None:
        self.claim = claim
        self.result: Any = None

    @property
    def is_duplicate(self) -> bool:
        return not self.claim.claimed

    @property
    def data(self) -> Any:
        """The stored result of the earlier run (duplicates only)."""
        return self.claim.data


class Idempotency(Namespace):
    """``gov.idempotency``: exactly-once operations (sync)."""

    _plans_class = IdempotencyPlans

    check_and_record = sync_method(IdempotencyPlans.check_and_record)
    complete = sync_method(IdempotencyPlans.complete)
    release = sync_method(IdempotencyPlans.release)
    get = sync_method(IdempotencyPlans.get)
    stats = sync_method(IdempotencyPlans.stats)
    _claim_once = sync_method(IdempotencyPlans.claim)
    _cleanup_batch = sync_method(IdempotencyPlans.cleanup_batch)

    def claim(
        self,
        operation_type: str,
        key: str,
        *,
        lease: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        wait: timedelta | float = 0,
        conn: Any = None,
    ) -> Claim:
        """Claim the key. While another caller holds it, wait up to ``wait`` seconds (by the
        rules of every wait in pygov: exponential backoff with jitter, reported to the monitor)
        for its result, then raise IdempotencyInProgressError."""
        waiting = Wait(self._gov.monitor, CLAIM_MONITOR_NAME, wait_arg("wait", wait))
        delays = waiting.delays()
        while True:
            try:
                claim = self._claim_once(
                    operation_type, key, lease=lease, ttl=ttl, payload=payload, conn=conn
                )
            except IdempotencyInProgressError as exc:
                delay = next(delays, None)
                if delay is None:
                    waiting.give_up(exc)
                    raise
                time.sleep(delay)
                continue
            waiting.done()
            return claim

    def cleanup_expired(
        self, batch_size: int = 1000, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Delete expired records batch by batch, each batch its own transaction (admin only)."""
        total = 0
        while True:
            deleted = self._cleanup_batch(batch_size)
            total += deleted
            if progress is not None:
                progress(total)
            if deleted < batch_size:
                return total

    @contextmanager
    def guard(
        self,
        operation_type: str,
        key: str,
        *,
        lease: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        wait: timedelta | float = 0,
        conn: Any = None,
    ) -> Iterator[Guard]:
        """Run a block at most once per key. Set ``guard.result``; it is stored on success.

        Without ``conn`` the claim commits first and is released if the block raises. With
        ``conn`` the claim, the block's own writes and the completion commit together in the
        caller's transaction (a savepoint): if the block raises, nothing is recorded.
        """
        if conn is not None:
            with self._gov._backend.transaction(conn) as tx:
                claim = self.claim(
                    operation_type, key, lease=lease, ttl=ttl, payload=payload, wait=wait, conn=tx
                )
                guard = Guard(claim)
                yield guard
                if claim.claimed:
                    self.complete(claim, guard.result, ttl=ttl, conn=tx)
            return
        claim = self.claim(operation_type, key, lease=lease, ttl=ttl, payload=payload, wait=wait)
        guard = Guard(claim)
        if not claim.claimed:
            yield guard
            return
        try:
            yield guard
            # A result that cannot be stored fails the block: the claim is released at once
            # instead of staying IN_PROGRESS until its lease runs out.
            json_arg("result", guard.result)
        except BaseException as exc:
            try:
                self.release(claim)
            except GovernanceError as release_error:
                # Keep the block's own error; the claim will be taken over when its lease ends.
                exc.add_note(f"pygov: releasing the claim failed too: {release_error}")
            raise
        self.complete(claim, guard.result, ttl=ttl)

    def idempotent(
        self,
        operation_type: str,
        *,
        key: str | Callable[..., str],
        ttl: timedelta | float | None = None,
        payload: Any = None,
        lease: timedelta | float | None = None,
        wait: timedelta | float = 0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: run the function once per key; duplicates return the stored result.

        ``key`` and ``payload`` may be callables taking the function's arguments.
        """

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):
                raise ValidationError(
                    "use AsyncGovernance.idempotent for async functions",
                    {"function": func.__qualname__},
                )

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                k = _resolve_key(key, args, kwargs)
                body = _resolve_payload(payload, args, kwargs)
                with self.guard(
                    operation_type, k, ttl=ttl, payload=body, lease=lease, wait=wait
                ) as g:
                    if g.is_duplicate:
                        stored: R = g.data
                        return stored
                    g.result = func(*args, **kwargs)
                    json_arg("result", g.result)
                    result: R = g.result
                return result

            return wrapper

        return decorate


class AsyncIdempotency(Namespace):
    """``gov.idempotency`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = IdempotencyPlans

    check_and_record = async_method(IdempotencyPlans.check_and_record)
    complete = async_method(IdempotencyPlans.complete)
    release = async_method(IdempotencyPlans.release)
    get = async_method(IdempotencyPlans.get)
    stats = async_method(IdempotencyPlans.stats)
    _claim_once = async_method(IdempotencyPlans.claim)
    _cleanup_batch = async_method(IdempotencyPlans.cleanup_batch)

    async def claim(
        self,
        operation_type: str,
        key: str,
        *,
        lease: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        wait: timedelta | float = 0,
        conn: Any = None,
    ) -> Claim:
        """Claim the key, waiting up to ``wait`` seconds for another holder (see the sync API)."""
        waiting = Wait(self._gov.monitor, CLAIM_MONITOR_NAME, wait_arg("wait", wait))
        delays = waiting.delays()
        while True:
            try:
                claim: Claim = await self._claim_once(
                    operation_type, key, lease=lease, ttl=ttl, payload=payload, conn=conn
                )
            except IdempotencyInProgressError as exc:
                delay = next(delays, None)
                if delay is None:
                    waiting.give_up(exc)
                    raise
                await asyncio.sleep(delay)
                continue
            waiting.done()
            return claim

    async def cleanup_expired(
        self, batch_size: int = 1000, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Delete expired records batch by batch, each batch its own transaction (admin only)."""
        total = 0
        while True:
            deleted: int = await self._cleanup_batch(batch_size)
            total += deleted
            if progress is not None:
                progress(total)
            if deleted < batch_size:
                return total

    @asynccontextmanager
    async def guard(
        self,
        operation_type: str,
        key: str,
        *,
        lease: timedelta | float | None = None,
        ttl: timedelta | float | None = None,
        payload: Any = None,
        wait: timedelta | float = 0,
        conn: Any = None,
    ) -> AsyncIterator[Guard]:
        """Run a block at most once per key (see the sync API)."""
        if conn is not None:
            async with self._gov._backend.transaction(conn) as tx:
                claim = await self.claim(
                    operation_type, key, lease=lease, ttl=ttl, payload=payload, wait=wait, conn=tx
                )
                guard = Guard(claim)
                yield guard
                if claim.claimed:
                    await self.complete(claim, guard.result, ttl=ttl, conn=tx)
            return
        claim = await self.claim(
            operation_type, key, lease=lease, ttl=ttl, payload=payload, wait=wait
        )
        guard = Guard(claim)
        if not claim.claimed:
            yield guard
            return
        try:
            yield guard
            # A result that cannot be stored fails the block: the claim is released at once
            # instead of staying IN_PROGRESS until its lease runs out.
            json_arg("result", guard.result)
        except BaseException as exc:
            try:
                await self.release(claim)
            except GovernanceError as release_error:
                exc.add_note(f"pygov: releasing the claim failed too: {release_error}")
            raise
        await self.complete(claim, guard.result, ttl=ttl)

    def idempotent(
        self,
        operation_type: str,
        *,
        key: str | Callable[..., str],
        ttl: timedelta | float | None = None,
        payload: Any = None,
        lease: timedelta | float | None = None,
        wait: timedelta | float = 0,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorator for ``async def`` functions: run once per key (see the sync API)."""

        def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            if not inspect.iscoroutinefunction(func):
                raise ValidationError(
                    "AsyncGovernance.idempotent decorates async functions",
                    {"function": getattr(func, "__qualname__", repr(func))},
                )

            @functools.wraps(func)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                k = _resolve_key(key, args, kwargs)
                body = _resolve_payload(payload, args, kwargs)
                async with self.guard(
                    operation_type, k, ttl=ttl, payload=body, lease=lease, wait=wait
                ) as g:
                    if g.is_duplicate:
                        stored: R = g.data
                        return stored
                    g.result = await func(*args, **kwargs)
                    json_arg("result", g.result)
                    result: R = g.result
                return result

            return wrapper

        return decorate
