"""Privileges: what governance_app, governance_auditor and governance_admin can and cannot do,
and that the governance functions never pick up objects planted in the caller's schemas.

Each test logs in as a fresh LOGIN role (unique name: roles are cluster-wide) granted one
governance role, and drops it again afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import pygov
from pygov.errors import AuthorityViolationError
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
    """True when the server refuses the statement for lack of privilege (42501)."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement, params)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


# --- no governance role writes governance tables directly -------------------------------------


def test_no_governance_role_can_write_governance_tables_directly(
    role_dsn: str, pg_dsn: str
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
    allowed = [
        stmt.as_string(None)
        for table, column in tables
        for stmt in write_statements(table, column)
        if not denied(role_dsn, stmt)
    ]
    assert allowed == []
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


# --- search_path: SECURITY DEFINER functions pin it; planted objects are never used --------------


def test_every_governance_function_pins_search_path(pg_dsn: str) -> None:
    unpinned = rows(
        pg_dsn,
        "SELECT p.oid::regprocedure::text, p.prosecdef FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'governance' "
        "AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c "
        "                WHERE c LIKE 'search\\_path=%' AND c NOT LIKE '%public%')",
    )
    assert unpinned == []
    definers = rows(
        pg_dsn,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'governance' AND p.prosecdef",
    )
    assert definers[0][0] >= 5  # the check above did look at SECURITY DEFINER functions


#: Functions the governance code calls, planted in public with the argument types it passes.
#: Each logs its call to public.hostile_calls and returns something plausible but wrong.
HOSTILE_FUNCTIONS = {
    "now()": ("timestamptz", "'2000-01-01'::timestamptz"),
    "clock_timestamp()": ("timestamptz", "'2000-01-01'::timestamptz"),
    "gen_random_uuid()": ("uuid", "'00000000-0000-0000-0000-000000000000'::uuid"),
    "set_config(text, text, boolean)": ("text", "''"),
    "current_setting(text, boolean)": ("text", "'hostile'"),
    "current_setting(text)": ("text", "'hostile'"),
    "pg_has_role(text, text, text)": ("boolean", "true"),
    "pg_has_role(name, text, text)": ("boolean", "true"),
    "length(text)": ("integer", "1"),
    "btrim(text)": ("text", "'x'"),
    "jsonb_build_object(text, text)": ("jsonb", "'{}'::jsonb"),
    "jsonb_build_object(text, text, text, integer)": ("jsonb", "'{}'::jsonb"),
    "jsonb_typeof(jsonb)": ("text", "'object'"),
    "sha256(bytea)": ("bytea", "'\\x00'::bytea"),
    "encode(bytea, text)": ("text", "'0'"),
    "convert_to(text, text)": ("bytea", "'\\x00'::bytea"),
    "replace(text, text, text)": ("text", "'x'"),
    "pg_backend_pid()": ("integer", "0"),
}


@pytest.fixture
def hostile_public(pg_dsn: str) -> str:
    """Plant shadowing functions and tables in the test database's public schema."""
    statements = [
        "CREATE TABLE public.hostile_calls (name text)",
        "GRANT INSERT ON public.hostile_calls TO PUBLIC",
        "CREATE TABLE public.idempotency_record (LIKE governance.idempotency_record)",
        "CREATE TABLE public.idempotency_duplicate_counter "
        "(LIKE governance.idempotency_duplicate_counter)",
        "GRANT ALL ON public.idempotency_record, public.idempotency_duplicate_counter TO PUBLIC",
    ]
    for signature, (returns, value) in HOSTILE_FUNCTIONS.items():
        statements.append(
            f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE sql VOLATILE AS $$ "
            f"INSERT INTO public.hostile_calls VALUES ({sql.Literal(signature).as_string(None)}); "
            f"SELECT {value} $$"
        )
    for statement in statements:
        rows(pg_dsn, statement)
    return pg_dsn


def test_hostile_objects_in_public_are_never_picked_up(
    hostile_public: str, app_dsn: str, pg_dsn: str
) -> None:
    # The caller puts public before pg_catalog: the most hostile search_path a session can have.
    dsn = with_params(app_dsn, options="-c search_path=public,pg_catalog")
    gov = pygov.connect(dsn, pool_max_size=2)
    try:
        with gov.context(user="mallory-victim"):
            first = gov.idempotency.check_and_record("pay", "k1", {"v": 1}, payload={"p": 1})
            dup = gov.idempotency.check_and_record("pay", "k1", payload={"p": 1})
            claim = gov.idempotency.claim("charge", "c1", lease=30)
            gov.idempotency.complete(claim, {"ok": True})
            with gov.transaction() as tx:
                # A temporary table shadowing a governance table, in the caller's session.
                tx.execute("CREATE TEMP TABLE idempotency_record (LIKE public.idempotency_record)")
                gov.idempotency.check_and_record("tx", "t1", conn=tx)
                # The plant is live: the caller's own unqualified SQL does call it.
                tx.execute("SELECT now()")
            stats = gov.idempotency.stats()
            with pytest.raises(AuthorityViolationError):  # public.pg_has_role said "true"
                gov.idempotency.cleanup_expired()
    finally:
        gov.close()
    assert rows(pg_dsn, "SELECT name FROM public.hostile_calls") == [("now()",)]
    assert rows(pg_dsn, "SELECT count(*) FROM public.idempotency_record") == [(0,)]
    assert not first.is_duplicate and dup.is_duplicate and dup.data == {"v": 1}
    assert first.record.created_at.year > 2000 and claim.token != str(0).zfill(8)
    assert stats["pay"].duplicates_served == 1
    stored = rows(
        pg_dsn,
        "SELECT operation_type, created_by, status FROM governance.idempotency_record "
        "ORDER BY operation_type",
    )
    assert stored == [
        ("charge", "mallory-victim", "COMPLETED"),
        ("pay", "mallory-victim", "COMPLETED"),
        ("tx", "mallory-victim", "COMPLETED"),
    ]
