"""Governance context and the error hierarchy."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

import pygov
import pygov.aio
from pygov import errors
from pygov.context import current_context
from tests.helpers import run_threads


def test_nested_context_inherits_and_restores() -> None:
    assert current_context().user is None
    with pygov.context(user="alice", service="Fees", ip="10.0.0.1"):
        with pygov.context(user="bob") as inner:
            assert (inner.user, inner.service, inner.ip) == ("bob", "Fees", "10.0.0.1")
        assert current_context().user == "alice"
    assert current_context() == pygov.GovernanceContext()


def test_context_is_restored_after_an_exception() -> None:
    with pytest.raises(RuntimeError), pygov.context(user="alice"):
        raise RuntimeError
    assert current_context().user is None


@pytest.mark.parametrize("ip", ["not-an-ip", "300.1.1.1", "10.0.0.1; DROP", ""])
def test_ip_that_is_not_an_address_is_refused_on_entry(ip: str) -> None:
    with pytest.raises(pygov.ValidationError) as info, pygov.context(ip=ip):
        pass
    assert info.value.context["ip"] == ip
    assert current_context().ip is None


def test_ipv6_is_accepted_and_normalised() -> None:
    with pygov.context(ip="2001:DB8::1") as ctx:
        assert ctx.ip == "2001:db8::1"


def test_unknown_and_nul_context_fields_are_refused() -> None:
    with pytest.raises(pygov.ValidationError), pygov.context(colour="red"):
        pass
    with pytest.raises(pygov.ValidationError), pygov.context(user="a\x00b"):
        pass


def test_context_reaches_postgres_as_transaction_local_settings(
    pg_gov: pygov.Governance,
) -> None:
    with (
        pg_gov.context(
            user="alice", service="Fees", ip="10.1.2.3", user_agent="ua/1", request_id="r-1"
        ),
        pg_gov.transaction() as conn,
    ):
        row = conn.execute(
            "SELECT governance.ctx('user'), governance.ctx('service'), governance.ctx_ip(),"
            " governance.ctx('user_agent'), governance.ctx('request_id')"
        ).fetchone()
        assert row is not None
        assert (row[0], row[1], str(row[2]), row[3], row[4]) == (
            "alice",
            "Fees",
            "10.1.2.3",
            "ua/1",
            "r-1",
        )
    # The settings were transaction-local: a new transaction on a pooled connection sees none.
    with pg_gov._backend.connection() as conn:  # type: ignore[union-attr]
        assert conn.execute("SELECT governance.ctx('user')").fetchone() == (None,)


def test_one_sqlstate_table_maps_every_class() -> None:
    for cls in (
        errors.AuthorityViolationError,
        errors.ValidationError,
        errors.ConcurrencyError,
        errors.IdempotencyError,
        errors.IdempotencyInProgressError,
        errors.IdempotencyPayloadMismatchError,
        errors.QuarantineError,
        errors.RepairError,
        errors.SignalError,
        errors.GatewayError,
        errors.ConfigurationError,
    ):
        assert issubclass(cls, errors.GovernanceError)
        assert errors.SQLSTATE_TO_ERROR[cls.sqlstate] is cls
    for state in ("55P03", "40001", "40P01"):
        assert errors.SQLSTATE_TO_ERROR[state] is errors.ConcurrencyError
    assert issubclass(errors.IdempotencyInProgressError, errors.IdempotencyError)


def test_errors_have_default_messages_and_context() -> None:
    err = errors.QuarantineError(context={"id": 3})
    assert err.message == "The quarantine workflow does not allow this step."
    assert err.context == {"id": 3}
    assert "3" in str(err)


@pytest.mark.parametrize("state", ["GV001", "GV002", "GV005", "GV009"])
def test_plpgsql_gv_errors_become_typed_exceptions(pg_gov: pygov.Governance, state: str) -> None:
    with pg_gov._backend.connection() as conn, pytest.raises(errors.GovernanceError) as info:  # type: ignore[union-attr]
        try:
            conn.execute("SELECT governance.raise_error(%s, 'boom', '{\"answer\": 42}')", (state,))
        except psycopg.Error as exc:
            raise errors.translate(exc) from exc
    assert type(info.value) is errors.SQLSTATE_TO_ERROR[state]
    assert info.value.context["answer"] == 42
    assert info.value.message == "boom"


def test_unreachable_server_is_a_pygov_error() -> None:
    with pytest.raises(errors.GovernanceError):
        pygov.connect(
            "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
            pool_min_size=1,
            open_timeout=2,
        )


def test_bad_urls_are_configuration_errors() -> None:
    for url in ("", "mysql://x/y", "http://example"):
        with pytest.raises(errors.ConfigurationError):
            pygov.connect(url)
    with pytest.raises(errors.ConfigurationError):
        pygov.connect("sqlite:////no/such/directory/x.db")
    with pytest.raises(errors.ConfigurationError):
        pygov.connect("sqlite:///:memory:", not_an_option=1)


def test_thousand_asyncio_tasks_each_keep_their_own_user(pg_dsn: str) -> None:
    async def main() -> list[tuple[Any, ...]]:
        agov = await pygov.aio.connect(pg_dsn, pool_max_size=20)

        async def task(i: int) -> None:
            with agov.context(user=f"task-{i}"):
                await asyncio.sleep(0)  # interleave with the other tasks
                await agov.idempotency.check_and_record("tasks", f"k-{i}")

        try:
            await asyncio.gather(*(task(i) for i in range(1000)))
        finally:
            await agov.close()
        with psycopg.connect(pg_dsn) as conn:
            return conn.execute(
                "SELECT idempotency_key, created_by FROM governance.idempotency_record"
                " WHERE operation_type = 'tasks'"
            ).fetchall()

    rows = asyncio.run(main())
    assert len(rows) == 1000
    assert all(created_by == "task-" + key[2:] for key, created_by in rows)


def test_async_idempotent_decorator_runs_once(pg_dsn: str) -> None:
    calls: list[int] = []

    async def main() -> list[Any]:
        agov = await pygov.aio.connect(pg_dsn)
        try:

            @agov.idempotent("fee", key=lambda fee_id: f"fee-{fee_id}")
            async def post_fee(fee_id: int) -> dict[str, int]:
                calls.append(fee_id)
                await asyncio.sleep(0.05)
                return {"entry": fee_id * 10}

            return await asyncio.gather(*(post_fee(7) for _ in range(5)), return_exceptions=True)
        finally:
            await agov.close()

    results = asyncio.run(main())
    ok = [r for r in results if r == {"entry": 70}]
    in_progress = [r for r in results if isinstance(r, errors.IdempotencyInProgressError)]
    assert len(ok) + len(in_progress) == 5 and ok
    assert calls == [7]


def test_sync_idempotent_decorator_runs_once_and_returns_stored_result(
    pg_gov: pygov.Governance,
) -> None:
    calls: list[int] = []

    @pg_gov.idempotent("fee", key=lambda fee_id: f"fee-{fee_id}", wait=10)
    def post_fee(fee_id: int) -> dict[str, int]:
        calls.append(fee_id)
        return {"entry": fee_id * 10}

    results = run_threads(8, lambda i: post_fee(3))
    assert results == [{"entry": 30}] * 8
    assert calls == [3]


def test_decorators_refuse_the_wrong_kind_of_function(pg_gov: pygov.Governance) -> None:
    async def coro() -> None:
        return None

    with pytest.raises(pygov.ValidationError):
        pg_gov.idempotent("x", key="k")(coro)


@pytest.mark.parametrize(
    ("statement", "state"),
    [
        ("INSERT INTO t VALUES (2, NULL, NULL)", "23502"),
        ("INSERT INTO t VALUES (2, -1, NULL)", "23514"),
        ("INSERT INTO t VALUES (2, 1, 99)", "23503"),
        ("INSERT INTO t VALUES (1, 1, NULL)", "23505"),
    ],
)
def test_sqlite_constraint_failures_carry_postgresql_sqlstates(
    tmp_path: Any, statement: str, state: str
) -> None:
    import sqlite3

    conn = sqlite3.connect(tmp_path / "c.db")
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(
            "CREATE TABLE p (id INTEGER PRIMARY KEY);"
            " CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (v > 0),"
            " p INTEGER REFERENCES p (id));"
            " INSERT INTO t VALUES (1, 1, NULL);"
        )
        with pytest.raises(sqlite3.IntegrityError) as info:
            conn.execute(statement)
    finally:
        conn.close()
    error = errors.translate(info.value)
    assert isinstance(error, errors.ValidationError)
    assert error.context["sqlstate"] == state


def test_timestamps_come_back_in_utc_from_every_driver(pg_dsn: str) -> None:
    from datetime import UTC

    berlin = f"{pg_dsn} options='-c TimeZone=Europe/Berlin'"
    with pygov.connect(berlin, pool_min_size=0) as gov:
        record_id = gov.quarantine.quarantine_data("m.t", "1", "OTHER", "odd")
        synced = gov.quarantine.get(record_id)

    async def read() -> Any:
        agov = await pygov.aio.connect(berlin, pool_min_size=0)
        try:
            return await agov.quarantine.get(record_id)
        finally:
            await agov.close()

    awaited = asyncio.run(read())
    assert synced is not None and awaited is not None
    assert synced.quarantined_at.tzinfo is UTC and awaited.quarantined_at.tzinfo is UTC
    assert synced.quarantined_at.isoformat() == awaited.quarantined_at.isoformat()
