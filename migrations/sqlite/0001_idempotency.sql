-- Idempotency records (SQLite fallback). Timestamps are ISO 8601 UTC text.
-- depends:

CREATE TABLE governance_idempotency_record (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_type   TEXT NOT NULL CHECK (length(operation_type) BETWEEN 1 AND 100),
    idempotency_key  TEXT NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    status           TEXT NOT NULL CHECK (status IN ('IN_PROGRESS', 'COMPLETED')),
    result_data      TEXT CHECK (result_data IS NULL OR json_valid(result_data)),
    payload_hash     TEXT,
    holder_token     TEXT,
    lease_expires_at TEXT,
    ttl_seconds      REAL NOT NULL DEFAULT 86400 CHECK (ttl_seconds > 0),
    created_by       TEXT,
    created_service  TEXT,
    created_at       TEXT NOT NULL,
    completed_at     TEXT,
    expires_at       TEXT NOT NULL,
    UNIQUE (operation_type, idempotency_key),
    CHECK (status = 'COMPLETED' OR (holder_token IS NOT NULL AND lease_expires_at IS NOT NULL))
);

CREATE INDEX governance_idempotency_record_expires_at_idx
    ON governance_idempotency_record (expires_at);

CREATE TABLE governance_idempotency_duplicate_counter (
    operation_type TEXT PRIMARY KEY,
    served         INTEGER NOT NULL DEFAULT 0
);
