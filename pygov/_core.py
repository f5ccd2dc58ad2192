"""The machinery shared by every backend: statements, calls, settings, method builders.

A public operation is written once, as a *plan*: a method that validates its input and returns a
:class:`Call` (the statement, its arguments and the function that maps the result rows to the
Python result). The sync and async namespaces turn each plan into an I/O method with
:func:`sync_method` and :func:`async_method`, so neither the SQL, the argument building nor the
result mapping is ever written twice.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from pygov.context import current_context
from pygov.errors import ValidationError

if TYPE_CHECKING:
    from pygov._sqlite import SqliteConnection

P = ParamSpec("P")
T = TypeVar("T")
Row = Sequence[Any]
#: The SQLite implementation of a statement: (connection, arguments) -> rows shaped like PG's.
SqliteImpl = Callable[["SqliteConnection", tuple[Any, ...]], list[Row]]


@dataclass(frozen=True, slots=True)
class Statement:
    """One governance operation.

    ``sql`` is PostgreSQL text with ``$1`` placeholders (used as is by asyncpg and by psycopg's
    raw cursor); ``sqlite`` is the fallback's implementation, returning rows of the same shape.
    """

    name: str
    sql: str
    sqlite: SqliteImpl | None = None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is slower, on every call
class Call(Generic[T]):
    """A statement bound to its arguments, with the mapping of its rows to the result."""

    statement: Statement
    args: tuple[Any, ...]
    result: Callable[[list[Row]], T]
    conn: Any = None
    #: Name reported to the concurrency monitor.
    op_name: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    """Options given to ``connect()``, shared by every namespace."""

    default_ttl: timedelta = timedelta(hours=24)
    default_lease: timedelta = timedelta(minutes=5)
    lock_timeout: float = 10.0
    #: Seconds ``connect()`` waits for the pool's first connections before giving up.
    open_timeout: float = 30.0
    high_concurrency_threshold: int = 50
    pool_min_size: int = 1
    pool_max_size: int = 20
    #: False for transaction-pooling proxies (PgBouncer) that cannot keep prepared statements.
    prepared_statements: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class Namespace:
    """Base of the sync and async namespaces (``gov.idempotency`` ...)."""

    _plans_class: type[Any] = object

    def __init__(self, gov: Any) -> None:
        self._gov = gov
        self._plans = self._plans_class(gov.settings)


def sync_method(
    plan: Callable[Concatenate[Any, P], Call[T]],
) -> Callable[Concatenate[Namespace, P], T]:
    """Turn a plan into a blocking method: one call, one round trip."""

    @functools.wraps(plan)
    def method(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = self._gov._run(plan(self._plans, *args, **kwargs))
        return result

    return method


def async_method(
    plan: Callable[Concatenate[Any, P], Call[T]],
) -> Callable[Concatenate[Namespace, P], Any]:
    """Turn a plan into a coroutine method: one call, one round trip."""

    @functools.wraps(plan)
    async def method(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        result: T = await self._gov._run(plan(self._plans, *args, **kwargs))
        return result

    return method


# --- argument helpers shared by every plan -------------------------------------------------


def context_arg() -> str | None:
    """The current governance context as JSON text, the last argument of every statement."""
    return current_context().to_json()


def text_arg(name: str, value: Any, *, max_length: int = 255, required: bool = True) -> str | None:
    """Validate a text argument: a str, no NUL, within ``max_length``; empty only if optional."""
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", {"field": name})
        return None
    if not isinstance(value, str):
        raise ValidationError(
            f"{name} must be a string", {"field": name, "type": type(value).__name__}
        )
    if "\x00" in value:
        raise ValidationError(f"{name} cannot contain NUL characters", {"field": name})
    if required and (not value or value.isspace()):  # isspace(): strip() copies the string
        raise ValidationError(f"{name} cannot be empty", {"field": name})
    if len(value) > max_length:
        raise ValidationError(
            f"{name} is longer than {max_length} characters",
            {"field": name, "length": len(value), "max_length": max_length},
        )
    return value


def _reject_nul(value: Any, path: str = "$") -> None:
    # PostgreSQL's jsonb cannot store \u0000; refuse it up front so every backend agrees.
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("JSON values cannot contain NUL characters", {"path": path})
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in str(k):
                raise ValidationError("JSON keys cannot contain NUL characters", {"path": path})
            _reject_nul(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _reject_nul(v, f"{path}[{i}]")


# One encoder for every argument: json.dumps with options builds a new encoder per call.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_arg(name: str, value: Any) -> str | None:
    """Serialise a JSON argument to text (passed as ``$n::text::jsonb``); None stays NULL."""
    if value is None:
        return None
    try:
        text = _JSON_ENCODER.encode(value)
        # The encoder writes every NUL as \u0000, so the walk (which names the path) only
        # runs when that text appears: on every call it cost as much as the encoding.
        if "\\u0000" in text:
            _reject_nul(value)
        return text
    except ValidationError as exc:
        exc.context["field"] = name
        raise
    except RecursionError:
        raise ValidationError(f"{name} is nested too deeply", {"field": name}) from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{name} is not JSON-serialisable", {"field": name, "error": str(exc)}
        ) from None


def seconds_arg(name: str, value: timedelta | float | int | None) -> float | None:
    """A duration in seconds (positive, finite), from a timedelta or a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise ValidationError(
            f"{name} must be a timedelta or a number of seconds",
            {"field": name, "type": type(value).__name__},
        )
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 100 * 365 * 86400:
        raise ValidationError(
            f"{name} must be a positive duration", {"field": name, "seconds": seconds}
        )
    return seconds


def int_arg(name: str, value: Any, *, minimum: int | None = None, maximum: int = 2**63 - 1) -> int:
    """An integer argument within the bigint range (or up to ``maximum``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{name} must be an integer", {"field": name, "type": type(value).__name__}
        )
    if not -(2**63) <= value < 2**63:
        raise ValidationError(f"{name} is out of range", {"field": name})
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name} must be at least {minimum}", {"field": name, "value": value})
    if value > maximum:
        raise ValidationError(f"{name} must be at most {maximum}", {"field": name, "value": value})
    return value


# --- result helpers -----------------------------------------------------------------------


def to_datetime(value: Any) -> datetime | None:
    """Timestamps come back as datetime from PostgreSQL and as ISO text from SQLite; every
    backend returns them in UTC (psycopg would give the session's TimeZone, asyncpg UTC)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


def to_json_value(value: Any) -> Any:
    """jsonb arrives decoded from both drivers; SQLite stores JSON as text."""
    if isinstance(value, str | bytes):
        return json.loads(value)
    return value


def single(rows: list[Row]) -> Row:
    """The one row a statement returns."""
    if len(rows) != 1:
        raise ValidationError("expected exactly one row", {"rows": len(rows)})
    return rows[0]


def scalar(rows: list[Row]) -> Any:
    """The first column of the one row a statement returns."""
    return single(rows)[0]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- retry with exponential backoff and jitter (locks and in-progress claims) ----------------


def backoff_delays(
    timeout: float, *, initial: float = 0.005, maximum: float = 0.25
) -> Iterator[float]:
    """Sleep lengths for retries until ``timeout`` seconds have passed: exponential, full jitter.

    Used by every wait in pygov (advisory locks, in-progress idempotency claims) so that they
    follow the same rules. Yields nothing once the deadline has passed.
    """
    deadline = time.monotonic() + max(timeout, 0.0)
    ceiling = initial
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        yield min(remaining, random.uniform(initial / 2, ceiling))
        ceiling = min(maximum, ceiling * 2)
