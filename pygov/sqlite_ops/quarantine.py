"""Quarantine on SQLite: the semantics of sql/40_quarantine.sql, under BEGIN IMMEDIATE.

Differences, because SQLite has no schemas and no roles: a model name is the table's name as
stored, and ``governance_admin`` is a context with ``superuser=True``. Identifiers are checked
against the catalogue (``sqlite_master``, ``pragma_table_info``) and then quoted, never pasted.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pygov.errors import AuthorityViolationError, QuarantineError, ValidationError
from pygov.sqlite_ops.audit import (
    _json_row,
    _object_id_sql,
    loads,
    parse_table_name,
    quote_ident,
    quote_literal,
    write_audit,
)

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection

_COLUMNS = (
    "id, model_name, object_id, corruption_type, status, reason, original_data, quarantined_by, "
    "quarantined_at, reviewed_by, reviewed_at, resolved_by, resolved_at, resolution, "
    "resolution_notes"
)
_NAMES = tuple(c.strip() for c in _COLUMNS.split(","))
_RESOLUTIONS = ("REPAIRED", "DISCARDED", "FALSE_POSITIVE")
# json_object() takes at most 127 arguments (SQLITE_MAX_FUNCTION_ARG): two per column.
_MAX_SNAPSHOT_COLUMNS = 63


def _now() -> str:
    from pygov._sqlite import now_text

    return now_text()


def _row(rec: Any) -> Row:
    values = list(rec)
    values[6] = loads(values[6])
    return tuple(values)


def _as_dict(row: Row, *, with_data: bool) -> dict[str, Any]:
    d = dict(zip(_NAMES, row, strict=True))
    if not with_data:
        del d["original_data"]
    return d


def _actor(conn: SqliteConnection) -> str | None:
    return conn.gov_ctx.user


def _audit(conn: SqliteConnection, action: str, before: Row | None, after: Row) -> None:
    write_audit(
        conn,
        "governance.quarantine_record",
        str(after[0]),
        "CREATE" if before is None else "UPDATE",
        before=None if before is None else _as_dict(before, with_data=False),
        after=_as_dict(after, with_data=before is None),
        extra={
            "action": action,
            "quarantined_model": after[1],
            "quarantined_object_id": after[2],
            "corruption_type": after[3],
        },
    )


def _text(field: str, value: Any, max_length: int) -> None:
    if value is None or not str(value).strip() or len(str(value)) > max_length:
        raise ValidationError(
            f"{field} must be 1 to {max_length} characters",
            {"field": field, "length": None if value is None else len(str(value))},
        )


def _check_type(conn: SqliteConnection, code: Any) -> None:
    known = [r[0] for r in conn.execute("SELECT code FROM governance_corruption_type ORDER BY 1")]
    if code not in known:
        raise ValidationError(
            "unknown corruption type",
            {"field": "corruption_type", "corruption_type": code, "known": known},
        )


def _require_admin(conn: SqliteConnection, action: str) -> None:
    if not conn.gov_ctx.superuser:
        raise AuthorityViolationError(
            f"{action} requires the governance_admin role (on SQLite: superuser=True)",
            {"action": action},
        )


def _select(conn: SqliteConnection, record_id: int) -> Row | None:
    rec = conn.execute(
        f"SELECT {_COLUMNS} FROM governance_quarantine_record WHERE id = ?", (record_id,)
    ).fetchone()
    return None if rec is None else _row(rec)


# --- quarantine and the workflow ------------------------------------------------------------


def quarantine_data(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    model, object_id, corruption_type, reason, data_json, _ctx = args
    _text("model_name", model, 255)
    _text("object_id", object_id, 1000)
    _text("reason", reason, 10000)
    _check_type(conn, corruption_type)
    rec = conn.execute(
        f"INSERT INTO governance_quarantine_record (model_name, object_id, corruption_type,"
        " reason, original_data, quarantined_by, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (model_name, object_id, corruption_type) WHERE status <> 'RESOLVED'"
        f" DO NOTHING RETURNING {_COLUMNS}",
        (model, object_id, corruption_type, reason, data_json, _actor(conn), _now()),
    ).fetchone()
    if rec is not None:
        _audit(conn, "quarantine", None, _row(rec))
        return [(rec[0],)]
    # One writer at a time (BEGIN IMMEDIATE): the open record cannot vanish in between.
    (open_id,) = conn.execute(
        "SELECT id FROM governance_quarantine_record WHERE model_name = ? AND object_id = ?"
        " AND corruption_type = ? AND status <> 'RESOLVED'",
        (model, object_id, corruption_type),
    ).fetchone()
    return [(open_id,)]


def _lock(conn: SqliteConnection, record_id: int, action: str, from_statuses: set[str]) -> Row:
    """The record, if the workflow allows ``action`` from its status (BEGIN IMMEDIATE already
    holds the write lock); QuarantineError otherwise."""
    before = _select(conn, record_id)
    if before is None:
        raise QuarantineError("no such quarantine record", {"id": record_id, "action": action})
    if before[4] not in from_statuses:
        raise QuarantineError(
            f"cannot {action} a quarantine record that is {before[4]}",
            {"id": record_id, "status": before[4], "action": action, "resolution": before[13]},
        )
    return before


def start_review(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    record_id, _ctx = args
    before = _lock(conn, record_id, "start_review", {"QUARANTINED"})
    conn.execute(
        "UPDATE governance_quarantine_record SET status = 'UNDER_REVIEW', reviewed_by = ?,"
        " reviewed_at = ? WHERE id = ?",
        (_actor(conn), _now(), record_id),
    )
    after = _select(conn, record_id)
    assert after is not None
    _audit(conn, "start_review", before, after)
    return [after]


def resolve(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    record_id, notes, resolution, _ctx = args
    _require_admin(conn, "resolve_quarantine")
    _text("notes", notes, 10000)
    if resolution not in _RESOLUTIONS:
        raise ValidationError(
            "resolution must be REPAIRED, DISCARDED or FALSE_POSITIVE",
            {"field": "resolution", "resolution": resolution},
        )
    before = _lock(conn, record_id, "resolve", {"QUARANTINED", "UNDER_REVIEW"})
    conn.execute(
        "UPDATE governance_quarantine_record SET status = 'RESOLVED', resolution = ?,"
        " resolution_notes = ?, resolved_by = ?, resolved_at = ? WHERE id = ?",
        (resolution, notes, _actor(conn), _now(), record_id),
    )
    after = _select(conn, record_id)
    assert after is not None
    _audit(conn, "resolve", before, after)
    return [after]


def get(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    (record_id,) = args
    rec = _select(conn, record_id)
    return [] if rec is None else [rec]


def list_records(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    status, model, corruption_type, limit = args
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM governance_quarantine_record"
        " WHERE (:status IS NULL OR (:status = 'OPEN' AND status <> 'RESOLVED')"
        "        OR status = :status)"
        " AND (:model IS NULL OR model_name = :model)"
        " AND (:type IS NULL OR corruption_type = :type)"
        " ORDER BY id LIMIT coalesce(:limit, -1)",
        {"status": status, "model": model, "type": corruption_type, "limit": limit},
    ).fetchall()
    return [_row(r) for r in rows]


# --- tables, columns and row identity -------------------------------------------------------


def _table(conn: SqliteConnection, name: str, field: str, *, or_view: bool = False) -> str:
    """The table a name designates, as stored: the name read as SQL (``t``, ``"odd name"``),
    else taken as the exact name, like governance.resolve_relation; GV002 when none. With
    ``or_view`` a view will do too (a parent is only read, as on PostgreSQL)."""
    candidates = [name]
    with suppress(ValidationError):  # not SQL name syntax: only the raw name
        candidates.insert(0, parse_table_name(name))
    for candidate in candidates:
        found = conn.execute(
            "SELECT name FROM sqlite_master WHERE (type = 'table' OR (? AND type = 'view'))"
            " AND name = ? COLLATE NOCASE",
            (or_view, candidate),
        ).fetchone()
        if found is not None:
            return str(found[0])
    raise ValidationError(f"{field} names no table", {"field": field, "table": name})


def _columns(conn: SqliteConnection, table: str) -> list[tuple[str, str, int]]:
    """(name, declared type, position in the primary key or 0) for every column."""
    return [
        (str(r[0]), str(r[1] or ""), int(r[2]))
        for r in conn.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table,))
    ]


def _column(columns: list[tuple[str, str, int]], name: str, field: str, table: str) -> str:
    for col, _type, _pk in columns:
        if col.lower() == name.lower():
            return col
    raise ValidationError(
        f"{field} names no column of the table", {"field": field, "column": name, "table": table}
    )


def _key_columns(columns: list[tuple[str, str, int]], table: str, field: str) -> list[str]:
    keys = [col for col, _type, pk in sorted(columns, key=lambda c: c[2]) if pk > 0]
    if not keys:
        raise ValidationError(
            f"{field} has no primary key, so its rows cannot be identified",
            {"field": field, "table": table},
        )
    return keys


def _snapshot_sql(columns: list[tuple[str, str, int]], table: str) -> str:
    if len(columns) > _MAX_SNAPSHOT_COLUMNS:
        raise ValidationError(
            f"SQLite can snapshot tables of at most {_MAX_SNAPSHOT_COLUMNS} columns",
            {"table": table, "columns": len(columns)},
        )
    return _json_row("c", [col for col, _type, _pk in columns])


def _scan(
    conn: SqliteConnection,
    scanner: str,
    table: str,
    columns: list[tuple[str, str, int]],
    keys: list[str],
    corruption_type: str,
    where_sql: str,
    reason_sql: str,
) -> list[Row]:
    """The one set-based INSERT ... SELECT behind every scanner, and one audit row listing the
    records it created (see governance._quarantine_scan)."""
    try:
        record_ids = [
            row[0]
            for row in conn.execute(
                "INSERT INTO governance_quarantine_record (model_name, object_id, corruption_type,"
                " reason, original_data, quarantined_by, quarantined_at)"
                " SELECT :model, f.object_id, :type, f.reason, f.snapshot, :actor, :now FROM ("
                f"   SELECT {_object_id_sql('c', keys)} AS object_id,"
                f"          {_snapshot_sql(columns, table)} AS snapshot, {reason_sql} AS reason"
                f"     FROM {quote_ident(table)} AS c WHERE {where_sql}) AS f"
                " WHERE NOT EXISTS (SELECT 1 FROM governance_quarantine_record o"
                "   WHERE o.model_name = :model AND o.object_id = f.object_id"
                "     AND o.corruption_type = :type AND o.resolution = 'FALSE_POSITIVE')"
                " ON CONFLICT (model_name, object_id, corruption_type) WHERE status <> 'RESOLVED'"
                " DO NOTHING RETURNING id",
                {"model": table, "type": corruption_type, "actor": _actor(conn), "now": _now()},
            )
        ]
    except sqlite3.IntegrityError as exc:
        if "length(object_id)" in str(exc):
            raise ValidationError(
                f"a row of {table} has a key whose text is empty or over 1,000 characters: "
                "it cannot be recorded, so the scan stored nothing",
                {
                    "table": table,
                    "field": "object_id",
                    "reason": "object_id_length",
                    "max_length": 1000,
                },
            ) from exc
        if "governance_quarantine_record.object_id" not in str(exc):
            raise
        # PostgreSQL forbids NULL in a primary key; SQLite allows it outside INTEGER PRIMARY KEY.
        raise ValidationError(
            f"{table} has rows whose primary key is NULL, which SQLite allows: they cannot be "
            "identified, so nothing was quarantined; give those rows a key first",
            {"table": table, "reason": "null_primary_key", "key_columns": keys},
        ) from exc
    if record_ids:
        write_audit(
            conn,
            "governance.quarantine_record",
            None,
            "CREATE",
            extra={
                "action": "scan",
                "scanner": scanner,
                "quarantined_model": table,
                "corruption_type": corruption_type,
                "count": len(record_ids),
                "record_id_ranges": _id_ranges(record_ids),
            },
        )
    return [(len(record_ids),)]


def _id_ranges(ids: list[int]) -> list[list[int]]:
    """[first, last] pairs of consecutive ids, as governance._quarantine_scan writes them."""
    ranges: list[list[int]] = []
    for record_id in sorted(ids):
        if ranges and ranges[-1][1] == record_id - 1:
            ranges[-1][1] = record_id
        else:
            ranges.append([record_id, record_id])
    return ranges


def _prefix(reason: str | None, detail: str) -> str:
    return (f"{reason}: " if reason else "") + detail


def _scan_orphans(
    conn: SqliteConnection,
    child: str,
    fk: str,
    parent: str,
    parent_column: str,
    corruption_type: str,
    reason: str | None,
) -> list[Row]:
    _check_type(conn, corruption_type)
    child_table = _table(conn, child, "child_table")
    parent_table = _table(conn, parent, "parent_table", or_view=True)
    columns = _columns(conn, child_table)
    keys = _key_columns(columns, child_table, "child_table")
    fk_col = _column(columns, fk, "fk_column", child_table)
    parent_col = _column(_columns(conn, parent_table), parent_column, "parent_column", parent)
    fk_sql = f"c.{quote_ident(fk_col)}"
    where = (
        f"{fk_sql} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {quote_ident(parent_table)} AS p"
        f" WHERE p.{quote_ident(parent_col)} = {fk_sql})"
    )
    reason_sql = (
        f"{quote_literal(_prefix(reason, fk_col + ' = '))} || CAST({fk_sql} AS TEXT) || "
        f"{quote_literal(' has no match in ' + parent_table + '.' + parent_col)}"
    )
    return _scan(
        conn, "scan_orphans", child_table, columns, keys, corruption_type, where, reason_sql
    )


def _scan_negative(
    conn: SqliteConnection, name: str, column: str, corruption_type: str, reason: str | None
) -> list[Row]:
    _check_type(conn, corruption_type)
    table = _table(conn, name, "table")
    columns = _columns(conn, table)
    keys = _key_columns(columns, table, "table")
    col = _column(columns, column, "column", table)
    declared = next(t for c, t, _pk in columns if c == col).upper()
    # SQLite's type affinity rules: these declared types hold text or bytes, not numbers.
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT", "BLOB")):
        raise ValidationError(
            "column must be numeric", {"field": "column", "column": col, "type": declared}
        )
    reason_sql = (
        f"{quote_literal(_prefix(reason, col + ' = '))} || CAST(c.{quote_ident(col)} AS TEXT) || "
        "' is below zero'"
    )
    return _scan(
        conn,
        "scan_negative",
        table,
        columns,
        keys,
        corruption_type,
        f"c.{quote_ident(col)} < 0",
        reason_sql,
    )


def scan_orphans(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    child, fk, parent, parent_column, corruption_type, reason, _ctx = args
    return _scan_orphans(conn, child, fk, parent, parent_column, corruption_type, reason)


def scan_negative(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, column, corruption_type, reason, _ctx = args
    return _scan_negative(conn, table, column, corruption_type, reason)


def orphaned_journal_entry(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, fk, parent, parent_column, _ctx = args
    return _scan_orphans(
        conn, table, fk, parent, parent_column, "ORPHANED_RECORD", "orphaned journal entry"
    )


def negative_stock(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table, column, _ctx = args
    return _scan_negative(conn, table, column, "NEGATIVE_STOCK", "negative stock")


# --- the guard --------------------------------------------------------------------------------


def _guard_names(table: str) -> tuple[str, str, str]:
    return (
        quote_ident(f"governance_quarantine_guard_update_{table}"),
        quote_ident(f"governance_quarantine_guard_delete_{table}"),
        quote_ident(f"governance_quarantine_guard_insert_{table}"),
    )


def enable_guard(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    name, _ctx = args
    _require_admin(conn, "enable_quarantine_guard")
    table = _table(conn, name, "table")
    keys = _key_columns(_columns(conn, table), table, "table")
    # RAISE takes a literal message: the context it can carry is what is known now (the row's
    # object id and record ids, which PostgreSQL's guard adds, are not).
    message = (
        "GV005: the row is quarantined: writes are refused until its quarantine record is resolved"
    )
    # INSERT too: INSERT OR REPLACE deletes the row it replaces without firing DELETE triggers
    # (unless PRAGMA recursive_triggers is on), so a row inserted with a quarantined key is
    # refused, and the ABORT takes the deletion back. AFTER, not BEFORE: an INSERT OR IGNORE
    # or ON CONFLICT DO NOTHING that inserts nothing, and a duplicate key, behave as without
    # the guard.
    events = (("BEFORE", "UPDATE", "OLD"), ("BEFORE", "DELETE", "OLD"), ("AFTER", "INSERT", "NEW"))
    for trigger, (timing, event, row) in zip(_guard_names(table), events, strict=True):
        context = json.dumps({"model_name": table, "operation": event}, ensure_ascii=False)
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.execute(
            f"CREATE TRIGGER {trigger} {timing} {event} ON {quote_ident(table)} FOR EACH ROW"
            " WHEN EXISTS (SELECT 1 FROM governance_quarantine_record q"
            f"   WHERE q.model_name = {quote_literal(table)}"
            f"     AND q.object_id = {_object_id_sql(row, keys)} AND q.status <> 'RESOLVED')"
            f" BEGIN SELECT RAISE(ABORT, {quote_literal(message + ' ' + context)}); END"
        )
    return [(True,)]


def disable_guard(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    name, _ctx = args
    _require_admin(conn, "disable_quarantine_guard")
    table = _table(conn, name, "table")
    for trigger in _guard_names(table):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    return [(False,)]


# --- corruption types -------------------------------------------------------------------------


def add_corruption_type(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    code, description, _ctx = args
    _require_admin(conn, "add_corruption_type")
    valid = (
        isinstance(code, str)
        and 1 <= len(code) <= 50
        and "A" <= code[0] <= "Z"
        and all(ch == "_" or "A" <= ch <= "Z" or "0" <= ch <= "9" for ch in code)
    )
    if not valid:
        raise ValidationError(
            "a corruption type is 1 to 50 capital letters, digits or _, starting with a letter",
            {"field": "code", "code": code},
        )
    _text("description", description, 1000)
    rec = conn.execute(
        "INSERT INTO governance_corruption_type (code, description, created_by, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (code) DO NOTHING"
        " RETURNING code, description, created_by, created_at",
        (code, description, _actor(conn), _now()),
    ).fetchone()
    if rec is None:
        return [(False,)]
    write_audit(
        conn,
        "governance.corruption_type",
        code,
        "CREATE",
        after=dict(zip(("code", "description", "created_by", "created_at"), rec, strict=True)),
    )
    return [(True,)]


def corruption_types(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    return list(
        conn.execute("SELECT code, description FROM governance_corruption_type ORDER BY code")
    )
