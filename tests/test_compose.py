"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Where Compose itself is installed (the ``docker compose`` plugin, or the ``docker-compose``
program) its ``config`` command validates the file against the Compose schema and resolves the
anchors; otherwise the file is loaded with PyYAML. Either way the structure is then asserted,
and the commands the services run are run through the real ``pygov`` command's option parser.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PYGOV = str(Path(sys.executable).parent / "pygov")


def compose_command() -> list[str] | None:
    """The Compose CLI if one is installed and answers (no engine needed for ``config``)."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode == 0:
            return command
    return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    command = compose_command()
    if command is None:
        loaded = yaml.safe_load(COMPOSE.read_text())
        assert isinstance(loaded, dict)
        return loaded
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert isinstance(resolved, dict)
    return resolved


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_db_service_is_postgres_with_a_health_check(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert str(db["image"]).startswith("postgres:")
    check = db["healthcheck"]
    test = check["test"] if isinstance(check["test"], str) else " ".join(check["test"])
    env = environment(db)
    assert "pg_isready" in test
    assert f"-U {env['POSTGRES_USER']}" in test and f"-d {env['POSTGRES_DB']}" in test
    assert int(check["retries"]) > 0


def test_migrate_is_one_shot_after_db_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["pygov", "migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"
    assert "build" in migrate


def test_demo_runs_after_migrate_against_db(compose: dict[str, Any]) -> None:
    demo = compose["services"]["demo"]
    assert demo["command"][:3] == ["pygov", "demo", "--dsn"]
    assert demo["depends_on"]["db"]["condition"] == "service_healthy"
    assert demo["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", ["migrate", "demo"])
def test_services_reach_the_db_service_with_its_credentials(
    compose: dict[str, Any], name: str
) -> None:
    db_env = environment(compose["services"]["db"])
    service = compose["services"][name]
    dsns = [environment(service)["PYGOV_DSN"]]
    if "--dsn" in service["command"]:
        dsns.append(service["command"][service["command"].index("--dsn") + 1])
    for dsn in dsns:
        url = urlsplit(dsn)
        assert url.scheme == "postgresql"
        assert url.hostname == "db" and url.port == 5432
        assert url.username == db_env["POSTGRES_USER"]
        assert url.password == db_env["POSTGRES_PASSWORD"]
        assert url.path == f"/{db_env['POSTGRES_DB']}"


@pytest.mark.parametrize("name", ["migrate", "demo"])
def test_service_commands_parse_with_the_real_cli(compose: dict[str, Any], name: str) -> None:
    """The exact arguments of the service, plus --help: click parses every option first, so a
    misspelt option or command fails here with exit status 2."""
    command = compose["services"][name]["command"]
    assert command[0] == "pygov"
    result = subprocess.run(
        [PYGOV, *command[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: pygov" in result.stdout


def test_image_is_built_from_the_dockerfile_with_the_package_data() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = [
        line.split()[1:-1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY") and "--from" not in line
    ]
    sources = [src for group in copied for src in group]
    # pip builds the wheel from these; the SQL and migrations are its package data.
    for needed in ("pyproject.toml", "pygov", "sql", "migrations"):
        assert needed in sources
    for src in sources:
        assert (ROOT / src).exists(), src
    assert "pip install" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
