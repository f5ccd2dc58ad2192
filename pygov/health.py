"""``gov.health()``: everything the governance layer can see going wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pygov._core import Call, Row, Statement
from pygov.sqlite_ops import health as sqlite_impl


@dataclass(frozen=True, slots=True)
class Problem:
    component: str
    severity: str
    problem: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """``ok`` is False when any problem of severity ``error`` or ``warning`` is reported."""

    backend: str
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _report(backend: str) -> Any:
    def mapping(rows: list[Row]) -> HealthReport:
        return HealthReport(backend, [Problem(r[0], r[1], r[2], dict(r[3] or {})) for r in rows])

    return mapping


HEALTH = Statement(
    "health_check", "SELECT * FROM governance.health_check()", sqlite_impl.health_check
)


def health_call(backend: str, conn: Any = None) -> Call[HealthReport]:
    return Call(HEALTH, (), _report(backend), conn, "health")
