"""gov.quarantine: quarantine (issue 5)."""

from __future__ import annotations

from typing import Any

from pygov._core import Namespace


class QuarantinePlans:
    """Argument building and result mapping for gov.quarantine, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Quarantine(Namespace):
    """gov.quarantine (sync)."""

    _plans_class = QuarantinePlans


class AsyncQuarantine(Namespace):
    """gov.quarantine on AsyncGovernance."""

    _plans_class = QuarantinePlans
