-- Schema governance and the three roles (roles are cluster-wide: created only when missing).
-- depends:

CREATE SCHEMA IF NOT EXISTS governance;

DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['governance_admin', 'governance_app', 'governance_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database of this cluster created it at the same moment
            END;
        END IF;
    END LOOP;
END
$roles$;

-- An admin can do what the application can.
DO $grant$
BEGIN
    IF NOT pg_has_role('governance_admin', 'governance_app', 'MEMBER') THEN
        GRANT governance_app TO governance_admin;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$grant$;

REVOKE ALL ON SCHEMA governance FROM PUBLIC;
GRANT USAGE ON SCHEMA governance TO governance_app, governance_auditor, governance_admin;
