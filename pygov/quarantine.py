"""``gov.quarantine``: isolate corrupt data, find it with set-based scans, resolve it by review.

A quarantine record names a row (``model_name`` = ``schema.table``, ``object_id`` = the text of
its primary key; for a composite key the parts joined by ``:``, see
:func:`pygov.audit.object_key`), why it is suspect (a corruption type and a reason) and a
snapshot of it. At most one record per (model, object, type) is open. The workflow is
QUARANTINED -> UNDER_REVIEW -> RESOLVED (REPAIRED, DISCARDED or FALSE_POSITIVE); resolving needs
``governance_admin`` (on SQLite, a context with ``superuser=True``) and every transition is
written to the audit trail as model ``governance.quarantine_record`` (object_id = the record's
id; a scan writes one row for all the records it created, their ids in
``extra.record_id_ranges`` as ``[first, last]`` pairs of consecutive ids).

The plans below are shared by the sync (:class:`Quarantine`) and async (:class:`AsyncQuarantine`)
namespaces; every method is one SQL function call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pygov._core import (
    Call,
    Namespace,
    Row,
    Statement,
    async_method,
    context_arg,
    int_arg,
    json_arg,
    sync_method,
    text_arg,
    to_datetime,
)
from pygov.audit import _object_id
from pygov.errors import ValidationError
from pygov.sqlite_ops import quarantine as sqlite_impl

STATUSES = ("QUARANTINED", "UNDER_REVIEW", "RESOLVED")
RESOLUTIONS = ("REPAIRED", "DISCARDED", "FALSE_POSITIVE")
MAX_NAME = 255
MAX_TEXT = 10_000


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """One quarantine record, as stored."""

    id: int
    model_name: str
    object_id: str
    corruption_type: str
    status: str
    reason: str
    #: The snapshot of the data when it was quarantined (the row's JSON for scans).
    data: Any
    quarantined_by: str | None
    quarantined_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    resolution_notes: str | None

    @property
    def is_open(self) -> bool:
        """True until the record is resolved."""
        return self.status != "RESOLVED"


#: The record's columns, in the order both backends return them.
COLUMNS = (
    "id, model_name, object_id, corruption_type, status, reason, original_data, quarantined_by, "
    "quarantined_at, reviewed_by, reviewed_at, resolved_by, resolved_at, resolution, "
    "resolution_notes"
)


def _record(row: Row) -> QuarantineRecord:
    quarantined_at = to_datetime(row[8])
    assert quarantined_at is not None
    return QuarantineRecord(
        id=int(row[0]),
        model_name=row[1],
        object_id=row[2],
        corruption_type=row[3],
        status=row[4],
        reason=row[5],
        data=row[6],
        quarantined_by=row[7],
        quarantined_at=quarantined_at,
        reviewed_by=row[9],
        reviewed_at=to_datetime(row[10]),
        resolved_by=row[11],
        resolved_at=to_datetime(row[12]),
        resolution=row[13],
        resolution_notes=row[14],
    )


def _one_record(rows: list[Row]) -> QuarantineRecord:
    return _record(rows[0])


def _optional_record(rows: list[Row]) -> QuarantineRecord | None:
    return _record(rows[0]) if rows else None


def _records(rows: list[Row]) -> list[QuarantineRecord]:
    return [_record(row) for row in rows]


def _int(rows: list[Row]) -> int:
    return int(rows[0][0])


def _bool(rows: list[Row]) -> bool:
    return bool(rows[0][0])


def _types(rows: list[Row]) -> dict[str, str]:
    return {row[0]: row[1] for row in rows}


QUARANTINE_DATA = Statement(
    "quarantine_data",
    "SELECT governance.quarantine_data($1::text, $2::text, $3::text, $4::text, $5::text::jsonb, "
    "$6::text::jsonb)",
    sqlite_impl.quarantine_data,
)
START_REVIEW = Statement(
    "start_quarantine_review",
    f"SELECT {COLUMNS} FROM governance.start_quarantine_review($1::bigint, $2::text::jsonb)",
    sqlite_impl.start_review,
)
RESOLVE = Statement(
    "resolve_quarantine",
    f"SELECT {COLUMNS} FROM governance.resolve_quarantine($1::bigint, $2::text, $3::text, "
    "$4::text::jsonb)",
    sqlite_impl.resolve,
)
GET = Statement(
    "get_quarantine_record",
    f"SELECT {COLUMNS} FROM governance.get_quarantine_record($1::bigint)",
    sqlite_impl.get,
)
LIST = Statement(
    "list_quarantine_records",
    f"SELECT {COLUMNS} FROM governance.list_quarantine_records($1::text, $2::text, $3::text, "
    "$4::int)",
    sqlite_impl.list_records,
)
SCAN_ORPHANS = Statement(
    "scan_orphans",
    "SELECT governance.scan_orphans($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, "
    "$7::text::jsonb)",
    sqlite_impl.scan_orphans,
)
SCAN_NEGATIVE = Statement(
    "scan_negative",
    "SELECT governance.scan_negative($1::text, $2::text, $3::text, $4::text, $5::text::jsonb)",
    sqlite_impl.scan_negative,
)
ORPHANED_JOURNAL_ENTRY = Statement(
    "quarantine_orphaned_journal_entry",
    "SELECT governance.quarantine_orphaned_journal_entry($1::text, $2::text, $3::text, $4::text, "
    "$5::text::jsonb)",
    sqlite_impl.orphaned_journal_entry,
)
NEGATIVE_STOCK = Statement(
    "quarantine_negative_stock",
    "SELECT governance.quarantine_negative_stock($1::text, $2::text, $3::text::jsonb)",
    sqlite_impl.negative_stock,
)
ENABLE_GUARD = Statement(
    "enable_quarantine_guard",
    "SELECT governance.enable_quarantine_guard($1::text, $2::text::jsonb)",
    sqlite_impl.enable_guard,
)
DISABLE_GUARD = Statement(
    "disable_quarantine_guard",
    "SELECT governance.disable_quarantine_guard($1::text, $2::text::jsonb)",
    sqlite_impl.disable_guard,
)
ADD_CORRUPTION_TYPE = Statement(
    "add_corruption_type",
    "SELECT governance.add_corruption_type($1::text, $2::text, $3::text::jsonb)",
    sqlite_impl.add_corruption_type,
)
CORRUPTION_TYPES = Statement(
    "list_corruption_types",
    "SELECT code, description FROM governance.list_corruption_types()",
    sqlite_impl.corruption_types,
)


def _name(field: str, value: Any) -> str:
    text = text_arg(field, value, max_length=MAX_NAME)
    assert text is not None
    return text


def _record_id(value: Any) -> int:
    return int_arg("id", value, minimum=1)


def _choice(field: str, value: Any, choices: tuple[str, ...], *, required: bool = True) -> Any:
    if value is None and not required:
        return None
    if value not in choices:
        raise ValidationError(
            f"{field} must be one of {', '.join(choices)}",
            {"field": field, field: value if isinstance(value, str) else repr(value)},
        )
    return value


class QuarantinePlans:
    """Argument building and result mapping for gov.quarantine, shared by sync and async."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def quarantine_data(
        self,
        model_name: str,
        object_id: Any,
        corruption_type: str,
        reason: str,
        data: Any = None,
        *,
        conn: Any = None,
    ) -> Call[int]:
        """Quarantine one object; returns the record's id.

        ``object_id`` is text, an int, or a tuple for a composite key. While a record for the
        same (model, object, type) is open, quarantining again returns that record's id (safe
        under concurrent callers). An unknown ``corruption_type`` is a ValidationError.
        """
        args = (
            _name("model_name", model_name),
            _object_id(object_id, required=True),
            _name("corruption_type", corruption_type),
            text_arg("reason", reason, max_length=MAX_TEXT),
            json_arg("data", data),
            context_arg(),
        )
        return Call(QUARANTINE_DATA, args, _int, conn, "quarantine.quarantine_data")

    def start_review(self, record_id: int, *, conn: Any = None) -> Call[QuarantineRecord]:
        """QUARANTINED -> UNDER_REVIEW; any other status is a QuarantineError."""
        args = (_record_id(record_id), context_arg())
        return Call(START_REVIEW, args, _one_record, conn, "quarantine.start_review")

    def resolve(
        self,
        record_id: int,
        notes: str,
        resolution: str = "REPAIRED",
        *,
        conn: Any = None,
    ) -> Call[QuarantineRecord]:
        """Resolve an open record as REPAIRED, DISCARDED or FALSE_POSITIVE, with notes.

        Needs ``governance_admin`` (AuthorityViolationError otherwise). Resolving a resolved
        record is a QuarantineError. On a guarded table, resolve and repair the row in one
        transaction (``conn=``): the guard lets the write through once the record is resolved.
        """
        args = (
            _record_id(record_id),
            text_arg("notes", notes, max_length=MAX_TEXT),
            _choice("resolution", resolution, RESOLUTIONS),
            context_arg(),
        )
        return Call(RESOLVE, args, _one_record, conn, "quarantine.resolve")

    def get(self, record_id: int, *, conn: Any = None) -> Call[QuarantineRecord | None]:
        """The record, or None."""
        return Call(GET, (_record_id(record_id),), _optional_record, conn, "quarantine.get")

    def list_records(
        self,
        status: str | None = None,
        *,
        model_name: str | None = None,
        corruption_type: str | None = None,
        limit: int | None = None,
        conn: Any = None,
    ) -> Call[list[QuarantineRecord]]:
        """Records in id order; ``status`` is one of the statuses, ``"OPEN"`` (not resolved)
        or None (all)."""
        args = (
            _choice("status", status, (*STATUSES, "OPEN"), required=False),
            text_arg("model_name", model_name, max_length=MAX_NAME, required=False),
            text_arg("corruption_type", corruption_type, max_length=MAX_NAME, required=False),
            None if limit is None else int_arg("limit", limit, minimum=1, maximum=2**31 - 1),
        )
        return Call(LIST, args, _records, conn, "quarantine.list")

    def scan_orphans(
        self,
        child_table: str,
        fk_column: str,
        parent_table: str,
        parent_column: str = "id",
        *,
        corruption_type: str = "ORPHANED_RECORD",
        reason: str | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Quarantine every row of ``child_table`` whose ``fk_column`` matches no
        ``parent_table.parent_column`` (NULL is no reference); returns how many it quarantined.

        One set-based statement. Rows with an open record of this type, or one resolved as
        FALSE_POSITIVE, are skipped, so scanning again adds nothing. Table names are SQL names
        (``schema.table``, quoted parts allowed) or a table's exact name; column names are exact.
        """
        args = (
            _name("child_table", child_table),
            _name("fk_column", fk_column),
            _name("parent_table", parent_table),
            _name("parent_column", parent_column),
            _name("corruption_type", corruption_type),
            text_arg("reason", reason, max_length=MAX_TEXT, required=False),
            context_arg(),
        )
        return Call(SCAN_ORPHANS, args, _int, conn, "quarantine.scan_orphans")

    def scan_negative(
        self,
        table: str,
        column: str,
        *,
        corruption_type: str = "INVALID_STATE",
        reason: str | None = None,
        conn: Any = None,
    ) -> Call[int]:
        """Quarantine every row of ``table`` whose numeric ``column`` is below zero; returns how
        many it quarantined (set-based and idempotent, like :meth:`scan_orphans`)."""
        args = (
            _name("table", table),
            _name("column", column),
            _name("corruption_type", corruption_type),
            text_arg("reason", reason, max_length=MAX_TEXT, required=False),
            context_arg(),
        )
        return Call(SCAN_NEGATIVE, args, _int, conn, "quarantine.scan_negative")

    def orphaned_journal_entry(
        self,
        journal_table: str,
        fk_column: str,
        parent_table: str,
        parent_column: str = "id",
        *,
        conn: Any = None,
    ) -> Call[int]:
        """:meth:`scan_orphans` for journal entries: ORPHANED_RECORD, reason "orphaned journal
        entry: ..."."""
        args = (
            _name("journal_table", journal_table),
            _name("fk_column", fk_column),
            _name("parent_table", parent_table),
            _name("parent_column", parent_column),
            context_arg(),
        )
        return Call(ORPHANED_JOURNAL_ENTRY, args, _int, conn, "quarantine.orphaned_journal_entry")

    def negative_stock(
        self, table: str, column: str = "quantity", *, conn: Any = None
    ) -> Call[int]:
        """:meth:`scan_negative` for stock levels: NEGATIVE_STOCK, reason "negative stock: ..."."""
        args = (_name("table", table), _name("column", column), context_arg())
        return Call(NEGATIVE_STOCK, args, _int, conn, "quarantine.negative_stock")

    def guard(self, table: str, *, conn: Any = None) -> Call[bool]:
        """Make updates and deletes of a row with an open quarantine record fail with
        QuarantineError until the record is resolved (a trigger; admin only; repeatable)."""
        args = (_name("table", table), context_arg())
        return Call(ENABLE_GUARD, args, _bool, conn, "quarantine.guard")

    def unguard(self, table: str, *, conn: Any = None) -> Call[bool]:
        """Remove the guard of :meth:`guard` (admin only)."""
        args = (_name("table", table), context_arg())
        return Call(DISABLE_GUARD, args, _bool, conn, "quarantine.unguard")

    def add_corruption_type(self, code: str, description: str, *, conn: Any = None) -> Call[bool]:
        """Register a corruption type (admin only): 1 to 50 of A-Z, 0-9 and _, starting with a
        letter. True when added, False when it already existed."""
        args = (
            _name("code", code),
            text_arg("description", description, max_length=1000),
            context_arg(),
        )
        return Call(ADD_CORRUPTION_TYPE, args, _bool, conn, "quarantine.add_corruption_type")

    def corruption_types(self, *, conn: Any = None) -> Call[dict[str, str]]:
        """Every corruption type: code -> description."""
        return Call(CORRUPTION_TYPES, (), _types, conn, "quarantine.corruption_types")


class Quarantine(Namespace):
    """``gov.quarantine``: quarantine, scans and the review workflow (sync)."""

    _plans_class = QuarantinePlans

    quarantine_data = sync_method(QuarantinePlans.quarantine_data)
    start_review = sync_method(QuarantinePlans.start_review)
    resolve = sync_method(QuarantinePlans.resolve)
    get = sync_method(QuarantinePlans.get)
    list = sync_method(QuarantinePlans.list_records)
    scan_orphans = sync_method(QuarantinePlans.scan_orphans)
    scan_negative = sync_method(QuarantinePlans.scan_negative)
    orphaned_journal_entry = sync_method(QuarantinePlans.orphaned_journal_entry)
    negative_stock = sync_method(QuarantinePlans.negative_stock)
    guard = sync_method(QuarantinePlans.guard)
    unguard = sync_method(QuarantinePlans.unguard)
    add_corruption_type = sync_method(QuarantinePlans.add_corruption_type)
    corruption_types = sync_method(QuarantinePlans.corruption_types)


class AsyncQuarantine(Namespace):
    """``gov.quarantine`` on AsyncGovernance: the same operations as coroutines."""

    _plans_class = QuarantinePlans

    quarantine_data = async_method(QuarantinePlans.quarantine_data)
    start_review = async_method(QuarantinePlans.start_review)
    resolve = async_method(QuarantinePlans.resolve)
    get = async_method(QuarantinePlans.get)
    list = async_method(QuarantinePlans.list_records)
    scan_orphans = async_method(QuarantinePlans.scan_orphans)
    scan_negative = async_method(QuarantinePlans.scan_negative)
    orphaned_journal_entry = async_method(QuarantinePlans.orphaned_journal_entry)
    negative_stock = async_method(QuarantinePlans.negative_stock)
    guard = async_method(QuarantinePlans.guard)
    unguard = async_method(QuarantinePlans.unguard)
    add_corruption_type = async_method(QuarantinePlans.add_corruption_type)
    corruption_types = async_method(QuarantinePlans.corruption_types)
