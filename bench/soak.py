"""``python -m bench.soak [--seconds N]``: a long mixed workload of every capability.

Sync threads and async tasks on PostgreSQL, plus SQLite with a thread per request, run
idempotent operations (new keys, hot duplicates, contended claims, guarded business writes),
audit logging and reads, the quarantine workflow and scans, health and stats; a maintenance
thread cleans up expired records and seals the audit trail. Every ``--interval`` seconds it
prints throughput, errors by class and the process's memory (RSS).

Pass: no unexpected error, no memory growth after warm-up, and the audit trail verifies at the
end. Not part of ``make test``: ``make soak`` runs it for the default 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pygov
import pygov.aio
from bench.common import BenchServer
from pygov.errors import AuthorityViolationError, GovernanceError, IdempotencyInProgressError

#: Errors the workload provokes on purpose (claims contended by several workers).
EXPECTED: tuple[type[GovernanceError], ...] = (IdempotencyInProgressError,)


def rss_mb() -> float:
    """The process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Tally:
    """Operations and errors, counted from every worker."""

    ops: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, name: str, op: Callable[[], Any]) -> None:
        try:
            op()
        except BaseException as exc:
            self.failed(exc)
        else:
            with self.lock:
                self.ops[name] += 1

    async def run_async(self, name: str, op: Callable[[], Awaitable[Any]]) -> None:
        try:
            await op()
        except BaseException as exc:
            self.failed(exc)
        else:
            with self.lock:
                self.ops[name] += 1

    def failed(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise exc
        with self.lock:
            if isinstance(exc, EXPECTED):
                self.expected[type(exc).__name__] += 1
                return
            self.unexpected[type(exc).__name__] += 1
            if len(self.samples) < 5:
                self.samples.append("".join(traceback.format_exception(exc))[-2000:])

    def total(self) -> int:
        with self.lock:
            return sum(self.ops.values())


SETUP = [
    "CREATE TABLE public.soak_orders (id text PRIMARY KEY, worker int NOT NULL, total int)",
    "CREATE TABLE public.soak_stock (id int PRIMARY KEY, quantity int NOT NULL)",
    "INSERT INTO public.soak_stock SELECT g, 10 FROM generate_series(1, 1000) g",
    "CREATE TABLE public.soak_invoices (id text PRIMARY KEY)",
]
SQLITE_SETUP = "CREATE TABLE soak_orders (id TEXT PRIMARY KEY, worker INTEGER, total INTEGER)"


def sync_ops(gov: pygov.Governance, worker: int, n: int) -> list[tuple[str, Callable[[], Any]]]:
    """One round of a sync worker: every kind of operation once."""
    key = f"w{worker}-{n}"

    def guarded_write() -> None:
        with gov.transaction() as tx, gov.idempotency.guard("soak.order", key, conn=tx) as g:
            if not g.is_duplicate:
                tx.execute("INSERT INTO public.soak_orders VALUES (%s, %s, %s)", (key, worker, n))
                g.result = {"order": key}

    def contended() -> None:
        claim = gov.idempotency.claim("soak.contended", f"c{n % 4}", lease=30, wait=0.02)
        if claim.claimed:
            gov.idempotency.complete(claim, {"by": worker}, ttl=0.05)

    def protected_write() -> None:
        # Even workers act for the trusted service; odd ones for one the matrix refuses.
        service = "Billing" if worker % 2 == 0 else "Rogue"
        try:
            with gov.context(service=service), gov.transaction() as tx:
                tx.execute("INSERT INTO public.soak_invoices VALUES (%s)", (key,))
        except AuthorityViolationError:
            if service == "Billing":
                raise
            return
        if service != "Billing":
            raise AssertionError(f"the protected table admitted {service}")

    def stock_own() -> None:
        gov.stock.adjust(f"item-{worker}", "wh", 2, movement_key=f"in-{key}")
        gov.stock.adjust(f"item-{worker}", "wh", -1)
        gov.stock.movements(f"item-{worker}", "wh", limit=10)

    def locked_write() -> None:
        with gov.locks.advisory(f"soak-lock-{n % 3}", timeout=5) as tx:
            gov.idempotency.check_and_record("soak.locked", key, conn=tx)
        with gov.locks.lock_rows("public.soak_stock", [n % 1000 + 1, worker + 1], timeout=5):
            pass

    def quarantine() -> None:
        record_id = gov.quarantine.quarantine_data("soak.item", key, "OTHER", "soak", {"n": n})
        gov.quarantine.start_review(record_id)
        gov.quarantine.resolve(record_id, "soak: checked", "FALSE_POSITIVE")

    ops: list[tuple[str, Callable[[], Any]]] = [
        ("record", lambda: gov.idempotency.check_and_record("soak", key, {"n": n}, ttl=2)),
        ("duplicate", lambda: gov.idempotency.check_and_record("soak.hot", f"h{n % 50}", n)),
        ("guarded_write", guarded_write),
        ("claim_release", lambda: gov.idempotency.release(gov.idempotency.claim("soak.cr", key))),
        ("contended", contended),
        ("audit_log", lambda: gov.audit.log_operation("soak.item", key, "UPDATE", after_data={})),
        ("history", lambda: gov.audit.history("public.soak_orders", f"w{worker}-{max(n - 1, 0)}")),
        ("quarantine", quarantine),
        ("protected_write", protected_write),
        # A hot level shared by every worker (concurrent changes are combined), and a level per
        # worker; keys make each movement exactly-once.
        ("stock_hot", lambda: gov.stock.adjust("hot", "wh", 1, movement_key=f"hot-{key}")),
        ("stock_own", stock_own),
        ("locked_write", locked_write),
        ("validate", lambda: gov.authority.has_authority("Billing", "soak.invoice", "CREATE")),
    ]

    def corrupt_stock() -> None:
        # A bad write the scan below must find (each row once: then its record is open).
        with gov.transaction() as tx:
            tx.execute(
                "UPDATE public.soak_stock SET quantity = -1 WHERE id = %s",
                ((worker * 7919 + n) % 1000 + 1,),
            )

    if n % 20 == 0:
        ops += [
            ("corrupt_stock", corrupt_stock),
            ("scan", lambda: gov.quarantine.scan_negative("public.soak_stock", "quantity")),
            ("stats", gov.idempotency.stats),
            ("health", gov.health),
        ]
    return ops


async def async_round(gov: pygov.aio.AsyncGovernance, tally: Tally, task: int, n: int) -> None:
    key = f"a{task}-{n}"

    async def guarded_write() -> None:
        async with gov.transaction() as tx, gov.idempotency.guard("soak.order", key, conn=tx) as g:
            if not g.is_duplicate:
                await tx.execute(
                    "INSERT INTO public.soak_orders VALUES ($1, $2, $3)", key, -task, n
                )
                g.result = {"order": key}

    with gov.context(user=f"async-{task}", request_id=key):
        await tally.run_async(
            "async_record", lambda: gov.idempotency.check_and_record("soak.a", key, ttl=2)
        )
        await tally.run_async("async_guarded_write", guarded_write)
        await tally.run_async(
            "async_audit_log", lambda: gov.audit.log_operation("soak.a", key, "CREATE")
        )
        await tally.run_async("async_history", lambda: gov.audit.history("public.soak_orders", key))
        await tally.run_async(
            "async_stock_hot", lambda: gov.stock.adjust("hot", "wh", 1, movement_key=f"hot-{key}")
        )


class Soak:
    def __init__(self, dsn: str, sqlite_path: str, args: argparse.Namespace) -> None:
        self.dsn = dsn
        self.sqlite_path = sqlite_path
        self.args = args
        self.tally = Tally()
        self.stop = threading.Event()

    def sync_worker(self, gov: pygov.Governance, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            with gov.context(user=f"worker-{worker}", service="soak", request_id=f"{worker}-{n}"):
                for name, op in sync_ops(gov, worker, n):
                    self.tally.run(name, op)
            n += 1

    def async_worker(self) -> None:
        async def main() -> None:
            gov = await pygov.aio.connect(self.dsn, pool_max_size=self.args.tasks)
            try:

                async def task(t: int) -> None:
                    n = 0
                    while not self.stop.is_set():
                        await async_round(gov, self.tally, t, n)
                        n += 1

                await asyncio.gather(*(task(t) for t in range(self.args.tasks)))
            finally:
                await gov.close()

        asyncio.run(main())

    def sqlite_worker(self, gov: pygov.Governance) -> None:
        """A thread per request, as some web servers do, on the SQLite backend."""
        n = 0
        while not self.stop.is_set():
            key = f"s{n}"

            def request(key: str = key) -> None:
                with gov.context(user="sqlite-user"):
                    self.tally.run(
                        "sqlite_record", lambda: gov.idempotency.check_and_record("s", key, ttl=2)
                    )
                    self.tally.run(
                        "sqlite_audit_log", lambda: gov.audit.log_operation("s", key, "CREATE")
                    )

            thread = threading.Thread(target=request)
            thread.start()
            thread.join()
            n += 1

    def maintenance(self, gov: pygov.Governance, lite: pygov.Governance) -> None:
        """Cleanup of expired records and seals, every few seconds, as a DBA's cron would."""
        while not self.stop.wait(3):
            self.tally.run("cleanup", gov.idempotency.cleanup_expired)
            self.tally.run("seal", gov.audit.seal)
            with lite.context(superuser=True):
                self.tally.run("sqlite_cleanup", lite.idempotency.cleanup_expired)
            self.tally.run("sqlite_seal", lite.audit.seal)

    def run(self) -> bool:
        gov = pygov.connect(self.dsn, pool_max_size=self.args.workers + 4)
        lite = pygov.connect(f"sqlite:///{self.sqlite_path}")
        lite.migrate()
        with gov.transaction() as tx:
            for statement in SETUP:
                tx.execute(statement)
        gov.audit.enable("public.soak_orders")
        gov.authority.load_matrix({"Billing": {"soak.invoice": ["CREATE"]}, "Rogue": {}})
        gov.authority.protect("public.soak_invoices", "soak.invoice")
        with lite.transaction() as tx:
            tx.execute(SQLITE_SETUP)
        lite.audit.enable("soak_orders")
        threads = [
            threading.Thread(target=self.sync_worker, args=(gov, w))
            for w in range(self.args.workers)
        ]
        threads += [
            threading.Thread(target=self.async_worker),
            threading.Thread(target=self.sqlite_worker, args=(lite,)),
            threading.Thread(target=self.maintenance, args=(gov, lite)),
        ]
        try:
            memory = self.report(threads)
        finally:
            self.stop.set()
            for t in threads:
                t.join()
        try:
            return self.verdict(gov, lite, memory)
        finally:
            gov.close()
            lite.close()

    def report(self, threads: list[threading.Thread]) -> list[tuple[float, float]]:
        """Start the workers, print a line per interval; return the (seconds, RSS) samples."""
        started = time.monotonic()
        for t in threads:
            t.start()
        memory: list[tuple[float, float]] = []
        last_total, last_time = 0, started
        print(
            f"{'t':>6} {'ops/s':>9} {'total':>9} {'expected':>9} {'unexpected':>10} {'RSS MB':>8}"
        )
        while (elapsed := time.monotonic() - started) < self.args.seconds:
            time.sleep(min(self.args.interval, self.args.seconds - elapsed))
            now, total = time.monotonic(), self.tally.total()
            rss = rss_mb()
            memory.append((now - started, rss))
            rate = (total - last_total) / (now - last_time)
            expected = sum(self.tally.expected.values())
            unexpected = sum(self.tally.unexpected.values())
            print(
                f"{now - started:6.0f} {rate:9.0f} {total:9d} {expected:9d} {unexpected:10d}"
                f" {rss:8.1f}",
                flush=True,
            )
            last_total, last_time = total, now
        return memory

    def verdict(
        self, gov: pygov.Governance, lite: pygov.Governance, memory: list[tuple[float, float]]
    ) -> bool:
        gov.audit.seal()
        verified = gov.audit.verify()
        lite.audit.seal()
        lite_verified = lite.audit.verify()
        warm = min(60.0, self.args.seconds * 0.25)
        after = [rss for t, rss in memory if t >= warm]
        baseline, final = (after[0], after[-1]) if after else (0.0, 0.0)
        growth = final - baseline
        allowed = max(20.0, baseline * 0.10)
        elapsed = memory[-1][0] if memory else 0.0
        print()
        print("operations:", ", ".join(f"{k} {v}" for k, v in sorted(self.tally.ops.items())))
        print(
            f"throughput: {self.tally.total() / max(elapsed, 1e-9):.0f} ops/s over {elapsed:.0f} s"
        )
        print("expected errors:", dict(self.tally.expected) or "none")
        print("unexpected errors:", dict(self.tally.unexpected) or "none")
        for sample in self.tally.samples:
            print(sample)
        print(
            f"memory after warm-up ({warm:.0f} s): {baseline:.1f} MB -> {final:.1f} MB "
            f"(growth {growth:+.1f} MB, allowed {allowed:.1f} MB)"
        )
        print(f"audit trail: PostgreSQL {verified}, SQLite {lite_verified}")
        gov.quarantine.scan_negative("public.soak_stock", "quantity")
        quarantined = len(gov.quarantine.list("OPEN", model_name="public.soak_stock"))
        with gov.transaction() as tx:
            row = tx.execute("SELECT count(*) FROM public.soak_stock WHERE quantity < 0").fetchone()
        negative = int(row[0]) if row else -1
        print(f"negative stock rows: {negative}, quarantined: {quarantined}")
        hot_moves = self.tally.ops["stock_hot"] + self.tally.ops["async_stock_hot"]
        hot_level = gov.stock.level("hot", "wh")
        print(f"hot stock level: {hot_level} after {hot_moves} acknowledged movements")
        checks = {
            "no unexpected errors": not self.tally.unexpected,
            "no memory growth after warm-up": growth <= allowed,
            "audit trail verifies": bool(verified) and bool(lite_verified),
            "every negative stock row quarantined": quarantined == negative > 0,
            "every stock movement applied once": hot_level == hot_moves > 0,
            "every kind of operation ran": all(
                self.tally.ops[name] > 0
                for name in (
                    "record",
                    "guarded_write",
                    "quarantine",
                    "protected_write",
                    "stock_own",
                    "locked_write",
                    "async_record",
                    "sqlite_record",
                    "seal",
                )
            ),
        }
        for name, ok in checks.items():
            print(f"  {'PASS' if ok else 'FAIL'}  {name}")
        return all(checks.values())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long (default 300)")
    parser.add_argument("--interval", type=float, default=10.0, help="report every N seconds")
    parser.add_argument("--workers", type=int, default=8, help="sync worker threads")
    parser.add_argument("--tasks", type=int, default=8, help="async tasks")
    args = parser.parse_args(argv)
    server = BenchServer()
    try:
        with server.database() as dsn, tempfile.TemporaryDirectory() as tmp:
            ok = Soak(dsn, os.path.join(tmp, "soak.db"), args).run()
    finally:
        server.close()
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
