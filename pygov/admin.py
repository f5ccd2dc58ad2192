"""Operator read-outs used by the ``pygov`` CLI: the tail of the audit trail and an overview.

Each is one SQL function (``governance.audit_tail``, ``governance.admin_stats``, in
``sql/90_admin.sql``, usable from psql) with its SQLite twin in ``pygov/sqlite_ops/admin.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pygov._core import Call, Row, Statement, int_arg, text_arg, to_datetime
from pygov.audit import MAX_NAME, AuditRecord, _moment, _records
from pygov.errors import ValidationError
from pygov.sqlite_ops import admin as sqlite_impl

if TYPE_CHECKING:
    from pygov.governance import Governance

AUDIT_TAIL = Statement(
    "audit_tail",
    "SELECT id, occurred_at, transaction_id, model_name, object_id, operation, source_service, "
    "user_name, db_role, host(ip_address), user_agent, request_id, before_data, after_data, "
    "changed_fields, extra FROM governance.audit_tail($1::text, $2::timestamptz, $3::int, "
    "$4::bigint)",
    sqlite_impl.audit_tail,
)
ADMIN_STATS = Statement(
    "admin_stats", "SELECT * FROM governance.admin_stats()", sqlite_impl.admin_stats
)


def _stats(rows: list[Row]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for section, metric, value in rows:
        # Values are jsonb (decoded by the driver) or SQLite's own: times arrive as text.
        result.setdefault(section, {})[metric] = (
            to_datetime(value) if metric.endswith("_at") else value
        )
    return result


def audit_tail_call(
    *,
    user: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    before_id: int | None = None,
    conn: Any = None,
) -> Call[list[AuditRecord]]:
    """The newest audit records (optionally one user's, since a moment), newest first."""
    size = int_arg("limit", limit, minimum=1)
    if size > 10000:
        raise ValidationError("limit must be at most 10000", {"field": "limit"})
    args = (
        text_arg("user", user, max_length=MAX_NAME, required=False),
        None if since is None else _moment("since", since),
        size,
        None if before_id is None else int_arg("before_id", before_id),
    )
    return Call(AUDIT_TAIL, args, _records, conn, "admin.audit_tail")


def stats_call(*, conn: Any = None) -> Call[dict[str, dict[str, Any]]]:
    """Per section (audit, quarantine, delegations, locks): metric -> value."""
    return Call(ADMIN_STATS, (), _stats, conn, "admin.stats")


def audit_tail(gov: Governance, **options: Any) -> list[AuditRecord]:
    """:func:`audit_tail_call` run on ``gov`` (one round trip)."""
    return gov._run(audit_tail_call(**options))


def stats(gov: Governance) -> dict[str, dict[str, Any]]:
    """:func:`stats_call` run on ``gov`` (one round trip)."""
    return gov._run(stats_call())
