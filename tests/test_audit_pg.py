"""Audit trail behaviour that only PostgreSQL has (roles, TRUNCATE, partitions, the planner,
sealing alongside concurrent writers), SQLite's own limits, and the demo step on both."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

import pygov
from pygov.errors import AuthorityViolationError, GovernanceError, ValidationError
from tests.helpers import run_threads


def sql(dsn: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the owner (a superuser, like a DBA in psql), with no governance context."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return list(cur.fetchall()) if cur.description else []


@pytest.fixture
def item(pg_gov: pygov.Governance, pg_dsn: str) -> str:
    sql(pg_dsn, "CREATE TABLE public.item (id int PRIMARY KEY, qty int NOT NULL)")
    sql(pg_dsn, "GRANT ALL ON public.item TO governance_app")
    pg_gov.audit.enable("public.item")
    return "public.item"


def test_psql_write_without_context_is_recorded_with_its_role(pg_dsn: str, item: str) -> None:
    sql(pg_dsn, "INSERT INTO public.item VALUES (1, 1)")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE governance_app")
        conn.execute("UPDATE public.item SET qty = 2")
    rows = sql(
        pg_dsn,
        "SELECT operation, user_name, db_role FROM governance.audit_trail "
        "WHERE model_name = 'public.item' AND operation <> 'AUDIT_ENABLED' ORDER BY id",
    )
    assert rows == [("CREATE", None, "postgres"), ("UPDATE", None, "governance_app")]


@pytest.mark.parametrize("first_call", [True, False], ids=["new-key", "duplicate"])
def test_context_given_to_check_and_record_reaches_later_audited_writes(
    pg_dsn: str, item: str, first_call: bool
) -> None:
    # A DBA's transaction: check_and_record installs its context (on its one-INSERT fast path
    # and on the duplicate path alike), and the audit trigger of the next write reads it.
    if not first_call:
        sql(pg_dsn, "SELECT * FROM governance.check_and_record('fee', 'k-ctx')")
    context = {"user": "alice", "service": "billing", "ip": "10.0.0.7", "request_id": "r-1"}
    with psycopg.connect(pg_dsn) as conn:
        [(outcome,)] = conn.execute(
            "SELECT outcome FROM governance.check_and_record('fee', 'k-ctx', NULL, NULL, NULL,"
            " %s::jsonb)",
            (json.dumps(context),),
        ).fetchall()
        conn.execute("INSERT INTO public.item VALUES (7, 1)")
        conn.commit()
    assert outcome == ("RECORDED" if first_call else "DUPLICATE")
    rows = sql(
        pg_dsn,
        "SELECT user_name, source_service, host(ip_address), request_id FROM "
        "governance.audit_trail WHERE model_name = 'public.item' AND operation = 'CREATE'",
    )
    assert rows == [("alice", "billing", "10.0.0.7", "r-1")]


def test_app_role_writes_audited_tables_but_cannot_insert_into_the_trail(
    pg_dsn: str, item: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE governance_app")
        conn.execute("INSERT INTO public.item VALUES (5, 1)")  # the trigger writes for it
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO governance.audit_trail (transaction_id, operation, db_role) "
                "VALUES (1, 'CREATE', 'x')"
            )
        # ... but it can log through the functions.
        conn.execute("SELECT governance.log_operation('m.t', '1', 'CREATE')")
    assert sql(
        pg_dsn, "SELECT count(*) FROM governance.audit_trail WHERE db_role = 'governance_app'"
    ) == [(2,)]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE governance.audit_trail SET operation = 'X'",
        "DELETE FROM governance.audit_trail",
        "TRUNCATE governance.audit_trail",
        "UPDATE governance.audit_trail_default SET operation = 'X' WHERE false",
        "DELETE FROM {partition}",
        "TRUNCATE {partition}",
        "UPDATE governance.audit_trail SET operation = 'X' WHERE id < 0",
    ],
)
def test_trail_is_append_only_even_for_the_owner(
    pg_gov: pygov.Governance, pg_dsn: str, statement: str
) -> None:
    pg_gov.audit.log_operation("m.t", "1", "CREATE")
    partition = sql(
        pg_dsn,
        "SELECT format('governance.%I', governance.audit_partition_name("
        "governance.audit_month_start(now())))",
    )[0][0]
    with pytest.raises(GovernanceError) as info, pg_gov.transaction() as conn:
        conn.execute(statement.format(partition=partition))
    assert info.value.sqlstate == "GV001"
    assert "append-only" in info.value.message
    assert sql(pg_dsn, "SELECT count(*) FROM governance.audit_trail") == [(1,)]


def test_truncate_of_an_audited_table_is_recorded(
    pg_gov: pygov.Governance, pg_dsn: str, item: str
) -> None:
    with pg_gov.context(user="ops"), pg_gov.transaction() as conn:
        conn.execute("INSERT INTO public.item VALUES (1, 1), (2, 2)")
    with pg_gov.context(user="ops"), pg_gov.transaction() as conn:
        conn.execute("TRUNCATE public.item")
    rows = sql(
        pg_dsn,
        "SELECT operation, object_id, user_name FROM governance.audit_trail "
        "WHERE operation = 'TRUNCATE'",
    )
    assert rows == [("TRUNCATE", None, "ops")]
    assert pg_gov.audit.object_at("public.item", 1, datetime.now(UTC)) is None


def test_hundred_thousand_row_statement_is_audited_completely(
    pg_gov: pygov.Governance, pg_dsn: str, item: str
) -> None:
    sql(pg_dsn, "INSERT INTO public.item SELECT g, g FROM generate_series(1, 100000) g")
    sql(pg_dsn, "UPDATE public.item SET qty = qty + 1 WHERE id <= 50000")
    counts = dict(
        sql(
            pg_dsn,
            "SELECT operation, count(*) FROM governance.audit_trail "
            "WHERE model_name = 'public.item' GROUP BY 1",
        )
    )
    assert counts == {"AUDIT_ENABLED": 1, "CREATE": 100000, "UPDATE": 50000}
    wrong = sql(
        pg_dsn,
        "SELECT count(*) FROM governance.audit_trail WHERE operation = 'UPDATE' "
        "AND ((after_data->>'qty')::int <> (before_data->>'qty')::int + 1 "
        "OR object_id <> after_data->>'id' OR changed_fields <> '{qty}')",
    )
    assert wrong == [(0,)]


def as_app(dsn: str) -> pygov.Governance:
    """pygov connected with the governance_app role, as an application would be."""
    return pygov.connect(f"{dsn} options='-c role=governance_app'", pool_min_size=0)


def test_only_admins_may_drop_audit_partitions(pg_dsn: str) -> None:
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.drop_before(date(2020, 1, 1))  # no EXECUTE on it at all
    sql(
        pg_dsn,
        "GRANT EXECUTE ON FUNCTION governance.drop_audit_before(timestamptz, jsonb) "
        "TO governance_app",
    )
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError) as info:
        app.audit.drop_before(date(2020, 1, 1))  # granted by mistake: the role check holds
    assert info.value.sqlstate == "GV001"
    assert info.value.context["action"] == "drop_audit_before"


def test_enable_needs_owner_or_admin(pg_dsn: str) -> None:
    sql(pg_dsn, "CREATE TABLE public.secret (id int PRIMARY KEY)")
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError) as info:
        app.audit.enable("public.secret")
    assert info.value.context["table"] == "public.secret"
    assert sql(pg_dsn, "SELECT count(*) FROM governance.audited_table") == [(0,)]


def test_views_and_governance_tables_are_refused(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    sql(pg_dsn, "CREATE VIEW public.v AS SELECT 1 AS x")
    with pytest.raises(ValidationError):
        pg_gov.audit.enable("public.v")
    with pytest.raises(ValidationError):
        pg_gov.audit.enable("governance.audit_trail")
    sql(pg_dsn, 'CREATE TABLE public."Mixed Case" (id int PRIMARY KEY)')
    info = pg_gov.audit.enable(("public", "Mixed Case"))
    assert (info.table_name, info.model_name) == ('public."Mixed Case"', "public.Mixed Case")


def test_partitions_exist_ahead_and_rows_land_in_them(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    names = {
        r[0]
        for r in sql(
            pg_dsn,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
            "ON c.oid = i.inhrelid WHERE i.inhparent = "
            "'governance.audit_trail'::regclass",
        )
    }
    now = datetime.now(UTC)
    expected = {
        f"audit_trail_p{(now.year * 12 + now.month - 1 + k) // 12:04d}_"
        f"{(now.month - 1 + k) % 12 + 1:02d}"
        for k in range(4)
    }
    assert expected | {"audit_trail_default"} <= names
    assert sql(pg_dsn, "SELECT governance.ensure_audit_partitions(3)") == [(0,)]
    pg_gov.migrate()  # again: idempotent
    pg_gov.audit.log_operation("m.t", "1", "CREATE")
    assert sql(pg_dsn, "SELECT tableoid::regclass::text FROM governance.audit_trail") == [
        (f"governance.audit_trail_p{now:%Y_%m}",)
    ]


def test_seal_neither_waits_for_nor_includes_unfinished_writers(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    pg_gov.audit.log_operation("m.t", "done", "CREATE")
    with psycopg.connect(pg_dsn) as writer:  # a transaction left open
        writer.execute("SELECT governance.log_operation('m.t', 'open', 'CREATE')")
        with psycopg.connect(pg_dsn, autocommit=True) as sealer:
            sealer.execute("SET statement_timeout = '5s'")
            seals = sealer.execute("SELECT row_count FROM governance.seal_audit()").fetchall()
        assert seals == [(1,)]
        writer.commit()
    later = pg_gov.audit.seal()
    assert [s.row_count for s in later] == [1]
    assert pg_gov.audit.verify().ok


def test_open_sealing_transaction_does_not_block_writers(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    pg_gov.audit.log_operation("m.t", "1", "CREATE")
    with psycopg.connect(pg_dsn) as sealer:
        sealer.execute("SELECT * FROM governance.seal_audit()")
        with psycopg.connect(pg_dsn, autocommit=True) as writer:
            writer.execute("SET lock_timeout = '2s'")
            writer.execute("SELECT governance.log_operation('m.t', '2', 'UPDATE')")
        sealer.commit()
    assert [s.row_count for s in pg_gov.audit.seal()] == [1]


def test_sealing_while_four_clients_write_seals_every_row_once(
    pg_gov: pygov.Governance, pg_dsn: str, item: str
) -> None:
    stop = threading.Event()
    sealed: list[int] = []

    def seal_loop() -> None:
        while not stop.is_set():
            sealed.extend(s.row_count for s in pg_gov.audit.seal())

    sealer = threading.Thread(target=seal_loop)
    sealer.start()

    def client(c: int) -> None:
        for i in range(40):
            with pg_gov.context(user=f"client-{c}"), pg_gov.transaction() as conn:
                conn.execute("INSERT INTO public.item VALUES (%s, 0)", (c * 1000 + i,))
                conn.execute("UPDATE public.item SET qty = 1 WHERE id = %s", (c * 1000 + i,))

    try:
        assert run_threads(4, client) == [None] * 4
    finally:
        stop.set()
        sealer.join()
    sealed.extend(s.row_count for s in pg_gov.audit.seal())
    total = sql(pg_dsn, "SELECT count(*) FROM governance.audit_trail")[0][0]
    assert total == 1 + 4 * 40 * 2
    assert sum(sealed) == total
    result = pg_gov.audit.verify()
    assert result.ok and result.rows_checked == total


def test_auditor_reads_history_but_cannot_log(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    pg_gov.audit.log_operation("m.t", "1", "CREATE", after_data={"a": 1})
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE governance_auditor")
        rows = conn.execute("SELECT operation FROM governance.object_history('m.t', '1')")
        assert rows.fetchall() == [("CREATE",)]
        assert conn.execute("SELECT ok FROM governance.verify_audit()").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT governance.log_operation('m.t', '1', 'CREATE')")


def test_history_of_a_table_is_shown_only_to_roles_that_may_read_it(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    sql(pg_dsn, "CREATE TABLE public.salary (id int PRIMARY KEY, amount int)")
    sql(pg_dsn, "CREATE TABLE public.bonus (id int PRIMARY KEY, amount int)")
    pg_gov.audit.enable("public.salary")
    pg_gov.audit.enable("public.bonus", model_name="hr.Bonus")
    sql(pg_dsn, "INSERT INTO public.salary VALUES (1, 900)")
    sql(pg_dsn, "INSERT INTO public.bonus VALUES (1, 50)")
    now = datetime.now(UTC)
    with as_app(pg_dsn) as app:
        # governance_app may call object_history, but not to read rows it cannot SELECT,
        # whether the model is the table's name or the model name it was audited under
        for model in ("public.salary", "hr.Bonus"):
            with pytest.raises(AuthorityViolationError) as info:
                app.audit.history(model, 1)
            assert info.value.context["model_name"] == model
            with pytest.raises(AuthorityViolationError):
                app.audit.object_at(model, 1, now)
        # a model name of the application's own stays readable by it
        app.audit.log_operation("payroll.Salary", "1", "CREATE", after_data={"amount": 1})
        assert [r.after_data for r in app.audit.history("payroll.Salary", "1")] == [{"amount": 1}]
    sql(pg_dsn, "GRANT SELECT ON public.salary, public.bonus TO governance_app")
    with as_app(pg_dsn) as app:
        assert [r.after_data for r in app.audit.history("public.salary", 1)] == [
            {"id": 1, "amount": 900}
        ]
        assert app.audit.object_at("hr.Bonus", 1, now) == {"id": 1, "amount": 50}
    sql(pg_dsn, "REVOKE SELECT ON public.salary FROM governance_app")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET ROLE governance_auditor")  # auditors read every history
        rows = conn.execute(
            "SELECT after_data, governance.caller_may_read('public.salary')"
            " FROM governance.object_history('public.salary', '1')"
        )
        assert rows.fetchall() == [({"id": 1, "amount": 900}, True)]


def test_history_stays_closed_when_the_table_is_renamed_unaudited_hidden_or_out_of_reach(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    sql(pg_dsn, "CREATE TABLE public.card (id int PRIMARY KEY, pan text)")
    pg_gov.audit.enable("public.card", model_name="Card")
    sql(pg_dsn, "INSERT INTO public.card VALUES (1, '4111'), (2, '5500')")
    pg_gov.audit.disable("public.card")  # the model no longer names an audited table
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.history("Card", 1)
    sql(pg_dsn, "GRANT SELECT ON public.card TO governance_app")
    with as_app(pg_dsn) as app:  # ... but it still answers to its table
        assert [r.after_data for r in app.audit.history("Card", 1)] == [{"id": 1, "pan": "4111"}]
    # row-level security that hides rows from the caller hides their history too
    sql(pg_dsn, "ALTER TABLE public.card ENABLE ROW LEVEL SECURITY")
    sql(pg_dsn, "CREATE POLICY first_only ON public.card TO governance_app USING (id = 1)")
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.history("Card", 2)
    sql(pg_dsn, "ALTER TABLE public.card DISABLE ROW LEVEL SECURITY")
    # so does a schema the caller may not use, and a rename or a drop of the table
    sql(pg_dsn, "CREATE SCHEMA locked")
    sql(pg_dsn, "ALTER TABLE public.card SET SCHEMA locked")
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.history("Card", 1)
    sql(pg_dsn, "DROP TABLE locked.card")
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.history("Card", 1)
    assert len(pg_gov.audit.history("Card", 1)) == 1  # admins still read it


def test_model_names_cannot_be_borrowed_or_forged_to_read_history(
    pg_gov: pygov.Governance, pg_dsn: str
) -> None:
    sql(pg_dsn, "CREATE TABLE public.vault (id int PRIMARY KEY, secret text)")
    pg_gov.audit.enable("public.vault")
    sql(pg_dsn, "INSERT INTO public.vault VALUES (1, 'gold')")
    # rows logged by hand under a table's name are that table's, also after a rename
    sql(pg_dsn, "CREATE TABLE public.ledger2 (id int PRIMARY KEY)")
    pg_gov.audit.log_operation("public.ledger2", "1", "CREATE", after_data={"secret": "x"})
    sql(pg_dsn, "ALTER TABLE public.ledger2 RENAME TO ledger3")
    with as_app(pg_dsn) as app:
        with pytest.raises(AuthorityViolationError):
            app.audit.history("public.ledger2", "1")
        # a table of one's own cannot take the name of one the caller may not read
        with app.transaction() as tx:
            tx.execute("CREATE TEMP TABLE mine (id int PRIMARY KEY)")
            with pytest.raises(AuthorityViolationError) as info:
                app.audit.enable("pg_temp.mine", model_name="public.vault", conn=tx)
            assert info.value.context["model_name"] == "public.vault"
        # nor can the governance schema's own history be written by the application, nor
        # a table of its own stand for a governance model
        model = "governance.quarantine_record"
        with app.transaction() as tx:
            tx.execute("CREATE TEMP TABLE fake (id int PRIMARY KEY)")
            for forge in (
                lambda: app.audit.log_operation(model, "1", "UPDATE", conn=tx),
                lambda: app.audit.log_gateway_operation("gw", model, "1", "DELETE", conn=tx),
                lambda: app.audit.enable("pg_temp.fake", model_name=model, conn=tx),
            ):
                tx.execute("SAVEPOINT forge")
                with pytest.raises(AuthorityViolationError):
                    forge()
                tx.execute("ROLLBACK TO SAVEPOINT forge")
    sql(pg_dsn, "DROP TABLE public.vault")  # gone: nobody's privilege can be checked any more
    with as_app(pg_dsn) as app, pytest.raises(AuthorityViolationError):
        app.audit.history("public.vault", 1)
    assert pg_gov.audit.history("public.vault", 1)[0].after_data == {"id": 1, "secret": "gold"}


# --- the planner uses the indexes ------------------------------------------------------------


@pytest.fixture(scope="module")
def big_trail(pg_server: Any, template_db: str) -> Iterator[str]:
    """200,000 audit rows over 2,000 objects and 30 days, in time order (as a trail is
    written), each of 500 users active for one stretch; vacuumed and analysed."""
    from psycopg import sql as pgsql

    name = "pygov_audit_explain"
    admin = pg_server.admin_dsn
    sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                pgsql.Identifier(name), pgsql.Identifier(template_db)
            )
        )
    dsn = pg_server.dsn(name)
    sql(
        dsn,
        "INSERT INTO governance.audit_trail (occurred_at, transaction_id, model_name, "
        "object_id, operation, user_name, db_role, after_data) "
        "SELECT now() - (200000 - g) * interval '12.96 seconds', "
        "pg_current_xact_id()::text::bigint, 'shop.item', (g % 2000)::text, 'UPDATE', "
        "'user-' || (g / 400), 'postgres', jsonb_build_object('qty', g) "
        "FROM generate_series(1, 200000) g",
    )
    sql(dsn, "VACUUM ANALYZE governance.audit_trail")
    yield dsn
    sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def plan_nodes(dsn: str, query: str) -> list[dict[str, Any]]:
    plan = sql(dsn, f"EXPLAIN (FORMAT JSON) {query}")[0][0]
    plan = plan if isinstance(plan, list) else json.loads(plan)
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return nodes


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "SELECT * FROM governance.audit_trail WHERE model_name = 'shop.item' "
            "AND object_id = '42' ORDER BY id DESC LIMIT 50",
            "audit_trail_object_idx",
        ),
        (
            "SELECT * FROM governance.audit_trail WHERE user_name = 'user-7'",
            "audit_trail_brin_idx",
        ),
        (
            "SELECT * FROM governance.audit_trail WHERE occurred_at "
            "BETWEEN now() - interval '3 hours' AND now() - interval '2 hours'",
            "audit_trail_brin_idx",
        ),
    ],
)
def test_hot_queries_use_their_indexes(big_trail: str, query: str, index: str) -> None:
    nodes = plan_nodes(big_trail, query)
    scans = [n for n in nodes if "Scan" in n["Node Type"]]
    assert scans, nodes
    # Empty partitions (future months) may be scanned sequentially: they have no pages. So may
    # one that holds a sliver of the trail: near the end of a month, the first hours of the
    # 30 days fall in the previous month, which only the default partition holds, and reading
    # a few thousand rows whole is the right plan.
    seq = [n["Relation Name"] for n in scans if n["Node Type"] == "Seq Scan"]
    filled = sql(
        big_trail,
        "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND reltuples > 10000",
        (seq,),
    )
    assert filled == [], seq
    # Partitions have their own copies of an index: name the index they belong to.
    names = [n["Index Name"] for n in scans if "Index Name" in n]
    parents = sql(
        big_trail,
        "SELECT DISTINCT i.inhparent::regclass::text FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = ANY(%s)",
        (names,),
    )
    assert (f"governance.{index}",) in parents, names


def test_object_history_function_is_an_index_scan(big_trail: str) -> None:
    # object_history's query: the object index, read backwards from the newest id.
    nodes = plan_nodes(
        big_trail,
        "SELECT a.* FROM governance.audit_trail a WHERE a.model_name = 'shop.item' "
        "AND octet_length(a.object_id) = octet_length('42'::text) AND a.object_id = '42' "
        "AND a.id < 9223372036854775807 ORDER BY a.id DESC LIMIT 50",
    )
    backward = [
        n["Index Name"]
        for n in nodes
        if n["Node Type"] == "Index Scan" and n.get("Scan Direction") == "Backward"
    ]
    assert any("model_name_octet_length_object_id_id_idx" in name for name in backward), nodes
    rows = sql(big_trail, "SELECT count(*) FROM governance.object_history('shop.item', '42', 50)")
    assert rows == [(50,)]


@pytest.mark.parametrize("kind", ["pg", "sqlite"])
def test_demo_step_makes_no_false_claims(kind: str, request: pytest.FixtureRequest) -> None:
    from pygov.demo import Demo, schema, step_audit

    gov = request.getfixturevalue("pg_gov" if kind == "pg" else "sqlite_gov")
    lines: list[str] = []
    demo = Demo(gov, out=lines.append)
    schema.create(demo)
    step_audit.run(demo)
    assert demo.failures == [], lines
    assert any("chain intact" in line for line in lines)


def test_sqlite_audited_table_refuses_writes_from_connections_without_pygov(
    sqlite_gov: pygov.Governance, sqlite_path: str
) -> None:
    # SQLite triggers read the context through functions that pygov registers on its own
    # connections: elsewhere the write fails rather than going unaudited.
    import sqlite3

    with sqlite3.connect(sqlite_path) as raw:
        raw.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, qty INTEGER)")
    sqlite_gov.audit.enable("item")
    with sqlite3.connect(sqlite_path) as raw, pytest.raises(sqlite3.OperationalError) as info:
        raw.execute("INSERT INTO item VALUES (1, 1)")
    assert "no such function: governance_" in str(info.value)
    with sqlite3.connect(sqlite_path) as raw:
        assert raw.execute("SELECT count(*) FROM item").fetchone() == (0,)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("item", "item"),
        ('"weird; name"', "weird; name"),
        ('main."a""b"', 'a"b'),
        ("main.item", "item"),
    ],
)
def test_sqlite_table_names_are_parsed_like_sql(text: str, name: str) -> None:
    from pygov.sqlite_ops.audit import parse_table_name

    assert parse_table_name(text) == name


@pytest.mark.parametrize("text", ["a b", '"open', "other.item", "x;y", ""])
def test_sqlite_bad_table_names_are_refused(text: str) -> None:
    from pygov.sqlite_ops.audit import parse_table_name

    with pytest.raises(ValidationError):
        parse_table_name(text)
