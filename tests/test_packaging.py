"""The wheel carries sql/ and migrations/: installed outside the source tree, it migrates."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_in_a_fresh_venv_and_migrates(tmp_path: Path, empty_pg_dsn: str) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("pygov-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    script = (
        "import sys, pygov\n"
        "assert 'site-packages' in pygov.__file__, pygov.__file__\n"
        "gov = pygov.connect(sys.argv[1], pool_min_size=0)\n"
        "print(','.join(gov.migrate().applied))\n"
        "print(gov.idempotency.check_and_record('wheel', 'k').is_duplicate)\n"
        "gov.close()\n"
    )
    run = subprocess.run(
        [str(python), "-c", script, empty_pg_dsn],
        cwd=tmp_path,  # outside the source tree: nothing can come from the checkout
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    applied, duplicate = run.stdout.split()
    assert "0002_idempotency" in applied.split(",")
    assert duplicate == "False"
    cli = subprocess.run(
        [str(env_dir / "bin" / "pygov"), "--dsn", empty_pg_dsn, "migrate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    with psycopg.connect(empty_pg_dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM governance.idempotency_record WHERE operation_type = 'wheel'"
        ).fetchone() == (1,)
