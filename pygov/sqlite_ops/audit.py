"""The audit trail on SQLite: the semantics of sql/20_audit.sql, under BEGIN IMMEDIATE.

:func:`write_audit` is what other SQLite operations call, inside their transaction, to leave an
audit row with the connection's governance context.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pygov.errors import ValidationError

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection


def _now() -> str:
    from pygov._sqlite import now_text

    return now_text()


def dumps(value: Any) -> str | None:
    """JSON text as stored in SQLite (compact, keys kept in the order given)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text: Any) -> Any:
    return None if text is None else json.loads(text)


def changed_fields(before: Any, after: Any, ignore: tuple[str, ...] = ()) -> list[str] | None:
    """The top-level keys whose values differ, sorted; None unless both sides are objects."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in ignore and before.get(k) != after.get(k))


def check_text(field: str, value: Any, max_length: int, required: bool) -> None:
    """GV002 for a bad text argument, as governance._audit_check_text does."""
    if value is None:
        if required:
            raise ValidationError(f"{field} is required", {"field": field})
        return
    if (required and not str(value).strip()) or len(str(value)) > max_length:
        raise ValidationError(
            f"{field} must be 1 to {max_length} characters",
            {"field": field, "length": len(str(value)), "max_length": max_length},
        )


def _check_extra(extra: Any) -> None:
    if extra is not None and not isinstance(extra, dict):
        raise ValidationError(
            "extra must be a JSON object", {"field": "extra", "type": type(extra).__name__}
        )


def write_audit(
    conn: SqliteConnection,
    model_name: str | None,
    object_id: str | None,
    operation: str,
    *,
    source_service: str | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict[str, Any] | None = None,
    changed: list[str] | None = None,
) -> int:
    """Insert one audit row with the connection's governance context; returns its id.

    Call it inside the caller's transaction (the row commits or rolls back with it). ``changed``
    defaults to the keys that differ between ``before`` and ``after`` when both are dicts.
    """
    check_text("model_name", model_name, 255, False)
    check_text("object_id", object_id, 1000, False)
    check_text("operation", operation, 64, True)
    check_text("source_service", source_service, 255, False)
    _check_extra(extra)
    ctx = conn.gov_ctx
    if changed is None:
        changed = changed_fields(before, after)
    cur = conn.execute(
        "INSERT INTO governance_audit_trail (occurred_at, model_name, object_id, operation,"
        " source_service, user_name, db_role, ip_address, user_agent, request_id, before_data,"
        " after_data, changed_fields, extra) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
        (
            _now(),
            model_name,
            object_id,
            operation,
            source_service if source_service is not None else ctx.service,
            ctx.user,
            ctx.ip,
            ctx.user_agent,
            ctx.request_id,
            dumps(before),
            dumps(after),
            dumps(changed),
            dumps(extra) if extra else None,
        ),
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


# --- explicit logging: one function per statement, (conn, args) -> rows ----------------------


def log_operation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    model, object_id, operation, service, before_json, after_json, extra_json, _ctx = args
    check_text("model_name", model, 255, True)
    new_id = write_audit(
        conn,
        model,
        object_id,
        operation,
        source_service=service,
        before=loads(before_json),
        after=loads(after_json),
        extra=loads(extra_json),
    )
    return [(new_id,)]


def log_authority_violation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    service, model, operation, reason, extra_json, _ctx = args
    check_text("service", service, 255, True)
    check_text("operation", operation, 64, True)
    extra = loads(extra_json)
    _check_extra(extra)
    details = {"attempted_operation": operation, "reason": reason}
    merged = {**(extra or {}), **{k: v for k, v in details.items() if v is not None}}
    new_id = write_audit(
        conn, model, None, "AUTHORITY_VIOLATION", source_service=service, extra=merged
    )
    return [(new_id,)]


def log_admin_access(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    action, target, extra_json, _ctx = args
    check_text("action", action, 255, True)
    extra = loads(extra_json)
    _check_extra(extra)
    new_id = write_audit(
        conn, target, None, "ADMIN_ACCESS", extra={**(extra or {}), "action": action}
    )
    return [(new_id,)]


def log_gateway_operation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    gateway, model, object_id, operation, extra_json, _ctx = args
    check_text("gateway", gateway, 255, True)
    check_text("model_name", model, 255, True)
    extra = loads(extra_json)
    _check_extra(extra)
    new_id = write_audit(
        conn,
        model,
        object_id,
        operation,
        source_service=gateway,
        extra={**(extra or {}), "gateway": gateway},
    )
    return [(new_id,)]
