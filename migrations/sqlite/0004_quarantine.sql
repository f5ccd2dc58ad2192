-- Quarantine (SQLite fallback): corruption types and quarantine records. JSON is text,
-- timestamps ISO 8601 UTC text.
-- depends: 0001_idempotency

CREATE TABLE governance_corruption_type (
    code        TEXT PRIMARY KEY
        CHECK (length(code) BETWEEN 1 AND 50 AND code GLOB '[A-Z]*'
               AND code NOT GLOB '*[^A-Z0-9_]*'),
    description TEXT NOT NULL CHECK (length(description) BETWEEN 1 AND 1000),
    created_by  TEXT,
    created_at  TEXT NOT NULL
);

INSERT INTO governance_corruption_type (code, description, created_at) VALUES
    ('ORPHANED_RECORD', 'a row references a parent row that does not exist',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('NEGATIVE_STOCK', 'a stock quantity is below zero',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('INVALID_REFERENCE', 'a reference points at the wrong kind of object',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('DUPLICATE_RECORD', 'the same business fact is stored more than once',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('BALANCE_MISMATCH', 'a balance does not equal the sum of its movements',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('INVALID_STATE', 'a row is in a state the business rules do not allow',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
    ('OTHER', 'any other corruption (say which in the reason)',
     strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));

CREATE TABLE governance_quarantine_record (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name       TEXT NOT NULL CHECK (length(model_name) BETWEEN 1 AND 255),
    object_id        TEXT NOT NULL CHECK (length(object_id) BETWEEN 1 AND 1000),
    corruption_type  TEXT NOT NULL
        REFERENCES governance_corruption_type (code) ON UPDATE CASCADE,
    status           TEXT NOT NULL DEFAULT 'QUARANTINED'
        CHECK (status IN ('QUARANTINED', 'UNDER_REVIEW', 'RESOLVED')),
    reason           TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 10000),
    original_data    TEXT CHECK (original_data IS NULL OR json_valid(original_data)),
    quarantined_by   TEXT,
    quarantined_at   TEXT NOT NULL,
    reviewed_by      TEXT,
    reviewed_at      TEXT,
    resolved_by      TEXT,
    resolved_at      TEXT,
    resolution       TEXT CHECK (resolution IN ('REPAIRED', 'DISCARDED', 'FALSE_POSITIVE')),
    resolution_notes TEXT,
    CHECK ((status = 'RESOLVED') = (resolution IS NOT NULL)
           AND (status = 'RESOLVED') = (resolved_at IS NOT NULL)
           AND (status = 'RESOLVED') = (resolution_notes IS NOT NULL)),
    CHECK (status <> 'UNDER_REVIEW' OR reviewed_at IS NOT NULL)
);

CREATE UNIQUE INDEX governance_quarantine_record_open_key
    ON governance_quarantine_record (model_name, object_id, corruption_type)
    WHERE status <> 'RESOLVED';
CREATE INDEX governance_quarantine_record_false_positive_idx
    ON governance_quarantine_record (model_name, object_id, corruption_type)
    WHERE resolution = 'FALSE_POSITIVE';
