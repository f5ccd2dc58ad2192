"""Guarded stock on SQLite: the semantics of governance.adjust_stock, under BEGIN IMMEDIATE.

One writer at a time, so reading the level and then writing it cannot race.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pygov.errors import IdempotencyPayloadMismatchError, ValidationError

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection

_MOVEMENT_COLUMNS = (
    "id, item_id, location_id, movement_key, delta, quantity_after, user_name, "
    "source_service, request_id, occurred_at"
)
_MAX_QUANTITY = 2**63 - 1


def _repeat(first: Any, item: str, location: str, delta: int) -> list[Row]:
    if (first[1], first[2], first[4]) != (item, location, delta):
        raise IdempotencyPayloadMismatchError(
            "movement key was already used for a different movement",
            {
                "movement_key": first[3],
                "movement_id": first[0],
                "first": {"item_id": first[1], "location_id": first[2], "delta": first[4]},
                "requested": {"item_id": item, "location_id": location, "delta": delta},
            },
        )
    return [(first[5],)]


def adjust(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    item, location, delta, key, _ctx = args
    if key is not None:
        first = conn.execute(
            f"SELECT {_MOVEMENT_COLUMNS} FROM governance_stock_movement WHERE movement_key = ?",
            (key,),
        ).fetchone()
        if first is not None:
            return _repeat(first, item, location, delta)
    row = conn.execute(
        "SELECT quantity FROM governance_stock_level WHERE item_id = ? AND location_id = ?",
        (item, location),
    ).fetchone()
    available = 0 if row is None else int(row[0])
    quantity = available + delta
    if quantity < 0:
        raise ValidationError(
            "not enough stock",
            {
                "item_id": item,
                "location_id": location,
                "available": available,
                "requested": -delta,
                "delta": delta,
            },
        )
    if quantity > _MAX_QUANTITY:
        raise ValidationError(
            "the quantity would be out of range",
            {"item_id": item, "location_id": location, "available": available, "delta": delta},
        )
    now = conn.execute("SELECT governance_now()").fetchone()[0]
    conn.execute(
        "INSERT INTO governance_stock_level (item_id, location_id, quantity, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (item_id, location_id) DO UPDATE "
        "SET quantity = excluded.quantity, updated_at = excluded.updated_at",
        (item, location, quantity, now),
    )
    ctx = conn.gov_ctx
    conn.execute(
        "INSERT INTO governance_stock_movement (item_id, location_id, movement_key, delta, "
        "quantity_after, user_name, source_service, request_id, occurred_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (item, location, key, delta, quantity, ctx.user, ctx.service, ctx.request_id, now),
    )
    return [(quantity,)]


def level(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    item, location = args
    row = conn.execute(
        "SELECT quantity FROM governance_stock_level WHERE item_id = ? AND location_id = ?",
        (item, location),
    ).fetchone()
    return [(0 if row is None else row[0],)]


def history(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    item, location, limit, before_id = args
    return list(
        conn.execute(
            f"SELECT {_MOVEMENT_COLUMNS} FROM governance_stock_movement "
            "WHERE item_id = ? AND location_id = ? AND (? IS NULL OR id < ?) "
            "ORDER BY id DESC LIMIT ?",
            (item, location, before_id, before_id, limit),
        )
    )
