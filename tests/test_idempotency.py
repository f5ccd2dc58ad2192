"""Idempotency contract tests: run unchanged on sync PostgreSQL, async PostgreSQL and SQLite."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

import pygov
from pygov import keys
from pygov.errors import (
    IdempotencyError,
    IdempotencyInProgressError,
    IdempotencyPayloadMismatchError,
    ValidationError,
)
from tests.conftest import Backend
from tests.helpers import run_threads


def count_records(backend: Backend, op: str) -> int:
    rows = backend.query(
        f"SELECT count(*) FROM {backend.table('idempotency_record')} WHERE operation_type = ?",
        (op,),
    )
    return int(rows[0][0])


def test_first_call_records_and_repeat_is_duplicate(gov: Any, backend: Backend) -> None:
    first = gov.idempotency.check_and_record("journal_entry", "fee-1", {"entry_id": 7})
    assert first.is_duplicate is False
    assert first.data == {"entry_id": 7}
    assert first.record.status == "COMPLETED"
    again = gov.idempotency.check_and_record("journal_entry", "fee-1", {"entry_id": 8})
    is_duplicate, record, data = again
    assert is_duplicate is True
    assert data == {"entry_id": 7}
    assert record.id == first.record.id
    assert count_records(backend, "journal_entry") == 1


def test_returned_record_is_the_stored_record(gov: Any) -> None:
    """check_and_record does not read back what the caller sent (see CHECK_AND_RECORD): the
    record it builds must still equal the stored one, for a new key, a duplicate and the
    replacement of an expired record."""
    data = {"entry_id": 7, "lines": [{"account": "4000", "amount": "12.50"}], "note": "é ✓"}
    with gov.context(user="alice", service="billing"):
        recorded = gov.idempotency.check_and_record("journal_entry", "fee-é", data)
        duplicate = gov.idempotency.check_and_record("journal_entry", "fee-é", {"other": 1})
        gov.idempotency.check_and_record("journal_entry", "short", None, ttl=0.05)
        time.sleep(0.1)
        replaced = gov.idempotency.check_and_record("journal_entry", "short", [1, 2])
    assert recorded.is_duplicate is False and duplicate.is_duplicate is True
    assert replaced.is_duplicate is False
    stored = gov.idempotency.get("journal_entry", "fee-é")
    assert recorded.record == stored == duplicate.record
    assert recorded.data == data == duplicate.data
    assert recorded.record.created_by == "alice"
    assert recorded.record.completed_at == recorded.record.created_at
    assert recorded.record.lease_expires_at is None
    assert replaced.record == gov.idempotency.get("journal_entry", "short")
    assert replaced.data == [1, 2]
    # A fresh object, decoded from what was stored, as a duplicate gets: not the caller's.
    assert recorded.data is not data


def test_record_is_immutable_and_gives_its_fields_as_a_dict(gov: Any) -> None:
    record = gov.idempotency.check_and_record("frozen", "k", {"v": 1}).record
    with pytest.raises(AttributeError):
        record.status = "IN_PROGRESS"
    fields = record._asdict()
    assert fields["status"] == "COMPLETED" and fields["result_data"] == {"v": 1}
    assert list(fields) == [
        "id", "operation_type", "idempotency_key", "status", "result_data", "created_by",
        "created_at", "completed_at", "expires_at", "lease_expires_at",
    ]  # fmt: skip
    assert gov.idempotency.get("frozen", "k") == record


def test_same_key_in_other_operation_type_is_independent(gov: Any) -> None:
    assert not gov.idempotency.check_and_record("a", "k", 1).is_duplicate
    assert not gov.idempotency.check_and_record("b", "k", 2).is_duplicate


def test_sixteen_threads_racing_one_key_record_exactly_once(gov: Any, backend: Backend) -> None:
    results = run_threads(
        16, lambda i: gov.idempotency.check_and_record("race", "same-key", {"winner": i})
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    winners = [r for r in results if not r.is_duplicate]
    assert len(winners) == 1
    winner_data = winners[0].data
    assert all(r.data == winner_data for r in results)
    assert count_records(backend, "race") == 1


def test_expired_record_counts_as_absent(gov: Any) -> None:
    first = gov.idempotency.check_and_record("exp", "k", {"v": 1}, ttl=0.2)
    assert first.record.expires_at - first.record.created_at == timedelta(seconds=0.2)
    assert not first.record.is_expired()
    time.sleep(0.3)
    assert first.record.is_expired()
    second = gov.idempotency.check_and_record("exp", "k", {"v": 2})
    assert second.is_duplicate is False
    assert second.data == {"v": 2}


def test_default_ttl_is_24_hours(gov: Any) -> None:
    result = gov.idempotency.check_and_record("ttl", "k")
    assert result.record.expires_at - result.record.created_at == timedelta(hours=24)


def test_payload_fingerprint_ignores_key_order_and_rejects_other_payloads(
    gov: Any, backend: Backend
) -> None:
    gov.idempotency.check_and_record("pay", "k", {"r": 1}, payload={"a": 1, "b": [1, 2]})
    same = gov.idempotency.check_and_record("pay", "k", payload={"b": [1, 2], "a": 1})
    assert same.is_duplicate and same.data == {"r": 1}
    before = backend.query(f"SELECT * FROM {backend.table('idempotency_record')}")
    with pytest.raises(IdempotencyPayloadMismatchError) as info:
        gov.idempotency.check_and_record("pay", "k", {"r": 2}, payload={"a": 2})
    assert info.value.context["key"] == "k"
    assert isinstance(info.value, IdempotencyError)
    assert backend.query(f"SELECT * FROM {backend.table('idempotency_record')}") == before


def test_claim_complete_two_phases(gov: Any) -> None:
    claim = gov.idempotency.claim("charge", "c-1", lease=30)
    assert claim.claimed and claim.token
    assert claim.record.status == "IN_PROGRESS"
    with pytest.raises(IdempotencyInProgressError):
        gov.idempotency.claim("charge", "c-1")
    with pytest.raises(IdempotencyInProgressError):
        gov.idempotency.check_and_record("charge", "c-1")
    done = gov.idempotency.complete(claim, {"charged": 100})
    assert done.status == "COMPLETED" and done.result_data == {"charged": 100}
    later = gov.idempotency.claim("charge", "c-1")
    assert later.claimed is False and later.data == {"charged": 100}
    with pytest.raises(IdempotencyError):
        gov.idempotency.complete(later, {"charged": 1})


def test_only_the_holder_can_complete_or_release(gov: Any) -> None:
    claim = gov.idempotency.claim("charge", "c-2", lease=0.2)
    time.sleep(0.3)
    takeover = gov.idempotency.claim("charge", "c-2", lease=30)
    assert takeover.claimed and takeover.token != claim.token
    with pytest.raises(IdempotencyError):
        gov.idempotency.complete(claim, {"late": True})
    with pytest.raises(IdempotencyError):
        gov.idempotency.release(claim)
    assert gov.idempotency.complete(takeover, {"ok": 1}).result_data == {"ok": 1}


def test_release_lets_a_retry_run(gov: Any) -> None:
    claim = gov.idempotency.claim("charge", "c-3")
    gov.idempotency.release(claim)
    assert gov.idempotency.get("charge", "c-3") is None
    retry = gov.idempotency.claim("charge", "c-3")
    assert retry.claimed


def test_waiting_claim_gets_the_result_once_completed(gov: Any) -> None:
    claim = gov.idempotency.claim("slow", "k", lease=30)

    def finish() -> None:
        time.sleep(0.3)
        gov.idempotency.complete(claim, {"done": True})

    import threading

    t = threading.Thread(target=finish)
    t.start()
    waited = gov.idempotency.claim("slow", "k", wait=5)
    t.join()
    assert waited.claimed is False and waited.data == {"done": True}


def test_waiting_claim_gives_up_after_wait(gov: Any) -> None:
    gov.idempotency.claim("slow", "k2", lease=30)
    started = time.monotonic()
    with pytest.raises(IdempotencyInProgressError) as info:
        gov.idempotency.claim("slow", "k2", wait=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    assert info.value.context["waited_seconds"] >= 0.25


@pytest.mark.parametrize(
    "key",
    ["", "   ", "x" * 256, "nul\x00byte", None, 42],
)
def test_bad_keys_are_validation_errors_and_store_nothing(
    gov: Any, backend: Backend, key: Any
) -> None:
    with pytest.raises(ValidationError):
        gov.idempotency.check_and_record("bad", key, {"v": 1})
    assert count_records(backend, "bad") == 0


def test_result_must_be_json_serialisable(gov: Any, backend: Backend) -> None:
    with pytest.raises(ValidationError):
        gov.idempotency.check_and_record("bad", "k", {"v": object()})
    with pytest.raises(ValidationError):
        gov.idempotency.check_and_record("bad", "k", {"v": float("nan")})
    assert count_records(backend, "bad") == 0


def test_any_other_unicode_works(gov: Any) -> None:
    key = "clé-日本語-🙂-\u200b-" + "é" * 200
    result = gov.idempotency.check_and_record("uni", key, {"ключ": "значение 🙂"})
    assert result.record.idempotency_key == key
    assert gov.idempotency.check_and_record("uni", key).data == {"ключ": "значение 🙂"}


def test_guard_runs_block_once_and_stores_result(gov: Any) -> None:
    calls = []
    for _ in range(3):
        with gov.idempotency.guard("fee", "g-1") as g:
            if g.is_duplicate:
                assert g.data == {"posted": 1}
                continue
            calls.append(1)
            g.result = {"posted": 1}
    assert calls == [1]


def test_guard_releases_when_the_block_raises(gov: Any) -> None:
    with pytest.raises(RuntimeError), gov.idempotency.guard("fee", "g-2") as g:
        assert not g.is_duplicate
        raise RuntimeError("boom")
    assert gov.idempotency.get("fee", "g-2") is None
    with gov.idempotency.guard("fee", "g-2") as g:
        assert not g.is_duplicate
        g.result = 1


def test_cleanup_deletes_expired_in_batches_and_spares_live_claims(
    gov: Any, backend: Backend
) -> None:
    for i in range(25):
        gov.idempotency.check_and_record("old", f"k{i}", ttl=0.1)
    gov.idempotency.claim("old", "live-claim", ttl=0.1, lease=60)
    gov.idempotency.check_and_record("old", "fresh")
    time.sleep(0.2)
    seen: list[int] = []
    with gov.context(superuser=True):
        if backend.is_postgres:
            deleted = gov.idempotency.cleanup_expired(batch_size=10, progress=seen.append)
        else:
            deleted = gov.idempotency.cleanup_expired(batch_size=10, progress=seen.append)
    assert deleted == 25
    assert seen == [10, 20, 25]
    assert gov.idempotency.get("old", "live-claim") is not None
    assert gov.idempotency.get("old", "fresh") is not None
    assert count_records(backend, "old") == 2


def test_stats_count_completed_in_progress_expired_and_duplicates(gov: Any) -> None:
    gov.idempotency.check_and_record("s", "a")
    gov.idempotency.check_and_record("s", "a")
    gov.idempotency.check_and_record("s", "a")
    gov.idempotency.check_and_record("s", "b", ttl=0.1)
    gov.idempotency.claim("s", "c", lease=60)
    time.sleep(0.2)
    stats = gov.idempotency.stats()["s"]
    assert (stats.completed, stats.in_progress, stats.expired, stats.duplicates_served) == (
        1,
        1,
        1,
        2,
    )


def test_context_user_is_recorded_as_created_by(gov: Any) -> None:
    with gov.context(user="alice", service="Fees"):
        rec = gov.idempotency.check_and_record("ctx", "k").record
    assert rec.created_by == "alice"


def test_thirty_two_threads_each_record_with_their_own_user(gov: Any, backend: Backend) -> None:
    def work(i: int) -> str | None:
        with pygov.context(user=f"user-{i}"):
            for j in range(5):
                gov.idempotency.check_and_record("users", f"{i}-{j}")
        return None

    assert run_threads(32, work) == [None] * 32
    rows = backend.query(
        f"SELECT idempotency_key, created_by FROM {backend.table('idempotency_record')}"
        " WHERE operation_type = 'users'"
    )
    assert len(rows) == 160
    assert all(created_by == f"user-{key.split('-')[0]}" for key, created_by in rows)


def test_keys_escape_parts_so_different_inputs_never_collide() -> None:
    assert keys.journal_entry("students", "StudentFee", 123, "create") == (
        "JE:students:StudentFee:123:create"
    )
    assert keys.journal_entry("a:b", "c", 1, "x") != keys.journal_entry("a", "b:c", 1, "x")
    assert keys.journal_entry("a%3Ab", "c", 1, "x") != keys.journal_entry("a:b", "c", 1, "x")
    assert keys.stock_movement(1, 2, "IN", "PO-9") == "SM:1:2:IN:PO-9"


def test_sql_key_functions_match_python(pg_gov: pygov.Governance, pg_dsn: str) -> None:
    import psycopg

    cases = [("students", "Fee", "1", "create"), ("a:b", "%c", "1:2", ":"), ("", "é", "🙂", "%3A")]
    with psycopg.connect(pg_dsn) as conn:
        for case in cases:
            (je,) = conn.execute(
                "SELECT governance.journal_entry_key(%s, %s, %s, %s)", case
            ).fetchone()  # type: ignore[misc]
            (sm,) = conn.execute(
                "SELECT governance.stock_movement_key(%s, %s, %s, %s)", case
            ).fetchone()  # type: ignore[misc]
            assert je == keys.journal_entry(*case)
            assert sm == keys.stock_movement(*case)


def test_sql_payload_hash_is_canonical_and_null_for_no_payload(pg_dsn: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT governance.payload_hash(NULL),"
            ' governance.payload_hash(\'{"a": 1, "b": [1, 2]}\'),'
            ' governance.payload_hash(\'{"b":[1,2],   "a":1}\'),'
            ' governance.payload_hash(\'{"a": 1, "b": [2, 1]}\')'
        ).fetchone()
    assert row is not None
    no_payload, first, reordered, other = row
    assert no_payload is None
    assert first == reordered
    assert len(first) == 64 and int(first, 16) >= 0
    assert other != first


def test_connect_ttl_option_sets_the_default(pg_dsn: str) -> None:
    gov = pygov.connect(pg_dsn, default_ttl=timedelta(minutes=5))
    try:
        rec = gov.idempotency.check_and_record("ttl", "k").record
        assert rec.expires_at - rec.created_at == timedelta(minutes=5)
    finally:
        gov.close()


def test_conn_joins_the_callers_transaction(gov: Any, backend: Backend) -> None:
    with pytest.raises(RuntimeError), gov.transaction() as conn:
        gov.idempotency.check_and_record("tx", "k", {"v": 1}, conn=conn)
        assert gov.idempotency.get("tx", "k", conn=conn) is not None
        raise RuntimeError("roll back")
    assert gov.idempotency.get("tx", "k") is None
    with gov.transaction() as conn:
        gov.idempotency.check_and_record("tx", "k", {"v": 2}, conn=conn)
    assert gov.idempotency.get("tx", "k").result_data == {"v": 2}


def test_guard_with_conn_commits_claim_work_and_result_together(gov: Any, backend: Backend) -> None:
    table = "guard_work" if backend.name == "sqlite" else "public.guard_work"
    backend.query(f"CREATE TABLE {table} (id integer PRIMARY KEY, note text)")
    with (
        pytest.raises(RuntimeError),
        gov.transaction() as conn,
        gov.idempotency.guard("work", "w-1", conn=conn) as g,
    ):
        backend.execute(conn, f"INSERT INTO {table} VALUES (?, ?)", (1, "first try"))
        g.result = {"row": 1}
        raise RuntimeError("crash after the write")
    # Nothing recorded, nothing written: the retry runs.
    assert gov.idempotency.get("work", "w-1") is None
    assert backend.query(f"SELECT count(*) FROM {table}") == [(0,)]
    for attempt in range(2):
        with gov.transaction() as conn, gov.idempotency.guard("work", "w-1", conn=conn) as g:
            if g.is_duplicate:
                assert g.data == {"row": 1}
                assert attempt == 1
                continue
            backend.execute(conn, f"INSERT INTO {table} VALUES (?, ?)", (1, "retry"))
            g.result = {"row": 1}
    assert backend.query(f"SELECT note FROM {table}") == [("retry",)]
    assert gov.idempotency.get("work", "w-1").status == "COMPLETED"
