-- Quarantine: corrupt data isolated for review, and the lookup table of corruption types.
-- depends: 0002_idempotency

-- Corruption types are rows, not an enum, so that a deployment can add its own
-- (governance.add_corruption_type, admin only).
CREATE TABLE governance.corruption_type (
    code        text        PRIMARY KEY,
    description text        NOT NULL,
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT corruption_type_code_check CHECK (code ~ '^[A-Z][A-Z0-9_]{0,49}$'),
    CONSTRAINT corruption_type_description_check CHECK (length(description) BETWEEN 1 AND 1000)
);

INSERT INTO governance.corruption_type (code, description) VALUES
    ('ORPHANED_RECORD', 'a row references a parent row that does not exist'),
    ('NEGATIVE_STOCK', 'a stock quantity is below zero'),
    ('INVALID_REFERENCE', 'a reference points at the wrong kind of object'),
    ('DUPLICATE_RECORD', 'the same business fact is stored more than once'),
    ('BALANCE_MISMATCH', 'a balance does not equal the sum of its movements'),
    ('INVALID_STATE', 'a row is in a state the business rules do not allow'),
    ('OTHER', 'any other corruption (say which in the reason)');

-- One row per quarantine. object_id is the text form of the quarantined row's primary key
-- (see governance.row_object_id), so the scanners, the guard trigger and the application agree.
CREATE TABLE governance.quarantine_record (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_name       text        NOT NULL,
    object_id        text        NOT NULL,
    -- A row of governance.corruption_type: checked by the functions that write records, and
    -- types in use cannot be deleted or renamed (trigger in sql/40_quarantine.sql). Not a
    -- foreign key, whose per-row check would cost a scan of 10,000 suspect rows a third of
    -- its time.
    corruption_type  text        NOT NULL,
    status           text        NOT NULL DEFAULT 'QUARANTINED',
    reason           text        NOT NULL,
    original_data    jsonb,
    quarantined_by   text,
    quarantined_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    reviewed_by      text,
    reviewed_at      timestamptz,
    resolved_by      text,
    resolved_at      timestamptz,
    resolution       text,
    resolution_notes text,
    CONSTRAINT quarantine_record_model_name_check CHECK (length(model_name) BETWEEN 1 AND 255),
    CONSTRAINT quarantine_record_object_id_check CHECK (length(object_id) BETWEEN 1 AND 1000),
    CONSTRAINT quarantine_record_reason_check CHECK (length(reason) BETWEEN 1 AND 10000),
    CONSTRAINT quarantine_record_status_check
        CHECK (status IN ('QUARANTINED', 'UNDER_REVIEW', 'RESOLVED')),
    CONSTRAINT quarantine_record_resolution_check
        CHECK (resolution IN ('REPAIRED', 'DISCARDED', 'FALSE_POSITIVE')),
    -- A resolved record says how, when and why; an open one says none of it.
    CONSTRAINT quarantine_record_resolved_check CHECK (
        (status = 'RESOLVED') = (resolution IS NOT NULL)
        AND (status = 'RESOLVED') = (resolved_at IS NOT NULL)
        AND (status = 'RESOLVED') = (resolution_notes IS NOT NULL)),
    CONSTRAINT quarantine_record_reviewed_check
        CHECK (status <> 'UNDER_REVIEW' OR reviewed_at IS NOT NULL)
);

-- At most one open record per (model, object, type): quarantining again finds this one
-- (INSERT ... ON CONFLICT on this index). It is also the review queue (status <> 'RESOLVED')
-- and the guard trigger's lookup.
CREATE UNIQUE INDEX quarantine_record_open_key
    ON governance.quarantine_record (model_name, object_id, corruption_type)
    WHERE status <> 'RESOLVED';

-- Scans skip objects a reviewer called FALSE_POSITIVE. Partial, like the index above, so that
-- storing new (open) records maintains only these two and the primary key.
CREATE INDEX quarantine_record_false_positive_idx
    ON governance.quarantine_record (model_name, object_id, corruption_type)
    WHERE resolution = 'FALSE_POSITIVE';

REVOKE ALL ON governance.corruption_type, governance.quarantine_record FROM PUBLIC;
GRANT SELECT ON governance.corruption_type, governance.quarantine_record
    TO governance_auditor, governance_admin;
