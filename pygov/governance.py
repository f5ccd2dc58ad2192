"""``Governance``: the sync API over PostgreSQL (psycopg 3) or SQLite, and ``connect()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import fields
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pygov._core import Call, Settings, T, int_arg, seconds_arg
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
    """Settings from ``connect()``'s keyword options; unknown names are a ConfigurationError,
    values of the wrong type or out of range a ValidationError. None means the default."""
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - _SETTING_NAMES
    if unknown:
        raise ConfigurationError("unknown connect() options", {"options": sorted(unknown)})
    for name in ("default_ttl", "default_lease"):
        if name in options:
            options[name] = timedelta(seconds=seconds_arg(name, options[name]) or 0)
    for name in ("open_timeout", "lock_timeout"):
        if name in options:
            options[name] = seconds_arg(name, options[name])
    # Checked here, before connect() opens a pool that a bad option would leave behind.
    ConcurrencyMonitor.check_threshold(options.get("high_concurrency_threshold", 50))
    for name, minimum in (("pool_min_size", 0), ("pool_max_size", 1)):
        if name in options:
            int_arg(name, options[name], minimum=minimum)
    if not isinstance(options.get("prepared_statements", True), bool):
        raise ValidationError("prepared_statements must be True or False", {})
    if not isinstance(options.get("extra", {}), dict):
        raise ValidationError("extra must be a dict", {})
    settings = Settings(**options)
    if settings.pool_min_size > settings.pool_max_size:
        raise ValidationError(
            "pool_min_size is larger than pool_max_size",
            {"pool_min_size": settings.pool_min_size, "pool_max_size": settings.pool_max_size},
        )
    return settings


def parse_dsn(dsn: str) -> tuple[str, str]:
    """("postgresql", dsn) or ("sqlite", path); anything else is a ConfigurationError."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigurationError("a database URL is required", {"type": type(dsn).__name__})
    if "\x00" in dsn:
        raise ConfigurationError("the database URL contains a NUL character", {})
    try:
        scheme = urlsplit(dsn).scheme.lower()
    except ValueError as exc:
        raise ConfigurationError("the database URL is malformed", {"error": str(exc)}) from None
    if scheme in {"postgresql", "postgres"} or (not scheme and "=" in dsn):
        try:
            conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            # The message names the bad part, never a password.
            raise ConfigurationError(
                "the PostgreSQL connection string is malformed", {"error": str(exc).strip()}
            ) from None
        return "postgresql", dsn
    if scheme == "sqlite":
        path = unquote(dsn[len("sqlite://") :])
        path = path[1:] if path.startswith("/") else path
        if path in {"", ":memory:"}:
            return "sqlite", ":memory:"
        if "\x00" in path:
            raise ConfigurationError("the SQLite path contains a NUL character", {})
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
        name = call.op_name or call.statement.name
        # monitor.begin/end rather than monitor.track: this is every call's path, and a
        # generator-based context manager costs more than the rest of the bookkeeping.
        self.monitor.begin(name)
        failed = True
        try:
            rows = self._backend.fetch(call.statement, call.args, call.conn)
            failed = False
        except GovernanceError as exc:
            if "sqlstate" in exc.context:
                # A driver or server error (timeout, lost connection ...): say which
                # operation it hit. Domain errors keep the context their code gave them.
                exc.context.setdefault("call", name)
            raise
        finally:
            self.monitor.end(name, failed)
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
