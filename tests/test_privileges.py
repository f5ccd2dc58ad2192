"""Privileges: what governance_app, governance_auditor and governance_admin can and cannot do,
and that the governance functions never pick up objects planted in the caller's schemas.

Each test logs in as a fresh LOGIN role (unique name: roles are cluster-wide) granted one
governance role, and drops it again afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import pygov
from pygov.errors import AuthorityViolationError, ValidationError
from tests.reliability import login_role, rows, with_params

GOVERNANCE_ROLES = ("governance_app", "governance_auditor", "governance_admin")


@pytest.fixture(params=GOVERNANCE_ROLES)
def role_dsn(request: pytest.FixtureRequest, pg_server: Any, pg_dsn: str) -> Iterator[str]:
    """A DSN logging in as a new role granted only ``request.param``."""
    with login_role(pg_server.admin_dsn, pg_dsn, request.param) as name:
        yield with_params(pg_dsn, user=name)


@pytest.fixture
def app_dsn(pg_server: Any, pg_dsn: str) -> Iterator[str]:
    with login_role(pg_server.admin_dsn, pg_dsn, "governance_app") as name:
        yield with_params(pg_dsn, user=name)


@pytest.fixture
def auditor_dsn(pg_server: Any, pg_dsn: str) -> Iterator[str]:
    with login_role(pg_server.admin_dsn, pg_dsn, "governance_auditor") as name:
        yield with_params(pg_dsn, user=name)


@pytest.fixture
def admin_dsn(pg_server: Any, pg_dsn: str) -> Iterator[str]:
    with login_role(pg_server.admin_dsn, pg_dsn, "governance_admin") as name:
        yield with_params(pg_dsn, user=name)


@pytest.fixture
def govs(
    app_dsn: str, auditor_dsn: str, admin_dsn: str
) -> Iterator[tuple[pygov.Governance, pygov.Governance, pygov.Governance]]:
    """pygov as the app, the auditor and the admin login roles."""
    opened = [pygov.connect(dsn, pool_max_size=2) for dsn in (app_dsn, auditor_dsn, admin_dsn)]
    try:
        yield opened[0], opened[1], opened[2]
    finally:
        for gov in opened:
            gov.close()


def refused(*calls: Any) -> None:
    """Each call raises AuthorityViolationError."""
    for call in calls:
        with pytest.raises(AuthorityViolationError):
            call()


def governance_tables(dsn: str) -> list[tuple[str, str]]:
    """Every table of schema governance (partitions included), with one of its columns."""
    found = rows(
        dsn,
        "SELECT c.relname, (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid "
        "  AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LIMIT 1) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'governance' AND c.relkind IN ('r', 'p', 'u') ORDER BY 1",
    )
    return [(str(t), str(col)) for t, col in found]


def write_statements(table: str, column: str) -> list[sql.Composed]:
    """INSERT, UPDATE, DELETE and TRUNCATE on a table: privileges are checked before any row
    is touched, so these fail on privileges even where they would change nothing."""
    t = sql.Identifier("governance", table)
    c = sql.Identifier(column)
    return [
        sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
        sql.SQL("UPDATE {} SET {} = DEFAULT WHERE true").format(t, c),
        sql.SQL("DELETE FROM {} WHERE true").format(t),
        sql.SQL("TRUNCATE {}").format(t),
    ]


def denied(dsn: str, statement: sql.Composable | str, params: Any = None) -> bool:
    """True when the server refuses the statement for lack of privilege (42501); False when
    the privilege check passed (the statement ran, or failed on a constraint or a trigger)."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    except psycopg.Error:
        return False
    return False


#: Direct writes a role may make by design: DBAs edit the authority matrix in SQL, and insert
#: and revoke delegations directly (triggers hold those rows to delegate_authority's rules).
BY_DESIGN = {
    "governance_admin": {
        *(
            f"{verb} governance.{table}"
            for table in (
                "authority_service",
                "authority_model",
                "authority_operation",
                "authority_matrix",
            )
            for verb in ("INSERT", "UPDATE", "DELETE")
        ),
        "INSERT governance.authority_delegation",
    }
}


# --- no governance role writes governance tables directly -------------------------------------


def test_no_governance_role_can_write_governance_tables_directly(
    role_dsn: str, pg_dsn: str, request: pytest.FixtureRequest
) -> None:
    gov = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        gov.idempotency.check_and_record("seed", "k", {"v": 1})
        gov.idempotency.claim("seed", "held")
    finally:
        gov.close()
    before = rows(pg_dsn, "SELECT * FROM governance.idempotency_record ORDER BY id")
    tables = governance_tables(pg_dsn)
    assert ("idempotency_record", "id") in tables
    allowed = {
        f"{verb} governance.{table}"
        for table, column in tables
        for verb, stmt in zip(
            ("INSERT", "UPDATE", "DELETE", "TRUNCATE"), write_statements(table, column), strict=True
        )
        if not denied(role_dsn, stmt)
    }
    role = request.node.callspec.params["role_dsn"]
    assert allowed == BY_DESIGN.get(role, set())
    sequences = rows(
        pg_dsn,
        "SELECT schemaname || '.' || sequencename FROM pg_sequences "
        "WHERE schemaname = 'governance'",
    )
    assert sequences
    for (seq,) in sequences:
        assert denied(role_dsn, "SELECT setval(%s::regclass, 1)", (seq,))
    assert rows(pg_dsn, "SELECT * FROM governance.idempotency_record ORDER BY id") == before


def test_no_governance_role_can_create_objects_in_the_governance_schema(role_dsn: str) -> None:
    assert denied(role_dsn, "CREATE TABLE governance.planted (x int)")
    assert denied(
        role_dsn,
        "CREATE FUNCTION governance.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    )


def test_public_can_execute_no_governance_function(pg_dsn: str) -> None:
    # proacl NULL means the default ACL, which lets PUBLIC execute: every function must have
    # an explicit ACL without a PUBLIC (grantee 0) entry.
    open_to_public = rows(
        pg_dsn,
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'governance' "
        "AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a "
        "                                 WHERE a.grantee = 0))",
    )
    assert open_to_public == []


# --- governance_app ---------------------------------------------------------------------------


def test_app_role_runs_every_wrapper_operation(app_dsn: str, pg_dsn: str) -> None:
    gov = pygov.connect(app_dsn, pool_max_size=4)
    try:
        with gov.context(user="alice", service="billing", ip="10.0.0.1", request_id="r-1"):
            first = gov.idempotency.check_and_record("pay", "k1", {"paid": 1}, payload={"a": 1})
            again = gov.idempotency.check_and_record("pay", "k1", payload={"a": 1})
            claim = gov.idempotency.claim("charge", "c1", lease=30)
            done = gov.idempotency.complete(claim, {"charged": 2})
            released = gov.idempotency.release(gov.idempotency.claim("charge", "c2"))
            with gov.idempotency.guard("fee", "g1") as g:
                g.result = {"fee": 3}
            with gov.transaction() as tx:
                gov.idempotency.check_and_record("tx", "t1", conn=tx)
                # The plant is live: the caller's own unqualified SQL does call it.
                tx.execute("SELECT now()")
            found = gov.idempotency.get("pay", "k1")
            stats = gov.idempotency.stats()
            health = gov.health()
        assert not first.is_duplicate and again.is_duplicate and again.data == {"paid": 1}
        assert done.result_data == {"charged": 2} and released.status == "IN_PROGRESS"
        assert found is not None and found.created_by == "alice"
        assert stats["pay"].completed == 1 and stats["pay"].duplicates_served == 1
        assert health.ok, health.problems
    finally:
        gov.close()
    stored = rows(
        pg_dsn,
        "SELECT operation_type, created_by, created_service FROM governance.idempotency_record "
        "ORDER BY operation_type",
    )
    assert stored == [
        ("charge", "alice", "billing"),
        ("fee", "alice", "billing"),
        ("pay", "alice", "billing"),
        ("tx", "alice", "billing"),
    ]


def test_app_role_cannot_do_admin_duties(app_dsn: str, pg_dsn: str) -> None:
    gov = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        gov.idempotency.check_and_record("old", "k", ttl=0.001)
    finally:
        gov.close()
    app = pygov.connect(app_dsn, pool_max_size=2)
    try:
        with pytest.raises(AuthorityViolationError) as info:
            app.idempotency.cleanup_expired()
        assert info.value.context["action"] == "cleanup_expired"
        # Claiming to be a superuser in the Python context changes nothing in PostgreSQL.
        with app.context(superuser=True), pytest.raises(AuthorityViolationError):
            app.idempotency.cleanup_expired()
    finally:
        app.close()
    assert rows(pg_dsn, "SELECT count(*) FROM governance.idempotency_record") == [(1,)]


def test_app_role_cannot_call_internal_functions(app_dsn: str) -> None:
    assert denied(
        app_dsn,
        "SELECT governance._idempotency_acquire('x', 'k', false, NULL, NULL, NULL, NULL)",
    )


# --- governance_auditor -------------------------------------------------------------------------


def test_auditor_reads_everything_and_does_nothing_else(auditor_dsn: str, pg_dsn: str) -> None:
    gov = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        gov.idempotency.check_and_record("seed", "k", {"v": 1})
    finally:
        gov.close()
    for table, _ in governance_tables(pg_dsn):
        rows(
            auditor_dsn,
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("governance", table)),
        )
    auditor = pygov.connect(auditor_dsn, pool_max_size=2)
    try:
        record = auditor.idempotency.get("seed", "k")
        assert record is not None and record.result_data == {"v": 1}
        assert auditor.idempotency.stats()["seed"].completed == 1
        assert auditor.health().ok
        with pytest.raises(AuthorityViolationError):
            auditor.idempotency.check_and_record("seed", "k2")
        with pytest.raises(AuthorityViolationError):
            auditor.idempotency.claim("seed", "k3")
        with pytest.raises(AuthorityViolationError):
            auditor.idempotency.cleanup_expired()
    finally:
        auditor.close()
    assert rows(pg_dsn, "SELECT idempotency_key FROM governance.idempotency_record") == [("k",)]


# --- governance_admin ---------------------------------------------------------------------------


def test_admin_does_its_duties(admin_dsn: str, pg_dsn: str) -> None:
    admin = pygov.connect(admin_dsn, pool_max_size=2)
    try:
        admin.idempotency.check_and_record("old", "k", ttl=0.001)  # an admin is an app too
        admin.idempotency.check_and_record("live", "k")
        assert admin.idempotency.cleanup_expired() == 1
    finally:
        admin.close()
    assert rows(pg_dsn, "SELECT operation_type FROM governance.idempotency_record") == [("live",)]


def test_quarantine_resolution_and_administration_are_for_admins(
    govs: tuple[pygov.Governance, ...], pg_dsn: str
) -> None:
    app, auditor, admin = govs
    rows(pg_dsn, "CREATE TABLE public.ledger (id int PRIMARY KEY, qty int)")
    # Guarding a table installs a trigger: the admin needs that privilege on it (the app has
    # it too, and is still refused: guarding is an admin duty).
    rows(pg_dsn, "GRANT TRIGGER ON public.ledger TO governance_admin, governance_app")
    with app.context(user="app-user"):
        record_id = app.quarantine.quarantine_data(
            "shop.order", 1, "ORPHANED_RECORD", "no customer", {"id": 1}
        )
        assert app.quarantine.start_review(record_id).status == "UNDER_REVIEW"
    refused(
        lambda: app.quarantine.resolve(record_id, "fixed"),
        lambda: app.quarantine.guard("public.ledger"),
        lambda: app.quarantine.unguard("public.ledger"),
        lambda: app.quarantine.add_corruption_type("MY_TYPE", "mine"),
        lambda: auditor.quarantine.quarantine_data("m", 2, "ORPHANED_RECORD", "x"),
        lambda: auditor.quarantine.start_review(record_id),
        lambda: auditor.quarantine.resolve(record_id, "fixed"),
    )
    record = auditor.quarantine.get(record_id)
    assert record is not None and record.status == "UNDER_REVIEW"
    assert [r.id for r in auditor.quarantine.list("OPEN")] == [record_id]
    assert "ORPHANED_RECORD" in auditor.quarantine.corruption_types()
    with admin.context(user="admin-user"):
        assert admin.quarantine.resolve(record_id, "customer restored").status == "RESOLVED"
        assert admin.quarantine.guard("public.ledger") is True
        assert admin.quarantine.add_corruption_type("MY_TYPE", "mine") is True


MATRIX = {"Billing": {"shop.invoice": ["CREATE", "UPDATE"]}, "Reports": {}}


def test_authority_administration_is_for_admins(
    govs: tuple[pygov.Governance, ...], pg_dsn: str
) -> None:
    app, auditor, admin = govs
    rows(pg_dsn, "CREATE TABLE public.invoice (id int PRIMARY KEY, total int)")
    rows(pg_dsn, "GRANT ALL ON public.invoice TO governance_app, governance_admin")
    with admin.context(user="root"):
        admin.authority.load_matrix(MATRIX)
        lent = admin.authority.delegate(
            "Billing", "Reports", "shop.invoice", "UPDATE", 60, "month end"
        )
        assert admin.authority.protect("public.invoice", "shop.invoice") == "shop.invoice"
    with app.context(user="app-user", service="Billing"):
        assert app.authority.validate("Billing", "shop.invoice", "CREATE").via == "matrix"
        assert app.authority.has_authority("Reports", "shop.invoice", "UPDATE")
        assert app.authority.check_delegation("Reports", "shop.invoice", "UPDATE") == lent
        assert app.authority.matrix().allows("Billing", "shop.invoice", "UPDATE")
        with app.transaction() as tx:  # the protected table lets the authorised service in
            tx.execute("INSERT INTO public.invoice VALUES (1, 10)")
        refused(
            lambda: app.authority.load_matrix({}),
            lambda: app.authority.delegate("Billing", "Reports", "shop.invoice", "CREATE", 60, "x"),
            lambda: app.authority.revoke(lent.id, "mine now"),
            lambda: app.authority.protect("public.invoice"),
            lambda: app.authority.unprotect("public.invoice"),
        )
        with pytest.raises(AuthorityViolationError), app.transaction() as tx:
            app.authority.override("let me in", conn=tx)
    assert auditor.authority.has_authority("Billing", "shop.invoice", "CREATE")
    assert [d.id for d in auditor.authority.delegations(active=True)] == [lent.id]
    assert auditor.authority.problems() == []
    refused(
        lambda: auditor.authority.validate("Billing", "shop.invoice", "CREATE"),
        lambda: auditor.authority.load_matrix({}),
        lambda: auditor.authority.revoke(lent.id, "x"),
    )
    with admin.context(user="root"):
        assert admin.authority.revoke(lent.id, "done").is_revoked
    assert rows(pg_dsn, "SELECT count(*) FROM governance.authority_matrix") == [(2,)]


def test_stock_and_locks_are_for_the_app_and_readable_by_the_auditor(
    govs: tuple[pygov.Governance, ...], pg_dsn: str
) -> None:
    app, auditor, _admin = govs
    with app.context(user="clerk"):
        assert app.stock.adjust("sku", "wh", 5, movement_key="in-1") == 5
        with app.locks.advisory("count sku") as tx:
            assert app.stock.adjust("sku", "wh", -1, conn=tx) == 4
    assert auditor.stock.level("sku", "wh") == 4
    assert [m.user for m in auditor.stock.movements("sku", "wh")] == ["clerk", "clerk"]

    def lock() -> None:
        with auditor.locks.advisory("count sku"):
            pass

    refused(lambda: auditor.stock.adjust("sku", "wh", 100), lock)
    assert rows(pg_dsn, "SELECT quantity FROM governance.stock_level") == [(4,)]


def audit_partitions(dsn: str) -> list[str]:
    found = rows(
        dsn,
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'governance.audit_trail'::regclass ORDER BY 1",
    )
    return [str(r[0]) for r in found]


def test_no_governance_role_can_drop_or_detach_audit_partitions(role_dsn: str, pg_dsn: str) -> None:
    partitions = audit_partitions(pg_dsn)
    assert len(partitions) >= 2
    for part in partitions:
        assert denied(role_dsn, f"DROP TABLE {part}")
        assert denied(role_dsn, f"ALTER TABLE governance.audit_trail DETACH PARTITION {part}")
    assert denied(role_dsn, "DROP TABLE governance.audit_trail")
    assert audit_partitions(pg_dsn) == partitions


@pytest.mark.parametrize("role", ["governance_app", "governance_auditor"])
def test_only_admins_run_retention(role: str, pg_server: Any, pg_dsn: str) -> None:
    with login_role(pg_server.admin_dsn, pg_dsn, role) as name:
        gov = pygov.connect(with_params(pg_dsn, user=name), pool_max_size=1)
        try:
            with pytest.raises(AuthorityViolationError):
                gov.audit.drop_before(datetime(2020, 2, 1, tzinfo=UTC))
        finally:
            gov.close()


def test_admin_runs_retention_but_cannot_rewrite_the_trail(admin_dsn: str, pg_dsn: str) -> None:
    # An old month with one row in it (made as the owner).
    rows(
        pg_dsn,
        "CREATE TABLE governance.audit_trail_p2020_01 PARTITION OF governance.audit_trail "
        "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00')",
    )
    owner = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        owner.audit.log_operation("shop.order", 1, "CREATE", after_data={"total": 5})
    finally:
        owner.close()
    rows(pg_dsn, "ALTER TABLE governance.audit_trail DISABLE TRIGGER USER")
    rows(pg_dsn, "UPDATE governance.audit_trail SET occurred_at = '2020-01-15 00:00+00'")
    rows(pg_dsn, "ALTER TABLE governance.audit_trail ENABLE TRIGGER USER")
    admin = pygov.connect(admin_dsn, pool_max_size=2)
    try:
        dropped = admin.audit.drop_before(datetime(2020, 2, 1, tzinfo=UTC))
        assert [(d.partition, d.rows) for d in dropped] == [("audit_trail_p2020_01", 1)]
        admin.audit.log_operation("shop.order", 2, "CREATE", after_data={"total": 6})
        admin.audit.seal()
        assert admin.audit.verify().ok
    finally:
        admin.close()
    trail = rows(pg_dsn, "SELECT id, operation, user_name FROM governance.audit_trail ORDER BY id")
    for statement in (
        "UPDATE governance.audit_trail SET user_name = 'nobody'",
        "DELETE FROM governance.audit_trail",
        "UPDATE governance.audit_seal SET hash = 'forged'",
        "DELETE FROM governance.audit_seal",
        "TRUNCATE governance.audit_trail",
    ):
        assert denied(admin_dsn, statement), statement
    # Not even the owner rewrites it without first disabling its guard trigger.
    with pytest.raises(psycopg.Error, match="append-only"):
        rows(pg_dsn, "UPDATE governance.audit_trail SET user_name = 'nobody'")
    with pytest.raises(psycopg.Error, match="append-only"):
        rows(pg_dsn, "DELETE FROM governance.audit_trail")
    assert (
        rows(pg_dsn, "SELECT id, operation, user_name FROM governance.audit_trail ORDER BY id")
        == trail
    )


# --- search_path: SECURITY DEFINER functions pin it; planted objects are never used --------------


def test_security_definer_functions_pin_search_path(pg_dsn: str) -> None:
    definers = rows(
        pg_dsn,
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'governance' AND p.prosecdef "
        f"AND NOT ({EXTENSION_MEMBER}) ORDER BY 1",
    )
    assert len(definers) >= 10
    unpinned = [
        name
        for name, config in definers
        if not any(
            c.startswith("search_path=") and "public" not in c and "$user" not in c
            for c in config or []
        )
    ]
    assert unpinned == []


#: pg_proc p belongs to an extension installed in schema governance (dblink, for the authority
#: capability's autonomous violation log).
EXTENSION_MEMBER = (
    "EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass "
    "AND d.objid = p.oid AND d.deptype = 'e')"
)


def test_no_governance_role_can_execute_extension_functions(pg_dsn: str) -> None:
    # dblink_connect_u is SECURITY DEFINER and connects as the superuser: governance code uses
    # it from its own definer functions; no role may call it, or any dblink function, directly.
    found = rows(
        pg_dsn,
        "SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "CROSS JOIN (VALUES ('governance_app'), ('governance_auditor'), ('governance_admin')) "
        "AS r(rolname) "
        f"WHERE n.nspname = 'governance' AND {EXTENSION_MEMBER} "
        "AND has_function_privilege(r.rolname, p.oid, 'EXECUTE')",
    )
    assert found == []


#: Built-ins the governance code calls, planted in public. Under the default search_path
#: pg_catalog comes first, so a same-signature twin loses; an overload that matches the
#: argument types better wins (CVE-2018-1058): pg_has_role(text, ...) beats the catalog's
#: pg_has_role(name, ...) for a text argument. Each one logs its call and returns something
#: plausible but wrong (pg_has_role says "yes, admin").
HOSTILE_BUILTINS = {
    "now()": ("timestamptz", "'2000-01-01'::timestamptz"),
    "clock_timestamp()": ("timestamptz", "'2000-01-01'::timestamptz"),
    "gen_random_uuid()": ("uuid", "'00000000-0000-0000-0000-000000000000'::uuid"),
    "set_config(text, text, boolean)": ("text", "''"),
    "current_setting(text, boolean)": ("text", "'hostile'"),
    "current_setting(text)": ("text", "'hostile'"),
    "pg_has_role(text, text, text)": ("boolean", "true"),
    "pg_has_role(text, text)": ("boolean", "true"),
    "jsonb_build_object(text, text)": ("jsonb", "'{}'::jsonb"),
    "jsonb_build_object(text, text, text, text)": ("jsonb", "'{}'::jsonb"),
    "cardinality(text[])": ("integer", "1"),
    "string_agg(text, text)": ("text", "'x'"),
    "jsonb_typeof(jsonb)": ("text", "'object'"),
    "sha256(text)": ("bytea", "'\\x00'::bytea"),
    "convert_to(text, text)": ("bytea", "'\\x00'::bytea"),
    "replace(text, text, text)": ("text", "'x'"),
    "btrim(text)": ("text", "'x'"),
    "length(text)": ("integer", "1"),
}

#: Every governance function, shadowed in public under its own name and argument types (for
#: code that forgot to qualify a governance name): logs its call and raises.
SHADOW_GOVERNANCE = """
DO $plant$
DECLARE
    f record;
BEGIN
    FOR f IN
        SELECT p.proname, pg_get_function_arguments(p.oid) AS args,
               pg_get_function_result(p.oid) AS result
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'governance' AND p.prokind = 'f'
           AND p.prorettype <> 'trigger'::regtype
    LOOP
        EXECUTE format(
            'CREATE FUNCTION public.%I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
            f.proname, f.args, f.result,
            format('BEGIN PERFORM nextval(''public.hostile_seq''); '
                   'INSERT INTO public.hostile_calls VALUES (%L); '
                   'RAISE EXCEPTION ''hostile public.%s called''; END', f.proname, f.proname));
    END LOOP;
END
$plant$
"""


@pytest.fixture
def hostile_public(pg_dsn: str) -> str:
    """Plant shadowing functions and tables in the test database's public schema. Calls are
    logged twice: in public.hostile_calls, and by a sequence, which no rollback undoes."""
    statements = [
        "CREATE TABLE public.hostile_calls (name text)",
        "CREATE SEQUENCE public.hostile_seq",
        "GRANT INSERT ON public.hostile_calls TO PUBLIC",
        "GRANT USAGE, UPDATE ON public.hostile_seq TO PUBLIC",
        SHADOW_GOVERNANCE,
    ]
    for table, _ in governance_tables(pg_dsn):
        statements.append(f"CREATE TABLE public.{table} (LIKE governance.{table})")
        statements.append(f"GRANT ALL ON public.{table} TO PUBLIC")
    for signature, (returns, value) in HOSTILE_BUILTINS.items():
        statements.append(
            f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE sql VOLATILE AS $$ "
            "SELECT nextval('public.hostile_seq'); "
            f"INSERT INTO public.hostile_calls VALUES ({sql.Literal(signature).as_string(None)}); "
            f"SELECT {value} $$"
        )
    for statement in statements:
        rows(pg_dsn, statement)
    return pg_dsn


#: The functions an application may call directly that run with the caller's rights (and
#: search_path): they are not SECURITY DEFINER, so they must resolve their names safely.
CALLER_RIGHTS_CALLS = [
    'SELECT governance.apply_context(\'{"user": "u", "ip": "10.0.0.1"}\')',
    "SELECT governance.ctx('user'), governance.ctx_ip(), governance.caller_role()",
    "SELECT governance.caller_is_admin()",
    "SELECT governance.key_part('a:b%c')",
    "SELECT governance.journal_entry_key('a', 'b', 'c', 'd')",
    "SELECT governance.stock_movement_key('a', 'b', 'c', 'd')",
    "SELECT governance.payload_hash('{\"a\": 1}')",
    "SELECT governance.audit_month_start(now()), governance.audit_partition_name(now())",
    'SELECT governance.row_object_id(\'{"id": 1, "b": "x:y"}\', \'{id,b}\')',
    "SELECT governance.resolve_relation('appdata.orders', 'table')",
    "SELECT governance.lock_key('x'), governance.get_stock_level('sku', 'wh')",
    "SELECT governance.try_lock('x'), governance.lock('y', '1 second')",
    "SELECT governance.lock_rows('appdata.orders', '{1}')",
]


def test_hostile_objects_in_public_are_never_picked_up(
    hostile_public: str, app_dsn: str, pg_dsn: str, pg_server: Any
) -> None:
    app_role = conninfo_to_dict(app_dsn)["user"]
    rows(pg_dsn, sql.SQL("CREATE SCHEMA appdata AUTHORIZATION {}").format(sql.Identifier(app_role)))
    rows(app_dsn, "CREATE TABLE appdata.orders (id int PRIMARY KEY, total int)")
    gov = pygov.connect(app_dsn, pool_max_size=2)  # default search_path: "$user", public
    try:
        with gov.context(user="victim", service="shop", ip="10.0.0.9"):
            first = gov.idempotency.check_and_record("pay", "k1", {"v": 1}, payload={"p": 1})
            dup = gov.idempotency.check_and_record("pay", "k1", payload={"p": 1})
            claim = gov.idempotency.claim("charge", "c1", lease=30)
            gov.idempotency.complete(claim, {"ok": True})
            gov.idempotency.release(gov.idempotency.claim("charge", "c2"))
            stats = gov.idempotency.stats()
            gov.audit.enable("appdata.orders")
            with gov.transaction() as tx:
                tx.execute("CREATE TEMP TABLE audit_trail (LIKE public.audit_trail)")
                tx.execute("INSERT INTO appdata.orders VALUES (1, 10), (2, 20)")
                tx.execute("UPDATE appdata.orders SET total = 11 WHERE id = 1")
                gov.idempotency.check_and_record("tx", "t1", conn=tx)
            logged = gov.audit.log_operation("shop.order", 7, "UPDATE", after_data={"a": 1})
            history = gov.audit.history("appdata.orders", 1)
            gov.audit.seal()
            verified = gov.audit.verify()
            health = gov.health()
            record_id = gov.quarantine.quarantine_data("shop.order", 9, "INVALID_STATE", "x")
            gov.quarantine.start_review(record_id)
            rows(app_dsn, "INSERT INTO appdata.orders VALUES (3, -5)")
            assert gov.quarantine.scan_negative("appdata.orders", "total") == 1
            assert gov.quarantine.scan_orphans("appdata.orders", "id", "appdata.orders") == 0
            open_records = gov.quarantine.list("OPEN")
            for bad in (("appdata.nope", "total"), ("appdata.orders", "nope"), (" ", "total")):
                with pytest.raises(ValidationError):
                    gov.quarantine.scan_negative(*bad)
            assert gov.stock.adjust("sku", "wh", 5, movement_key="in-1") == 5
            assert gov.stock.adjust("sku", "wh", -2) == 3
            with pytest.raises(ValidationError):  # never below zero
                gov.stock.adjust("sku", "wh", -4)
            assert [m.delta for m in gov.stock.movements("sku", "wh")] == [-2, 5]
            with gov.locks.advisory("victim-lock") as tx:
                gov.idempotency.check_and_record("locked", "l1", conn=tx)
            with gov.locks.lock_rows("appdata.orders", [2, 1]) as tx:
                tx.execute("UPDATE appdata.orders SET total = total + 1 WHERE id = 1")
            for bad in (("appdata.nope", [1]), ("appdata.orders", [404])):
                with pytest.raises(ValidationError), gov.locks.lock_rows(*bad):
                    pass
            with pytest.raises(AuthorityViolationError):  # public.pg_has_role says "admin"
                gov.idempotency.cleanup_expired()
            with pytest.raises(AuthorityViolationError):
                gov.audit.drop_before(datetime(2000, 1, 1, tzinfo=UTC))
        with psycopg.connect(app_dsn, autocommit=True) as conn:
            for statement in CALLER_RIGHTS_CALLS:
                conn.execute(statement)
            assert conn.execute("SELECT governance.caller_is_admin()").fetchone() == (False,)
            # The plant is live: the caller's own SQL, resolved the same way, does pick it up.
            assert conn.execute("SELECT pg_has_role('x'::text, 'y', 'z')").fetchone() == (True,)
    finally:
        gov.close()
    assert rows(pg_dsn, "SELECT name FROM public.hostile_calls") == [
        ("pg_has_role(text, text, text)",)
    ]
    assert rows(pg_dsn, "SELECT last_value FROM public.hostile_seq") == [(1,)]
    for table, _ in governance_tables(pg_dsn):
        assert rows(pg_dsn, f"SELECT count(*) FROM public.{table}") == [(0,)], table
    assert not first.is_duplicate and dup.is_duplicate and dup.data == {"v": 1}
    assert first.record.created_at.year > 2000
    assert stats["pay"].duplicates_served == 1
    assert [(h.operation, h.user_name, h.after_data) for h in history] == [
        ("UPDATE", "victim", {"id": 1, "total": 11}),
        ("CREATE", "victim", {"id": 1, "total": 10}),
    ]
    assert logged > 0 and verified.ok and health.ok, health.problems
    assert [(r.model_name, r.object_id) for r in open_records] == [
        ("shop.order", "9"),
        ("appdata.orders", "3"),
    ]
    stored = rows(
        pg_dsn,
        "SELECT operation_type, created_by, status FROM governance.idempotency_record "
        "ORDER BY operation_type",
    )
    assert stored == [
        ("charge", "victim", "COMPLETED"),
        ("locked", "victim", "COMPLETED"),
        ("pay", "victim", "COMPLETED"),
        ("tx", "victim", "COMPLETED"),
    ]
    assert rows(pg_dsn, "SELECT quantity FROM governance.stock_level") == [(3,)]
