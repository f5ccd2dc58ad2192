"""``health_check`` on SQLite: the same problems as sql/95_health.sql where SQLite has them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection

#: Capabilities register further checks here: fn(conn) -> rows of (component, severity, problem,
#: detail dict).
EXTRA_CHECKS: list[Any] = []


def health_check(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    rows: list[Row] = [
        (
            "idempotency",
            "warning",
            f"{count} claims of {op} were abandoned (lease expired, never completed)",
            {"operation_type": op, "claims": count},
        )
        for op, count in conn.execute(
            "SELECT operation_type, count(*) FROM governance_idempotency_record"
            " WHERE status = 'IN_PROGRESS' AND lease_expires_at <= ? AND expires_at > ?"
            " GROUP BY operation_type",
            (now, now),
        )
    ]
    for check in EXTRA_CHECKS:
        rows.extend(check(conn))
    return rows
