"""``gov.authority``: the authority matrix, time-bounded delegation and protected tables.

A service may perform an operation on a model when the matrix grants it, or when a live
delegation lends it another service's grant. ``validate`` asks from Python; ``protect`` makes the
database itself refuse writes to a table, whatever client makes them. Every refusal is recorded
in the audit trail, and that record survives the caller's rollback: PostgreSQL writes it through
a dblink loopback connection (its own transaction); when that is unavailable the GV001 says
``violation_recorded=False`` and this wrapper records it in a fresh transaction; SQLite records
it right after the failed transaction ends.

The plans are shared by the sync (:class:`Authority`) and async (:class:`AsyncAuthority`)
namespaces.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from pygov import _sqlite
from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    int_arg,
    json_arg,
    seconds_arg,
    sync_method,
    text_arg,
    to_datetime,
    to_json_value,
    utcnow,
)
from pygov.context import current_context
from pygov.errors import AuthorityViolationError, GovernanceError, ValidationError
from pygov.sqlite_ops import authority as sqlite_impl
from pygov.sqlite_ops import health as sqlite_health

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("pygov.authority")

MAX_NAME = 255
MAX_OPERATION = 64
MAX_REASON = 1000
#: The longest delegation allowed (the database enforces it too, by a CHECK).
MAX_DELEGATION = timedelta(hours=24)
#: Operations the table guard asks for (INSERT, UPDATE, DELETE/TRUNCATE).
WRITE_OPERATIONS = ("CREATE", "UPDATE", "DELETE")


@dataclass(frozen=True, slots=True)
class Delegation:
    """A temporary loan of ``from_service``'s authority to ``to_service``."""

    id: int
    from_service: str
    to_service: str
    model_name: str
    operation: str
    reason: str
    valid_from: datetime
    valid_until: datetime
    created_by: str | None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_valid(self, at: datetime | None = None) -> bool:
        """True while the delegation counts: not revoked, and ``valid_from <= at < valid_until``
        (``at`` defaults to now). This reads the object as it was fetched; the database is the
        authority (``check_delegation`` asks it)."""
        moment = at or utcnow()
        return not self.is_revoked and self.valid_from <= moment < self.valid_until

    @property
    def remaining(self) -> timedelta:
        """Time left before expiry (zero once expired or revoked)."""
        if self.is_revoked:
            return timedelta(0)
        return max(self.valid_until - utcnow(), timedelta(0))


@dataclass(frozen=True, slots=True)
class Grant:
    """Why ``validate`` let the operation through: the matrix, or a live delegation."""

    service: str
    model_name: str
    operation: str
    via: str  # "matrix" or "delegation"
    delegation_id: int | None = None


@dataclass(frozen=True, slots=True)
class MatrixLoad:
    """What ``load_matrix`` left in place."""

    services: int
    models: int
    grants: int
    critical: int


@dataclass(frozen=True, slots=True)
class AuthorityMatrix:
    """The matrix as a document: ``grants[service][model] = [operations]`` and the critical
    models. ``load_matrix(m.grants, critical=m.critical)`` reproduces it."""

    grants: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    critical: list[str] = field(default_factory=list)

    def allows(self, service: str, model_name: str, operation: str) -> bool:
        """Whether the matrix alone grants it (delegations are not part of the document)."""
        return operation in self.grants.get(service, {}).get(model_name, [])


# --- result mapping -----------------------------------------------------------------------


def _delegation(row: Row) -> Delegation:
    valid_from, valid_until = to_datetime(row[6]), to_datetime(row[7])
    assert valid_from is not None and valid_until is not None
    return Delegation(
        id=int(row[0]),
        from_service=row[1],
        to_service=row[2],
        model_name=row[3],
        operation=row[4],
        reason=row[5],
        valid_from=valid_from,
        valid_until=valid_until,
        created_by=row[8],
        revoked_at=to_datetime(row[9]),
        revoked_by=row[10],
        revoke_reason=row[11],
    )


def _one_delegation(rows: list[Row]) -> Delegation:
    return _delegation(rows[0])


def _optional_delegation(rows: list[Row]) -> Delegation | None:
    return _delegation(rows[0]) if rows else None


def _delegations(rows: list[Row]) -> list[Delegation]:
    return [_delegation(r) for r in rows]


def _grant(service: str, model: str, operation: str) -> Callable[[list[Row]], Grant]:
    def mapping(rows: list[Row]) -> Grant:
        via, delegation_id = rows[0][0], rows[0][1]
        return Grant(service, model, operation, via, int(delegation_id) if delegation_id else None)

    return mapping


def _load(rows: list[Row]) -> MatrixLoad:
    return MatrixLoad(*(int(v) for v in rows[0]))


def _matrix(rows: list[Row]) -> AuthorityMatrix:
    doc = to_json_value(rows[0][0]) or {}
    return AuthorityMatrix(dict(doc.get("grants", {})), list(doc.get("critical", [])))


def _scalar(rows: list[Row]) -> Any:
    return rows[0][0]


def _bool(rows: list[Row]) -> bool:
    return bool(rows[0][0])


def _nothing(rows: list[Row]) -> None:
    return None


def _problems(rows: list[Row]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r[0], r[1], dict(to_json_value(r[2]) or {})) for r in rows]


# --- statements ---------------------------------------------------------------------------

_DELEGATION = (
    "SELECT d.id, d.from_service, d.to_service, d.model_name, d.operation, d.reason, "
    "d.valid_from, d.valid_until, d.created_by, d.revoked_at, d.revoked_by, d.revoke_reason "
)

LOAD_MATRIX = Statement(
    "load_authority_matrix",
    "SELECT * FROM governance.load_authority_matrix($1::text::jsonb, $2::text::jsonb, "
    "$3::text::jsonb)",
    sqlite_impl.load_matrix,
)
GET_MATRIX = Statement(
    "get_authority_matrix", "SELECT governance.get_authority_matrix()", sqlite_impl.get_matrix
)
VALIDATE = Statement(
    "validate_authority",
    "SELECT * FROM governance.validate_authority($1::text, $2::text, $3::text, $4::text::jsonb)",
    sqlite_impl.validate,
)
HAS_AUTHORITY = Statement(
    "has_authority",
    "SELECT governance.has_authority($1::text, $2::text, $3::text)",
    sqlite_impl.has_authority,
)
DELEGATE = Statement(
    "delegate_authority",
    _DELEGATION + "FROM governance.delegate_authority($1::text, $2::text, $3::text, $4::text, "
    "$5::float8 * interval '1 second', $6::text, $7::text::jsonb) d",
    sqlite_impl.delegate,
)
REVOKE = Statement(
    "revoke_delegation",
    _DELEGATION + "FROM governance.revoke_delegation($1::bigint, $2::text, $3::text::jsonb) d",
    sqlite_impl.revoke,
)
CHECK_DELEGATION = Statement(
    "check_delegation",
    _DELEGATION + "FROM governance.check_delegation($1::text, $2::text, $3::text) d",
    sqlite_impl.check_delegation,
)
LIST_DELEGATIONS = Statement(
    "list_delegations",
    _DELEGATION + "FROM governance.list_delegations($1::boolean) d",
    sqlite_impl.list_delegations,
)
PROTECT = Statement(
    "protect_table",
    "SELECT governance.protect_table($1::text::regclass, $2::text, $3::text::jsonb)",
    sqlite_impl.protect,
)
UNPROTECT = Statement(
    "unprotect_table",
    # A table that was dropped is named by its old OID (health check detail "oid").
    "SELECT governance.unprotect_table(CASE WHEN $1::text ~ '^[0-9]+$' THEN $1::text::oid::regclass"
    " ELSE $1::text::regclass END, $2::text::jsonb)",
    sqlite_impl.unprotect,
)
OVERRIDE = Statement(
    "authority_override",
    "SELECT governance.authority_override($1::text, $2::text::jsonb)",
    sqlite_impl.override,
)
VALIDATE_MATRIX = Statement(
    "validate_authority_matrix",
    "SELECT * FROM governance.validate_authority_matrix()",
    sqlite_impl.validate_matrix,
)


# --- argument building --------------------------------------------------------------------


def _name(field: str, value: Any, max_length: int = MAX_NAME) -> str:
    checked = text_arg(field, value, max_length=max_length)
    assert checked is not None
    return checked


def _triple(service: Any, model_name: Any, operation: Any) -> tuple[str, str, str]:
    return (
        _name("service", service),
        _name("model_name", model_name),
        _name("operation", operation, MAX_OPERATION),
    )


def _names(field: str, values: Any, max_length: int = MAX_NAME) -> list[str]:
    """A list of names (any iterable but a string), sorted and deduplicated."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(
            f"{field} must be a list of names", {"field": field, "type": type(values).__name__}
        )
    return sorted({_name(field, v, max_length) for v in values})


def matrix_arg(matrix: Any) -> dict[str, dict[str, list[str]]]:
    """Check ``{service: {model: [operations]}}`` and normalise it (sorted, deduplicated)."""
    if not isinstance(matrix, Mapping):
        raise ValidationError(
            "the matrix must be a mapping {service: {model: [operations]}}",
            {"field": "matrix", "type": type(matrix).__name__},
        )
    result: dict[str, dict[str, list[str]]] = {}
    for service, models in matrix.items():
        name = _name("service", service)
        if not isinstance(models, Mapping):
            raise ValidationError(
                "the matrix must map each service to {model: [operations]}",
                {"field": "matrix", "service": name, "type": type(models).__name__},
            )
        result[name] = {
            _name("model_name", m): _names("operations", ops, MAX_OPERATION)
            for m, ops in models.items()
        }
    return result


def _duration(value: Any) -> float:
    seconds = seconds_arg("duration", value)
    if seconds is None:
        raise ValidationError("duration is required", {"field": "duration"})
    if seconds > MAX_DELEGATION.total_seconds():
        raise ValidationError(
            "a delegation lasts more than 0 and at most 24 hours",
            {"field": "duration", "seconds": seconds},
        )
    return seconds


class AuthorityPlans:
    """Argument building and result mapping for gov.authority, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def load_matrix(
        self,
        matrix: Mapping[str, Mapping[str, Iterable[str]]],
        *,
        critical: Iterable[str] = (),
        conn: Any = None,
    ) -> Call[MatrixLoad]:
        """Replace the whole matrix, in one transaction (governance_admin only).

        ``matrix`` maps each service to ``{model: [operations]}``; a service mapped to ``{}``
        is known but holds nothing (it can still receive delegations). ``critical`` lists the
        models that can never be delegated. Grants that stay keep their delegations; grants
        that go revoke the delegations made from them. Operations must be known
        (``governance.authority_operation``: CREATE, UPDATE, DELETE unless you add more).
        """
        args = (
            json_arg("matrix", matrix_arg(matrix)),
            json_arg("critical", _names("critical", critical)),
            context_arg(),
        )
        return Call(LOAD_MATRIX, args, _load, conn, "authority.load_matrix")

    def matrix(self, *, conn: Any = None) -> Call[AuthorityMatrix]:
        """The current matrix as a document (see :class:`AuthorityMatrix`)."""
        return Call(GET_MATRIX, (), _matrix, conn, "authority.matrix")

    def validate(
        self, service: str, model_name: str, operation: str, *, conn: Any = None
    ) -> Call[Grant]:
        """Return how ``service`` may do ``operation`` on ``model_name`` (matrix or live
        delegation); otherwise record the violation and raise AuthorityViolationError, whose
        context has ``service``, ``model`` and ``operation``."""
        s, m, o = _triple(service, model_name, operation)
        return Call(VALIDATE, (s, m, o, context_arg()), _grant(s, m, o), conn, "authority.validate")

    def has_authority(
        self, service: str, model_name: str, operation: str, *, conn: Any = None
    ) -> Call[bool]:
        """Whether ``validate`` would pass, without recording anything."""
        return Call(
            HAS_AUTHORITY,
            _triple(service, model_name, operation),
            _bool,
            conn,
            "authority.has_authority",
        )

    def delegate(
        self,
        from_service: str,
        to_service: str,
        model_name: str,
        operation: str,
        duration: timedelta | float,
        reason: str,
        *,
        conn: Any = None,
    ) -> Call[Delegation]:
        """Lend ``from_service``'s authority to ``to_service`` for ``duration`` (positive, at
        most 24 hours; a timedelta or seconds). Only governance_admin members may delegate
        (``superuser=True`` in the context on SQLite); ``from_service`` must hold the authority
        by the matrix; critical models cannot be delegated. Audited."""
        args = (
            _name("from_service", from_service),
            _name("to_service", to_service),
            _name("model_name", model_name),
            _name("operation", operation, MAX_OPERATION),
            _duration(duration),
            _name("reason", reason, MAX_REASON),
            context_arg(),
        )
        return Call(DELEGATE, args, _one_delegation, conn, "authority.delegate")

    def revoke(self, delegation_id: int, reason: str, *, conn: Any = None) -> Call[Delegation]:
        """End a delegation now (governance_admin); revoking twice changes nothing. Audited."""
        args = (
            int_arg("delegation_id", delegation_id, minimum=1),
            _name("reason", reason, MAX_REASON),
            context_arg(),
        )
        return Call(REVOKE, args, _one_delegation, conn, "authority.revoke")

    def check_delegation(
        self, service: str, model_name: str, operation: str, *, conn: Any = None
    ) -> Call[Delegation | None]:
        """The live delegation that lets ``service`` do it, or None."""
        return Call(
            CHECK_DELEGATION,
            _triple(service, model_name, operation),
            _optional_delegation,
            conn,
            "authority.check_delegation",
        )

    def delegations(self, *, active: bool = False, conn: Any = None) -> Call[list[Delegation]]:
        """Every delegation, newest first (``active=True``: only those that count now)."""
        return Call(LIST_DELEGATIONS, (bool(active),), _delegations, conn, "authority.delegations")

    def protect(self, table: str, model_name: str | None = None, *, conn: Any = None) -> Call[str]:
        """Guard the table: INSERT, UPDATE, DELETE (and TRUNCATE) are refused unless the
        transaction's governance service holds the authority on ``model_name`` (default
        ``schema.table``). Admin only; returns the model name. Protecting again is a no-op, or
        changes the model name."""
        args = (
            _name("table", table, 1000),
            text_arg("model_name", model_name, max_length=MAX_NAME, required=False),
            context_arg(),
        )
        return Call(PROTECT, args, _scalar, conn, "authority.protect")

    def unprotect(self, table: str, *, conn: Any = None) -> Call[bool]:
        """Remove the guard (admin); False when the table was not protected. A protected table
        that was dropped is unregistered by its OID (the health check reports it)."""
        return Call(
            UNPROTECT,
            (_name("table", table, 1000), context_arg()),
            _bool,
            conn,
            "authority.unprotect",
        )

    def override(self, reason: str, *, conn: Any) -> Call[None]:
        """Emergency override for the rest of the transaction ``conn`` (governance_admin only):
        protected tables accept writes without the authority. The override and every write it
        lets through are audited."""
        if conn is None:
            raise ValidationError(
                "override applies to a transaction: pass conn= from gov.transaction()",
                {"field": "conn"},
            )
        args = (_name("reason", reason, MAX_REASON), context_arg())
        return Call(OVERRIDE, args, _nothing, conn, "authority.override")

    def problems(self, *, conn: Any = None) -> Call[list[tuple[str, str, dict[str, Any]]]]:
        """What is wrong with the matrix: (severity, problem, detail) rows, as in gov.health()."""
        return Call(VALIDATE_MATRIX, (), _problems, conn, "authority.problems")


# --- recording violations the database could not record itself -----------------------------


def _fallback_args(
    exc: AuthorityViolationError,
) -> tuple[str, str | None, str, str | None, dict[str, Any]]:
    ctx = exc.context
    extra = {
        k: v
        for k, v in ctx.items()
        if k
        not in {"service", "model", "operation", "reason", "violation_recorded", "violation_id"}
    }
    extra["recorded_by"] = "pygov wrapper (the database could not record it autonomously)"
    return (
        str(ctx.get("service") or "(none)"),
        ctx.get("model"),
        str(ctx.get("operation") or "UNKNOWN")[:MAX_OPERATION],
        ctx.get("reason"),
        extra,
    )


def _needs_recording(exc: AuthorityViolationError) -> bool:
    return exc.context.get("violation_recorded") is False


def _recorded(exc: AuthorityViolationError, violation_id: int) -> None:
    exc.context["violation_recorded"] = True
    exc.context["violation_id"] = violation_id


def _record_failed(exc: AuthorityViolationError, error: GovernanceError) -> None:
    exc.context["violation_record_error"] = str(error)
    logger.error("pygov: authority violation could not be recorded: %s (%s)", exc, error)


def _recording_sync(
    plan: Callable[Concatenate[Any, P], Call[T]],
) -> Callable[Concatenate[Namespace, P], T]:
    """Like ``sync_method``, and a GV001 the database could not record is recorded here."""

    @functools.wraps(plan)
    def method(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result: T = self._gov._run(plan(self._plans, *args, **kwargs))
        except AuthorityViolationError as exc:
            record_violation(self._gov, exc)
            raise
        return result

    return method


def _recording_async(
    plan: Callable[Concatenate[Any, P], Call[T]],
) -> Callable[Concatenate[Namespace, P], Any]:
    """Like ``async_method``, and a GV001 the database could not record is recorded here."""

    @functools.wraps(plan)
    async def method(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            result: T = await self._gov._run(plan(self._plans, *args, **kwargs))
        except AuthorityViolationError as exc:
            await record_violation_async(self._gov, exc)
            raise
        return result

    return method


def record_violation(gov: Any, exc: AuthorityViolationError) -> None:
    """Record ``exc`` in a fresh transaction when the database could not (dblink missing or
    failing); called by the wrapper methods and by ``gov.transaction()``. Never raises."""
    if gov.backend == "sqlite" and "reason" not in exc.context:
        # A SQLite trigger's message is a literal: fill in what it could not say (the queued
        # violation, written after the rollback, has it all).
        service = exc.context["service"] = current_context().service
        exc.context["reason"] = (
            "no matrix entry and no live delegation"
            if service
            else "no governance service is set for the transaction"
        )
    if not _needs_recording(exc):
        return
    service, model, operation, reason, extra = _fallback_args(exc)
    try:
        _recorded(
            exc, gov.audit.log_authority_violation(service, model, operation, reason, extra=extra)
        )
    except GovernanceError as error:
        _record_failed(exc, error)


async def record_violation_async(gov: Any, exc: AuthorityViolationError) -> None:
    """:func:`record_violation` for AsyncGovernance."""
    if not _needs_recording(exc):
        return
    service, model, operation, reason, extra = _fallback_args(exc)
    try:
        _recorded(
            exc,
            await gov.audit.log_authority_violation(service, model, operation, reason, extra=extra),
        )
    except GovernanceError as error:
        _record_failed(exc, error)


class Authority(Namespace):
    """``gov.authority``: the authority matrix and delegations (sync)."""

    _plans_class = AuthorityPlans

    load_matrix = _recording_sync(AuthorityPlans.load_matrix)
    matrix = sync_method(AuthorityPlans.matrix)
    validate = _recording_sync(AuthorityPlans.validate)
    has_authority = sync_method(AuthorityPlans.has_authority)
    delegate = _recording_sync(AuthorityPlans.delegate)
    revoke = _recording_sync(AuthorityPlans.revoke)
    check_delegation = sync_method(AuthorityPlans.check_delegation)
    delegations = sync_method(AuthorityPlans.delegations)
    protect = _recording_sync(AuthorityPlans.protect)
    unprotect = _recording_sync(AuthorityPlans.unprotect)
    override = _recording_sync(AuthorityPlans.override)
    problems = sync_method(AuthorityPlans.problems)


class AsyncAuthority(Namespace):
    """``gov.authority`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = AuthorityPlans

    load_matrix = _recording_async(AuthorityPlans.load_matrix)
    matrix = async_method(AuthorityPlans.matrix)
    validate = _recording_async(AuthorityPlans.validate)
    has_authority = async_method(AuthorityPlans.has_authority)
    delegate = _recording_async(AuthorityPlans.delegate)
    revoke = _recording_async(AuthorityPlans.revoke)
    check_delegation = async_method(AuthorityPlans.check_delegation)
    delegations = async_method(AuthorityPlans.delegations)
    protect = _recording_async(AuthorityPlans.protect)
    unprotect = _recording_async(AuthorityPlans.unprotect)
    override = _recording_async(AuthorityPlans.override)
    problems = async_method(AuthorityPlans.problems)


# SQLite: the guard triggers call into Python, and queued violations are written after each
# transaction; the health check includes the matrix's problems.
_sqlite.CONNECTION_HOOKS.append(sqlite_impl.register_functions)
_sqlite.AFTER_TRANSACTION_HOOKS.append(sqlite_impl.record_pending)
sqlite_health.EXTRA_CHECKS.append(sqlite_impl.health_check)
