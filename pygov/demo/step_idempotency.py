"""Demo step: duplicate fee postings collapse to one journal entry."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pygov

if TYPE_CHECKING:
    from pygov.demo import Demo


def run(demo: Demo) -> None:
    gov = demo.gov
    with demo.step("Idempotency: 8 threads post the same fee payment 100 times each"):
        key = pygov.keys.journal_entry("students", "StudentFee", 101, "payment")
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def post_payment(worker: int) -> None:
            barrier.wait()
            with gov.context(user=f"cashier-{worker}", service="FeesGateway"):
                for _ in range(100):
                    try:
                        with (
                            gov.transaction() as conn,
                            gov.idempotency.guard("journal_entry", key, conn=conn, wait=10) as g,
                        ):
                            if g.is_duplicate:
                                continue
                            rows = demo.sql(
                                f"INSERT INTO {demo.table('journal_entry')} "
                                "(fee_id, amount, description) VALUES (?, ?, ?) RETURNING id",
                                (101, 450, "fee 101 paid"),
                                conn=conn,
                            )
                            demo.sql(
                                f"UPDATE {demo.table('student_fee')} SET paid = ? WHERE id = ?",
                                (True, 101),
                                conn=conn,
                            )
                            g.result = {"journal_entry_id": rows[0][0]}
                    except pygov.GovernanceError as exc:
                        errors.append(exc)

        threads = [threading.Thread(target=post_payment, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        entries = demo.sql(
            f"SELECT count(*) FROM {demo.table('journal_entry')} WHERE fee_id = ?", (101,)
        )[0][0]
        stats = gov.idempotency.stats().get("journal_entry")
        demo.say(f"800 attempts, {len(errors)} errors; key {key}")
        demo.check(entries == 1, f"one journal entry for fee 101 (found {entries})")
        if stats is not None:
            demo.say(
                f"idempotency stats: {stats.completed} completed, "
                f"{stats.duplicates_served} duplicates served"
            )
