"""``pygov demo``: a small school-finance and inventory system with governance switched on.

Each capability contributes one step module (``pygov/demo/step_*.py``) with a ``run(demo)``
function; :data:`STEPS` lists them in the order the report shows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pygov
from pygov.demo import schema


@dataclass
class Demo:
    """What a demo step gets: the governance object, and helpers to write SQL and report."""

    gov: pygov.Governance
    out: Callable[[str], None] = print
    timings: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Per step: (title, seconds, claims that failed in it), for the summary.
    report: list[tuple[str, float, int]] = field(default_factory=list)
    claims: int = 0

    @property
    def is_postgres(self) -> bool:
        return self.gov.backend == "postgresql"

    def table(self, name: str) -> str:
        """A demo table's name: ``demo.x`` in PostgreSQL, ``demo_x`` in SQLite."""
        return f"demo.{name}" if self.is_postgres else f"demo_{name}"

    def gtable(self, name: str) -> str:
        """A governance table's name on this backend."""
        return f"governance.{name}" if self.is_postgres else f"governance_{name}"

    def sql(self, statement: str, params: tuple[Any, ...] = (), conn: Any = None) -> list[Any]:
        """Run SQL written with ``?`` placeholders, in its own transaction unless ``conn``."""
        text = statement.replace("?", "%s") if self.is_postgres else statement
        if conn is not None:
            cur = conn.execute(text, params)
            return list(cur.fetchall()) if cur.description else []
        with self.gov.transaction() as tx:
            cur = tx.execute(text, params)
            return list(cur.fetchall()) if cur.description else []

    def say(self, text: str) -> None:
        self.out(f"  {text}")

    def check(self, condition: bool, text: str) -> None:
        """Report a claim the demo makes, and whether it held."""
        self.out(f"  {'✔' if condition else '✘'} {text}")
        self.claims += 1
        if not condition:
            self.failures.append(text)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.out(f"\n▶ {title}")
        started = time.perf_counter()
        failed_before = len(self.failures)
        try:
            yield
        except Exception as exc:
            # A crashed step is a failed claim: report it and let the other steps run.
            self.check(False, f"{title}: crashed with {type(exc).__name__}: {exc}")
        finally:
            elapsed = time.perf_counter() - started
            self.timings.append((title, elapsed))
            self.report.append((title, elapsed, len(self.failures) - failed_before))
            self.out(f"  ({elapsed * 1000:.0f} ms)")


def steps() -> list[Callable[[Demo], None]]:
    """The demo's steps, in order (each capability adds its module here)."""
    from pygov.demo import (
        step_audit,
        step_authority,
        step_idempotency,
        step_quarantine,
        step_stock,
    )

    return [
        step_idempotency.run,
        step_audit.run,
        step_authority.run,
        step_quarantine.run,
        step_stock.run,
    ]


def run(gov: pygov.Governance, out: Callable[[str], None] = print) -> Demo:
    """Migrate, build the demo schema, run every step, print a summary. Returns the Demo."""
    demo = Demo(gov, out)
    started = time.perf_counter()
    with demo.step("Migrate the governance schema and build the demo tables"):
        report = gov.migrate()
        demo.say(f"migrations applied: {', '.join(report.applied) or 'none pending'}")
        schema.create(demo)
    for step in steps():
        try:
            step(demo)
        except Exception as exc:  # raised outside its `with demo.step(...)` blocks
            demo.check(False, f"{step.__module__}: crashed with {type(exc).__name__}: {exc}")
    total = time.perf_counter() - started
    summary(demo, total)
    return demo


def summary(demo: Demo, total: float) -> None:
    """The closing report: one line per step with its time and outcome, then the verdict."""
    out = demo.out
    width = min(max((len(title) for title, _, _ in demo.report), default=10), 72)
    out("\nSummary")
    for title, elapsed, failed in demo.report:
        name = title if len(title) <= width else title[: width - 1] + "…"
        verdict = "ok" if not failed else f"FAILED ({failed})"
        out(f"  {name.ljust(width)}  {elapsed:6.2f} s  {verdict}")
    held = demo.claims - len(demo.failures)
    out(
        f"\nDone in {total:.1f} s on {demo.gov.backend}: {held} of {demo.claims} claim(s) held, "
        f"{len(demo.failures)} failed."
    )
    for text in demo.failures:
        out(f"  ✘ {text}")
