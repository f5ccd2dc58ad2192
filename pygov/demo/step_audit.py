"""Demo step: an audited fee table, written by different people and services; its history,
a seal and a verification, and a rewrite of history that the database refuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

import pygov
from pygov._pg import PgBackend

if TYPE_CHECKING:
    from pygov.demo import Demo

MODEL = "students.student_fee"


def run(demo: Demo) -> None:
    gov = demo.gov
    fees = demo.table("student_fee")
    with demo.step("Audit trail: every write to student_fee is recorded, sealed and verified"):
        # Records from earlier demo runs on the same database are older than this one.
        start = gov.audit.log_admin_access("demo_audit_start", MODEL)
        audited = gov.audit.enable(fees, model_name=MODEL)
        demo.say(
            f"auditing {audited.table_name} as {audited.model_name}, key {audited.key_columns}"
        )
        with gov.context(user="cashier-2", service="FeesGateway", ip="10.1.2.3"):
            demo.sql(f"UPDATE {fees} SET paid = ? WHERE id = ?", (True, 102))
        with gov.context(user="bursar", service="FinanceService", request_id="req-7781"):
            demo.sql(f"UPDATE {fees} SET amount = ? WHERE id = ?", (425, 102))
            demo.sql(f"UPDATE {fees} SET amount = amount WHERE id = ?", (102,))  # no change
        with gov.context(user="registrar", service="AdmissionsService"):
            demo.sql(
                f"INSERT INTO {fees} (id, student_id, amount, paid) VALUES (?, ?, ?, ?)",
                (104, 3, 120, False),
            )
        if isinstance(gov._backend, PgBackend):
            # A DBA in psql: no governance context, still recorded with the database role.
            with psycopg.connect(gov._backend.dsn, autocommit=True) as dba:
                dba.execute(f"UPDATE {fees} SET amount = 430 WHERE id = 102")
        gov.audit.log_admin_access("review_fees", MODEL, extra={"reason": "monthly close"})

        history = [r for r in gov.audit.history(MODEL, 102) if r.id > start]
        demo.say(f"history of fee 102, newest first ({len(history)} records):")
        for rec in history:
            who = rec.user_name or f"role {rec.db_role} (no context)"
            changes = ", ".join(
                f"{f} {rec.before_data[f]} -> {rec.after_data[f]}" for f in rec.changed_fields or []
            )
            demo.say(f"  #{rec.id} {rec.operation} by {who} via {rec.source_service}: {changes}")
        expected: list[tuple[str | None, list[str]]] = [
            ("bursar", ["amount"]),
            ("cashier-2", ["paid"]),
        ]
        if demo.is_postgres:
            expected.insert(0, (None, ["amount"]))
        demo.check(
            [(r.user_name, r.changed_fields) for r in history] == expected,
            "every update recorded with who changed what; the no-op update left no record",
        )
        before_bursar = gov.audit.object_at(MODEL, 102, history[-1].occurred_at)
        demo.check(
            before_bursar is not None and float(before_bursar["amount"]) == 450,
            "object_at rebuilds fee 102 as it was before the bursar's change (amount 450)",
        )

        try:
            demo.sql(f"UPDATE {demo.gtable('audit_trail')} SET user_name = ?", ("nobody",))
            refused = False
        except pygov.GovernanceError as exc:
            refused = exc.sqlstate == "GV001"
        demo.check(refused, "rewriting the audit trail is refused (GV001, append-only)")

        seals = gov.audit.seal()
        sealed = sum(s.row_count for s in seals)
        demo.say(f"sealed {sealed} audit rows; chain head {seals[-1].hash[:16]}...")
        result = gov.audit.verify()
        demo.check(
            result.ok and result.rows_checked >= sealed,
            f"verify: {result.seals_checked} seal(s), {result.rows_checked} rows, chain intact",
        )
