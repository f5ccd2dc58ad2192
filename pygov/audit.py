"""gov.audit: audit trail (issue 3)."""

from __future__ import annotations

from typing import Any

from pygov._core import Namespace


class AuditPlans:
    """Argument building and result mapping for gov.audit, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Audit(Namespace):
    """gov.audit (sync)."""

    _plans_class = AuditPlans


class AsyncAudit(Namespace):
    """gov.audit on AsyncGovernance."""

    _plans_class = AuditPlans
