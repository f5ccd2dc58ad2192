"""Quarantine contract tests: run unchanged on sync PostgreSQL, async PostgreSQL and SQLite.

PostgreSQL-only behaviour (roles and privileges, the caller's search_path, psql use) is at the
end, on ``pg_gov`` / ``pg_dsn``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pygov
from pygov.audit import object_key
from pygov.errors import AuthorityViolationError, QuarantineError, ValidationError
from tests.conftest import Backend
from tests.helpers import run_threads
from tests.test_audit import audit_rows

ADMIN = {"user": "root", "superuser": True}
HOSTILE = 'x"; DROP TABLE fee; --'


def model(backend: Backend, table: str) -> str:
    """The model name a scan records for a table of the test: schema.table in PostgreSQL."""
    return f"public.{table}" if backend.is_postgres else table


def records(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.query(
        "SELECT id, model_name, object_id, corruption_type, status, resolution"
        f" FROM {backend.table('quarantine_record')} ORDER BY id"
    )


def quarantine_audit(backend: Backend, record_id: int) -> list[dict[str, Any]]:
    return audit_rows(
        backend,
        "model_name = 'governance.quarantine_record' AND object_id = ?",
        (str(record_id),),
    )


@pytest.fixture
def tables(backend: Backend) -> Backend:
    """fee (parent), entry (child with fee_id), stock (composite key, quantity)."""
    statements = [
        "CREATE TABLE fee (id INTEGER PRIMARY KEY, amount NUMERIC NOT NULL)",
        "CREATE TABLE entry (id INTEGER PRIMARY KEY, fee_id INTEGER, amount NUMERIC, memo TEXT)",
        "CREATE TABLE stock (item TEXT, location TEXT, quantity INTEGER NOT NULL,"
        " PRIMARY KEY (item, location))",
        "CREATE TABLE nokey (id INTEGER, quantity INTEGER)",
        "INSERT INTO fee VALUES (1, 100), (2, 200)",
        "INSERT INTO entry VALUES (10, 1, 100, 'ok'), (11, 7, 50, 'orphan'),"
        " (12, NULL, 5, 'no fee'), (13, 8, 60, 'orphan'), (14, 2, 200, 'ok')",
    ]
    for statement in statements:
        backend.query(statement)
    for row in [("pen", "A", 5), ("pen", "B:1", -2), ("ink%", "A", -1)]:
        backend.query("INSERT INTO stock VALUES (?, ?, ?)", row)
    return backend


# --- quarantine_data --------------------------------------------------------------------------


def test_quarantine_data_stores_the_record_and_audits_it(gov: Any, backend: Backend) -> None:
    with gov.context(user="alice", service="Fees"):
        record_id = gov.quarantine.quarantine_data(
            "accounting.journal_entry", 42, "ORPHANED_RECORD", "fee 7 is gone", {"fee_id": 7}
        )
    assert isinstance(record_id, int)
    rec = gov.quarantine.get(record_id)
    assert rec is not None
    assert (rec.model_name, rec.object_id, rec.corruption_type) == (
        "accounting.journal_entry",
        "42",
        "ORPHANED_RECORD",
    )
    assert rec.status == "QUARANTINED" and rec.is_open
    assert rec.reason == "fee 7 is gone"
    assert rec.data == {"fee_id": 7}
    assert rec.quarantined_by == "alice" and rec.quarantined_at is not None
    assert rec.reviewed_at is None and rec.resolved_at is None and rec.resolution is None
    [row] = quarantine_audit(backend, record_id)
    assert row["operation"] == "CREATE"
    assert row["user_name"] == "alice" and row["source_service"] == "Fees"
    assert row["after_data"]["status"] == "QUARANTINED"
    assert row["after_data"]["original_data"] == {"fee_id": 7}
    assert row["extra"] == {
        "action": "quarantine",
        "quarantined_model": "accounting.journal_entry",
        "quarantined_object_id": "42",
        "corruption_type": "ORPHANED_RECORD",
    }


def test_one_open_record_per_model_object_and_type(gov: Any, backend: Backend) -> None:
    first = gov.quarantine.quarantine_data("m.t", "1", "NEGATIVE_STOCK", "below zero")
    again = gov.quarantine.quarantine_data("m.t", "1", "NEGATIVE_STOCK", "still below", {"q": 1})
    assert again == first
    assert gov.quarantine.get(first).reason == "below zero"
    other_type = gov.quarantine.quarantine_data("m.t", "1", "INVALID_STATE", "odd")
    other_object = gov.quarantine.quarantine_data("m.t", "2", "NEGATIVE_STOCK", "below zero")
    assert len({first, other_type, other_object}) == 3
    with gov.context(**ADMIN):
        gov.quarantine.resolve(first, "restocked", resolution="REPAIRED")
    reopened = gov.quarantine.quarantine_data("m.t", "1", "NEGATIVE_STOCK", "below zero again")
    assert reopened not in {first, other_type, other_object}
    assert len(records(backend)) == 4
    # only creations are audited, not the repeats
    assert [r["operation"] for r in quarantine_audit(backend, first)] == ["CREATE", "UPDATE"]


def test_composite_object_ids_use_the_audit_key_form(gov: Any) -> None:
    record_id = gov.quarantine.quarantine_data("inv.level", ("pen", "B:1"), "OTHER", "why")
    assert gov.quarantine.get(record_id).object_id == object_key("pen", "B:1") == "pen:B%3A1"


def test_sixteen_threads_quarantining_one_object_share_one_record(
    gov: Any, backend: Backend
) -> None:
    results = run_threads(
        16,
        lambda i: gov.quarantine.quarantine_data(
            "acc.entry", "99", "ORPHANED_RECORD", f"seen by worker {i}"
        ),
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(set(results)) == 1
    assert len(records(backend)) == 1
    assert len(quarantine_audit(backend, results[0])) == 1


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "1", "OTHER", "r"), "model_name"),
        (("m.t", "", "OTHER", "r"), "object_id"),
        (("m.t", None, "OTHER", "r"), "object_id"),
        (("m.t", "1", "OTHER", "  "), "reason"),
        (("m.t", "1", "OTHER", "r\x00"), "reason"),
        (("m.t", "1", "NOT_A_TYPE", "r"), "corruption_type"),
        (("m.t", "1", "other", "r"), "corruption_type"),
        (("m.t", "x" * 1001, "OTHER", "r"), "object_id"),
    ],
)
def test_bad_quarantine_input_is_a_validation_error_and_stores_nothing(
    gov: Any, backend: Backend, args: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        gov.quarantine.quarantine_data(*args)
    assert info.value.context["field"] == field
    assert records(backend) == []


def test_unknown_type_error_lists_the_known_ones(gov: Any) -> None:
    with pytest.raises(ValidationError) as info:
        gov.quarantine.quarantine_data("m.t", "1", "GREMLINS", "r")
    assert info.value.context["corruption_type"] == "GREMLINS"
    assert "ORPHANED_RECORD" in info.value.context["known"]


def test_snapshot_must_be_json(gov: Any, backend: Backend) -> None:
    with pytest.raises(ValidationError):
        gov.quarantine.quarantine_data("m.t", "1", "OTHER", "r", {"x": object()})
    assert records(backend) == []


# --- the workflow -----------------------------------------------------------------------------


def test_review_then_resolve_records_who_and_when_and_audits_each_step(
    gov: Any, backend: Backend
) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd", {"a": 1})
    with gov.context(user="rita"):
        reviewed = gov.quarantine.start_review(record_id)
    assert reviewed.status == "UNDER_REVIEW" and reviewed.reviewed_by == "rita"
    assert reviewed.reviewed_at is not None and reviewed.resolved_at is None
    with gov.context(user="boss", superuser=True, service="Admin"):
        resolved = gov.quarantine.resolve(record_id, "was a test row", resolution="DISCARDED")
    assert resolved.status == "RESOLVED" and not resolved.is_open
    assert (resolved.resolution, resolved.resolution_notes) == ("DISCARDED", "was a test row")
    assert resolved.resolved_by == "boss" and resolved.reviewed_by == "rita"
    assert resolved.resolved_at is not None and resolved.reviewed_at is not None
    assert resolved.resolved_at >= resolved.reviewed_at >= resolved.quarantined_at
    assert gov.quarantine.get(record_id) == resolved
    trail = quarantine_audit(backend, record_id)
    assert [r["operation"] for r in trail] == ["CREATE", "UPDATE", "UPDATE"]
    assert [r["extra"]["action"] for r in trail] == ["quarantine", "start_review", "resolve"]
    assert trail[1]["user_name"] == "rita"
    assert set(trail[1]["changed_fields"]) == {"status", "reviewed_by", "reviewed_at"}
    assert (trail[1]["before_data"]["status"], trail[1]["after_data"]["status"]) == (
        "QUARANTINED",
        "UNDER_REVIEW",
    )
    assert trail[2]["user_name"] == "boss" and trail[2]["source_service"] == "Admin"
    assert set(trail[2]["changed_fields"]) == {
        "status",
        "resolution",
        "resolution_notes",
        "resolved_by",
        "resolved_at",
    }


def test_resolving_straight_from_quarantined_is_allowed(gov: Any) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
    with gov.context(**ADMIN):
        resolved = gov.quarantine.resolve(record_id, "looked fine", resolution="FALSE_POSITIVE")
    assert resolved.status == "RESOLVED" and resolved.reviewed_at is None
    assert resolved.resolution == "FALSE_POSITIVE"


def test_resolution_defaults_to_repaired(gov: Any) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
    with gov.context(**ADMIN):
        assert gov.quarantine.resolve(record_id, "fixed").resolution == "REPAIRED"


def test_steps_out_of_order_are_quarantine_errors_and_change_nothing(
    gov: Any, backend: Backend
) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
    gov.quarantine.start_review(record_id)
    with pytest.raises(QuarantineError) as info:
        gov.quarantine.start_review(record_id)
    assert info.value.context == {
        "id": record_id,
        "status": "UNDER_REVIEW",
        "action": "start_review",
        "resolution": None,
    }
    with gov.context(**ADMIN):
        gov.quarantine.resolve(record_id, "fixed")
        before = records(backend)
        with pytest.raises(QuarantineError) as info:
            gov.quarantine.resolve(record_id, "fixed again")
        assert info.value.context["status"] == "RESOLVED"
        with pytest.raises(QuarantineError):
            gov.quarantine.start_review(record_id)
        with pytest.raises(QuarantineError) as info:
            gov.quarantine.resolve(record_id + 1000, "nothing")
        assert info.value.context["id"] == record_id + 1000
    assert records(backend) == before
    assert len(quarantine_audit(backend, record_id)) == 3
    assert gov.quarantine.get(record_id + 1000) is None


@pytest.mark.parametrize(
    ("notes", "resolution", "field"),
    [
        ("", "REPAIRED", "notes"),
        ("   ", "REPAIRED", "notes"),
        (None, "REPAIRED", "notes"),
        ("ok", "FIXED", "resolution"),
        ("ok", "repaired", "resolution"),
        ("ok", None, "resolution"),
    ],
)
def test_resolving_needs_notes_and_a_known_resolution(
    gov: Any, backend: Backend, notes: Any, resolution: Any, field: str
) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
    with gov.context(**ADMIN), pytest.raises(ValidationError) as info:
        gov.quarantine.resolve(record_id, notes, resolution=resolution)
    assert info.value.context["field"] == field
    assert gov.quarantine.get(record_id).status == "QUARANTINED"


def test_concurrent_resolutions_let_exactly_one_win(gov: Any, backend: Backend) -> None:
    record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")

    def resolve(i: int) -> Any:
        with gov.context(user=f"admin-{i}", superuser=True):
            return gov.quarantine.resolve(record_id, f"resolved by {i}", resolution="REPAIRED")

    results = run_threads(8, resolve)
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 7 and all(isinstance(e, QuarantineError) for e in losers)
    assert gov.quarantine.get(record_id).resolved_by == winners[0].resolved_by
    assert len(quarantine_audit(backend, record_id)) == 2


def test_list_filters_by_status_model_and_type(gov: Any) -> None:
    a = gov.quarantine.quarantine_data("m.a", "1", "OTHER", "r")
    b = gov.quarantine.quarantine_data("m.a", "2", "NEGATIVE_STOCK", "r")
    c = gov.quarantine.quarantine_data("m.b", "1", "OTHER", "r")
    gov.quarantine.start_review(b)
    with gov.context(**ADMIN):
        gov.quarantine.resolve(c, "done")

    def ids(**kwargs: Any) -> list[int]:
        return [r.id for r in gov.quarantine.list(**kwargs)]

    assert ids() == [a, b, c]
    assert ids(status="OPEN") == [a, b]
    assert ids(status="QUARANTINED") == [a]
    assert ids(status="UNDER_REVIEW") == [b]
    assert ids(status="RESOLVED") == [c]
    assert ids(model_name="m.a") == [a, b]
    assert ids(corruption_type="OTHER") == [a, c]
    assert ids(status="OPEN", model_name="m.a", corruption_type="OTHER") == [a]
    assert ids(limit=2) == [a, b]
    with pytest.raises(ValidationError):
        gov.quarantine.list(status="CLOSED")
    with pytest.raises(ValidationError):
        gov.quarantine.list(limit=0)
    assert ids(limit=2**31 - 1) == [a, b, c]
    with pytest.raises(ValidationError) as too_big:  # the same bound on every backend
        gov.quarantine.list(limit=2**31)
    assert too_big.value.context["field"] == "limit"


def test_corruption_types_are_seeded_and_a_deployment_can_add_its_own(
    gov: Any, backend: Backend
) -> None:
    seeded = gov.quarantine.corruption_types()
    assert set(seeded) == {
        "ORPHANED_RECORD",
        "NEGATIVE_STOCK",
        "INVALID_REFERENCE",
        "DUPLICATE_RECORD",
        "BALANCE_MISMATCH",
        "INVALID_STATE",
        "OTHER",
    }
    with gov.context(**ADMIN):
        assert gov.quarantine.add_corruption_type("FX_RATE_STALE", "rate older than a day")
        assert not gov.quarantine.add_corruption_type("FX_RATE_STALE", "again")
        for bad in ("fx", "1FX", "FX-RATE", "F" * 51):
            with pytest.raises(ValidationError):
                gov.quarantine.add_corruption_type(bad, "nope")
    assert gov.quarantine.corruption_types()["FX_RATE_STALE"] == "rate older than a day"
    record_id = gov.quarantine.quarantine_data("fx.rate", "EURUSD", "FX_RATE_STALE", "old")
    assert gov.quarantine.get(record_id).corruption_type == "FX_RATE_STALE"
    [row] = audit_rows(backend, "model_name = 'governance.corruption_type'")
    assert (row["object_id"], row["operation"]) == ("FX_RATE_STALE", "CREATE")


# --- scanners ---------------------------------------------------------------------------------


def test_scan_orphans_quarantines_missing_parents_once(gov: Any, tables: Backend) -> None:
    with gov.context(user="dba"):
        assert gov.quarantine.scan_orphans("entry", "fee_id", "fee") == 2
        assert gov.quarantine.scan_orphans("entry", "fee_id", "fee") == 0
    found = gov.quarantine.list(model_name=model(tables, "entry"))
    assert [(r.object_id, r.corruption_type) for r in found] == [
        ("11", "ORPHANED_RECORD"),
        ("13", "ORPHANED_RECORD"),
    ]
    first = found[0]
    assert first.data == {"id": 11, "fee_id": 7, "amount": 50, "memo": "orphan"}
    assert first.reason == f"fee_id = 7 has no match in {model(tables, 'fee')}.id"
    assert first.quarantined_by == "dba"
    # one audit row per scan that created records, listing them
    [row] = audit_rows(tables, "model_name = 'governance.quarantine_record'")
    assert (row["operation"], row["object_id"], row["user_name"]) == ("CREATE", None, "dba")
    assert row["extra"] == {
        "action": "scan",
        "scanner": "scan_orphans",
        "quarantined_model": model(tables, "entry"),
        "corruption_type": "ORPHANED_RECORD",
        "count": 2,
        # the two records of one INSERT have consecutive ids: one [first, last] pair
        "record_id_ranges": [[found[0].id, found[1].id]],
    }
    assert found[1].id == found[0].id + 1


def test_rescans_skip_open_and_false_positive_records_only(gov: Any, tables: Backend) -> None:
    gov.quarantine.scan_orphans("entry", "fee_id", "fee")
    by_object = {r.object_id: r.id for r in gov.quarantine.list()}
    with gov.context(**ADMIN):
        gov.quarantine.resolve(by_object["11"], "a legacy fee", resolution="FALSE_POSITIVE")
        # DISCARDED without deleting the row: the next scan finds it again
        gov.quarantine.resolve(by_object["13"], "meant to delete", resolution="DISCARDED")
    assert gov.quarantine.scan_orphans("entry", "fee_id", "fee") == 1
    assert [r.object_id for r in gov.quarantine.list(status="OPEN")] == ["13"]
    # a repaired row is no orphan any more
    tables.query("UPDATE entry SET fee_id = 1 WHERE id = 13")
    open_13 = gov.quarantine.list(status="OPEN")[0].id
    with gov.context(**ADMIN):
        gov.quarantine.resolve(open_13, "pointed at fee 1")
    assert gov.quarantine.scan_orphans("entry", "fee_id", "fee") == 0


def test_scan_orphans_takes_the_type_reason_and_parent_column(gov: Any, tables: Backend) -> None:
    tables.query("CREATE TABLE code (id INTEGER PRIMARY KEY, ref INTEGER)")
    tables.query("INSERT INTO code VALUES (1, 7)")
    count = gov.quarantine.scan_orphans(
        "entry", "fee_id", "code", "ref", corruption_type="INVALID_REFERENCE", reason="audit 2024"
    )
    assert count == 3  # fee_id 1, 8 and 2 have no code.ref; 7 has
    [rec, *_] = gov.quarantine.list()
    assert rec.corruption_type == "INVALID_REFERENCE"
    assert rec.reason == f"audit 2024: fee_id = 1 has no match in {model(tables, 'code')}.ref"


def test_a_key_too_long_to_record_fails_the_scan_clearly_and_stores_nothing(
    gov: Any, tables: Backend
) -> None:
    tables.query("CREATE TABLE tag (name TEXT PRIMARY KEY, qty INTEGER)")
    tables.query("INSERT INTO tag VALUES (?, ?)", ("x" * 1001, -1))
    tables.query("INSERT INTO tag VALUES (?, ?)", ("short", -1))
    with pytest.raises(ValidationError) as info:
        gov.quarantine.scan_negative("tag", "qty")
    assert info.value.context["reason"] == "object_id_length"
    assert info.value.context["max_length"] == 1000
    assert gov.quarantine.list() == []
    tables.query("UPDATE tag SET name = 'long' WHERE name <> 'short'")
    assert gov.quarantine.scan_negative("tag", "qty") == 2


def test_the_parent_may_be_a_view_on_every_backend(gov: Any, tables: Backend) -> None:
    tables.query("CREATE VIEW paid_fee AS SELECT id FROM fee WHERE id = 1")
    assert gov.quarantine.scan_orphans("entry", "fee_id", "paid_fee") == 3  # 7, 8 and 2
    with pytest.raises(ValidationError) as refused:  # the child is written: it must be a table
        gov.quarantine.scan_orphans("paid_fee", "id", "fee")
    assert refused.value.context["field"] == "child_table"


def test_scan_negative_and_the_named_forms(gov: Any, tables: Backend) -> None:
    assert gov.quarantine.scan_negative("stock", "quantity") == 2
    assert gov.quarantine.scan_negative("stock", "quantity") == 0
    assert {r.corruption_type for r in gov.quarantine.list()} == {"INVALID_STATE"}
    assert gov.quarantine.negative_stock("stock") == 2
    assert gov.quarantine.negative_stock("stock", "quantity") == 0
    negative = gov.quarantine.list(corruption_type="NEGATIVE_STOCK")
    assert {r.object_id for r in negative} == {object_key("pen", "B:1"), object_key("ink%", "A")}
    pen = next(r for r in negative if r.object_id == "pen:B%3A1")
    assert pen.reason == "negative stock: quantity = -2 is below zero"
    assert pen.data == {"item": "pen", "location": "B:1", "quantity": -2}
    assert gov.quarantine.orphaned_journal_entry("entry", "fee_id", "fee") == 2
    orphan = gov.quarantine.list(corruption_type="ORPHANED_RECORD")[0]
    assert orphan.reason.startswith("orphaned journal entry: fee_id = 7 has no match in ")


def test_concurrent_scans_quarantine_each_row_once(gov: Any, tables: Backend) -> None:
    results = run_threads(6, lambda i: gov.quarantine.scan_orphans("entry", "fee_id", "fee"))
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sum(results) == 2
    assert len(records(tables)) == 2


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda q: q.scan_orphans("missing", "fee_id", "fee"), "child_table"),
        (lambda q: q.scan_orphans("entry", "fee_id", "missing"), "parent_table"),
        (lambda q: q.scan_orphans("entry", "nope", "fee"), "fk_column"),
        (lambda q: q.scan_orphans("entry", "fee_id", "fee", "nope"), "parent_column"),
        (lambda q: q.scan_orphans("nokey", "id", "fee"), "child_table"),
        (lambda q: q.scan_orphans("entry", "fee_id", "fee", corruption_type="X"), None),
        (lambda q: q.scan_orphans("", "fee_id", "fee"), "child_table"),
        (lambda q: q.scan_negative("entry", "memo"), "column"),
        (lambda q: q.scan_negative("nokey", "quantity"), "table"),
        (lambda q: q.scan_negative("stock", "nope"), "column"),
        (lambda q: q.negative_stock("missing"), "table"),
    ],
)
def test_bad_scan_arguments_are_validation_errors_and_store_nothing(
    gov: Any, tables: Backend, call: Any, field: str | None
) -> None:
    with pytest.raises(ValidationError) as info:
        call(gov.quarantine)
    if field is not None:
        assert info.value.context["field"] == field
    assert records(tables) == []


def test_hostile_names_are_quoted_or_refused(gov: Any, tables: Backend) -> None:
    tables.query('CREATE TABLE "x""; DROP TABLE fee; --" (id INTEGER PRIMARY KEY, "q""ty" INT)')
    tables.query('INSERT INTO "x""; DROP TABLE fee; --" VALUES (1, -4), (2, 3)')
    assert gov.quarantine.scan_negative(HOSTILE, 'q"ty') == 1
    assert gov.quarantine.scan_orphans(HOSTILE, 'q"ty', "fee") == 2
    [rec, *_] = gov.quarantine.list()
    assert rec.model_name == model(tables, HOSTILE)
    assert rec.data == {"id": 1, 'q"ty': -4}
    for bad_table in ["fee; DROP TABLE entry; --", 'entry" WHERE 1=1; --', "fee'--"]:
        with pytest.raises(ValidationError):
            gov.quarantine.scan_orphans(bad_table, "fee_id", "fee")
    for bad_column in ['fee_id" IS NULL OR 1=1; --', "fee_id; DROP TABLE fee"]:
        with pytest.raises(ValidationError):
            gov.quarantine.scan_orphans("entry", bad_column, "fee")
        with pytest.raises(ValidationError):
            gov.quarantine.scan_negative("stock", bad_column)
    assert tables.query("SELECT count(*) FROM fee") == [(2,)]
    assert tables.query("SELECT count(*) FROM entry") == [(5,)]
    assert len(records(tables)) == 3


def test_object_ids_match_the_audit_trail_of_the_same_rows(gov: Any, tables: Backend) -> None:
    """A quarantined row and its audit history name the object the same way."""
    with gov.context(**ADMIN):
        gov.audit.enable("stock")
    gov.quarantine.negative_stock("stock")
    with gov.transaction() as tx:
        tables.execute(tx, "UPDATE stock SET quantity = quantity - 1 WHERE quantity < 0")
    audited = {
        row["object_id"]
        for row in audit_rows(
            tables, "model_name = ? AND operation = 'UPDATE'", (model(tables, "stock"),)
        )
    }
    assert audited == {r.object_id for r in gov.quarantine.list()} == {"pen:B%3A1", "ink%25:A"}


# --- the guard --------------------------------------------------------------------------------


def test_guard_refuses_writes_to_quarantined_rows_until_resolved(gov: Any, tables: Backend) -> None:
    refused = pytest.raises(AuthorityViolationError) if not tables.is_postgres else nullcontext()
    with refused:  # PostgreSQL: the test's role is a superuser, hence governance_admin
        gov.quarantine.guard("stock")
    with gov.context(**ADMIN):
        assert gov.quarantine.guard("stock") is True
        assert gov.quarantine.guard("stock") is True  # repeatable
    gov.quarantine.negative_stock("stock")
    [pen, ink] = sorted(gov.quarantine.list(), key=lambda r: r.object_id, reverse=True)
    with pytest.raises(QuarantineError) as info, gov.transaction() as tx:
        tables.execute(tx, "UPDATE stock SET quantity = 0 WHERE item = 'pen' AND location = 'B:1'")
    assert info.value.context["model_name"] == model(tables, "stock")
    assert info.value.context["operation"] == "UPDATE"
    if tables.is_postgres:
        assert info.value.context["object_id"] == "pen:B%3A1"
        assert info.value.context["quarantine_ids"] == [pen.id]
    with pytest.raises(QuarantineError), gov.transaction() as tx:
        tables.execute(tx, "DELETE FROM stock WHERE item = ?", ("ink%",))
    with gov.transaction() as tx:  # rows without an open record are not affected
        tables.execute(tx, "UPDATE stock SET quantity = 9 WHERE item = 'pen' AND location = 'A'")
    assert tables.query("SELECT quantity FROM stock WHERE location = 'B:1'") == [(-2,)]
    # resolve and repair in one transaction: the guard lets the repair through
    with gov.context(**ADMIN), gov.transaction() as tx:
        gov.quarantine.resolve(pen.id, "counted again: 0", conn=tx)
        tables.execute(tx, "UPDATE stock SET quantity = 0 WHERE item = 'pen' AND location = 'B:1'")
    assert tables.query("SELECT quantity FROM stock WHERE location = 'B:1'") == [(0,)]
    with gov.context(**ADMIN):
        assert gov.quarantine.unguard("stock") is False
    with gov.transaction() as tx:
        tables.execute(tx, "DELETE FROM stock WHERE item = ?", ("ink%",))
    assert gov.quarantine.get(ink.id).is_open


def test_a_failed_repair_rolls_the_resolution_back(gov: Any, tables: Backend) -> None:
    record_id = gov.quarantine.quarantine_data(model(tables, "entry"), 11, "OTHER", "odd")
    with pytest.raises(ValidationError), gov.context(**ADMIN), gov.transaction() as tx:
        gov.quarantine.resolve(record_id, "repaired", conn=tx)
        tables.execute(tx, "INSERT INTO fee VALUES (1, 1)")  # duplicate key
    assert gov.quarantine.get(record_id).status == "QUARANTINED"
    assert len(quarantine_audit(tables, record_id)) == 1


# --- PostgreSQL only: roles, privileges, the caller's search_path, psql ------------------------


@pytest.fixture
def app_role(pg_dsn: str) -> Iterator[str]:
    """A login role that is governance_app (not admin) and may read entry but not fee."""
    role = f"qapp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT governance_app TO {}").format(sql.Identifier(role)))
        conn.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE entry (id int PRIMARY KEY, fee_id int, qty int)")
        conn.execute("INSERT INTO entry VALUES (1, 5, -1)")
        conn.execute(sql.SQL("GRANT SELECT ON entry TO {}").format(sql.Identifier(role)))
    try:
        yield role
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE entry, fee")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _as_role(dsn: str, role: str) -> pygov.Governance:
    params = conninfo_to_dict(dsn)
    params["user"] = role
    return pygov.connect(make_conninfo(**params), pool_min_size=0)


def test_app_role_cannot_resolve_guard_or_scan_what_it_cannot_read(
    pg_gov: pygov.Governance, pg_dsn: str, app_role: str
) -> None:
    app = _as_role(pg_dsn, app_role)
    try:
        record_id = app.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
        assert app.quarantine.start_review(record_id).reviewed_by == app_role
        with pytest.raises(AuthorityViolationError) as info:
            app.quarantine.resolve(record_id, "fixed")
        assert info.value.context["role"] == app_role
        with pytest.raises(AuthorityViolationError):
            app.quarantine.guard("entry")
        with pytest.raises(AuthorityViolationError):
            app.quarantine.add_corruption_type("MINE", "mine")
        # entry is readable, fee is not: reading fee through the scanner is refused
        with pytest.raises(AuthorityViolationError) as info:
            app.quarantine.scan_orphans("entry", "fee_id", "fee")
        assert info.value.context["field"] == "parent_table"
        assert app.quarantine.scan_negative("entry", "qty") == 1
    finally:
        app.close()
    assert pg_gov.quarantine.get(record_id).status == "UNDER_REVIEW"
    with pg_gov.context(user="boss"):
        assert pg_gov.quarantine.resolve(record_id, "fixed").resolved_by == "boss"


def test_snapshots_are_shown_only_to_roles_that_may_read_their_table(
    pg_gov: pygov.Governance, pg_dsn: str, app_role: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wage (id int PRIMARY KEY, amount int)")
        conn.execute("INSERT INTO wage VALUES (7, -100)")
    assert pg_gov.quarantine.scan_negative("wage", "amount") == 1  # by the owner
    [wage] = pg_gov.quarantine.list()
    assert wage.data == {"id": 7, "amount": -100}
    # a record made by hand keeps its snapshot in the audit trail too
    by_hand = pg_gov.quarantine.quarantine_data(
        "public.wage", 8, "OTHER", "typed in", data={"id": 8, "amount": -1}
    )
    app = _as_role(pg_dsn, app_role)
    try:
        assert app.quarantine.scan_negative("entry", "qty") == 1  # entry it may read
        records = {(r.model_name, r.object_id): r.data for r in app.quarantine.list()}
        # wage it may not read: the records are listed, their snapshots are not
        assert records == {
            ("public.entry", "1"): {"id": 1, "fee_id": 5, "qty": -1},
            ("public.wage", "7"): None,
            ("public.wage", "8"): None,
        }
        assert app.quarantine.get(wage.id).data is None
        assert app.quarantine.start_review(wage.id).data is None
        assert app.quarantine.start_review(by_hand).data is None
        # nor through the audit trail of the record
        created = app.audit.history("governance.quarantine_record", by_hand)[-1]
        assert created.operation == "CREATE" and created.after_data["reason"] == "typed in"
        assert "original_data" not in created.after_data
        state = app.audit.object_at("governance.quarantine_record", by_hand, datetime.now(UTC))
        assert state["status"] == "UNDER_REVIEW" and "original_data" not in state
    finally:
        app.close()
    assert pg_gov.quarantine.get(wage.id).data == {"id": 7, "amount": -100}
    created = pg_gov.audit.history("governance.quarantine_record", by_hand)[-1]
    assert created.after_data["original_data"] == {"id": 8, "amount": -1}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE governance_auditor")
        row = conn.execute(
            "SELECT original_data FROM governance.get_quarantine_record(%s)", (wage.id,)
        )
        assert row.fetchone() == ({"id": 7, "amount": -100},)


def test_snapshots_stay_hidden_after_their_table_is_renamed_or_dropped(
    pg_gov: pygov.Governance, pg_dsn: str, app_role: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wage (id int PRIMARY KEY, amount int)")
        conn.execute("INSERT INTO wage VALUES (7, -100)")
    assert pg_gov.quarantine.scan_negative("wage", "amount") == 1
    app = _as_role(pg_dsn, app_role)
    try:
        for change in ("ALTER TABLE wage RENAME TO wage_2027", "DROP TABLE wage_2027"):
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute(change)
            # "public.wage" names no table any more, but it named one: not an app's own name
            [record] = app.quarantine.list()
            assert (record.model_name, record.data) == ("public.wage", None), change
    finally:
        app.close()
    assert pg_gov.quarantine.list()[0].data == {"id": 7, "amount": -100}


def test_scans_refuse_tables_whose_row_level_security_applies_to_the_caller(
    pg_gov: pygov.Governance, pg_dsn: str, app_role: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO entry VALUES (2, 6, -9)")
        conn.execute("ALTER TABLE entry ENABLE ROW LEVEL SECURITY")
        conn.execute(
            sql.SQL("CREATE POLICY only_one ON entry FOR SELECT TO {} USING (id = 1)").format(
                sql.Identifier(app_role)
            )
        )
    app = _as_role(pg_dsn, app_role)
    try:
        # The scanner reads as the governance owner: row 2, hidden from the caller, would be
        # copied into a record the caller can read.
        with pytest.raises(AuthorityViolationError) as info:
            app.quarantine.scan_negative("entry", "qty")
        assert info.value.context["reason"] == "row_level_security"
        assert info.value.context["field"] == "table"
    finally:
        app.close()
    assert pg_gov.quarantine.list() == []
    # The owner (here a superuser) is not subject to the policy and scans every row.
    assert pg_gov.quarantine.scan_negative("entry", "qty") == 2


def test_object_ids_do_not_depend_on_the_session_settings(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE reading (taken_at timestamptz, ratio float8, qty int,"
            " PRIMARY KEY (taken_at, ratio))"
        )
        conn.execute(
            "INSERT INTO reading VALUES ('2026-01-01 00:00:00+00', 0.1::float8 + 0.2::float8, -1)"
        )
    assert pg_gov.quarantine.guard("reading") is True
    sessions = [
        "SET TimeZone = 'UTC'",
        "SET TimeZone = 'Europe/Berlin'; SET extra_float_digits = 0",
        "SET TimeZone = 'America/New_York'; SET IntervalStyle = 'sql_standard'",
    ]
    for settings in sessions:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            for statement in settings.split("; "):
                conn.execute(statement)
            conn.execute("SELECT governance.scan_negative('reading', 'qty')")
            # ... and the guard computes the same id, whatever the writer's settings.
            with pytest.raises(psycopg.Error) as info:
                conn.execute("UPDATE reading SET qty = 0")
            assert info.value.sqlstate == "GV005"
            assert conn.execute("SHOW TimeZone").fetchone() == (settings.split("'")[1],)
    [record] = pg_gov.quarantine.list()
    assert record.object_id == "2026-01-01T00%3A00%3A00+00%3A00:0.30000000000000004"
    assert record.data["taken_at"] == "2026-01-01T00:00:00+00:00"


def test_guard_refuses_truncate_while_rows_are_quarantined(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bin (id int PRIMARY KEY, qty int, balance money)")
        conn.execute("INSERT INTO bin VALUES (1, -1, '-2.50'), (2, 3, '1')")
    assert pg_gov.quarantine.guard("bin") is True
    assert pg_gov.quarantine.negative_stock("bin", "qty") == 1
    [record] = pg_gov.quarantine.list()
    # a money column is numeric too
    assert pg_gov.quarantine.scan_negative("bin", "balance", corruption_type="OTHER") == 1
    pg_gov.quarantine.resolve(pg_gov.quarantine.list(corruption_type="OTHER")[0].id, "ok")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute("TRUNCATE bin")
        assert info.value.sqlstate == "GV005"
        detail = json.loads(info.value.diag.message_detail or "{}")
        assert detail["quarantine_ids"] == [record.id] and detail["operation"] == "TRUNCATE"
        assert conn.execute("SELECT count(*) FROM bin").fetchone() == (2,)
    pg_gov.quarantine.resolve(record.id, "recounted", resolution="DISCARDED")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE bin")
        assert conn.execute("SELECT count(*) FROM bin").fetchone() == (0,)
    assert pg_gov.quarantine.unguard("bin") is False
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bin'::regclass"
        ).fetchone()
        assert triggers == (0,)


def test_dba_scans_from_sql_with_their_search_path(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA acc")
        conn.execute("CREATE TABLE acc.fee (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE acc.entry (id int PRIMARY KEY, fee_id int)")
        conn.execute("INSERT INTO acc.entry VALUES (1, 5), (2, NULL)")
        conn.execute("SET search_path = acc, public")
        (count,) = conn.execute(
            "SELECT governance.scan_orphans('entry', 'fee_id', 'fee')"
        ).fetchone()  # type: ignore[misc]
        assert count == 1
        (open_rows,) = conn.execute(
            "SELECT count(*) FROM governance.open_quarantine WHERE model_name = 'acc.entry'"
        ).fetchone()  # type: ignore[misc]
        assert open_rows == 1
        (record_id,) = conn.execute(
            "SELECT id FROM governance.list_quarantine_records('OPEN')"
        ).fetchone()  # type: ignore[misc]
        conn.execute("SELECT * FROM governance.start_quarantine_review(%s)", (record_id,))
        conn.execute(
            "SELECT * FROM governance.resolve_quarantine(%s, 'deleted', 'DISCARDED')", (record_id,)
        )
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT * FROM governance.resolve_quarantine(%s, 'again')", (record_id,))
        assert info.value.sqlstate == "GV005"
        assert json.loads(info.value.diag.message_detail or "{}")["status"] == "RESOLVED"
    rec = pg_gov.quarantine.get(record_id)
    assert rec is not None and rec.resolution == "DISCARDED" and rec.model_name == "acc.entry"


def scan_entry_orphans(conn: psycopg.Connection[Any]) -> tuple[int, list[int], dict[str, Any]]:
    """scan_orphans('entry', 'fee_id', 'fee') through SQL: its count, the ids of public.entry's
    records, and the extra of the scan's audit row."""
    (count,) = conn.execute("SELECT governance.scan_orphans('entry', 'fee_id', 'fee')").fetchone()  # type: ignore[misc]
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM governance.quarantine_record WHERE model_name = 'public.entry'"
            " ORDER BY id"
        )
    ]
    (extra,) = conn.execute(
        "SELECT extra FROM governance.audit_trail WHERE extra ->> 'action' = 'scan'"
    ).fetchone()  # type: ignore[misc]
    return count, ids, extra


def test_scan_audit_lists_exact_id_ranges_when_ids_are_not_consecutive(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        (ranges,) = conn.execute(
            "SELECT governance._id_ranges(ARRAY[8, 1, 2, 3, 5, 7]::bigint[])"
        ).fetchone()  # type: ignore[misc]
        assert ranges == [[1, 3], [5, 5], [7, 8]]
        # A concurrent INSERT taking ids in between, as a sequence stepping by 2 does.
        conn.execute("ALTER SEQUENCE governance.quarantine_record_id_seq INCREMENT BY 2")
        conn.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE entry (id int PRIMARY KEY, fee_id int)")
        conn.execute("INSERT INTO entry VALUES (1, 5), (2, 6), (3, 7)")
        # Another transaction's record in one of the gaps is not the scan's.
        (last, called) = conn.execute(
            "SELECT last_value, is_called FROM governance.quarantine_record_id_seq"
        ).fetchone()  # type: ignore[misc]
        foreign = (last + 2 if called else last) + 1
        conn.execute(
            "INSERT INTO governance.quarantine_record"
            " (id, model_name, object_id, corruption_type, reason) OVERRIDING SYSTEM VALUE"
            " VALUES (%s, 'other', '1', 'OTHER', 'by hand')",
            (foreign,),
        )
        count, ids, extra = scan_entry_orphans(conn)
    assert count == 3
    assert ids[1] - ids[0] == 2 and ids[2] - ids[1] == 2 and ids[0] < foreign < ids[1]
    assert extra["record_id_ranges"] == [[i, i] for i in ids] and extra["count"] == 3


def test_scan_audit_lists_ids_handed_out_from_a_sequence_cache(pg_dsn: str) -> None:
    # With CACHE > 1 a session may hand out ids it reserved earlier, below the sequence's last
    # value: the scan cannot infer its ids from the sequence and reads them from the INSERT.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER SEQUENCE governance.quarantine_record_id_seq CACHE 10")
        conn.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE entry (id int PRIMARY KEY, fee_id int)")
        conn.execute("INSERT INTO entry VALUES (1, 5), (2, 6), (3, 7), (4, 8)")
        # this session reserves ids 1-10 and uses 1; another reserves 11-20 and uses 11
        conn.execute("SELECT governance.quarantine_data('other', '1', 'OTHER', 'by hand')")
        with psycopg.connect(pg_dsn, autocommit=True) as other:
            other.execute("SELECT governance.quarantine_data('other', '2', 'OTHER', 'by hand')")
        count, ids, extra = scan_entry_orphans(conn)
    assert count == 4 and ids == [2, 3, 4, 5]
    assert extra["record_id_ranges"] == [[2, 5]] and extra["count"] == 4


def test_concurrent_scans_and_quarantines_each_audit_exactly_their_own_ids(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    # Two scans and three writers of single records race, so the scans' ids interleave with
    # each other's and the writers': every scan's audit row must still list exactly its own.
    rows = 20_000
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        for table in ("entry_a", "entry_b"):
            setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, fee_id int)")
            setup.execute(f"INSERT INTO {table} SELECT g, g FROM generate_series(1, {rows}) g")
    scanning = threading.Event()
    scanning.set()
    scanners_left = [2]
    lock = threading.Lock()

    def race(i: int) -> int:
        if i < 2:
            try:
                return pg_gov.quarantine.scan_orphans(("entry_a", "entry_b")[i], "fee_id", "fee")
            finally:
                with lock:
                    scanners_left[0] -= 1
                    if not scanners_left[0]:
                        scanning.clear()
        written = 0
        while scanning.is_set():
            pg_gov.quarantine.quarantine_data("noise", f"{i}-{written}", "OTHER", "noise")
            written += 1
        return written

    results = run_threads(5, race)
    assert results[:2] == [rows, rows] and all(n > 0 for n in results[2:])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        audits = conn.execute(
            "SELECT extra FROM governance.audit_trail WHERE extra ->> 'action' = 'scan'"
        ).fetchall()
        runs = 0
        for (extra,) in audits:
            listed = {
                i for first, last in extra["record_id_ranges"] for i in range(first, last + 1)
            }
            stored = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM governance.quarantine_record WHERE model_name = %s",
                    (extra["quarantined_model"],),
                )
            }
            assert listed == stored and extra["count"] == rows
            runs += len(extra["record_id_ranges"])
    assert len(audits) == 2
    assert runs > 2  # the ids did interleave: at least one scan's are not one run


def test_scan_snapshot_is_to_jsonb_of_the_row_for_wide_and_altered_tables(pg_dsn: str) -> None:
    # 120 columns (more than one function call may take arguments), one dropped, odd names and
    # types whose JSON form is not their text form.
    table = '"Wide ""Entry"""'
    columns = ", ".join(f'"c {i}%" int DEFAULT {i}' for i in range(115))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        conn.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, fee_id int, gone text,"
            f" amount numeric(12, 2), at timestamptz, tags text[], {columns})"
        )
        conn.execute(f"ALTER TABLE {table} DROP COLUMN gone")
        conn.execute(
            f"INSERT INTO {table} (id, fee_id, amount, at, tags) VALUES"
            " (1, 9, 12.50, '2026-01-02 03:04:05+00', '{a,\"b c\"}'), (2, NULL, 1, NULL, NULL)"
        )
        (count,) = conn.execute(
            "SELECT governance.scan_orphans(%s, 'fee_id', 'fee')", (table,)
        ).fetchone()  # type: ignore[misc]
        assert count == 1
        (stored, expected) = conn.execute(
            f"SELECT q.original_data, to_jsonb(w) FROM governance.quarantine_record q, {table} w"
            " WHERE w.id = 1"
        ).fetchone()  # type: ignore[misc]
    assert stored == expected
    assert len(stored) == 120 and "gone" not in stored
    assert (stored["amount"], stored["tags"], stored["c 114%"]) == (12.5, ["a", "b c"], 114)


def test_guard_trigger_fires_for_any_client(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Odd Table" (id int PRIMARY KEY, qty int)')
        conn.execute('INSERT INTO "Odd Table" VALUES (1, -1), (2, 1)')
    assert pg_gov.quarantine.guard('"Odd Table"') is True
    assert pg_gov.quarantine.negative_stock("Odd Table", "qty") == 1
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            conn.execute('UPDATE "Odd Table" SET qty = 0')
        assert info.value.sqlstate == "GV005"
        detail = json.loads(info.value.diag.message_detail or "{}")
        assert detail["model_name"] == "public.Odd Table" and detail["object_id"] == "1"
        conn.execute('UPDATE "Odd Table" SET qty = 5 WHERE id = 2')


def test_scan_racing_an_uncommitted_quarantine_keeps_one_open_record(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE fee (id int PRIMARY KEY)")
        setup.execute("CREATE TABLE entry (id int PRIMARY KEY, fee_id int)")
        setup.execute("INSERT INTO entry VALUES (11, 7), (13, 8)")
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(
            "SELECT governance.quarantine_data('public.entry', '11', 'ORPHANED_RECORD', 'by hand')"
        )
        result: list[Any] = []
        scanner = threading.Thread(
            target=lambda: result.append(pg_gov.quarantine.scan_orphans("entry", "fee_id", "fee"))
        )
        scanner.start()
        # the scan's INSERT now waits on the uncommitted record of object 11
        with psycopg.connect(pg_dsn, autocommit=True) as watch:
            waiting = 0
            for _ in range(2000):
                (waiting,) = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%scan_orphans%'"
                ).fetchone()  # type: ignore[misc]
                if waiting or not scanner.is_alive():
                    break
                time.sleep(0.005)
            assert waiting == 1
        holder.commit()
        scanner.join()
    assert result == [1]
    found = {(r.object_id, r.reason, r.id) for r in pg_gov.quarantine.list(status="OPEN")}
    [(_, _, id_11)] = [f for f in found if f[0] == "11"]
    [(_, _, id_13)] = [f for f in found if f[0] == "13"]
    assert {f[:2] for f in found} == {
        ("11", "by hand"),
        ("13", "fee_id = 8 has no match in public.fee.id"),
    }
    # the retry after the unique violation lists only what it stored
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        (extra,) = conn.execute(
            "SELECT extra FROM governance.audit_trail WHERE extra ->> 'action' = 'scan'"
        ).fetchone()  # type: ignore[misc]
    assert extra["record_id_ranges"] == [[id_13, id_13]] and id_11 != id_13


def test_a_corruption_type_in_use_cannot_be_deleted_or_renamed(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with pg_gov.context(**ADMIN):
        pg_gov.quarantine.add_corruption_type("STALE_RATE", "old rate")
        pg_gov.quarantine.add_corruption_type("UNUSED", "never used")
    pg_gov.quarantine.quarantine_data("fx.rate", "EURUSD", "STALE_RATE", "old")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in (
            "DELETE FROM governance.corruption_type WHERE code = 'STALE_RATE'",
            "UPDATE governance.corruption_type SET code = 'RATE' WHERE code = 'STALE_RATE'",
        ):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(statement)
            assert info.value.sqlstate == "GV002"
        conn.execute(
            "UPDATE governance.corruption_type SET description = 'x' WHERE code = 'STALE_RATE'"
        )
        conn.execute("DELETE FROM governance.corruption_type WHERE code = 'UNUSED'")
    assert "UNUSED" not in pg_gov.quarantine.corruption_types()
    assert pg_gov.quarantine.corruption_types()["STALE_RATE"] == "x"


@pytest.mark.parametrize("which", ["pg_gov", "sqlite_gov"])
def test_demo_step_claims_hold(which: str, request: pytest.FixtureRequest) -> None:
    from pygov.demo import Demo, schema, step_quarantine

    lines: list[str] = []
    demo = Demo(request.getfixturevalue(which), lines.append)
    schema.create(demo)
    step_quarantine.run(demo)
    assert demo.failures == [], "\n".join(lines)
    assert sum("✔" in line for line in lines) == 8


def test_sqlite_admin_duties_need_a_superuser_context(sqlite_gov: pygov.Governance) -> None:
    record_id = sqlite_gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
    with sqlite_gov.context(user="clerk"):
        with pytest.raises(AuthorityViolationError) as info:
            sqlite_gov.quarantine.resolve(record_id, "fixed")
        assert info.value.context == {"action": "resolve_quarantine"}
        with pytest.raises(AuthorityViolationError):
            sqlite_gov.quarantine.add_corruption_type("MINE", "mine")
        assert sqlite_gov.quarantine.start_review(record_id).reviewed_by == "clerk"
    rec = sqlite_gov.quarantine.get(record_id)
    assert rec is not None and rec.status == "UNDER_REVIEW"
    assert "MINE" not in sqlite_gov.quarantine.corruption_types()


def test_partitions_are_recorded_and_guarded_as_their_partitioned_table(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bin (region text, id int, qty int, PRIMARY KEY (region, id))"
            " PARTITION BY LIST (region)"
        )
        conn.execute("CREATE TABLE bin_eu PARTITION OF bin FOR VALUES IN ('eu')")
        conn.execute("CREATE TABLE bin_us PARTITION OF bin FOR VALUES IN ('us')")
        conn.execute("INSERT INTO bin VALUES ('eu', 1, -1), ('eu', 2, 5), ('us', 3, 4)")
    assert pg_gov.quarantine.guard("bin") is True
    assert pg_gov.quarantine.guard("bin_eu") is True  # already guarded through bin: a no-op
    # scanning the partition, then the whole table, finds one row: one record, under bin
    assert pg_gov.quarantine.scan_negative("bin_eu", "qty") == 1
    assert pg_gov.quarantine.scan_negative("bin", "qty") == 0
    [record] = pg_gov.quarantine.list()
    assert (record.model_name, record.object_id) == ("public.bin", "eu:1")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in ("UPDATE bin SET qty = 0 WHERE id = 1", "TRUNCATE bin_eu"):
            with pytest.raises(psycopg.Error) as info:
                conn.execute(statement)
            assert (statement, info.value.sqlstate) == (statement, "GV005")
        conn.execute("UPDATE bin_eu SET qty = 6 WHERE id = 2")  # not quarantined
    # the partition's guard is bin's: it is switched off there, not on the partition
    with pytest.raises(ValidationError) as refused:
        pg_gov.quarantine.unguard("bin_eu")
    assert refused.value.context["partitioned_table"] == "public.bin"
    assert pg_gov.quarantine.unguard("bin") is False
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'governance_quarantine_guard%'"
        )
        assert triggers.fetchone() == (0,)
        conn.execute("UPDATE bin SET qty = 0 WHERE id = 1")


def test_a_session_temp_table_named_like_the_scanners_is_a_clear_error(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bin (id int PRIMARY KEY, qty int)")
        conn.execute("INSERT INTO bin VALUES (1, -1)")
        conn.execute("CREATE TEMP TABLE governance_scan (note text)")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT governance.scan_negative('bin', 'qty')")
        assert info.value.sqlstate == "GV002"
        assert "governance_scan" in str(info.value)
        conn.execute("DROP TABLE governance_scan")
        count = conn.execute("SELECT governance.scan_negative('bin', 'qty')").fetchone()
        assert count == (1,)


def test_object_at_decides_from_the_record_whose_snapshot_it_hides(
    pg_gov: pygov.Governance, pg_dsn: str, app_role: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wage (id int PRIMARY KEY, amount int)")
    record_id = pg_gov.quarantine.quarantine_data(
        "public.wage", 1, "OTHER", "typed in", data={"id": 1, "amount": -5}
    )
    # an UPDATE row that claims another model (only an admin can write one) changes nothing
    pg_gov.audit.log_operation(
        "governance.quarantine_record", str(record_id), "UPDATE", after_data={"model_name": "x"}
    )
    app = _as_role(pg_dsn, app_role)
    try:
        state = app.audit.object_at("governance.quarantine_record", record_id, datetime.now(UTC))
        assert state["model_name"] == "x" and "original_data" not in state
    finally:
        app.close()
