-- Audit trail: append-only, partitioned by month (UTC), with seals that chain it into SHA-256.
-- depends: 0002_idempotency

CREATE SEQUENCE governance.audit_trail_id_seq AS bigint;

-- One row per audited event. occurred_at is the partition key; id orders rows within a seal.
CREATE TABLE governance.audit_trail (
    id              bigint      NOT NULL DEFAULT nextval('governance.audit_trail_id_seq'),
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction (pg_current_xact_id): seals cover ranges of finished transactions.
    transaction_id  bigint      NOT NULL,
    model_name      text,
    object_id       text,
    operation       text        NOT NULL,
    source_service  text,
    user_name       text,
    db_role         text        NOT NULL,
    ip_address      inet,
    user_agent      text,
    request_id      text,
    before_data     jsonb,
    after_data      jsonb,
    changed_fields  text[],
    extra           jsonb,
    CONSTRAINT audit_trail_pkey PRIMARY KEY (id, occurred_at),
    CONSTRAINT audit_trail_operation_check CHECK (length(operation) BETWEEN 1 AND 64)
) PARTITION BY RANGE (occurred_at);

ALTER SEQUENCE governance.audit_trail_id_seq OWNED BY governance.audit_trail.id;

-- No audit row is ever refused for want of a monthly partition.
CREATE TABLE governance.audit_trail_default PARTITION OF governance.audit_trail DEFAULT;

-- "The history of one object", newest first, paged by id.
CREATE INDEX audit_trail_object_idx ON governance.audit_trail (model_name, object_id, id);
-- "What did this user do", by time.
CREATE INDEX audit_trail_user_idx ON governance.audit_trail (user_name, occurred_at);
-- "What happened in this time range" (within the partitions that pruning keeps).
CREATE INDEX audit_trail_occurred_at_idx ON governance.audit_trail (occurred_at);
-- Sealing and verifying read ranges of transactions; xids grow with time, so BRIN suffices.
CREATE INDEX audit_trail_transaction_idx ON governance.audit_trail
    USING brin (transaction_id) WITH (pages_per_range = 16);

-- One row per month of rows sealed at once: hash = sha256(previous hash, the seal's header,
-- the SHA-256 of every row in id order). row_ids/row_digests (first 8 bytes of each row's
-- digest) let verify_audit name the first row that no longer matches.
CREATE TABLE governance.audit_seal (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sealed_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    sealed_by       text        NOT NULL,
    month           timestamptz NOT NULL,
    from_xid        bigint      NOT NULL,
    to_xid          bigint      NOT NULL,
    row_count       bigint      NOT NULL,
    first_id        bigint,
    last_id         bigint,
    row_ids         bigint[]    NOT NULL,
    row_digests     bigint[]    NOT NULL,
    previous_hash   text        NOT NULL,
    hash            text        NOT NULL,
    CONSTRAINT audit_seal_range_check CHECK (from_xid < to_xid),
    CONSTRAINT audit_seal_rows_check
        CHECK (cardinality(row_ids) = row_count AND cardinality(row_digests) = row_count)
);
CREATE INDEX audit_seal_to_xid_idx ON governance.audit_seal (to_xid);

-- Months whose partitions drop_audit_before removed: verify_audit skips their seals.
CREATE TABLE governance.audit_retention (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cutoff      timestamptz NOT NULL,
    partitions  text[]      NOT NULL,
    dropped_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    dropped_by  text        NOT NULL
);

-- Tables audited by triggers (see governance.enable_audit).
CREATE TABLE governance.audited_table (
    table_oid       oid         PRIMARY KEY,
    model_name      text        NOT NULL,
    key_columns     text[]      NOT NULL,
    ignore_columns  text[]      NOT NULL DEFAULT '{}',
    enabled_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    enabled_by      text        NOT NULL
);

REVOKE ALL ON governance.audit_trail, governance.audit_trail_default, governance.audit_seal,
    governance.audit_retention, governance.audited_table FROM PUBLIC;
REVOKE ALL ON SEQUENCE governance.audit_trail_id_seq FROM PUBLIC;
GRANT SELECT ON governance.audit_trail, governance.audit_seal, governance.audit_retention,
    governance.audited_table TO governance_auditor, governance_admin;
