"""``pygov demo``: the real command, on an embedded PostgreSQL, on a given server and on SQLite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

from tests.conftest import PgServer

PYGOV = str(Path(sys.executable).parent / "pygov")


def run_demo(
    *args: str, tmpdir: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGOV_")}
    env.pop("XDG_RUNTIME_DIR", None)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [PYGOV, "demo", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_report(output: str, backend: str) -> None:
    """Every step reported with its time and 'ok', and the closing verdict."""
    summary = output[output.index("\nSummary\n") :]
    steps = re.findall(r"^  (.+?)\s+(\d+\.\d\d) s  (ok|FAILED.*)$", summary, re.MULTILINE)
    assert len(steps) >= 2
    assert steps[0][0].startswith("Migrate")
    assert all(verdict == "ok" for _, _, verdict in steps), steps
    verdict = re.search(
        rf"Done in [\d.]+ s on {backend}: (\d+) of (\d+) claim\(s\) held, 0 failed\.", output
    )
    assert verdict is not None, output
    assert verdict.group(1) == verdict.group(2) and int(verdict.group(1)) >= 1
    assert "✘" not in output


def test_demo_on_embedded_postgres_cleans_up(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = run_demo(tmpdir=tmpdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Starting an embedded PostgreSQL" in result.stdout
    assert_report(result.stdout, "postgresql")
    # The server's data directory and embedded-postgres's runtime directory are gone.
    assert list(tmpdir.iterdir()) == []


def test_demo_on_sqlite_and_again_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    first = run_demo("--sqlite", str(path))
    assert first.returncode == 0, first.stdout + first.stderr
    assert_report(first.stdout, "sqlite")
    assert path.exists()
    again = run_demo("--sqlite", str(path))  # a previous demo file is replaced, not reused
    assert again.returncode == 0, again.stdout + again.stderr
    assert_report(again.stdout, "sqlite")


def test_demo_refuses_to_overwrite_a_file_that_is_not_a_demo_database(tmp_path: Path) -> None:
    precious = tmp_path / "precious.db"
    precious.write_bytes(b"my data")
    result = run_demo("--sqlite", str(precious))
    assert result.returncode == 2
    assert "not a pygov demo database" in result.stderr
    result = run_demo("--dsn", f"sqlite:///{precious}")
    assert result.returncode == 2
    assert precious.read_bytes() == b"my data"


def test_demo_on_a_given_server_uses_a_scratch_database(pg_server: PgServer) -> None:
    def demo_databases() -> list[str]:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'pygov_demo_%'"
            ).fetchall()
        return [r[0] for r in rows]

    before = demo_databases()
    result = run_demo("--dsn", pg_server.admin_dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_report(result.stdout, "postgresql")
    name = re.search(r"scratch database (pygov_demo_\w+)", result.stdout)
    assert name is not None
    assert name.group(1) not in demo_databases()
    assert demo_databases() == before


def test_a_failed_claim_or_a_crashed_step_fails_the_run(tmp_path: Path) -> None:
    """The runner itself: extra steps (one false claim, one crash) added to the real steps."""
    script = textwrap.dedent(
        """
        import sys
        import pygov.demo as demo

        def false_claim(d):
            with d.step("A step whose claim does not hold"):
                d.check(1 + 1 == 3, "arithmetic is broken")

        def crash(d):
            with d.step("A step that crashes"):
                raise RuntimeError("disk on fire")
            d.check(True, "the run goes on after a crash")

        real_steps = demo.steps
        demo.steps = lambda: [*real_steps(), false_claim, crash]
        from pygov.cli import main
        main(["demo", "--sqlite", sys.argv[1]])
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGOV_")}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"A step whose claim does not hold\s+\d+\.\d\d s  FAILED \(1\)", out)
    assert re.search(r"A step that crashes\s+\d+\.\d\d s  FAILED \(1\)", out)
    assert "✘ A step that crashes: crashed with RuntimeError: disk on fire" in out
    assert "✔ the run goes on after a crash" in out
    assert re.search(r"claim\(s\) held, 2 failed\.", out)


def test_demo_in_place_runs_once_per_database(pg_dsn: str) -> None:
    first = run_demo("--dsn", pg_dsn, "--in-place")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_report(first.stdout, "postgresql")
    assert "scratch database" not in first.stdout
    # A second run would find the first run's governance records and report false failures.
    again = run_demo("--dsn", pg_dsn, "--in-place")
    assert again.returncode == 2
    assert "already ran in this database" in again.stderr
