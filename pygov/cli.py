"""The ``pygov`` command: admin CLI for operators and DBAs, and the demo."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

import pygov
from pygov.errors import GovernanceError


def _dsn(dsn: str | None) -> str:
    value = dsn or os.environ.get("PYGOV_DSN")
    if not value:
        raise click.UsageError("no database given: pass --dsn or set PYGOV_DSN")
    return value


@click.group()
@click.option("--dsn", envvar="PYGOV_DSN", help="postgresql://... or sqlite:///path (PYGOV_DSN)")
@click.pass_context
def main(ctx: click.Context, dsn: str | None) -> None:
    """pygov: governance for business databases."""
    ctx.obj = {"dsn": dsn}


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply pending migrations and reload the governance functions."""
    gov = pygov.connect(_dsn(ctx.obj["dsn"]))
    try:
        report = gov.migrate()
    except GovernanceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        gov.close()
    click.echo(f"applied: {', '.join(report.applied) or 'nothing pending'}; functions reloaded")


@main.command()
@click.option("--sqlite", "sqlite_path", help="run the demo on this SQLite file instead")
@click.pass_context
def demo(ctx: click.Context, sqlite_path: str | None) -> None:
    """Run the end-to-end demo (embedded PostgreSQL unless --dsn, PYGOV_DSN or --sqlite)."""
    from pygov import demo as demo_module

    server: Any = None
    if sqlite_path:
        dsn = f"sqlite:///{sqlite_path}"
    elif ctx.obj["dsn"]:
        dsn = ctx.obj["dsn"]
    else:
        from pygov._embedded import EmbeddedPostgres

        click.echo("Starting an embedded PostgreSQL in a temporary directory...")
        server = EmbeddedPostgres({"max_connections": "200"})
        dsn = server.start()
    try:
        gov = pygov.connect(dsn, pool_max_size=32)
        try:
            result = demo_module.run(gov, click.echo)
        finally:
            gov.close()
    except GovernanceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    finally:
        if server is not None:
            server.stop()
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
