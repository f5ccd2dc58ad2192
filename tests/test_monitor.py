"""The concurrency monitor, fed by real calls from real threads."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

import pygov
from pygov.errors import ConcurrencyError, ConfigurationError, IdempotencyInProgressError
from pygov.monitor import ConcurrencyMonitor
from tests.helpers import run_threads

WARNING = "high concurrency"


def high_warnings(caplog: pytest.LogCaptureFixture, name: str = "") -> list[str]:
    """The monitor's warnings (about operation ``name`` if given)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "pygov.monitor"
        and r.levelno == logging.WARNING
        and (not name or f" {name} " in r.getMessage())
    ]


def hold_together(count: int, enter: Any) -> None:
    """``count`` threads each enter ``enter(i)`` and stay inside until all of them are in."""
    barrier = threading.Barrier(count)

    def work(i: int) -> None:
        with enter(i):
            barrier.wait(10)

    assert run_threads(count, work) == [None] * count


def test_wrapper_calls_are_counted_per_operation(gov: Any) -> None:
    gov.stock.adjust("pen", "main", 5)
    gov.stock.adjust("pen", "main", -1)
    with pytest.raises(pygov.errors.ValidationError):
        gov.stock.adjust("pen", "main", -100)
    gov.stock.level("pen", "main")
    stats = gov.monitor.stats()
    adjust = stats["stock.adjust"]
    assert (adjust.total, adjust.running, adjust.errors) == (3, 0, 1)
    assert adjust.peak == 1
    assert stats["stock.level"].total == 1


def test_running_peak_and_high_concurrency_episodes(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pygov.monitor")
    gov = pygov.connect(pg_dsn, high_concurrency_threshold=3, pool_max_size=10)
    try:
        seen: list[Any] = []

        def enter(i: int) -> Any:
            return gov.locks.advisory(f"job-{i}")

        barrier = threading.Barrier(5)

        def work(i: int) -> None:
            with enter(i):
                barrier.wait(10)  # all five hold a lock now
                if i == 0:
                    seen.append(gov.monitor.stats()["locks.advisory"])
                barrier.wait(10)

        assert run_threads(5, work) == [None] * 5
        during = seen[0]
        assert (during.running, during.peak, during.high_concurrency) == (5, 5, True)
        after = gov.monitor.stats()["locks.advisory"]
        assert (after.running, after.peak, after.total) == (0, 5, 5)
        assert after.high_concurrency is False and after.high_concurrency_episodes == 1
        assert len(high_warnings(caplog, "locks.advisory")) == 1

        # Under the threshold: no new episode.
        hold_together(3, enter)
        assert gov.monitor.stats()["locks.advisory"].high_concurrency_episodes == 1
        # Over it again: a second episode, a second warning.
        hold_together(4, enter)
        assert gov.monitor.stats()["locks.advisory"].high_concurrency_episodes == 2
        assert len(high_warnings(caplog, "locks.advisory")) == 2
    finally:
        gov.close()


def test_one_warning_per_episode_even_when_hovering_at_the_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pygov.monitor")
    monitor = ConcurrencyMonitor(threshold=4)
    for _ in range(5):
        monitor.begin("op")  # 5 running: over the threshold
    for _ in range(10):  # hovering between 4 and 5
        monitor.end("op")
        monitor.begin("op")
    assert len(high_warnings(caplog)) == 1
    for _ in range(3):
        monitor.end("op")  # down to 2: half the threshold, the episode ends
    assert monitor.stats()["op"].high_concurrency is False
    for _ in range(3):
        monitor.begin("op")
    assert len(high_warnings(caplog)) == 2
    assert monitor.stats()["op"].high_concurrency_episodes == 2


def test_threads_tracking_one_operation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pygov.monitor")
    monitor = ConcurrencyMonitor(threshold=10)
    hold_together(16, lambda i: monitor.track("op"))
    stats = monitor.stats()["op"]
    assert (stats.running, stats.peak, stats.total, stats.errors) == (0, 16, 16, 0)
    assert stats.high_concurrency_episodes == 1
    assert len(high_warnings(caplog)) == 1


def test_each_waiting_caller_is_one_wait(gov: Any) -> None:
    gov.idempotency.claim("slow", "k", lease=30)
    started = time.monotonic()
    results = run_threads(3, lambda i: gov.idempotency.claim("slow", "k", wait=0.3))
    elapsed = time.monotonic() - started
    assert all(isinstance(r, IdempotencyInProgressError) for r in results)
    assert all(r.context["timeout_seconds"] == 0.3 for r in results)
    stats = gov.monitor.stats()["idempotency.claim"]
    # Three callers waited (however many retries each made), each about 0.3 s.
    assert stats.waited == 3
    assert 0.25 <= stats.wait_mean_seconds <= stats.wait_max_seconds <= elapsed


def test_lock_waits_are_reported(gov: Any) -> None:
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with gov.locks.advisory("report"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        with pytest.raises(ConcurrencyError), gov.locks.advisory("report", timeout=0.2):
            pass
    finally:
        release.set()
        t.join()
    with gov.locks.advisory("report", timeout=5):
        pass
    stats = gov.monitor.stats()["locks.advisory"]
    assert stats.waited == 1
    assert stats.wait_max_seconds >= 0.19
    assert stats.total == 3 and stats.errors == 1


@pytest.mark.parametrize("threshold", [0, -1, 2.5, "10", True])
def test_bad_threshold_is_a_configuration_error(tmp_path: Any, threshold: Any) -> None:
    with pytest.raises(ConfigurationError):
        pygov.connect(f"sqlite:///{tmp_path / 'x.db'}", high_concurrency_threshold=threshold)
