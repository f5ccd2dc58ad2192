"""Through PgBouncer in transaction-pooling mode: 32 clients, 4 server connections.

The governance context travels with each call as transaction-local settings, so behind a
transaction-pooling proxy every row carries its own client's context, and nothing (context,
advisory lock) outlives the transaction that made it. PgBouncer is Debian's ``pgbouncer``
(``.ci/run`` installs it when it runs as root); without it the test says why it skipped.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import pygov
import pygov.aio
from tests.helpers import run_threads
from tests.reliability import database_of, rows, with_params

CLIENTS = 32
SERVER_CONNECTIONS = 4
ROUNDS = 6


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


@pytest.fixture
def bouncer_dsn(pg_dsn: str) -> Iterator[str]:
    """A PgBouncer (transaction pooling, 4 server connections) in front of the test database."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip(
            "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does it as root)"
        )
    server = conninfo_to_dict(pg_dsn)
    host = str(server.get("host") or "/var/run/postgresql")
    port = int(server.get("port") or 5432)
    user = str(server.get("user") or "postgres")
    workdir = Path(tempfile.mkdtemp(prefix="pygov-bouncer-"))
    command = [binary]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root: run it as the owner of the server's socket
        # directory (unix sockets), which can reach the server.
        owner = pwd.getpwuid(Path(host).stat().st_uid) if host.startswith("/") else None
        run_as = owner.pw_name if owner and owner.pw_uid != 0 else "nobody"
        shutil.chown(workdir, run_as)
        command += ["-u", run_as]
    listen_port = 20000 + os.getpid() % 20000
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        "listen_addr =\n"
        f"listen_port = {listen_port}\n"
        f"unix_socket_dir = {workdir}\n"
        "auth_type = trust\n"
        f"auth_file = {workdir}/users.txt\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_CONNECTIONS}\n"
        f"max_db_connections = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\n"
        f"logfile = {workdir}/pgbouncer.log\n"
        f"pidfile = {workdir}/pgbouncer.pid\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (workdir / name).chmod(0o644)
    process = subprocess.Popen(
        [*command, str(workdir / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    socket = workdir / f".s.PGSQL.{listen_port}"
    deadline = time.monotonic() + 15
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log = (
                (workdir / "pgbouncer.log").read_text()
                if (workdir / "pgbouncer.log").exists()
                else ""
            )
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"pgbouncer did not start: {stderr} {log}")
        time.sleep(0.02)  # waiting for a process we do not control to open its socket
    try:
        yield with_params(pg_dsn, host=str(workdir), port=str(listen_port))
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


class ServerConnections:
    """Samples, from outside PgBouncer, how many server connections the database has."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                count = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                    # authority violations are logged over their own loopback connections
                    "AND application_name <> 'pygov_violation_log'",
                    (database_of(self.dsn),),
                ).fetchone()
                self.peak = max(self.peak, int(count[0]) if count else 0)
                self.stop.wait(0.01)

    def __enter__(self) -> ServerConnections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def client_user(i: int) -> str | None:
    """Every eighth client sets no context at all: its calls carry no context, so they see
    whatever the server connection has, and their rows must show none, not a neighbour's."""
    return None if i % 8 == 7 else f"client-{i}"


def service_of(i: int) -> str | None:
    """Half the clients act for a service the matrix trusts, the others for one it does not."""
    return None if client_user(i) is None else ("Billing" if i % 2 == 0 else "Rogue")


def context_of(i: int, n: int) -> dict[str, str]:
    user, service = client_user(i), service_of(i)
    if user is None or service is None:
        return {}
    return {"user": user, "service": service, "request_id": f"r{i}-{n}"}


def may_write(i: int) -> bool:
    return service_of(i) == "Billing"


def work_sync(gov: pygov.Governance, i: int) -> None:
    for n in range(ROUNDS):
        with gov.context(**context_of(i, n)):
            gov.idempotency.check_and_record("bounce", f"c{i}-{n}", {"client": i})
            gov.audit.log_operation("bounce.op", f"c{i}-{n}", "CREATE", after_data={"c": i})
            with gov.locks.advisory(f"bounce-{i % 4}") as tx:
                tx.execute("INSERT INTO public.orders VALUES (%s, %s)", (f"c{i}-{n}", i))
                with gov.idempotency.guard("bounce-tx", f"c{i}-{n}", conn=tx) as g:
                    g.result = {"client": i}
            gov.stock.adjust("sku", "wh", 1, movement_key=f"c{i}-{n}")
            try:
                with gov.transaction() as tx:
                    tx.execute("INSERT INTO public.invoices VALUES (%s)", (f"c{i}-{n}",))
            except pygov.AuthorityViolationError:
                assert not may_write(i)


async def work_async(gov: pygov.aio.AsyncGovernance, i: int) -> None:
    for n in range(ROUNDS):
        with gov.context(**context_of(i, n)):
            await gov.idempotency.check_and_record("bounce", f"c{i}-{n}", {"client": i})
            await gov.audit.log_operation("bounce.op", f"c{i}-{n}", "CREATE", after_data={"c": i})
            async with gov.locks.advisory(f"bounce-{i % 4}") as tx:
                await tx.execute("INSERT INTO public.orders VALUES ($1, $2)", f"c{i}-{n}", i)
                async with gov.idempotency.guard("bounce-tx", f"c{i}-{n}", conn=tx) as g:
                    g.result = {"client": i}
            await gov.stock.adjust("sku", "wh", 1, movement_key=f"c{i}-{n}")
            try:
                async with gov.transaction() as tx:
                    await tx.execute("INSERT INTO public.invoices VALUES ($1)", f"c{i}-{n}")
            except pygov.AuthorityViolationError:
                assert not may_write(i)


def test_thirty_two_clients_through_four_server_connections_keep_their_own_context(
    pg_dsn: str, bouncer_dsn: str
) -> None:
    owner = pygov.connect(pg_dsn, pool_min_size=0)
    try:
        rows(pg_dsn, "CREATE TABLE public.orders (id text PRIMARY KEY, client int NOT NULL)")
        rows(pg_dsn, "CREATE TABLE public.invoices (id text PRIMARY KEY)")
        owner.audit.enable("public.orders")
        owner.authority.load_matrix({"Billing": {"shop.invoice": ["CREATE"]}, "Rogue": {}})
        owner.authority.protect("public.invoices", "shop.invoice")
    finally:
        owner.close()
    rows(pg_dsn, "SELECT pg_stat_reset()")

    half = CLIENTS // 2
    gov = pygov.connect(bouncer_dsn, prepared_statements=False, pool_max_size=half)

    async def async_clients() -> None:
        agov = await pygov.aio.connect(bouncer_dsn, prepared_statements=False, pool_max_size=half)
        try:
            await asyncio.gather(*(work_async(agov, i) for i in range(half, CLIENTS)))
        finally:
            await agov.close()

    try:
        with ServerConnections(pg_dsn) as server:
            results = run_threads(
                half + 1,
                lambda i: asyncio.run(async_clients()) if i == half else work_sync(gov, i),
            )
    finally:
        gov.close()
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert 1 <= server.peak <= SERVER_CONNECTIONS

    def owner_of(key: str) -> str | None:
        return client_user(int(key[1:].split("-")[0]))

    def request_of(key: str) -> str | None:  # c<i>-<n> was made in request r<i>-<n>
        return None if owner_of(key) is None else "r" + key[1:]

    records = rows(
        pg_dsn,
        "SELECT idempotency_key, created_by, operation_type FROM governance.idempotency_record",
    )
    assert len(records) == 2 * CLIENTS * ROUNDS
    assert [r for r in records if r[1] != owner_of(r[0])] == []
    trail = rows(
        pg_dsn,
        "SELECT object_id, user_name, request_id, model_name FROM governance.audit_trail "
        "WHERE model_name IN ('bounce.op', 'public.orders') AND operation = 'CREATE'",
    )
    assert len(trail) == 2 * CLIENTS * ROUNDS
    wrong = [t for t in trail if t[1] != owner_of(t[0]) or t[2] != request_of(t[0])]
    assert wrong == []
    # The protected table admitted exactly the trusted clients; each refusal was recorded with
    # the context of the client refused (and survived that client's rollback).
    invoices = {r[0] for r in rows(pg_dsn, "SELECT id FROM public.invoices")}
    expected = {f"c{i}-{n}" for i in range(CLIENTS) for n in range(ROUNDS) if may_write(i)}
    assert invoices == expected
    refused = rows(
        pg_dsn,
        "SELECT user_name, source_service, request_id FROM governance.audit_trail "
        "WHERE operation = 'AUTHORITY_VIOLATION'",
    )
    assert sorted(refused, key=str) == sorted(
        (
            (client_user(i), service_of(i) or "(none)", context_of(i, n).get("request_id"))
            for i in range(CLIENTS)
            for n in range(ROUNDS)
            if not may_write(i)
        ),
        key=str,
    )
    # Every stock movement was applied once, under its own client's name.
    moves = rows(
        pg_dsn, "SELECT movement_key, user_name, request_id FROM governance.stock_movement"
    )
    assert len(moves) == CLIENTS * ROUNDS
    assert [m for m in moves if m[1] != owner_of(m[0]) or m[2] != request_of(m[0])] == []
    assert rows(pg_dsn, "SELECT quantity FROM governance.stock_level") == [(CLIENTS * ROUNDS,)]
    # No advisory lock (nor any other lock of a client) outlived its transaction.
    assert rows(pg_dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
    # ... and no context either: a transaction through the bouncer sees none.
    plain = pygov.connect(bouncer_dsn, prepared_statements=False, pool_max_size=1)
    try:
        for n in range(SERVER_CONNECTIONS * 2):
            assert plain.idempotency.check_and_record("after", f"a{n}").record.created_by is None
    finally:
        plain.close()
