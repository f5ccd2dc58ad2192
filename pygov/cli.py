"""The ``pygov`` command: an admin CLI for operators and DBAs, and the demo.

Conventions every command follows:

- the database comes from ``--dsn`` or ``PYGOV_DSN``; the acting user from ``--user``,
  ``PYGOV_USER`` or the OS user, with service ``pygov-cli`` (the governance context of every
  call, so triggers and audit rows name who did it);
- listings print a readable table, or JSON with ``--json`` (before or after the subcommand);
- exit status 0 on success, 1 on a governance error (or when a check finds problems), 2 on bad
  usage;
- long work reports progress on stderr, so stdout stays clean for ``--json``;
- every admin action is itself recorded in the audit trail (``gov.audit.log_admin_access``),
  with its outcome.

On SQLite, which has no database roles, the CLI acts as ``governance_admin`` (the context's
``superuser`` flag): whoever can write the file has that power anyway.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

import pygov
from pygov import admin
from pygov.errors import ConfigurationError, GovernanceError, QuarantineError
from pygov.governance import parse_dsn

SERVICE = "pygov-cli"
F = TypeVar("F", bound=Callable[..., Any])


# --- output ----------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from pygov results (dataclasses, named tuples, datetimes, decimals...)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):  # named tuples (records)
        return {k: to_jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False, sort_keys=False)


def cell(value: Any, width: int = 60) -> str:
    """One table cell: short, on one line."""
    if value is None:
        text = "-"
    elif isinstance(value, datetime):
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table with a header line; an empty listing says so."""
    if not rows:
        return "(none)"
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def as_row(value: Any) -> dict[str, Any]:
    if is_dataclass(value) and not isinstance(value, type):
        return {f: getattr(value, f) for f in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot show {type(value).__name__} as a row")


# --- progress --------------------------------------------------------------------------------


class Progress:
    """Progress of long work on stderr: a live line on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.detail = ""
        self._tty = self.stream.isatty()
        self._started = 0.0
        self._last_line = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None

    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _write(self, text: str, *, live: bool = False) -> None:
        with self._lock:
            if self._tty:
                self.stream.write("\r\x1b[K" + text + ("" if live else "\n"))
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.2):
            self._write(self._line(), live=True)

    def _line(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.label}... {self._elapsed():.0f} s{detail}"

    def update(self, detail: str) -> None:
        """New detail (e.g. "deleted 2000"); on a plain stream printed at most once a second."""
        self.detail = detail
        now = time.monotonic()
        if not self._tty and now - self._last_line >= self.interval:
            self._last_line = now
            self._write(f"{self.label}: {detail}")

    def __enter__(self) -> Progress:
        self._started = self._last_line = time.monotonic()
        self._write(f"{self.label}...", live=self._tty)
        if self._tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        outcome = "failed" if exc_type is not None else "done"
        detail = f" ({self.detail})" if self.detail else ""
        self._write(f"{self.label}: {outcome} in {self._elapsed():.1f} s{detail}")


# --- parameters ------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1w`` -> timedelta (positive)."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 15m, 2h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()])


def duration_param(ctx: click.Context, param: click.Parameter, value: Any) -> timedelta | None:
    """Option callback: a duration such as 30s, 15m, 2h, 1d."""
    if value is None or isinstance(value, timedelta):
        return value
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def since_param(ctx: click.Context, param: click.Parameter, value: Any) -> datetime | None:
    """Option callback: an ISO time (naive means UTC), or a duration meaning that long ago."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).strip()
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a time (2024-05-01T10:00) nor a duration (2h)", ctx, param
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the session: options, the connection, context, recording --------------------------------


def default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (some containers)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


@dataclass
class Session:
    """What every command shares: the options of the ``pygov`` group and the open connection."""

    dsn: str | None
    user: str
    json: bool = False
    _gov: pygov.Governance | None = None
    _ctx: click.Context | None = None

    @property
    def connected(self) -> bool:
        return self._gov is not None

    def require_dsn(self) -> str:
        if not self.dsn:
            raise click.UsageError("no database given: pass --dsn or set PYGOV_DSN")
        try:
            parse_dsn(self.dsn)
        except GovernanceError as exc:
            raise click.UsageError(f"--dsn / PYGOV_DSN: {exc.message}") from None
        return self.dsn

    def gov(self, *, create: bool = False) -> pygov.Governance:
        """The governance object, opened once, with the CLI's context installed.

        An SQLite file must exist unless ``create`` (only ``migrate`` makes a new database).
        """
        if self._gov is not None:
            return self._gov
        dsn = self.require_dsn()
        kind, target = parse_dsn(dsn)
        if kind == "sqlite" and target != ":memory:" and not create and not Path(target).exists():
            raise click.UsageError(f"no SQLite database at {target} (run `pygov migrate` first)")
        if kind == "postgresql":
            probe_postgres(dsn)
        gov = pygov.connect(dsn, pool_min_size=1, pool_max_size=4)
        assert self._ctx is not None
        self._ctx.call_on_close(gov.close)
        self._ctx.with_resource(
            gov.context(user=self.user, service=SERVICE, superuser=kind == "sqlite")
        )
        self._gov = gov
        return gov

    def output(self, value: Any, columns: Sequence[str] | None = None) -> None:
        """A listing (list of rows) or one object, as JSON or as a table."""
        if self.json:
            click.echo(dumps(value))
            return
        if isinstance(value, list):
            rows = [as_row(v) for v in value]
            cols = list(columns or (rows[0].keys() if rows else []))
            click.echo(table(rows, cols))
            return
        row = as_row(value)
        width = max((len(k) for k in row), default=0)
        for key in columns or row.keys():
            click.echo(f"{key.ljust(width)}  {cell(row.get(key), 100)}")

    def record(self, action: str, target: str | None, extra: dict[str, Any]) -> None:
        """Record an admin action in the audit trail."""
        gov = self.gov()
        gov.audit.log_admin_access(action, target, extra=to_jsonable(extra))


def probe_postgres(dsn: str) -> None:
    """Fail fast (5 s), with the server's own words, when PostgreSQL cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5, autocommit=True):
            pass
    except psycopg.Error as exc:
        # as pygov.connect() reports it: the DSN, the server or the role is wrong
        raise ConfigurationError(
            "cannot connect to PostgreSQL", {"error": str(exc).strip().splitlines()[0]}
        ) from None


def session() -> Session:
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, Session)
    return obj


def _to_session(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    # The options of a subcommand override the group's (`pygov check --dsn ...` works too).
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        root = ctx.find_root().obj
        if value not in (None, False) and isinstance(root, Session):
            setattr(root, name, value)

    return callback


def options(*, listing: bool = True, user: bool = True) -> Callable[[F], F]:
    """``--dsn`` and ``--user`` (unless the command has a ``--user`` filter of its own) on a
    command, and ``--json`` when it prints a listing."""

    def decorate(func: F) -> F:
        if user:
            func = click.option(
                "--user", expose_value=False, callback=_to_session("user"), help="Who is acting."
            )(func)
        func = click.option(
            "--dsn",
            expose_value=False,
            callback=_to_session("dsn"),
            help="postgresql://... or sqlite:///path (default: PYGOV_DSN).",
        )(func)
        if listing:
            func = click.option(
                "--json",
                "as_json",
                is_flag=True,
                expose_value=False,
                callback=_to_session("json"),
                help="Print JSON instead of a table.",
            )(func)
        return func

    return decorate


def admin_action(
    action: str, target: Callable[[dict[str, Any]], Any] | None = None
) -> Callable[[F], F]:
    """Record the command in the audit trail once it has run, with its outcome and arguments.

    ``target`` picks the target (a table, an id) from the command's arguments.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            s = session()
            outcome = "error"
            try:
                result = func(**kwargs)
                outcome = "ok"
                return result
            except click.exceptions.Exit as exc:
                outcome = "ok" if exc.exit_code == 0 else "problems found"
                raise
            finally:
                # A command that failed before reaching the database has nothing to record.
                if outcome == "ok" or s.connected:
                    what = target(kwargs) if target is not None else None
                    extra = {"outcome": outcome, "arguments": kwargs}
                    try:
                        s.record(action, None if what is None else str(what), extra)
                    except GovernanceError:
                        if outcome == "ok":
                            raise  # a successful admin action must not go unrecorded
                        # It failed already (often for the same reason): report that error.

        return wrapper  # type: ignore[return-value]

    return decorate


# --- the command group -----------------------------------------------------------------------


class GovernanceFailure(click.ClickException):
    """A governance error, shown as ``error: ...`` (or JSON with --json), exit status 1."""

    exit_code = 1

    def __init__(self, error: GovernanceError, as_json: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.as_json = as_json

    def show(self, file: Any = None) -> None:
        if self.as_json:
            body = {
                "error": type(self.error).__name__,
                "message": self.error.message,
                "context": self.error.context,
            }
            click.echo(dumps(body), err=True)
        else:
            click.echo(f"error: {type(self.error).__name__}: {self.error}", err=True)


class PygovGroup(click.Group):
    """Turns every governance error raised by a command into exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GovernanceError as exc:
            obj = ctx.find_root().obj
            raise GovernanceFailure(exc, isinstance(obj, Session) and obj.json) from exc


@click.group(
    cls=PygovGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--dsn", envvar="PYGOV_DSN", help="postgresql://... or sqlite:///path (PYGOV_DSN).")
@click.option(
    "--user",
    envvar="PYGOV_USER",
    default=default_user,
    show_default="the OS user",
    help="Who is acting, for the audit trail (PYGOV_USER).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.version_option(pygov.__version__, prog_name="pygov")
@click.pass_context
def main(ctx: click.Context, dsn: str | None, user: str, as_json: bool) -> None:
    """pygov: governance for business databases (admin CLI).

    Exit status: 0 success, 1 governance error or problems found, 2 bad usage.
    """
    ctx.obj = Session(dsn=dsn, user=user, json=as_json, _ctx=ctx)


# --- migrate, check --------------------------------------------------------------------------


@main.command()
@options()
@admin_action("migrate")
def migrate() -> None:
    """Apply pending migrations and reload the governance functions (safe to repeat)."""
    s = session()
    gov = s.gov(create=True)
    with Progress("Migrating"):
        report = gov.migrate()
    if s.json:
        s.output(report)
    else:
        reloaded = "; functions reloaded" if report.functions_reloaded else ""
        click.echo(f"applied: {', '.join(report.applied) or 'nothing pending'}{reloaded}")


def _matrix_rows(matrix: Any) -> list[dict[str, Any]]:
    return [
        {
            "service": service,
            "model": model,
            "operations": ", ".join(operations),
            "critical": model in matrix.critical,
        }
        for service, models in sorted(matrix.grants.items())
        for model, operations in sorted(models.items())
    ]


@main.command()
@click.option("--matrix/--no-matrix", default=True, help="Also print the authority matrix.")
@options()
@admin_action("check")
def check(matrix: bool) -> None:
    """Health of the governance layer and the authority matrix; exit status 1 on problems."""
    s = session()
    gov = s.gov()
    report = gov.health()
    grants = _matrix_rows(gov.authority.matrix()) if matrix else []
    if s.json:
        body: dict[str, Any] = {"backend": report.backend, "ok": report.ok}
        body["problems"] = report.problems
        if matrix:
            body["authority_matrix"] = grants
        s.output(body)
    else:
        if report.ok:
            click.echo(f"ok: no problems found ({report.backend})")
        else:
            s.output(report.problems, ["severity", "component", "problem", "detail"])
        if matrix:
            click.echo("\nauthority matrix:")
            click.echo(table(grants, ["service", "model", "operations", "critical"]))
    if not report.ok:
        raise click.exceptions.Exit(1)


# --- idempotency -----------------------------------------------------------------------------


@main.group()
def idempotency() -> None:
    """Idempotency records: statistics and cleanup."""


@idempotency.command("stats")
@options()
@admin_action("idempotency.stats")
def idempotency_stats() -> None:
    """Per operation type: completed, in progress, expired, duplicates served."""
    s = session()
    stats = list(s.gov().idempotency.stats().values())
    s.output(stats, ["operation_type", "completed", "in_progress", "expired", "duplicates_served"])


@idempotency.command("cleanup")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Records deleted per transaction.",
)
@options()
@admin_action("idempotency.cleanup")
def idempotency_cleanup(batch_size: int) -> None:
    """Delete expired idempotency records, batch by batch (admin)."""
    s = session()
    gov = s.gov()
    with Progress("Deleting expired idempotency records") as progress:
        deleted = gov.idempotency.cleanup_expired(
            batch_size, progress=lambda total: progress.update(f"{total} deleted")
        )
    if s.json:
        s.output({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} expired record(s)")


# --- audit -----------------------------------------------------------------------------------

RECORD_COLUMNS = ["id", "occurred_at", "operation", "user_name", "source_service"]


def _record_rows(records: Sequence[Any], *, with_object: bool) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        row = {c: getattr(r, c) for c in RECORD_COLUMNS}
        if with_object:
            row["object"] = f"{r.model_name or '-'} {r.object_id or ''}".strip()
        row["detail"] = ",".join(r.changed_fields or []) or (
            (r.extra or {}).get("action") if r.operation == "ADMIN_ACCESS" else None
        )
        rows.append(row)
    return rows


@main.group()
def audit() -> None:
    """The audit trail: history, tail, seals and verification, audited tables.

    The trail itself is read-only here as everywhere: nothing in this CLI changes a record.
    """


@audit.command("history")
@click.argument("model")
@click.argument("object_id")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--before-id", type=int, help="Page: only records older than this id.")
@options()
@admin_action("audit.history", target=lambda a: f"{a['model']} {a['object_id']}")
def audit_history(model: str, object_id: str, limit: int, before_id: int | None) -> None:
    """The audit records of one object (MODEL is schema.table), newest first."""
    s = session()
    records = s.gov().audit.history(model, object_id, limit=limit, before_id=before_id)
    if s.json:
        s.output(records)
    else:
        s.output(_record_rows(records, with_object=False), [*RECORD_COLUMNS, "detail"])


@audit.command("tail")
@click.option("--user", "user_name", help="Only this user's records (who acts: pygov --user ...).")
@click.option("--since", callback=since_param, help="A time (ISO 8601) or a duration (2h, 1d).")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@options(user=False)
@admin_action("audit.tail")
def audit_tail(user_name: str | None, since: datetime | None, limit: int) -> None:
    """The newest audit records, oldest of them first (as `tail` shows a log)."""
    s = session()
    records = admin.audit_tail(s.gov(), user=user_name, since=since, limit=limit)[::-1]
    if s.json:
        s.output(records)
    else:
        s.output(_record_rows(records, with_object=True), [*RECORD_COLUMNS, "object", "detail"])


@audit.command("seal")
@options()
@admin_action("audit.seal")
def audit_seal() -> None:
    """Seal every audit row written since the last seal into the SHA-256 chain."""
    s = session()
    with Progress("Sealing the audit trail") as progress:
        seals = s.gov().audit.seal()
        progress.detail = f"{sum(x.row_count for x in seals)} rows in {len(seals)} seal(s)"
    if s.json or seals:
        s.output(seals, ["id", "month", "row_count", "first_id", "last_id", "hash"])
    else:
        click.echo("nothing to seal: no audit rows since the last seal")


@audit.command("verify")
@options()
@admin_action("audit.verify")
def audit_verify() -> None:
    """Recompute the chain of seals; exit status 1 when tampering is found."""
    s = session()
    with Progress("Verifying the audit trail") as progress:
        result = s.gov().audit.verify()
        progress.detail = f"{result.seals_checked} seals, {result.rows_checked} rows"
    if s.json:
        s.output(result)
    elif result.ok:
        click.echo(f"ok: {result.seals_checked} seal(s) and {result.rows_checked} row(s) verified")
    else:
        click.echo(
            f"TAMPERING FOUND: seal {result.bad_seal_id}, first bad row "
            f"{result.bad_row_id}: {result.problem}"
        )
    if not result.ok:
        raise click.exceptions.Exit(1)


@audit.command("enable")
@click.argument("table")
@click.option(
    "--ignore-column", "ignore", multiple=True, help="Changes to it alone are not audited."
)
@click.option("--model-name", help="The model name in the trail (default: schema.table).")
@options()
@admin_action("audit.enable", target=lambda a: a["table"])
def audit_enable(table: str, ignore: tuple[str, ...], model_name: str | None) -> None:
    """Audit every INSERT, UPDATE, DELETE and TRUNCATE of TABLE by triggers."""
    s = session()
    audited = s.gov().audit.enable(table, ignore_columns=list(ignore), model_name=model_name)
    s.output(audited)


@audit.command("disable")
@click.argument("table")
@options()
@admin_action("audit.disable", target=lambda a: a["table"])
def audit_disable(table: str) -> None:
    """Stop auditing TABLE (its existing records stay)."""
    s = session()
    removed = s.gov().audit.disable(table)
    if s.json:
        s.output({"table": table, "disabled": removed})
    else:
        click.echo(f"{table}: {'audit disabled' if removed else 'was not audited'}")


@audit.command("tables")
@options()
@admin_action("audit.tables")
def audit_tables() -> None:
    """The tables audited by triggers."""
    s = session()
    s.output(
        s.gov().audit.audited_tables(),
        [
            "table_name",
            "model_name",
            "key_columns",
            "ignore_columns",
            "enabled_at",
            "enabled_by",
            "triggers_installed",
        ],
    )


# --- quarantine ------------------------------------------------------------------------------

QUARANTINE_COLUMNS = [
    "id",
    "status",
    "model_name",
    "object_id",
    "corruption_type",
    "quarantined_at",
    "quarantined_by",
    "reason",
]


def _quarantine_record(gov: pygov.Governance, record_id: int) -> Any:
    record = gov.quarantine.get(record_id)
    if record is None:
        raise QuarantineError("no quarantine record with this id", {"id": record_id})
    return record


@main.group()
def quarantine() -> None:
    """Quarantined data: list, inspect, review, resolve, and scan for corruption."""


@quarantine.command("list")
@click.option(
    "--status",
    type=click.Choice(["QUARANTINED", "UNDER_REVIEW", "RESOLVED", "OPEN"], case_sensitive=False),
    metavar="[QUARANTINED|UNDER_REVIEW|RESOLVED|OPEN]",
    help="Only records in this status (OPEN: not resolved).",
)
@click.option("--model", "model_name", help="Only records of this model (schema.table).")
@click.option("--type", "corruption_type", help="Only records of this corruption type.")
@click.option("--limit", type=click.IntRange(1, None), help="At most this many records.")
@options()
@admin_action("quarantine.list")
def quarantine_list(
    status: str | None, model_name: str | None, corruption_type: str | None, limit: int | None
) -> None:
    """Quarantine records, oldest first."""
    s = session()
    records = s.gov().quarantine.list(
        status.upper() if status else None,
        model_name=model_name,
        corruption_type=corruption_type,
        limit=limit,
    )
    s.output(records, QUARANTINE_COLUMNS)


@quarantine.command("show")
@click.argument("record_id", type=int)
@options()
@admin_action("quarantine.show", target=lambda a: a["record_id"])
def quarantine_show(record_id: int) -> None:
    """One record, with the snapshot of the data as it was when quarantined."""
    s = session()
    record = _quarantine_record(s.gov(), record_id)
    if s.json:
        s.output(record)
        return
    row = as_row(record)
    snapshot = row.pop("data")
    s.output(row)
    click.echo("snapshot:")
    click.echo(dumps(snapshot))


@quarantine.command("review")
@click.argument("record_id", type=int)
@options()
@admin_action("quarantine.review", target=lambda a: a["record_id"])
def quarantine_review(record_id: int) -> None:
    """Start reviewing a record (QUARANTINED -> UNDER_REVIEW)."""
    s = session()
    record = s.gov().quarantine.start_review(record_id)
    if s.json:
        s.output(record)
    else:
        click.echo(f"record {record.id}: {record.status} (reviewer {record.reviewed_by or '-'})")


@quarantine.command("resolve")
@click.argument("record_id", type=int)
@click.option(
    "--resolution",
    required=True,
    type=click.Choice(["REPAIRED", "DISCARDED", "FALSE_POSITIVE"], case_sensitive=False),
    metavar="[REPAIRED|DISCARDED|FALSE_POSITIVE]",
)
@click.option("--notes", required=True, help="What was found and done (required).")
@options()
@admin_action("quarantine.resolve", target=lambda a: a["record_id"])
def quarantine_resolve(record_id: int, resolution: str, notes: str) -> None:
    """Resolve a record (admin): REPAIRED, DISCARDED or FALSE_POSITIVE, with notes."""
    s = session()
    record = s.gov().quarantine.resolve(record_id, notes, resolution=resolution.upper())
    if s.json:
        s.output(record)
    else:
        click.echo(f"record {record.id}: {record.status} as {record.resolution}")


def _scan_result(kind: str, target: str, found: int) -> None:
    s = session()
    if s.json:
        s.output({"scan": kind, "table": target, "quarantined": found})
    else:
        click.echo(f"{target}: {found} new row(s) quarantined")


@quarantine.command("scan-orphans")
@click.argument("child_table")
@click.argument("fk_column")
@click.argument("parent_table")
@click.option("--parent-column", default="id", show_default=True)
@click.option("--type", "corruption_type", default="ORPHANED_RECORD", show_default=True)
@click.option("--reason", help="The reason recorded (default: a description of the scan).")
@options()
@admin_action("quarantine.scan_orphans", target=lambda a: a["child_table"])
def quarantine_scan_orphans(
    child_table: str,
    fk_column: str,
    parent_table: str,
    parent_column: str,
    corruption_type: str,
    reason: str | None,
) -> None:
    """Quarantine rows of CHILD_TABLE whose FK_COLUMN matches no row of PARENT_TABLE."""
    gov = session().gov()
    with Progress(f"Scanning {child_table} for orphans") as progress:
        found = gov.quarantine.scan_orphans(
            child_table,
            fk_column,
            parent_table,
            parent_column,
            corruption_type=corruption_type,
            reason=reason,
        )
        progress.detail = f"{found} quarantined"
    _scan_result("orphans", child_table, found)


@quarantine.command("scan-negative")
@click.argument("table")
@click.argument("column")
@click.option("--type", "corruption_type", default="INVALID_STATE", show_default=True)
@click.option("--reason", help="The reason recorded (default: a description of the scan).")
@options()
@admin_action("quarantine.scan_negative", target=lambda a: a["table"])
def quarantine_scan_negative(
    table: str, column: str, corruption_type: str, reason: str | None
) -> None:
    """Quarantine rows of TABLE whose COLUMN is below zero."""
    gov = session().gov()
    with Progress(f"Scanning {table}.{column} for negative values") as progress:
        found = gov.quarantine.scan_negative(
            table, column, corruption_type=corruption_type, reason=reason
        )
        progress.detail = f"{found} quarantined"
    _scan_result("negative", table, found)


@quarantine.command("types")
@options()
@admin_action("quarantine.types")
def quarantine_types() -> None:
    """The corruption types records may have."""
    s = session()
    types = s.gov().quarantine.corruption_types()
    s.output([{"code": k, "description": v} for k, v in types.items()], ["code", "description"])


# --- delegation ------------------------------------------------------------------------------

DELEGATION_COLUMNS = [
    "id",
    "state",
    "from_service",
    "to_service",
    "model_name",
    "operation",
    "valid_until",
    "created_by",
    "reason",
]


def _delegation_row(d: Any) -> dict[str, Any]:
    state = "revoked" if d.is_revoked else ("live" if d.is_valid() else "expired")
    return {**as_row(d), "state": state}


@main.group()
def delegation() -> None:
    """Time-bounded delegations of authority between services."""


@delegation.command("list")
@click.option("--active", is_flag=True, help="Only delegations that count now.")
@options()
@admin_action("delegation.list")
def delegation_list(active: bool) -> None:
    """Delegations, newest first."""
    s = session()
    delegations = s.gov().authority.delegations(active=active)
    rows = [_delegation_row(d) for d in delegations]
    s.output(rows, DELEGATION_COLUMNS)


@delegation.command("grant")
@click.argument("from_service")
@click.argument("to_service")
@click.argument("model")
@click.argument("operation")
@click.option(
    "--duration", required=True, callback=duration_param, help="At most 24h (e.g. 30m, 2h)."
)
@click.option("--reason", required=True, help="Why (recorded in the trail).")
@options()
@admin_action("delegation.grant", target=lambda a: a["model"])
def delegation_grant(
    from_service: str,
    to_service: str,
    model: str,
    operation: str,
    duration: timedelta,
    reason: str,
) -> None:
    """Lend FROM_SERVICE's authority for OPERATION on MODEL to TO_SERVICE (admin)."""
    s = session()
    granted = s.gov().authority.delegate(
        from_service, to_service, model, operation.upper(), duration, reason
    )
    s.output(_delegation_row(granted), DELEGATION_COLUMNS)


@delegation.command("revoke")
@click.argument("delegation_id", type=int)
@click.option("--reason", required=True, help="Why (recorded in the trail).")
@options()
@admin_action("delegation.revoke", target=lambda a: a["delegation_id"])
def delegation_revoke(delegation_id: int, reason: str) -> None:
    """End a delegation now (admin); revoking twice changes nothing."""
    s = session()
    revoked = s.gov().authority.revoke(delegation_id, reason)
    s.output(_delegation_row(revoked), [*DELEGATION_COLUMNS[:3], "revoked_at", "revoke_reason"])


# --- stats -----------------------------------------------------------------------------------


@main.command()
@options()
@admin_action("stats")
def stats() -> None:
    """Overview: idempotency, audit volume, open quarantine, live delegations, lock activity."""
    s = session()
    gov = s.gov()
    idem = gov.idempotency.stats()
    summary: dict[str, Any] = {
        "backend": gov.backend,
        "idempotency": {
            "operation_types": len(idem),
            "completed": sum(v.completed for v in idem.values()),
            "in_progress": sum(v.in_progress for v in idem.values()),
            "expired": sum(v.expired for v in idem.values()),
            "duplicates_served": sum(v.duplicates_served for v in idem.values()),
        },
        **admin.stats(gov),
    }
    if s.json:
        s.output(summary)
        return
    for section, values in summary.items():
        if isinstance(values, dict):
            click.echo(f"{section}:")
            for key, value in values.items():
                click.echo(f"  {key.replace('_', ' ')}: {cell(value)}")
        else:
            click.echo(f"{section}: {values}")


# --- demo ------------------------------------------------------------------------------------


def _terminate(signum: int, frame: Any) -> None:
    # `docker stop` and CI runners send SIGTERM: unwind normally, so that the temporary server,
    # its directory and the scratch database are removed.
    raise SystemExit(128 + signum)


def _sqlite_demo_file(path: str) -> str:
    """The demo's SQLite DSN; a previous demo file at ``path`` is replaced, anything else kept."""
    import sqlite3

    target = Path(path).expanduser()
    if target.exists():
        try:
            with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as conn:
                found = conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'demo_student'"
                ).fetchone()[0]
        except sqlite3.Error:
            found = 0
        if not found:
            raise click.UsageError(
                f"{target} exists and is not a pygov demo database: choose another path"
            )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{target}"


def _ran_demo_before(dsn: str) -> bool:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT to_regclass('demo.student') IS NOT NULL").fetchone()
    return bool(row and row[0])


@contextmanager
def _scratch_database(dsn: str) -> Iterator[str]:
    """A new database on the server of ``dsn`` for the demo, dropped afterwards."""
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"pygov_demo_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise GovernanceError(
            "cannot create a scratch database for the demo (it needs CREATEDB); "
            "pass --in-place to run it in the given database instead",
            {"error": str(exc).strip().splitlines()[0]},
        ) from None
    click.echo(f"Running in a scratch database {name} (dropped afterwards)")
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@main.command()
@options(listing=False)
@click.option("--sqlite", "sqlite_path", help="Run the demo on this SQLite file instead.")
@click.option(
    "--in-place",
    is_flag=True,
    help="With --dsn: use that database itself instead of a scratch database on its server.",
)
@click.pass_context
def demo(ctx: click.Context, sqlite_path: str | None, in_place: bool) -> None:
    """Run the end-to-end demo and print its report; exit status 1 if a claim fails.

    With no database it starts an embedded PostgreSQL in a temporary directory (removed
    afterwards). With --dsn / PYGOV_DSN it runs in a scratch database created on that server and
    dropped afterwards (--in-place: in the given database, which must be a scratch one: the demo
    recreates schema demo and tampers with the audit trail). --sqlite PATH uses the fallback.
    """
    from pygov import demo as demo_module

    s = session()
    if sqlite_path and in_place:
        raise click.UsageError("--in-place goes with --dsn, not with --sqlite")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    with contextlib.ExitStack() as stack:
        if sqlite_path:
            dsn = _sqlite_demo_file(sqlite_path)
        elif s.dsn:
            kind, target = parse_dsn(s.require_dsn())
            if kind == "sqlite":
                dsn = _sqlite_demo_file(target) if target != ":memory:" else s.dsn
            else:
                dsn = s.dsn
                probe_postgres(dsn)
                if not in_place:
                    dsn = stack.enter_context(_scratch_database(dsn))
                elif _ran_demo_before(dsn):
                    raise click.UsageError(
                        "the demo already ran in this database and its governance records "
                        "would skew the report: use a fresh database, or drop --in-place"
                    )
        else:
            from pygov._embedded import EmbeddedPostgres

            click.echo("Starting an embedded PostgreSQL in a temporary directory...")
            started = time.perf_counter()
            server = stack.enter_context(EmbeddedPostgres({"max_connections": "200"}))
            dsn = server.dsn()
            click.echo(f"  (ready in {time.perf_counter() - started:.1f} s)")
        gov = stack.enter_context(pygov.connect(dsn, pool_max_size=32))
        result = demo_module.run(gov, click.echo)
    ctx.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
