"""The README's examples stay true: its Python examples run as written (only the DSN is swapped
for the test database's), every ``governance.*`` object it names exists, every ``gov.*`` method
it calls exists, and every line of its CLI block parses."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import pygov
import pygov.aio
from pygov.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SQL_DIR = ROOT / "sql"
README_DSN = "postgresql://app@db/school"


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n### ", start + len(title))
    return README[start : end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


def _run(source: str, namespace: dict[str, Any], dsn: str) -> str:
    """Run one README block (top-level ``await`` allowed); return what it printed."""
    assert README_DSN in source or "gov" in namespace, "the block has no DSN to swap"
    code = compile(
        source.replace(README_DSN, dsn), "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = eval(code, namespace)
        if asyncio.iscoroutine(result):
            namespace["_loop"].run_until_complete(result)
    return out.getvalue()


@pytest.fixture
def readme_db(pg_dsn: str) -> str:
    """The tables the examples write to, as an application would have them."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA ledger;"
            " CREATE TABLE ledger.journal_entry (id serial PRIMARY KEY, fee_id int NOT NULL,"
            " amount numeric(12, 2) NOT NULL);"
            " CREATE SCHEMA accounting;"
            " CREATE TABLE accounting.journal_entry (id serial PRIMARY KEY,"
            " amount numeric NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        )
    return pg_dsn


def test_the_application_examples_run_as_written(readme_db: str) -> None:
    app = _section("### 1. From application code")
    first, guard, decorator, async_block = _blocks(app, "python")
    loop = asyncio.new_event_loop()
    ns: dict[str, Any] = {"_loop": loop}
    try:
        assert _run(first, ns, readme_db) == ""
        assert ns["is_duplicate"] is False and ns["data"] == {"entry_id": 456}
        first_gov = ns["gov"]
        assert _run(first, ns, readme_db) == "already posted: {'entry_id': 456}\n"
        first_gov.close()

        _run(guard, ns, readme_db)
        assert ns["post_fee_payment"](123, 450) == {"entry_id": 1}
        assert ns["post_fee_payment"](123, 450) == {"entry_id": 1}
        assert ns["post_fee_payment"](124, 80) == {"entry_id": 2}
        with psycopg.connect(readme_db) as conn:
            rows = conn.execute("SELECT fee_id FROM ledger.journal_entry ORDER BY id").fetchall()
        assert rows == [(123,), (124,)]

        _run(decorator, ns, readme_db)
        ns["post_fee"](7)
        gov: pygov.Governance = ns["gov"]
        assert gov.idempotency.get("journal_entry", "fee-7") is not None

        _run(async_block, ns, readme_db)
        assert ns["result"].is_duplicate and ns["result"].data == {"entry_id": 456}
        loop.run_until_complete(ns["agov"].close())
    finally:
        if "gov" in ns:
            ns["gov"].close()
        loop.close()


def test_the_trigger_example_audits_and_guards_every_client(readme_db: str) -> None:
    (block,) = _blocks(_section("### 2. Through triggers"), "python")
    gov = pygov.connect(readme_db)
    try:
        _run(block, {"gov": gov}, readme_db)
        with psycopg.connect(readme_db) as conn:
            conn.execute("SELECT set_config('governance.service', 'FeesGateway', true)")
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("INSERT INTO accounting.journal_entry (amount) VALUES (1)")
            assert refused.value.sqlstate == "GV001"
        with psycopg.connect(readme_db) as conn:
            conn.execute("SELECT set_config('governance.service', 'AccountingGateway', true)")
            (entry_id,) = conn.execute(
                "INSERT INTO accounting.journal_entry (amount) VALUES (2) RETURNING id"
            ).fetchone()  # type: ignore[misc]
        history = gov.audit.history("accounting.journal_entry", str(entry_id))
        assert [(e.operation, e.source_service) for e in history] == [
            ("CREATE", "AccountingGateway")
        ]
        # the CLI block's delegation holds against the matrix this section loads
        [grant] = [c for c in _cli_commands() if c[:2] == ["delegation", "grant"]]
        result = CliRunner().invoke(cli_main, grant, env={"PYGOV_DSN": readme_db})
        assert result.exit_code == 0, result.output
        [delegation] = gov.authority.delegations(active=True)
        assert (delegation.to_service, delegation.model_name) == (grant[3], grant[4])
    finally:
        gov.close()


def test_every_governance_object_the_readme_names_exists(pg_dsn: str) -> None:
    # 'governance.service' in quotes is a setting passed to set_config, not an object.
    names = set(re.findall(r"(?<!')\bgovernance\.([a-z_][a-z0-9_]*)\b(?!')", README))
    assert {"check_and_record", "open_quarantine", "scan_orphans"} <= names
    with psycopg.connect(pg_dsn) as conn:
        found = {
            name
            for (name,) in conn.execute(
                "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'governance'::regnamespace"
                " UNION SELECT c.relname FROM pg_class c"
                " WHERE c.relnamespace = 'governance'::regnamespace"
            )
        }
    # The rest must be settings the SQL reads: set_config('governance.x', ...) or ctx('x').
    sql = "".join(f.read_text(encoding="utf-8") for f in SQL_DIR.glob("*.sql"))
    settings = set(re.findall(r"'governance\.([a-z_]+)'", sql))
    settings |= set(re.findall(r"\bctx\('([a-z_]+)'\)", sql))
    assert {"user", "service", "ip"} <= settings
    assert sorted(names - found - settings) == []


def test_every_method_the_readme_calls_exists(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    paths = set(re.findall(r"(?<![\w.])(a?gov)\.([a-z_][a-z0-9_.]*)\(", README))
    assert ("gov", "idempotency.check_and_record") in paths
    assert ("agov", "idempotency.check_and_record") in paths

    async def async_gov() -> Any:
        return await pygov.aio.connect(pg_dsn)

    loop = asyncio.new_event_loop()
    agov = loop.run_until_complete(async_gov())
    try:
        missing = []
        for root, path in sorted(paths):
            target: Any = pg_gov if root == "gov" else agov
            for part in path.split("."):
                target = getattr(target, part, None)
            if not callable(target):
                missing.append(f"{root}.{path}")
        assert missing == []
    finally:
        loop.run_until_complete(agov.close())
        loop.close()


def _cli_commands() -> list[list[str]]:
    """The commands of the CLI block: a line may hold two (split where `pygov` starts again),
    and `enable|disable` stands for one command each."""
    (block,) = _blocks(_section("### 4. From the command line"), "sh")
    commands: list[list[str]] = []
    for line in block.splitlines():
        for word in shlex.split(line, comments=True):
            if word == "pygov":
                commands.append([])
            else:
                commands[-1].append(word)
    expanded: list[list[str]] = []
    for words in commands:
        variants: list[list[str]] = [[]]
        for word in words:
            variants = [[*v, alt] for v in variants for alt in word.split("|")]
        expanded.extend(variants)
    return expanded


def test_every_cli_line_in_the_readme_parses() -> None:
    commands = _cli_commands()
    assert ["migrate"] in commands and len(commands) >= 20
    runner = CliRunner()
    failures = []
    for args in commands:
        # --help is eager: the command path and its options are checked, nothing runs.
        result = runner.invoke(cli_main, [*args, "--help"])
        if result.exit_code != 0:
            failures.append((args, result.output.strip().splitlines()[-1:]))
    assert failures == []
