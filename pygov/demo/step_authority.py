"""Demo step: the authority matrix guards a table; a delegation opens it until it is revoked."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pygov

if TYPE_CHECKING:
    from pygov.demo import Demo

FEES = "students.student_fee"
JOURNAL = "accounting.journal_entry"
MATRIX = {
    "AccountingGateway": {JOURNAL: ["CREATE", "UPDATE"], FEES: ["UPDATE"]},
    "FeesGateway": {FEES: ["CREATE", "UPDATE"]},
    "ReportingService": {},
}


def run(demo: Demo) -> None:
    gov = demo.gov
    fees = demo.table("student_fee")
    update = f"UPDATE {fees} SET amount = amount + ? WHERE id = ?"

    def head() -> Any:
        """The head of finance: a governance_admin (superuser=True stands for it on SQLite)."""
        return gov.context(user="head-of-finance", superuser=True)

    def reporting_update(fee_id: int) -> str:
        """ReportingService corrects a fee with plain SQL: the database decides."""
        try:
            with gov.context(user="report-bot", service="ReportingService"):
                demo.sql(update, (1, fee_id))
        except pygov.AuthorityViolationError as exc:
            return f"refused ({exc.context.get('reason') or 'GV001'})"
        return "accepted"

    with demo.step("Authority: a protected table refuses a service until a delegation lets it in"):
        with head():
            loaded = gov.authority.load_matrix(MATRIX, critical=[JOURNAL])
            gov.authority.protect(fees, model_name=FEES)
        demo.say(
            f"matrix: {loaded.services} services, {loaded.grants} grants; {JOURNAL} is "
            f"critical; {fees} is protected as {FEES}"
        )
        first = reporting_update(102)
        demo.check(first.startswith("refused"), f"ReportingService's UPDATE: {first}")
        trail = demo.sql(
            f"SELECT count(*) FROM {demo.gtable('audit_trail')} "
            "WHERE operation = 'AUTHORITY_VIOLATION' AND source_service = ? AND model_name = ?",
            ("ReportingService", FEES),
        )[0][0]
        demo.check(trail == 1, f"the refusal is in the audit trail ({trail} violation row)")

        with head():
            try:
                gov.authority.delegate(
                    "AccountingGateway", "ReportingService", JOURNAL, "CREATE", 600, "no"
                )
                critical = "accepted"
            except pygov.AuthorityViolationError:
                critical = "refused"
            delegation = gov.authority.delegate(
                "FeesGateway",
                "ReportingService",
                FEES,
                "UPDATE",
                timedelta(minutes=15),
                "term-end fee corrections",
            )
        demo.check(critical == "refused", f"delegating the critical {JOURNAL}: {critical}")
        demo.say(
            f"delegation #{delegation.id}: FeesGateway -> ReportingService, UPDATE {FEES}, "
            f"until {delegation.valid_until:%H:%M:%S} UTC"
        )
        second = reporting_update(102)
        demo.check(second == "accepted", f"ReportingService's UPDATE with the delegation: {second}")

        with head():
            gov.authority.revoke(delegation.id, "corrections done")
        third = reporting_update(102)
        demo.check(third.startswith("refused"), f"after revocation: {third}")
        problems = gov.authority.problems()
        demo.check(problems == [], f"authority health check: {len(problems)} problem(s)")
        # Later steps write these tables with services of their own: lift the guard again.
        with head():
            gov.authority.unprotect(fees)
