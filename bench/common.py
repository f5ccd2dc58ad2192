"""Shared benchmark machinery: the server, timing loops, and the result table."""

from __future__ import annotations

import contextvars
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pygov


@dataclass
class Result:
    """One line of the benchmark table."""

    name: str
    pygov: float
    baseline: float
    unit: str  # "ops/s" (higher is better) or "s" / "ms" (lower is better)
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float:
        """pygov relative to the baseline: throughput ratio, or time ratio for durations."""
        return self.pygov / self.baseline if self.baseline else float("nan")


def _pin_server_and_client() -> None:
    """Server on CPU 0, this process (the clients) on CPU 1: as when the application and the
    database run on different machines. Backends forked later inherit the server's CPU."""
    if len(os.sched_getaffinity(0)) < 2:
        raise RuntimeError("PYGOV_BENCH_PIN needs at least 2 CPUs")
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    if "(postgres)" in stat.read():
                        os.sched_setaffinity(int(pid), {0})
            except OSError:
                continue
    os.sched_setaffinity(0, {1})


class BenchServer:
    """A PostgreSQL server for the run: ``PYGOV_BENCH_DSN``, else an embedded one."""

    def __init__(self) -> None:
        self._embedded: Any = None
        dsn = os.environ.get("PYGOV_BENCH_DSN")
        if dsn is None:
            from pygov._embedded import EmbeddedPostgres

            # Default durability (fsync on): the figures are what a real deployment sees.
            self._embedded = EmbeddedPostgres({"max_connections": "200", "shared_buffers": "256MB"})
            dsn = self._embedded.start()
            if os.environ.get("PYGOV_BENCH_PIN"):
                _pin_server_and_client()
        self.admin_dsn = dsn

    def dsn(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = database
        return make_conninfo(**params)

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, migrated database, dropped afterwards."""
        name = f"pygov_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.dsn(name)
        gov = pygov.connect(dsn, pool_min_size=0)
        gov.migrate()
        gov.close()
        try:
            yield dsn
        finally:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()


def throughput(
    clients: int,
    seconds: float,
    op: Callable[[int, int], Any],
    *,
    inherit_context: bool = False,
) -> float:
    """Run ``op(client, i)`` from ``clients`` threads for ``seconds``; return operations/s.

    New threads start with empty context variables; with ``inherit_context`` each worker runs
    in a copy of the caller's (its governance context above all), as a web worker would run
    inside the context its middleware set."""
    barrier = threading.Barrier(clients + 1)
    counts = [0] * clients
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(c: int) -> None:
        barrier.wait()
        i = 0
        try:
            while not stop.is_set():
                op(c, i)
                i += 1
        except BaseException as exc:  # reported after the run
            errors.append(exc)
        counts[c] = i

    def target(c: int) -> None:
        if inherit_context:
            contexts[c].run(worker, c)
        else:
            worker(c)

    contexts = [contextvars.copy_context() for _ in range(clients)]
    threads = [threading.Thread(target=target, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"benchmark worker failed: {errors[0]!r}") from errors[0]
    return sum(counts) / elapsed


def timed(func: Callable[[], Any]) -> float:
    """Seconds taken by one call."""
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def print_table(results: list[Result]) -> None:
    header = f"{'benchmark':58} {'pygov':>12} {'baseline':>12} {'ratio':>7}  target"
    print(header)
    print("-" * len(header))
    for r in results:
        verdict = "" if r.passed is None else ("ok" if r.passed else "MISSED")
        print(
            f"{r.name:58} {r.pygov:>12.4g} {r.baseline:>12.4g} {r.ratio:>7.2f}  "
            f"{r.target} {verdict}".rstrip()
        )
    print("(units: ops/s for throughput rows, seconds for time rows)")
