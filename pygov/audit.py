"""``gov.audit``: the audit trail.

Explicit logging (``log_operation`` and friends), automatic auditing of tables by triggers
(``enable``/``disable``), an object's history and past state, and the seals that make the trail
tamper-evident. The plans below are shared by the sync (:class:`Audit`) and async
(:class:`AsyncAudit`) namespaces.
"""

from __future__ import annotations

from typing import Any

from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    json_arg,
    sync_method,
    text_arg,
)
from pygov.errors import ValidationError
from pygov.sqlite_ops import audit as sqlite_impl

MAX_NAME = 255
MAX_OPERATION = 64
MAX_OBJECT_ID = 1000


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


class Audit(Namespace):
    """``gov.audit``: the audit trail (sync)."""

    _plans_class = AuditPlans

    log_operation = sync_method(AuditPlans.log_operation)
    log_authority_violation = sync_method(AuditPlans.log_authority_violation)
    log_admin_access = sync_method(AuditPlans.log_admin_access)
    log_gateway_operation = sync_method(AuditPlans.log_gateway_operation)


class AsyncAudit(Namespace):
    """``gov.audit`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = AuditPlans

    log_operation = async_method(AuditPlans.log_operation)
    log_authority_violation = async_method(AuditPlans.log_authority_violation)
    log_admin_access = async_method(AuditPlans.log_admin_access)
    log_gateway_operation = async_method(AuditPlans.log_gateway_operation)
