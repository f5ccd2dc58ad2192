"""The authority matrix and delegations on SQLite: the semantics of sql/30_authority.sql.

SQLite has no autonomous transactions and one writer at a time, so a violation cannot be written
while the transaction that caused it is open (another connection would wait for its lock, and
the transaction is about to roll back). Violations are queued on the connection instead, and
written in a transaction of their own right after the current one ends, committed or rolled
back (:func:`record_pending`, an after-transaction hook of the SQLite backend). Protected tables
get plain-SQL triggers; they reach Python only to queue a refusal and to read the override.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pygov.context import GovernanceContext
from pygov.errors import AuthorityViolationError, ValidationError
from pygov.sqlite_ops.audit import loads, write_audit

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection

logger = logging.getLogger("pygov.authority")

KNOWN_WRITE_OPERATIONS = ("CREATE", "UPDATE", "DELETE")
MAX_DELEGATION_SECONDS = 24 * 3600
_STATEMENT_OPERATION = {"INSERT": "CREATE", "UPDATE": "UPDATE", "DELETE": "DELETE"}
_DELEGATION_COLUMNS = (
    "id, from_service, to_service, model_name, operation, reason, valid_from, valid_until,"
    " created_by, revoked_at, revoked_by, revoke_reason"
)


@dataclass(frozen=True, slots=True)
class PendingViolation:
    """A violation waiting for its own transaction, with the context it happened in."""

    service: str | None
    model_name: str
    operation: str
    reason: str
    extra: dict[str, Any]
    ctx: GovernanceContext


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def lit(value: str) -> str:
    """A SQL string literal (for trigger bodies, where SQLite allows no parameters)."""
    return "'" + value.replace("'", "''") + "'"


def ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def source_sql(service: str, model: str, operation: str, now: str) -> str:
    """How ``service`` holds the authority: ('matrix', NULL), ('delegation', id) or no row.

    The arguments are SQL expressions: parameters for the operations, literals and
    ``governance_ctx('service')`` for the triggers, so both read one definition.
    """
    return (
        "SELECT 'matrix', NULL FROM governance_authority_matrix m"
        f" WHERE m.service = {service} AND m.model_name = {model} AND m.operation = {operation}"
        " UNION ALL SELECT * FROM (SELECT 'delegation', d.id"
        " FROM governance_authority_delegation d"
        f" WHERE d.to_service = {service} AND d.model_name = {model}"
        f" AND d.operation = {operation} AND d.revoked_at IS NULL"
        f" AND d.valid_from <= {now} AND d.valid_until > {now}"
        " AND NOT EXISTS (SELECT 1 FROM governance_authority_model c"
        f" WHERE c.model_name = {model} AND c.is_critical = 1)"
        " ORDER BY d.valid_until DESC LIMIT 1) LIMIT 1"
    )


_SOURCE = source_sql(":service", ":model", ":operation", ":now")


def _source(conn: SqliteConnection, service: Any, model: str, operation: str) -> list[Row]:
    params = {"service": service, "model": model, "operation": operation, "now": _now()}
    return [tuple(r) for r in conn.execute(_SOURCE, params).fetchall()]


def _is_admin(conn: SqliteConnection) -> bool:
    return conn.gov_ctx.superuser


# --- violations: queued, then recorded in their own transaction ----------------------------


def _pending(conn: SqliteConnection) -> list[PendingViolation]:
    queue: list[PendingViolation] | None = getattr(conn, "authority_pending", None)
    if queue is None:
        queue = []
        conn.authority_pending = queue  # type: ignore[attr-defined]
    return queue


def deny(
    conn: SqliteConnection,
    service: str | None,
    model: str,
    operation: str,
    reason: str,
    extra: dict[str, Any] | None = None,
) -> AuthorityViolationError:
    """Queue the violation and return the GV001 to raise (recorded once the transaction ends)."""
    details = dict(extra or {})
    _pending(conn).append(
        PendingViolation(service, model, operation, reason, details, conn.gov_ctx)
    )
    who = f"service {service}" if service else "a caller with no governance service"
    return AuthorityViolationError(
        f"authority violation: {who} may not {operation} {model} ({reason})",
        {
            **details,
            "service": service,
            "model": model,
            "operation": operation,
            "reason": reason,
            "violation_recorded": True,
        },
    )


def record_pending(conn: SqliteConnection) -> None:
    """After-transaction hook: write the queued violations in a transaction of their own, and
    end the transaction-local override. Never raises: a failure is logged with the violations
    (the caller is already leaving with its own result or error)."""
    conn.authority_override = None  # type: ignore[attr-defined]
    queue = getattr(conn, "authority_pending", None)
    if not queue:
        return
    conn.authority_pending = []  # type: ignore[attr-defined]
    previous = conn.gov_ctx
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for v in queue:
                conn.gov_ctx = v.ctx
                extra = {**v.extra, "attempted_operation": v.operation, "reason": v.reason}
                write_audit(
                    conn,
                    v.model_name,
                    None,
                    "AUTHORITY_VIOLATION",
                    source_service=v.service or "(none)",
                    extra=extra,
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except Exception:
        logger.exception(
            "pygov: could not record %d authority violation(s) on SQLite: %s",
            len(queue),
            [(v.service, v.model_name, v.operation, v.reason) for v in queue],
        )
    finally:
        conn.gov_ctx = previous


def register_functions(conn: SqliteConnection) -> None:
    """Connection hook: the functions the protected tables' triggers call."""

    def refuse(model: str, operation: str, table: str) -> int | None:
        # None lets the write through under an admin's audited override; 1 refuses it.
        if _override(conn) is not None:
            return None
        deny(
            conn,
            conn.gov_ctx.service,
            model,
            operation,
            "no governance service is set for the transaction"
            if not conn.gov_ctx.service
            else "no matrix entry and no live delegation",
            {"table": table},
        )
        return 1

    conn.create_function("governance_authority_refuse", 3, refuse)
    conn.create_function("governance_authority_override", 0, lambda: _override(conn))


def _override(conn: SqliteConnection) -> str | None:
    reason: str | None = getattr(conn, "authority_override", None)
    return reason if reason and conn.gov_ctx.superuser else None


# --- the matrix ---------------------------------------------------------------------------


def _require_admin(conn: SqliteConnection, action: str, model: str) -> None:
    if not _is_admin(conn):
        raise deny(
            conn,
            conn.gov_ctx.service,
            model,
            action,
            f"{action} requires the governance_admin role (superuser=True on SQLite)",
            {"action": action},
        )


def _name(field: str, value: Any, max_length: int = 255) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValidationError(
            f"{field} must be 1 to {max_length} characters",
            {"field": field, "length": len(value) if isinstance(value, str) else None},
        )
    return value


def matrix_document(conn: SqliteConnection) -> dict[str, Any]:
    grants: dict[str, dict[str, list[str]]] = {
        s: {} for (s,) in conn.execute("SELECT service FROM governance_authority_service")
    }
    for service, model, op in conn.execute(
        "SELECT service, model_name, operation FROM governance_authority_matrix"
        " ORDER BY service, model_name, operation"
    ):
        grants.setdefault(service, {}).setdefault(model, []).append(op)
    critical = [
        m
        for (m,) in conn.execute(
            "SELECT model_name FROM governance_authority_model WHERE is_critical = 1"
            " ORDER BY model_name"
        )
    ]
    return {"grants": grants, "critical": critical}


def get_matrix(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    return [(matrix_document(conn),)]


def _parse_matrix(matrix: Any, critical: Any) -> tuple[set[tuple[str, str, str]], set[str]]:
    if not isinstance(matrix, dict):
        raise ValidationError(
            "the matrix must be an object {service: {model: [operations]}}",
            {"field": "matrix", "type": type(matrix).__name__},
        )
    if critical is not None and (
        not isinstance(critical, list) or not all(isinstance(c, str) for c in critical)
    ):
        raise ValidationError("critical must be a list of model names", {"field": "critical"})
    grants: set[tuple[str, str, str]] = set()
    for service, models in matrix.items():
        _name("service", service)
        if not isinstance(models, dict):
            raise ValidationError(
                "the matrix must map each service to {model: [operation names]}",
                {"field": "matrix", "service": service},
            )
        for model, ops in models.items():
            _name("model_name", model)
            if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
                raise ValidationError(
                    "the matrix must map each service to {model: [operation names]}",
                    {"field": "matrix", "service": service, "model": model},
                )
            grants.update((service, model, op) for op in ops)
    crit = set(critical or [])
    for model in crit:
        _name("model_name", model)
    return grants, crit


def load_matrix(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    matrix_json, critical_json, _ctx = args
    _require_admin(conn, "LOAD_MATRIX", "governance.authority_matrix")
    matrix, critical_list = loads(matrix_json), loads(critical_json)
    grants, critical = _parse_matrix(matrix, critical_list)
    known = [o for (o,) in conn.execute("SELECT operation FROM governance_authority_operation")]
    unknown = sorted({op for _, _, op in grants} - set(known))
    if unknown:
        raise ValidationError(
            "unknown operations (add them to governance_authority_operation first)",
            {"field": "matrix", "operations": unknown, "known": sorted(known)},
        )
    before = matrix_document(conn)
    current = {
        tuple(r)
        for r in conn.execute(
            "SELECT service, model_name, operation FROM governance_authority_matrix"
        )
    }
    services = set(matrix)
    models = {m for _, m, _ in grants} | critical
    removed = current - grants
    # Revoke (audited) the live delegations that lose their ground before the triggers would.
    for service, model, op in removed:
        _revoke_where(
            conn,
            "from_service = ? AND model_name = ? AND operation = ?",
            (service, model, op),
            "the grantor no longer holds this authority in the matrix",
        )
    for model in critical:
        _revoke_where(conn, "model_name = ?", (model,), "the model became critical")
    conn.executemany(
        "DELETE FROM governance_authority_matrix"
        " WHERE service = ? AND model_name = ? AND operation = ?",
        sorted(removed),
    )
    for (service,) in conn.execute("SELECT service FROM governance_authority_service").fetchall():
        if service not in services:
            conn.execute("DELETE FROM governance_authority_service WHERE service = ?", (service,))
    conn.executemany(
        "INSERT OR IGNORE INTO governance_authority_service (service) VALUES (?)",
        [(s,) for s in sorted(services)],
    )
    for (model,) in conn.execute("SELECT model_name FROM governance_authority_model").fetchall():
        if model not in models:
            conn.execute("DELETE FROM governance_authority_model WHERE model_name = ?", (model,))
    conn.executemany(
        "INSERT INTO governance_authority_model (model_name, is_critical) VALUES (?, ?)"
        " ON CONFLICT (model_name) DO UPDATE SET is_critical = excluded.is_critical"
        " WHERE is_critical IS NOT excluded.is_critical",
        [(m, int(m in critical)) for m in sorted(models)],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO governance_authority_matrix (service, model_name, operation)"
        " VALUES (?, ?, ?)",
        sorted(grants),
    )
    write_audit(
        conn,
        "governance.authority_matrix",
        "matrix",
        "UPDATE",
        before=before,
        after=matrix_document(conn),
        extra={"action": "load_matrix"},
    )
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM governance_authority_service),"
        " (SELECT count(*) FROM governance_authority_model),"
        " (SELECT count(*) FROM governance_authority_matrix),"
        " (SELECT count(*) FROM governance_authority_model WHERE is_critical = 1)"
    ).fetchone()
    return [tuple(counts)]


# --- validate and delegations -------------------------------------------------------------


def validate(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    service, model, operation, _ctx = args
    rows = _source(conn, service, model, operation)
    if rows:
        return rows
    _name("service", service)
    _name("model_name", model)
    _name("operation", operation, 64)
    raise deny(conn, service, model, operation, "no matrix entry and no live delegation")


def has_authority(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    service, model, operation = args
    return [(bool(_source(conn, service, model, operation)),)]


def _delegation(conn: SqliteConnection, delegation_id: int) -> Row | None:
    row = conn.execute(
        f"SELECT {_DELEGATION_COLUMNS} FROM governance_authority_delegation WHERE id = ?",
        (delegation_id,),
    ).fetchone()
    return tuple(row) if row is not None else None


def _delegation_dict(row: Row) -> dict[str, Any]:
    names = [c.strip() for c in _DELEGATION_COLUMNS.split(",")]
    return dict(zip(names, row, strict=True))


def _audit_delegation(conn: SqliteConnection, before: Row | None, after: Row, action: str) -> None:
    write_audit(
        conn,
        "governance.authority_delegation",
        str(after[0]),
        "CREATE" if before is None else "UPDATE",
        before=_delegation_dict(before) if before is not None else None,
        after=_delegation_dict(after),
        extra={"action": action},
    )


def delegate(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    from_service, to_service, model, operation, seconds, reason, _ctx = args
    _require_admin(conn, "DELEGATE", model)
    _name("from_service", from_service)
    _name("to_service", to_service)
    _name("model_name", model)
    _name("operation", operation, 64)
    _name("reason", reason, 1000)
    if seconds is None or not 0 < seconds <= MAX_DELEGATION_SECONDS:
        raise ValidationError(
            "a delegation lasts more than 0 and at most 24 hours",
            {"field": "duration", "seconds": seconds},
        )
    if from_service == to_service:
        raise ValidationError(
            "a service cannot delegate to itself", {"field": "to_service", "service": to_service}
        )
    if not conn.execute(
        "SELECT 1 FROM governance_authority_service WHERE service = ?", (to_service,)
    ).fetchone():
        raise ValidationError(
            f"unknown service {to_service}: add it to the authority matrix first",
            {"field": "to_service", "service": to_service},
        )
    context = {"action": "DELEGATE", "from_service": from_service, "to_service": to_service}
    if not conn.execute(
        "SELECT 1 FROM governance_authority_matrix"
        " WHERE service = ? AND model_name = ? AND operation = ?",
        (from_service, model, operation),
    ).fetchone():
        raise deny(
            conn,
            from_service,
            model,
            operation,
            "the grantor does not hold this authority in the matrix",
            context,
        )
    if conn.execute(
        "SELECT 1 FROM governance_authority_model WHERE model_name = ? AND is_critical = 1",
        (model,),
    ).fetchone():
        raise deny(
            conn, from_service, model, operation, "critical models cannot be delegated", context
        )
    start = datetime.now(UTC)
    cur = conn.execute(
        "INSERT INTO governance_authority_delegation (from_service, to_service, model_name,"
        " operation, reason, valid_from, valid_until, created_by, created_role)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (
            from_service,
            to_service,
            model,
            operation,
            reason,
            start.isoformat(timespec="microseconds"),
            (start + timedelta(seconds=seconds)).isoformat(timespec="microseconds"),
            conn.gov_ctx.user,
        ),
    )
    assert cur.lastrowid is not None
    row = _delegation(conn, int(cur.lastrowid))
    assert row is not None
    _audit_delegation(conn, None, row, "delegate")
    return [row]


def _revoke_where(conn: SqliteConnection, where: str, params: tuple[Any, ...], reason: str) -> None:
    now = _now()
    for (delegation_id,) in conn.execute(
        f"SELECT id FROM governance_authority_delegation WHERE revoked_at IS NULL"
        f" AND valid_until > ? AND {where}",
        (now, *params),
    ).fetchall():
        _revoke(conn, int(delegation_id), reason)


def _revoke(conn: SqliteConnection, delegation_id: int, reason: str) -> Row | None:
    before = _delegation(conn, delegation_id)
    if before is None or before[9] is not None:
        return before
    conn.execute(
        "UPDATE governance_authority_delegation SET revoked_at = ?, revoked_by = ?,"
        " revoke_reason = ? WHERE id = ? AND revoked_at IS NULL",
        (_now(), conn.gov_ctx.user or "governance", reason, delegation_id),
    )
    after = _delegation(conn, delegation_id)
    assert after is not None
    _audit_delegation(conn, before, after, "revoke")
    return after


def revoke(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    delegation_id, reason, _ctx = args
    row = _delegation(conn, delegation_id)
    _require_admin(conn, "REVOKE", row[3] if row else "governance.authority_delegation")
    _name("reason", reason, 1000)
    if row is None:
        raise ValidationError("no such delegation", {"delegation_id": delegation_id})
    result = _revoke(conn, delegation_id, reason)
    assert result is not None
    return [result]


def check_delegation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    service, model, operation = args
    for via, delegation_id in _source(conn, service, model, operation):
        if via == "delegation":
            row = _delegation(conn, int(delegation_id))
            return [row] if row is not None else []
    return []


def list_delegations(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    (active_only,) = args
    now = _now()
    where = "revoked_at IS NULL AND valid_from <= ? AND valid_until > ?" if active_only else "1"
    params = (now, now) if active_only else ()
    return [
        tuple(r)
        for r in conn.execute(
            f"SELECT {_DELEGATION_COLUMNS} FROM governance_authority_delegation"
            f" WHERE {where} ORDER BY id DESC",
            params,
        )
    ]


# --- protected tables ---------------------------------------------------------------------


def _guard_name(table: str, statement: str) -> str:
    return f"governance_authority_guard__{table}__{statement.lower()}"


def _guard_trigger(table: str, model: str, statement: str) -> str:
    operation = _STATEMENT_OPERATION[statement]
    allowed = source_sql(
        "governance_ctx('service')", lit(model), lit(operation), "governance_now()"
    )
    detail = json.dumps(
        {"model": model, "operation": operation, "table": table, "violation_recorded": True},
        ensure_ascii=False,
    )
    message = lit(f"GV001: authority violation: {operation} on {model} refused {detail}")
    return (
        f"CREATE TRIGGER {ident(_guard_name(table, statement))} BEFORE {statement}"
        f" ON {ident(table)} WHEN NOT EXISTS ({allowed})\nBEGIN\n"
        f"  SELECT RAISE(ABORT, {message}) WHERE governance_authority_refuse("
        f"{lit(model)}, {lit(operation)}, {lit(table)}) IS NOT NULL;\n"
        # Reached only under an admin's override: each overridden row is audited.
        "  INSERT INTO governance_audit_trail (occurred_at, model_name, object_id, operation,"
        " source_service, user_name, ip_address, user_agent, request_id, extra)"
        f" VALUES (governance_now(), {lit(model)}, NULL, {lit(operation)},"
        " governance_ctx('service'), governance_ctx('user'), governance_ctx('ip'),"
        " governance_ctx('user_agent'), governance_ctx('request_id'),"
        " json_object('action', 'authority_override', 'reason', governance_authority_override(),"
        f" 'table', {lit(table)}, 'statement', {lit(statement)}));\n"
        "END"
    )


def _drop_guards(conn: SqliteConnection, table: str) -> None:
    for statement in _STATEMENT_OPERATION:
        conn.execute(f"DROP TRIGGER IF EXISTS {ident(_guard_name(table, statement))}")


def protect(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, model_name, _ctx = args
    model = model_name.strip() if model_name and model_name.strip() else table
    _require_admin(conn, "PROTECT", model)
    _name("model_name", model)
    if not conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone():
        raise ValidationError("no such table", {"table": table})
    if table.startswith(("governance_", "sqlite_")):
        raise ValidationError("governance and system tables cannot be protected", {"table": table})
    before = conn.execute(
        "SELECT model_name FROM governance_authority_protected_table WHERE table_name = ?",
        (table,),
    ).fetchone()
    _drop_guards(conn, table)
    for statement in _STATEMENT_OPERATION:
        conn.execute(_guard_trigger(table, model, statement))
    conn.execute(
        "INSERT INTO governance_authority_protected_table (table_name, model_name, protected_at,"
        " protected_by) VALUES (?, ?, ?, ?) ON CONFLICT (table_name) DO UPDATE"
        " SET model_name = excluded.model_name, protected_at = excluded.protected_at,"
        " protected_by = excluded.protected_by",
        (table, model, _now(), conn.gov_ctx.user),
    )
    if before is None or before[0] != model:
        write_audit(
            conn,
            "governance.authority_protected_table",
            table,
            "CREATE" if before is None else "UPDATE",
            before={"model_name": before[0]} if before is not None else None,
            after={"model_name": model},
            extra={"action": "protect"},
        )
    return [(model,)]


def unprotect(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, _ctx = args
    row = conn.execute(
        "SELECT model_name FROM governance_authority_protected_table WHERE table_name = ?",
        (table,),
    ).fetchone()
    _require_admin(conn, "UNPROTECT", row[0] if row else table)
    _drop_guards(conn, table)
    if row is None:
        return [(False,)]
    conn.execute("DELETE FROM governance_authority_protected_table WHERE table_name = ?", (table,))
    write_audit(
        conn,
        "governance.authority_protected_table",
        table,
        "DELETE",
        before={"model_name": row[0]},
        extra={"action": "unprotect"},
    )
    return [(True,)]


def override(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    reason, _ctx = args
    _require_admin(conn, "OVERRIDE", "governance.authority_override")
    _name("reason", reason, 1000)
    conn.authority_override = reason  # type: ignore[attr-defined]
    write_audit(
        conn,
        "governance.authority_override",
        None,
        "CREATE",
        after={"reason": reason},
        extra={"action": "authority_override"},
    )
    return [(None,)]


# --- health -------------------------------------------------------------------------------


def health_rows(conn: SqliteConnection) -> list[Row]:
    """``validate_authority_matrix`` on SQLite: rows of (severity, problem, detail)."""
    now = _now()
    rows: list[Row] = []
    for (model,) in conn.execute(
        "SELECT model_name FROM governance_authority_model m WHERE is_critical = 1"
        " AND NOT EXISTS (SELECT 1 FROM governance_authority_matrix x"
        " WHERE x.model_name = m.model_name AND x.operation IN ('CREATE', 'UPDATE', 'DELETE'))"
        " ORDER BY model_name"
    ):
        rows.append(
            (
                "error",
                f"critical model {model} cannot be written by any service",
                {"check": "critical_model_unwritable", "model": model},
            )
        )
    for service, model, op in conn.execute(
        "SELECT service, model_name, operation FROM governance_authority_matrix x"
        " WHERE NOT EXISTS (SELECT 1 FROM governance_authority_operation o"
        " WHERE o.operation = x.operation) ORDER BY 1, 2, 3"
    ):
        rows.append(
            (
                "warning",
                f"service {service} is granted {op} on {model}, an operation outside the known set",
                {"check": "unknown_operation", "service": service, "model": model, "operation": op},
            )
        )
    known = {s for (s,) in conn.execute("SELECT service FROM governance_authority_service")}
    for d_id, grantor, grantee, model, op in conn.execute(
        "SELECT id, from_service, to_service, model_name, operation"
        " FROM governance_authority_delegation WHERE revoked_at IS NULL AND valid_until > ?"
        " ORDER BY id",
        (now,),
    ).fetchall():
        unknown = [s for s in (grantor, grantee) if s not in known]
        if unknown:
            rows.append(
                (
                    "error",
                    f"live delegation {d_id} names unknown service(s): {', '.join(unknown)}",
                    {
                        "check": "delegation_unknown_service",
                        "delegation_id": d_id,
                        "from_service": grantor,
                        "to_service": grantee,
                    },
                )
            )
        if (
            grantor in known
            and not conn.execute(
                "SELECT 1 FROM governance_authority_matrix"
                " WHERE service = ? AND model_name = ? AND operation = ?",
                (grantor, model, op),
            ).fetchone()
        ):
            rows.append(
                (
                    "error",
                    f"live delegation {d_id} lends {op} on {model}, which {grantor} does not hold",
                    {
                        "check": "delegation_without_grant",
                        "delegation_id": d_id,
                        "from_service": grantor,
                        "model": model,
                        "operation": op,
                    },
                )
            )
    for table, model, exists in conn.execute(
        "SELECT p.table_name, p.model_name, EXISTS (SELECT 1 FROM sqlite_master s"
        " WHERE s.type = 'table' AND s.name = p.table_name)"
        " FROM governance_authority_protected_table p ORDER BY 1"
    ).fetchall():
        if not exists:
            rows.append(
                (
                    "warning",
                    f"protected table {table} (model {model}) no longer exists",
                    {"check": "protected_table_missing", "table": table, "model": model},
                )
            )
        elif not conn.execute(
            "SELECT 1 FROM governance_authority_matrix WHERE model_name = ?", (model,)
        ).fetchone():
            rows.append(
                (
                    "error",
                    f"protected table {table}: model {model} is absent from the authority "
                    "matrix, so every write to it is refused",
                    {"check": "protected_model_absent", "table": table, "model": model},
                )
            )
    return rows


def health_check(conn: SqliteConnection) -> list[Row]:
    """EXTRA_CHECKS entry: the authority rows as (component, severity, problem, detail)."""
    return [("authority", *row) for row in health_rows(conn)]


def validate_matrix(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    return health_rows(conn)
