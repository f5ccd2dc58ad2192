-- Idempotency: exactly-once operations keyed by (operation_type, idempotency_key).

-- The row every idempotency function returns. holder_token is only ever shown to the caller
-- who holds the claim.
DO $type$
BEGIN
    IF to_regtype('governance.idempotency_result') IS NULL THEN
        CREATE TYPE governance.idempotency_result AS (
            outcome          text,       -- RECORDED, CLAIMED, DUPLICATE, COMPLETED, RELEASED
            id               bigint,
            operation_type   text,
            idempotency_key  text,
            status           text,
            result_data      jsonb,
            created_by       text,
            created_at       timestamptz,
            completed_at     timestamptz,
            expires_at       timestamptz,
            lease_expires_at timestamptz,
            holder_token     uuid
        );
    END IF;
END
$type$;

-- governance._idempotency_row(outcome, record, show_token): the result row for a record.
CREATE OR REPLACE FUNCTION governance._idempotency_row(p_outcome text,
                                                       r governance.idempotency_record,
                                                       p_show_token boolean)
RETURNS governance.idempotency_result
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT ROW(p_outcome, r.id, r.operation_type, r.idempotency_key, r.status, r.result_data,
               r.created_by, r.created_at, r.completed_at, r.expires_at, r.lease_expires_at,
               CASE WHEN p_show_token THEN r.holder_token END)::governance.idempotency_result
$$;

-- governance.payload_hash(payload): canonical SHA-256 of a payload. jsonb's text form is
-- canonical (key order and whitespace are normalised), so equal payloads hash equally.
-- STRICT: convert_to is STABLE, so this IMMUTABLE function is never inlined and each call runs
-- as a SQL function; strict, a NULL payload (most calls) skips the call altogether.
CREATE OR REPLACE FUNCTION governance.payload_hash(p_payload jsonb)
RETURNS text
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$ SELECT pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(p_payload::text, 'UTF8')),
                               'hex') $$;

-- governance._idempotency_check_args: the validation every entry point shares (GV002).
CREATE OR REPLACE FUNCTION governance._idempotency_check_args(p_operation_type text,
                                                              p_idempotency_key text,
                                                              p_ttl interval)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_operation_type IS NULL OR governance.is_blank(p_operation_type)
       OR length(p_operation_type) > 100 THEN
        PERFORM governance.raise_error('GV002', 'operation_type must be 1 to 100 characters',
            jsonb_build_object('field', 'operation_type'));
    END IF;
    IF p_idempotency_key IS NULL OR governance.is_blank(p_idempotency_key)
       OR length(p_idempotency_key) > 255 THEN
        PERFORM governance.raise_error('GV002', 'idempotency key must be 1 to 255 characters',
            jsonb_build_object('field', 'key', 'length', length(p_idempotency_key)));
    END IF;
    IF p_ttl IS NOT NULL AND p_ttl <= interval '0' THEN
        PERFORM governance.raise_error('GV002', 'ttl must be positive',
            jsonb_build_object('field', 'ttl', 'ttl', p_ttl::text));
    END IF;
END
$$;

-- governance._idempotency_acquire: insert the record, or find the live one, or atomically
-- replace an expired one (or an in-progress claim whose lease ran out). Never read-then-insert:
-- the INSERT ... ON CONFLICT is the claim, and concurrent callers wait on its row.
CREATE OR REPLACE FUNCTION governance._idempotency_acquire(
    p_operation_type text, p_idempotency_key text, p_in_progress boolean, p_result_data jsonb,
    p_ttl interval, p_lease interval, p_payload jsonb)
RETURNS governance.idempotency_result
LANGUAGE plpgsql
AS $$
DECLARE
    v_ttl   interval := coalesce(p_ttl, interval '24 hours');
    v_hash  text := governance.payload_hash(p_payload);
    v_token uuid := CASE WHEN p_in_progress THEN gen_random_uuid() END;
    v_now   timestamptz := clock_timestamp();
    v_status text := CASE WHEN p_in_progress THEN 'IN_PROGRESS' ELSE 'COMPLETED' END;
    v_lease timestamptz := CASE WHEN p_in_progress
                                THEN v_now + coalesce(p_lease, interval '5 minutes') END;
    r governance.idempotency_record;
BEGIN
    PERFORM governance._idempotency_check_args(p_operation_type, p_idempotency_key, p_ttl);
    IF p_in_progress AND p_lease IS NOT NULL AND p_lease <= interval '0' THEN
        PERFORM governance.raise_error('GV002', 'lease must be positive',
            jsonb_build_object('field', 'lease'));
    END IF;
    LOOP
        INSERT INTO governance.idempotency_record AS ir
            (operation_type, idempotency_key, status, result_data, payload_hash, holder_token,
             lease_expires_at, ttl, created_by, created_service, created_at, completed_at,
             expires_at)
        VALUES (p_operation_type, p_idempotency_key, v_status,
                CASE WHEN p_in_progress THEN NULL ELSE p_result_data END, v_hash,
                CASE WHEN p_in_progress THEN v_token END, v_lease, v_ttl,
                governance.ctx('user'), governance.ctx('service'), v_now,
                CASE WHEN p_in_progress THEN NULL ELSE v_now END, v_now + v_ttl)
        ON CONFLICT (operation_type, idempotency_key) DO NOTHING
        RETURNING ir.* INTO r;
        IF FOUND THEN
            RETURN governance._idempotency_row(
                CASE WHEN p_in_progress THEN 'CLAIMED' ELSE 'RECORDED' END, r, true);
        END IF;

        SELECT * INTO r FROM governance.idempotency_record ir
         WHERE ir.operation_type = p_operation_type AND ir.idempotency_key = p_idempotency_key;
        IF NOT FOUND THEN
            CONTINUE;  -- removed (cleanup, release) between our INSERT and SELECT: try again
        END IF;

        v_now := clock_timestamp();
        IF r.expires_at <= v_now OR (r.status = 'IN_PROGRESS' AND r.lease_expires_at <= v_now) THEN
            -- Expired, or an abandoned claim: replace it. The WHERE re-checks under the row
            -- lock, so of two callers replacing at once only one succeeds.
            UPDATE governance.idempotency_record ir
               SET status = v_status,
                   result_data = CASE WHEN p_in_progress THEN NULL ELSE p_result_data END,
                   payload_hash = v_hash,
                   holder_token = CASE WHEN p_in_progress THEN v_token END,
                   lease_expires_at = CASE WHEN p_in_progress
                                           THEN v_now + coalesce(p_lease, interval '5 minutes') END,
                   ttl = v_ttl,
                   created_by = governance.ctx('user'),
                   created_service = governance.ctx('service'),
                   created_at = v_now,
                   completed_at = CASE WHEN p_in_progress THEN NULL ELSE v_now END,
                   expires_at = v_now + v_ttl
             WHERE ir.id = r.id
               AND (ir.expires_at <= v_now
                    OR (ir.status = 'IN_PROGRESS' AND ir.lease_expires_at <= v_now))
            RETURNING ir.* INTO r;
            IF FOUND THEN
                RETURN governance._idempotency_row(
                    CASE WHEN p_in_progress THEN 'CLAIMED' ELSE 'RECORDED' END, r, true);
            END IF;
            CONTINUE;
        END IF;

        IF v_hash IS NOT NULL AND r.payload_hash IS NOT NULL AND r.payload_hash <> v_hash THEN
            PERFORM governance.raise_error('GV024',
                'idempotency key was already used with a different payload',
                jsonb_build_object('operation_type', p_operation_type,
                                   'key', p_idempotency_key, 'record_id', r.id));
        END IF;

        IF r.status = 'IN_PROGRESS' THEN
            PERFORM governance.raise_error('GV014',
                'idempotency key is claimed by another caller',
                jsonb_build_object('operation_type', p_operation_type,
                                   'key', p_idempotency_key, 'record_id', r.id,
                                   'lease_expires_at', r.lease_expires_at));
        END IF;

        INSERT INTO governance.idempotency_duplicate_counter AS c (operation_type, shard, served)
        VALUES (p_operation_type, pg_backend_pid() % 16, 1)
        ON CONFLICT (operation_type, shard) DO UPDATE SET served = c.served + 1;
        RETURN governance._idempotency_row('DUPLICATE', r, false);
    END LOOP;
END
$$;

-- governance.check_and_record(operation_type, key, result_data, ttl, payload, context):
-- record the operation once. Returns outcome RECORDED for the first caller and DUPLICATE, with
-- the first caller's result_data, for everyone after it until the record expires.
--
-- The first call for a key is the hot path, and it is one INSERT: the claim, and in the same
-- row the context installed as transaction-local settings (the same settings
-- governance.apply_context makes: keep the two in step). Measured with perf, a separate
-- statement for the context cost a tenth of the call, and a nested PL/pgSQL function more.
-- Everything else (a conflict, an expired record to replace, an argument to reject with its
-- GV002 detail) goes to _idempotency_acquire, which re-runs INSERT ... ON CONFLICT and so
-- decides atomically. created_at is the statement's timestamp: the moment of the call.
CREATE OR REPLACE FUNCTION governance.check_and_record(
    p_operation_type text, p_idempotency_key text, p_result_data jsonb DEFAULT NULL,
    p_ttl interval DEFAULT NULL, p_payload jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.idempotency_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF length(p_operation_type) <= 100 AND NOT governance.is_blank(p_operation_type)
       AND length(p_idempotency_key) <= 255 AND NOT governance.is_blank(p_idempotency_key)
       AND (p_ttl IS NULL OR p_ttl > interval '0') THEN
        RETURN QUERY
        INSERT INTO governance.idempotency_record AS ir
            (operation_type, idempotency_key, status, result_data, payload_hash, ttl, created_by,
             created_service, created_at, completed_at, expires_at)
        VALUES (p_operation_type, p_idempotency_key, 'COMPLETED', p_result_data,
                governance.payload_hash(p_payload), coalesce(p_ttl, interval '24 hours'),
                CASE WHEN jsonb_typeof(p_context) = 'object'
                     THEN nullif(set_config('governance.user', coalesce(p_context->>'user', ''),
                                            true), '')
                     ELSE governance.ctx('user') END,
                CASE WHEN jsonb_typeof(p_context) = 'object'
                     THEN nullif(set_config('governance.service',
                                            coalesce(p_context->>'service', ''), true)
                                 -- the other three, installed in the same expression
                                 || left(set_config('governance.ip',
                                                    coalesce(p_context->>'ip', ''), true)
                                         || set_config('governance.user_agent',
                                                       coalesce(p_context->>'user_agent', ''), true)
                                         || set_config('governance.request_id',
                                                       coalesce(p_context->>'request_id', ''), true),
                                         0), '')
                     ELSE governance.ctx('service') END,
                statement_timestamp(), statement_timestamp(),
                statement_timestamp() + coalesce(p_ttl, interval '24 hours'))
        ON CONFLICT (operation_type, idempotency_key) DO NOTHING
        RETURNING 'RECORDED'::text, ir.id, ir.operation_type, ir.idempotency_key, ir.status,
                  ir.result_data, ir.created_by, ir.created_at, ir.completed_at, ir.expires_at,
                  ir.lease_expires_at, ir.holder_token;
        IF FOUND THEN
            RETURN;
        END IF;
        -- A conflict: the INSERT's VALUES row, built before the conflict was found, has
        -- installed the context already.
    ELSE
        PERFORM governance.apply_context(p_context);
    END IF;
    RETURN NEXT governance._idempotency_acquire(p_operation_type, p_idempotency_key, false,
                                                p_result_data, p_ttl, NULL, p_payload);
END
$$;

-- governance.claim_idempotency(operation_type, key, lease, ttl, payload, context): first phase
-- of a two-phase operation. CLAIMED (with a holder_token) for the caller who may run the work;
-- DUPLICATE with the stored result when it already completed; GV014 while another holds it.
CREATE OR REPLACE FUNCTION governance.claim_idempotency(
    p_operation_type text, p_idempotency_key text, p_lease interval DEFAULT NULL,
    p_ttl interval DEFAULT NULL, p_payload jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.idempotency_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM governance.apply_context(p_context);
    RETURN NEXT governance._idempotency_acquire(p_operation_type, p_idempotency_key, true,
                                                NULL, p_ttl, p_lease, p_payload);
END
$$;

-- governance.complete_idempotency(operation_type, key, holder_token, result_data, ttl, context):
-- store the result of a claimed operation. Only the holder of a live claim may complete it.
CREATE OR REPLACE FUNCTION governance.complete_idempotency(
    p_operation_type text, p_idempotency_key text, p_holder_token uuid,
    p_result_data jsonb DEFAULT NULL, p_ttl interval DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.idempotency_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r governance.idempotency_record;
    v_now timestamptz := clock_timestamp();
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._idempotency_check_args(p_operation_type, p_idempotency_key, p_ttl);
    UPDATE governance.idempotency_record ir
       SET status = 'COMPLETED', result_data = p_result_data, completed_at = v_now,
           ttl = coalesce(p_ttl, ir.ttl), expires_at = v_now + coalesce(p_ttl, ir.ttl),
           holder_token = NULL, lease_expires_at = NULL
     WHERE ir.operation_type = p_operation_type AND ir.idempotency_key = p_idempotency_key
       AND ir.status = 'IN_PROGRESS' AND ir.holder_token = p_holder_token
    RETURNING ir.* INTO r;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV004',
            'no live claim held with this token: it was completed, released or taken over',
            jsonb_build_object('operation_type', p_operation_type, 'key', p_idempotency_key));
    END IF;
    RETURN NEXT governance._idempotency_row('COMPLETED', r, false);
END
$$;

-- governance.release_idempotency(operation_type, key, holder_token, context): give up a claim
-- after a failure so that a retry can run. Only the holder may release.
CREATE OR REPLACE FUNCTION governance.release_idempotency(
    p_operation_type text, p_idempotency_key text, p_holder_token uuid,
    p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.idempotency_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r governance.idempotency_record;
BEGIN
    PERFORM governance.apply_context(p_context);
    DELETE FROM governance.idempotency_record ir
     WHERE ir.operation_type = p_operation_type AND ir.idempotency_key = p_idempotency_key
       AND ir.status = 'IN_PROGRESS' AND ir.holder_token = p_holder_token
    RETURNING ir.* INTO r;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV004',
            'no live claim held with this token: it was completed, released or taken over',
            jsonb_build_object('operation_type', p_operation_type, 'key', p_idempotency_key));
    END IF;
    RETURN NEXT governance._idempotency_row('RELEASED', r, false);
END
$$;

-- governance.get_idempotency_record(operation_type, key): the record, or no row.
CREATE OR REPLACE FUNCTION governance.get_idempotency_record(p_operation_type text,
                                                             p_idempotency_key text)
RETURNS SETOF governance.idempotency_result
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (governance._idempotency_row('FOUND', ir, false)).*
      FROM governance.idempotency_record ir
     WHERE ir.operation_type = p_operation_type AND ir.idempotency_key = p_idempotency_key
$$;

-- governance.cleanup_expired(batch_size, max_batches): delete expired records, batch_size rows
-- per DELETE, never a claim whose lease is still live. Returns how many it deleted. The
-- wrapper calls it with max_batches = 1 in a loop so that every batch commits on its own.
CREATE OR REPLACE FUNCTION governance.cleanup_expired(p_batch_size int DEFAULT 1000,
                                                      p_max_batches int DEFAULT NULL,
                                                      p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_total bigint := 0;
    v_batch bigint;
    v_batches int := 0;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance.require_admin('cleanup_expired');
    IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 1000000 THEN
        PERFORM governance.raise_error('GV002', 'batch_size must be between 1 and 1000000',
            jsonb_build_object('batch_size', p_batch_size));
    END IF;
    LOOP
        DELETE FROM governance.idempotency_record ir
         WHERE ir.id IN (
             SELECT c.id FROM governance.idempotency_record c
              WHERE c.expires_at <= clock_timestamp()
                AND NOT (c.status = 'IN_PROGRESS' AND c.lease_expires_at > clock_timestamp())
              ORDER BY c.expires_at
              LIMIT p_batch_size
                FOR UPDATE SKIP LOCKED)
           AND (ir.expires_at <= clock_timestamp())
           AND NOT (ir.status = 'IN_PROGRESS' AND ir.lease_expires_at > clock_timestamp());
        GET DIAGNOSTICS v_batch = ROW_COUNT;
        v_total := v_total + v_batch;
        v_batches := v_batches + 1;
        EXIT WHEN v_batch < p_batch_size OR (p_max_batches IS NOT NULL AND v_batches >= p_max_batches);
    END LOOP;
    RETURN v_total;
END
$$;

-- governance.idempotency_stats(): per operation type, records completed, in progress (live
-- lease), expired, and duplicates served (since the last crash: the counter is unlogged).
CREATE OR REPLACE FUNCTION governance.idempotency_stats()
RETURNS TABLE (operation_type text, completed bigint, in_progress bigint, expired bigint,
               duplicates_served bigint)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH r AS (
        SELECT ir.operation_type,
               count(*) FILTER (WHERE ir.status = 'COMPLETED' AND ir.expires_at > now()) AS completed,
               count(*) FILTER (WHERE ir.status = 'IN_PROGRESS' AND ir.expires_at > now()
                                  AND ir.lease_expires_at > now()) AS in_progress,
               count(*) FILTER (WHERE ir.expires_at <= now()
                                  OR (ir.status = 'IN_PROGRESS' AND ir.lease_expires_at <= now()))
                   AS expired
          FROM governance.idempotency_record ir
         GROUP BY ir.operation_type
    ), d AS (
        SELECT c.operation_type, sum(c.served)::bigint AS served
          FROM governance.idempotency_duplicate_counter c
         GROUP BY c.operation_type
    )
    SELECT coalesce(r.operation_type, d.operation_type), coalesce(r.completed, 0),
           coalesce(r.in_progress, 0), coalesce(r.expired, 0), coalesce(d.served, 0)
      FROM r FULL JOIN d ON d.operation_type = r.operation_type
     ORDER BY 1
$$;

GRANT EXECUTE ON FUNCTION
    governance.payload_hash(jsonb),
    governance.check_and_record(text, text, jsonb, interval, jsonb, jsonb),
    governance.claim_idempotency(text, text, interval, interval, jsonb, jsonb),
    governance.complete_idempotency(text, text, uuid, jsonb, interval, jsonb),
    governance.release_idempotency(text, text, uuid, jsonb),
    governance.get_idempotency_record(text, text),
    governance.cleanup_expired(int, int, jsonb),
    governance.idempotency_stats()
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION governance.idempotency_stats(), governance.get_idempotency_record(text, text)
TO governance_auditor;
