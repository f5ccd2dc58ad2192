"""The ``pygov`` admin CLI, driven as the real console script in a subprocess.

Most tests run twice: against a PostgreSQL test database and against an SQLite file.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pygov
from pygov.cli import Progress, parse_duration
from tests.conftest import Backend, PgServer

PYGOV = str(Path(sys.executable).parent / "pygov")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``pygov ARGS`` with a clean environment (no PYGOV_* leaking in from outside)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYGOV_")}
    environment.update(env or {})
    return subprocess.run(
        [PYGOV, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


@dataclass
class Db:
    """A migrated database for a CLI test: its DSN, a pygov handle, and raw queries."""

    dsn: str
    gov: pygov.Governance
    backend: Backend

    def cli(self, *args: str, user: str = "ops-alice") -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={"PYGOV_DSN": self.dsn, "PYGOV_USER": user})

    def json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def admin_records(self) -> list[tuple[Any, ...]]:
        """(action, target, user, service, outcome) of every ADMIN_ACCESS audit row."""
        rows = self.backend.query(
            f"SELECT extra, model_name, user_name, source_service FROM "
            f"{self.backend.table('audit_trail')} WHERE operation = 'ADMIN_ACCESS' ORDER BY id"
        )
        result = []
        for extra, target, user, service in rows:
            data = extra if isinstance(extra, dict) else json.loads(extra)
            result.append((data["action"], target, user, service, data["outcome"]))
        return result


@pytest.fixture(params=["pg", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "pg":
        dsn = request.getfixturevalue("pg_dsn")
        backend = Backend("pg", dsn)
    else:
        path = str(tmp_path / "cli.db")
        dsn = f"sqlite:///{path}"
        backend = Backend("sqlite", path)
    gov = pygov.connect(dsn)
    gov.migrate()
    try:
        with gov.context(superuser=backend.name == "sqlite"):
            yield Db(dsn, gov, backend)
    finally:
        gov.close()


# --- usage -----------------------------------------------------------------------------------


def test_no_database_is_a_usage_error_naming_both_ways() -> None:
    result = run_cli("stats")
    assert result.returncode == 2
    assert "--dsn" in result.stderr and "PYGOV_DSN" in result.stderr


def test_unsupported_dsn_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    assert run_cli("--dsn", "mysql://x/y", "stats").returncode == 2
    missing = tmp_path / "missing.db"
    result = run_cli("check", "--dsn", f"sqlite:///{missing}")
    assert result.returncode == 2 and "pygov migrate" in result.stderr
    assert not missing.exists()  # a typo never creates an empty database
    result = run_cli("idempotency", "cleanup", "--batch-size", "0", "--dsn", "sqlite:///x.db")
    assert result.returncode == 2 and "--batch-size" in result.stderr
    assert run_cli("no-such-command").returncode == 2


def test_unreachable_postgres_is_a_governance_error_without_a_traceback() -> None:
    result = run_cli("check", "--dsn", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "ConfigurationError: cannot connect to PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr


# --- migrate, check --------------------------------------------------------------------------


def test_migrate_creates_a_database_and_is_repeatable(tmp_path: Path) -> None:
    dsn = f"sqlite:///{tmp_path / 'new.db'}"
    first = run_cli("migrate", "--dsn", dsn, "--user", "dba-bob")
    assert first.returncode == 0, first.stderr
    assert "0001_idempotency" in first.stdout
    assert "Migrating: done" in first.stderr
    again = run_cli("migrate", "--dsn", dsn, "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout)["applied"] == []
    backend = Backend("sqlite", str(tmp_path / "new.db"))
    rows = backend.query(
        "SELECT user_name, source_service FROM governance_audit_trail "
        "WHERE operation = 'ADMIN_ACCESS' ORDER BY id"
    )
    assert rows == [("dba-bob", "pygov-cli"), (getpass.getuser(), "pygov-cli")]  # OS user


def test_migrate_an_empty_postgres_database(empty_pg_dsn: str) -> None:
    result = run_cli("--dsn", empty_pg_dsn, "migrate")
    assert result.returncode == 0, result.stderr
    assert "0002_idempotency" in result.stdout and "functions reloaded" in result.stdout


def test_check_healthy_then_problems_exit_1(db: Db) -> None:
    healthy = db.cli("check")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok")
    # A claim whose lease ran out without completing is an abandoned claim.
    db.gov.idempotency.claim("charge", "abandoned-1", lease=0.1)
    time.sleep(0.2)
    sick = db.cli("check")
    assert sick.returncode == 1
    assert sick.stdout.split()[:3] == ["SEVERITY", "COMPONENT", "PROBLEM"]
    assert "abandoned" in sick.stdout
    report = json.loads(db.cli("check", "--json").stdout)
    assert report["ok"] is False
    assert report["problems"][0]["component"] == "idempotency"
    assert report["problems"][0]["detail"] == {"operation_type": "charge", "claims": 1}
    outcomes = [r[4] for r in db.admin_records() if r[0] == "check"]
    assert outcomes == ["ok", "problems found", "problems found"]


# --- idempotency -----------------------------------------------------------------------------


def test_idempotency_stats_table_and_json(db: Db) -> None:
    db.gov.idempotency.check_and_record("fee", "k1")
    db.gov.idempotency.check_and_record("fee", "k1")
    db.gov.idempotency.check_and_record("fee", "k2")
    db.gov.idempotency.check_and_record("stock", "s1")
    text = db.cli("idempotency", "stats")
    assert text.returncode == 0
    header, rule, *lines = text.stdout.splitlines()
    assert header.split() == [
        "OPERATION_TYPE",
        "COMPLETED",
        "IN_PROGRESS",
        "EXPIRED",
        "DUPLICATES_SERVED",
    ]
    assert set(rule) == {"-", " "}
    assert sorted(line.split() for line in lines) == [
        ["fee", "2", "0", "0", "1"],
        ["stock", "1", "0", "0", "0"],
    ]
    data = db.json("idempotency", "stats")
    assert {d["operation_type"]: d["completed"] for d in data} == {"fee": 2, "stock": 1}


def test_idempotency_cleanup_deletes_expired_in_batches_with_progress(db: Db) -> None:
    for i in range(5):
        db.gov.idempotency.check_and_record("old", f"k{i}", ttl=0.1)
    db.gov.idempotency.check_and_record("live", "k")
    time.sleep(0.2)
    result = db.cli("idempotency", "cleanup", "--batch-size", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"deleted": 5}
    assert "Deleting expired idempotency records" in result.stderr
    assert "(5 deleted)" in result.stderr
    remaining = db.backend.query(
        f"SELECT operation_type FROM {db.backend.table('idempotency_record')}"
    )
    assert remaining == [("live",)]
    assert ("idempotency.cleanup", None, "ops-alice", "pygov-cli", "ok") in db.admin_records()


@pytest.fixture
def plain_role(pg_server: PgServer, pg_dsn: str) -> Iterator[str]:
    """A login role that is only governance_app: no admin rights."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN IN ROLE governance_app")
    try:
        yield psycopg.conninfo.make_conninfo(pg_dsn, user=name)
    finally:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def test_governance_error_exits_1_with_typed_message_and_json(plain_role: str) -> None:
    result = run_cli("--dsn", plain_role, "idempotency", "cleanup")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: AuthorityViolationError")
    assert "Traceback" not in result.stderr
    as_json = run_cli("--dsn", plain_role, "--json", "idempotency", "cleanup")
    assert as_json.returncode == 1
    body = json.loads(as_json.stderr[as_json.stderr.index("{") :])
    assert body["error"] == "AuthorityViolationError"
    assert as_json.stdout == ""


# --- stats -----------------------------------------------------------------------------------


def test_stats_overview(db: Db) -> None:
    db.gov.idempotency.check_and_record("fee", "k1")
    db.gov.idempotency.check_and_record("fee", "k1")
    data = db.json("stats")
    assert data["backend"] == ("postgresql" if db.backend.is_postgres else "sqlite")
    assert data["idempotency"]["completed"] == 1
    assert data["idempotency"]["duplicates_served"] == 1
    text = db.cli("stats")
    assert "idempotency:" in text.stdout and "duplicates served: 1" in text.stdout


# --- audit -----------------------------------------------------------------------------------


def make_fee_table(db: Db) -> str:
    """A business table, written through pygov's context so the trail names the user."""
    table = "cli_fee" if not db.backend.is_postgres else "public.cli_fee"
    db.backend.query(f"CREATE TABLE {table} (id int PRIMARY KEY, amount int, note text)")
    return table


def write(db: Db, statement: str, user: str) -> None:
    sql = statement if not db.backend.is_postgres else statement.replace("?", "%s")
    with db.gov.context(user=user, service="FeesGateway"), db.gov.transaction() as conn:
        conn.execute(sql)


def test_audit_enable_history_tables_disable(db: Db) -> None:
    table = make_fee_table(db)
    enabled = db.cli("audit", "enable", table, "--ignore-column", "note", "--json")
    assert enabled.returncode == 0, enabled.stderr
    assert json.loads(enabled.stdout)["ignore_columns"] == ["note"]
    write(db, f"INSERT INTO {table} VALUES (1, 100, 'a')", "cashier-1")
    write(db, f"UPDATE {table} SET amount = 150 WHERE id = 1", "cashier-2")
    write(db, f"UPDATE {table} SET note = 'only ignored' WHERE id = 1", "cashier-2")
    model = json.loads(enabled.stdout)["model_name"]

    history = db.json("audit", "history", model, "1")
    assert [(r["operation"], r["user_name"]) for r in history] == [
        ("UPDATE", "cashier-2"),
        ("CREATE", "cashier-1"),
    ]
    assert history[0]["changed_fields"] == ["amount"]
    assert history[0]["before_data"]["amount"] == 100 and history[0]["after_data"]["amount"] == 150
    text = db.cli("audit", "history", model, "1", "--limit", "1")
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and "UPDATE" in lines[2] and "amount" in lines[2]

    tables = db.json("audit", "tables")
    assert [(t["model_name"], t["triggers_installed"]) for t in tables] == [(model, True)]
    assert "audit disabled" in db.cli("audit", "disable", table).stdout
    assert "was not audited" in db.cli("audit", "disable", table).stdout
    write(db, f"UPDATE {table} SET amount = 1 WHERE id = 1", "cashier-3")
    assert len(db.json("audit", "history", model, "1")) == 2
    actions = [(a, t) for a, t, *_ in db.admin_records() if a.startswith("audit.")]
    assert ("audit.enable", table) in actions and ("audit.disable", table) in actions
    assert ("audit.history", f"{model} 1") in actions


def test_audit_tail_filters_by_user_and_time(db: Db) -> None:
    db.gov.audit.log_operation("m.fee", 1, "CREATE")
    with db.gov.context(user="auditor-zoe"):
        db.gov.audit.log_operation("m.fee", 2, "UPDATE")
        db.gov.audit.log_operation("m.fee", 3, "DELETE")
    tail = db.json("audit", "tail", "--user", "auditor-zoe")
    assert [(r["object_id"], r["operation"]) for r in tail] == [("2", "UPDATE"), ("3", "DELETE")]
    last = db.json("audit", "tail", "--limit", "1")
    assert last[0]["extra"]["action"] == "audit.tail"  # the previous CLI call, recorded
    assert db.json("audit", "tail", "--since", "2999-01-01") == []
    recent = db.json("audit", "tail", "--since", "10m", "--limit", "100")
    assert {"2", "3"} <= {r["object_id"] for r in recent}
    text = db.cli("audit", "tail", "--user", "auditor-zoe").stdout.splitlines()
    assert text[0].split()[:3] == ["ID", "OCCURRED_AT", "OPERATION"]
    assert "m.fee 3" in text[-1]
    bad = db.cli("audit", "tail", "--since", "yesterday-ish")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_audit_seal_verify_and_tampering_exits_1(db: Db) -> None:
    from tests.test_audit import tamper

    for i in range(3):
        db.gov.audit.log_operation("m.fee", i, "CREATE")
    sealed = db.cli("audit", "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert "Sealing the audit trail: done" in sealed.stderr
    assert sealed.stdout.split()[:3] == ["ID", "MONTH", "ROW_COUNT"]
    verified = db.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok: 1 seal(s)")
    assert "Verifying the audit trail: done" in verified.stderr
    tamper(
        db.backend,
        f"UPDATE {db.backend.table('audit_trail')} SET user_name = 'mallory' WHERE object_id = ?",
        ("1",),
    )
    caught = db.cli("audit", "verify")
    assert caught.returncode == 1
    assert "TAMPERING FOUND" in caught.stdout
    result = json.loads(db.cli("audit", "verify", "--json").stdout)
    assert result["ok"] is False and result["bad_row_id"] is not None
    outcomes = [r[4] for r in db.admin_records() if r[0] == "audit.verify"]
    assert outcomes == ["ok", "problems found", "problems found"]


# --- quarantine ------------------------------------------------------------------------------


def test_quarantine_scan_list_show_review_resolve(db: Db) -> None:
    for statement in (
        "CREATE TABLE cli_fee (id int PRIMARY KEY, amount int NOT NULL)",
        "CREATE TABLE cli_entry (id int PRIMARY KEY, fee_id int, amount int)",
        "INSERT INTO cli_fee VALUES (1, 100)",
        "INSERT INTO cli_entry VALUES (10, 1, 100), (11, 7, 50), (12, 8, 20)",
        "CREATE TABLE cli_stock (item text PRIMARY KEY, quantity int NOT NULL)",
        "INSERT INTO cli_stock VALUES ('pen', 3), ('ink', -2)",
    ):
        db.backend.query(statement)
    scan = db.cli("quarantine", "scan-orphans", "cli_entry", "fee_id", "cli_fee")
    assert scan.returncode == 0, scan.stderr
    assert "cli_entry: 2 new row(s) quarantined" in scan.stdout
    assert "Scanning cli_entry for orphans: done" in scan.stderr
    again = db.json("quarantine", "scan-orphans", "cli_entry", "fee_id", "cli_fee")
    assert again == {"scan": "orphans", "table": "cli_entry", "quarantined": 0}
    negative = db.json(
        "quarantine", "scan-negative", "cli_stock", "quantity", "--type", "NEGATIVE_STOCK"
    )
    assert negative["quarantined"] == 1

    records = db.json("quarantine", "list", "--status", "open")
    assert sorted((r["model_name"].split(".")[-1], r["corruption_type"]) for r in records) == [
        ("cli_entry", "ORPHANED_RECORD"),
        ("cli_entry", "ORPHANED_RECORD"),
        ("cli_stock", "NEGATIVE_STOCK"),
    ]
    table = db.cli("quarantine", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "MODEL_NAME"] and len(table) == 5

    orphan = next(r for r in records if r["object_id"] == "11")
    shown = db.cli("quarantine", "show", str(orphan["id"]))
    assert shown.returncode == 0
    snapshot = json.loads(shown.stdout[shown.stdout.index("snapshot:\n") + 10 :])
    assert snapshot == {"id": 11, "fee_id": 7, "amount": 50}
    assert "  " in shown.stdout.splitlines()[-2]  # formatted (indented) JSON

    reviewed = db.cli("quarantine", "review", str(orphan["id"]))
    assert reviewed.returncode == 0 and "UNDER_REVIEW" in reviewed.stdout
    twice = db.cli("quarantine", "review", str(orphan["id"]))
    assert twice.returncode == 1 and "QuarantineError" in twice.stderr
    no_notes = db.cli("quarantine", "resolve", str(orphan["id"]), "--resolution", "discarded")
    assert no_notes.returncode == 2 and "--notes" in no_notes.stderr
    resolved = db.json(
        "quarantine",
        "resolve",
        str(orphan["id"]),
        "--resolution",
        "discarded",
        "--notes",
        "entry for a cancelled fee",
    )
    assert (resolved["status"], resolved["resolution"]) == ("RESOLVED", "DISCARDED")
    assert resolved["resolution_notes"] == "entry for a cancelled fee"
    assert len(db.json("quarantine", "list", "--status", "OPEN")) == 2
    missing = db.cli("quarantine", "show", "999999")
    assert missing.returncode == 1 and "no quarantine record" in missing.stderr
    records_log = db.admin_records()
    assert ("quarantine.resolve", str(orphan["id"]), "ops-alice", "pygov-cli", "ok") in records_log
    assert (
        "quarantine.review",
        str(orphan["id"]),
        "ops-alice",
        "pygov-cli",
        "error",
    ) in records_log
    stats = db.json("stats")
    assert stats["quarantine"] == {"quarantined": 2, "under_review": 0, "resolved": 1}


# --- delegation, authority matrix ------------------------------------------------------------

JE = "accounting.journal_entry"


def test_delegation_grant_list_revoke_and_matrix_in_check(db: Db) -> None:
    db.gov.authority.load_matrix(
        {"AccountingGateway": {JE: ["CREATE", "UPDATE"]}, "FeesGateway": {}}
    )
    granted = db.cli(
        "delegation",
        "grant",
        "AccountingGateway",
        "FeesGateway",
        JE,
        "create",
        "--duration",
        "2h",
        "--reason",
        "month-end backlog",
        "--json",
    )
    assert granted.returncode == 0, granted.stderr
    delegation = json.loads(granted.stdout)
    assert (delegation["state"], delegation["to_service"], delegation["operation"]) == (
        "live",
        "FeesGateway",
        "CREATE",
    )
    assert db.gov.authority.check_delegation("FeesGateway", JE, "CREATE") is not None
    active = db.json("delegation", "list", "--active")
    assert [d["id"] for d in active] == [delegation["id"]]
    listing = db.cli("delegation", "list").stdout.splitlines()
    assert listing[0].split()[:2] == ["ID", "STATE"] and " live " in listing[2]

    update = ("delegation", "grant", "AccountingGateway", "FeesGateway", JE, "UPDATE")
    too_long = db.cli(*update, "--duration", "25h", "--reason", "x")
    assert too_long.returncode == 1 and "Error" in too_long.stderr
    bad_duration = db.cli(*update, "--duration", "soon", "--reason", "x")
    assert bad_duration.returncode == 2 and "--duration" in bad_duration.stderr

    revoked = db.cli("delegation", "revoke", str(delegation["id"]), "--reason", "backlog done")
    assert revoked.returncode == 0, revoked.stderr
    assert "backlog done" in revoked.stdout
    assert db.gov.authority.check_delegation("FeesGateway", JE, "CREATE") is None
    assert db.json("delegation", "list", "--active") == []
    assert db.json("delegation", "list")[0]["state"] == "revoked"
    assert db.json("stats")["delegations"] == {"live": 0, "revoked": 1, "expired": 0}

    check = db.json("check")
    assert {
        "service": "AccountingGateway",
        "model": JE,
        "operations": "CREATE, UPDATE",
        "critical": False,
    } in check["authority_matrix"]
    text = db.cli("check").stdout
    assert "authority matrix:" in text and "AccountingGateway" in text
    actions = [(a, t, o) for a, t, _, _, o in db.admin_records() if a.startswith("delegation.")]
    assert ("delegation.grant", JE, "ok") in actions
    assert ("delegation.grant", JE, "error") in actions
    assert ("delegation.revoke", str(delegation["id"]), "ok") in actions


def test_stats_shows_advisory_lock_activity_on_postgres(pg_gov: pygov.Governance) -> None:
    """A lock held by one transaction and waited for by another while `pygov stats` runs."""
    import threading

    dsn = pg_gov._backend.dsn  # type: ignore[union-attr]
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            with pg_gov.locks.advisory("stock-take:shop-1"):
                held.set()
                release.wait(60)
        except BaseException as exc:
            errors.append(exc)
            held.set()

    def waiter() -> None:  # a DBA's psql session queueing for the same lock
        try:
            with psycopg.connect(dsn) as conn:
                conn.execute(
                    "SELECT pg_advisory_xact_lock(governance.lock_key('stock-take:shop-1'))"
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=holder), threading.Thread(target=waiter)]
    threads[0].start()
    held.wait(60)
    threads[1].start()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while not conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the waiter never queued"
                time.sleep(0.01)
        result = run_cli("--dsn", dsn, "stats", "--json")
    finally:
        release.set()
        for t in threads:
            t.join()
    assert errors == []
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["locks"] == {"held": 1, "waiting": 1}


# --- helpers, in-process ---------------------------------------------------------------------


def test_parse_duration() -> None:
    assert parse_duration("90") == parse_duration("90s") == parse_duration("1.5m")
    assert parse_duration("2h").total_seconds() == 7200
    assert parse_duration(" 1D ").days == 1
    for bad in ("", "0", "-1h", "2 hours", "h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_and_on_a_pipe() -> None:
    import threading

    tty = FakeTerminal()
    ticked = threading.Event()
    with Progress("Scanning", stream=tty) as progress:
        progress.update("3 found")
        original = tty.write

        def write(text: str) -> int:
            if "3 found" in text:
                ticked.set()
            return original(text)

        tty.write = write  # type: ignore[method-assign]
        assert ticked.wait(10)  # the live line is redrawn while the work runs
    output = tty.getvalue()
    assert output.startswith("\r\x1b[KScanning...")
    final = output.rsplit("\r\x1b[K", 1)[-1]
    assert re.fullmatch(r"Scanning: done in \d+\.\d s \(3 found\)\n", final)

    pipe = io.StringIO()
    with pytest.raises(RuntimeError), Progress("Cleaning", stream=pipe, interval=3600) as p:
        p.update("100 deleted")  # within the interval: not printed
        raise RuntimeError("stop")
    first, last = pipe.getvalue().splitlines()  # no live redraws on a pipe
    assert first == "Cleaning..."
    assert re.fullmatch(r"Cleaning: failed in \d+\.\d s \(100 deleted\)", last)


def test_help_spells_statuses_and_resolutions_as_the_database_does() -> None:
    from click.testing import CliRunner

    from pygov.cli import main

    runner = CliRunner()
    listing = runner.invoke(main, ["quarantine", "list", "--help"]).output
    assert "[QUARANTINED|UNDER_REVIEW|RESOLVED|OPEN]" in listing
    resolving = runner.invoke(main, ["quarantine", "resolve", "--help"]).output
    assert "[REPAIRED|DISCARDED|FALSE_POSITIVE]" in resolving
