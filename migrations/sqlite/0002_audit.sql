-- Audit trail (SQLite fallback): append-only by triggers, sealed by id ranges (one writer at a
-- time, so ids commit in order). JSON columns are text; timestamps ISO 8601 UTC text.
-- depends: 0001_idempotency

CREATE TABLE governance_audit_trail (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at     TEXT NOT NULL,
    model_name      TEXT,
    object_id       TEXT,
    operation       TEXT NOT NULL CHECK (length(operation) BETWEEN 1 AND 64),
    source_service  TEXT,
    user_name       TEXT,
    db_role         TEXT,
    ip_address      TEXT,
    user_agent      TEXT,
    request_id      TEXT,
    before_data     TEXT CHECK (before_data IS NULL OR json_valid(before_data)),
    after_data      TEXT CHECK (after_data IS NULL OR json_valid(after_data)),
    changed_fields  TEXT CHECK (changed_fields IS NULL OR json_valid(changed_fields)),
    extra           TEXT CHECK (extra IS NULL OR json_valid(extra))
);

CREATE INDEX governance_audit_trail_object_idx
    ON governance_audit_trail (model_name, object_id, id);
CREATE INDEX governance_audit_trail_user_idx ON governance_audit_trail (user_name, occurred_at);
CREATE INDEX governance_audit_trail_occurred_at_idx ON governance_audit_trail (occurred_at);

CREATE TRIGGER governance_audit_trail_no_update BEFORE UPDATE ON governance_audit_trail
BEGIN
    SELECT RAISE(ABORT, 'GV001: the audit trail is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER governance_audit_trail_no_delete BEFORE DELETE ON governance_audit_trail
BEGIN
    SELECT RAISE(ABORT, 'GV001: the audit trail is append-only: DELETE is not allowed');
END;

-- Seals: one per month of rows sealed at once; each covers the rows of that month (UTC,
-- 'YYYY-MM') with from_id < id <= to_id, chained by hash to the seal before.
CREATE TABLE governance_audit_seal (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sealed_at       TEXT NOT NULL,
    sealed_by       TEXT,
    month           TEXT NOT NULL,
    from_id         INTEGER NOT NULL,
    to_id           INTEGER NOT NULL,
    row_count       INTEGER NOT NULL,
    first_id        INTEGER,
    last_id         INTEGER,
    row_ids         TEXT NOT NULL CHECK (json_valid(row_ids)),
    row_digests     TEXT NOT NULL CHECK (json_valid(row_digests)),
    previous_hash   TEXT NOT NULL,
    hash            TEXT NOT NULL,
    CHECK (from_id < to_id)
);

-- Months removed by drop_audit_before: verify skips their seals.
CREATE TABLE governance_audit_retention (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    cutoff      TEXT NOT NULL,
    dropped_at  TEXT NOT NULL,
    dropped_by  TEXT
);

CREATE TRIGGER governance_audit_seal_no_update BEFORE UPDATE ON governance_audit_seal
BEGIN
    SELECT RAISE(ABORT, 'GV001: audit seals are append-only: UPDATE is not allowed');
END;

CREATE TRIGGER governance_audit_seal_no_delete BEFORE DELETE ON governance_audit_seal
BEGIN
    SELECT RAISE(ABORT, 'GV001: audit seals are append-only: DELETE is not allowed');
END;

-- Tables audited by triggers (gov.audit.enable).
CREATE TABLE governance_audited_table (
    table_name      TEXT PRIMARY KEY,
    model_name      TEXT NOT NULL,
    key_columns     TEXT NOT NULL CHECK (json_valid(key_columns)),
    ignore_columns  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(ignore_columns)),
    enabled_at      TEXT NOT NULL,
    enabled_by      TEXT
);
