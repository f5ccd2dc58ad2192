"""Per-request governance context: who is acting, through which service, from where.

The context lives in a :mod:`contextvars` variable, so each thread and each asyncio task sees its
own. In PostgreSQL it travels with every wrapper call as an argument and becomes transaction-local
settings (``governance.user`` ...), so triggers see it and nothing leaks between requests.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from pygov.errors import ValidationError

_MAX_FIELD = 1000


_TEXT_FIELDS = ("user", "service", "ip", "user_agent", "request_id")


@dataclass(frozen=True, slots=True)
class GovernanceContext:
    """Who is acting (user), through which service, from which IP and user agent."""

    user: str | None = None
    service: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    #: SQLite has no database roles: this flag stands in for membership of governance_admin.
    superuser: bool = False
    # Serialised once per context: every wrapper call sends it, so it must cost nothing.
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        settings = self.as_settings()
        text = json.dumps(settings, separators=(",", ":")) if settings else None
        object.__setattr__(self, "_json", text)

    def as_settings(self) -> dict[str, str]:
        """The non-empty fields, as the settings the database functions read."""
        values = {
            name: value for name in _TEXT_FIELDS if (value := getattr(self, name)) is not None
        }
        if self.superuser:
            values["superuser"] = "true"
        return values

    def to_json(self) -> str | None:
        """JSON text for the ``p_context`` argument of the SQL functions (None when empty)."""
        return self._json


EMPTY_CONTEXT = GovernanceContext()
_current: ContextVar[GovernanceContext] = ContextVar("pygov_context", default=EMPTY_CONTEXT)


def current_context() -> GovernanceContext:
    """The governance context of the running thread or task."""
    return _current.get()


def _check_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ValidationError("context values cannot contain NUL characters", {"field": name})
    if len(text) > _MAX_FIELD:
        raise ValidationError(
            f"context value too long (max {_MAX_FIELD})", {"field": name, "length": len(text)}
        )
    return text


def make_context(base: GovernanceContext | None = None, **fields: Any) -> GovernanceContext:
    """A new context: ``base`` (default: the current one) with the given fields replaced."""
    unknown = set(fields) - {"user", "service", "ip", "user_agent", "request_id", "superuser"}
    if unknown:
        raise ValidationError("unknown context fields", {"fields": sorted(unknown)})
    checked: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "superuser":
            checked[name] = bool(value)
            continue
        text = _check_text(name, value)
        if name == "ip" and text is not None:
            try:
                text = str(ipaddress.ip_address(text.strip()))
            except ValueError:
                raise ValidationError("ip is not an IP address", {"ip": text}) from None
        checked[name] = text
    return replace(base if base is not None else current_context(), **checked)


@contextmanager
def governance_context(**fields: Any) -> Iterator[GovernanceContext]:
    """Set the governance context for the block; fields not given are kept from the outer one.

    ``user``, ``service``, ``ip``, ``user_agent``, ``request_id`` and ``superuser``. An ``ip`` that
    is not an IP address raises :class:`~pygov.errors.ValidationError` here, on entry.
    """
    ctx = make_context(**fields)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def set_context(ctx: GovernanceContext) -> Any:
    """Install ``ctx`` and return a token for :func:`reset_context` (for middleware)."""
    return _current.set(ctx)


def reset_context(token: Any) -> None:
    """Restore the context that was current before :func:`set_context`."""
    _current.reset(token)


__all__ = [
    "EMPTY_CONTEXT",
    "GovernanceContext",
    "current_context",
    "governance_context",
    "make_context",
    "reset_context",
    "set_context",
]
