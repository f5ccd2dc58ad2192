"""Authority matrix and delegation: contract tests on sync PostgreSQL, async PostgreSQL and SQLite,
then PostgreSQL-only tests (raw SQL, roles, dblink fallback)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import pygov
import pygov.aio
from pygov._core import utcnow
from pygov.authority import AuthorityMatrix, Delegation
from pygov.errors import AuthorityViolationError, GovernanceError, ValidationError
from tests.conftest import Backend, PgServer, admin_execute
from tests.helpers import run_threads

JE = "accounting.journal_entry"
INV = "inventory.stock"
MATRIX = {
    "AccountingGateway": {JE: ["CREATE", "UPDATE"], INV: ["UPDATE"]},
    "InventoryService": {INV: ["CREATE", "UPDATE", "DELETE"]},
    "ReportingService": {},
}


def admin(gov: Any, **fields: Any) -> Any:
    """An admin context: governance_admin on PostgreSQL (the test connects as a superuser),
    ``superuser=True`` on SQLite."""
    return gov.context(superuser=True, user=fields.pop("user", "admin"), **fields)


def violations(backend: Backend) -> list[dict[str, Any]]:
    rows = backend.query(
        "SELECT source_service, model_name, user_name, extra FROM "
        f"{backend.table('audit_trail')} WHERE operation = 'AUTHORITY_VIOLATION' ORDER BY id"
    )
    return [
        {
            "service": r[0],
            "model": r[1],
            "user": r[2],
            "extra": json.loads(r[3]) if isinstance(r[3], str) else r[3],
        }
        for r in rows
    ]


def audit_of(backend: Backend, model: str) -> list[tuple[Any, ...]]:
    rows = backend.query(
        f"SELECT object_id, operation, extra, before_data, after_data FROM "
        f"{backend.table('audit_trail')} WHERE model_name = ? ORDER BY id",
        (model,),
    )
    return [
        tuple(json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v for v in r) for r in rows
    ]


def count(backend: Backend, table: str) -> int:
    return int(backend.query(f"SELECT count(*) FROM {backend.table(table)}")[0][0])


@pytest.fixture
def journal(gov: Any, backend: Backend) -> str:
    """A business table protected as accounting.journal_entry, with the matrix loaded."""
    name = "acct_journal_entry"
    if backend.is_postgres:
        backend.query(f"CREATE TABLE public.{name} (id int PRIMARY KEY, amount numeric NOT NULL)")
        table = f"public.{name}"
    else:
        backend.query(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL)")
        table = name
    with admin(gov):
        gov.authority.load_matrix(MATRIX, critical=[JE])
        assert gov.authority.protect(table, model_name=JE) == JE
    return table


def write(gov: Any, backend: Backend, statement: str, *params: Any) -> None:
    with gov.transaction() as tx:
        backend.execute(tx, statement, params)


@contextmanager
def non_admin(gov: Any, backend: Backend) -> Iterator[Any]:
    """A transaction whose caller is no governance_admin: on PostgreSQL a role that only belongs
    to governance_app (SET LOCAL ROLE); on SQLite a context without ``superuser``."""
    if not backend.is_postgres:
        with gov.context(superuser=False), gov.transaction() as tx:
            yield tx
        return
    role = f"pygov_app_{uuid.uuid4().hex[:10]}"
    backend.query(f"CREATE ROLE {role} NOLOGIN IN ROLE governance_app")
    try:
        with gov.transaction() as tx:
            backend.execute(tx, f"SET LOCAL ROLE {role}")
            yield tx
    finally:
        backend.query(f"DROP ROLE {role}")


# --- the matrix ---------------------------------------------------------------------------


def test_load_matrix_replaces_the_previous_one(gov: Any, backend: Backend) -> None:
    with admin(gov):
        first = gov.authority.load_matrix(MATRIX, critical=[JE])
        assert (first.services, first.models, first.grants, first.critical) == (3, 2, 6, 1)
        assert gov.authority.matrix() == AuthorityMatrix(
            {
                "AccountingGateway": {JE: ["CREATE", "UPDATE"], INV: ["UPDATE"]},
                "InventoryService": {INV: ["CREATE", "DELETE", "UPDATE"]},
                "ReportingService": {},
            },
            [JE],
        )
        second = gov.authority.load_matrix({"PayrollService": {"hr.payslip": ["CREATE"]}})
    assert (second.services, second.models, second.grants, second.critical) == (1, 1, 1, 0)
    matrix = gov.authority.matrix()
    assert matrix.grants == {"PayrollService": {"hr.payslip": ["CREATE"]}}
    assert matrix.critical == []
    assert matrix.allows("PayrollService", "hr.payslip", "CREATE")
    assert not gov.authority.has_authority("AccountingGateway", JE, "CREATE")
    # The load itself is audited, with the matrix before and after.
    loads = audit_of(backend, "governance.authority_matrix")
    assert len(loads) == 2
    assert loads[1][3]["grants"]["AccountingGateway"][JE] == ["CREATE", "UPDATE"]
    assert loads[1][4]["grants"] == {"PayrollService": {"hr.payslip": ["CREATE"]}}


def test_load_matrix_refuses_bad_input_and_changes_nothing(gov: Any, backend: Backend) -> None:
    with admin(gov):
        gov.authority.load_matrix(MATRIX, critical=[JE])
        before = gov.authority.matrix()
        bad: list[Any] = [
            ["not", "a", "mapping"],
            {"S": ["CREATE"]},
            {"S": {"m": "CREATE"}},
            {"S": {"m": [1]}},
            {"": {"m": ["CREATE"]}},
            {"S": {"m": ["FROB"]}},
        ]
        for matrix in bad:
            with pytest.raises(ValidationError):
                gov.authority.load_matrix(matrix)
        with pytest.raises(ValidationError) as err:
            gov.authority.load_matrix({"S": {"m": ["CREATE", "APPROVE"]}})
        with pytest.raises(ValidationError):
            gov.authority.load_matrix(MATRIX, critical="accounting.journal_entry")
    assert err.value.context["operations"] == ["APPROVE"]
    assert gov.authority.matrix() == before


def test_only_admins_load_the_matrix(gov: Any, backend: Backend) -> None:
    with pytest.raises(AuthorityViolationError) as err, non_admin(gov, backend) as tx:
        gov.authority.load_matrix(MATRIX, conn=tx)
    assert err.value.context["operation"] == "LOAD_MATRIX"
    assert gov.authority.matrix() == AuthorityMatrix({}, [])
    assert [v["extra"]["attempted_operation"] for v in violations(backend)] == ["LOAD_MATRIX"]


# --- validate -----------------------------------------------------------------------------


def test_validate_allows_what_the_matrix_grants(gov: Any, journal: str) -> None:
    grant = gov.authority.validate("AccountingGateway", JE, "CREATE")
    assert (grant.via, grant.delegation_id) == ("matrix", None)
    assert grant.service == "AccountingGateway"
    assert gov.authority.has_authority("InventoryService", INV, "DELETE") is True


def test_validate_refuses_records_and_names_the_attempt(
    gov: Any, backend: Backend, journal: str
) -> None:
    with (
        gov.context(user="mallory", service="ReportingService"),
        pytest.raises(AuthorityViolationError) as err,
    ):
        gov.authority.validate("ReportingService", JE, "DELETE")
    ctx = err.value.context
    assert (ctx["service"], ctx["model"], ctx["operation"]) == ("ReportingService", JE, "DELETE")
    assert ctx["violation_recorded"] is True
    [v] = violations(backend)
    assert (v["service"], v["model"], v["user"]) == ("ReportingService", JE, "mallory")
    assert v["extra"]["attempted_operation"] == "DELETE"
    assert v["extra"]["reason"] == "no matrix entry and no live delegation"
    # Asking is not attempting: has_authority records nothing.
    assert gov.authority.has_authority("ReportingService", JE, "DELETE") is False
    assert len(violations(backend)) == 1


def test_violation_survives_the_callers_rollback(gov: Any, backend: Backend, journal: str) -> None:
    with (
        pytest.raises(AuthorityViolationError),
        gov.context(service="AccountingGateway"),
        gov.transaction() as tx,
    ):
        backend.execute(tx, f"INSERT INTO {journal} VALUES (?, ?)", (1, 10))
        gov.authority.validate("ReportingService", JE, "UPDATE", conn=tx)
    # The caller's transaction rolled back (its insert is gone); the violation did not, and the
    # database layer recorded it (a dblink loopback / SQLite's after-transaction write), not the
    # wrapper's fallback.
    assert count_rows(backend, journal) == 0
    [v] = violations(backend)
    assert "recorded_by" not in v["extra"]
    assert (v["service"], v["model"], v["extra"]["attempted_operation"]) == (
        "ReportingService",
        JE,
        "UPDATE",
    )


def count_rows(backend: Backend, table: str) -> int:
    return int(backend.query(f"SELECT count(*) FROM {table}")[0][0])


@pytest.mark.parametrize(
    ("service", "model", "operation"),
    [("", JE, "CREATE"), ("S", None, "CREATE"), ("S", JE, "x" * 65), ("S", JE, 3)],
)
def test_validate_rejects_bad_arguments(
    gov: Any, backend: Backend, service: Any, model: Any, operation: Any
) -> None:
    with pytest.raises(ValidationError):
        gov.authority.validate(service, model, operation)
    assert violations(backend) == []


# --- delegation ---------------------------------------------------------------------------


def test_delegation_lets_a_service_through_until_revoked(
    gov: Any, backend: Backend, journal: str
) -> None:
    with admin(gov, user="ops-lead"):
        d = gov.authority.delegate(
            "AccountingGateway", "ReportingService", INV, "UPDATE", timedelta(hours=2), "audit fix"
        )
    assert isinstance(d, Delegation)
    assert (d.from_service, d.to_service, d.model_name, d.operation) == (
        "AccountingGateway",
        "ReportingService",
        INV,
        "UPDATE",
    )
    assert d.valid_until - d.valid_from == timedelta(hours=2)
    assert d.created_by == "ops-lead" and d.is_valid() and not d.is_revoked
    grant = gov.authority.validate("ReportingService", INV, "UPDATE")
    assert (grant.via, grant.delegation_id) == ("delegation", d.id)
    assert gov.authority.check_delegation("ReportingService", INV, "UPDATE") == d
    assert gov.authority.check_delegation("ReportingService", INV, "DELETE") is None
    assert [x.id for x in gov.authority.delegations(active=True)] == [d.id]

    with admin(gov, user="ops-lead"):
        revoked = gov.authority.revoke(d.id, "done")
        again = gov.authority.revoke(d.id, "twice")
    assert revoked.is_revoked and not revoked.is_valid()
    assert (revoked.revoke_reason, revoked.revoked_by) == ("done", "ops-lead")
    assert again == revoked  # revoking twice is harmless
    assert gov.authority.check_delegation("ReportingService", INV, "UPDATE") is None
    assert gov.authority.delegations(active=True) == []
    with pytest.raises(AuthorityViolationError):
        gov.authority.validate("ReportingService", INV, "UPDATE")
    # One audit row for the delegation, one for the (single) revocation.
    trail = audit_of(backend, "governance.authority_delegation")
    assert [(r[0], r[1], r[2]["action"]) for r in trail] == [
        (str(d.id), "CREATE", "delegate"),
        (str(d.id), "UPDATE", "revoke"),
    ]
    assert trail[1][4]["revoke_reason"] == "done"


def test_delegation_expires_to_the_second(gov: Any, journal: str) -> None:
    with admin(gov):
        d = gov.authority.delegate("InventoryService", "ReportingService", INV, "DELETE", 1, "t")
    assert gov.authority.validate("ReportingService", INV, "DELETE").via == "delegation"
    time.sleep(max(0.0, (d.valid_until - utcnow()).total_seconds()) + 0.05)
    assert not d.is_valid()
    assert gov.authority.check_delegation("ReportingService", INV, "DELETE") is None
    with pytest.raises(AuthorityViolationError):
        gov.authority.validate("ReportingService", INV, "DELETE")


def test_delegation_rules(gov: Any, backend: Backend, journal: str) -> None:
    cases: list[tuple[tuple[Any, ...], type[GovernanceError], str]] = [
        # the grantor must hold it
        (
            ("ReportingService", "InventoryService", INV, "UPDATE", 60, "r"),
            AuthorityViolationError,
            "grantor",
        ),
        (
            ("AccountingGateway", "ReportingService", INV, "DELETE", 60, "r"),
            AuthorityViolationError,
            "grantor",
        ),
        # critical models are never delegated
        (
            ("AccountingGateway", "ReportingService", JE, "CREATE", 60, "r"),
            AuthorityViolationError,
            "critical",
        ),
        # durations: positive, at most 24 hours
        (
            (
                "AccountingGateway",
                "ReportingService",
                INV,
                "UPDATE",
                timedelta(hours=24, seconds=1),
                "r",
            ),
            ValidationError,
            "24 hours",
        ),
        (
            ("AccountingGateway", "ReportingService", INV, "UPDATE", 0, "r"),
            ValidationError,
            "positive",
        ),
        (
            ("AccountingGateway", "ReportingService", INV, "UPDATE", -5, "r"),
            ValidationError,
            "positive",
        ),
        (
            ("AccountingGateway", "NoSuchService", INV, "UPDATE", 60, "r"),
            ValidationError,
            "unknown service",
        ),
        (
            ("AccountingGateway", "AccountingGateway", INV, "UPDATE", 60, "r"),
            ValidationError,
            "itself",
        ),
        (
            ("AccountingGateway", "ReportingService", INV, "UPDATE", 60, "  "),
            ValidationError,
            "reason",
        ),
    ]
    with admin(gov):
        for args, error, words in cases:
            with pytest.raises(error) as err:
                gov.authority.delegate(*args)
            assert words in str(err.value), (args, err.value)
        full_day = gov.authority.delegate(
            "AccountingGateway", "ReportingService", INV, "UPDATE", timedelta(hours=24), "max"
        )
    assert full_day.valid_until - full_day.valid_from == timedelta(hours=24)
    assert count(backend, "authority_delegation") == 1
    refused = [v["extra"]["reason"] for v in violations(backend)]
    assert refused == [
        "the grantor does not hold this authority in the matrix",
        "the grantor does not hold this authority in the matrix",
        "critical models cannot be delegated",
    ]


def test_only_admins_delegate_and_revoke(gov: Any, backend: Backend, journal: str) -> None:
    with pytest.raises(AuthorityViolationError) as err, non_admin(gov, backend) as tx:
        gov.authority.delegate(
            "AccountingGateway", "ReportingService", INV, "UPDATE", 60, "r", conn=tx
        )
    assert err.value.context["operation"] == "DELEGATE"
    assert count(backend, "authority_delegation") == 0
    with admin(gov):
        d = gov.authority.delegate("AccountingGateway", "ReportingService", INV, "UPDATE", 60, "r")
    with pytest.raises(AuthorityViolationError), non_admin(gov, backend) as tx:
        gov.authority.revoke(d.id, "not mine", conn=tx)
    assert gov.authority.check_delegation("ReportingService", INV, "UPDATE") == d
    with admin(gov), pytest.raises(ValidationError):
        gov.authority.revoke(d.id + 1000, "no such")
    assert [v["extra"]["attempted_operation"] for v in violations(backend)] == [
        "DELEGATE",
        "REVOKE",
    ]


def test_duration_check_also_binds_direct_inserts(gov: Any, backend: Backend, journal: str) -> None:
    table = backend.table("authority_delegation")
    insert = (
        f"INSERT INTO {table} (from_service, to_service, model_name, operation, reason,"
        " valid_from, valid_until) VALUES ('AccountingGateway', 'ReportingService', ?, 'UPDATE',"
        " 'dba', ?, ?)"
    )
    start = "2030-01-01T00:00:00.000000+00:00"
    for end in ("2030-01-02T00:00:01.000000+00:00", "2030-01-01T00:00:00.000000+00:00"):
        with pytest.raises((psycopg.errors.CheckViolation, sqlite3.IntegrityError)) as err:
            backend.query(insert, (INV, start, end))
        assert "check" in str(err.value).lower()
    backend.query(insert, (INV, start, "2030-01-02T00:00:00.000000+00:00"))
    assert count(backend, "authority_delegation") == 1


def test_matrix_changes_revoke_the_delegations_they_undermine(
    gov: Any, backend: Backend, journal: str
) -> None:
    with admin(gov):
        kept = gov.authority.delegate(
            "InventoryService", "ReportingService", INV, "CREATE", 600, "a"
        )
        lost = gov.authority.delegate(
            "InventoryService", "ReportingService", INV, "DELETE", 600, "b"
        )
        critical = gov.authority.delegate(
            "AccountingGateway", "ReportingService", INV, "UPDATE", 600, "c"
        )
        reloaded = {**MATRIX, "InventoryService": {INV: ["CREATE", "UPDATE"]}}
        gov.authority.load_matrix(reloaded, critical=[JE])
        assert [d.id for d in gov.authority.delegations(active=True)] == [critical.id, kept.id]
        gov.authority.load_matrix(reloaded, critical=[JE, INV])
    live = gov.authority.delegations(active=True)
    assert live == []
    by_id = {d.id: d for d in gov.authority.delegations()}
    assert (
        by_id[lost.id].revoke_reason == "the grantor no longer holds this authority in the matrix"
    )
    assert by_id[critical.id].revoke_reason == "the model became critical"
    assert by_id[kept.id].revoke_reason == "the model became critical"


# --- protected tables ---------------------------------------------------------------------


def test_protected_table_refuses_unauthorised_writes(
    gov: Any, backend: Backend, journal: str
) -> None:
    with gov.context(service="AccountingGateway", user="clerk"):
        write(gov, backend, f"INSERT INTO {journal} VALUES (?, ?)", 1, 100)
        write(gov, backend, f"UPDATE {journal} SET amount = ? WHERE id = ?", 110, 1)
        with pytest.raises(AuthorityViolationError) as err:
            write(gov, backend, f"DELETE FROM {journal} WHERE id = ?", 1)
    ctx = err.value.context
    assert (ctx["model"], ctx["operation"]) == (JE, "DELETE")
    assert ctx["service"] == "AccountingGateway"
    for service in ("ReportingService", None):
        with gov.context(service=service), pytest.raises(AuthorityViolationError):
            write(gov, backend, f"INSERT INTO {journal} VALUES (?, ?)", 2, 5)
    assert backend.query(f"SELECT id, amount FROM {journal}") == [(1, 110)]
    seen = [(v["service"], v["extra"]["attempted_operation"]) for v in violations(backend)]
    assert seen == [
        ("AccountingGateway", "DELETE"),
        ("ReportingService", "CREATE"),
        ("(none)", "CREATE"),
    ]
    assert all(
        v["model"] == JE and "journal_entry" in v["extra"]["table"] for v in violations(backend)
    )


def test_delegation_opens_a_protected_table_until_revoked(
    gov: Any, backend: Backend, journal: str
) -> None:
    # The demo's story, on the table guard: refused, delegated, let through, revoked, refused.
    with admin(gov):
        gov.authority.load_matrix(
            {**MATRIX, "AccountingGateway": {JE: ["CREATE", "UPDATE"], INV: ["UPDATE"]}},
            critical=[],
        )
    insert = f"INSERT INTO {journal} VALUES (?, ?)"
    with gov.context(service="ReportingService"), pytest.raises(AuthorityViolationError):
        write(gov, backend, insert, 1, 1)
    with admin(gov):
        d = gov.authority.delegate(
            "AccountingGateway", "ReportingService", JE, "CREATE", 300, "month-end close"
        )
    with gov.context(service="ReportingService"):
        write(gov, backend, insert, 2, 2)
    with admin(gov):
        gov.authority.revoke(d.id, "close finished")
    with gov.context(service="ReportingService"), pytest.raises(AuthorityViolationError):
        write(gov, backend, insert, 3, 3)
    assert backend.query(f"SELECT id FROM {journal}") == [(2,)]
    assert len(violations(backend)) == 2


def test_protect_is_admin_only_and_validates_the_table(
    gov: Any, backend: Backend, journal: str
) -> None:
    with pytest.raises(AuthorityViolationError), non_admin(gov, backend) as tx:
        gov.authority.unprotect(journal, conn=tx)
    with admin(gov):
        with pytest.raises(ValidationError):
            gov.authority.protect("no_such_table")
        with pytest.raises(ValidationError):
            gov.authority.protect(backend.table("authority_matrix"))
        assert gov.authority.protect(journal, model_name=JE) == JE  # again: a no-op
        assert gov.authority.unprotect(journal) is True
        assert gov.authority.unprotect(journal) is False
    with gov.context(service="ReportingService"):
        write(gov, backend, f"INSERT INTO {journal} VALUES (?, ?)", 1, 1)
    assert [r[1] for r in audit_of(backend, "governance.authority_protected_table")] == [
        "CREATE",
        "DELETE",
    ]


def test_admin_override_is_audited_and_others_cannot_use_it(
    gov: Any, backend: Backend, journal: str
) -> None:
    with admin(gov, service="RepairScript"), gov.transaction() as tx:
        gov.authority.override("INC-42: restore a deleted entry", conn=tx)
        backend.execute(tx, f"INSERT INTO {journal} VALUES (?, ?)", (7, 70))
    assert backend.query(f"SELECT id FROM {journal}") == [(7,)]
    [activated] = audit_of(backend, "governance.authority_override")
    assert activated[4] == {"reason": "INC-42: restore a deleted entry"}
    [used] = [r for r in audit_of(backend, JE) if r[2].get("action") == "authority_override"]
    assert used[1] == "CREATE" and used[2]["reason"] == "INC-42: restore a deleted entry"

    with pytest.raises(AuthorityViolationError), non_admin(gov, backend) as tx:
        gov.authority.override("let me in", conn=tx)
    with pytest.raises(ValidationError):
        gov.authority.override("no transaction", conn=None)
    # The override ends with its transaction.
    with admin(gov, service="RepairScript"), pytest.raises(AuthorityViolationError):
        write(gov, backend, f"DELETE FROM {journal}")
    assert backend.query(f"SELECT id FROM {journal}") == [(7,)]


# --- health -------------------------------------------------------------------------------


def test_health_reports_what_is_wrong_with_the_matrix(
    gov: Any, backend: Backend, journal: str
) -> None:
    assert gov.authority.problems() == []
    assert gov.health().ok
    with admin(gov):
        gov.authority.delegate("AccountingGateway", "ReportingService", INV, "UPDATE", 600, "r")
        # ReportingService is forgotten, JE loses its writers, a critical model nobody writes.
        gov.authority.load_matrix(
            {"AccountingGateway": {INV: ["UPDATE"]}, "InventoryService": {INV: ["CREATE"]}},
            critical=["hr.payslip"],
        )
    backend.query(
        f"INSERT INTO {backend.table('authority_matrix')} (service, model_name, operation)"
        " VALUES ('InventoryService', ?, 'ARCHIVE')",
        (INV,),
    )
    checks = {p[2]["check"]: p for p in gov.authority.problems()}
    assert set(checks) == {
        "critical_model_unwritable",
        "unknown_operation",
        "delegation_unknown_service",
        "protected_model_absent",
    }
    assert checks["critical_model_unwritable"][2]["model"] == "hr.payslip"
    assert checks["unknown_operation"][2]["operation"] == "ARCHIVE"
    assert checks["delegation_unknown_service"][2]["to_service"] == "ReportingService"
    assert checks["protected_model_absent"][2]["model"] == JE
    report = gov.health()
    assert not report.ok
    authority = [p for p in report.problems if p.component == "authority"]
    assert {p.detail["check"] for p in authority} == set(checks)


# --- concurrency --------------------------------------------------------------------------


def test_readers_see_one_matrix_or_the_other_never_a_mix(gov: Any) -> None:
    a = {"S1": {"m1": ["CREATE"], "m2": ["CREATE"]}, "S2": {}}
    b = {"S2": {"m1": ["CREATE"], "m2": ["CREATE"]}, "S1": {}}
    expected = [AuthorityMatrix(a, []), AuthorityMatrix(b, [])]
    with admin(gov):
        gov.authority.load_matrix(a)

    def work(i: int) -> list[AuthorityMatrix]:
        if i < 2:
            with admin(gov):
                for n in range(10):
                    gov.authority.load_matrix(b if (n + i) % 2 == 0 else a)
            return []
        return [gov.authority.matrix() for _ in range(15)]

    results = run_threads(6, work)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    seen = [m for r in results for m in r]
    assert len(seen) == 60
    assert all(m in expected for m in seen)


def test_no_delegation_outlives_its_grant_under_concurrent_reloads(
    gov: Any, backend: Backend
) -> None:
    with_grant = {"Grantor": {"m": ["UPDATE"]}, "Grantee": {}}
    without = {"Grantor": {}, "Grantee": {}}
    with admin(gov):
        gov.authority.load_matrix(with_grant)

    first_made = threading.Event()

    def work(i: int) -> int:
        made = 0
        with admin(gov):
            if i == 0:
                # Start reloading once a delegation exists, so that there is one to revoke.
                first_made.wait(timeout=30)
                for n in range(12):
                    gov.authority.load_matrix(without if n % 2 == 0 else with_grant)
                gov.authority.load_matrix(without)
                return 0
            for n in range(12):
                try:
                    gov.authority.delegate("Grantor", "Grantee", "m", "UPDATE", 600, f"{i}-{n}")
                    made += 1
                    first_made.set()
                except AuthorityViolationError:
                    pass
        return made

    results = run_threads(5, work)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sum(results) > 0
    # Whatever interleaving happened, every delegation made was revoked with its grant.
    assert gov.authority.delegations(active=True) == []
    assert len(gov.authority.delegations()) == sum(results)
    assert gov.authority.problems() == []


# --- PostgreSQL only: raw SQL, DBAs, the loopback and its fallback ----------------------------


def _pg_setup(gov: pygov.Governance, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, amount numeric)")
    with gov.context(user="admin"):
        gov.authority.load_matrix(MATRIX, critical=[JE])
        gov.authority.protect("public.ledger", JE)


def _pg_violations(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT source_service, model_name, extra FROM governance.audit_trail"
            " WHERE operation = 'AUTHORITY_VIOLATION' ORDER BY id"
        ).fetchall()


def test_raw_sql_violations_survive_rollback(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn) as conn:  # not autocommit: one transaction, rolled back
        conn.execute("SELECT set_config('governance.service', 'ReportingService', true)")
        with pytest.raises(psycopg.Error) as err:
            conn.execute("INSERT INTO public.ledger VALUES (1, 1)")
        assert err.value.sqlstate == "GV001"
        detail = json.loads(err.value.diag.message_detail or "{}")
        assert detail["violation_recorded"] is True and detail["table"] == "public.ledger"
        conn.rollback()
        # A DBA's validate_authority, caught in a savepoint, then the whole transaction undone.
        conn.execute("SELECT set_config('governance.user', 'dba', true)")
        conn.execute("SAVEPOINT s")
        with pytest.raises(psycopg.Error):
            conn.execute(
                "SELECT * FROM governance.validate_authority('ReportingService', %s, 'UPDATE')",
                (INV,),
            )
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.rollback()
    rows = _pg_violations(pg_dsn)
    assert [(r[0], r[1], r[2]["attempted_operation"]) for r in rows] == [
        ("ReportingService", JE, "CREATE"),
        ("ReportingService", INV, "UPDATE"),
    ]
    assert rows[1][2]["role"]  # the caller's role, though the loopback wrote it


def test_truncate_counts_as_delete(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with (
        pg_gov.context(service="AccountingGateway"),
        pytest.raises(AuthorityViolationError) as err,
        pg_gov.transaction() as tx,
    ):
        tx.execute("TRUNCATE public.ledger")
    assert (err.value.context["operation"], err.value.context["statement"]) == (
        "DELETE",
        "TRUNCATE",
    )


def test_dba_edits_the_matrix_in_sql(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO governance.authority_matrix (service, model_name, operation)"
            " VALUES ('BatchJob', %s, 'UPDATE')",
            (JE,),
        )
        via = conn.execute(
            "SELECT via FROM governance.validate_authority('BatchJob', %s, 'UPDATE')", (JE,)
        ).fetchone()
        assert via == ("matrix",)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO governance.authority_delegation (from_service, to_service,"
                " model_name, operation, reason, valid_until) VALUES ('InventoryService',"
                " 'BatchJob', %s, 'DELETE', 'dba', clock_timestamp() + interval '25 hours')",
                (INV,),
            )
        with pytest.raises(psycopg.Error) as err:
            conn.execute(
                "SELECT governance.delegate_authority('InventoryService', 'BatchJob', %s,"
                " 'DELETE', interval '24 hours 1 second', 'dba')",
                (INV,),
            )
        assert err.value.sqlstate == "GV002"
        # Removing the grant in SQL revokes the delegations made from it.
        conn.execute(
            "INSERT INTO governance.authority_delegation (from_service, to_service,"
            " model_name, operation, reason, valid_until) VALUES ('InventoryService',"
            " 'BatchJob', %s, 'DELETE', 'dba', clock_timestamp() + interval '1 hour')",
            (INV,),
        )
        conn.execute(
            "DELETE FROM governance.authority_matrix WHERE service = 'InventoryService'"
            " AND operation = 'DELETE'"
        )
        [(reason,)] = conn.execute(
            "SELECT revoke_reason FROM governance.authority_delegation"
        ).fetchall()
        assert reason == "the grantor no longer holds this authority in the matrix"
        assert conn.execute(
            "SELECT count(*) FROM governance.validate_authority_matrix()"
        ).fetchone() == (0,)
    assert pg_gov.health().ok


def test_without_dblink_the_wrapper_records_the_violation(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP EXTENSION dblink")
    with pg_gov.context(service="ReportingService"):
        with pytest.raises(AuthorityViolationError) as err:
            pg_gov.authority.validate("ReportingService", INV, "DELETE")
        assert err.value.context["violation_recorded"] is True
        with pytest.raises(AuthorityViolationError) as err2, pg_gov.transaction() as tx:
            tx.execute("INSERT INTO public.ledger VALUES (1, 1)")
        assert err2.value.context["violation_recorded"] is True
    rows = _pg_violations(pg_dsn)
    assert [(r[1], r[2]["attempted_operation"]) for r in rows] == [(INV, "DELETE"), (JE, "CREATE")]
    assert all("wrapper" in r[2]["recorded_by"] for r in rows)
    # From psql there is no wrapper: the server log and the client get a WARNING with it all.
    notices: list[str] = []
    with psycopg.connect(pg_dsn) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        with pytest.raises(psycopg.Error) as raw:
            conn.execute("SELECT * FROM governance.validate_authority('X', 'm', 'UPDATE')")
    assert json.loads(raw.value.diag.message_detail or "{}")["violation_recorded"] is False
    assert any("not recorded autonomously" in n and '"service": "X"' in n for n in notices)


def test_failing_loopback_falls_back_too(
    pg_gov: pygov.Governance, pg_dsn: str, pg_server: PgServer
) -> None:
    _pg_setup(pg_gov, pg_dsn)
    db = sql.Identifier(conninfo_to_dict(pg_dsn)["dbname"])
    notices: list[str] = []
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        # The loopback cannot connect (this session, already in, keeps working).
        admin_execute(
            pg_server, sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(db)
        )
        try:
            with pytest.raises(psycopg.Error) as raw:
                conn.execute("SELECT * FROM governance.validate_authority('X', 'm', 'UPDATE')")
        finally:
            admin_execute(
                pg_server, sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(db)
            )
    detail = json.loads(raw.value.diag.message_detail or "{}")
    assert (detail["violation_recorded"], detail["service"]) == (False, "X")
    assert any("not recorded autonomously" in n for n in notices)
    assert _pg_violations(pg_dsn) == []  # nothing half-written


def test_without_dblink_the_async_wrapper_records_it_too(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP EXTENSION dblink")

    async def attempt() -> list[AuthorityViolationError]:
        agov = await pygov.aio.connect(pg_dsn, pool_min_size=1, pool_max_size=2)
        caught: list[AuthorityViolationError] = []
        try:
            with agov.context(service="ReportingService"):
                try:
                    await agov.authority.validate("ReportingService", INV, "DELETE")
                except AuthorityViolationError as exc:
                    caught.append(exc)
                try:
                    async with agov.transaction() as tx:
                        await tx.execute("INSERT INTO public.ledger VALUES (1, 1)")
                except AuthorityViolationError as exc:
                    caught.append(exc)
        finally:
            await agov.close()
        return caught

    caught = asyncio.run(attempt())
    assert [e.context["violation_recorded"] for e in caught] == [True, True]
    rows = _pg_violations(pg_dsn)
    assert [(r[1], r[2]["attempted_operation"]) for r in rows] == [(INV, "DELETE"), (JE, "CREATE")]
    assert all("wrapper" in r[2]["recorded_by"] for r in rows)


def test_health_notices_a_protected_table_that_was_dropped(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE public.ledger")
    [problem] = [p for p in pg_gov.health().problems if p.component == "authority"]
    assert (problem.severity, problem.detail["check"]) == ("warning", "protected_table_missing")
    with pg_gov.context(user="admin"):
        assert pg_gov.authority.unprotect(str(problem.detail["oid"])) is True
    assert pg_gov.health().ok


def test_a_reload_waits_for_a_delegation_in_flight_then_revokes_it(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    """The race made deterministic: a delegation is inserted (its rules checked) but not yet
    committed when a DBA removes the grant it rests on. The removal must wait for it, then
    revoke it; otherwise both commit and a live delegation has no grant."""
    _pg_setup(pg_gov, pg_dsn)
    with psycopg.connect(pg_dsn) as delegating:
        delegating.execute(
            "INSERT INTO governance.authority_delegation (from_service, to_service, model_name,"
            " operation, reason, valid_until) VALUES ('InventoryService', 'ReportingService',"
            " %s, 'DELETE', 'in flight', clock_timestamp() + interval '1 hour')",
            (INV,),
        )
        with psycopg.connect(pg_dsn, autocommit=True) as dba:
            dba_pid = dba.info.backend_pid
            dba.execute("SET lock_timeout = '20s'")

            def remove_grant(_: int) -> None:
                dba.execute(
                    "DELETE FROM governance.authority_matrix WHERE service = 'InventoryService'"
                    " AND operation = 'DELETE'"
                )

            blocked: list[bool] = []

            def watch(_: int) -> None:
                with psycopg.connect(pg_dsn, autocommit=True) as probe:
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        row = probe.execute(
                            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                            (dba_pid,),
                        ).fetchone()
                        if row and row[0] == "Lock":
                            blocked.append(True)
                            break
                delegating.commit()

            results = run_threads(2, lambda i: remove_grant(i) if i == 0 else watch(i))
    assert results == [None, None]
    assert blocked == [True]  # the removal waited for the delegation to commit
    assert pg_gov.authority.delegations(active=True) == []
    [d] = pg_gov.authority.delegations()
    assert d.revoke_reason == "the grantor no longer holds this authority in the matrix"
    assert pg_gov.authority.problems() == []


def test_sqlite_protected_tables_refuse_connections_outside_pygov(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    sqlite_gov._backend.execute_script("CREATE TABLE ledger (id INTEGER PRIMARY KEY)")
    with sqlite_gov.context(superuser=True):
        sqlite_gov.authority.load_matrix(MATRIX)
        sqlite_gov.authority.protect("ledger", JE)
    raw = sqlite3.connect(sqlite_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="governance_ctx"):
            raw.execute("INSERT INTO ledger VALUES (1)")
    finally:
        raw.close()
    with sqlite_gov.context(service="AccountingGateway"), sqlite_gov.transaction() as tx:
        tx.execute("INSERT INTO ledger VALUES (2)")
    with sqlite_gov.transaction() as tx:
        assert tx.execute("SELECT id FROM ledger").fetchall() == [(2,)]


def test_application_roles_cannot_use_dblink_themselves(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    role = f"pygov_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN IN ROLE governance_app")
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("SELECT governance.dblink_get_connections()")
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                # ... but the authority functions that use it are theirs to call.
                assert conn.execute(
                    "SELECT governance.has_authority('S', 'm', 'CREATE')"
                ).fetchone() == (False,)
        finally:
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("which", ["pg_gov", "sqlite_gov"])
def test_demo_step_claims_hold(which: str, request: pytest.FixtureRequest) -> None:
    from pygov.demo import Demo, schema, step_authority

    lines: list[str] = []
    demo = Demo(request.getfixturevalue(which), lines.append)
    schema.create(demo)
    step_authority.run(demo)
    assert demo.failures == [], "\n".join(lines)
    assert sum(line.strip().startswith("✔") for line in lines) == 6
