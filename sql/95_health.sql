-- governance.health_check(): every problem the governance layer can see, one row each.
-- Capabilities add their checks here (e.g. the authority matrix's validate_authority_matrix).
CREATE OR REPLACE FUNCTION governance.health_check()
RETURNS TABLE (component text, severity text, problem text, detail jsonb)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT 'roles'::text, 'error'::text, format('role %s is missing', r)::text,
           jsonb_build_object('role', r)
      FROM unnest(ARRAY['governance_admin', 'governance_app', 'governance_auditor']) AS r
     WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);

    RETURN QUERY
    SELECT 'idempotency'::text, 'warning'::text,
           format('%s claims of %s were abandoned (lease expired, never completed)',
                  count(*), ir.operation_type)::text,
           jsonb_build_object('operation_type', ir.operation_type, 'claims', count(*))
      FROM governance.idempotency_record ir
     WHERE ir.status = 'IN_PROGRESS' AND ir.lease_expires_at <= now()
       AND ir.expires_at > now()
     GROUP BY ir.operation_type;

    IF to_regprocedure('governance.validate_authority_matrix()') IS NOT NULL THEN
        RETURN QUERY EXECUTE
            'SELECT ''authority''::text, v.severity, v.problem, v.detail
               FROM governance.validate_authority_matrix() v';
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION governance.health_check()
TO governance_app, governance_admin, governance_auditor;
