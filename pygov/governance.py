"""``Governance``: the sync API over PostgreSQL (psycopg 3) or SQLite, and ``connect()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from pygov._core import Call, Settings, T
from pygov._pg import PgBackend
from pygov._sqlite import SqliteBackend
from pygov.audit import Audit
from pygov.authority import Authority, record_violation
from pygov.context import GovernanceContext, governance_context
from pygov.errors import (
    AuthorityViolationError,
    ConfigurationError,
    GovernanceError,
    ValidationError,
    translate,
)
from pygov.health import HealthReport, health_call
from pygov.idempotency import Idempotency
from pygov.locks import Locks
from pygov.migrate import MigrationReport, migrate_postgres, migrate_sqlite
from pygov.monitor import ConcurrencyMonitor
from pygov.quarantine import Quarantine
from pygov.stock import Stock

P = ParamSpec("P")
R = TypeVar("R")

_SETTING_NAMES = {f.name for f in fields(Settings)}


def make_settings(options: dict[str, Any]) -> Settings:
    """Settings from ``connect()``'s keyword options; unknown names are a ConfigurationError."""
    unknown = set(options) - _SETTING_NAMES
    if unknown:
        raise ConfigurationError("unknown connect() options", {"options": sorted(unknown)})
    for name in ("default_ttl", "default_lease"):
        value = options.get(name)
        if value is not None and not isinstance(value, timedelta):
            options[name] = timedelta(seconds=float(value))
    # Checked here, before connect() opens a pool that a bad option would leave behind.
    ConcurrencyMonitor.check_threshold(options.get("high_concurrency_threshold", 50))
    return Settings(**options)


def parse_dsn(dsn: str) -> tuple[str, str]:
    """("postgresql", dsn) or ("sqlite", path); anything else is a ConfigurationError."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigurationError("a database URL is required", {"dsn": dsn})
    scheme = urlsplit(dsn).scheme.lower()
    if scheme in {"postgresql", "postgres"} or (not scheme and "=" in dsn):
        return "postgresql", dsn
    if scheme == "sqlite":
        path = unquote(dsn[len("sqlite://") :])
        path = path[1:] if path.startswith("/") else path
        if path in {"", ":memory:"}:
            return "sqlite", ":memory:"
        return "sqlite", path
    raise ConfigurationError(
        "unsupported database URL: use postgresql://... or sqlite:///path",
        {"scheme": scheme or None},
    )


class Governance:
    """The governance layer over one database. Create it with :func:`pygov.connect`."""

    def __init__(self, backend: PgBackend | SqliteBackend, settings: Settings) -> None:
        self.settings = settings
        self._backend = backend
        self.monitor = ConcurrencyMonitor(settings.high_concurrency_threshold)
        self.idempotency = Idempotency(self)
        self.audit = Audit(self)
        self.authority = Authority(self)
        self.quarantine = Quarantine(self)
        self.locks = Locks(self)
        self.stock = Stock(self)

    @property
    def backend(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return self._backend.kind

    def _run(self, call: Call[T]) -> T:
        with self.monitor.track(call.op_name or call.statement.name):
            rows = self._backend.fetch(call.statement, call.args, call.conn)
        try:
            return call.result(rows)
        except GovernanceError:
            raise
        except Exception as exc:
            raise translate(exc) from exc

    # --- lifecycle ------------------------------------------------------------------------

    def migrate(self) -> MigrationReport:
        """Apply pending migrations and reload the functions of ``sql/``. Safe to repeat."""
        if isinstance(self._backend, PgBackend):
            return migrate_postgres(self._backend.dsn)
        with self._backend.connection() as conn:
            return migrate_sqlite(self._backend.path, conn)

    def health(self, *, conn: Any = None) -> HealthReport:
        """Every problem the governance layer can see (authority matrix, abandoned claims...)."""
        return self._run(health_call(self.backend, conn))

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Governance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- context and transactions -----------------------------------------------------------

    def context(self, **fields: Any) -> AbstractContextManager[GovernanceContext]:
        """Set who is acting for the block: user, service, ip, user_agent, request_id."""
        return governance_context(**fields)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection in a transaction with the governance context applied: your own SQL in
        it is audited with the right user. Pass it as ``conn=`` to join pygov calls to it."""
        try:
            with self._backend.transaction() as conn:
                yield conn
        except AuthorityViolationError as exc:
            # A write refused by a protected table: make sure the violation is in the trail.
            record_violation(self, exc)
            raise

    def idempotent(
        self,
        operation_type: str,
        *,
        key: str | Callable[..., str],
        ttl: timedelta | float | None = None,
        payload: Any = None,
        lease: timedelta | float | None = None,
        wait: float = 0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: see :meth:`pygov.idempotency.Idempotency.idempotent`."""
        return self.idempotency.idempotent(
            operation_type, key=key, ttl=ttl, payload=payload, lease=lease, wait=wait
        )


def connect(dsn: str, **options: Any) -> Governance:
    """Open the governance layer on ``postgresql://...`` or ``sqlite:///path`` (or
    ``sqlite:///:memory:``).

    Options: ``default_ttl``, ``default_lease``, ``lock_timeout``,
    ``high_concurrency_threshold``, ``pool_min_size``, ``pool_max_size``,
    ``prepared_statements`` (False behind PgBouncer in transaction mode).
    """
    kind, target = parse_dsn(dsn)
    settings = make_settings(dict(options))
    if settings.default_ttl.total_seconds() <= 0:
        raise ValidationError(
            "default_ttl must be positive", {"default_ttl": str(settings.default_ttl)}
        )
    if kind == "postgresql":
        return Governance(PgBackend(target, settings), settings)
    return Governance(SqliteBackend(target, settings), settings)
