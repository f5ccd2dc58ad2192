"""Demo step: corrupt rows are found by scans, held by the guard, reviewed and resolved."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pygov

if TYPE_CHECKING:
    from pygov.demo import Demo
    from pygov.quarantine import QuarantineRecord


def _show(demo: Demo, records: list[QuarantineRecord]) -> None:
    for r in records:
        outcome = f"{r.resolution} by {r.resolved_by}" if r.resolution else "open"
        if r.reviewed_by:
            outcome += f", reviewed by {r.reviewed_by}"
        demo.say(
            f"#{r.id} {r.model_name} id={r.object_id} {r.corruption_type} {r.status} "
            f"({outcome}): {r.reason}"
        )


def run(demo: Demo) -> None:
    gov = demo.gov
    journal = demo.table("journal_entry")
    fees = demo.table("student_fee")
    inventory = demo.table("inventory")
    with demo.step("Quarantine: a payment for a fee that does not exist, and stock below zero"):
        # A buggy client writes what the governance layer must catch afterwards.
        entry_id = demo.sql(
            f"INSERT INTO {journal} (fee_id, amount, description) VALUES (?, ?, ?) RETURNING id",
            (999, 120, "fee 999 paid (no such fee)"),
        )[0][0]
        demo.sql(f"INSERT INTO {inventory} (item, quantity) VALUES (?, ?)", ("eraser", -3))
        demo.say(f"injected: journal entry {entry_id} for fee 999, inventory 'eraser' at -3")

        with gov.context(user="dba", service="NightlyScan"):
            orphans = gov.quarantine.orphaned_journal_entry(journal, "fee_id", fees)
            negative = gov.quarantine.negative_stock(inventory)
            again = gov.quarantine.orphaned_journal_entry(
                journal, "fee_id", fees
            ) + gov.quarantine.negative_stock(inventory)
        demo.check(orphans == 1, f"the orphan scan quarantined 1 journal entry ({orphans})")
        demo.check(negative == 1, f"the stock scan quarantined 1 inventory row ({negative})")
        demo.check(again == 0, f"scanning again quarantines nothing new ({again})")
        _show(demo, gov.quarantine.list(status="OPEN"))

        with gov.context(user="head-bursar", superuser=True):
            gov.quarantine.guard(inventory)
        try:
            with gov.context(user="shop", service="ShopGateway"):
                demo.sql(
                    f"UPDATE {inventory} SET quantity = quantity + 10 WHERE item = ?", ("eraser",)
                )
            blocked = False
        except pygov.QuarantineError as exc:
            blocked = True
            demo.say(f"guarded write refused: {exc.message}")
        demo.check(blocked, "the guard refuses writes to the quarantined inventory row")

        entry = gov.quarantine.list(status="OPEN", corruption_type="ORPHANED_RECORD")[0]
        stock = gov.quarantine.list(status="OPEN", corruption_type="NEGATIVE_STOCK")[0]
        with gov.context(user="auditor-ana"):
            gov.quarantine.start_review(entry.id)
            gov.quarantine.start_review(stock.id)
        with gov.context(user="head-bursar", superuser=True):
            # Resolve and repair in one transaction: both happen, or neither.
            with gov.transaction() as tx:
                gov.quarantine.resolve(
                    entry.id, "fee 999 was never issued: entry reversed", "DISCARDED", conn=tx
                )
                demo.sql(f"DELETE FROM {journal} WHERE id = ?", (entry_id,), conn=tx)
            with gov.transaction() as tx:
                gov.quarantine.resolve(stock.id, "recounted: none left", "REPAIRED", conn=tx)
                demo.sql(
                    f"UPDATE {inventory} SET quantity = ? WHERE item = ?", (0, "eraser"), conn=tx
                )
            try:
                gov.quarantine.resolve(stock.id, "twice")
                twice = False
            except pygov.QuarantineError:
                twice = True
            gov.quarantine.unguard(inventory)
        demo.check(twice, "resolving a resolved record is a QuarantineError")

        records = [gov.quarantine.get(entry.id), gov.quarantine.get(stock.id)]
        _show(demo, [r for r in records if r is not None])
        demo.check(gov.quarantine.list(status="OPEN") == [], "no record is left open")
        quantity = demo.sql(f"SELECT quantity FROM {inventory} WHERE item = ?", ("eraser",))[0][0]
        demo.check(quantity == 0, f"the repaired inventory row reads {quantity}")
        audited = demo.sql(
            f"SELECT count(*) FROM {demo.gtable('audit_trail')} WHERE model_name = ?",
            ("governance.quarantine_record",),
        )[0][0]
        demo.check(
            audited == 6, f"6 audit rows: 2 scans, 2 reviews, 2 resolutions (found {audited})"
        )
