"""Audit trail contract tests: run unchanged on sync PostgreSQL, async PostgreSQL and SQLite."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pygov.errors import AuthorityViolationError, GovernanceError, ValidationError
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


# --- automatic auditing by triggers ----------------------------------------------------------


def table_name(backend: Backend, name: str) -> str:
    """A user table's name as SQL writes it on this backend (``name`` may be quoted)."""
    return f"public.{name}" if backend.is_postgres else name


def make_table(backend: Backend, name: str, columns: str) -> str:
    table = table_name(backend, name)
    backend.query(f"CREATE TABLE {table} ({columns})")
    return table


def write(gov: Any, statement: str, *params: Any) -> Any:
    """The caller's own SQL in ``gov.transaction()``: audited with the current context."""
    with gov.transaction() as conn:
        return execute(gov, conn, statement, *params)


ITEM_COLUMNS = "id int PRIMARY KEY, name text, qty int, touched_at text"


def test_insert_update_delete_are_recorded_with_context(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    info = gov.audit.enable(item, model_name="shop.item", ignore_columns=["touched_at"])
    assert info.model_name == "shop.item" and info.key_columns == ["id"]
    assert info.ignore_columns == ["touched_at"] and info.triggers_installed
    with gov.context(
        user="alice", service="ShopGateway", ip="192.0.2.1", user_agent="ua", request_id="r-1"
    ):
        write(gov, f"INSERT INTO {item} (id, name, qty) VALUES (1, 'pen', 5), (2, 'ink', 1)")
    with gov.context(user="bob", service="StockService"):
        write(gov, f"UPDATE {item} SET qty = qty + 1 WHERE id = 1")
        write(gov, f"DELETE FROM {item} WHERE id = 2")
    rows = audit_rows(
        backend, "model_name = ? AND operation IN ('CREATE','UPDATE','DELETE')", ("shop.item",)
    )
    assert [(r["operation"], r["object_id"]) for r in rows] == [
        ("CREATE", "1"),
        ("CREATE", "2"),
        ("UPDATE", "1"),
        ("DELETE", "2"),
    ]
    create, _, update, delete = rows
    assert create["after_data"] == {"id": 1, "name": "pen", "qty": 5, "touched_at": None}
    assert create["before_data"] is None
    assert (create["user_name"], create["source_service"]) == ("alice", "ShopGateway")
    assert (create["ip_address"], create["user_agent"], create["request_id"]) == (
        "192.0.2.1",
        "ua",
        "r-1",
    )
    assert update["before_data"]["qty"] == 5 and update["after_data"]["qty"] == 6
    assert update["changed_fields"] == ["qty"]
    assert (update["user_name"], update["source_service"]) == ("bob", "StockService")
    assert delete["before_data"] == {"id": 2, "name": "ink", "qty": 1, "touched_at": None}
    assert delete["after_data"] is None


def test_no_op_and_ignored_only_updates_write_nothing(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    gov.audit.enable(item, model_name="shop.item", ignore_columns=["touched_at"])
    write(gov, f"INSERT INTO {item} (id, name, qty) VALUES (1, 'pen', 5), (2, 'ink', 1)")
    before = len(audit_rows(backend))
    write(gov, f"UPDATE {item} SET name = name")
    write(gov, f"UPDATE {item} SET touched_at = 'now'")
    assert len(audit_rows(backend)) == before
    write(gov, f"UPDATE {item} SET touched_at = 'later', qty = 7 WHERE id = 2")
    [row] = audit_rows(backend, "id > ?", (audit_rows(backend)[before - 1]["id"],))
    assert row["object_id"] == "2" and row["changed_fields"] == ["qty"]
    assert row["after_data"]["touched_at"] == "later"


def test_composite_key_and_table_without_key(gov: Any, backend: Backend) -> None:
    line = make_table(backend, "line", "doc text, n int, amount int, PRIMARY KEY (doc, n)")
    loose = make_table(backend, "loose", "note text, n int")
    gov.audit.enable(line, model_name="acc.line")
    gov.audit.enable(loose, model_name="acc.loose")
    write(gov, f"INSERT INTO {line} VALUES ('INV:1', 1, 10), ('INV:1', 2, 20)")
    write(gov, f"UPDATE {line} SET amount = 11 WHERE n = 1")
    write(gov, f"INSERT INTO {loose} VALUES ('a', 1), ('b', 2)")
    write(gov, f"UPDATE {loose} SET n = n * 10")
    write(gov, f"DELETE FROM {loose} WHERE note = 'a'")
    lines = audit_rows(backend, "model_name = 'acc.line' AND operation <> 'AUDIT_ENABLED'")
    assert [r["object_id"] for r in lines] == ["INV%3A1:1", "INV%3A1:2", "INV%3A1:1"]
    assert gov.audit.history("acc.line", ("INV:1", 1))[0].after_data["amount"] == 11
    loose_rows = audit_rows(backend, "model_name = 'acc.loose' AND operation <> 'AUDIT_ENABLED'")
    assert [(r["operation"], r["object_id"]) for r in loose_rows] == [
        ("CREATE", None),
        ("CREATE", None),
        ("UPDATE", None),
        ("UPDATE", None),
        ("DELETE", None),
    ]
    updates = [(r["before_data"]["n"], r["after_data"]["n"]) for r in loose_rows[2:4]]
    assert sorted(updates) == [(1, 10), (2, 20)]
    assert all(r["changed_fields"] == ["n"] for r in loose_rows[2:4])


def test_enable_twice_is_a_no_op_and_disable_stops_auditing(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    first = gov.audit.enable(item)
    again = gov.audit.enable(item)
    assert first == again
    assert len(audit_rows(backend, "operation = 'AUDIT_ENABLED'")) == 1
    assert [t.model_name for t in gov.audit.audited_tables()] == [first.model_name]
    write(gov, f"INSERT INTO {item} (id) VALUES (1)")
    assert gov.audit.disable(item) is True
    assert gov.audit.disable(item) is False
    write(gov, f"INSERT INTO {item} (id) VALUES (2)")
    ops = [r["operation"] for r in audit_rows(backend)]
    assert ops == ["AUDIT_ENABLED", "CREATE", "AUDIT_DISABLED"]
    assert gov.audit.audited_tables() == []


def test_enable_with_new_settings_updates_them(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    gov.audit.enable(item, model_name="a.one")
    changed = gov.audit.enable(item, model_name="a.two", ignore_columns=("qty",))
    assert (changed.model_name, changed.ignore_columns) == ("a.two", ["qty"])
    write(gov, f"INSERT INTO {item} (id, qty) VALUES (1, 1)")
    write(gov, f"UPDATE {item} SET qty = 2")
    assert [r["operation"] for r in audit_rows(backend, "model_name = 'a.two'")] == [
        "AUDIT_ENABLED",
        "CREATE",
    ]


def test_weird_table_and_column_names_are_audited(gov: Any, backend: Backend) -> None:
    weird = make_table(backend, '"weird; name"', 'id int PRIMARY KEY, "col ""x""; --" text')
    info = gov.audit.enable(weird, model_name="odd.name")
    assert info.triggers_installed
    write(gov, f"INSERT INTO {weird} VALUES (1, 'it''s')")
    write(gov, f'UPDATE {weird} SET "col ""x""; --" = \'ok\'')
    rows = audit_rows(backend, "model_name = 'odd.name' AND operation <> 'AUDIT_ENABLED'")
    assert rows[0]["after_data"] == {"id": 1, 'col "x"; --': "it's"}
    assert rows[1]["changed_fields"] == ['col "x"; --']
    assert gov.audit.disable(weird) is True


@pytest.mark.parametrize(
    "table",
    ["item; DROP TABLE item", "item'); DROP TABLE item; --", 'public."item', "no_such_table"],
)
def test_table_names_never_run_sql(gov: Any, backend: Backend, table: str) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    with pytest.raises(ValidationError):
        gov.audit.enable(table)
    assert backend.query(f"SELECT count(*) FROM {item}") == [(0,)]
    assert audit_rows(backend) == []


def test_unknown_ignored_column_is_refused(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    with pytest.raises(ValidationError) as info:
        gov.audit.enable(item, ignore_columns=["nope"])
    assert info.value.context["columns"] == ["nope"]
    assert gov.audit.audited_tables() == []


def test_one_statement_touching_many_rows_is_audited_completely(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    gov.audit.enable(item, model_name="shop.item")
    values = ", ".join(f"({i}, 'n{i}', {i})" for i in range(2000))
    write(gov, f"INSERT INTO {item} (id, name, qty) VALUES {values}")
    write(gov, f"UPDATE {item} SET qty = qty + 1 WHERE (id / 2) * 2 = id")
    counts = dict(
        backend.query(
            f"SELECT operation, count(*) FROM {backend.table('audit_trail')} "
            "WHERE model_name = 'shop.item' GROUP BY operation"
        )
    )
    assert counts == {"AUDIT_ENABLED": 1, "CREATE": 2000, "UPDATE": 1000}
    mismatched = [
        r
        for r in audit_rows(backend, "operation = 'UPDATE'")
        if r["after_data"]["id"] != int(r["object_id"])
        or r["after_data"]["qty"] != r["before_data"]["qty"] + 1
    ]
    assert mismatched == []


# --- history and state at a moment -----------------------------------------------------------


def test_history_is_newest_first_with_paging(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    gov.audit.enable(item, model_name="shop.item")
    write(gov, f"INSERT INTO {item} (id, qty) VALUES (7, 0), (8, 0)")
    for q in range(1, 6):
        with gov.context(user=f"u{q}"):
            write(gov, f"UPDATE {item} SET qty = ? WHERE id = 7", q)
    page1 = gov.audit.history("shop.item", 7, limit=4)
    assert [r.operation for r in page1] == ["UPDATE"] * 4
    assert [r.after_data["qty"] for r in page1] == [5, 4, 3, 2]
    assert page1[0].user_name == "u5" and page1[0].changed_fields == ["qty"]
    page2 = gov.audit.history("shop.item", "7", limit=4, before_id=page1[-1].id)
    assert [r.after_data["qty"] for r in page2] == [1, 0]
    assert page2[-1].operation == "CREATE"
    assert gov.audit.history("shop.item", 7, before_id=page2[-1].id) == []
    assert gov.audit.history("shop.item", 999) == []
    with pytest.raises(ValidationError):
        gov.audit.history("shop.item", 7, limit=0)


def test_object_at_rebuilds_past_state(gov: Any, backend: Backend) -> None:
    item = make_table(backend, "item", ITEM_COLUMNS)
    gov.audit.enable(item, model_name="shop.item")
    write(gov, f"INSERT INTO {item} (id, name, qty) VALUES (1, 'pen', 1)")
    write(gov, f"UPDATE {item} SET qty = 2 WHERE id = 1")
    write(gov, f"UPDATE {item} SET name = 'pencil' WHERE id = 1")
    write(gov, f"DELETE FROM {item} WHERE id = 1")
    hist = list(reversed(gov.audit.history("shop.item", 1)))
    assert [h.operation for h in hist] == ["CREATE", "UPDATE", "UPDATE", "DELETE"]
    before_all = hist[0].occurred_at - timedelta(seconds=1)
    assert gov.audit.object_at("shop.item", 1, before_all) is None
    assert gov.audit.object_at("shop.item", 1, hist[0].occurred_at)["qty"] == 1
    state = gov.audit.object_at("shop.item", 1, hist[2].occurred_at)
    assert state == {"id": 1, "name": "pencil", "qty": 2, "touched_at": None}
    assert gov.audit.object_at("shop.item", 1, hist[3].occurred_at) is None
    # Explicit partial updates are merged over the state before them.
    gov.audit.log_operation("doc.x", "9", "CREATE", after_data={"a": 1, "b": 1})
    gov.audit.log_operation("doc.x", "9", "UPDATE", after_data={"b": 2})
    assert gov.audit.object_at("doc.x", "9", datetime.now(UTC)) == {"a": 1, "b": 2}


# --- seals, tampering, retention -------------------------------------------------------------


def tamper(backend: Backend, statement: str, params: tuple[Any, ...] = ()) -> None:
    """What a superuser can do: switch the append-only guard off, then change the trail."""
    if backend.is_postgres:
        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")
            conn.execute(statement.replace("?", "%s"), params)
        return
    with sqlite3.connect(backend.dsn) as conn:
        guards = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%no_%'"
        ).fetchall()
        for name, _ in guards:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(statement, params)
        for _, sql in guards:
            conn.execute(sql)


def forge_row(backend: Backend, row_id: int, like_id: int) -> None:
    """Insert a row into the sealed range that ``like_id`` belongs to."""
    trail = backend.table("audit_trail")
    if backend.is_postgres:
        tamper(
            backend,
            f"INSERT INTO {trail} (id, occurred_at, transaction_id, model_name, operation, db_role)"
            f" SELECT ?, occurred_at, transaction_id, 'm.t', 'CREATE', db_role FROM {trail}"
            " WHERE id = ?",
            (row_id, like_id),
        )
    else:
        tamper(
            backend,
            f"INSERT INTO {trail} (id, occurred_at, model_name, operation)"
            f" SELECT ?, occurred_at, 'm.t', 'CREATE' FROM {trail} WHERE id = ?",
            (row_id, like_id),
        )


@pytest.fixture
def sealed(gov: Any, backend: Backend) -> list[int]:
    """Six rows with a gap in their ids (ids are not dense), all sealed; returns the ids."""
    ids = [gov.audit.log_operation("m.t", str(i), "CREATE") for i in range(3)]
    forge_row(backend, ids[-1] + 10, ids[-1])  # before the seal: an ordinary row
    ids.append(ids[-1] + 10)
    ids += [gov.audit.log_operation("m.t", str(i), "UPDATE") for i in range(2)]
    seals = gov.audit.seal()
    assert sum(s.row_count for s in seals) == 6
    assert seals[0].first_id == min(ids) and seals[-1].last_id == max(ids)
    assert gov.audit.verify().ok
    return sorted(ids)


def test_seal_chains_and_verify_passes(gov: Any, sealed: list[int]) -> None:
    assert gov.audit.seal() == []
    new_id = gov.audit.log_operation("m.t", "9", "DELETE")
    [second] = gov.audit.seal()
    assert (second.row_count, second.first_id, second.last_id) == (1, new_id, new_id)
    assert len(second.hash) == 64
    result = gov.audit.verify()
    assert result.ok and bool(result)
    assert (result.seals_checked, result.rows_checked) == (2, 7)
    assert result.bad_seal_id is None and result.problem is None


def test_verify_catches_an_edited_row(gov: Any, backend: Backend, sealed: list[int]) -> None:
    tamper(
        backend,
        f"UPDATE {backend.table('audit_trail')} SET user_name = 'mallory' WHERE id = ?",
        (sealed[1],),
    )
    result = gov.audit.verify()
    assert not result.ok
    assert (result.bad_row_id, result.problem) == (sealed[1], "sealed row modified")
    assert result.bad_seal_id is not None


def test_verify_catches_a_deleted_row(gov: Any, backend: Backend, sealed: list[int]) -> None:
    tamper(backend, f"DELETE FROM {backend.table('audit_trail')} WHERE id = ?", (sealed[2],))
    result = gov.audit.verify()
    assert (result.ok, result.bad_row_id, result.problem) == (
        False,
        sealed[2],
        "sealed row deleted",
    )


def test_verify_catches_an_inserted_row(gov: Any, backend: Backend, sealed: list[int]) -> None:
    forge_row(backend, sealed[2] + 5, sealed[2])
    result = gov.audit.verify()
    assert (result.ok, result.bad_row_id, result.problem) == (
        False,
        sealed[2] + 5,
        "row inserted into a sealed range",
    )


def test_verify_catches_a_rewritten_seal_chain(
    gov: Any, backend: Backend, sealed: list[int]
) -> None:
    gov.audit.log_operation("m.t", "9", "DELETE")
    [second] = gov.audit.seal()
    tamper(
        backend,
        f"UPDATE {backend.table('audit_seal')} SET previous_hash = ? WHERE id = ?",
        ("f" * 64, second.id),
    )
    result = gov.audit.verify()
    assert (result.ok, result.bad_seal_id) == (False, second.id)
    assert result.problem is not None and "chain" in result.problem


def test_seals_are_append_only(gov: Any, backend: Backend, sealed: list[int]) -> None:
    with pytest.raises(GovernanceError) as info, gov.transaction() as conn:
        execute(gov, conn, f"DELETE FROM {backend.table('audit_seal')}")
    assert info.value.sqlstate == "GV001"


def old_month_rows(backend: Backend) -> None:
    """Rows from January 2020 (its own partition on PostgreSQL), written as the owner."""
    trail = backend.table("audit_trail")
    if backend.is_postgres:
        backend.query(
            "CREATE TABLE governance.audit_trail_p2020_01 PARTITION OF governance.audit_trail "
            "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00')"
        )
        backend.query(
            f"INSERT INTO {trail} (occurred_at, transaction_id, model_name, operation, db_role) "
            "SELECT '2020-01-15 12:00+00', pg_current_xact_id()::text::bigint, 'old.t', "
            "'CREATE', 'postgres' FROM generate_series(1, 3)"
        )
    else:
        for _ in range(3):
            backend.query(
                f"INSERT INTO {trail} (occurred_at, model_name, operation) "
                "VALUES ('2020-01-15T12:00:00.000000+00:00', 'old.t', 'CREATE')"
            )


def test_drop_before_removes_whole_old_months_and_verify_still_passes(
    gov: Any, backend: Backend
) -> None:
    old_month_rows(backend)
    gov.audit.log_operation("m.t", "1", "CREATE")
    seals = gov.audit.seal()
    assert [s.month.year for s in seals] == [2020, datetime.now(UTC).year]
    with gov.context(user="dba", superuser=True):
        dropped = gov.audit.drop_before(date(2020, 2, 1))
        with pytest.raises(ValidationError):
            gov.audit.drop_before(datetime.now(UTC) + timedelta(days=40))
    assert [(d.month, d.rows) for d in dropped] == [(datetime(2020, 1, 1, tzinfo=UTC), 3)]
    assert audit_rows(backend, "model_name = 'old.t'") == []
    [retention] = audit_rows(backend, "operation = 'RETENTION'")
    assert retention["user_name"] == "dba" and retention["extra"]["rows_dropped"] == 3
    result = gov.audit.verify()
    assert result.ok, result
    assert result.rows_checked == 1


def test_sqlite_drop_before_needs_the_superuser_flag(sqlite_gov: Any) -> None:
    # SQLite has no roles: the context's superuser flag stands in for governance_admin
    # (PostgreSQL checks the role: see test_audit_pg).
    with pytest.raises(AuthorityViolationError):
        sqlite_gov.audit.drop_before(date(2020, 2, 1))
