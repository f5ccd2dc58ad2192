-- Read-only views for operators (the `pygov` admin CLI, or psql): the tail of the audit trail
-- and an overview of every capability. Re-applied on every migrate (CREATE OR REPLACE).

-- governance.audit_tail(user, since, limit, before_id): the newest audit rows, optionally only
-- one user's and only since a moment; newest first, paged like object_history (pass the last
-- id you got as before_id). Index scans: the primary key (id), or (user_name, occurred_at).
CREATE OR REPLACE FUNCTION governance.audit_tail(p_user text DEFAULT NULL,
                                                 p_since timestamptz DEFAULT NULL,
                                                 p_limit int DEFAULT 50,
                                                 p_before_id bigint DEFAULT NULL)
RETURNS SETOF governance.audit_trail
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        PERFORM governance.raise_error('GV002', 'limit must be between 1 and 10000',
            jsonb_build_object('field', 'limit', 'limit', p_limit));
    END IF;
    RETURN QUERY
    SELECT a.* FROM governance.audit_trail a
     WHERE (p_user IS NULL OR a.user_name = p_user)
       AND (p_since IS NULL OR a.occurred_at >= p_since)
       AND a.id < coalesce(p_before_id, 9223372036854775807)
     ORDER BY a.id DESC
     LIMIT p_limit;
END
$$;

-- governance.admin_stats(): (section, metric, value) rows for an overview: audit volume and
-- seals, quarantine records by status, delegations, advisory lock activity.
-- Sections whose capability is not installed are left out, so it works at any migration level.
CREATE OR REPLACE FUNCTION governance.admin_stats()
RETURNS TABLE (section text, metric text, value jsonb)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regclass('governance.audit_trail') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'audit', m, v FROM (
                SELECT 'rows' AS m, to_jsonb(count(*)) AS v FROM governance.audit_trail
                UNION ALL
                SELECT 'rows_last_24h', to_jsonb(count(*)) FROM governance.audit_trail
                 WHERE occurred_at >= now() - interval '24 hours'
                UNION ALL
                SELECT 'seals', to_jsonb(count(*)) FROM governance.audit_seal
                UNION ALL
                SELECT 'last_seal_at', to_jsonb(max(sealed_at)) FROM governance.audit_seal
                UNION ALL
                SELECT 'audited_tables', to_jsonb(count(*)) FROM governance.audited_table
            ) s $q$;
    END IF;
    IF to_regclass('governance.quarantine_record') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'quarantine', lower(s.status), to_jsonb(count(q.id))
              FROM unnest(ARRAY['QUARANTINED', 'UNDER_REVIEW', 'RESOLVED']) AS s(status)
              LEFT JOIN governance.quarantine_record q ON q.status = s.status
             GROUP BY s.status ORDER BY min(array_position(
                ARRAY['QUARANTINED', 'UNDER_REVIEW', 'RESOLVED'], s.status)) $q$;
    END IF;
    IF to_regclass('governance.authority_delegation') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'delegations', m, to_jsonb(n) FROM (
                SELECT count(*) FILTER (WHERE revoked_at IS NULL AND valid_from <= now()
                                          AND valid_until > now()) AS live,
                       count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked,
                       count(*) FILTER (WHERE revoked_at IS NULL AND valid_until <= now())
                           AS expired
                  FROM governance.authority_delegation) d,
            LATERAL (VALUES ('live', d.live), ('revoked', d.revoked),
                            ('expired', d.expired)) AS v(m, n) $q$;
    END IF;
    IF to_regclass('governance.lock_activity') IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT 'locks', m, to_jsonb(n) FROM (
                SELECT count(*) FILTER (WHERE granted) AS held,
                       count(*) FILTER (WHERE NOT granted) AS waiting
                  FROM governance.lock_activity) l,
            LATERAL (VALUES ('held', l.held), ('waiting', l.waiting)) AS v(m, n) $q$;
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION governance.audit_tail(text, timestamptz, int, bigint),
    governance.admin_stats()
TO governance_admin, governance_auditor;
