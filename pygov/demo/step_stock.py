"""Demo step: concurrent sales cannot overdraw a stock level; a stock-take holds a lock."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pygov

if TYPE_CHECKING:
    from pygov.demo import Demo

ITEM, SHELF = "calculator", "school-shop"
CASHIERS, ATTEMPTS = 8, 5


def run(demo: Demo) -> None:
    gov = demo.gov
    with demo.step(
        f"Guarded stock: {CASHIERS} tills try to sell {CASHIERS * ATTEMPTS} calculators "
        "from a shelf of 12"
    ):
        delivery = pygov.keys.stock_movement(ITEM, SHELF, "IN", "PO-2024-17")
        gov.stock.adjust(ITEM, SHELF, 12, movement_key=delivery)
        rescanned = gov.stock.adjust(ITEM, SHELF, 12, movement_key=delivery)
        demo.check(rescanned == 12, "the delivery scanned twice counts once (12 on the shelf)")

        barrier = threading.Barrier(CASHIERS)
        sold: list[int] = []
        refusals: list[pygov.errors.ValidationError] = []
        errors: list[BaseException] = []

        def till(worker: int) -> None:
            barrier.wait()
            with gov.context(user=f"cashier-{worker}", service="ShopTill"):
                for _ in range(ATTEMPTS):
                    try:
                        sold.append(gov.stock.adjust(ITEM, SHELF, -1))
                    except pygov.errors.ValidationError as exc:
                        refusals.append(exc)
                    except BaseException as exc:  # reported below
                        errors.append(exc)

        threads = [threading.Thread(target=till, args=(i,)) for i in range(CASHIERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        level = gov.stock.level(ITEM, SHELF)
        history = gov.stock.movements(ITEM, SHELF, limit=1000)
        demo.say(
            f"{len(sold)} sold, {len(refusals)} refused, {len(errors)} unexpected errors; "
            f"{len(history)} movements recorded"
        )
        if refusals:
            ctx = refusals[-1].context
            demo.say(
                f"a refusal says: {refusals[-1].message} "
                f"(available {ctx['available']}, requested {ctx['requested']})"
            )
        demo.check(len(sold) == 12 and not errors, f"exactly 12 sales went through ({len(sold)})")
        demo.check(level == 0, f"the shelf is empty, not negative (level {level})")
        demo.check(
            all(m.quantity_after >= 0 for m in history),
            "no movement ever left the level below zero",
        )
        demo.check(
            {m.user for m in history if m.delta < 0} <= {f"cashier-{i}" for i in range(CASHIERS)},
            "every sale is recorded with the cashier who made it",
        )
        monitor = gov.monitor.stats()
        stats, batches = monitor.get("stock.adjust"), monitor.get("stock.adjust_batch")
        if stats is not None:
            demo.say(
                f"monitor: stock.adjust ran {stats.total} times, at most {stats.peak} at once, "
                f"{stats.errors} refused; {stats.waited} queued behind another till's round "
                f"trip and were sent in {batches.total if batches else 0} combined batches"
            )

    with demo.step("Advisory lock: a second stock-take of the same shop must wait its turn"):
        held = threading.Event()
        done = threading.Event()

        def stock_take() -> None:
            with gov.locks.advisory(f"stock-take:{SHELF}"):
                held.set()
                done.wait(10)

        first = threading.Thread(target=stock_take)
        first.start()
        held.wait(10)
        try:
            with gov.locks.advisory(f"stock-take:{SHELF}", timeout=0.2):
                refused = None
        except pygov.errors.ConcurrencyError as exc:
            refused = exc
        finally:
            done.set()
            first.join()
        demo.check(refused is not None, "the second stock-take was turned away after 0.2 s")
        if refused is not None:
            demo.say(
                f"it says: {refused.message} (lock {refused.context['lock']!r}, "
                f"waited {refused.context['waited_seconds']} s)"
            )
        with gov.locks.advisory(f"stock-take:{SHELF}", timeout=1):
            demo.say("once the first stock-take committed, the lock was free again")
