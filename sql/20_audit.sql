-- Audit trail: explicit logging, trigger auditing, history, retention, seals.
-- Re-applied on every migrate (CREATE OR REPLACE). The tables are in migrations/postgres/0003.

-- governance._audit_trail_guard(): the audit trail (and its seals) is append-only, for every role, the owner
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
    -- Seals are as append-only as the rows they seal.
    PERFORM governance._guard_audit_table('governance.audit_seal'::regclass);
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
        coalesce((SELECT array_agg(k.key ORDER BY k.key COLLATE "C")
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
    IF (p_required AND governance.is_blank(p_value)) OR length(p_value) > p_max THEN
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

-- governance._require_own_model(model_name): GV001 when a caller other than an admin names a
-- model of the governance schema. Its history is written by the governance functions only: a
-- forged row could, for one, make object_at of a quarantine record show another state. (Rows
-- of log_authority_violation and log_admin_access change no object's state: they may name any
-- model.)
CREATE OR REPLACE FUNCTION governance._require_own_model(p_model_name text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF starts_with(p_model_name, 'governance.') AND NOT governance.caller_is_admin() THEN
        PERFORM governance.raise_error('GV001',
            'models of the governance schema are recorded by the governance functions only',
            jsonb_build_object('field', 'model_name', 'model_name', p_model_name,
                               'role', governance.caller_role()));
    END IF;
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
    PERFORM governance._require_own_model(p_model_name);
    RETURN governance._log_operation(p_model_name, p_object_id, p_operation, p_source_service,
                                     p_before_data, p_after_data, p_extra);
END
$$;

-- governance._log_operation(...): log_operation without its context and its guard on the
-- governance schema's models, for the governance functions. A model that names a table is
-- recorded as that table's (governance.model_source), so that its rows stay as readable as the
-- table after a rename or a drop.
CREATE OR REPLACE FUNCTION governance._log_operation(
    p_model_name text, p_object_id text, p_operation text, p_source_service text,
    p_before_data jsonb, p_after_data jsonb, p_extra jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance._audit_check_text('model_name', p_model_name, 255, true);
    PERFORM governance._record_model_source(p_model_name);
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
    PERFORM governance._require_own_model(p_model_name);
    RETURN governance._write_audit(p_model_name, p_object_id, p_operation, p_gateway,
        NULL, NULL, NULL, coalesce(p_extra, '{}'::jsonb) || jsonb_build_object('gateway', p_gateway));
END
$$;

-- --- automatic auditing by triggers ------------------------------------------------------

-- governance._audit_object_id(row, key_columns): the text form of a row's key. One column:
-- its value as text; several: each escaped as key_part does and joined by ':'; none: NULL.
CREATE OR REPLACE FUNCTION governance._audit_object_id(p_row jsonb, p_keys text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE cardinality(p_keys)
        WHEN 0 THEN NULL
        WHEN 1 THEN p_row ->> p_keys[1]
        ELSE array_to_string(ARRAY(
            SELECT replace(replace(coalesce(p_row ->> k.col, ''), '%', '%25'), ':', '%3A')
              FROM unnest(p_keys) WITH ORDINALITY AS k(col, n)
             ORDER BY k.n), ':')
    END
$$;

-- governance._audit_trigger(model, key_columns, ignore_columns): the statement-level trigger
-- that enable_audit installs (its settings travel as trigger arguments: no lookup per
-- statement). One INSERT ... SELECT per statement over the transition tables, however many
-- rows it touched. UPDATE pairs the old and new transition rows by position (PostgreSQL
-- appends both at once for each row; unnest of the two arrays zips them), so tables without a
-- key and updates of the key itself pair correctly. PL/pgSQL compiles a trigger function per trigger, so these static queries
-- are planned once per audited table. The common single-column key is read inline; only
-- composite keys call _audit_object_id.
CREATE OR REPLACE FUNCTION governance._audit_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_model   text := TG_ARGV[0];
    v_keys    text[] := coalesce(TG_ARGV[1], '{}')::text[];
    v_ignore  text[] := coalesce(TG_ARGV[2], '{}')::text[];
    v_nkeys   int := cardinality(v_keys);
    v_key     text := v_keys[1];
    v_now     timestamptz := clock_timestamp();
    v_xid     bigint := pg_current_xact_id()::text::bigint;
    v_role    text := coalesce(nullif(current_setting('role'), 'none'), session_user::text);
    v_user    text := nullif(current_setting('governance.user', true), '');
    v_service text := nullif(current_setting('governance.service', true), '');
    v_agent   text := nullif(current_setting('governance.user_agent', true), '');
    v_request text := nullif(current_setting('governance.request_id', true), '');
    v_ip      inet;
BEGIN
    IF TG_NARGS < 3 THEN
        -- Installed without its settings (by hand): take them from the catalog.
        SELECT t.model_name, t.key_columns, t.ignore_columns INTO v_model, v_keys, v_ignore
          FROM governance.audited_table t WHERE t.table_oid = TG_RELID;
        v_model := coalesce(v_model, format('%s.%s', TG_TABLE_SCHEMA, TG_TABLE_NAME));
        v_keys := coalesce(v_keys, '{}');
        v_ignore := coalesce(v_ignore, '{}');
        v_nkeys := cardinality(v_keys);
        v_key := v_keys[1];
    END IF;
    IF nullif(current_setting('governance.ip', true), '') IS NOT NULL THEN
        v_ip := governance.ctx_ip();
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO governance.audit_trail
            (occurred_at, transaction_id, model_name, object_id, operation, source_service,
             user_name, db_role, ip_address, user_agent, request_id, after_data)
        SELECT v_now, v_xid, v_model,
               CASE v_nkeys WHEN 1 THEN n.j ->> v_key WHEN 0 THEN NULL
                            ELSE governance._audit_object_id(n.j, v_keys) END,
               'CREATE', v_service, v_user, v_role, v_ip, v_agent, v_request, n.j
          -- OFFSET 0 keeps the subquery: pulled up, to_jsonb would run once per use.
          FROM (SELECT to_jsonb(r) AS j FROM pygov_audit_new r OFFSET 0) n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO governance.audit_trail
            (occurred_at, transaction_id, model_name, object_id, operation, source_service,
             user_name, db_role, ip_address, user_agent, request_id, before_data, after_data,
             changed_fields)
        SELECT v_now, v_xid, v_model,
               CASE v_nkeys WHEN 1 THEN u.n ->> v_key WHEN 0 THEN NULL
                            ELSE governance._audit_object_id(u.n, v_keys) END,
               'UPDATE', v_service, v_user, v_role, v_ip, v_agent, v_request, u.o, u.n, c.changed
          FROM unnest((SELECT array_agg(to_jsonb(r)) FROM pygov_audit_old r),
                      (SELECT array_agg(to_jsonb(r)) FROM pygov_audit_new r)) AS u(o, n)
         CROSS JOIN LATERAL (
             -- Old and new rows have the same columns: the keys of one are the keys of both.
             SELECT array_agg(e.key ORDER BY e.key COLLATE "C") AS changed
               FROM jsonb_each(u.n) e
              WHERE e.value IS DISTINCT FROM u.o -> e.key AND e.key <> ALL (v_ignore)) c
         WHERE c.changed IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO governance.audit_trail
            (occurred_at, transaction_id, model_name, object_id, operation, source_service,
             user_name, db_role, ip_address, user_agent, request_id, before_data)
        SELECT v_now, v_xid, v_model,
               CASE v_nkeys WHEN 1 THEN o.j ->> v_key WHEN 0 THEN NULL
                            ELSE governance._audit_object_id(o.j, v_keys) END,
               'DELETE', v_service, v_user, v_role, v_ip, v_agent, v_request, o.j
          FROM (SELECT to_jsonb(r) AS j FROM pygov_audit_old r OFFSET 0) o;
    ELSE
        INSERT INTO governance.audit_trail
            (occurred_at, transaction_id, model_name, object_id, operation, source_service,
             user_name, db_role, ip_address, user_agent, request_id, extra)
        VALUES (v_now, v_xid, v_model, NULL, 'TRUNCATE', v_service, v_user, v_role, v_ip,
                v_agent, v_request,
                jsonb_build_object('table', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)));
    END IF;
    RETURN NULL;
END
$$;

-- governance._audit_require_owner(table, action): GV001 unless the caller may change the
-- table's triggers (owns it, or belongs to governance_admin).
CREATE OR REPLACE FUNCTION governance._audit_require_owner(p_table regclass, p_action text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT governance.caller_is_admin()
       AND NOT pg_has_role(governance.caller_role(),
                           (SELECT c.relowner FROM pg_class c WHERE c.oid = p_table), 'USAGE') THEN
        PERFORM governance.raise_error('GV001',
            p_action || ' requires owning the table or the governance_admin role',
            jsonb_build_object('table', p_table::text, 'role', governance.caller_role()));
    END IF;
END
$$;

-- governance._audit_drop_triggers(table): drop the audit triggers that exist; returns how many.
CREATE OR REPLACE FUNCTION governance._audit_drop_triggers(p_table regclass)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text;
    v_count int := 0;
BEGIN
    FOR v_name IN
        SELECT tgname FROM pg_trigger
         WHERE tgrelid = p_table AND tgname IN ('pygov_audit_insert', 'pygov_audit_update',
                                                'pygov_audit_delete', 'pygov_audit_truncate')
    LOOP
        -- The table reaches DDL as a regclass (printed schema-qualified and quoted).
        EXECUTE format('DROP TRIGGER %I ON %s', v_name, p_table);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- The audited tables, as DBAs see them. triggers_installed is false when someone dropped one
-- of the four triggers behind enable_audit's back.
CREATE OR REPLACE VIEW governance.audited_tables AS
SELECT format('%I.%I', n.nspname, c.relname) AS table_name,
       t.model_name, t.key_columns, t.ignore_columns, t.enabled_at, t.enabled_by,
       (SELECT count(*) FROM pg_trigger g
         WHERE g.tgrelid = c.oid AND g.tgenabled <> 'D'
           AND g.tgname IN ('pygov_audit_insert', 'pygov_audit_update', 'pygov_audit_delete',
                            'pygov_audit_truncate')) = 4 AS triggers_installed
  FROM governance.audited_table t
  JOIN pg_class c ON c.oid = t.table_oid
  JOIN pg_namespace n ON n.oid = c.relnamespace;

-- governance.enable_audit(table, ignore_columns, model_name, key_columns, ctx): audit every
-- INSERT, UPDATE, DELETE and TRUNCATE of the table. The key defaults to the primary key, else
-- the replica identity index; without one, rows are recorded with a NULL object_id.
-- ignore_columns never count as a change. Enabling again with the same settings is a no-op;
-- with new settings it updates them. Returns the table's row of governance.audited_tables.
CREATE OR REPLACE FUNCTION governance.enable_audit(
    p_table regclass, p_ignore_columns text[] DEFAULT '{}', p_model_name text DEFAULT NULL,
    p_key_columns text[] DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.audited_tables
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_class   pg_class;
    v_schema  text;
    v_qual    text;
    v_model   text;
    v_keys    text[];
    v_ignore  text[] := ARRAY(SELECT DISTINCT x FROM unnest(coalesce(p_ignore_columns, '{}')) x
                               ORDER BY 1);
    v_columns text[];
    v_unknown text[];
    v_old     governance.audited_table;
    v_triggers int;
    v_args    text;
BEGIN
    PERFORM governance.apply_context(p_context);
    IF p_table IS NULL THEN
        PERFORM governance.raise_error('GV002', 'table is required', '{"field": "table"}');
    END IF;
    SELECT * INTO v_class FROM pg_class WHERE oid = p_table;
    IF v_class.relkind NOT IN ('r', 'p') THEN
        PERFORM governance.raise_error('GV002', 'only tables can be audited',
            jsonb_build_object('table', p_table::text, 'relkind', v_class.relkind));
    END IF;
    SELECT nspname INTO v_schema FROM pg_namespace WHERE oid = v_class.relnamespace;
    IF v_schema = 'governance' THEN
        PERFORM governance.raise_error('GV002', 'governance tables cannot be audited by triggers',
            jsonb_build_object('table', p_table::text));
    END IF;
    PERFORM governance._audit_require_owner(p_table, 'enable_audit');
    v_qual := format('%I.%I', v_schema, v_class.relname);
    v_model := coalesce(p_model_name, v_schema || '.' || v_class.relname);
    PERFORM governance._audit_check_text('model_name', v_model, 255, true);
    PERFORM governance._require_own_model(v_model);
    -- A model name of other tables would let this table's readers read their history (see
    -- governance.caller_may_read): only for those who may read it already.
    IF p_model_name IS NOT NULL AND NOT governance.caller_is_admin()
       AND NOT governance.caller_may_read(v_model) THEN
        PERFORM governance.raise_error('GV001',
            'the model name is already used for tables the caller may not read',
            jsonb_build_object('field', 'model_name', 'model_name', v_model,
                               'role', governance.caller_role()));
    END IF;

    v_columns := ARRAY(SELECT a.attname::text FROM pg_attribute a
                        WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped);
    v_unknown := ARRAY(SELECT x FROM unnest(v_ignore || coalesce(p_key_columns, '{}')) x
                        WHERE x IS NULL OR x <> ALL (v_columns));
    IF cardinality(v_unknown) > 0 THEN
        PERFORM governance.raise_error('GV002', 'no such column in the table',
            jsonb_build_object('table', v_qual, 'columns', to_jsonb(v_unknown)));
    END IF;
    v_keys := coalesce(p_key_columns, ARRAY(
        SELECT a.attname::text
          FROM (SELECT i.indkey FROM pg_index i
                 WHERE i.indrelid = p_table AND (i.indisprimary OR i.indisreplident)
                 ORDER BY i.indisprimary DESC LIMIT 1) i
         CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = p_table AND a.attnum = k.attnum
         ORDER BY k.n));

    SELECT * INTO v_old FROM governance.audited_table WHERE table_oid = p_table FOR UPDATE;
    SELECT count(*) INTO v_triggers FROM pg_trigger
     WHERE tgrelid = p_table AND tgname IN ('pygov_audit_insert', 'pygov_audit_update',
                                            'pygov_audit_delete', 'pygov_audit_truncate');
    IF v_old.table_oid IS NOT NULL AND v_triggers = 4 AND v_old.model_name = v_model
       AND v_old.key_columns = v_keys AND v_old.ignore_columns = v_ignore THEN
        RETURN QUERY SELECT * FROM governance.audited_tables WHERE table_name = v_qual;
        RETURN;
    END IF;

    INSERT INTO governance.audited_table AS t
        (table_oid, model_name, key_columns, ignore_columns, enabled_by)
    VALUES (p_table, v_model, v_keys, v_ignore,
            coalesce(governance.ctx('user'), governance.caller_role()))
    ON CONFLICT (table_oid) DO UPDATE
       SET model_name = excluded.model_name, key_columns = excluded.key_columns,
           ignore_columns = excluded.ignore_columns, enabled_at = clock_timestamp(),
           enabled_by = excluded.enabled_by;
    INSERT INTO governance.model_source (model_name, table_oid)
    SELECT v_model, p_table WHERE NOT starts_with(v_model, 'governance.')
    ON CONFLICT DO NOTHING;

    PERFORM governance._audit_drop_triggers(p_table);
    -- Table names reach DDL only through %I; the settings are trigger arguments (%L).
    v_args := format('%L, %L, %L', v_model, v_keys, v_ignore);
    EXECUTE format('CREATE TRIGGER pygov_audit_insert AFTER INSERT ON %s '
                   'REFERENCING NEW TABLE AS pygov_audit_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance._audit_trigger(%s)',
                   v_qual, v_args);
    EXECUTE format('CREATE TRIGGER pygov_audit_update AFTER UPDATE ON %s '
                   'REFERENCING OLD TABLE AS pygov_audit_old NEW TABLE AS pygov_audit_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance._audit_trigger(%s)',
                   v_qual, v_args);
    EXECUTE format('CREATE TRIGGER pygov_audit_delete AFTER DELETE ON %s '
                   'REFERENCING OLD TABLE AS pygov_audit_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance._audit_trigger(%s)',
                   v_qual, v_args);
    EXECUTE format('CREATE TRIGGER pygov_audit_truncate AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance._audit_trigger(%s)',
                   v_qual, v_args);

    PERFORM governance._write_audit(v_model, NULL, 'AUDIT_ENABLED', NULL, NULL, NULL, NULL,
        jsonb_build_object('table', v_qual, 'key_columns', to_jsonb(v_keys),
                           'ignore_columns', to_jsonb(v_ignore)));
    RETURN QUERY SELECT * FROM governance.audited_tables WHERE table_name = v_qual;
END
$$;

-- governance.disable_audit(table, ctx): remove the audit triggers; returns false when the
-- table was not audited. Switching auditing off is itself audited (AUDIT_DISABLED).
CREATE OR REPLACE FUNCTION governance.disable_audit(p_table regclass,
                                                    p_context jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_qual text;
    v_old  governance.audited_table;
    v_had  int;
BEGIN
    PERFORM governance.apply_context(p_context);
    IF p_table IS NULL THEN
        PERFORM governance.raise_error('GV002', 'table is required', '{"field": "table"}');
    END IF;
    PERFORM governance._audit_require_owner(p_table, 'disable_audit');
    SELECT format('%I.%I', n.nspname, c.relname) INTO v_qual
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    DELETE FROM governance.audited_table WHERE table_oid = p_table RETURNING * INTO v_old;
    v_had := governance._audit_drop_triggers(p_table);
    IF v_old.table_oid IS NULL AND v_had = 0 THEN
        RETURN false;
    END IF;
    PERFORM governance._write_audit(coalesce(v_old.model_name, v_qual), NULL, 'AUDIT_DISABLED',
        NULL, NULL, NULL, NULL, jsonb_build_object('table', v_qual));
    RETURN true;
END
$$;

-- --- reading the trail ---------------------------------------------------------------------

-- governance._model_tables(model_name): the relations a "schema.table" model name names
-- (tables, views, materialized views, foreign tables; a dotted schema or table name can make it
-- more than one), outside the governance schema.
CREATE OR REPLACE FUNCTION governance._model_tables(p_model_name text)
RETURNS SETOF oid
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
     WHERE n.nspname <> 'governance' AND starts_with(p_model_name, n.nspname || '.')
       AND c.relname = substr(p_model_name, length(n.nspname) + 2)
       AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
$$;

-- governance._record_model_source(model_name): remember the tables a model name names now.
CREATE OR REPLACE FUNCTION governance._record_model_source(p_model_name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO governance.model_source (model_name, table_oid)
    SELECT p_model_name, t.oid FROM governance._model_tables(p_model_name) AS t(oid)
     WHERE t.oid IN (SELECT c.oid FROM pg_class c WHERE c.relkind IN ('r', 'p'))
       AND NOT starts_with(p_model_name, 'governance.')
    ON CONFLICT DO NOTHING;
END
$$;

-- governance._rls_applies(table, role): does row-level security hide rows of the table from
-- the role? (It is enabled, and the role is no superuser, has no BYPASSRLS and does not own the
-- table, or the table forces it on its owner too.)
CREATE OR REPLACE FUNCTION governance._rls_applies(p_table oid, p_role text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_class c, pg_roles r
         WHERE c.oid = p_table AND c.relrowsecurity AND r.rolname = p_role
           AND NOT r.rolsuper AND NOT r.rolbypassrls
           AND (c.relforcerowsecurity OR NOT pg_has_role(r.oid, c.relowner, 'MEMBER')))
$$;

-- governance._caller_reads_table(table): may the caller read every row of the table itself?
-- SELECT on it, USAGE on its schema, and no row-level security that applies to the caller.
CREATE OR REPLACE FUNCTION governance._caller_reads_table(p_table oid)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(has_table_privilege(governance.caller_role(), c.oid, 'SELECT')
                    AND has_schema_privilege(governance.caller_role(), c.relnamespace, 'USAGE')
                    AND NOT governance._rls_applies(c.oid, governance.caller_role()), false)
      FROM pg_class c WHERE c.oid = p_table
$$;

-- governance.caller_may_read(model_name): may the caller see the data recorded under this model
-- name (audit rows, quarantine snapshots)? Data copied from a table is shown only to roles that
-- may read that table themselves (governance._caller_reads_table), and to members of
-- governance_auditor and governance_admin: without this, any governance_app role could read,
-- through the history, rows it is not allowed to SELECT. The tables of a model are those that
-- ever recorded under it (governance.model_source: audited and scanned tables, kept after a
-- rename, a drop or disable_audit), its audited table, and the table its "schema.table" name
-- names (governance tables excepted: their data is read through the governance functions). A
-- name with none of these (an application's own, for data it logged itself) is readable; one
-- with a table that is gone is not, since no privilege on it can be checked any more.
-- (PL/pgSQL, not SQL: its body names governance.model_source, which the function files must
-- not need at creation, when they are loaded over an older schema.)
CREATE OR REPLACE FUNCTION governance.caller_may_read(p_model_name text)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- The governance schema's models are read through its functions (which hide what they
    -- must); no table of an application's can stand for one.
    IF starts_with(p_model_name, 'governance.') THEN
        RETURN true;
    END IF;
    RETURN (
    WITH recorded AS (
        SELECT s.table_oid AS oid FROM governance.model_source s
         WHERE s.model_name = p_model_name
        UNION
        SELECT a.table_oid FROM governance.audited_table a WHERE a.model_name = p_model_name),
    sources AS (
        SELECT r.oid FROM recorded r
        UNION
        SELECT t.oid FROM governance._model_tables(p_model_name) AS t(oid))
    SELECT p_model_name IS NOT NULL
       AND (pg_catalog.pg_has_role(governance.caller_role(), 'governance_auditor', 'MEMBER')
            OR governance.caller_is_admin()
            -- every table the model ever had must still exist and be readable by the caller
            OR NOT EXISTS (SELECT 1 FROM sources s
                            WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                                               WHERE c.oid = s.oid)
                               OR NOT governance._caller_reads_table(s.oid))));
END
$$;

-- governance._require_read(model_name): GV001 unless governance.caller_may_read(model_name).
CREATE OR REPLACE FUNCTION governance._require_read(p_model_name text)
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF NOT governance.caller_may_read(p_model_name) THEN
        PERFORM governance.raise_error('GV001',
            format('reading the history of %s requires the SELECT privilege on its table',
                   p_model_name),
            jsonb_build_object('field', 'model_name', 'model_name', p_model_name,
                               'role', governance.caller_role(), 'privilege', 'SELECT'));
    END IF;
END
$$;

DROP FUNCTION IF EXISTS governance._redact_quarantine_snapshot(governance.audit_trail);

-- governance.object_history(model, object_id, limit, before_id): the object's audit rows,
-- newest first; pass the last id you got as before_id for the next page. The object index is
-- keyed on (model_name, octet_length(object_id), object_id, id): giving the length makes this a
-- backward index scan that stops after p_limit rows.
CREATE OR REPLACE FUNCTION governance.object_history(p_model_name text, p_object_id text,
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
    PERFORM governance._require_read(p_model_name);
    -- A quarantine record's rows lose the snapshot of the quarantined data when the caller may
    -- not read its table (AND stops at the first false: other models never ask).
    RETURN QUERY
    SELECT a.id, a.occurred_at, a.transaction_id, a.model_name, a.object_id, a.operation,
           a.source_service, a.user_name, a.db_role, a.ip_address, a.user_agent, a.request_id,
           CASE WHEN a.hide THEN a.before_data - 'original_data' ELSE a.before_data END,
           CASE WHEN a.hide THEN a.after_data - 'original_data' ELSE a.after_data END,
           a.changed_fields, a.extra
      FROM (SELECT t.*, p_model_name = 'governance.quarantine_record'
                        AND NOT governance.caller_may_read(t.extra ->> 'quarantined_model') AS hide
              FROM governance.audit_trail t
             WHERE t.model_name = p_model_name
               AND octet_length(t.object_id) = octet_length(p_object_id)
               AND t.object_id = p_object_id
               AND t.id < coalesce(p_before_id, 9223372036854775807)
             ORDER BY t.id DESC
             LIMIT p_limit) a
     ORDER BY a.id DESC;
END
$$;

-- governance.object_at(model, object_id, at): the object as it was at that moment, rebuilt
-- from the trail (each CREATE/UPDATE's after_data merged over the state before it; DELETE and
-- TRUNCATE end it). NULL when it did not exist then.
CREATE OR REPLACE FUNCTION governance.object_at(p_model_name text, p_object_id text,
                                                p_at timestamptz)
RETURNS jsonb
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state jsonb;
    r record;
BEGIN
    IF p_at IS NULL THEN
        PERFORM governance.raise_error('GV002', 'at is required', '{"field": "at"}');
    END IF;
    PERFORM governance._require_read(p_model_name);
    FOR r IN
        SELECT s.operation, s.after_data FROM (
            SELECT a.id, a.operation, a.after_data FROM governance.audit_trail a
             WHERE a.model_name = p_model_name
               AND octet_length(a.object_id) = octet_length(p_object_id)
               AND a.object_id = p_object_id AND a.occurred_at <= p_at
               AND (a.after_data IS NOT NULL OR a.operation = 'DELETE')
            UNION ALL
            SELECT a.id, a.operation, NULL FROM governance.audit_trail a
             WHERE a.model_name = p_model_name AND a.object_id IS NULL
               AND a.operation = 'TRUNCATE' AND a.occurred_at <= p_at) s
         ORDER BY s.id
    LOOP
        IF r.operation IN ('DELETE', 'TRUNCATE') THEN
            v_state := NULL;
        ELSIF jsonb_typeof(v_state) = 'object' AND jsonb_typeof(r.after_data) = 'object'
              AND r.operation <> 'CREATE' THEN
            v_state := v_state || r.after_data;
        ELSE
            v_state := r.after_data;
        END IF;
    END LOOP;
    -- Whose snapshot it is comes from the record itself, not from the rebuilt state.
    IF p_model_name = 'governance.quarantine_record' AND v_state ? 'original_data'
       AND NOT coalesce(governance.caller_may_read(
               (SELECT q.model_name FROM governance.quarantine_record q
                 WHERE q.id = CASE WHEN p_object_id ~ '^[0-9]{1,18}$'
                                   THEN p_object_id::bigint END)), false) THEN
        v_state := v_state - 'original_data';
    END IF;
    RETURN v_state;
END
$$;

-- --- retention ----------------------------------------------------------------------------

-- governance.drop_audit_before(month, ctx): the one way rows leave the trail. Detaches and
-- drops every monthly partition that ends on or before the start of `month` (UTC; the current
-- month cannot be dropped), records the cutoff so that verify_audit skips those months'
-- seals, and leaves a RETENTION audit row. governance_admin only. Returns the partitions
-- dropped. Rows of old months held by the default partition stay (they are never moved).
CREATE OR REPLACE FUNCTION governance.drop_audit_before(p_month timestamptz,
                                                        p_context jsonb DEFAULT NULL)
RETURNS TABLE (partition_name text, month timestamptz, rows_dropped bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cutoff timestamptz := governance.audit_month_start(p_month);
    v_names  text[] := '{}';
    v_total  bigint := 0;
    r record;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance.require_admin('drop_audit_before');
    IF p_month IS NULL OR v_cutoff > governance.audit_month_start(now()) THEN
        PERFORM governance.raise_error('GV002',
            'month must be at most the current month: the current month cannot be dropped',
            jsonb_build_object('month', p_month));
    END IF;
    FOR r IN
        SELECT c.oid::regclass AS part, c.relname::text AS name,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                             'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)')) AS bounds
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'governance.audit_trail'::regclass
           AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
         ORDER BY 3
    LOOP
        CONTINUE WHEN r.bounds IS NULL OR r.bounds[2]::timestamptz > v_cutoff;
        partition_name := r.name;
        month := r.bounds[1]::timestamptz;
        EXECUTE format('SELECT count(*) FROM %s', r.part) INTO rows_dropped;
        EXECUTE format('ALTER TABLE governance.audit_trail DETACH PARTITION %s', r.part);
        EXECUTE format('DROP TABLE %s', r.part);
        v_names := v_names || r.name;
        v_total := v_total + rows_dropped;
        RETURN NEXT;
    END LOOP;
    INSERT INTO governance.audit_retention (cutoff, partitions, dropped_by)
    VALUES (v_cutoff, v_names, coalesce(governance.ctx('user'), governance.caller_role()));
    PERFORM governance._write_audit('governance.audit_trail', NULL, 'RETENTION', NULL, NULL,
        NULL, NULL, jsonb_build_object('cutoff', v_cutoff, 'partitions', to_jsonb(v_names),
                                       'rows_dropped', v_total));
END
$$;

-- --- seals ---------------------------------------------------------------------------------

-- governance._audit_row_digest(row): SHA-256 of a row's canonical form. The columns are
-- listed (not to_jsonb(row)) so that a column added later does not change old digests; the
-- functions that call it pin TimeZone to UTC so that timestamps always print alike.
CREATE OR REPLACE FUNCTION governance._audit_row_digest(a governance.audit_trail)
RETURNS bytea
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(convert_to(jsonb_build_array(
        a.id, a.occurred_at, a.transaction_id, a.model_name, a.object_id, a.operation,
        a.source_service, a.user_name, a.db_role, a.ip_address, a.user_agent, a.request_id,
        a.before_data, a.after_data, a.changed_fields, a.extra)::text, 'UTF8'))
$$;

-- governance._audit_digest64(digest): the first 8 bytes of a digest, kept per row in the seal
-- so that verify_audit can name the first row that changed.
CREATE OR REPLACE FUNCTION governance._audit_digest64(p_digest bytea)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ('x' || encode(substring(p_digest FROM 1 FOR 8), 'hex'))::bit(64)::bigint $$;

-- governance._audit_seal_hash(previous, month, from_xid, to_xid, count, rows_hash): the hash
-- of one seal, chaining the previous seal's hash.
CREATE OR REPLACE FUNCTION governance._audit_seal_hash(p_previous text, p_month timestamptz,
                                                       p_from bigint, p_to bigint,
                                                       p_count bigint, p_rows_hash bytea)
RETURNS text
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', p_previous,
                                              to_char(p_month AT TIME ZONE 'UTC', 'YYYY-MM'),
                                              p_from, p_to, p_count, ''), 'UTF8')
                         || coalesce(p_rows_hash, ''::bytea)), 'hex')
$$;

-- governance._audit_seal_rows(from_xid, to_xid, month): what a seal covers, read now: the
-- rows written by transactions in [from_xid, to_xid) in that month, in id order.
CREATE OR REPLACE FUNCTION governance._audit_seal_rows(p_from bigint, p_to bigint,
                                                       p_month timestamptz)
RETURNS TABLE (row_count bigint, first_id bigint, last_id bigint, row_ids bigint[],
               row_digests bigint[], rows_hash bytea)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
    SELECT count(*), min(d.id), max(d.id),
           coalesce(array_agg(d.id ORDER BY d.id), '{}'),
           coalesce(array_agg(governance._audit_digest64(d.digest) ORDER BY d.id), '{}'),
           sha256(coalesce(string_agg(d.digest, ''::bytea ORDER BY d.id), ''::bytea))
      FROM (SELECT a.id, governance._audit_row_digest(a) AS digest
              FROM governance.audit_trail a
             WHERE a.transaction_id >= p_from AND a.transaction_id < p_to
               AND a.occurred_at >= p_month AND a.occurred_at < p_month + interval '1 month') d
$$;

-- governance.seal_audit(ctx): seal every audit row written by transactions that have finished
-- since the last seal, one seal per month, each chained to the one before. Writers are never
-- waited for: the seal ends at the oldest transaction still running (its rows, and any later,
-- go into the next seal), and only concurrent sealers wait for each other. Returns the seals.
CREATE OR REPLACE FUNCTION governance.seal_audit(p_context jsonb DEFAULT NULL)
RETURNS TABLE (seal_id bigint, month timestamptz, row_count bigint, first_id bigint,
               last_id bigint, hash text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
DECLARE
    v_from bigint;
    v_to   bigint;
    v_prev text;
    v_by   text;
    m record;
    r record;
BEGIN
    PERFORM governance.apply_context(p_context);
    -- Sealers take turns; writers never touch this lock.
    PERFORM pg_advisory_xact_lock(hashtext('governance.seal_audit'));
    SELECT s.to_xid, s.hash INTO v_from, v_prev
      FROM governance.audit_seal s ORDER BY s.id DESC LIMIT 1;
    v_from := coalesce(v_from, 0);
    v_prev := coalesce(v_prev, repeat('0', 64));
    -- Every transaction below the snapshot's xmin has finished: its rows are final.
    v_to := pg_snapshot_xmin(pg_current_snapshot())::text::bigint;
    IF v_to <= v_from THEN
        RETURN;
    END IF;
    v_by := coalesce(governance.ctx('user'), governance.caller_role());
    FOR m IN
        SELECT DISTINCT governance.audit_month_start(a.occurred_at) AS month
          FROM governance.audit_trail a
         WHERE a.transaction_id >= v_from AND a.transaction_id < v_to
         ORDER BY 1
    LOOP
        SELECT * INTO r FROM governance._audit_seal_rows(v_from, v_to, m.month);
        INSERT INTO governance.audit_seal AS s
            (sealed_by, month, from_xid, to_xid, row_count, first_id, last_id, row_ids,
             row_digests, previous_hash, hash)
        VALUES (v_by, m.month, v_from, v_to, r.row_count, r.first_id, r.last_id, r.row_ids,
                r.row_digests, v_prev,
                governance._audit_seal_hash(v_prev, m.month, v_from, v_to, r.row_count,
                                            r.rows_hash))
        RETURNING s.id, s.month, s.row_count, s.first_id, s.last_id, s.hash
             INTO seal_id, month, row_count, first_id, last_id, hash;
        v_prev := hash;
        RETURN NEXT;
    END LOOP;
END
$$;

-- governance._audit_first_difference(stored ids, stored digests, current ids, current
-- digests): the first row that differs between a seal and the trail now, and how.
CREATE OR REPLACE FUNCTION governance._audit_first_difference(
    p_ids bigint[], p_digests bigint[], p_now_ids bigint[], p_now_digests bigint[],
    OUT row_id bigint, OUT problem text)
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i int := 1;
    n int := greatest(cardinality(p_ids), cardinality(p_now_ids));
BEGIN
    WHILE i <= n LOOP
        IF p_ids[i] IS NULL OR (p_now_ids[i] IS NOT NULL AND p_now_ids[i] < p_ids[i]) THEN
            row_id := p_now_ids[i];
            problem := 'row inserted into a sealed range';
            RETURN;
        ELSIF p_now_ids[i] IS NULL OR p_now_ids[i] > p_ids[i] THEN
            row_id := p_ids[i];
            problem := 'sealed row deleted';
            RETURN;
        ELSIF p_now_digests[i] <> p_digests[i] THEN
            row_id := p_ids[i];
            problem := 'sealed row modified';
            RETURN;
        END IF;
        i := i + 1;
    END LOOP;
    problem := 'seal does not match its rows (the seal itself was altered)';
END
$$;

-- governance.verify_audit(): recompute the chain of seals. ok is false at the first seal whose
-- previous_hash does not link, or whose rows no longer hash to it; bad_row_id names the first
-- row inserted, deleted or modified in it. Seals of months removed by drop_audit_before are
-- only checked for their link.
CREATE OR REPLACE FUNCTION governance.verify_audit()
RETURNS TABLE (ok boolean, seals_checked bigint, rows_checked bigint, bad_seal_id bigint,
               bad_row_id bigint, problem text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $$
DECLARE
    v_prev    text := repeat('0', 64);
    v_cutoff  timestamptz;
    s governance.audit_seal;
    r record;
    d record;
BEGIN
    ok := true;
    seals_checked := 0;
    rows_checked := 0;
    SELECT max(t.cutoff) INTO v_cutoff FROM governance.audit_retention t;
    FOR s IN SELECT * FROM governance.audit_seal ORDER BY id LOOP
        seals_checked := seals_checked + 1;
        IF s.previous_hash <> v_prev THEN
            ok := false;
            bad_seal_id := s.id;
            problem := 'seal chain broken: previous_hash does not match the seal before';
            RETURN NEXT;
            RETURN;
        END IF;
        v_prev := s.hash;
        CONTINUE WHEN v_cutoff IS NOT NULL AND s.month < v_cutoff;
        SELECT * INTO r FROM governance._audit_seal_rows(s.from_xid, s.to_xid, s.month);
        rows_checked := rows_checked + r.row_count;
        IF governance._audit_seal_hash(s.previous_hash, s.month, s.from_xid, s.to_xid,
                                       r.row_count, r.rows_hash) <> s.hash THEN
            SELECT * INTO d FROM governance._audit_first_difference(
                s.row_ids, s.row_digests, r.row_ids, r.row_digests);
            ok := false;
            bad_seal_id := s.id;
            bad_row_id := d.row_id;
            problem := d.problem;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    -- A row forged into a sealed range of transactions, in a month that range has no seal for.
    SELECT a.id, s2.id AS seal INTO d
      FROM governance.audit_trail a
      JOIN governance.audit_seal s2
        ON a.transaction_id >= s2.from_xid AND a.transaction_id < s2.to_xid
     WHERE (v_cutoff IS NULL OR a.occurred_at >= v_cutoff)
       AND NOT EXISTS (SELECT 1 FROM governance.audit_seal s3
                        WHERE s3.from_xid = s2.from_xid
                          AND s3.month = governance.audit_month_start(a.occurred_at))
     ORDER BY a.id, s2.id
     LIMIT 1;
    IF FOUND THEN
        ok := false;
        bad_seal_id := d.seal;
        bad_row_id := d.id;
        problem := 'row inserted into a sealed range';
    END IF;
    RETURN NEXT;
END
$$;

GRANT EXECUTE ON FUNCTION
    governance.log_operation(text, text, text, text, jsonb, jsonb, jsonb, jsonb),
    governance.log_authority_violation(text, text, text, text, jsonb, jsonb),
    governance.log_admin_access(text, text, jsonb, jsonb),
    governance.log_gateway_operation(text, text, text, text, jsonb, jsonb),
    governance.enable_audit(regclass, text[], text, text[], jsonb),
    governance.disable_audit(regclass, jsonb),
    governance.seal_audit(jsonb)
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION
    governance.object_history(text, text, int, bigint),
    governance.object_at(text, text, timestamptz),
    governance.caller_may_read(text),
    governance.verify_audit()
TO governance_app, governance_admin, governance_auditor;
GRANT EXECUTE ON FUNCTION governance.drop_audit_before(timestamptz, jsonb) TO governance_admin;
-- Triggers on governance tables log through it, also when an admin edits them in SQL.
GRANT EXECUTE ON FUNCTION
    governance._log_operation(text, text, text, text, jsonb, jsonb, jsonb)
TO governance_admin;
GRANT SELECT ON governance.audited_tables TO governance_app, governance_admin, governance_auditor;
GRANT EXECUTE ON FUNCTION governance.audit_month_start(timestamptz),
    governance.audit_partition_name(timestamptz)
TO governance_app, governance_admin, governance_auditor;
GRANT EXECUTE ON FUNCTION governance.ensure_audit_partitions(int) TO governance_admin;

SELECT governance.ensure_audit_partitions(3);
