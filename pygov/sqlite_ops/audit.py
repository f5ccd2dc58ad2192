"""The audit trail on SQLite: the semantics of sql/20_audit.sql, under BEGIN IMMEDIATE.

:func:`write_audit` is what other SQLite operations call, inside their transaction, to leave an
audit row with the connection's governance context.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pygov.errors import ValidationError

if TYPE_CHECKING:
    from pygov._core import Row
    from pygov._sqlite import SqliteConnection


def _now() -> str:
    from pygov._sqlite import now_text

    return now_text()


def dumps(value: Any) -> str | None:
    """JSON text as stored in SQLite (compact, keys kept in the order given)."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text: Any) -> Any:
    return None if text is None else json.loads(text)


def changed_fields(before: Any, after: Any, ignore: tuple[str, ...] = ()) -> list[str] | None:
    """The top-level keys whose values differ, sorted; None unless both sides are objects."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in ignore and before.get(k) != after.get(k))


def check_text(field: str, value: Any, max_length: int, required: bool) -> None:
    """GV002 for a bad text argument, as governance._audit_check_text does."""
    if value is None:
        if required:
            raise ValidationError(f"{field} is required", {"field": field})
        return
    if (required and not str(value).strip()) or len(str(value)) > max_length:
        raise ValidationError(
            f"{field} must be 1 to {max_length} characters",
            {"field": field, "length": len(str(value)), "max_length": max_length},
        )


def _check_extra(extra: Any) -> None:
    if extra is not None and not isinstance(extra, dict):
        raise ValidationError(
            "extra must be a JSON object", {"field": "extra", "type": type(extra).__name__}
        )


def write_audit(
    conn: SqliteConnection,
    model_name: str | None,
    object_id: str | None,
    operation: str,
    *,
    source_service: str | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict[str, Any] | None = None,
    changed: list[str] | None = None,
) -> int:
    """Insert one audit row with the connection's governance context; returns its id.

    Call it inside the caller's transaction (the row commits or rolls back with it). ``changed``
    defaults to the keys that differ between ``before`` and ``after`` when both are dicts.
    """
    check_text("model_name", model_name, 255, False)
    check_text("object_id", object_id, 1000, False)
    check_text("operation", operation, 64, True)
    check_text("source_service", source_service, 255, False)
    _check_extra(extra)
    ctx = conn.gov_ctx
    if changed is None:
        changed = changed_fields(before, after)
    cur = conn.execute(
        "INSERT INTO governance_audit_trail (occurred_at, model_name, object_id, operation,"
        " source_service, user_name, db_role, ip_address, user_agent, request_id, before_data,"
        " after_data, changed_fields, extra) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
        (
            _now(),
            model_name,
            object_id,
            operation,
            source_service if source_service is not None else ctx.service,
            ctx.user,
            ctx.ip,
            ctx.user_agent,
            ctx.request_id,
            dumps(before),
            dumps(after),
            dumps(changed),
            dumps(extra) if extra else None,
        ),
    )
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


# --- explicit logging: one function per statement, (conn, args) -> rows ----------------------


def log_operation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    model, object_id, operation, service, before_json, after_json, extra_json, _ctx = args
    check_text("model_name", model, 255, True)
    _require_own_model(conn, model)
    new_id = write_audit(
        conn,
        model,
        object_id,
        operation,
        source_service=service,
        before=loads(before_json),
        after=loads(after_json),
        extra=loads(extra_json),
    )
    return [(new_id,)]


def _require_own_model(conn: SqliteConnection, model: Any) -> None:
    """Models of the governance schema are written by the governance functions only (as
    governance._require_own_model on PostgreSQL); violations and admin accesses, which change
    no object's state, may name any model."""
    if isinstance(model, str) and model.startswith("governance."):
        _require_superuser(conn, "recording a model of the governance schema")


def log_authority_violation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    service, model, operation, reason, extra_json, _ctx = args
    check_text("service", service, 255, True)
    check_text("operation", operation, 64, True)
    extra = loads(extra_json)
    _check_extra(extra)
    details = {"attempted_operation": operation, "reason": reason}
    merged = {**(extra or {}), **{k: v for k, v in details.items() if v is not None}}
    new_id = write_audit(
        conn, model, None, "AUTHORITY_VIOLATION", source_service=service, extra=merged
    )
    return [(new_id,)]


def log_admin_access(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    action, target, extra_json, _ctx = args
    check_text("action", action, 255, True)
    extra = loads(extra_json)
    _check_extra(extra)
    new_id = write_audit(
        conn, target, None, "ADMIN_ACCESS", extra={**(extra or {}), "action": action}
    )
    return [(new_id,)]


def log_gateway_operation(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    gateway, model, object_id, operation, extra_json, _ctx = args
    check_text("gateway", gateway, 255, True)
    check_text("model_name", model, 255, True)
    _require_own_model(conn, model)
    extra = loads(extra_json)
    _check_extra(extra)
    new_id = write_audit(
        conn,
        model,
        object_id,
        operation,
        source_service=gateway,
        extra={**(extra or {}), "gateway": gateway},
    )
    return [(new_id,)]


# --- automatic auditing by triggers ----------------------------------------------------------

_TRIGGER_KINDS = ("insert", "update", "delete")
_CONTEXT_VALUES = (
    "governance_ctx('service'), governance_ctx('user'), governance_ctx('ip'), "
    "governance_ctx('user_agent'), governance_ctx('request_id')"
)
_TRAIL_COLUMNS = (
    "occurred_at, model_name, object_id, operation, source_service, user_name, ip_address, "
    "user_agent, request_id"
)


def quote_ident(name: str) -> str:
    """An SQLite identifier, always quoted: names reach the generated SQL only through here."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parse_table_name(text: str) -> str:
    """The table a name written as in SQL designates: ``t``, ``"weird; name"``, ``main.t``."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while j < n:
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        buf.append('"')
                        j += 2
                        continue
                    break
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ValidationError("unterminated quoted identifier", {"table": text})
            parts.append("".join(buf))
            i = j + 1
        else:
            j = i
            while j < n and text[j] != ".":
                j += 1
            word = text[i:j].strip()
            if not word or not all(c.isalnum() or c in "_$" for c in word):
                raise ValidationError("invalid table name (quote it)", {"table": text})
            parts.append(word)
            i = j
        if i < n:
            if text[i] != ".":
                raise ValidationError("invalid table name (quote it)", {"table": text})
            i += 1
    if len(parts) == 2 and parts[0].lower() == "main":
        parts = parts[1:]
    if len(parts) != 1:
        raise ValidationError("SQLite tables have no schema other than main", {"table": text})
    return parts[0]


def _table(conn: SqliteConnection, text: str) -> str:
    name = parse_table_name(text)
    # SQLite identifiers, quoted or not, ignore ASCII case (as NOCASE does): "ORDERS" is the
    # table created as Orders, and the stored spelling is the one the triggers are named after.
    found = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
        (name,),
    ).fetchone()
    if found is None:
        raise ValidationError("no such table", {"table": text})
    name = str(found[0])
    if name.startswith(("governance_", "sqlite_")):
        raise ValidationError("governance tables cannot be audited by triggers", {"table": name})
    return name


def _columns(conn: SqliteConnection, table: str) -> tuple[list[str], list[str]]:
    """The table's columns, and its primary key columns in key order."""
    info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (table,)).fetchall()
    columns = [row[0] for row in info]
    keys = [row[0] for row in sorted((r for r in info if r[1] > 0), key=lambda r: r[1])]
    return columns, keys


def _json_row(alias: str, columns: list[str]) -> str:
    # BLOBs cannot go into JSON: they are recorded as hex. An infinite REAL would be written as
    # -Inf (invalid JSON) by older SQLite versions and as 9.0e+999 by newer ones: it is recorded
    # as the string PostgreSQL's to_jsonb gives a float8 infinity.
    parts = []
    for col in columns:
        ref = f"{alias}.{quote_ident(col)}"
        parts.append(
            f"{quote_literal(col)}, CASE typeof({ref}) WHEN 'blob' THEN hex({ref})"
            f" WHEN 'real' THEN CASE {ref} WHEN 9e999 THEN 'Infinity'"
            f" WHEN -9e999 THEN '-Infinity' ELSE {ref} END ELSE {ref} END"
        )
    return f"json_object({', '.join(parts)})" if parts else "json_object()"


def _object_id_sql(alias: str, keys: list[str]) -> str:
    if not keys:
        return "NULL"
    if len(keys) == 1:
        return f"CAST({alias}.{quote_ident(keys[0])} AS TEXT)"
    escaped = [
        f"replace(replace(coalesce(CAST({alias}.{quote_ident(k)} AS TEXT), ''), '%', '%25'), "
        "':', '%3A')"
        for k in keys
    ]
    return " || ':' || ".join(escaped)


def trigger_sql(
    table: str, model: str, columns: list[str], keys: list[str], ignore: list[str]
) -> dict[str, str]:
    """The CREATE TRIGGER statement of each audit trigger of a table."""
    t, m = quote_ident(table), quote_literal(model)
    watched = sorted((c for c in columns if c not in ignore), key=lambda c: c.encode())
    differs = [f"NEW.{quote_ident(c)} IS NOT OLD.{quote_ident(c)}" for c in watched]
    changed = " UNION ALL ".join(
        f"SELECT {quote_literal(c)} AS c WHERE NEW.{quote_ident(c)} IS NOT OLD.{quote_ident(c)}"
        for c in watched
    )

    def name(kind: str) -> str:
        return quote_ident(f"pygov_audit_{kind}_{table}")

    insert_into = f"INSERT INTO governance_audit_trail ({_TRAIL_COLUMNS}"
    return {
        "insert": (
            f"CREATE TRIGGER {name('insert')} AFTER INSERT ON {t} BEGIN {insert_into}, "
            f"after_data) VALUES (governance_now(), {m}, {_object_id_sql('NEW', keys)}, "
            f"'CREATE', {_CONTEXT_VALUES}, {_json_row('NEW', columns)}); END"
        ),
        "update": (
            f"CREATE TRIGGER {name('update')} AFTER UPDATE ON {t} "
            f"WHEN {' OR '.join(differs) or '0'} BEGIN {insert_into}, before_data, after_data, "
            f"changed_fields) VALUES (governance_now(), {m}, {_object_id_sql('NEW', keys)}, "
            f"'UPDATE', {_CONTEXT_VALUES}, {_json_row('OLD', columns)}, "
            f"{_json_row('NEW', columns)}, "
            f"(SELECT json_group_array(c) FROM ({changed or 'SELECT NULL AS c WHERE 0'}))); END"
        ),
        "delete": (
            f"CREATE TRIGGER {name('delete')} AFTER DELETE ON {t} BEGIN {insert_into}, "
            f"before_data) VALUES (governance_now(), {m}, {_object_id_sql('OLD', keys)}, "
            f"'DELETE', {_CONTEXT_VALUES}, {_json_row('OLD', columns)}); END"
        ),
    }


def _installed_triggers(conn: SqliteConnection, table: str) -> dict[str, str]:
    names = {f"pygov_audit_{kind}_{table}": kind for kind in _TRIGGER_KINDS}
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", (table,)
    ).fetchall()
    return {names[n]: sql for n, sql in rows if n in names}


def _drop_triggers(conn: SqliteConnection, table: str) -> int:
    installed = _installed_triggers(conn, table)
    for kind in installed:
        conn.execute(f"DROP TRIGGER {quote_ident(f'pygov_audit_{kind}_{table}')}")
    return len(installed)


def _audited_row(conn: SqliteConnection, table: str) -> Row:
    rec = conn.execute(
        "SELECT table_name, model_name, key_columns, ignore_columns, enabled_at, enabled_by"
        " FROM governance_audited_table WHERE table_name = ?",
        (table,),
    ).fetchone()
    installed = len(_installed_triggers(conn, table)) == len(_TRIGGER_KINDS)
    return (rec[0], rec[1], loads(rec[2]), loads(rec[3]), rec[4], rec[5], installed)


def enable(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table_text, ignore, model_name, key_columns, _ctx = args
    table = _table(conn, table_text)
    columns, pk = _columns(conn, table)
    ignore_list = sorted(set(ignore or ()))
    unknown = [c for c in [*ignore_list, *(key_columns or ())] if c not in columns]
    if unknown:
        raise ValidationError("no such column in the table", {"table": table, "columns": unknown})
    keys = list(key_columns) if key_columns is not None else pk
    model = model_name if model_name is not None else table
    check_text("model_name", model, 255, True)
    _require_own_model(conn, model)
    wanted = trigger_sql(table, model, columns, keys, ignore_list)
    old = conn.execute(
        "SELECT model_name, key_columns, ignore_columns FROM governance_audited_table"
        " WHERE table_name = ?",
        (table,),
    ).fetchone()
    if old == (model, dumps(keys), dumps(ignore_list)) and _installed_triggers(conn, table) == {
        kind: sql for kind, sql in wanted.items()
    }:
        return [_audited_row(conn, table)]
    conn.execute(
        "INSERT INTO governance_audited_table (table_name, model_name, key_columns,"
        " ignore_columns, enabled_at, enabled_by) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (table_name) DO UPDATE SET model_name = excluded.model_name,"
        " key_columns = excluded.key_columns, ignore_columns = excluded.ignore_columns,"
        " enabled_at = excluded.enabled_at, enabled_by = excluded.enabled_by",
        (table, model, dumps(keys), dumps(ignore_list), _now(), conn.gov_ctx.user),
    )
    _drop_triggers(conn, table)
    for sql in wanted.values():
        conn.execute(sql)
    write_audit(
        conn,
        model,
        None,
        "AUDIT_ENABLED",
        extra={"table": table, "key_columns": keys, "ignore_columns": ignore_list},
    )
    return [_audited_row(conn, table)]


def disable(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    table_text, _ctx = args
    table = _table(conn, table_text)
    old = conn.execute(
        "SELECT model_name FROM governance_audited_table WHERE table_name = ?", (table,)
    ).fetchone()
    conn.execute("DELETE FROM governance_audited_table WHERE table_name = ?", (table,))
    dropped = _drop_triggers(conn, table)
    if old is None and dropped == 0:
        return [(False,)]
    write_audit(conn, old[0] if old else table, None, "AUDIT_DISABLED", extra={"table": table})
    return [(True,)]


def audited_tables(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT a.table_name FROM governance_audited_table a JOIN sqlite_master m"
            " ON m.type = 'table' AND m.name = a.table_name ORDER BY a.table_name"
        )
    ]
    return [_audited_row(conn, name) for name in names]


# --- reading the trail ---------------------------------------------------------------------

_RECORD_COLUMNS = (
    "id, occurred_at, NULL, model_name, object_id, operation, source_service, user_name, "
    "db_role, ip_address, user_agent, request_id, before_data, after_data, changed_fields, extra"
)


def _record(row: Any) -> Row:
    return (*row[:12], *(loads(v) for v in row[12:]))


def history(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    model, object_id, limit, before_id = args
    if limit is None or not 1 <= limit <= 10000:
        raise ValidationError("limit must be between 1 and 10000", {"field": "limit"})
    rows = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM governance_audit_trail"
        " WHERE model_name = ? AND object_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        (model, object_id, before_id if before_id is not None else 2**63 - 1, limit),
    ).fetchall()
    return [_record(r) for r in rows]


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def object_at(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    model, object_id, moment = args
    at = _utc_text(moment)
    rows = conn.execute(
        "SELECT id, operation, after_data FROM governance_audit_trail"
        " WHERE model_name = ? AND object_id = ? AND occurred_at <= ?"
        " AND (after_data IS NOT NULL OR operation = 'DELETE')"
        " UNION ALL SELECT id, operation, NULL FROM governance_audit_trail"
        " WHERE model_name = ? AND object_id IS NULL AND operation = 'TRUNCATE'"
        " AND occurred_at <= ? ORDER BY 1",
        (model, object_id, at, model, at),
    ).fetchall()
    state: Any = None
    for _id, operation, after_json in rows:
        after = loads(after_json)
        if operation in ("DELETE", "TRUNCATE"):
            state = None
        elif isinstance(state, dict) and isinstance(after, dict) and operation != "CREATE":
            state = {**state, **after}
        else:
            state = after
    return [(state,)]


# --- retention -----------------------------------------------------------------------------


def _require_superuser(conn: SqliteConnection, action: str) -> None:
    from pygov.errors import AuthorityViolationError

    if not conn.gov_ctx.superuser:
        raise AuthorityViolationError(
            f"{action} requires the governance_admin role (on SQLite: superuser=True)",
            {"action": action},
        )


def drop_before(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    """Delete the rows of every whole month (UTC) before ``month``'s."""
    month, _ctx = args
    _require_superuser(conn, "drop_audit_before")
    cutoff = _utc_text(month)[:7] + "-01T00:00:00.000000+00:00"
    if cutoff > _now()[:7] + "-01T00:00:00.000000+00:00":
        raise ValidationError(
            "month must be at most the current month: the current month cannot be dropped",
            {"month": cutoff},
        )
    months = conn.execute(
        "SELECT substr(occurred_at, 1, 7) AS m, min(occurred_at), count(*)"
        " FROM governance_audit_trail WHERE occurred_at < ? GROUP BY m ORDER BY m",
        (cutoff,),
    ).fetchall()
    # The guard is the one trigger in the way: lift it for this statement only; DDL is
    # transactional in SQLite, so it is back whatever happens.
    guard = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger'"
        " AND name = 'governance_audit_trail_no_delete'"
    ).fetchone()
    conn.execute("DROP TRIGGER governance_audit_trail_no_delete")
    conn.execute("DELETE FROM governance_audit_trail WHERE occurred_at < ?", (cutoff,))
    conn.execute(guard[0])
    conn.execute(
        "INSERT INTO governance_audit_retention (cutoff, dropped_at, dropped_by) VALUES (?, ?, ?)",
        (cutoff, _now(), conn.gov_ctx.user),
    )
    write_audit(
        conn,
        "governance.audit_trail",
        None,
        "RETENTION",
        extra={
            "cutoff": cutoff,
            "partitions": [m for m, _, _ in months],
            "rows_dropped": sum(c for _, _, c in months),
        },
    )
    return [(m, m + "-01T00:00:00+00:00", count) for m, _first, count in months]


# --- seals ---------------------------------------------------------------------------------

_DIGEST = (
    "sha256(json_array(id, occurred_at, model_name, object_id, operation, source_service,"
    " user_name, db_role, ip_address, user_agent, request_id, before_data, after_data,"
    " changed_fields, extra))"
)
_GENESIS = "0" * 64


def _seal_rows(conn: SqliteConnection, from_id: int, to_id: int, month: str) -> list[Any]:
    return conn.execute(
        f"SELECT id, {_DIGEST} FROM governance_audit_trail"
        " WHERE id > ? AND id <= ? AND substr(occurred_at, 1, 7) = ? ORDER BY id",
        (from_id, to_id, month),
    ).fetchall()


def _seal_hash(
    conn: SqliteConnection, previous: str, month: str, from_id: int, to_id: int, rows: list[Any]
) -> str:
    header = "|".join([previous, month, str(from_id), str(to_id), str(len(rows)), ""])
    text = header + "".join(digest for _id, digest in rows)
    return str(conn.execute("SELECT sha256(?)", (text,)).fetchone()[0])


def seal(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    """Seal every row written since the last seal: one writer at a time on SQLite, so every
    row below the highest id has committed."""
    last = conn.execute(
        "SELECT to_id, hash FROM governance_audit_seal ORDER BY id DESC LIMIT 1"
    ).fetchone()
    from_id, previous = (last[0], last[1]) if last else (0, _GENESIS)
    to_id = conn.execute("SELECT coalesce(max(id), 0) FROM governance_audit_trail").fetchone()[0]
    if to_id <= from_id:
        return []
    months = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT substr(occurred_at, 1, 7) FROM governance_audit_trail"
            " WHERE id > ? AND id <= ? ORDER BY 1",
            (from_id, to_id),
        )
    ]
    out: list[Row] = []
    for month in months:
        rows = _seal_rows(conn, from_id, to_id, month)
        digest = _seal_hash(conn, previous, month, from_id, to_id, rows)
        cur = conn.execute(
            "INSERT INTO governance_audit_seal (sealed_at, sealed_by, month, from_id, to_id,"
            " row_count, first_id, last_id, row_ids, row_digests, previous_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _now(),
                conn.gov_ctx.user,
                month,
                from_id,
                to_id,
                len(rows),
                rows[0][0],
                rows[-1][0],
                dumps([i for i, _ in rows]),
                dumps([d[:16] for _, d in rows]),
                previous,
                digest,
            ),
        )
        out.append(
            (
                cur.lastrowid,
                month + "-01T00:00:00+00:00",
                len(rows),
                rows[0][0],
                rows[-1][0],
                digest,
            )
        )
        previous = digest
    return out


def first_difference(
    ids: list[int], digests: list[Any], now_ids: list[int], now_digests: list[Any]
) -> tuple[int | None, str]:
    """The first row that differs between a seal and the trail now, and how."""
    for i in range(max(len(ids), len(now_ids))):
        old = ids[i] if i < len(ids) else None
        new = now_ids[i] if i < len(now_ids) else None
        if old is None or (new is not None and new < old):
            return new, "row inserted into a sealed range"
        if new is None or new > old:
            return old, "sealed row deleted"
        if digests[i] != now_digests[i]:
            return old, "sealed row modified"
    return None, "seal does not match its rows (the seal itself was altered)"


def verify(conn: SqliteConnection, args: tuple[Any, ...]) -> list[Row]:
    cutoff = conn.execute("SELECT max(cutoff) FROM governance_audit_retention").fetchone()[0]
    cutoff_month = cutoff[:7] if cutoff else None
    previous = _GENESIS
    seals = rows_checked = 0
    for seal_id, month, from_id, to_id, ids, digests, prev, stored in conn.execute(
        "SELECT id, month, from_id, to_id, row_ids, row_digests, previous_hash, hash"
        " FROM governance_audit_seal ORDER BY id"
    ).fetchall():
        seals += 1
        if prev != previous:
            return [
                (
                    False,
                    seals,
                    rows_checked,
                    seal_id,
                    None,
                    "seal chain broken: previous_hash does not match the seal before",
                )
            ]
        previous = stored
        if cutoff_month is not None and month < cutoff_month:
            continue
        rows = _seal_rows(conn, from_id, to_id, month)
        rows_checked += len(rows)
        if _seal_hash(conn, prev, month, from_id, to_id, rows) != stored:
            row_id, problem = first_difference(
                loads(ids), loads(digests), [i for i, _ in rows], [d[:16] for _, d in rows]
            )
            return [(False, seals, rows_checked, seal_id, row_id, problem)]
    # A row forged into a sealed id range, in a month that range has no seal for.
    forged = conn.execute(
        "SELECT a.id, s.id FROM governance_audit_trail a JOIN governance_audit_seal s"
        " ON a.id > s.from_id AND a.id <= s.to_id"
        " WHERE (? IS NULL OR substr(a.occurred_at, 1, 7) >= ?)"
        " AND NOT EXISTS (SELECT 1 FROM governance_audit_seal s2 WHERE s2.from_id = s.from_id"
        " AND s2.month = substr(a.occurred_at, 1, 7)) ORDER BY a.id, s.id LIMIT 1",
        (cutoff_month, cutoff_month),
    ).fetchone()
    if forged is not None:
        return [
            (False, seals, rows_checked, forged[1], forged[0], "row inserted into a sealed range")
        ]
    return [(True, seals, rows_checked, None, None, None)]
