"""Idempotency on SQLite: the semantics of sql/10_idempotency.sql, under BEGIN IMMEDIATE."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pygov.errors import (
    AuthorityViolationError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyPayloadMismatchError,
    ValidationError,
)

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection

_COLUMNS = (
    "id, operation_type, idempotency_key, status, result_data, created_by, created_at, "
    "completed_at, expires_at, lease_expires_at, holder_token, payload_hash, ttl_seconds"
)
_DEFAULT_LEASE = 300.0
_DEFAULT_TTL = 86400.0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def payload_hash(payload_json: str | None) -> str | None:
    """Canonical SHA-256 of a payload: key order and whitespace do not matter."""
    if payload_json is None:
        return None
    canonical = json.dumps(
        json.loads(payload_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _row(outcome: str, rec: Any, show_token: bool) -> Row:
    return (
        outcome,
        rec[0],
        rec[1],
        rec[2],
        rec[3],
        _loads(rec[4]),
        rec[5],
        rec[6],
        rec[7],
        rec[8],
        rec[9],
        rec[10] if show_token else None,
    )


def _check(op: str | None, key: str | None, ttl: float | None) -> None:
    if op is None or not op.strip() or len(op) > 100:
        raise ValidationError(
            "operation_type must be 1 to 100 characters", {"field": "operation_type"}
        )
    if key is None or not key.strip() or len(key) > 255:
        raise ValidationError("idempotency key must be 1 to 255 characters", {"field": "key"})
    if ttl is not None and ttl <= 0:
        raise ValidationError("ttl must be positive", {"field": "ttl"})


def _select(conn: SqliteConnection, op: str, key: str) -> Any:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM governance_idempotency_record "
        "WHERE operation_type = ? AND idempotency_key = ?",
        (op, key),
    ).fetchone()


def _acquire(
    conn: SqliteConnection,
    op: str,
    key: str,
    in_progress: bool,
    result_json: str | None,
    ttl: float | None,
    lease: float | None,
    payload_json: str | None,
) -> list[Row]:
    _check(op, key, ttl)
    if in_progress and lease is not None and lease <= 0:
        raise ValidationError("lease must be positive", {"field": "lease"})
    ttl_s = ttl if ttl is not None else _DEFAULT_TTL
    now = datetime.now(UTC)
    digest = payload_hash(payload_json)
    token = str(uuid.uuid4()) if in_progress else None
    lease_at = _iso(now + timedelta(seconds=lease or _DEFAULT_LEASE)) if in_progress else None
    status = "IN_PROGRESS" if in_progress else "COMPLETED"
    outcome = "CLAIMED" if in_progress else "RECORDED"
    values = (
        status,
        None if in_progress else result_json,
        digest,
        token,
        lease_at,
        ttl_s,
        conn.gov_ctx.user,
        conn.gov_ctx.service,
        _iso(now),
        None if in_progress else _iso(now),
        _iso(now + timedelta(seconds=ttl_s)),
    )
    rec = _select(conn, op, key)
    if rec is None:
        conn.execute(
            "INSERT INTO governance_idempotency_record (status, result_data, payload_hash, "
            "holder_token, lease_expires_at, ttl_seconds, created_by, created_service, created_at, "
            "completed_at, expires_at, operation_type, idempotency_key) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, op, key),
        )
        return [_row(outcome, _select(conn, op, key), True)]
    now_text = _iso(now)
    if rec[8] <= now_text or (rec[3] == "IN_PROGRESS" and rec[9] <= now_text):
        conn.execute(
            "UPDATE governance_idempotency_record SET status = ?, result_data = ?, "
            "payload_hash = ?, holder_token = ?, lease_expires_at = ?, ttl_seconds = ?, "
            "created_by = ?, created_service = ?, created_at = ?, completed_at = ?, "
            "expires_at = ? WHERE id = ?",
            (*values, rec[0]),
        )
        return [_row(outcome, _select(conn, op, key), True)]
    if digest is not None and rec[11] is not None and rec[11] != digest:
        raise IdempotencyPayloadMismatchError(
            "idempotency key was already used with a different payload",
            {"operation_type": op, "key": key, "record_id": rec[0]},
        )
    if rec[3] == "IN_PROGRESS":
        raise IdempotencyInProgressError(
            "idempotency key is claimed by another caller",
            {"operation_type": op, "key": key, "record_id": rec[0], "lease_expires_at": rec[9]},
        )
    conn.execute(
        "INSERT INTO governance_idempotency_duplicate_counter (operation_type, served) "
        "VALUES (?, 1) ON CONFLICT (operation_type) DO UPDATE SET served = served + 1",
        (op,),
    )
    return [_row("DUPLICATE", rec, False)]


def check_and_record(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    op, key, result_json, ttl, payload_json, _ctx = args
    return _acquire(conn, op, key, False, result_json, ttl, None, payload_json)


def claim(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    op, key, lease, ttl, payload_json, _ctx = args
    return _acquire(conn, op, key, True, None, ttl, lease, payload_json)


def _no_claim(op: str, key: str) -> IdempotencyError:
    return IdempotencyError(
        "no live claim held with this token: it was completed, released or taken over",
        {"operation_type": op, "key": key},
    )


def complete(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    op, key, token, result_json, ttl, _ctx = args
    _check(op, key, ttl)
    rec = _select(conn, op, key)
    if rec is None or rec[3] != "IN_PROGRESS" or rec[10] != token:
        raise _no_claim(op, key)
    now = datetime.now(UTC)
    ttl_s = ttl if ttl is not None else rec[12]
    conn.execute(
        "UPDATE governance_idempotency_record SET status = 'COMPLETED', result_data = ?, "
        "completed_at = ?, ttl_seconds = ?, expires_at = ?, holder_token = NULL, "
        "lease_expires_at = NULL WHERE id = ?",
        (result_json, _iso(now), ttl_s, _iso(now + timedelta(seconds=ttl_s)), rec[0]),
    )
    return [_row("COMPLETED", _select(conn, op, key), False)]


def release(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    op, key, token, _ctx = args
    rec = _select(conn, op, key)
    if rec is None or rec[3] != "IN_PROGRESS" or rec[10] != token:
        raise _no_claim(op, key)
    conn.execute("DELETE FROM governance_idempotency_record WHERE id = ?", (rec[0],))
    return [_row("RELEASED", rec, False)]


def get(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    op, key = args
    rec = _select(conn, op, key)
    return [] if rec is None else [_row("FOUND", rec, False)]


def cleanup_expired(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    batch_size, _max_batches, _ctx = args
    if not conn.gov_ctx.superuser:
        raise AuthorityViolationError(
            "cleanup_expired requires the governance_admin role (on SQLite: superuser=True)",
            {"action": "cleanup_expired"},
        )
    now_text = _iso(datetime.now(UTC))
    cur = conn.execute(
        "DELETE FROM governance_idempotency_record WHERE id IN ("
        " SELECT id FROM governance_idempotency_record WHERE expires_at <= ?"
        " AND NOT (status = 'IN_PROGRESS' AND lease_expires_at > ?)"
        " ORDER BY expires_at LIMIT ?)",
        (now_text, now_text, batch_size),
    )
    return [(cur.rowcount,)]


def stats(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    now_text = _iso(datetime.now(UTC))
    rows = conn.execute(
        "WITH r AS (SELECT operation_type,"
        " sum(status = 'COMPLETED' AND expires_at > :now) AS completed,"
        " sum(status = 'IN_PROGRESS' AND expires_at > :now AND lease_expires_at > :now)"
        "   AS in_progress,"
        " sum(expires_at <= :now OR (status = 'IN_PROGRESS' AND lease_expires_at <= :now))"
        "   AS expired"
        " FROM governance_idempotency_record GROUP BY operation_type),"
        " k AS (SELECT operation_type FROM r UNION"
        "       SELECT operation_type FROM governance_idempotency_duplicate_counter)"
        " SELECT k.operation_type, coalesce(r.completed, 0), coalesce(r.in_progress, 0),"
        " coalesce(r.expired, 0), coalesce(d.served, 0)"
        " FROM k LEFT JOIN r ON r.operation_type = k.operation_type"
        " LEFT JOIN governance_idempotency_duplicate_counter d"
        "   ON d.operation_type = k.operation_type ORDER BY 1",
        {"now": now_text},
    ).fetchall()
    return list(rows)
