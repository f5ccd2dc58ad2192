"""``audit_tail`` and ``admin_stats`` on SQLite: the same rows as sql/90_admin.sql."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pygov.errors import ValidationError
from pygov.sqlite_ops.audit import _RECORD_COLUMNS, _record

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def audit_tail(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    user, since, limit, before_id = args
    if limit is None or not 1 <= limit <= 10000:
        raise ValidationError("limit must be between 1 and 10000", {"field": "limit"})
    rows = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM governance_audit_trail"
        " WHERE (?1 IS NULL OR user_name = ?1) AND (?2 IS NULL OR occurred_at >= ?2)"
        " AND id < ?3 ORDER BY id DESC LIMIT ?4",
        (
            user,
            None if since is None else _utc_text(since),
            before_id if before_id is not None else 2**63 - 1,
            limit,
        ),
    ).fetchall()
    return [_record(r) for r in rows]


def _has(conn: SqliteConnection, table: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return found is not None


def admin_stats(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    now = datetime.now(UTC)
    rows: list[Row] = []
    if _has(conn, "governance_audit_trail"):
        day_ago = _utc_text(now - timedelta(hours=24))
        total, recent = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE occurred_at >= ?) FROM governance_audit_trail",
            (day_ago,),
        ).fetchone()
        seals, last_seal = conn.execute(
            "SELECT count(*), max(sealed_at) FROM governance_audit_seal"
        ).fetchone()
        audited = conn.execute("SELECT count(*) FROM governance_audited_table").fetchone()[0]
        rows += [
            ("audit", "rows", total),
            ("audit", "rows_last_24h", recent),
            ("audit", "seals", seals),
            ("audit", "last_seal_at", last_seal),
            ("audit", "audited_tables", audited),
        ]
    if _has(conn, "governance_quarantine_record"):
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM governance_quarantine_record GROUP BY status"
            ).fetchall()
        )
        rows += [
            ("quarantine", status.lower(), counts.get(status, 0))
            for status in ("QUARANTINED", "UNDER_REVIEW", "RESOLVED")
        ]
    if _has(conn, "governance_authority_delegation"):
        now_text = _utc_text(now)
        live, revoked, expired = conn.execute(
            "SELECT count(*) FILTER (WHERE revoked_at IS NULL AND julianday(valid_from) <="
            " julianday(?1) AND julianday(valid_until) > julianday(?1)),"
            " count(*) FILTER (WHERE revoked_at IS NOT NULL),"
            " count(*) FILTER (WHERE revoked_at IS NULL AND julianday(valid_until) <="
            " julianday(?1)) FROM governance_authority_delegation",
            (now_text,),
        ).fetchone()
        rows += [
            ("delegations", "live", live),
            ("delegations", "revoked", revoked),
            ("delegations", "expired", expired),
        ]
    # Locks: SQLite has one writer at a time and no advisory locks to report.
    return rows
