-- Audit trail: explicit logging, trigger auditing, history, retention, seals.
-- Re-applied on every migrate (CREATE OR REPLACE). The tables are in migrations/postgres/0003.

-- governance._audit_trail_guard(): the audit trail is append-only, for every role, the owner
-- included. Only switching the trigger off (superuser or owner) gets past it, and verify_audit
-- catches what is done to sealed rows after that.
CREATE OR REPLACE FUNCTION governance._audit_trail_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.raise_error('GV001', 'the audit trail is append-only: '
        || TG_OP || ' is not allowed',
        jsonb_build_object('table', TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, 'operation', TG_OP,
                           'role', governance.caller_role()));
    RETURN NULL;
END
$$;

-- governance._guard_audit_table(table): the statement-level guard on one table of the trail.
-- Statement triggers on a partitioned table do not fire for statements aimed at a partition,
-- so every partition carries its own (the row-level guard is cloned by PostgreSQL itself).
CREATE OR REPLACE FUNCTION governance._guard_audit_table(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = p_table AND tgname = 'audit_trail_guard_statement') THEN
        EXECUTE format('CREATE TRIGGER audit_trail_guard_statement '
                       'BEFORE UPDATE OR DELETE OR TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION governance._audit_trail_guard()',
                       p_table);
    END IF;
END
$$;

DO $guard$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = 'governance.audit_trail'::regclass
                      AND tgname = 'audit_trail_guard_row') THEN
        CREATE TRIGGER audit_trail_guard_row BEFORE UPDATE OR DELETE ON governance.audit_trail
            FOR EACH ROW EXECUTE FUNCTION governance._audit_trail_guard();
    END IF;
    PERFORM governance._guard_audit_table('governance.audit_trail'::regclass);
    PERFORM governance._guard_audit_table('governance.audit_trail_default'::regclass);
END
$guard$;

-- governance.audit_month_start(t): the first instant of t's month, in UTC (partition bounds).
CREATE OR REPLACE FUNCTION governance.audit_month_start(p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT date_trunc('month', p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' $$;

-- governance.audit_partition_name(month): audit_trail_pYYYY_MM.
CREATE OR REPLACE FUNCTION governance.audit_partition_name(p_month timestamptz)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'audit_trail_p' || to_char(p_month AT TIME ZONE 'UTC', 'YYYY_MM') $$;

-- governance.ensure_audit_partitions(months_ahead): create the partitions of the current month
-- and of the next months_ahead months (UTC) that do not exist yet; returns how many it
-- created. Called by every migrate. A month whose rows already sit in the default partition
-- (migrate was not run for a long time) keeps them there: rows are never moved, and the
-- default partition never refuses one.
CREATE OR REPLACE FUNCTION governance.ensure_audit_partitions(p_months_ahead int DEFAULT 3)
RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_month   timestamptz;
    v_name    text;
    v_created int := 0;
BEGIN
    IF p_months_ahead IS NULL OR p_months_ahead < 0 OR p_months_ahead > 120 THEN
        PERFORM governance.raise_error('GV002', 'months_ahead must be between 0 and 120',
            jsonb_build_object('months_ahead', p_months_ahead));
    END IF;
    FOR i IN 0 .. p_months_ahead LOOP
        v_month := governance.audit_month_start(now()) + make_interval(months => i);
        v_name := governance.audit_partition_name(v_month);
        CONTINUE WHEN to_regclass(format('governance.%I', v_name)) IS NOT NULL;
        CONTINUE WHEN EXISTS (SELECT 1 FROM governance.audit_trail_default d
                               WHERE d.occurred_at >= v_month
                                 AND d.occurred_at < v_month + interval '1 month');
        EXECUTE format('CREATE TABLE governance.%I PARTITION OF governance.audit_trail '
                       'FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_month, v_month + interval '1 month');
        EXECUTE format('REVOKE ALL ON governance.%I FROM PUBLIC', v_name);
        PERFORM governance._guard_audit_table(format('governance.%I', v_name)::regclass);
        v_created := v_created + 1;
    END LOOP;
    RETURN v_created;
END
$$;

-- governance._changed_fields(before, after, ignore): the top-level keys whose values differ,
-- sorted, leaving out the ignored ones; NULL unless both sides are JSON objects.
CREATE OR REPLACE FUNCTION governance._changed_fields(p_before jsonb, p_after jsonb,
                                                      p_ignore text[] DEFAULT '{}')
RETURNS text[]
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN jsonb_typeof(p_before) = 'object' AND jsonb_typeof(p_after) = 'object' THEN
        coalesce((SELECT array_agg(k.key ORDER BY k.key)
                    FROM (SELECT jsonb_object_keys(p_before) AS key
                          UNION
                          SELECT jsonb_object_keys(p_after)) k
                   WHERE (p_before -> k.key) IS DISTINCT FROM (p_after -> k.key)
                     AND k.key <> ALL (coalesce(p_ignore, '{}'))), '{}')
    END
$$;

-- governance._audit_check_text(field, value, max, required): GV002 for bad text arguments.
CREATE OR REPLACE FUNCTION governance._audit_check_text(p_field text, p_value text, p_max int,
                                                        p_required boolean)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_required THEN
            PERFORM governance.raise_error('GV002', p_field || ' is required',
                jsonb_build_object('field', p_field));
        END IF;
        RETURN;
    END IF;
    IF (p_required AND btrim(p_value) = '') OR length(p_value) > p_max THEN
        PERFORM governance.raise_error('GV002',
            format('%s must be 1 to %s characters', p_field, p_max),
            jsonb_build_object('field', p_field, 'length', length(p_value), 'max_length', p_max));
    END IF;
END
$$;

-- governance._audit_check_extra(extra): GV002 unless extra is NULL or a JSON object.
CREATE OR REPLACE FUNCTION governance._audit_check_extra(p_extra jsonb)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_extra IS NOT NULL AND jsonb_typeof(p_extra) <> 'object' THEN
        PERFORM governance.raise_error('GV002', 'extra must be a JSON object',
            jsonb_build_object('field', 'extra', 'type', jsonb_typeof(p_extra)));
    END IF;
END
$$;

-- governance._write_audit(...): insert one audit row with the transaction's context (user,
-- service, ip, user agent, request id) and the caller's database role. Internal: the public
-- logging functions and retention call it; nobody else may (no EXECUTE grant).
CREATE OR REPLACE FUNCTION governance._write_audit(
    p_model_name text, p_object_id text, p_operation text, p_source_service text,
    p_before_data jsonb, p_after_data jsonb, p_changed_fields text[], p_extra jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM governance._audit_check_text('model_name', p_model_name, 255, false),
            governance._audit_check_text('object_id', p_object_id, 1000, false),
            governance._audit_check_text('operation', p_operation, 64, true),
            governance._audit_check_text('source_service', p_source_service, 255, false);
    PERFORM governance._audit_check_extra(p_extra);
    INSERT INTO governance.audit_trail AS a
        (transaction_id, model_name, object_id, operation, source_service, user_name, db_role,
         ip_address, user_agent, request_id, before_data, after_data, changed_fields, extra)
    VALUES (pg_current_xact_id()::text::bigint, p_model_name, p_object_id, p_operation,
            coalesce(p_source_service, governance.ctx('service')), governance.ctx('user'),
            governance.caller_role(), governance.ctx_ip(), governance.ctx('user_agent'),
            governance.ctx('request_id'), p_before_data, p_after_data, p_changed_fields,
            nullif(p_extra, '{}'::jsonb))
    RETURNING a.id INTO v_id;
    RETURN v_id;
END
$$;

-- governance.log_operation(model, object_id, operation, service, before, after, extra, ctx):
-- record an operation explicitly; returns the audit row's id. changed_fields is filled in
-- when before and after are both JSON objects.
CREATE OR REPLACE FUNCTION governance.log_operation(
    p_model_name text, p_object_id text, p_operation text, p_source_service text DEFAULT NULL,
    p_before_data jsonb DEFAULT NULL, p_after_data jsonb DEFAULT NULL,
    p_extra jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._audit_check_text('model_name', p_model_name, 255, true);
    RETURN governance._write_audit(p_model_name, p_object_id, p_operation, p_source_service,
        p_before_data, p_after_data, governance._changed_fields(p_before_data, p_after_data),
        p_extra);
END
$$;

-- governance.log_authority_violation(service, model, operation, reason, extra, ctx): record
-- that a service attempted an operation it has no authority for. The row's operation is
-- AUTHORITY_VIOLATION; the attempted operation and the reason are in extra.
CREATE OR REPLACE FUNCTION governance.log_authority_violation(
    p_service text, p_model_name text, p_operation text, p_reason text DEFAULT NULL,
    p_extra jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._audit_check_text('service', p_service, 255, true),
            governance._audit_check_text('operation', p_operation, 64, true);
    PERFORM governance._audit_check_extra(p_extra);
    RETURN governance._write_audit(p_model_name, NULL, 'AUTHORITY_VIOLATION', p_service,
        NULL, NULL, NULL,
        coalesce(p_extra, '{}'::jsonb)
            || jsonb_strip_nulls(jsonb_build_object('attempted_operation', p_operation,
                                                    'reason', p_reason)));
END
$$;

-- governance.log_admin_access(action, target, extra, ctx): record an administrator's action
-- (operation ADMIN_ACCESS; the action is in extra, the target in model_name).
CREATE OR REPLACE FUNCTION governance.log_admin_access(
    p_action text, p_target text DEFAULT NULL, p_extra jsonb DEFAULT NULL,
    p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._audit_check_text('action', p_action, 255, true);
    PERFORM governance._audit_check_extra(p_extra);
    RETURN governance._write_audit(p_target, NULL, 'ADMIN_ACCESS', NULL, NULL, NULL, NULL,
        coalesce(p_extra, '{}'::jsonb) || jsonb_build_object('action', p_action));
END
$$;

-- governance.log_gateway_operation(gateway, model, object_id, operation, extra, ctx): record an
-- operation made through a gateway service (source_service = the gateway).
CREATE OR REPLACE FUNCTION governance.log_gateway_operation(
    p_gateway text, p_model_name text, p_object_id text, p_operation text,
    p_extra jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._audit_check_text('gateway', p_gateway, 255, true),
            governance._audit_check_text('model_name', p_model_name, 255, true);
    PERFORM governance._audit_check_extra(p_extra);
    RETURN governance._write_audit(p_model_name, p_object_id, p_operation, p_gateway,
        NULL, NULL, NULL, coalesce(p_extra, '{}'::jsonb) || jsonb_build_object('gateway', p_gateway));
END
$$;

GRANT EXECUTE ON FUNCTION
    governance.log_operation(text, text, text, text, jsonb, jsonb, jsonb, jsonb),
    governance.log_authority_violation(text, text, text, text, jsonb, jsonb),
    governance.log_admin_access(text, text, jsonb, jsonb),
    governance.log_gateway_operation(text, text, text, text, jsonb, jsonb)
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION governance.audit_month_start(timestamptz),
    governance.audit_partition_name(timestamptz)
TO governance_app, governance_admin, governance_auditor;
GRANT EXECUTE ON FUNCTION governance.ensure_audit_partitions(int) TO governance_admin;

SELECT governance.ensure_audit_partitions(3);
