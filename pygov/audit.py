"""``gov.audit``: the audit trail.

Explicit logging (``log_operation`` and friends), automatic auditing of tables by triggers
(``enable``/``disable``), an object's history and past state, and the seals that make the trail
tamper-evident. The plans below are shared by the sync (:class:`Audit`) and async
(:class:`AsyncAudit`) namespaces.

PostgreSQL (sql/20_audit.sql): one statement-level trigger per operation reads the transition
tables, so a statement touching 100,000 rows writes its audit rows in one INSERT ... SELECT.
The trail is partitioned by month (UTC) with a default partition; UPDATE, DELETE and TRUNCATE
of it fail for every role (GV001); application roles write it only through the functions and
triggers. Seals cover ranges of finished transactions, so sealing never waits for a writer.

SQLite differs where SQLite has no equivalent:

* no TRUNCATE: ``DELETE FROM t`` fires the row triggers, one DELETE record per row;
* no roles: ``db_role`` is NULL, anyone with the file can write the trail (append-only is
  still enforced by triggers), and ``drop_before`` needs ``context(superuser=True)``;
* triggers are generated per table with the columns it has when ``enable`` runs: enable again
  after adding a column; they read the context through functions pygov registers on its own
  connections, so other connections cannot write audited tables (the write fails, it is never
  silently unaudited);
* no partitions: ``drop_before`` deletes the rows of whole months; no ``transaction_id``
  (one writer at a time, so seals cover id ranges).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    int_arg,
    json_arg,
    scalar,
    sync_method,
    text_arg,
    to_datetime,
)
from pygov.errors import ValidationError
from pygov.sqlite_ops import audit as sqlite_impl

MAX_NAME = 255
MAX_OPERATION = 64
MAX_OBJECT_ID = 1000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the audit trail."""

    id: int
    occurred_at: datetime
    #: The writing transaction (PostgreSQL only; None on SQLite).
    transaction_id: int | None
    model_name: str | None
    object_id: str | None
    operation: str
    source_service: str | None
    user_name: str | None
    #: The database role that wrote it (PostgreSQL only: SQLite has no roles).
    db_role: str | None
    ip_address: str | None
    user_agent: str | None
    request_id: str | None
    before_data: Any
    after_data: Any
    changed_fields: list[str] | None
    extra: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class AuditedTable:
    """A table audited by triggers (a row of ``governance.audited_tables``)."""

    table_name: str
    model_name: str
    key_columns: list[str]
    ignore_columns: list[str]
    enabled_at: datetime
    enabled_by: str | None
    #: False when one of the audit triggers was dropped or disabled behind pygov's back.
    triggers_installed: bool


@dataclass(frozen=True, slots=True)
class Seal:
    """One seal written by ``seal()``: the rows of one month since the previous seal."""

    id: int
    month: datetime
    row_count: int
    first_id: int | None
    last_id: int | None
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What ``verify()`` found. ``ok`` is False at the first seal that no longer matches;
    ``bad_row_id`` names the first row inserted into, deleted from or modified in it."""

    ok: bool
    seals_checked: int
    rows_checked: int
    bad_seal_id: int | None = None
    bad_row_id: int | None = None
    problem: str | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class DroppedMonth:
    """A month removed by ``drop_before``: its partition and how many rows it held."""

    partition: str
    month: datetime
    rows: int


def object_key(*parts: Any) -> str:
    """The text form of an object id: the value itself, or for a composite key its parts
    joined by ``:`` with ``%`` and ``:`` escaped (as ``governance.key_part`` does)."""
    if len(parts) == 1:
        return str(parts[0])
    return ":".join(str(p).replace("%", "%25").replace(":", "%3A") for p in parts)


def _object_id(value: Any, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise ValidationError("object_id is required", {"field": "object_id"})
        return None
    if isinstance(value, bool):
        raise ValidationError("object_id must be text, a number or a tuple", {"field": "object_id"})
    if isinstance(value, tuple | list):
        if not value:
            raise ValidationError("a composite object_id needs parts", {"field": "object_id"})
        value = object_key(*value)
    elif isinstance(value, int):
        value = str(value)
    return text_arg("object_id", value, max_length=MAX_OBJECT_ID)


def _extra(value: Any) -> str | None:
    if value is not None and not isinstance(value, dict):
        raise ValidationError(
            "extra must be a dict", {"field": "extra", "type": type(value).__name__}
        )
    return json_arg("extra", value)


def _new_id(rows: list[Row]) -> int:
    return int(rows[0][0])


def _table_arg(table: Any) -> str:
    """A table as SQL writes it (``schema.table``, ``"weird; name"``), or a (schema, table)
    tuple, which is quoted here. The database resolves it; it is never spliced into SQL."""
    if isinstance(table, tuple | list):
        if len(table) != 2 or not all(isinstance(p, str) and p for p in table):
            raise ValidationError("table must be (schema, name)", {"table": repr(table)})
        return ".".join('"' + p.replace('"', '""') + '"' for p in table)
    name = text_arg("table", table, max_length=1000)
    assert name is not None
    return name


def _names(field: str, values: Any) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset):
        raise ValidationError(f"{field} must be a list of column names", {"field": field})
    out = []
    for v in values:
        name = text_arg(field, v, max_length=63)
        assert name is not None
        out.append(name)
    return out


def _moment(field: str, value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValidationError(
        f"{field} must be a datetime or a date", {"field": field, "type": type(value).__name__}
    )


def _record(row: Row) -> AuditRecord:
    occurred_at = to_datetime(row[1])
    assert occurred_at is not None
    return AuditRecord(
        id=int(row[0]),
        occurred_at=occurred_at,
        transaction_id=None if row[2] is None else int(row[2]),
        model_name=row[3],
        object_id=row[4],
        operation=row[5],
        source_service=row[6],
        user_name=row[7],
        db_role=row[8],
        ip_address=row[9],
        user_agent=row[10],
        request_id=row[11],
        before_data=row[12],
        after_data=row[13],
        changed_fields=None if row[14] is None else list(row[14]),
        extra=row[15],
    )


def _records(rows: list[Row]) -> list[AuditRecord]:
    return [_record(r) for r in rows]


def _audited(row: Row) -> AuditedTable:
    enabled_at = to_datetime(row[4])
    assert enabled_at is not None
    return AuditedTable(
        row[0], row[1], list(row[2]), list(row[3]), enabled_at, row[5], bool(row[6])
    )


def _audited_one(rows: list[Row]) -> AuditedTable:
    return _audited(rows[0])


def _audited_all(rows: list[Row]) -> list[AuditedTable]:
    return [_audited(r) for r in rows]


def _seals(rows: list[Row]) -> list[Seal]:
    out = []
    for r in rows:
        month = to_datetime(r[1])
        assert month is not None
        out.append(Seal(int(r[0]), month, int(r[2]), r[3], r[4], r[5]))
    return out


def _verify(rows: list[Row]) -> VerifyResult:
    r = rows[0]
    return VerifyResult(bool(r[0]), int(r[1]), int(r[2]), r[3], r[4], r[5])


def _dropped(rows: list[Row]) -> list[DroppedMonth]:
    out = []
    for r in rows:
        month = to_datetime(r[1])
        assert month is not None
        out.append(DroppedMonth(r[0], month, int(r[2])))
    return out


LOG_OPERATION = Statement(
    "log_operation",
    "SELECT governance.log_operation($1::text, $2::text, $3::text, $4::text, $5::text::jsonb, "
    "$6::text::jsonb, $7::text::jsonb, $8::text::jsonb)",
    sqlite_impl.log_operation,
)
LOG_AUTHORITY_VIOLATION = Statement(
    "log_authority_violation",
    "SELECT governance.log_authority_violation($1::text, $2::text, $3::text, $4::text, "
    "$5::text::jsonb, $6::text::jsonb)",
    sqlite_impl.log_authority_violation,
)
LOG_ADMIN_ACCESS = Statement(
    "log_admin_access",
    "SELECT governance.log_admin_access($1::text, $2::text, $3::text::jsonb, $4::text::jsonb)",
    sqlite_impl.log_admin_access,
)
LOG_GATEWAY_OPERATION = Statement(
    "log_gateway_operation",
    "SELECT governance.log_gateway_operation($1::text, $2::text, $3::text, $4::text, "
    "$5::text::jsonb, $6::text::jsonb)",
    sqlite_impl.log_gateway_operation,
)

ENABLE = Statement(
    "enable_audit",
    "SELECT * FROM governance.enable_audit($1::text::regclass, $2::text[], $3::text, "
    "$4::text[], $5::text::jsonb)",
    sqlite_impl.enable,
)
DISABLE = Statement(
    "disable_audit",
    "SELECT governance.disable_audit($1::text::regclass, $2::text::jsonb)",
    sqlite_impl.disable,
)
AUDITED_TABLES = Statement(
    "audited_tables",
    "SELECT * FROM governance.audited_tables ORDER BY table_name",
    sqlite_impl.audited_tables,
)
HISTORY = Statement(
    "object_history",
    "SELECT id, occurred_at, transaction_id, model_name, object_id, operation, source_service, "
    "user_name, db_role, host(ip_address), user_agent, request_id, before_data, after_data, "
    "changed_fields, extra FROM governance.object_history($1::text, $2::text, $3::int, "
    "$4::bigint)",
    sqlite_impl.history,
)
OBJECT_AT = Statement(
    "object_at",
    "SELECT governance.object_at($1::text, $2::text, $3::timestamptz)",
    sqlite_impl.object_at,
)
SEAL = Statement(
    "seal_audit",
    "SELECT seal_id, month, row_count, first_id, last_id, hash "
    "FROM governance.seal_audit($1::text::jsonb)",
    sqlite_impl.seal,
)
VERIFY = Statement("verify_audit", "SELECT * FROM governance.verify_audit()", sqlite_impl.verify)
DROP_BEFORE = Statement(
    "drop_audit_before",
    "SELECT * FROM governance.drop_audit_before($1::timestamptz, $2::text::jsonb)",
    sqlite_impl.drop_before,
)


class AuditPlans:
    """Argument building and result mapping for gov.audit, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def log_operation(
        self,
        model_name: str,
        object_id: Any,
        operation: str,
        *,
        source_service: str | None = None,
        before_data: Any = None,
        after_data: Any = None,
        extra: dict[str, Any] | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Record an operation on an object; returns the audit row's id.

        ``object_id`` may be text, an int, or a tuple for a composite key. ``changed_fields`` is
        filled in when ``before_data`` and ``after_data`` are both dicts. Without
        ``source_service`` the context's service is recorded.
        """
        args = (
            text_arg("model_name", model_name, max_length=MAX_NAME),
            _object_id(object_id),
            text_arg("operation", operation, max_length=MAX_OPERATION),
            text_arg("source_service", source_service, max_length=MAX_NAME, required=False),
            json_arg("before_data", before_data),
            json_arg("after_data", after_data),
            _extra(extra),
            context_arg(),
        )
        return Call(LOG_OPERATION, args, _new_id, conn, "audit.log_operation")

    def log_authority_violation(
        self,
        service: str,
        model_name: str | None,
        operation: str,
        reason: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Record that ``service`` attempted ``operation`` on ``model_name`` without authority
        (operation ``AUTHORITY_VIOLATION``; the attempt and the reason are in ``extra``)."""
        args = (
            text_arg("service", service, max_length=MAX_NAME),
            text_arg("model_name", model_name, max_length=MAX_NAME, required=False),
            text_arg("operation", operation, max_length=MAX_OPERATION),
            text_arg("reason", reason, max_length=10_000, required=False),
            _extra(extra),
            context_arg(),
        )
        return Call(LOG_AUTHORITY_VIOLATION, args, _new_id, conn, "audit.log_authority_violation")

    def log_admin_access(
        self,
        action: str,
        target: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Record an administrator's action (operation ``ADMIN_ACCESS``; target as model)."""
        args = (
            text_arg("action", action, max_length=MAX_NAME),
            text_arg("target", target, max_length=MAX_NAME, required=False),
            _extra(extra),
            context_arg(),
        )
        return Call(LOG_ADMIN_ACCESS, args, _new_id, conn, "audit.log_admin_access")

    def log_gateway_operation(
        self,
        gateway: str,
        model_name: str,
        object_id: Any,
        operation: str,
        *,
        extra: dict[str, Any] | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Record an operation made through a gateway service (its source_service)."""
        args = (
            text_arg("gateway", gateway, max_length=MAX_NAME),
            text_arg("model_name", model_name, max_length=MAX_NAME),
            _object_id(object_id),
            text_arg("operation", operation, max_length=MAX_OPERATION),
            _extra(extra),
            context_arg(),
        )
        return Call(LOG_GATEWAY_OPERATION, args, _new_id, conn, "audit.log_gateway_operation")

    def enable(
        self,
        table: Any,
        *,
        ignore_columns: Any = (),
        model_name: str | None = None,
        key_columns: Any = None,
        conn: Any = None,
    ) -> Call[AuditedTable]:
        """Audit every INSERT, UPDATE, DELETE (and TRUNCATE) of ``table`` by triggers.

        ``table`` is written as in SQL (``"accounting.journal_entry"``, ``'"weird; name"'``) or
        given as a ``(schema, table)`` tuple. ``model_name`` defaults to ``schema.table``;
        ``key_columns`` to the primary key. Changes to ``ignore_columns`` alone are not
        recorded. Enabling again is a no-op (or updates the settings).
        """
        args = (
            _table_arg(table),
            _names("ignore_columns", ignore_columns) or [],
            text_arg("model_name", model_name, max_length=MAX_NAME, required=False),
            _names("key_columns", key_columns),
            context_arg(),
        )
        return Call(ENABLE, args, _audited_one, conn, "audit.enable")

    def disable(self, table: Any, *, conn: Any = None) -> Call[bool]:
        """Remove the audit triggers of ``table``; False when it was not audited."""
        return Call(DISABLE, (_table_arg(table), context_arg()), scalar, conn, "audit.disable")

    def audited_tables(self, *, conn: Any = None) -> Call[list[AuditedTable]]:
        """The tables audited by triggers."""
        return Call(AUDITED_TABLES, (), _audited_all, conn, "audit.audited_tables")

    def history(
        self,
        model_name: str,
        object_id: Any,
        *,
        limit: int = 50,
        before_id: int | None = None,
        conn: Any = None,
    ) -> Call[list[AuditRecord]]:
        """The object's audit records, newest first. For the next page pass the last
        record's id as ``before_id``."""
        size = int_arg("limit", limit, minimum=1)
        if size > 10000:
            raise ValidationError("limit must be at most 10000", {"field": "limit"})
        args = (
            text_arg("model_name", model_name, max_length=MAX_NAME),
            _object_id(object_id, required=True),
            size,
            None if before_id is None else int_arg("before_id", before_id),
        )
        return Call(HISTORY, args, _records, conn, "audit.history")

    def object_at(
        self, model_name: str, object_id: Any, at: datetime, *, conn: Any = None
    ) -> Call[Any]:
        """The object's state at ``at``, rebuilt from the trail; None if it did not exist."""
        moment = _moment("at", at)
        args = (
            text_arg("model_name", model_name, max_length=MAX_NAME),
            _object_id(object_id, required=True),
            moment,
        )
        return Call(OBJECT_AT, args, scalar, conn, "audit.object_at")

    def seal(self, *, conn: Any = None) -> Call[list[Seal]]:
        """Seal every audit row written since the last seal (one seal per month)."""
        return Call(SEAL, (context_arg(),), _seals, conn, "audit.seal")

    def verify(self, *, conn: Any = None) -> Call[VerifyResult]:
        """Recompute the chain of seals; report the first seal and row that no longer match."""
        return Call(VERIFY, (), _verify, conn, "audit.verify")

    def drop_before(self, month: datetime | date, *, conn: Any = None) -> Call[list[DroppedMonth]]:
        """Retention (governance_admin only): drop every whole month before ``month``'s."""
        moment = _moment("month", month)
        return Call(DROP_BEFORE, (moment, context_arg()), _dropped, conn, "audit.drop_before")


class Audit(Namespace):
    """``gov.audit``: the audit trail (sync)."""

    _plans_class = AuditPlans

    log_operation = sync_method(AuditPlans.log_operation)
    log_authority_violation = sync_method(AuditPlans.log_authority_violation)
    log_admin_access = sync_method(AuditPlans.log_admin_access)
    log_gateway_operation = sync_method(AuditPlans.log_gateway_operation)
    enable = sync_method(AuditPlans.enable)
    disable = sync_method(AuditPlans.disable)
    audited_tables = sync_method(AuditPlans.audited_tables)
    history = sync_method(AuditPlans.history)
    object_at = sync_method(AuditPlans.object_at)
    seal = sync_method(AuditPlans.seal)
    verify = sync_method(AuditPlans.verify)
    drop_before = sync_method(AuditPlans.drop_before)


class AsyncAudit(Namespace):
    """``gov.audit`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = AuditPlans

    log_operation = async_method(AuditPlans.log_operation)
    log_authority_violation = async_method(AuditPlans.log_authority_violation)
    log_admin_access = async_method(AuditPlans.log_admin_access)
    log_gateway_operation = async_method(AuditPlans.log_gateway_operation)
    enable = async_method(AuditPlans.enable)
    disable = async_method(AuditPlans.disable)
    audited_tables = async_method(AuditPlans.audited_tables)
    history = async_method(AuditPlans.history)
    object_at = async_method(AuditPlans.object_at)
    seal = async_method(AuditPlans.seal)
    verify = async_method(AuditPlans.verify)
    drop_before = async_method(AuditPlans.drop_before)
