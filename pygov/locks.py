"""gov.locks: advisory and row locks (issue 6)."""

from __future__ import annotations

from typing import Any

from pygov._core import Namespace


class LocksPlans:
    """Argument building and result mapping for gov.locks, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Locks(Namespace):
    """gov.locks (sync)."""

    _plans_class = LocksPlans


class AsyncLocks(Namespace):
    """gov.locks on AsyncGovernance."""

    _plans_class = LocksPlans
