-- Idempotency records: one row per (operation_type, idempotency_key).
-- depends: 0001_governance_schema

CREATE TABLE governance.idempotency_record (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation_type   text        NOT NULL,
    idempotency_key  text        NOT NULL,
    status           text        NOT NULL,
    result_data      jsonb,
    payload_hash     text,
    holder_token     uuid,
    lease_expires_at timestamptz,
    ttl              interval    NOT NULL DEFAULT interval '24 hours',
    created_by       text,
    created_service  text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at     timestamptz,
    expires_at       timestamptz NOT NULL,
    CONSTRAINT idempotency_record_key_unique UNIQUE (operation_type, idempotency_key),
    CONSTRAINT idempotency_record_status_check CHECK (status IN ('IN_PROGRESS', 'COMPLETED')),
    CONSTRAINT idempotency_record_operation_type_check
        CHECK (length(operation_type) BETWEEN 1 AND 100),
    CONSTRAINT idempotency_record_key_check CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_record_lease_check
        CHECK (status = 'COMPLETED' OR (holder_token IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT idempotency_record_ttl_check CHECK (ttl > interval '0')
);

-- cleanup_expired walks this index in batches.
CREATE INDEX idempotency_record_expires_at_idx ON governance.idempotency_record (expires_at);

-- Duplicates served, sharded by backend so that hot keys do not serialise on one counter row.
-- UNLOGGED: a duplicate stays a cheap read (no WAL flush); the counts restart after a crash.
CREATE UNLOGGED TABLE governance.idempotency_duplicate_counter (
    operation_type text   NOT NULL,
    shard          int    NOT NULL,
    served         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (operation_type, shard)
);

REVOKE ALL ON governance.idempotency_record, governance.idempotency_duplicate_counter FROM PUBLIC;
GRANT SELECT ON governance.idempotency_record, governance.idempotency_duplicate_counter
    TO governance_auditor, governance_admin;
