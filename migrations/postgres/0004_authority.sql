-- Authority: which service may do which operation on which model, temporary delegations, and
-- the registry of tables whose writes are guarded by it.
-- depends: 0002_idempotency 0003_audit

-- Violations must survive the caller's rollback. PostgreSQL has no autonomous transactions, so
-- they are written through a dblink loopback connection. dblink is not a trusted extension: when
-- the migrating role may not create it (or the server lacks it), authority still works and the
-- violations take the documented fallback (a WARNING in the server log, and the Python wrapper
-- records them in a fresh transaction).
DO $dblink$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'dblink') THEN
        CREATE EXTENSION dblink SCHEMA governance;
    END IF;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
    RAISE WARNING 'pygov: dblink is unavailable (%); authority violations will be recorded by '
                  'the fallback path', SQLERRM;
END
$dblink$;

-- The services the matrix knows (a service may be known and hold nothing: it can still receive
-- a delegation).
CREATE TABLE governance.authority_service (
    service    text        PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT authority_service_name_check CHECK (length(btrim(service)) BETWEEN 1 AND 255)
);

-- The model registry. Critical models can never be delegated.
CREATE TABLE governance.authority_model (
    model_name  text        PRIMARY KEY,
    is_critical boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT authority_model_name_check CHECK (length(btrim(model_name)) BETWEEN 1 AND 255)
);

-- The known operations. Triggers ask for CREATE, UPDATE and DELETE; a deployment may add its own
-- (APPROVE, POST...) for application-level validate() calls.
CREATE TABLE governance.authority_operation (
    operation   text PRIMARY KEY,
    description text,
    CONSTRAINT authority_operation_name_check CHECK (operation ~ '^[A-Z][A-Z0-9_]{0,63}$')
);
INSERT INTO governance.authority_operation (operation, description) VALUES
    ('CREATE', 'insert rows'),
    ('UPDATE', 'change rows'),
    ('DELETE', 'delete rows (and TRUNCATE)');

-- The matrix: one row per (service, model, operation) allowed. A DBA may edit it directly; a
-- trigger registers unknown services and models on the way in. The operation is deliberately not
-- a foreign key: retiring an operation from the known set must not require editing every grant
-- first, and the health check lists the grants left behind.
CREATE TABLE governance.authority_matrix (
    service    text        NOT NULL REFERENCES governance.authority_service (service)
                                ON UPDATE CASCADE ON DELETE CASCADE,
    model_name text        NOT NULL REFERENCES governance.authority_model (model_name)
                                ON UPDATE CASCADE ON DELETE CASCADE,
    operation  text        NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (service, model_name, operation),
    CONSTRAINT authority_matrix_operation_check CHECK (length(btrim(operation)) BETWEEN 1 AND 64)
);
CREATE INDEX authority_matrix_model_idx ON governance.authority_matrix (model_name, operation);

-- Delegations: temporary authority from one service to another. Service names are plain text,
-- not foreign keys: a delegation is history and must outlive a matrix reload that forgets a
-- service (the health check reports live ones that name unknown services). The duration rule is a
-- CHECK so that a DBA's direct INSERT cannot exceed it either.
CREATE TABLE governance.authority_delegation (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_service  text        NOT NULL,
    to_service    text        NOT NULL,
    model_name    text        NOT NULL,
    operation     text        NOT NULL,
    reason        text        NOT NULL,
    valid_from    timestamptz NOT NULL DEFAULT clock_timestamp(),
    valid_until   timestamptz NOT NULL,
    created_by    text,
    created_role  text        NOT NULL DEFAULT current_user,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz,
    revoked_by    text,
    revoke_reason text,
    CONSTRAINT authority_delegation_duration_check
        CHECK (valid_until > valid_from AND valid_until <= valid_from + interval '24 hours'),
    CONSTRAINT authority_delegation_services_check CHECK (from_service <> to_service),
    CONSTRAINT authority_delegation_reason_check CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
    CONSTRAINT authority_delegation_revocation_check
        CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
-- validate() and the table guard look up live delegations by grantee.
CREATE INDEX authority_delegation_live_idx
    ON governance.authority_delegation (to_service, model_name, operation, valid_until)
    WHERE revoked_at IS NULL;
CREATE INDEX authority_delegation_grantor_idx
    ON governance.authority_delegation (from_service, model_name, operation)
    WHERE revoked_at IS NULL;

-- Tables guarded by governance.authority_guard(). regclass survives dump/restore and renames.
CREATE TABLE governance.authority_protected_table (
    table_name   regclass    PRIMARY KEY,
    model_name   text        NOT NULL,
    protected_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    protected_by text,
    CONSTRAINT authority_protected_table_model_check
        CHECK (length(btrim(model_name)) BETWEEN 1 AND 255)
);

REVOKE ALL ON governance.authority_service, governance.authority_model,
    governance.authority_operation, governance.authority_matrix,
    governance.authority_delegation, governance.authority_protected_table FROM PUBLIC;
GRANT SELECT ON governance.authority_service, governance.authority_model,
    governance.authority_operation, governance.authority_matrix,
    governance.authority_delegation, governance.authority_protected_table
    TO governance_auditor, governance_admin;
-- DBAs edit the matrix in SQL; delegations may be inserted and revoked directly (the CHECKs and
-- triggers hold them to the same rules as delegate_authority).
GRANT INSERT, UPDATE, DELETE ON governance.authority_service, governance.authority_model,
    governance.authority_operation, governance.authority_matrix TO governance_admin;
GRANT INSERT, UPDATE (revoked_at, revoked_by, revoke_reason)
    ON governance.authority_delegation TO governance_admin;
