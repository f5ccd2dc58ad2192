"""Locks on SQLite: the transaction already holds the only lock there is.

The backend runs every governance operation inside ``BEGIN IMMEDIATE``: one writer at a time for
the whole file. By the time these functions run, the caller holds that lock, so an advisory lock
is granted at once and row locks need only check that the rows exist.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pygov.errors import ValidationError
from pygov.sqlite_ops.audit import parse_table_name

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection


def try_lock(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    return [(True,)]


def quote_identifier(name: str) -> str:
    """An SQLite identifier, quoted (only ever used for names found in the schema)."""
    return '"' + name.replace('"', '""') + '"'


def resolve_table(conn: SqliteConnection, table: str) -> str:
    """The SQLite table a name denotes: the name read as SQL (``t``, ``"Odd Name"``, as on
    PostgreSQL), else taken as it is, else ``schema_table`` for ``schema.table``. SQLite
    compares table names without regard to ASCII case, and so does this."""
    candidates = [table]
    with suppress(ValidationError):  # not SQL name syntax: the name as it is
        candidates.insert(0, parse_table_name(table))
    if "." in table:
        candidates.append(table.replace(".", "_", 1))
    for candidate in candidates:
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
            (candidate,),
        ).fetchone()
        if found is not None:
            return str(found[0])
    raise ValidationError("no such table", {"field": "table", "table": table})


def _key_column(conn: SqliteConnection, table: str, given: str, column: str | None) -> str:
    info = conn.execute(f"PRAGMA table_info({quote_identifier(table)})").fetchall()
    if column is None:
        primary = [row[1] for row in info if row[5] > 0]
        if len(primary) != 1:
            raise ValidationError(
                "the table has no single-column primary key: name the key column",
                {"field": "column", "table": given},
            )
        return str(primary[0])
    if column not in {row[1] for row in info}:
        raise ValidationError(
            "no such column", {"field": "column", "table": given, "column": column}
        )
    return column


def lock_rows(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, keys, column, _timeout, skip_missing = args
    name = resolve_table(conn, table)
    key_column = _key_column(conn, name, table, column)
    t, c = quote_identifier(name), quote_identifier(key_column)
    # json_each's values have no type affinity, so the column's affinity decides how a key
    # compares ('7' matches the integer 7), as it would in PostgreSQL after the cast.
    keys_json = json.dumps(sorted(set(keys)))
    locked = conn.execute(
        f"SELECT {c} FROM {t} WHERE {c} IN (SELECT value FROM json_each(?)) ORDER BY {c}",
        (keys_json,),
    ).fetchall()
    missing = [
        row[0]
        for row in conn.execute(
            f"SELECT k.value FROM json_each(?) AS k WHERE NOT EXISTS "
            f"(SELECT 1 FROM {t} WHERE {t}.{c} = k.value) ORDER BY k.value",
            (keys_json,),
        )
    ]
    if missing and not skip_missing:
        raise ValidationError(
            "some rows to lock do not exist",
            {
                "table": table,
                "column": key_column,
                "missing": missing[:20],
                "missing_count": len(missing),
            },
        )
    return [(str(row[0]),) for row in locked]
