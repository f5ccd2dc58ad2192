"""``gov.stock``: stock levels that can never go negative, and the history of every movement.

``adjust`` is one call to ``governance.adjust_stock``: on PostgreSQL one guarded statement
updates the level (or creates it) and records the movement, so concurrent adjustments of a hot
item queue on its row lock for no longer than that statement and its commit. On SQLite the same
logic runs under ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
)
from pygov.errors import ValidationError
from pygov.sqlite_ops import stock as sqlite_impl

MAX_ID_LENGTH = 255


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
        if change == 0:
            raise ValidationError("delta must be a non-zero integer", {"field": "delta"})
        args = (
            _id_arg("item_id", item_id),
            _id_arg("location_id", location_id),
            change,
            text_arg("movement_key", movement_key, required=False),
            context_arg(),
        )
        return Call(ADJUST, args, _quantity, conn, "stock.adjust")

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


class Stock(Namespace):
    """``gov.stock``: guarded stock levels (sync)."""

    _plans_class = StockPlans

    adjust = sync_method(StockPlans.adjust)
    level = sync_method(StockPlans.level)
    movements = sync_method(StockPlans.movements)


class AsyncStock(Namespace):
    """``gov.stock`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = StockPlans

    adjust = async_method(StockPlans.adjust)
    level = async_method(StockPlans.level)
    movements = async_method(StockPlans.movements)
