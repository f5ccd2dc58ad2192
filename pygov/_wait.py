"""Waiting for what another caller holds: one set of rules for every wait in pygov.

Advisory locks, in-progress idempotency claims and SQLite's single writer all wait the same way:
up to a timeout, retrying after delays that grow exponentially with full jitter
(:func:`pygov._core.backoff_delays`), and each caller that had to wait is reported once to the
concurrency monitor with the total time it waited. When the wait runs out, the error's context
says how long it waited and what the timeout was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

from pygov._core import backoff_delays, seconds_arg
from pygov.errors import GovernanceError

E = TypeVar("E", bound=GovernanceError)


def timeout_arg(name: str, value: timedelta | float | None, default: float) -> float:
    """A timeout in seconds (a timedelta or a positive number); None means ``default``."""
    seconds = seconds_arg(name, value if value is not None else default)
    assert seconds is not None
    return seconds


def wait_arg(name: str, value: timedelta | float | None) -> float:
    """How long a caller agrees to wait: like :func:`timeout_arg`, but 0 or None means "not at
    all"."""
    if value is None or (not isinstance(value, bool) and value in (0, timedelta(0))):
        return 0.0
    seconds = seconds_arg(name, value)
    assert seconds is not None
    return seconds


class Wait:
    """One caller's wait for ``name`` (the operation the monitor reports it under)."""

    def __init__(self, monitor: Any, name: str, timeout: float) -> None:
        self.monitor = monitor
        self.name = name
        self.timeout = timeout
        self.started = time.monotonic()
        self.waited = False
        self._delays = backoff_delays(timeout)

    def delays(self) -> Iterator[float]:
        """The delays before each retry (draw one only after a failed attempt); they end when
        the timeout has passed."""
        for delay in self._delays:
            self.waited = True
            yield delay

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def done(self) -> None:
        """The wait is over: report it to the monitor if there was one."""
        if self.waited:
            self.monitor.record_wait(self.name, self.elapsed)

    def give_up(self, error: E, **context: Any) -> E:
        """The wait ran out: report it, and add what was waited for and how long to ``error``."""
        self.done()
        error.context.update(context)
        error.context["waited_seconds"] = round(self.elapsed, 3)
        error.context["timeout_seconds"] = self.timeout
        return error
