"""``gov.stock``: stock levels that can never go negative, and the history of every movement.

``adjust`` is one call to ``governance.adjust_stock``: on PostgreSQL a guarded ``UPDATE`` (the
one an application would write by hand) changes the level, or creates it on first use, and the
movement is recorded in the same transaction, so concurrent adjustments of a hot item queue on
its row lock only from that UPDATE to the commit. On SQLite the same logic runs under
``BEGIN IMMEDIATE``.

A hot item is limited by that row lock: each change holds it until its commit is on disk. So
the changes this process's callers make to one level at the same moment are combined
(:mod:`pygov._combine`): one caller sends them together to ``governance.adjust_stock_batch``,
which applies each in order, with its own context and movement key, and answers each on its own
(a refused change does not stop the others). A lone caller goes straight to
``governance.adjust_stock``; calls inside your transaction (``conn=``) are never combined.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pygov._combine import Combiner, Pending, fail, wake
from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    int_arg,
    scalar,
    sync_method,
    text_arg,
    to_datetime,
    to_json_value,
)
from pygov.errors import GovernanceError, IdempotencyPayloadMismatchError, ValidationError
from pygov.sqlite_ops import stock as sqlite_impl

MAX_ID_LENGTH = 255
#: Operation names in the concurrency monitor: every caller, and every combined round trip.
ADJUST_OP = "stock.adjust"
BATCH_OP = "stock.adjust_batch"


@dataclass(frozen=True, slots=True)
class StockMovement:
    """One accepted change of a stock level, with who made it."""

    id: int
    item_id: str
    location_id: str
    movement_key: str | None
    delta: int
    quantity_after: int
    user: str | None
    service: str | None
    request_id: str | None
    occurred_at: datetime


def _id_arg(name: str, value: Any) -> str:
    """Item and location ids: strings, or integers (stored as their decimal text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    checked = text_arg(name, value, max_length=MAX_ID_LENGTH)
    assert checked is not None
    return checked


def _movement(row: Row) -> StockMovement:
    occurred_at = to_datetime(row[9])
    assert occurred_at is not None
    return StockMovement(
        id=int(row[0]),
        item_id=row[1],
        location_id=row[2],
        movement_key=row[3],
        delta=int(row[4]),
        quantity_after=int(row[5]),
        user=row[6],
        service=row[7],
        request_id=row[8],
        occurred_at=occurred_at,
    )


def _quantity(rows: list[Row]) -> int:
    return int(scalar(rows))


def _movements(rows: list[Row]) -> list[StockMovement]:
    return [_movement(row) for row in rows]


#: The errors of adjust_stock, by the outcome adjust_stock_batch reports instead of raising.
_OUTCOME_ERRORS: dict[str, tuple[type[GovernanceError], str]] = {
    "REFUSED": (ValidationError, "not enough stock"),
    "OVERFLOW": (ValidationError, "the quantity would be out of range"),
    "MISMATCH": (
        IdempotencyPayloadMismatchError,
        "movement key was already used for a different movement",
    ),
}


def _settle_batch(batch: list[Pending[int]], rows: list[Row]) -> None:
    """Give each combined caller its own answer: the quantity, or the error it would have got
    from adjust_stock alone."""
    for pending, (outcome, quantity, detail) in zip(batch, rows, strict=True):
        if outcome in ("APPLIED", "REPEATED"):
            pending.settle(int(quantity))
        else:
            cls, message = _OUTCOME_ERRORS[outcome]
            pending.settle(error=cls(message, to_json_value(detail) or {}))


def _batch_rows(rows: list[Row]) -> list[Row]:
    return rows


ADJUST = Statement(
    "adjust_stock",
    "SELECT governance.adjust_stock($1::text, $2::text, $3::bigint, $4::text, $5::text::jsonb)",
    sqlite_impl.adjust,
)
LEVEL = Statement(
    "get_stock_level",
    "SELECT governance.get_stock_level($1::text, $2::text)",
    sqlite_impl.level,
)
ADJUST_BATCH = Statement(
    "adjust_stock_batch",
    "SELECT outcome, quantity, detail FROM governance.adjust_stock_batch($1::text, $2::text, "
    "$3::bigint[], $4::text[], $5::text[]::jsonb[])",
)
HISTORY = Statement(
    "stock_history",
    "SELECT id, item_id, location_id, movement_key, delta, quantity_after, user_name, "
    "source_service, request_id, occurred_at "
    "FROM governance.stock_history($1::text, $2::text, $3::int, $4::bigint)",
    sqlite_impl.history,
)


class StockPlans:
    """Argument building and result mapping for gov.stock, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def adjust(
        self,
        item_id: str | int,
        location_id: str | int,
        delta: int,
        *,
        movement_key: str | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Add ``delta`` (negative to withdraw) to the level; returns the new quantity.

        Creates the level when it does not exist yet. A change that would take the level below
        zero raises ValidationError with ``available`` and ``requested`` in its context and
        changes nothing. With ``movement_key`` (e.g. :func:`pygov.keys.stock_movement`) the
        movement is applied once: a repeat returns the first result, and reusing the key for a
        different movement raises IdempotencyPayloadMismatchError. A refused movement does not
        use its key up.
        """
        change = int_arg("delta", delta)
        if change == 0 or change == -(2**63):
            raise ValidationError("delta must be a non-zero bigint", {"field": "delta"})
        args = (
            _id_arg("item_id", item_id),
            _id_arg("location_id", location_id),
            change,
            text_arg("movement_key", movement_key, required=False),
            context_arg(),
        )
        return Call(ADJUST, args, _quantity, conn, ADJUST_OP)

    def adjust_batch(self, batch: list[Pending[int]]) -> Call[list[Row]]:
        """Several callers' ``adjust`` calls on one level (their plans), as one round trip."""
        calls = [pending.request for pending in batch]
        item_id, location_id = calls[0].args[0], calls[0].args[1]
        args = (
            item_id,
            location_id,
            [c.args[2] for c in calls],
            [c.args[3] for c in calls],
            [c.args[4] for c in calls],
        )
        return Call(ADJUST_BATCH, args, _batch_rows, None, BATCH_OP)

    def level(self, item_id: str | int, location_id: str | int, *, conn: Any = None) -> Call[int]:
        """The quantity on hand (0 for a level that never moved)."""
        args = (_id_arg("item_id", item_id), _id_arg("location_id", location_id))
        return Call(LEVEL, args, _quantity, conn, "stock.level")

    def movements(
        self,
        item_id: str | int,
        location_id: str | int,
        *,
        limit: int = 100,
        before_id: int | None = None,
        conn: Any = None,
    ) -> Call[list[StockMovement]]:
        """The level's movements, newest first; page back with ``before_id`` (the smallest id
        of the previous page)."""
        size = int_arg("limit", limit, minimum=1)
        if size > 10_000:
            raise ValidationError("limit must be at most 10000", {"field": "limit"})
        args = (
            _id_arg("item_id", item_id),
            _id_arg("location_id", location_id),
            size,
            None if before_id is None else int_arg("before_id", before_id),
        )
        return Call(HISTORY, args, _movements, conn, "stock.movements")


def _level(call: Call[int]) -> tuple[str, str]:
    return call.args[0], call.args[1]


class Stock(Namespace):
    """``gov.stock``: guarded stock levels (sync)."""

    _plans_class = StockPlans

    level = sync_method(StockPlans.level)
    movements = sync_method(StockPlans.movements)

    def __init__(self, gov: Any) -> None:
        super().__init__(gov)
        self._combiner = Combiner()

    def adjust(
        self,
        item_id: str | int,
        location_id: str | int,
        delta: int,
        *,
        movement_key: str | None = None,
        conn: Any = None,
    ) -> int:
        """Add ``delta`` (negative to withdraw) to the level; returns the new quantity (see
        :meth:`StockPlans.adjust`). Concurrent calls on one level are combined (module doc)."""
        call = self._plans.adjust(item_id, location_id, delta, movement_key=movement_key, conn=conn)
        if conn is not None or self._gov.backend != "postgresql":
            result: int = self._gov._run(call)
            return result
        pending: Pending[int] = Pending(call)
        with self._gov.monitor.track(ADJUST_OP):
            if not self._combiner.join(_level(call), pending, threading.Event):
                started = time.monotonic()
                pending.waker.wait()
                self._gov.monitor.record_wait(ADJUST_OP, time.monotonic() - started)
            if pending.sender:
                self._send(_level(call))
            return pending.outcome()

    def _send(self, level: tuple[str, str]) -> None:
        batch = self._combiner.take(level)
        try:
            if len(batch) > 1:
                try:
                    _settle_batch(batch, self._gov._run(self._plans.adjust_batch(batch)))
                    return
                except Exception as exc:
                    if not fail(batch, exc):
                        return
            for pending in batch:
                self._send_one(pending)
        finally:
            wake(batch, self._combiner.hand_over(level))

    def _send_one(self, pending: Pending[int]) -> None:
        call = pending.request
        try:
            pending.settle(call.result(self._gov._backend.fetch(call.statement, call.args)))
        except Exception as exc:
            fail([pending], exc)


class AsyncStock(Namespace):
    """``gov.stock`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = StockPlans

    level = async_method(StockPlans.level)
    movements = async_method(StockPlans.movements)

    def __init__(self, gov: Any) -> None:
        super().__init__(gov)
        self._combiner = Combiner()
        self._senders: set[asyncio.Task[None]] = set()

    async def adjust(
        self,
        item_id: str | int,
        location_id: str | int,
        delta: int,
        *,
        movement_key: str | None = None,
        conn: Any = None,
    ) -> int:
        """Add ``delta`` to the level; returns the new quantity (see :meth:`Stock.adjust`)."""
        call = self._plans.adjust(item_id, location_id, delta, movement_key=movement_key, conn=conn)
        if conn is not None:
            result: int = await self._gov._run(call)
            return result
        pending: Pending[int] = Pending(call)
        level = _level(call)
        with self._gov.monitor.track(ADJUST_OP):
            if not self._combiner.join(level, pending, asyncio.Event):
                started = time.monotonic()
                try:
                    await pending.waker.wait()
                except asyncio.CancelledError:
                    if self._combiner.cancel(pending):
                        self._send_later(level)  # it was our turn: the others still need it
                    raise
                self._gov.monitor.record_wait(ADJUST_OP, time.monotonic() - started)
            if pending.sender:
                # Shielded: cancelling this caller must not strand the callers in its batch.
                await asyncio.shield(self._send_later(level))
            return pending.outcome()

    def _send_later(self, level: tuple[str, str]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(self._send(level))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)
        return task

    async def _send(self, level: tuple[str, str]) -> None:
        batch = self._combiner.take(level)
        try:
            if len(batch) > 1:
                try:
                    _settle_batch(batch, await self._gov._run(self._plans.adjust_batch(batch)))
                    return
                except Exception as exc:
                    if not fail(batch, exc):
                        return
            for pending in batch:
                await self._send_one(pending)
        finally:
            wake(batch, self._combiner.hand_over(level))

    async def _send_one(self, pending: Pending[int]) -> None:
        call = pending.request
        try:
            rows = await self._gov._backend.fetch(call.statement, call.args)
            pending.settle(call.result(rows))
        except Exception as exc:
            fail([pending], exc)
