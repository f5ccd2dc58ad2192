"""Where the SQL and migration files are: inside the wheel, or beside the package in a checkout."""

from __future__ import annotations

from pathlib import Path

from pygov.errors import ConfigurationError

_HERE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``sql`` or ``migrations``: ``pygov/<name>`` in a wheel, ``<repo>/<name>`` in a checkout."""
    for candidate in (_HERE / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigurationError("pygov's packaged files are missing", {"resource": name})


def migrations_dir(backend: str) -> Path:
    return resource_dir("migrations") / backend


def sql_files() -> list[Path]:
    """The files of ``sql/``, in the order they are applied."""
    return sorted(resource_dir("sql").glob("*.sql"))


def load_sql() -> str:
    """Every function, trigger function and view, as one script (CREATE OR REPLACE)."""
    return "\n\n".join(path.read_text(encoding="utf-8") for path in sql_files())
