"""The concurrency monitor: how many of each operation run at once, and who had to wait.

One monitor per ``Governance`` object (per process). It is fed by every wrapper call and by
every wait (advisory locks, in-progress idempotency claims); ``gov.monitor.stats()`` reads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("pygov.monitor")


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Counters for one operation name."""

    name: str
    running: int
    peak: int
    total: int
    errors: int
    waited: int
    wait_mean_seconds: float
    wait_max_seconds: float
    high_concurrency: bool


class _Counters:
    __slots__ = ("errors", "high", "peak", "running", "total", "wait_max", "wait_sum", "waited")

    def __init__(self) -> None:
        self.running = self.peak = self.total = self.errors = self.waited = 0
        self.wait_sum = self.wait_max = 0.0
        self.high = False


class ConcurrencyMonitor:
    """Thread-safe counters per operation name, with a high-concurrency warning per episode."""

    def __init__(self, threshold: int = 50) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        self._ops: dict[str, _Counters] = {}

    def _get(self, name: str) -> _Counters:
        counters = self._ops.get(name)
        if counters is None:
            counters = self._ops[name] = _Counters()
        return counters

    def begin(self, name: str) -> None:
        warn = False
        with self._lock:
            c = self._get(name)
            c.running += 1
            c.total += 1
            c.peak = max(c.peak, c.running)
            if c.running > self.threshold and not c.high:
                c.high = warn = True
            running = c.running
        if warn:
            log.warning(
                "high concurrency: %d concurrent %s operations (threshold %d)",
                running,
                name,
                self.threshold,
            )

    def end(self, name: str, failed: bool = False) -> None:
        with self._lock:
            c = self._get(name)
            c.running -= 1
            if failed:
                c.errors += 1
            if c.high and c.running <= self.threshold:
                c.high = False  # the episode is over; the next one warns again

    @contextmanager
    def track(self, name: str) -> Iterator[None]:
        """Count one running operation for the duration of the block."""
        self.begin(name)
        failed = True
        try:
            yield
            failed = False
        finally:
            self.end(name, failed)

    def record_wait(self, name: str, seconds: float) -> None:
        """An operation had to wait ``seconds`` in all (for a lock or another caller's claim)."""
        with self._lock:
            c = self._get(name)
            c.waited += 1
            c.wait_sum += seconds
            c.wait_max = max(c.wait_max, seconds)

    def stats(self) -> dict[str, OperationStats]:
        """A snapshot of the counters, per operation name."""
        with self._lock:
            return {
                name: OperationStats(
                    name=name,
                    running=c.running,
                    peak=c.peak,
                    total=c.total,
                    errors=c.errors,
                    waited=c.waited,
                    wait_mean_seconds=(c.wait_sum / c.waited) if c.waited else 0.0,
                    wait_max_seconds=c.wait_max,
                    high_concurrency=c.high,
                )
                for name, c in sorted(self._ops.items())
            }

    def reset(self) -> None:
        with self._lock:
            self._ops.clear()
