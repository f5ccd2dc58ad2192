"""Hostile and malformed input against every public wrapper function, on every backend.

Property: each call either succeeds or raises a pygov error (never a driver error, a crash or
a hang), and nothing already stored is lost or altered. Identifiers built to inject SQL are
either handled as the names they are or refused with ValidationError; the bait table they
try to drop is still there afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pygov
from pygov import keys
from pygov.errors import ConfigurationError, GovernanceError, ValidationError
from pygov.idempotency import Claim, IdempotencyRecord
from tests.conftest import Backend

#: Deterministic, no deadline (CI machines are slow and shared), a modest number of examples.
CI = settings(
    max_examples=20,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

# --- strategies -------------------------------------------------------------------------------

INJECTIONS = [
    'x"; DROP TABLE bait; --',
    "x'; DROP TABLE bait; --",
    "'); DROP TABLE bait; --",
    "bait; DROP TABLE bait",
    '"bait"',
    "$1",
    "%s",
    "\\",
    "'",
    '"',
]
SPECIAL_TEXT = st.sampled_from(
    [
        *INJECTIONS,
        "",
        " ",
        "\t\n\r",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: not encodable as UTF-8
        "\u202e\u200b\ufeff",
        "%3A:%25",
        "NULL",
        "null",
        "é" * 255,
        "x" * 256,
        "🙂" * 64,
    ]
)
HUGE_TEXT = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["x", "é", "🙂", "\x01", "'"]),
    st.sampled_from([100, 255, 256, 1001, 65_536, 1_000_000]),
)
ANY_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),  # surrogates included
    SPECIAL_TEXT,
    HUGE_TEXT,
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([object(), Ellipsis, 1j, Decimal("NaN"), date(2020, 1, 1), {1, 2}, b"\x00"]),
    st.datetimes(),
)
ARG = st.one_of(ANY_TEXT, JUNK)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


SAFE_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
#: Text a caller may legitimately pass: any Unicode, injection attempts, odd spacing.
NAME = st.one_of(
    st.text(SAFE_CHARS, min_size=1, max_size=30),
    st.sampled_from([*INJECTIONS, "é" * 100, "🙂" * 60, "\u202e\u200b", "%3A:%25", " x ", "\t"]),
)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any] = ARG) -> Any:
    """Usually a valid value (so the call reaches the database), one time in four a hostile
    one. (st.one_of would flatten the branches of both and weigh each branch alike.)"""
    return st.integers(0, 3).flatmap(lambda i: hostile if i == 0 else valid)


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    ANY_TEXT,
)
JSON = st.recursive(
    JSON_LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), SPECIAL_TEXT), kids, max_size=4),
    ),
    max_leaves=20,
)
HUGE_JSON = st.sampled_from(["list", "dict", "string", "deep"]).map(
    lambda kind: {
        "list": lambda: list(range(200_000)),
        "dict": lambda: {f"k{i}": i for i in range(50_000)},
        "string": lambda: {"s": "é" * 2_000_000},
        "deep": lambda: nested(5000),
    }[kind]()
)
PAYLOAD = mostly(
    JSON,
    st.one_of(
        st.integers(1, 3000).map(nested), HUGE_JSON, JUNK, st.just({1j: 1}), st.just({(1,): 2})
    ),
)
DURATION = mostly(
    st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e7), st.timedeltas(timedelta(0))),
    st.one_of(
        st.floats(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.timedeltas(),
        st.floats(min_value=1e-9, max_value=1e-3),
        JUNK,
    ),
)
WAIT = mostly(
    st.floats(min_value=0, max_value=0.05),
    st.one_of(st.floats(max_value=0.05), st.sampled_from([float("nan"), float("inf")]), JUNK),
)
TEXT_ARG = mostly(NAME)


# --- helpers ------------------------------------------------------------------------------------


def attempt(call: Callable[[], Any]) -> Any:
    """The call's result, or the pygov error it raised. Anything else fails the test."""
    try:
        return call()
    except GovernanceError as exc:
        assert isinstance(exc.context, dict)
        assert str(exc)  # the message and its context render
        return exc


class Seed:
    """Rows stored before the hostile calls; ``check()`` proves they were not touched."""

    def __init__(self, gov: Any, backend: Backend) -> None:
        self.backend = backend
        gov.idempotency.check_and_record(
            "seed⚑", "done", {"amount": 100, "note": "é🙂"}, payload={"p": 1}
        )
        self.claim = gov.idempotency.claim("seed⚑", "held", lease=3600)
        self.audit_id = gov.audit.log_operation(
            "seed.model", 1, "UPDATE", before_data={"v": 1}, after_data={"v": 2}
        )
        self.quarantine_id = gov.quarantine.quarantine_data(
            "seed.model", 1, "OTHER", "seeded", {"v": 2}
        )
        gov.stock.adjust("seed-item", "seed-site", 50, movement_key="seed-in")
        self.backend.query("CREATE TABLE bait (id integer PRIMARY KEY)")
        self.backend.query("INSERT INTO bait VALUES (1)")
        self.before = self.snapshot()

    def snapshot(self) -> Any:
        t = self.backend.table
        return (
            self.backend.query(
                f"SELECT * FROM {t('idempotency_record')} WHERE operation_type = ? ORDER BY id",
                ("seed⚑",),
            ),
            self.backend.query(f"SELECT * FROM {t('audit_trail')} WHERE id = ?", (self.audit_id,)),
            self.backend.query(
                f"SELECT * FROM {t('quarantine_record')} WHERE id = ?", (self.quarantine_id,)
            ),
            self.backend.query(
                f"SELECT item_id, location_id, quantity FROM {t('stock_level')} "
                "WHERE item_id = 'seed-item'"
            ),
            self.backend.query(
                f"SELECT id, movement_key, delta FROM {t('stock_movement')} "
                "WHERE item_id = 'seed-item'"
            ),
            self.backend.query("SELECT * FROM bait"),
        )

    def check(self) -> None:
        assert self.snapshot() == self.before


@pytest.fixture
def seed(gov: Any, backend: Backend) -> Seed:
    return Seed(gov, backend)


def admin_context(gov: Any) -> Any:
    """SQLite has no roles: the context's superuser flag stands in for governance_admin."""
    return gov.context(superuser=True)


# --- idempotency ------------------------------------------------------------------------------


@CI
@given(op=TEXT_ARG, key=TEXT_ARG, result=PAYLOAD, ttl=DURATION, payload=PAYLOAD)
def test_check_and_record(
    gov: Any, seed: Seed, op: Any, key: Any, result: Any, ttl: Any, payload: Any
) -> None:
    outcome = attempt(
        lambda: gov.idempotency.check_and_record(op, key, result, ttl=ttl, payload=payload)
    )
    if not isinstance(outcome, GovernanceError) and not outcome.is_duplicate:
        # Whatever was accepted reads back as it was given (JSON's own normalisation aside).
        assert outcome.record.idempotency_key == key
        stored = gov.idempotency.get(op, key)
        assert stored is None or stored.id == outcome.record.id  # None: ttl already ran out
    seed.check()


@CI
@given(
    op=TEXT_ARG,
    key=TEXT_ARG,
    lease=DURATION,
    ttl=DURATION,
    payload=PAYLOAD,
    wait=WAIT,
    result=PAYLOAD,
    finish=st.sampled_from(["complete", "release"]),
)
def test_claim_complete_release(
    gov: Any,
    seed: Seed,
    op: Any,
    key: Any,
    lease: Any,
    ttl: Any,
    payload: Any,
    wait: Any,
    result: Any,
    finish: str,
) -> None:
    claim = attempt(
        lambda: gov.idempotency.claim(op, key, lease=lease, ttl=ttl, payload=payload, wait=wait)
    )
    if isinstance(claim, Claim) and claim.claimed:
        if finish == "complete":
            attempt(lambda: gov.idempotency.complete(claim, result, ttl=ttl))
        else:
            attempt(lambda: gov.idempotency.release(claim))
    seed.check()


def forged_records() -> st.SearchStrategy[Any]:
    now = datetime.now(UTC)
    return st.builds(
        IdempotencyRecord,
        id=st.one_of(st.integers(), JUNK),
        operation_type=st.one_of(st.just("seed⚑"), TEXT_ARG),
        idempotency_key=st.one_of(st.sampled_from(["held", "done"]), TEXT_ARG),
        status=st.one_of(st.just("IN_PROGRESS"), ARG),
        result_data=JSON,
        created_by=ARG,
        created_at=st.just(now),
        completed_at=st.none(),
        expires_at=st.just(now + timedelta(hours=1)),
        lease_expires_at=st.none(),
    )


@CI
@given(
    claimed=st.booleans(),
    record=st.one_of(forged_records(), JUNK),
    token=st.one_of(st.uuids().map(str), ARG),
    result=PAYLOAD,
    ttl=DURATION,
)
def test_forged_claims_change_nothing(
    gov: Any, seed: Seed, claimed: bool, record: Any, token: Any, result: Any, ttl: Any
) -> None:
    forged = Claim(claimed, record, token)
    for outcome in (
        attempt(lambda: gov.idempotency.complete(forged, result, ttl=ttl)),
        attempt(lambda: gov.idempotency.release(forged)),
        attempt(lambda: gov.idempotency.complete(record, result)),  # not even a Claim
    ):
        assert isinstance(outcome, GovernanceError)
    seed.check()


@CI
@given(
    op=TEXT_ARG, key=TEXT_ARG, batch_size=st.one_of(st.integers(-(2**70), 2**70), JUNK), conn=JUNK
)
def test_get_stats_cleanup(
    gov: Any, seed: Seed, op: Any, key: Any, batch_size: Any, conn: Any
) -> None:
    attempt(lambda: gov.idempotency.get(op, key))
    attempt(lambda: gov.idempotency.get(op, key, conn=conn))  # not a connection at all
    attempt(lambda: gov.idempotency.stats())
    with admin_context(gov):
        attempt(lambda: gov.idempotency.cleanup_expired(batch_size))
    seed.check()


@CI
@given(op=TEXT_ARG, key=TEXT_ARG, lease=DURATION, ttl=DURATION, payload=PAYLOAD, result=PAYLOAD)
def test_guard(
    gov: Any, seed: Seed, op: Any, key: Any, lease: Any, ttl: Any, payload: Any, result: Any
) -> None:
    def run() -> None:
        with gov.idempotency.guard(op, key, lease=lease, ttl=ttl, payload=payload) as g:
            if not g.is_duplicate:
                g.result = result

    if isinstance(attempt(run), ValidationError) and isinstance(op, str) and isinstance(key, str):
        # A result that cannot be stored failed the block: the claim was given back.
        record = attempt(lambda: gov.idempotency.get(op, key))
        assert not (record is not None and getattr(record, "in_progress", False))
    seed.check()


@CI
@given(op=TEXT_ARG, key_value=TEXT_ARG, ttl=DURATION, result=PAYLOAD)
def test_idempotent_decorator(
    gov: Any, backend: Backend, seed: Seed, op: Any, key_value: Any, ttl: Any, result: Any
) -> None:
    decorate = attempt(lambda: gov.idempotent(op, key=lambda *a: key_value, ttl=ttl))
    if callable(decorate):
        if backend.runner is None:
            attempt(decorate(lambda: result))
        else:  # the async API decorates coroutine functions

            async def produce() -> Any:
                return result

            wrapper = decorate(produce)
            attempt(lambda: backend.runner.run(wrapper()))
    seed.check()


# --- context ----------------------------------------------------------------------------------


CONTEXT_FIELDS = st.dictionaries(
    st.one_of(
        st.sampled_from(["user", "service", "ip", "user_agent", "request_id", "superuser"]),
        st.text(max_size=5),
    ),
    st.one_of(TEXT_ARG, st.ip_addresses().map(str)),
    max_size=4,
)


@CI
@given(fields=CONTEXT_FIELDS)
def test_context_fields(gov: Any, backend: Backend, seed: Seed, fields: dict[str, Any]) -> None:
    def run() -> Any:
        with gov.context(**fields):
            key = f"ctx-{uuid.uuid4()}"
            result = gov.idempotency.check_and_record("ctx", key)
            assert result.record.created_by == pygov.current_context().user
            audit_id = gov.audit.log_operation("ctx.model", key, "CREATE")
            assert gov.audit.history("ctx.model", key)[0].id == audit_id
            return result

    attempt(run)
    # Nothing leaked out of the block.
    assert pygov.current_context() == pygov.GovernanceContext()
    seed.check()


# --- audit ------------------------------------------------------------------------------------

OBJECT_ID = st.one_of(TEXT_ARG, st.integers(), st.tuples(NAME, NAME), st.lists(ARG, max_size=3))


@CI
@given(
    model=TEXT_ARG,
    object_id=OBJECT_ID,
    operation=TEXT_ARG,
    service=TEXT_ARG,
    before=PAYLOAD,
    after=PAYLOAD,
    extra=st.one_of(PAYLOAD, st.dictionaries(st.text(max_size=5), JSON, max_size=3)),
)
def test_audit_logging(
    gov: Any,
    seed: Seed,
    model: Any,
    object_id: Any,
    operation: Any,
    service: Any,
    before: Any,
    after: Any,
    extra: Any,
) -> None:
    logged = attempt(
        lambda: gov.audit.log_operation(
            model,
            object_id,
            operation,
            source_service=service,
            before_data=before,
            after_data=after,
            extra=extra,
        )
    )
    if isinstance(logged, int):
        history = gov.audit.history(model, object_id) if object_id is not None else []
        assert object_id is None or logged in [h.id for h in history]
    attempt(lambda: gov.audit.log_authority_violation(service, model, operation, extra=extra))
    attempt(lambda: gov.audit.log_admin_access(operation, model, extra=extra))
    attempt(lambda: gov.audit.log_gateway_operation(service, model, object_id, operation))
    seed.check()


@CI
@given(
    model=TEXT_ARG,
    object_id=OBJECT_ID,
    limit=st.one_of(st.integers(-(2**70), 2**70), JUNK),
    before_id=st.one_of(st.integers(-(2**70), 2**70), JUNK),
    at=st.one_of(st.datetimes(timezones=st.just(UTC)), st.dates(), JUNK),
)
def test_audit_reads(
    gov: Any, seed: Seed, model: Any, object_id: Any, limit: Any, before_id: Any, at: Any
) -> None:
    attempt(lambda: gov.audit.history(model, object_id, limit=limit, before_id=before_id))
    attempt(lambda: gov.audit.object_at(model, object_id, at))
    attempt(lambda: gov.audit.audited_tables())
    seed.check()


def test_deep_and_huge_json_is_stored_exactly_or_refused(gov: Any, seed: Seed) -> None:
    for i, value in enumerate(
        [nested(50), nested(2000), nested(100_000), list(range(300_000)), {"s": "é" * 3_000_000}]
    ):
        outcome = attempt(lambda v=value, i=i: gov.idempotency.check_and_record("big", f"k{i}", v))
        if not isinstance(outcome, GovernanceError):
            assert gov.idempotency.get("big", f"k{i}").result_data == json.loads(json.dumps(value))
        logged = attempt(lambda v=value, i=i: gov.audit.log_operation("big", i, "X", after_data=v))
        if isinstance(logged, int):
            assert gov.audit.history("big", i)[0].after_data == json.loads(json.dumps(value))
    seed.check()


UNENCODABLE = "lone \ud800 surrogate"

#: Calls that carry text PostgreSQL and SQLite cannot store (not encodable as UTF-8).
UNENCODABLE_CALLS: list[Callable[[Any], Any]] = [
    lambda gov: gov.idempotency.check_and_record(UNENCODABLE, "k"),
    lambda gov: gov.idempotency.check_and_record("op", UNENCODABLE),
    lambda gov: gov.idempotency.check_and_record("op", "k1", {"v": UNENCODABLE}),
    lambda gov: gov.idempotency.check_and_record("op", "k2", {UNENCODABLE: 1}),
    lambda gov: gov.idempotency.claim("op", "k3", payload=[UNENCODABLE]),
    lambda gov: gov.audit.log_operation(UNENCODABLE, 1, "CREATE"),
    lambda gov: gov.audit.log_operation("m", UNENCODABLE, "CREATE"),
    lambda gov: gov.audit.log_operation("m", 1, "CREATE", after_data={"v": UNENCODABLE}),
    lambda gov: gov.audit.history("m", UNENCODABLE),
    lambda gov: gov.audit.enable(UNENCODABLE),
]


def test_text_that_is_not_utf8_encodable_is_a_validation_error(gov: Any, seed: Seed) -> None:
    for call in UNENCODABLE_CALLS:
        with pytest.raises(ValidationError):
            call(gov)
    with gov.context(user=UNENCODABLE), pytest.raises(ValidationError):
        gov.idempotency.check_and_record("op", "k4")
    assert gov.idempotency.get("op", "k4") is None
    seed.check()


# --- identifiers ------------------------------------------------------------------------------

HOSTILE_TABLES = [
    'x"; DROP TABLE bait; --',
    "x'; DROP TABLE bait; --",
    "with space",
    "MixedCase",
    'quote"inside',
    "semi;colon",
    "ünïcödé 表",
]
HOSTILE_COLUMNS = ['c"; DROP TABLE bait; --', "c'q", "Mixed Col", "select"]
HOSTILE_NUMBER = 'n"; DROP TABLE bait; --'
HOSTILE_REFERENCE = "fk'); DROP TABLE bait; --"


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@pytest.fixture
def hostile_tables(backend: Backend, seed: Seed) -> Iterator[list[str]]:
    """Tables whose names and columns are injection attempts, created correctly quoted."""
    columns = ", ".join(f"{quoted(c)} text" for c in HOSTILE_COLUMNS)
    columns += f", {quoted(HOSTILE_NUMBER)} integer, {quoted(HOSTILE_REFERENCE)} integer"
    for name in HOSTILE_TABLES:
        backend.query(f"CREATE TABLE {quoted(name)} (id integer PRIMARY KEY, {columns})")
    yield HOSTILE_TABLES
    seed.check()


def test_hostile_table_and_column_names_are_audited_as_the_names_they_are(
    gov: Any, backend: Backend, hostile_tables: list[str]
) -> None:
    schema = "public" if backend.is_postgres else "main"
    for name in hostile_tables:
        written = [(schema, name), f"{quoted(schema)}.{quoted(name)}", quoted(name)]
        for i, table in enumerate(written):
            info = gov.audit.enable(table, ignore_columns=[HOSTILE_COLUMNS[3]])
            assert info.model_name == (f"{schema}.{name}" if backend.is_postgres else name)
            values = ", ".join("?" for _ in HOSTILE_COLUMNS)
            cols = ", ".join(quoted(c) for c in HOSTILE_COLUMNS)
            with gov.context(user="ident"), gov.transaction() as tx:
                backend.execute(
                    tx,
                    f"INSERT INTO {quoted(name)} (id, {cols}) VALUES (?, {values})",
                    (i, *[f"v{i}'\"" for _ in HOSTILE_COLUMNS]),
                )
            history = gov.audit.history(info.model_name, str(i))
            assert history and history[0].after_data[HOSTILE_COLUMNS[0]] == f"v{i}'\""
            assert gov.audit.disable(table) is True
        # Unquoted, a name is folded to the database's case rules and may not exist: either
        # it resolves to the table or it is refused, never run as SQL.
        for table in (name, name.upper(), f"{schema}.{name}"):
            attempt(lambda t=table: gov.audit.enable(t)) and attempt(
                lambda t=table: gov.audit.disable(t)
            )


def test_scanners_and_guard_take_hostile_names_as_the_names_they_are(
    gov: Any, backend: Backend, hostile_tables: list[str]
) -> None:
    parent = quoted(hostile_tables[0])
    for name in hostile_tables:
        table = quoted(name)
        with gov.transaction() as tx:
            backend.execute(
                tx,
                f"INSERT INTO {table} (id, {quoted(HOSTILE_NUMBER)}, {quoted(HOSTILE_REFERENCE)})"
                " VALUES (101, -5, 999), (102, 3, NULL)",
            )
        with admin_context(gov):
            assert gov.quarantine.scan_negative(table, HOSTILE_NUMBER) == 1
            assert gov.quarantine.negative_stock(table, HOSTILE_NUMBER) == 1
            # Row 101 points at a parent 999 that does not exist (NULL is no reference).
            assert gov.quarantine.scan_orphans(table, HOSTILE_REFERENCE, parent) == 1
            assert gov.quarantine.orphaned_journal_entry(table, HOSTILE_REFERENCE, parent) == 0
            assert gov.quarantine.scan_negative(table, HOSTILE_NUMBER) == 0  # idempotent
            assert gov.quarantine.guard(table) is True
            with pytest.raises(pygov.QuarantineError), gov.transaction() as tx:
                backend.execute(
                    tx, f"UPDATE {table} SET {quoted(HOSTILE_NUMBER)} = 0 WHERE id = 101"
                )
            with gov.transaction() as tx:  # a row without an open record is not guarded
                backend.execute(
                    tx, f"UPDATE {table} SET {quoted(HOSTILE_NUMBER)} = 4 WHERE id = 102"
                )
            assert gov.quarantine.unguard(table) is False  # the guard's new state: off
            with gov.transaction() as tx:
                backend.execute(
                    tx, f"UPDATE {table} SET {quoted(HOSTILE_NUMBER)} = 0 WHERE id = 101"
                )
        for column in ("nope", HOSTILE_COLUMNS[0] + "x", 'n"', ""):
            with admin_context(gov), pytest.raises(ValidationError):
                gov.quarantine.scan_negative(table, column)
    open_ids = {r.object_id for r in gov.quarantine.list("OPEN") if r.model_name != "seed.model"}
    assert open_ids == {"101"}


def test_unquoted_names_resolve_as_sql_would(gov: Any, backend: Backend, seed: Seed) -> None:
    backend.query("CREATE TABLE Orders (id integer PRIMARY KEY, total integer)")
    backend.query("INSERT INTO Orders VALUES (1, 5)")
    for written in ("Orders", "orders", "ORDERS"):
        info = gov.audit.enable(written)
        assert info.table_name.lower().endswith("orders")
        assert gov.audit.disable(written) is True
        with admin_context(gov):
            assert gov.quarantine.scan_negative(written, "total") == 0
            assert gov.authority.protect(written, "shop.orders") == "shop.orders"
            assert gov.authority.unprotect(written) is True
        with gov.locks.lock_rows(written, [1]):
            pass
    seed.check()


@CI
@given(
    table=st.one_of(ARG, st.sampled_from(INJECTIONS), st.tuples(ARG, ARG)),
    columns=st.one_of(st.lists(st.one_of(ARG, st.sampled_from(INJECTIONS)), max_size=3), JUNK),
    model=TEXT_ARG,
)
def test_enable_and_disable_survive_hostile_identifiers(
    gov: Any, seed: Seed, table: Any, columns: Any, model: Any
) -> None:
    attempt(
        lambda: gov.audit.enable(
            table, ignore_columns=columns, model_name=model, key_columns=columns
        )
    )
    attempt(lambda: gov.audit.disable(table))
    seed.check()


RECORD_ID = st.one_of(st.integers(max_value=0), st.integers(min_value=2**40, max_value=2**70), JUNK)


@CI
@given(
    model=TEXT_ARG,
    object_id=OBJECT_ID,
    kind=mostly(st.sampled_from(["ORPHANED_RECORD", "INVALID_STATE", "OTHER"])),
    reason=TEXT_ARG,
    data=PAYLOAD,
    notes=TEXT_ARG,
    resolution=mostly(st.sampled_from(["REPAIRED", "DISCARDED", "FALSE_POSITIVE"])),
    other_id=RECORD_ID,
    status=mostly(st.sampled_from([None, "OPEN", "QUARANTINED", "RESOLVED"])),
)
def test_quarantine_workflow(
    gov: Any,
    seed: Seed,
    model: Any,
    object_id: Any,
    kind: Any,
    reason: Any,
    data: Any,
    notes: Any,
    resolution: Any,
    other_id: Any,
    status: Any,
) -> None:
    new_id = attempt(lambda: gov.quarantine.quarantine_data(model, object_id, kind, reason, data))
    for record_id in (new_id, other_id):  # ours, or one that cannot be the seed's
        if isinstance(record_id, GovernanceError):
            continue
        attempt(lambda r=record_id: gov.quarantine.start_review(r))
        with admin_context(gov):
            attempt(lambda r=record_id: gov.quarantine.resolve(r, notes, resolution))
        attempt(lambda r=record_id: gov.quarantine.get(r))
    attempt(lambda: gov.quarantine.list(status, model_name=model, corruption_type=kind, limit=5))
    with admin_context(gov):
        attempt(lambda: gov.quarantine.add_corruption_type(kind, reason))
    seed.check()


NAMES = st.one_of(TEXT_ARG, st.sampled_from([quoted(t) for t in HOSTILE_TABLES] + INJECTIONS))


@CI
@given(table=NAMES, column=NAMES, parent=NAMES, parent_column=NAMES, kind=TEXT_ARG)
def test_scanners_survive_hostile_identifiers(
    gov: Any, seed: Seed, table: Any, column: Any, parent: Any, parent_column: Any, kind: Any
) -> None:
    with admin_context(gov):
        attempt(lambda: gov.quarantine.scan_negative(table, column, corruption_type=kind))
        attempt(lambda: gov.quarantine.scan_orphans(table, column, parent, parent_column))
        attempt(lambda: gov.quarantine.orphaned_journal_entry(table, column, parent))
        attempt(lambda: gov.quarantine.negative_stock(table, column))
        if attempt(lambda: gov.quarantine.guard(table)) is True:
            assert gov.quarantine.unguard(table) is False
    seed.check()


MATRIX = st.one_of(
    st.dictionaries(
        TEXT_ARG,
        st.one_of(
            st.dictionaries(
                TEXT_ARG,
                mostly(st.lists(st.sampled_from(["CREATE", "UPDATE", "DELETE"]), max_size=3)),
                max_size=2,
            ),
            JUNK,
        ),
        max_size=3,
    ),
    JUNK,
)


@CI
@given(
    matrix=MATRIX,
    critical=mostly(st.lists(TEXT_ARG, max_size=2), JUNK),
    service=TEXT_ARG,
    model=TEXT_ARG,
    operation=mostly(st.sampled_from(["CREATE", "UPDATE", "DELETE"])),
    duration=DURATION,
    reason=TEXT_ARG,
    other_id=RECORD_ID,
)
def test_authority(
    gov: Any,
    seed: Seed,
    matrix: Any,
    critical: Any,
    service: Any,
    model: Any,
    operation: Any,
    duration: Any,
    reason: Any,
    other_id: Any,
) -> None:
    with admin_context(gov):
        attempt(lambda: gov.authority.load_matrix(matrix, critical=critical))
        lent = attempt(
            lambda: gov.authority.delegate(service, "x", model, operation, duration, reason)
        )
        for delegation_id in (getattr(lent, "id", None), other_id):
            attempt(lambda d=delegation_id: gov.authority.revoke(d, reason))
    attempt(lambda: gov.authority.validate(service, model, operation))
    attempt(lambda: gov.authority.has_authority(service, model, operation))
    attempt(lambda: gov.authority.check_delegation(service, model, operation))
    attempt(lambda: gov.authority.delegations(active=True))
    attempt(lambda: gov.authority.matrix())
    attempt(lambda: gov.authority.problems())
    seed.check()


@CI
@given(table=NAMES, model=TEXT_ARG, reason=TEXT_ARG)
def test_protect_survives_hostile_identifiers(
    gov: Any, seed: Seed, table: Any, model: Any, reason: Any
) -> None:
    with admin_context(gov):
        if isinstance(attempt(lambda: gov.authority.protect(table, model)), str):
            assert gov.authority.unprotect(table) is True
        with gov.transaction() as tx:
            attempt(lambda: gov.authority.override(reason, conn=tx))
    seed.check()


def test_protected_hostile_tables_refuse_and_admit_as_the_matrix_says(
    gov: Any, backend: Backend, hostile_tables: list[str]
) -> None:
    with admin_context(gov):
        gov.authority.load_matrix({"Writer": {"hostile.model": ["CREATE"]}, "Rogue": {}})
    for i, name in enumerate(hostile_tables):
        table = quoted(name)
        with admin_context(gov):
            assert gov.authority.protect(table, "hostile.model") == "hostile.model"
        insert = f"INSERT INTO {table} (id) VALUES (?)"
        with gov.context(service="Writer"), gov.transaction() as tx:
            backend.execute(tx, insert, (1000 + i,))
        with (
            gov.context(service="Rogue"),
            pytest.raises(pygov.AuthorityViolationError),
            gov.transaction() as tx,
        ):
            backend.execute(tx, insert, (2000 + i,))
        with admin_context(gov):
            assert gov.authority.unprotect(table) is True
    found = backend.query(f"SELECT count(*) FROM {quoted(hostile_tables[0])} WHERE id >= 1000")
    assert found == [(1,)]


ITEM = mostly(st.one_of(NAME, st.integers(min_value=-(2**70), max_value=2**70)))


@CI
@given(
    item=ITEM,
    location=ITEM,
    delta=mostly(st.integers(min_value=-(2**65), max_value=2**65)),
    movement_key=mostly(st.one_of(st.none(), NAME)),
    limit=mostly(st.integers(min_value=-5, max_value=20_000)),
    before_id=st.one_of(st.none(), st.integers(), JUNK),
)
def test_stock(
    gov: Any,
    seed: Seed,
    item: Any,
    location: Any,
    delta: Any,
    movement_key: Any,
    limit: Any,
    before_id: Any,
) -> None:
    level = attempt(lambda: gov.stock.level(item, location))
    after = attempt(lambda: gov.stock.adjust(item, location, delta, movement_key=movement_key))
    if isinstance(after, int):
        assert after >= 0
        assert isinstance(level, int) and (after == level + delta or movement_key is not None)
        assert gov.stock.level(item, location) == after
    elif isinstance(level, int):  # refused: the level did not move
        assert gov.stock.level(item, location) == level
    attempt(lambda: gov.stock.movements(item, location, limit=limit, before_id=before_id))
    seed.check()


@CI
@given(
    name=TEXT_ARG, timeout=DURATION, table=NAMES, keys=st.one_of(st.lists(ARG, max_size=3), JUNK)
)
def test_locks(gov: Any, seed: Seed, name: Any, timeout: Any, table: Any, keys: Any) -> None:
    def advisory() -> None:
        with gov.locks.advisory(name, timeout=timeout):
            pass

    def lock_rows() -> None:
        with gov.locks.lock_rows(table, keys, timeout=timeout, skip_missing=True):
            pass

    attempt(advisory)
    attempt(lock_rows)
    seed.check()


def test_lock_rows_takes_hostile_names_as_the_names_they_are(
    gov: Any, backend: Backend, hostile_tables: list[str]
) -> None:
    for name in hostile_tables:
        table = quoted(name)  # written as SQL writes it, on every backend
        with gov.transaction() as tx:
            backend.execute(tx, f"INSERT INTO {quoted(name)} (id) VALUES (7), (3), (5)")
        with gov.locks.lock_rows(table, [5, 3, 7]) as tx:
            backend.execute(tx, f"UPDATE {quoted(name)} SET {quoted(HOSTILE_NUMBER)} = 1")
        with pytest.raises(ValidationError), gov.locks.lock_rows(table, [5, 404]):
            pass
        with gov.locks.lock_rows(table, [3], column=HOSTILE_NUMBER, skip_missing=True):
            pass
        for column in ("nope", 'n"', HOSTILE_NUMBER + "; --"):
            with pytest.raises(ValidationError), gov.locks.lock_rows(table, [1], column=column):
                pass


# --- keys -------------------------------------------------------------------------------------


@CI
@given(
    parts=st.lists(
        st.one_of(ARG, st.sampled_from(["%", ":", "%3A", "%25", ""])), min_size=4, max_size=4
    )
)
def test_keys_never_collide(parts: list[Any]) -> None:
    key = keys.journal_entry(*parts)
    assert key.startswith("JE:") and key.count(":") == 4
    # Escaping makes the parts recoverable, so different parts never give the same key.
    recovered = [p.replace("%3A", ":").replace("%25", "%") for p in key.split(":")[1:]]
    assert recovered == ["" if p is None else str(p) for p in parts]
    assert keys.stock_movement(*parts)[3:] == key[3:]


@CI
@given(parts=st.lists(st.text(st.characters(exclude_characters="\x00")), min_size=4, max_size=4))
def test_keys_match_the_sql_functions(pg_dsn: str, parts: list[str]) -> None:
    from tests.reliability import rows

    sql_key = rows(pg_dsn, "SELECT governance.journal_entry_key(%s, %s, %s, %s)", parts)
    assert sql_key == [(keys.journal_entry(*parts),)]


# --- connect ----------------------------------------------------------------------------------


@CI
@given(
    dsn=st.one_of(
        JUNK,
        st.text(st.characters(exclude_characters="=:/"), max_size=20),
        st.sampled_from(
            [
                "postgresql://[::1",
                "postgres://user@[bad",
                "host=x port=notaport dbname=",
                "dbname='unterminated",
                "a=b",
                "=",
                "mysql://x",
                "sqlite:///\x00x",
                "sqlite:///%00x",
                "sqlite:///nonexistent-dir-zz/x.db",
                "http://x",
            ]
        ),
    )
)
def test_connect_refuses_bad_dsns_at_once(dsn: Any) -> None:
    outcome = attempt(lambda: pygov.connect(dsn))
    assert isinstance(outcome, ConfigurationError | ValidationError), outcome


CONNECT_OPTIONS = st.dictionaries(
    st.one_of(
        st.sampled_from(
            [
                "default_ttl",
                "default_lease",
                "lock_timeout",
                "open_timeout",
                "high_concurrency_threshold",
                "pool_min_size",
                "pool_max_size",
                "prepared_statements",
                "extra",
            ]
        ),
        st.text(max_size=5),
    ),
    st.one_of(ARG, DURATION, st.integers(-5, 50)),
    max_size=3,
)


@CI
@given(options=CONNECT_OPTIONS)
def test_connect_options(tmp_path: Path, options: dict[str, Any]) -> None:
    outcome = attempt(lambda: pygov.connect(f"sqlite:///{tmp_path}/opts.db", **options))
    if isinstance(outcome, pygov.Governance):
        try:
            outcome.migrate()
            assert outcome.idempotency.claim("o", str(uuid.uuid4())).claimed
        finally:
            outcome.close()


#: Text Python's str.isspace() calls blank and btrim() alone would not strip.
BLANKS = ["\t", "\n \r", "\x0b\x0c", "\x1c\x1f", "\x85", "\u00a0", "\u2007\u200a", "\u3000"]

#: SQL entry points with a required text argument, as a DBA calls them from psql.
REQUIRED_TEXT_SQL = [
    "SELECT * FROM governance.check_and_record('op', %s)",
    "SELECT * FROM governance.check_and_record(%s, 'key')",
    "SELECT governance.log_operation('m.t', '1', %s)",
    "SELECT governance.quarantine_data('m.t', '1', 'OTHER', %s)",
    "SELECT governance.quarantine_data(%s, '1', 'OTHER', 'reason')",
    "SELECT governance.try_lock(%s)",
    "SELECT governance.adjust_stock(%s, 'bin', 1)",
    "SELECT * FROM governance.validate_authority(%s, 'm.t', 'CREATE')",
]


@pytest.mark.parametrize("blank", BLANKS, ids=[b.encode("unicode_escape").decode() for b in BLANKS])
def test_blank_text_is_refused_from_sql_as_from_python(
    pg_gov: pygov.Governance, pg_dsn: str, blank: str
) -> None:
    import psycopg

    with pytest.raises(ValidationError):
        pg_gov.quarantine.quarantine_data("m.t", "1", "OTHER", blank)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in REQUIRED_TEXT_SQL:
            with pytest.raises(psycopg.Error) as info:
                conn.execute(statement, (blank,))
            assert (statement, info.value.sqlstate) == (statement, "GV002")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM governance.quarantine_record),"
            " (SELECT count(*) FROM governance.idempotency_record)"
        )
        assert counts.fetchone() == (0, 0)
