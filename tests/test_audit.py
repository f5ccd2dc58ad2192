"""Audit trail contract tests: run unchanged on sync PostgreSQL, async PostgreSQL and SQLite."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import psycopg
import pytest

from pygov.errors import GovernanceError, ValidationError
from tests.conftest import Backend


def execute(gov: Any, conn: Any, statement: str, *params: Any) -> Any:
    """Run the caller's own SQL on a ``gov.transaction()`` connection, whatever the backend
    (``?`` placeholders; asyncpg's coroutines run on the test's event loop)."""
    if isinstance(conn, sqlite3.Connection):
        return conn.execute(statement, params).fetchall()
    if isinstance(conn, psycopg.Connection):
        cur = conn.execute(statement.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []
    text = statement
    for i in range(len(params)):
        text = text.replace("?", f"${i + 1}", 1)
    return gov._runner.run(conn.fetch(text, *params))


def audit_rows(
    backend: Backend, where: str = "1=1", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    cols = (
        "id, model_name, object_id, operation, source_service, user_name, db_role, ip_address, "
        "user_agent, request_id, before_data, after_data, changed_fields, extra"
    )
    names = [c.strip() for c in cols.split(",")]
    rows = backend.query(
        f"SELECT {cols} FROM {backend.table('audit_trail')} WHERE {where} ORDER BY id", params
    )
    out = []
    for row in rows:
        rec = dict(zip(names, row, strict=True))
        if not backend.is_postgres:
            for k in ("before_data", "after_data", "changed_fields", "extra"):
                rec[k] = None if rec[k] is None else json.loads(rec[k])
        elif rec["ip_address"] is not None:
            rec["ip_address"] = str(rec["ip_address"])
        out.append(rec)
    return out


def test_log_operation_records_context_and_changed_fields(gov: Any, backend: Backend) -> None:
    with gov.context(
        user="alice", service="FeesGateway", ip="10.0.0.7", user_agent="ua/1", request_id="req-1"
    ):
        new_id = gov.audit.log_operation(
            "accounting.journal_entry",
            42,
            "UPDATE",
            before_data={"amount": 1, "memo": "x"},
            after_data={"amount": 2, "memo": "x"},
            extra={"note": "fix"},
        )
    assert isinstance(new_id, int)
    [row] = audit_rows(backend, "id = ?", (new_id,))
    assert row["model_name"] == "accounting.journal_entry"
    assert row["object_id"] == "42"
    assert row["operation"] == "UPDATE"
    assert row["user_name"] == "alice"
    assert row["source_service"] == "FeesGateway"
    assert row["ip_address"] == "10.0.0.7"
    assert row["user_agent"] == "ua/1" and row["request_id"] == "req-1"
    assert row["changed_fields"] == ["amount"]
    assert row["before_data"] == {"amount": 1, "memo": "x"}
    assert row["extra"] == {"note": "fix"}
    if backend.is_postgres:
        assert row["db_role"]


def test_explicit_source_service_wins_over_context(gov: Any, backend: Backend) -> None:
    with gov.context(service="ctx-service"):
        new_id = gov.audit.log_operation("m.t", "1", "CREATE", source_service="Explicit")
    [row] = audit_rows(backend, "id = ?", (new_id,))
    assert row["source_service"] == "Explicit"


def test_log_authority_violation_admin_access_gateway(gov: Any, backend: Backend) -> None:
    with gov.context(user="bob"):
        v = gov.audit.log_authority_violation(
            "StockGateway",
            "accounting.journal_entry",
            "DELETE",
            "not in matrix",
            extra={"attempt": 1},
        )
        a = gov.audit.log_admin_access("resolve_quarantine", "governance.quarantine_record")
        g = gov.audit.log_gateway_operation(
            "AccountingGateway",
            "accounting.journal_entry",
            ("2024", 7),
            "CREATE",
            extra={"batch": "b1"},
        )
    assert v < a < g
    rows = {r["id"]: r for r in audit_rows(backend)}
    assert rows[v]["operation"] == "AUTHORITY_VIOLATION"
    assert rows[v]["source_service"] == "StockGateway"
    assert rows[v]["model_name"] == "accounting.journal_entry"
    assert rows[v]["extra"] == {
        "attempt": 1,
        "attempted_operation": "DELETE",
        "reason": "not in matrix",
    }
    assert rows[a]["operation"] == "ADMIN_ACCESS"
    assert rows[a]["extra"] == {"action": "resolve_quarantine"}
    assert rows[a]["model_name"] == "governance.quarantine_record"
    assert rows[a]["user_name"] == "bob"
    assert rows[g]["operation"] == "CREATE"
    assert rows[g]["source_service"] == "AccountingGateway"
    assert rows[g]["object_id"] == "2024:7"
    assert rows[g]["extra"] == {"batch": "b1", "gateway": "AccountingGateway"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_name": "", "object_id": "1", "operation": "CREATE"},
        {"model_name": "m", "object_id": "1", "operation": ""},
        {"model_name": "m", "object_id": "1", "operation": "X" * 65},
        {"model_name": "m" * 256, "object_id": "1", "operation": "CREATE"},
        {"model_name": "m", "object_id": "1", "operation": "CREATE", "extra": [1]},
        {"model_name": "m", "object_id": True, "operation": "CREATE"},
    ],
)
def test_bad_input_is_a_validation_error_and_writes_nothing(
    gov: Any, backend: Backend, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        gov.audit.log_operation(**kwargs)
    assert audit_rows(backend) == []


def test_log_in_callers_transaction_rolls_back_with_it(gov: Any, backend: Backend) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), gov.transaction() as conn:
        gov.audit.log_operation("m.t", "1", "CREATE", conn=conn)
        raise Boom
    assert audit_rows(backend) == []
    with gov.transaction() as conn:
        gov.audit.log_operation("m.t", "1", "CREATE", conn=conn)
    assert len(audit_rows(backend)) == 1


def test_audit_trail_is_append_only(gov: Any, backend: Backend) -> None:
    gov.audit.log_operation("m.t", "1", "CREATE")
    for statement in (
        f"UPDATE {backend.table('audit_trail')} SET operation = 'X'",
        f"DELETE FROM {backend.table('audit_trail')}",
    ):
        with pytest.raises(GovernanceError) as info, gov.transaction() as conn:
            execute(gov, conn, statement)
        assert info.value.sqlstate.startswith("GV")
    assert len(audit_rows(backend)) == 1
