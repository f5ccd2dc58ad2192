-- Authority matrix and delegations (SQLite fallback). Timestamps are ISO 8601 UTC text in the
-- format pygov writes ('YYYY-MM-DDTHH:MM:SS.ffffff+00:00'), which compares like the instants.
-- The triggers here are plain SQL, so that a DBA's edits from the sqlite3 shell obey them too.
-- depends: 0002_audit

CREATE TABLE governance_authority_service (
    service    TEXT PRIMARY KEY CHECK (length(trim(service)) BETWEEN 1 AND 255),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE TABLE governance_authority_model (
    model_name  TEXT PRIMARY KEY CHECK (length(trim(model_name)) BETWEEN 1 AND 255),
    is_critical INTEGER NOT NULL DEFAULT 0 CHECK (is_critical IN (0, 1)),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE TABLE governance_authority_operation (
    operation   TEXT PRIMARY KEY
                CHECK (length(operation) BETWEEN 1 AND 64 AND operation GLOB '[A-Z]*'
                       AND operation NOT GLOB '*[^A-Z0-9_]*'),
    description TEXT
);
INSERT INTO governance_authority_operation (operation, description) VALUES
    ('CREATE', 'insert rows'),
    ('UPDATE', 'change rows'),
    ('DELETE', 'delete rows');

-- As in PostgreSQL, the operation is not a foreign key (the health check reports unknown ones).
CREATE TABLE governance_authority_matrix (
    service    TEXT NOT NULL REFERENCES governance_authority_service (service)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    model_name TEXT NOT NULL REFERENCES governance_authority_model (model_name)
                   ON UPDATE CASCADE ON DELETE CASCADE,
    operation  TEXT NOT NULL CHECK (length(trim(operation)) BETWEEN 1 AND 64),
    granted_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    PRIMARY KEY (service, model_name, operation)
);
CREATE INDEX governance_authority_matrix_model_idx
    ON governance_authority_matrix (model_name, operation);

-- A DBA inserting a grant need not register its service and model first.
CREATE TRIGGER governance_authority_matrix_names BEFORE INSERT ON governance_authority_matrix
BEGIN
    INSERT OR IGNORE INTO governance_authority_service (service) VALUES (NEW.service);
    INSERT OR IGNORE INTO governance_authority_model (model_name) VALUES (NEW.model_name);
END;

-- The duration rule is a CHECK, so a direct INSERT cannot exceed 24 hours either (julianday
-- arithmetic carries a few microseconds of float error: hence the millisecond of slack).
CREATE TABLE governance_authority_delegation (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    from_service  TEXT NOT NULL,
    to_service    TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    operation     TEXT NOT NULL,
    reason        TEXT NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 1000),
    valid_from    TEXT NOT NULL,
    valid_until   TEXT NOT NULL,
    created_by    TEXT,
    created_role  TEXT,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    revoked_at    TEXT,
    revoked_by    TEXT,
    revoke_reason TEXT,
    CHECK (valid_until > valid_from
           AND (julianday(valid_until) - julianday(valid_from)) * 86400.0 <= 86400.001),
    CHECK (from_service <> to_service),
    CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX governance_authority_delegation_live_idx
    ON governance_authority_delegation (to_service, model_name, operation, valid_until)
    WHERE revoked_at IS NULL;

-- The delegation rules hold for direct INSERTs too (delegate() checks them first, and records the
-- violation; this is the backstop).
CREATE TRIGGER governance_authority_delegation_critical
BEFORE INSERT ON governance_authority_delegation
WHEN EXISTS (SELECT 1 FROM governance_authority_model c
              WHERE c.model_name = NEW.model_name AND c.is_critical = 1)
BEGIN
    SELECT RAISE(ABORT, 'GV001: critical models cannot be delegated');
END;

CREATE TRIGGER governance_authority_delegation_grantor
BEFORE INSERT ON governance_authority_delegation
WHEN NOT EXISTS (SELECT 1 FROM governance_authority_matrix m
                  WHERE m.service = NEW.from_service AND m.model_name = NEW.model_name
                    AND m.operation = NEW.operation)
BEGIN
    SELECT RAISE(ABORT, 'GV001: the grantor does not hold this authority in the matrix');
END;

CREATE TRIGGER governance_authority_delegation_grantee
BEFORE INSERT ON governance_authority_delegation
WHEN NOT EXISTS (SELECT 1 FROM governance_authority_service s WHERE s.service = NEW.to_service)
BEGIN
    SELECT RAISE(ABORT, 'GV002: unknown service: add it to the authority matrix first');
END;

-- A delegation is immutable except for its one revocation.
CREATE TRIGGER governance_authority_delegation_immutable
BEFORE UPDATE ON governance_authority_delegation
WHEN NEW.id IS NOT OLD.id OR NEW.from_service IS NOT OLD.from_service
     OR NEW.to_service IS NOT OLD.to_service OR NEW.model_name IS NOT OLD.model_name
     OR NEW.operation IS NOT OLD.operation OR NEW.reason IS NOT OLD.reason
     OR NEW.valid_from IS NOT OLD.valid_from OR NEW.valid_until IS NOT OLD.valid_until
     OR NEW.created_by IS NOT OLD.created_by OR NEW.created_role IS NOT OLD.created_role
     OR NEW.created_at IS NOT OLD.created_at
     OR (OLD.revoked_at IS NOT NULL
         AND (NEW.revoked_at IS NOT OLD.revoked_at OR NEW.revoked_by IS NOT OLD.revoked_by
              OR NEW.revoke_reason IS NOT OLD.revoke_reason))
BEGIN
    SELECT RAISE(ABORT, 'GV002: a delegation cannot be changed, only revoked once');
END;

-- A delegation lends the grantor's authority: when the grantor loses it, or the model becomes
-- critical, its live delegations are revoked (load_matrix does this itself first, audited; these
-- catch direct edits).
CREATE TRIGGER governance_authority_matrix_removed AFTER DELETE ON governance_authority_matrix
BEGIN
    UPDATE governance_authority_delegation
       SET revoked_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
           revoked_by = 'governance',
           revoke_reason = 'the grantor no longer holds this authority in the matrix'
     WHERE revoked_at IS NULL
       AND valid_until > strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')
       AND from_service = OLD.service AND model_name = OLD.model_name
       AND operation = OLD.operation;
END;

CREATE TRIGGER governance_authority_model_critical
AFTER UPDATE OF is_critical ON governance_authority_model
WHEN NEW.is_critical = 1
BEGIN
    UPDATE governance_authority_delegation
       SET revoked_at = strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'),
           revoked_by = 'governance',
           revoke_reason = 'the model became critical'
     WHERE revoked_at IS NULL
       AND valid_until > strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')
       AND model_name = NEW.model_name;
END;

-- Tables guarded by triggers (gov.authority.protect).
CREATE TABLE governance_authority_protected_table (
    table_name   TEXT PRIMARY KEY,
    model_name   TEXT NOT NULL CHECK (length(trim(model_name)) BETWEEN 1 AND 255),
    protected_at TEXT NOT NULL,
    protected_by TEXT
);
