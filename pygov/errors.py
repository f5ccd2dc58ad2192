"""The pygov exception hierarchy and the one table that maps SQLSTATEs to it.

PL/pgSQL raises domain errors with a ``GV`` SQLSTATE and a JSON ``DETAIL``; SQLite code raises
the classes directly. Driver exceptions (psycopg, asyncpg, sqlite3) are turned into these classes
by :func:`translate`, the single translation point used by every backend.
"""

from __future__ import annotations

import json
import re
from typing import Any


class GovernanceError(Exception):
    """A governance operation failed."""

    sqlstate = "GV000"

    def __init__(self, message: str | None = None, context: dict[str, Any] | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.context: dict[str, Any] = dict(context or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        return f"{self.message} {json.dumps(self.context, default=str, sort_keys=True)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, context={self.context!r})"


class AuthorityViolationError(GovernanceError):
    """The service has no authority for this operation."""

    sqlstate = "GV001"


class ValidationError(GovernanceError):
    """The input breaks a rule of the governance layer."""

    sqlstate = "GV002"


class ConcurrencyError(GovernanceError):
    """A lock, a timeout or a serialisation conflict stopped the operation."""

    sqlstate = "GV003"


class IdempotencyError(GovernanceError):
    """The idempotency record cannot be used this way."""

    sqlstate = "GV004"


class IdempotencyInProgressError(IdempotencyError):
    """Another caller holds a live claim on this idempotency key."""

    sqlstate = "GV014"


class IdempotencyPayloadMismatchError(IdempotencyError):
    """The idempotency key was already used with a different payload."""

    sqlstate = "GV024"


class QuarantineError(GovernanceError):
    """The quarantine workflow does not allow this step."""

    sqlstate = "GV005"


class RepairError(GovernanceError):
    """A data repair failed."""

    sqlstate = "GV006"


class SignalError(GovernanceError):
    """A governance signal could not be processed."""

    sqlstate = "GV007"


class GatewayError(GovernanceError):
    """A gateway operation failed."""

    sqlstate = "GV008"


class ConfigurationError(GovernanceError):
    """pygov or the database is not configured correctly."""

    sqlstate = "GV009"


_ALL: tuple[type[GovernanceError], ...] = (
    GovernanceError,
    AuthorityViolationError,
    ValidationError,
    ConcurrencyError,
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyPayloadMismatchError,
    QuarantineError,
    RepairError,
    SignalError,
    GatewayError,
    ConfigurationError,
)

#: SQLSTATE -> exception class, for every backend.
SQLSTATE_TO_ERROR: dict[str, type[GovernanceError]] = {cls.sqlstate: cls for cls in _ALL}
SQLSTATE_TO_ERROR.update(
    {
        "55P03": ConcurrencyError,  # lock_not_available (lock_timeout, NOWAIT)
        "40001": ConcurrencyError,  # serialization_failure
        "40P01": ConcurrencyError,  # deadlock_detected
        "57014": ConcurrencyError,  # query_canceled (statement_timeout)
        "25P02": ConcurrencyError,  # in_failed_sql_transaction: an earlier error aborted it
        "25P03": ConcurrencyError,  # idle_in_transaction_session_timeout (session terminated)
        "25P04": ConcurrencyError,  # transaction_timeout (PostgreSQL 17+, session terminated)
        "22P02": ValidationError,  # invalid_text_representation
        "22P05": ValidationError,  # untranslatable_character
        "22021": ValidationError,  # character_not_in_repertoire (NUL bytes)
        "22001": ValidationError,  # string_data_right_truncation
        "22003": ValidationError,  # numeric_value_out_of_range
        "22007": ValidationError,  # invalid_datetime_format
        "22008": ValidationError,  # datetime_field_overflow
        "22023": ValidationError,  # invalid_parameter_value
        "2201B": ValidationError,  # invalid_regular_expression
        "22015": ValidationError,  # interval_field_overflow
        "22030": ValidationError,  # duplicate_json_object_key_value
        "22032": ValidationError,  # invalid_json_text
        "23502": ValidationError,  # not_null_violation
        "23503": ValidationError,  # foreign_key_violation
        "23505": ValidationError,  # unique_violation
        "23514": ValidationError,  # check_violation
        "42P01": ValidationError,  # undefined_table (a table name passed by the caller)
        "42703": ValidationError,  # undefined_column
        "42602": ValidationError,  # invalid_name
        "42622": ValidationError,  # name_too_long
        "42501": AuthorityViolationError,  # insufficient_privilege
        "54001": ValidationError,  # statement_too_complex (e.g. absurdly deep JSON)
        "54000": ValidationError,  # program_limit_exceeded
    }
)
# Whole classes of SQLSTATE, by their first two characters.
SQLSTATE_CLASS_TO_ERROR: dict[str, type[GovernanceError]] = {
    "08": ConcurrencyError,  # connection exception: the server went away
    "57": ConcurrencyError,  # operator intervention: admin shutdown, cancel, crash
    "53": ConcurrencyError,  # insufficient resources: too many connections
    "40": ConcurrencyError,  # transaction rollback
    "22": ValidationError,  # data exception
    "23": ValidationError,  # integrity constraint violation
    "42": ConfigurationError,  # syntax error or access rule violation: schema not migrated?
    "28": ConfigurationError,  # invalid authorization: no such role, wrong password, pg_hba
    "3D": ConfigurationError,  # invalid catalog name: no such database
    "3F": ConfigurationError,  # invalid schema name
}


def error_for(
    sqlstate: str | None, message: str, detail: str | None = None, **extra: Any
) -> GovernanceError:
    """Build the pygov error for a database error's SQLSTATE, message and DETAIL."""
    context: dict[str, Any] = {}
    if detail:
        try:
            parsed = json.loads(detail)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            context.update(parsed)
        else:
            context["detail"] = detail
    context.update({k: v for k, v in extra.items() if v is not None})
    code = sqlstate or "GV000"
    cls = SQLSTATE_TO_ERROR.get(code) or SQLSTATE_CLASS_TO_ERROR.get(code[:2], GovernanceError)
    if not code.startswith("GV"):
        context.setdefault("sqlstate", code)
    return cls(message, context)


def translate(exc: BaseException) -> GovernanceError:
    """Turn any driver exception (psycopg, asyncpg, sqlite3, OS) into a pygov error."""
    if isinstance(exc, GovernanceError):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    detail: str | None = None
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    diag = getattr(exc, "diag", None)  # psycopg
    if diag is not None:
        detail = getattr(diag, "message_detail", None)
        message = getattr(diag, "message_primary", None) or message
    elif hasattr(exc, "detail"):  # asyncpg
        detail = getattr(exc, "detail", None)
        message = getattr(exc, "message", None) or message
    if sqlstate is None:
        sqlstate = _sqlstate_without_code(exc)
        # SQLite triggers raise GV errors as RAISE(ABORT, 'GV001: message').
        if message[:5].startswith("GV") and message[2:5].isdigit() and message[5:7] == ": ":
            sqlstate, message = message[:5], message[7:]
            # ... optionally ending with their context as JSON: 'GV001: message {"k": "v"}'.
            head, brace, tail = message.partition(' {"')
            if brace and tail.endswith("}"):
                message, detail = head, '{"' + tail
    if str(sqlstate).startswith("GV"):
        return error_for(sqlstate, message, detail)
    # A server error: say where it happened (which governance function, which line) and, for
    # cancellations, which limit fired, so that a caller can tell a timeout from a lock wait.
    where = getattr(diag, "context", None) if diag is not None else getattr(exc, "context", None)
    return error_for(
        sqlstate,
        message,
        detail,
        driver_error=type(exc).__name__,
        where=_where(where),
        reason=_cancel_reason(str(sqlstate), message),
    )


# A statement quoted in CONTEXT ends where the next frame of the call stack starts.
_QUOTED_STATEMENT = re.compile(
    r'(SQL statement|PL/pgSQL expression) "(.*?)"(?=\n(?:PL/pgSQL|SQL function)|\Z)', re.S
)


def _where(context: Any) -> str | None:
    """The server's CONTEXT (the PL/pgSQL call stack), on one line. Quoted statements are
    shortened so that the function frames, which say where it happened, always fit."""
    if not isinstance(context, str) or not context.strip():
        return None

    def shorten(match: re.Match[str]) -> str:
        text = " ".join(match.group(2).split())
        return f'{match.group(1)} "{text[:80]}{"..." if len(text) > 80 else ""}"'

    context = _QUOTED_STATEMENT.sub(shorten, context)
    return "; ".join(line.strip() for line in context.splitlines() if line.strip())[:1000]


def _cancel_reason(sqlstate: str, message: str) -> str | None:
    """Which limit stopped the statement: statement_timeout, lock_timeout, a cancel request."""
    text = message.lower()
    if sqlstate == "57014":
        if "statement timeout" in text:
            return "statement_timeout"
        if "user request" in text:
            return "cancelled"
        return "query_canceled"
    if sqlstate == "55P03":
        return "lock_timeout" if "lock timeout" in text else "lock_not_available"
    return {
        "25P03": "idle_in_transaction_session_timeout",
        "25P04": "transaction_timeout",
    }.get(sqlstate)


def _sqlstate_without_code(exc: BaseException) -> str:
    """Classify errors that carry no SQLSTATE (connection loss, pool timeout, sqlite3)."""
    name = type(exc).__name__
    module = type(exc).__module__
    text = str(exc).lower()
    if module.startswith("sqlite3") or name in {"OperationalError", "IntegrityError"}:
        if "locked" in text or "busy" in text:
            return "55P03"
        if "not null constraint" in text:
            return "23502"
        if "check constraint" in text:
            return "23514"
        if "foreign key constraint" in text:
            return "23503"
        if "constraint" in text or "unique" in text:
            return "23505"
        # A governance table missing means the file was never migrated: a retry will not help
        # (ConfigurationError, as 3F000 on PostgreSQL), unlike a lost connection.
        if "no such table: governance_" in text:
            return "3F000"
        if "no such table" in text or "no such column" in text:
            return "42P01"
    if "fatal:" in text:
        # psycopg reports a refused connection without its SQLSTATE: recover the ones that a
        # retry will not fix (the rest, e.g. "shutting down", stay connection errors).
        if "password authentication failed" in text or "no pg_hba.conf entry" in text:
            return "28P01"
        if "role" in text and "does not exist" in text:
            return "28000"
        if "database" in text and "does not exist" in text:
            return "3D000"
    if name in {"PoolTimeout", "TooManyRequests"} or isinstance(
        exc, ConnectionError | TimeoutError | OSError
    ):
        return "08006"
    if name in {
        "OperationalError",
        "InterfaceError",
        "ConnectionDoesNotExistError",
        # asyncpg: the connection's protocol state broke (it died in the middle of an operation)
        "InternalClientError",
        "ProtocolError",
    } or ("connection" in text and ("closed" in text or "lost" in text or "terminat" in text)):
        return "08006"
    if isinstance(exc, TypeError | ValueError | OverflowError | UnicodeError):
        return "GV002"
    return "GV000"


__all__ = [
    "SQLSTATE_CLASS_TO_ERROR",
    "SQLSTATE_TO_ERROR",
    "AuthorityViolationError",
    "ConcurrencyError",
    "ConfigurationError",
    "GatewayError",
    "GovernanceError",
    "IdempotencyError",
    "IdempotencyInProgressError",
    "IdempotencyPayloadMismatchError",
    "QuarantineError",
    "RepairError",
    "SignalError",
    "ValidationError",
    "error_for",
    "translate",
]
