-- Authority: the matrix (service, model, operation), time-bounded delegations, the guard trigger
-- for protected tables, and violations that survive the caller's rollback.

-- Helpers that run with the caller's rights do not pin search_path (as in 00_core.sql): the
-- SECURITY DEFINER functions that call them do.

-- governance._authority_context(): the transaction's governance context as jsonb, to hand to the
-- loopback connection that records a violation (it does not share our settings).
CREATE OR REPLACE FUNCTION governance._authority_context()
RETURNS jsonb
LANGUAGE sql
STABLE
AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'user', governance.ctx('user'), 'service', governance.ctx('service'),
        'ip', governance.ctx('ip'), 'user_agent', governance.ctx('user_agent'),
        'request_id', governance.ctx('request_id')))
$$;

-- governance._conninfo_quote(value): a libpq connection-string value, quoted.
CREATE OR REPLACE FUNCTION governance._conninfo_quote(p_value text)
RETURNS text
LANGUAGE sql
IMMUTABLE
AS $$ SELECT '''' || replace(replace(p_value, '\', '\\'), '''', '\''') || '''' $$;

-- governance._loopback_dsn(): a connection back to this database, as the calling function's
-- owner (current_user inside a SECURITY DEFINER function), over the first unix socket directory
-- (localhost when the server has none). Timeouts keep a stuck loopback from hanging the caller:
-- it waits for the loopback, and a lock cycle between them is invisible to deadlock detection.
CREATE OR REPLACE FUNCTION governance._loopback_dsn()
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT concat_ws(' ',
        'dbname=' || governance._conninfo_quote(current_database()),
        'port=' || governance._conninfo_quote(current_setting('port')),
        'host=' || governance._conninfo_quote(coalesce(
            nullif(btrim(split_part(current_setting('unix_socket_directories'), ',', 1)), ''),
            'localhost')),
        'user=' || governance._conninfo_quote(current_user::text),
        'application_name=pygov_violation_log',
        'connect_timeout=5',
        'options=' || governance._conninfo_quote(
            '-c lock_timeout=5000 -c statement_timeout=10000 -c search_path=pg_catalog'))
$$;

-- governance._record_violation(service, model, operation, reason, extra): write the violation to
-- the audit trail in its own transaction, through a dblink loopback, so that it survives the
-- rollback our GV001 is about to cause. Returns the audit row's id, or NULL when the loopback is
-- unavailable: then the violation goes to the server log as a WARNING (never silently lost) and
-- the caller's GV001 says violation_recorded=false so that the Python wrapper records it.
CREATE OR REPLACE FUNCTION governance._record_violation(p_service text, p_model_name text,
                                                        p_operation text, p_reason text,
                                                        p_extra jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema text;
    v_id     bigint;
    v_ctx    jsonb := governance._authority_context();
    v_extra  jsonb := coalesce(p_extra, '{}'::jsonb)
                      || jsonb_build_object('role', governance.caller_role());
BEGIN
    SELECT n.nspname INTO v_schema
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'dblink';
    IF v_schema IS NULL THEN
        RAISE WARNING 'pygov: authority violation not recorded autonomously (dblink is not '
                      'installed): %', jsonb_build_object('service', p_service,
            'model', p_model_name, 'operation', p_operation, 'reason', p_reason,
            'extra', v_extra, 'context', v_ctx);
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT t.id FROM %I.dblink($1, $2) AS t(id bigint)', v_schema)
       INTO v_id
      USING governance._loopback_dsn(),
            format('SELECT governance.log_authority_violation(%L, %L, %L, %L, %L::jsonb, '
                   '%L::jsonb)',
                   coalesce(p_service, '(none)'), p_model_name, p_operation, p_reason,
                   v_extra::text, v_ctx::text);
    RETURN v_id;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pygov: authority violation not recorded autonomously (%): %', SQLERRM,
        jsonb_build_object('service', p_service, 'model', p_model_name,
                           'operation', p_operation, 'reason', p_reason, 'extra', v_extra,
                           'context', v_ctx);
    RETURN NULL;
END
$$;

-- governance._deny_authority(service, model, operation, reason, extra): record the violation
-- (autonomously), then raise GV001 with service, model and operation in its DETAIL.
CREATE OR REPLACE FUNCTION governance._deny_authority(p_service text, p_model_name text,
                                                      p_operation text, p_reason text,
                                                      p_extra jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint := governance._record_violation(p_service, p_model_name, p_operation, p_reason,
                                                 p_extra);
BEGIN
    PERFORM governance.raise_error('GV001',
        format('authority violation: %s may not %s %s (%s)',
               coalesce('service ' || p_service, 'a caller with no governance service'),
               p_operation, p_model_name, p_reason),
        coalesce(p_extra, '{}'::jsonb) || jsonb_build_object(
            'service', p_service, 'model', p_model_name, 'operation', p_operation,
            'reason', p_reason, 'violation_recorded', v_id IS NOT NULL, 'violation_id', v_id));
END
$$;

-- governance._authority_require_admin(action, model): GV001, recorded as a violation, unless the
-- caller belongs to governance_admin.
CREATE OR REPLACE FUNCTION governance._authority_require_admin(p_action text, p_model_name text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF NOT governance.caller_is_admin() THEN
        PERFORM governance._deny_authority(governance.ctx('service'), p_model_name, p_action,
            p_action || ' requires the governance_admin role',
            jsonb_build_object('role', governance.caller_role(), 'action', p_action));
    END IF;
END
$$;

-- governance._authority_name(field, value, max_length): GV002 unless 1..max_length characters.
CREATE OR REPLACE FUNCTION governance._authority_name(p_field text, p_value text,
                                                     p_max_length int DEFAULT 255)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_value IS NULL OR governance.is_blank(p_value) OR length(p_value) > p_max_length THEN
        PERFORM governance.raise_error('GV002',
            format('%s must be 1 to %s characters', p_field, p_max_length),
            jsonb_build_object('field', p_field, 'length', length(p_value)));
    END IF;
    RETURN p_value;
END
$$;

-- governance._authority_source(service, model, operation): how the service holds the authority:
-- ('matrix', NULL), ('delegation', id) for a live delegation, or no row. A delegation counts from
-- valid_from until valid_until (exclusive) at the client statement's time, unless revoked or the
-- model is critical. Not SECURITY DEFINER: only SECURITY DEFINER functions call it.
CREATE OR REPLACE FUNCTION governance._authority_source(p_service text, p_model_name text,
                                                        p_operation text)
RETURNS TABLE (via text, delegation_id bigint)
LANGUAGE sql
STABLE
AS $$
    (SELECT 'matrix'::text, NULL::bigint
       FROM governance.authority_matrix m
      WHERE m.service = p_service AND m.model_name = p_model_name AND m.operation = p_operation)
    UNION ALL
    (SELECT 'delegation'::text, d.id
       FROM governance.authority_delegation d
      WHERE d.to_service = p_service AND d.model_name = p_model_name
        AND d.operation = p_operation AND d.revoked_at IS NULL
        AND d.valid_until > statement_timestamp() AND d.valid_from <= statement_timestamp()
        AND NOT EXISTS (SELECT 1 FROM governance.authority_model c
                         WHERE c.model_name = p_model_name AND c.is_critical)
      ORDER BY d.valid_until DESC
      LIMIT 1)
    LIMIT 1
$$;

-- governance.has_authority(service, model, operation): true when allowed (no violation is
-- recorded: this is the question, not the check).
CREATE OR REPLACE FUNCTION governance.has_authority(p_service text, p_model_name text,
                                                    p_operation text)
RETURNS boolean
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM governance._authority_source(p_service, p_model_name,
                                                                 p_operation)) $$;

-- governance.validate_authority(service, model, operation, context): (via, delegation_id) when
-- the service holds the authority by the matrix ('matrix', NULL) or a live delegation
-- ('delegation', id); otherwise the violation is recorded in the audit trail (surviving the
-- rollback) and GV001 is raised. One record, not a set: it is on the hot path.
CREATE OR REPLACE FUNCTION governance.validate_authority(p_service text, p_model_name text,
                                                         p_operation text,
                                                         p_context jsonb DEFAULT NULL,
                                                         OUT via text, OUT delegation_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT s.via, s.delegation_id INTO via, delegation_id
      FROM governance._authority_source(p_service, p_model_name, p_operation) s;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM governance._authority_name('service', p_service),
            governance._authority_name('model_name', p_model_name),
            governance._authority_name('operation', p_operation, 64);
    PERFORM governance.apply_context(p_context);
    PERFORM governance._deny_authority(p_service, p_model_name, p_operation,
                                       'no matrix entry and no live delegation');
END
$$;

-- governance.get_authority_matrix(): the matrix as a document,
-- {"grants": {service: {model: [operations]}}, "critical": [models]}.
CREATE OR REPLACE FUNCTION governance.get_authority_matrix()
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'grants', coalesce((
            SELECT jsonb_object_agg(s.service, coalesce((
                       SELECT jsonb_object_agg(g.model_name, g.ops)
                         FROM (SELECT m.model_name, jsonb_agg(m.operation ORDER BY m.operation) ops
                                 FROM governance.authority_matrix m
                                WHERE m.service = s.service
                                GROUP BY m.model_name) g), '{}'::jsonb))
              FROM governance.authority_service s), '{}'::jsonb),
        'critical', coalesce((
            SELECT jsonb_agg(c.model_name ORDER BY c.model_name)
              FROM governance.authority_model c WHERE c.is_critical), '[]'::jsonb))
$$;

-- governance._authority_grants_of(matrix): the (service, model, operation) rows of a matrix
-- document {service: {model: [operations]}} (shape already checked by the caller).
CREATE OR REPLACE FUNCTION governance._authority_grants_of(p_matrix jsonb)
RETURNS TABLE (service text, model_name text, operation text)
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT DISTINCT s.key, m.key, o.value
      FROM jsonb_each(p_matrix) s, jsonb_each(s.value) m, jsonb_array_elements_text(m.value) o
$$;

-- governance.load_authority_matrix(matrix, critical, context): replace the whole matrix with
-- {service: {model: [operations]}} and the list of critical models, in one transaction (admin).
-- Grants that stay are kept (so their delegations stay live); grants that go revoke the
-- delegations made from them. Unknown operations are refused (GV002) and nothing changes.
-- Returns the counts of services, models, grants and critical models now loaded.
CREATE OR REPLACE FUNCTION governance.load_authority_matrix(p_matrix jsonb,
                                                            p_critical jsonb DEFAULT NULL,
                                                            p_context jsonb DEFAULT NULL)
RETURNS TABLE (services int, models int, grants int, critical int)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before  jsonb;
    v_bad     jsonb;
    v_unknown text[];
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._authority_require_admin('LOAD_MATRIX', 'governance.authority_matrix');
    IF jsonb_typeof(p_matrix) IS DISTINCT FROM 'object' THEN
        PERFORM governance.raise_error('GV002',
            'the matrix must be an object {service: {model: [operations]}}',
            jsonb_build_object('field', 'matrix', 'type', jsonb_typeof(p_matrix)));
    END IF;
    IF p_critical IS NOT NULL AND (jsonb_typeof(p_critical) <> 'array' OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_critical) e WHERE jsonb_typeof(e) <> 'string'))
    THEN
        PERFORM governance.raise_error('GV002', 'critical must be a list of model names',
            jsonb_build_object('field', 'critical'));
    END IF;
    SELECT jsonb_build_object('service', s.key) INTO v_bad
      FROM jsonb_each(p_matrix) s WHERE jsonb_typeof(s.value) <> 'object' LIMIT 1;
    IF v_bad IS NULL THEN
        SELECT jsonb_build_object('service', s.key, 'model', m.key) INTO v_bad
          FROM jsonb_each(p_matrix) s, jsonb_each(s.value) m
         WHERE jsonb_typeof(m.value) <> 'array'
            OR EXISTS (SELECT 1 FROM jsonb_array_elements(m.value) o
                        WHERE jsonb_typeof(o) <> 'string')
         LIMIT 1;
    END IF;
    IF v_bad IS NOT NULL THEN
        PERFORM governance.raise_error('GV002',
            'the matrix must map each service to {model: [operation names]}',
            v_bad || jsonb_build_object('field', 'matrix'));
    END IF;

    PERFORM governance._authority_name('service', s.key) FROM jsonb_each(p_matrix) s;
    PERFORM governance._authority_name('model_name', l.model_name)
       FROM (SELECT g.model_name FROM governance._authority_grants_of(p_matrix) g
             UNION SELECT jsonb_array_elements_text(coalesce(p_critical, '[]'))) l;
    SELECT array_agg(DISTINCT l.operation ORDER BY l.operation) INTO v_unknown
      FROM governance._authority_grants_of(p_matrix) l
     WHERE NOT EXISTS (SELECT 1 FROM governance.authority_operation o
                        WHERE o.operation = l.operation);
    IF v_unknown IS NOT NULL THEN
        PERFORM governance.raise_error('GV002',
            'unknown operations (add them to governance.authority_operation first)',
            jsonb_build_object('field', 'matrix', 'operations', to_jsonb(v_unknown),
                'known', (SELECT jsonb_agg(o.operation ORDER BY o.operation)
                            FROM governance.authority_operation o)));
    END IF;

    -- Loads and DBA edits queue up; validate() and the guard keep reading the old matrix until
    -- this transaction commits, then see the new one whole.
    LOCK TABLE governance.authority_service, governance.authority_model,
               governance.authority_matrix IN SHARE ROW EXCLUSIVE MODE;
    v_before := governance.get_authority_matrix();

    DELETE FROM governance.authority_matrix x
     WHERE NOT EXISTS (SELECT 1 FROM governance._authority_grants_of(p_matrix) l
                        WHERE l.service = x.service AND l.model_name = x.model_name
                          AND l.operation = x.operation);
    DELETE FROM governance.authority_service s
     WHERE NOT (p_matrix ? s.service);
    INSERT INTO governance.authority_service (service)
    SELECT k FROM jsonb_object_keys(p_matrix) k
    ON CONFLICT (service) DO NOTHING;
    DELETE FROM governance.authority_model m
     WHERE NOT EXISTS (SELECT 1 FROM governance._authority_grants_of(p_matrix) l
                        WHERE l.model_name = m.model_name)
       AND NOT (coalesce(p_critical, '[]'::jsonb) ? m.model_name);
    -- Update only the flags that change (an upsert would lock every model row, and wait for
    -- every delegation in flight).
    UPDATE governance.authority_model m
       SET is_critical = coalesce(p_critical, '[]'::jsonb) ? m.model_name
     WHERE m.is_critical IS DISTINCT FROM (coalesce(p_critical, '[]'::jsonb) ? m.model_name);
    INSERT INTO governance.authority_model (model_name, is_critical)
    SELECT n.model_name, coalesce(p_critical, '[]'::jsonb) ? n.model_name
      FROM (SELECT l.model_name FROM governance._authority_grants_of(p_matrix) l
            UNION SELECT jsonb_array_elements_text(coalesce(p_critical, '[]'))) n
    ON CONFLICT (model_name) DO NOTHING;
    INSERT INTO governance.authority_matrix (service, model_name, operation)
    SELECT l.service, l.model_name, l.operation
      FROM governance._authority_grants_of(p_matrix) l
    ON CONFLICT DO NOTHING;

    PERFORM governance._log_operation('governance.authority_matrix', 'matrix', 'UPDATE',
        governance.ctx('service'), v_before, governance.get_authority_matrix(),
        jsonb_build_object('action', 'load_matrix', 'role', governance.caller_role()));
    RETURN QUERY SELECT
        (SELECT count(*)::int FROM governance.authority_service),
        (SELECT count(*)::int FROM governance.authority_model),
        (SELECT count(*)::int FROM governance.authority_matrix),
        (SELECT count(*)::int FROM governance.authority_model c WHERE c.is_critical);
END
$$;

-- governance._authority_matrix_names(): a DBA inserting a grant need not register its service
-- and model first.
CREATE OR REPLACE FUNCTION governance._authority_matrix_names()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO governance.authority_service (service) VALUES (NEW.service)
    ON CONFLICT (service) DO NOTHING;
    INSERT INTO governance.authority_model (model_name) VALUES (NEW.model_name)
    ON CONFLICT (model_name) DO NOTHING;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER authority_matrix_names
    BEFORE INSERT OR UPDATE ON governance.authority_matrix
    FOR EACH ROW EXECUTE FUNCTION governance._authority_matrix_names();

-- governance._authority_grants_removed(): a delegation lends the grantor's authority; when the
-- grantor loses it (matrix edit or reload), its live delegations are revoked, visibly and audited.
CREATE OR REPLACE FUNCTION governance._authority_grants_removed()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE governance.authority_delegation d
       SET revoked_at = clock_timestamp(),
           revoked_by = coalesce(governance.ctx('user'), governance.caller_role()),
           revoke_reason = 'the grantor no longer holds this authority in the matrix'
     WHERE d.revoked_at IS NULL AND d.valid_until > clock_timestamp()
       AND EXISTS (SELECT 1 FROM removed r
                    WHERE r.service = d.from_service AND r.model_name = d.model_name
                      AND r.operation = d.operation)
       AND NOT EXISTS (SELECT 1 FROM governance.authority_matrix m
                        WHERE m.service = d.from_service AND m.model_name = d.model_name
                          AND m.operation = d.operation);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER authority_matrix_deleted
    AFTER DELETE ON governance.authority_matrix
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION governance._authority_grants_removed();
CREATE OR REPLACE TRIGGER authority_matrix_updated
    AFTER UPDATE ON governance.authority_matrix
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION governance._authority_grants_removed();

-- governance._authority_models_critical(): a model that becomes critical can no longer be
-- delegated, so its live delegations are revoked.
CREATE OR REPLACE FUNCTION governance._authority_models_critical()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE governance.authority_delegation d
       SET revoked_at = clock_timestamp(),
           revoked_by = coalesce(governance.ctx('user'), governance.caller_role()),
           revoke_reason = 'the model became critical'
     WHERE d.revoked_at IS NULL AND d.valid_until > clock_timestamp()
       AND EXISTS (SELECT 1 FROM changed c WHERE c.model_name = d.model_name AND c.is_critical);
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER authority_model_inserted
    AFTER INSERT ON governance.authority_model
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION governance._authority_models_critical();
CREATE OR REPLACE TRIGGER authority_model_updated
    AFTER UPDATE ON governance.authority_model
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION governance._authority_models_critical();

-- governance._authority_delegation_rules(): the rules of a delegation, for delegate_authority and
-- for a DBA's direct INSERT alike: the grantee is a known service, the model is not critical, the
-- grantor holds the authority by the matrix (delegations are not re-delegated). After insert, a
-- delegation is immutable except for its one revocation.
CREATE OR REPLACE FUNCTION governance._authority_delegation_rules()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_critical boolean;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.from_service, NEW.to_service, NEW.model_name, NEW.operation, NEW.reason,
            NEW.valid_from, NEW.valid_until, NEW.created_by, NEW.created_role, NEW.created_at)
           IS DISTINCT FROM
           (OLD.id, OLD.from_service, OLD.to_service, OLD.model_name, OLD.operation, OLD.reason,
            OLD.valid_from, OLD.valid_until, OLD.created_by, OLD.created_role, OLD.created_at)
        THEN
            PERFORM governance.raise_error('GV002',
                'a delegation cannot be changed, only revoked',
                jsonb_build_object('delegation_id', OLD.id));
        END IF;
        IF OLD.revoked_at IS NOT NULL
           AND (NEW.revoked_at, NEW.revoked_by, NEW.revoke_reason)
               IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_by, OLD.revoke_reason) THEN
            PERFORM governance.raise_error('GV002', 'the delegation is already revoked',
                jsonb_build_object('delegation_id', OLD.id, 'revoked_at', OLD.revoked_at));
        END IF;
        IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
            NEW.revoked_by := coalesce(NEW.revoked_by, governance.ctx('user'),
                                       governance.caller_role());
        END IF;
        RETURN NEW;
    END IF;

    NEW.created_role := governance.caller_role();
    NEW.created_by := coalesce(NEW.created_by, governance.ctx('user'));
    IF NOT EXISTS (SELECT 1 FROM governance.authority_service s WHERE s.service = NEW.to_service)
    THEN
        PERFORM governance.raise_error('GV002',
            format('unknown service %s: add it to the authority matrix first', NEW.to_service),
            jsonb_build_object('field', 'to_service', 'service', NEW.to_service));
    END IF;
    -- The rows read are locked until we commit: a concurrent reload that removes the grant or
    -- makes the model critical waits for us, then its triggers see (and revoke) this
    -- delegation, instead of both committing a delegation without its ground. Matrix row
    -- first, model row second: the order load_authority_matrix changes them in.
    PERFORM 1 FROM governance.authority_matrix m
      WHERE m.service = NEW.from_service AND m.model_name = NEW.model_name
        AND m.operation = NEW.operation
        FOR KEY SHARE;
    IF NOT FOUND THEN
        PERFORM governance._deny_authority(NEW.from_service, NEW.model_name, NEW.operation,
            'the grantor does not hold this authority in the matrix',
            jsonb_build_object('action', 'DELEGATE', 'from_service', NEW.from_service,
                               'to_service', NEW.to_service));
    END IF;
    SELECT c.is_critical INTO v_critical
      FROM governance.authority_model c WHERE c.model_name = NEW.model_name FOR SHARE;
    IF v_critical THEN
        PERFORM governance._deny_authority(NEW.from_service, NEW.model_name, NEW.operation,
            'critical models cannot be delegated',
            jsonb_build_object('action', 'DELEGATE', 'from_service', NEW.from_service,
                               'to_service', NEW.to_service));
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER authority_delegation_rules
    BEFORE INSERT OR UPDATE ON governance.authority_delegation
    FOR EACH ROW EXECUTE FUNCTION governance._authority_delegation_rules();

-- governance._authority_delegation_audit(): every delegation, revocation (and deletion) lands in
-- the audit trail in the same transaction, whoever made it.
CREATE OR REPLACE FUNCTION governance._authority_delegation_audit()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id     bigint := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    v_action text := CASE TG_OP WHEN 'INSERT' THEN 'delegate'
                                WHEN 'DELETE' THEN 'delete_delegation'
                                ELSE 'revoke' END;
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    PERFORM governance._log_operation('governance.authority_delegation', v_id::text,
        CASE TG_OP WHEN 'INSERT' THEN 'CREATE' ELSE TG_OP END,
        governance.ctx('service'),
        CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
        jsonb_build_object('action', v_action, 'role', governance.caller_role()));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER authority_delegation_audit
    AFTER INSERT OR UPDATE OR DELETE ON governance.authority_delegation
    FOR EACH ROW EXECUTE FUNCTION governance._authority_delegation_audit();

-- governance.delegate_authority(from, to, model, operation, duration, reason, context): lend
-- from_service's authority to to_service for duration (positive, at most 24 hours). Admin only.
-- Returns the delegation.
CREATE OR REPLACE FUNCTION governance.delegate_authority(p_from_service text, p_to_service text,
                                                         p_model_name text, p_operation text,
                                                         p_duration interval, p_reason text,
                                                         p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.authority_delegation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._authority_require_admin('DELEGATE', p_model_name);
    PERFORM governance._authority_name('from_service', p_from_service),
            governance._authority_name('to_service', p_to_service),
            governance._authority_name('model_name', p_model_name),
            governance._authority_name('operation', p_operation, 64),
            governance._authority_name('reason', p_reason, 1000);
    IF p_duration IS NULL OR p_duration <= interval '0' OR p_duration > interval '24 hours' THEN
        PERFORM governance.raise_error('GV002',
            'a delegation lasts more than 0 and at most 24 hours',
            jsonb_build_object('field', 'duration', 'duration', p_duration::text));
    END IF;
    IF p_from_service = p_to_service THEN
        PERFORM governance.raise_error('GV002', 'a service cannot delegate to itself',
            jsonb_build_object('field', 'to_service', 'service', p_to_service));
    END IF;
    RETURN QUERY
    INSERT INTO governance.authority_delegation AS d
        (from_service, to_service, model_name, operation, reason, valid_from, valid_until)
    VALUES (p_from_service, p_to_service, p_model_name, p_operation, p_reason, v_now,
            v_now + p_duration)
    RETURNING d.*;
END
$$;

-- governance.revoke_delegation(id, reason, context): end a delegation now (admin). Revoking one
-- that is already revoked changes nothing and returns it as it is.
CREATE OR REPLACE FUNCTION governance.revoke_delegation(p_delegation_id bigint, p_reason text,
                                                        p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.authority_delegation
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r governance.authority_delegation;
BEGIN
    PERFORM governance.apply_context(p_context);
    SELECT * INTO r FROM governance.authority_delegation d WHERE d.id = p_delegation_id;
    PERFORM governance._authority_require_admin(
        'REVOKE', coalesce(r.model_name, 'governance.authority_delegation'));
    PERFORM governance._authority_name('reason', p_reason, 1000);
    IF r.id IS NULL THEN
        PERFORM governance.raise_error('GV002', 'no such delegation',
            jsonb_build_object('delegation_id', p_delegation_id));
    END IF;
    UPDATE governance.authority_delegation d
       SET revoked_at = clock_timestamp(),
           revoked_by = coalesce(governance.ctx('user'), governance.caller_role()),
           revoke_reason = p_reason
     WHERE d.id = p_delegation_id AND d.revoked_at IS NULL
    RETURNING d.* INTO r;
    IF NOT FOUND THEN
        SELECT * INTO r FROM governance.authority_delegation d WHERE d.id = p_delegation_id;
    END IF;
    RETURN NEXT r;
END
$$;

-- governance.check_delegation(service, model, operation): the live delegation that lets the
-- service do it, or no row.
CREATE OR REPLACE FUNCTION governance.check_delegation(p_service text, p_model_name text,
                                                       p_operation text)
RETURNS SETOF governance.authority_delegation
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.* FROM governance.authority_delegation d
     WHERE d.id = (SELECT s.delegation_id
                     FROM governance._authority_source(p_service, p_model_name, p_operation) s
                    WHERE s.via = 'delegation')
$$;

-- governance.list_delegations(active_only): delegations, newest first.
CREATE OR REPLACE FUNCTION governance.list_delegations(p_active_only boolean DEFAULT false)
RETURNS SETOF governance.authority_delegation
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.* FROM governance.authority_delegation d
     WHERE NOT p_active_only
        OR (d.revoked_at IS NULL AND d.valid_from <= statement_timestamp()
            AND d.valid_until > statement_timestamp())
     ORDER BY d.id DESC
$$;

-- governance.authority_guard(): statement-level trigger of a protected table (TG_ARGV[0] is its
-- model). The transaction's governance service must hold the operation (INSERT = CREATE,
-- TRUNCATE = DELETE) by the matrix or a live delegation. Otherwise a governance_admin who set
-- governance.override_reason (see authority_override) may go ahead, and each overridden statement
-- is audited; everyone else gets GV001, recorded as a violation.
CREATE OR REPLACE FUNCTION governance.authority_guard()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_model    text := TG_ARGV[0];
    v_op       text := CASE TG_OP WHEN 'INSERT' THEN 'CREATE' WHEN 'UPDATE' THEN 'UPDATE'
                                  ELSE 'DELETE' END;
    v_service  text := governance.ctx('service');
    v_override text;
    v_table    text;
BEGIN
    IF v_service IS NOT NULL
       AND EXISTS (SELECT 1 FROM governance._authority_source(v_service, v_model, v_op)) THEN
        RETURN NULL;
    END IF;
    v_table := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
    v_override := nullif(current_setting('governance.override_reason', true), '');
    IF v_override IS NOT NULL AND governance.caller_is_admin() THEN
        PERFORM governance.log_operation(v_model, NULL, v_op, v_service, NULL, NULL,
            jsonb_build_object('action', 'authority_override', 'reason', v_override,
                               'table', v_table, 'statement', TG_OP,
                               'role', governance.caller_role()));
        RETURN NULL;
    END IF;
    PERFORM governance._deny_authority(v_service, v_model, v_op,
        CASE WHEN v_service IS NULL THEN 'no governance service is set for the transaction'
             ELSE 'no matrix entry and no live delegation' END,
        jsonb_build_object('table', v_table, 'statement', TG_OP)
        || CASE WHEN v_override IS NOT NULL
                THEN jsonb_build_object('override_refused', 'not a governance_admin')
                ELSE '{}'::jsonb END);
    RETURN NULL;
END
$$;

-- governance.protect_table(table, model_name, context): guard every INSERT, UPDATE, DELETE and
-- TRUNCATE on the table with the authority of model_name (default: schema.table). Admin only;
-- protecting again replaces the model name. Returns the model name.
CREATE OR REPLACE FUNCTION governance.protect_table(p_table regclass,
                                                    p_model_name text DEFAULT NULL,
                                                    p_context jsonb DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kind   "char";
    v_schema text;
    v_model  text;
    v_before text;
BEGIN
    PERFORM governance.apply_context(p_context);
    SELECT c.relkind, n.nspname,
           coalesce(nullif(btrim(p_model_name, governance.blank_characters()), ''),
                    n.nspname || '.' || c.relname)
      INTO v_kind, v_schema, v_model
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table;
    PERFORM governance._authority_require_admin('PROTECT', v_model);
    IF v_schema IN ('governance', 'pg_catalog', 'information_schema') THEN
        PERFORM governance.raise_error('GV002', 'governance and system tables cannot be protected',
            jsonb_build_object('table', p_table::text));
    END IF;
    IF v_kind IS DISTINCT FROM 'r' THEN
        PERFORM governance.raise_error('GV002',
            'only ordinary tables can be protected (protect each partition of a partitioned table)',
            jsonb_build_object('table', p_table::text, 'relkind', v_kind));
    END IF;
    PERFORM governance._authority_name('model_name', v_model);
    SELECT p.model_name INTO v_before
      FROM governance.authority_protected_table p WHERE p.table_name = p_table;
    EXECUTE format('CREATE OR REPLACE TRIGGER governance_authority_guard '
                   'BEFORE INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance.authority_guard(%L)',
                   p_table, v_model);
    EXECUTE format('CREATE OR REPLACE TRIGGER governance_authority_guard_truncate '
                   'BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION governance.authority_guard(%L)',
                   p_table, v_model);
    INSERT INTO governance.authority_protected_table AS p (table_name, model_name, protected_by)
    VALUES (p_table, v_model, coalesce(governance.ctx('user'), governance.caller_role()))
    ON CONFLICT (table_name) DO UPDATE
       SET model_name = EXCLUDED.model_name, protected_at = clock_timestamp(),
           protected_by = EXCLUDED.protected_by;
    IF v_before IS DISTINCT FROM v_model THEN
        PERFORM governance._log_operation('governance.authority_protected_table', p_table::text,
            CASE WHEN v_before IS NULL THEN 'CREATE' ELSE 'UPDATE' END, governance.ctx('service'),
            CASE WHEN v_before IS NOT NULL THEN jsonb_build_object('model_name', v_before) END,
            jsonb_build_object('model_name', v_model),
            jsonb_build_object('action', 'protect', 'role', governance.caller_role()));
    END IF;
    RETURN v_model;
END
$$;

-- governance.unprotect_table(table, context): remove the guard (admin). Returns false when the
-- table was not protected.
CREATE OR REPLACE FUNCTION governance.unprotect_table(p_table regclass,
                                                      p_context jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_model text;
BEGIN
    PERFORM governance.apply_context(p_context);
    SELECT p.model_name INTO v_model
      FROM governance.authority_protected_table p WHERE p.table_name = p_table;
    PERFORM governance._authority_require_admin('UNPROTECT', coalesce(v_model, p_table::text));
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p_table) THEN
        EXECUTE format('DROP TRIGGER IF EXISTS governance_authority_guard ON %s', p_table);
        EXECUTE format('DROP TRIGGER IF EXISTS governance_authority_guard_truncate ON %s', p_table);
    END IF;
    DELETE FROM governance.authority_protected_table p WHERE p.table_name = p_table;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM governance._log_operation('governance.authority_protected_table', p_table::text,
        'DELETE', governance.ctx('service'), jsonb_build_object('model_name', v_model), NULL,
        jsonb_build_object('action', 'unprotect', 'role', governance.caller_role()));
    RETURN true;
END
$$;

-- governance.authority_override(reason, context): let a governance_admin write protected tables
-- for the rest of the current transaction without the authority, e.g. to repair data in an
-- emergency. The override itself is audited here, and the guard audits every statement it lets
-- through. Setting governance.override_reason by hand works only for admins, and is audited by
-- the guard just the same.
CREATE OR REPLACE FUNCTION governance.authority_override(p_reason text,
                                                         p_context jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._authority_require_admin('OVERRIDE', 'governance.authority_override');
    PERFORM governance._authority_name('reason', p_reason, 1000);
    PERFORM set_config('governance.override_reason', p_reason, true);
    PERFORM governance._log_operation('governance.authority_override',
        txid_current()::text, 'CREATE', governance.ctx('service'), NULL,
        jsonb_build_object('reason', p_reason),
        jsonb_build_object('action', 'authority_override', 'role', governance.caller_role()));
END
$$;

-- governance.validate_authority_matrix(): what is wrong with the matrix, one row per problem.
-- health_check() includes it.
CREATE OR REPLACE FUNCTION governance.validate_authority_matrix()
RETURNS TABLE (severity text, problem text, detail jsonb)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'error'::text,
           format('critical model %s cannot be written by any service', m.model_name),
           jsonb_build_object('check', 'critical_model_unwritable', 'model', m.model_name)
      FROM governance.authority_model m
     WHERE m.is_critical
       AND NOT EXISTS (SELECT 1 FROM governance.authority_matrix x
                        WHERE x.model_name = m.model_name
                          AND x.operation IN ('CREATE', 'UPDATE', 'DELETE'))
    UNION ALL
    SELECT 'warning'::text,
           format('service %s is granted %s on %s, an operation outside the known set',
                  x.service, x.operation, x.model_name),
           jsonb_build_object('check', 'unknown_operation', 'service', x.service,
                              'model', x.model_name, 'operation', x.operation)
      FROM governance.authority_matrix x
     WHERE NOT EXISTS (SELECT 1 FROM governance.authority_operation o
                        WHERE o.operation = x.operation)
    UNION ALL
    SELECT 'error'::text,
           format('live delegation %s names unknown service(s): %s', d.id, array_to_string(
               ARRAY(SELECT s FROM unnest(ARRAY[d.from_service, d.to_service]) s
                      WHERE NOT EXISTS (SELECT 1 FROM governance.authority_service k
                                         WHERE k.service = s)), ', ')),
           jsonb_build_object('check', 'delegation_unknown_service', 'delegation_id', d.id,
                              'from_service', d.from_service, 'to_service', d.to_service)
      FROM governance.authority_delegation d
     WHERE d.revoked_at IS NULL AND d.valid_until > clock_timestamp()
       AND (NOT EXISTS (SELECT 1 FROM governance.authority_service k
                         WHERE k.service = d.from_service)
            OR NOT EXISTS (SELECT 1 FROM governance.authority_service k
                            WHERE k.service = d.to_service))
    UNION ALL
    SELECT 'error'::text,
           format('live delegation %s lends %s on %s, which %s does not hold',
                  d.id, d.operation, d.model_name, d.from_service),
           jsonb_build_object('check', 'delegation_without_grant', 'delegation_id', d.id,
                              'from_service', d.from_service, 'model', d.model_name,
                              'operation', d.operation)
      FROM governance.authority_delegation d
     WHERE d.revoked_at IS NULL AND d.valid_until > clock_timestamp()
       AND EXISTS (SELECT 1 FROM governance.authority_service k WHERE k.service = d.from_service)
       AND NOT EXISTS (SELECT 1 FROM governance.authority_matrix x
                        WHERE x.service = d.from_service AND x.model_name = d.model_name
                          AND x.operation = d.operation)
    UNION ALL
    SELECT 'error'::text,
           format('protected table %s: model %s is absent from the authority matrix, so every '
                  'write to it is refused', p.table_name::text, p.model_name),
           jsonb_build_object('check', 'protected_model_absent', 'table', p.table_name::text,
                              'model', p.model_name)
      FROM governance.authority_protected_table p
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p.table_name)
       AND NOT EXISTS (SELECT 1 FROM governance.authority_matrix x
                        WHERE x.model_name = p.model_name)
    UNION ALL
    SELECT 'warning'::text,
           format('protected table %s (model %s) no longer exists', p.table_name::oid,
                  p.model_name),
           jsonb_build_object('check', 'protected_table_missing', 'oid', p.table_name::oid,
                              'model', p.model_name)
      FROM governance.authority_protected_table p
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = p.table_name)
$$;

-- For DBAs: the delegations that count right now, and the protected tables.
CREATE OR REPLACE VIEW governance.authority_live_delegation AS
SELECT d.id, d.from_service, d.to_service, d.model_name, d.operation, d.reason, d.valid_from,
       d.valid_until, d.valid_until - clock_timestamp() AS remaining, d.created_by
  FROM governance.authority_delegation d
 WHERE d.revoked_at IS NULL AND d.valid_from <= clock_timestamp()
   AND d.valid_until > clock_timestamp()
   AND NOT EXISTS (SELECT 1 FROM governance.authority_model c
                    WHERE c.model_name = d.model_name AND c.is_critical);

GRANT SELECT ON governance.authority_live_delegation
TO governance_admin, governance_auditor, governance_app;

GRANT EXECUTE ON FUNCTION
    governance.has_authority(text, text, text),
    governance.validate_authority(text, text, text, jsonb),
    governance.get_authority_matrix(),
    governance.load_authority_matrix(jsonb, jsonb, jsonb),
    governance.delegate_authority(text, text, text, text, interval, text, jsonb),
    governance.revoke_delegation(bigint, text, jsonb),
    governance.check_delegation(text, text, text),
    governance.list_delegations(boolean),
    governance.protect_table(regclass, text, jsonb),
    governance.unprotect_table(regclass, jsonb),
    governance.authority_override(text, jsonb),
    governance.validate_authority_matrix()
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION
    governance.has_authority(text, text, text),
    governance.get_authority_matrix(),
    governance.check_delegation(text, text, text),
    governance.list_delegations(boolean),
    governance.validate_authority_matrix()
TO governance_auditor;
-- The guard runs as its owner, but PostgreSQL checks EXECUTE on a trigger function against the
-- role that creates the trigger (protect_table's owner), not the writer: nothing to grant.
