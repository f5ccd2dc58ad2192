"""Running your own SQL on the connection a pygov block yields, whatever the backend."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import Backend


def run_sql(
    gov: Any, backend: Backend, conn: Any, text: str, params: tuple[Any, ...] = ()
) -> list[Any]:
    """Run ``text`` (``?`` placeholders) on ``conn``: psycopg, asyncpg (through the test's event
    loop) or sqlite3. Returns the rows as tuples."""
    if backend.name == "sqlite":
        return [tuple(r) for r in conn.execute(text, params).fetchall()]
    if backend.name == "pg":
        cur = conn.execute(text.replace("?", "%s"), params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []
    counter = itertools.count(1)
    numbered = re.sub(r"\?", lambda _: f"${next(counter)}", text)
    return [tuple(r) for r in gov._runner.run(conn.fetch(numbered, *params))]


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (observing another thread's state, not
    standing in for synchronisation); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
