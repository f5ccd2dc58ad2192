"""gov.stock: guarded stock (issue 6)."""

from __future__ import annotations

from typing import Any

from pygov._core import Namespace


class StockPlans:
    """Argument building and result mapping for gov.stock, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings


class Stock(Namespace):
    """gov.stock (sync)."""

    _plans_class = StockPlans


class AsyncStock(Namespace):
    """gov.stock on AsyncGovernance."""

    _plans_class = StockPlans
