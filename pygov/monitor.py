"""The concurrency monitor: how many of each operation run at once, and who had to wait.

One monitor per ``Governance`` object (per process). It is fed by every wrapper call, by every
advisory-lock block and by every wait (advisory locks, row locks, in-progress idempotency
claims, SQLite's writer lock); ``gov.monitor.stats()`` reads it.

High concurrency: when more than ``threshold`` operations of one name run at once (the
``high_concurrency_threshold`` connect option, default 50), a warning is logged on the
``pygov.monitor`` logger, once per episode. The episode ends when the count falls back to half
the threshold, so a count hovering around the threshold does not log a warning per call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pygov.errors import ConfigurationError

log = logging.getLogger("pygov.monitor")


@dataclass(frozen=True, slots=True)
class OperationStats:
    """Counters for one operation name."""

    name: str
    #: Running now, the most ever running at once, and how many ran in all (and failed).
    running: int
    peak: int
    total: int
    errors: int
    #: How many had to wait (for a lock, or another caller's claim), and for how long.
    waited: int
    wait_mean_seconds: float
    wait_max_seconds: float
    #: In a high-concurrency episode now; how many such episodes there were.
    high_concurrency: bool
    high_concurrency_episodes: int


class _Counters:
    __slots__ = (
        "episodes",
        "errors",
        "high",
        "peak",
        "running",
        "total",
        "wait_max",
        "wait_sum",
        "waited",
    )

    def __init__(self) -> None:
        self.running = self.peak = self.total = self.errors = self.waited = self.episodes = 0
        self.wait_sum = self.wait_max = 0.0
        self.high = False


class ConcurrencyMonitor:
    """Thread-safe counters per operation name, with a high-concurrency warning per episode."""

    def __init__(self, threshold: int = 50) -> None:
        self.threshold = self.check_threshold(threshold)
        self._lock = threading.Lock()
        self._ops: dict[str, _Counters] = {}

    @staticmethod
    def check_threshold(threshold: object) -> int:
        """The ``high_concurrency_threshold`` option, checked: a positive integer."""
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigurationError(
                "high_concurrency_threshold must be a positive integer",
                {"high_concurrency_threshold": threshold},
            )
        return threshold

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
                c.episodes += 1
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
            c.running = max(0, c.running - 1)  # never below zero, even across a reset()
            if failed:
                c.errors += 1
            if c.high and c.running <= self.threshold // 2:
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
        """One caller of ``name`` had to wait ``seconds`` in all (for a lock or another
        caller's claim); call it once per caller, when its wait is over."""
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
                    high_concurrency_episodes=c.episodes,
                )
                for name, c in sorted(self._ops.items())
            }

    def reset(self) -> None:
        """Forget every counter (operations running now are counted again when they end)."""
        with self._lock:
            self._ops.clear()
