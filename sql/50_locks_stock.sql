-- Locks (advisory and row locks), guarded stock, and the DBA view of lock activity.
-- As in 00_core.sql, only SECURITY DEFINER functions pin search_path; the helpers run with
-- their caller's (pinned) path and name every object with its schema. Those an application
-- calls directly (lock_key, lock_rows) also name every built-in as pg_catalog.*: under the
-- caller's own search_path an overload planted in public that matches the argument types
-- better (public.cardinality(text[]), public.unnest(text[])) would otherwise be chosen.
--
-- Every advisory lock pygov takes is transaction-scoped (pg_*_advisory_xact_lock): it goes away
-- with the transaction, so nothing leaks when a connection returns to a pool or passes through
-- a transaction-pooling proxy (PgBouncer). Session-level advisory locks are never used here.

-- governance.lock_key(name): the 64-bit advisory lock key of a lock name: the first 8 bytes of
-- SHA-256 of its UTF-8 text, as a signed bigint. pygov.locks.lock_key computes the same number,
-- so Python, psql and pg_locks agree on which lock a name is.
CREATE OR REPLACE FUNCTION governance.lock_key(p_name text)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
STRICT
PARALLEL SAFE
AS $$
    SELECT ('x' || pg_catalog.left(pg_catalog.encode(
        pg_catalog.sha256(pg_catalog.convert_to(p_name, 'UTF8')), 'hex'), 16))::bit(64)::bigint
$$;

-- governance._require_text(field, value, max_length): GV002 unless value is 1 to max_length
-- characters and not blank.
CREATE OR REPLACE FUNCTION governance._require_text(p_field text, p_value text, p_max int)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_value IS NULL OR governance.is_blank(p_value)
       OR pg_catalog.length(p_value) > p_max THEN
        PERFORM governance.raise_error('GV002',
            pg_catalog.format('%s must be 1 to %s characters', p_field, p_max),
            pg_catalog.jsonb_build_object('field', p_field,
                                          'length', pg_catalog.length(p_value)));
    END IF;
END
$$;

-- governance._timeout_ms(interval): a wait as lock_timeout milliseconds (at least 1: 0 would
-- mean "wait forever").
CREATE OR REPLACE FUNCTION governance._timeout_ms(p_wait interval)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
AS $$ SELECT greatest(1, pg_catalog.ceil(extract(epoch FROM p_wait) * 1000))::bigint $$;

-- governance.try_lock(name, wait): take the transaction-scoped advisory lock of a name. Without
-- wait (or wait <= 0) it never blocks; with wait it queues for the lock up to that long (so the
-- wait shows in pg_locks and governance.lock_activity, and the lock is granted the moment its
-- holder commits). Returns whether the lock is held. The holder records the name in
-- governance.lock_name the first time it is used (after taking the lock, so that registering a
-- name never makes anyone wait; a read-only transaction takes the lock without registering).
CREATE OR REPLACE FUNCTION governance.try_lock(p_name text, p_wait interval DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key bigint;
    v_got boolean;
    v_old text;
BEGIN
    PERFORM governance._require_text('name', p_name, 255);
    v_key := governance.lock_key(p_name);
    IF p_wait IS NULL OR p_wait <= interval '0' THEN
        v_got := pg_try_advisory_xact_lock(v_key);
    ELSE
        v_old := current_setting('lock_timeout');
        PERFORM set_config('lock_timeout', governance._timeout_ms(p_wait) || 'ms', true);
        BEGIN
            PERFORM pg_advisory_xact_lock(v_key);
            v_got := true;
        EXCEPTION WHEN lock_not_available THEN
            v_got := false;
        END;
        PERFORM set_config('lock_timeout', v_old, true);
    END IF;
    IF v_got AND NOT EXISTS (SELECT 1 FROM governance.lock_name n WHERE n.lock_key = v_key)
       AND current_setting('transaction_read_only') = 'off' THEN
        INSERT INTO governance.lock_name (lock_key, name) VALUES (v_key, p_name)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN v_got;
END
$$;

-- governance.lock(name, timeout): take the transaction-scoped advisory lock of a name, waiting
-- up to timeout (default 10 seconds, like the wrapper's lock_timeout); GV003 with the lock's
-- name, key and the time waited when it stays taken. Use it inside BEGIN ... COMMIT: the lock is
-- released when the transaction ends. Returns the lock key.
CREATE OR REPLACE FUNCTION governance.lock(p_name text, p_timeout interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_timeout interval := coalesce(p_timeout, interval '10 seconds');
    v_started timestamptz := clock_timestamp();
BEGIN
    IF v_timeout <= interval '0' THEN
        PERFORM governance.raise_error('GV002', 'timeout must be positive',
            jsonb_build_object('field', 'timeout', 'timeout', v_timeout::text));
    END IF;
    IF NOT governance.try_lock(p_name, v_timeout) THEN
        PERFORM governance.raise_error('GV003', 'advisory lock is held by another transaction',
            jsonb_build_object('lock', p_name, 'lock_key', governance.lock_key(p_name),
                               'timeout_seconds', extract(epoch FROM v_timeout),
                               'waited_seconds',
                               round(extract(epoch FROM clock_timestamp() - v_started), 3)));
    END IF;
    RETURN governance.lock_key(p_name);
END
$$;

-- governance._regclass(name): the table a caller's name denotes (their search_path applies),
-- or NULL for anything that is not an existing table, including malformed names.
CREATE OR REPLACE FUNCTION governance._regclass(p_table text)
RETURNS oid
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RETURN pg_catalog.to_regclass(p_table)::oid;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- governance.lock_rows(table, keys, column, timeout, skip_missing): lock rows of a table
-- (SELECT ... FOR UPDATE) by key, always in key order, so that two transactions locking
-- overlapping sets, whatever order they list them in, can never deadlock each other. column
-- defaults to the table's single-column primary key. Waits up to timeout (default 10 seconds),
-- then GV003. Missing keys are GV002 unless skip_missing. Returns the locked keys, in lock order.
-- SECURITY INVOKER on purpose: the caller needs UPDATE rights on the table, as for FOR UPDATE
-- itself, and an unqualified table name is looked up in the caller's search_path.
CREATE OR REPLACE FUNCTION governance.lock_rows(p_table text, p_keys text[],
                                                p_column text DEFAULT NULL,
                                                p_timeout interval DEFAULT NULL,
                                                p_skip_missing boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
DECLARE
    v_rel oid := governance._regclass(p_table);
    v_schema name;
    v_table name;
    v_column name := p_column;
    v_type_schema name;
    v_type name;
    v_keys text[];
    v_locked text[];
    v_missing text[];
    v_old text;
    v_timeout interval := coalesce(p_timeout, interval '10 seconds');
BEGIN
    SELECT n.nspname, c.relname INTO v_schema, v_table
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = v_rel AND c.relkind IN ('r', 'p');
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV002', 'no such table',
            pg_catalog.jsonb_build_object('field', 'table', 'table', p_table));
    END IF;
    IF v_column IS NULL THEN
        SELECT a.attname INTO v_column
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = v_rel AND i.indisprimary AND i.indnkeyatts = 1;
        IF NOT FOUND THEN
            PERFORM governance.raise_error('GV002',
                'the table has no single-column primary key: name the key column',
                pg_catalog.jsonb_build_object('field', 'column', 'table', p_table));
        END IF;
    END IF;
    SELECT tn.nspname, t.typname INTO v_type_schema, v_type
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
     WHERE a.attrelid = v_rel AND a.attname = v_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV002', 'no such column',
            pg_catalog.jsonb_build_object('field', 'column', 'table', p_table, 'column', p_column));
    END IF;
    IF p_keys IS NULL OR pg_catalog.cardinality(p_keys) = 0
       OR pg_catalog.cardinality(p_keys) > 10000
       OR pg_catalog.array_position(p_keys, NULL) IS NOT NULL THEN
        PERFORM governance.raise_error('GV002', 'keys must be 1 to 10000 non-null values',
            pg_catalog.jsonb_build_object('field', 'keys',
                                          'count', pg_catalog.cardinality(p_keys)));
    END IF;
    -- The keys in the column's own type and text form (so '007' and '7' are one int key).
    EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(DISTINCT k::text) '
                              'FROM pg_catalog.unnest($1::%I.%I[]) AS k',
                              v_type_schema, v_type)
       INTO v_keys USING p_keys;

    v_old := pg_catalog.current_setting('lock_timeout');
    PERFORM pg_catalog.set_config('lock_timeout', governance._timeout_ms(v_timeout) || 'ms',
                                  true);
    BEGIN
        -- ORDER BY under FOR UPDATE: rows are locked one by one in this order.
        EXECUTE pg_catalog.format('SELECT pg_catalog.array_agg(k) FROM '
                                  '(SELECT t.%1$I::text AS k FROM %2$I.%3$I AS t '
                                  'WHERE t.%1$I = ANY ($1::%4$I.%5$I[]) '
                                  'ORDER BY t.%1$I FOR UPDATE OF t) s',
                                  v_column, v_schema, v_table, v_type_schema, v_type)
           INTO v_locked USING v_keys;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM governance.raise_error('GV003', 'rows are locked by another transaction',
            pg_catalog.jsonb_build_object('table', p_table, 'column', v_column,
                               'keys', pg_catalog.cardinality(v_keys),
                               'timeout_seconds', extract(epoch FROM v_timeout)));
    END;
    PERFORM pg_catalog.set_config('lock_timeout', v_old, true);

    v_locked := coalesce(v_locked, '{}');
    SELECT pg_catalog.array_agg(k ORDER BY k) INTO v_missing FROM pg_catalog.unnest(v_keys) AS k
     WHERE NOT (k = ANY (v_locked));
    IF v_missing IS NOT NULL AND NOT coalesce(p_skip_missing, false) THEN
        PERFORM governance.raise_error('GV002', 'some rows to lock do not exist',
            pg_catalog.jsonb_build_object('table', p_table, 'column', v_column,
                               'missing', pg_catalog.to_jsonb(v_missing[1:20]),
                               'missing_count', pg_catalog.cardinality(v_missing)));
    END IF;
    RETURN QUERY SELECT pg_catalog.unnest(v_locked);
END
$$;

-- governance._apply_stock(item_id, location_id, delta, movement_key): the hot path of a stock
-- change: apply the delta to the level and record the movement. Returns the new quantity (>= 0)
-- or, when the change is refused (it would take the level below zero, or past the bigint
-- range), -1 - available (< 0), available being the level read under its row lock so that it
-- agrees with the refusal. A refused change changes nothing. One bigint rather than a record:
-- this is called once per stock movement, and a record costs a function scan each time.
--
-- The level changes with the guarded UPDATE a hand-written application would use (the guard is
-- in its WHERE and is re-checked under the row lock: no read-then-write race), written so that
-- it cannot overflow. Two plain statements cost less than one statement with data-modifying
-- CTEs (measured: about 50 against 65 microseconds), and here they are still one round trip.
CREATE OR REPLACE FUNCTION governance._apply_stock(p_item_id text, p_location_id text,
                                                   p_delta bigint, p_movement_key text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_quantity bigint;
    v_available bigint;
BEGIN
    UPDATE governance.stock_level AS s
       SET quantity = s.quantity + p_delta, updated_at = clock_timestamp()
     WHERE s.item_id = p_item_id AND s.location_id = p_location_id
       AND CASE WHEN p_delta > 0 THEN s.quantity <= 9223372036854775807 - p_delta
                ELSE s.quantity >= -p_delta END
    RETURNING s.quantity INTO v_quantity;
    IF NOT FOUND AND p_delta > 0 THEN
        -- The level's first movement creates it; a concurrent first movement is added to it
        -- rather than lost.
        INSERT INTO governance.stock_level AS s (item_id, location_id, quantity)
        VALUES (p_item_id, p_location_id, p_delta)
        ON CONFLICT (item_id, location_id) DO UPDATE
           SET quantity = s.quantity + excluded.quantity, updated_at = clock_timestamp()
         WHERE s.quantity <= 9223372036854775807 - excluded.quantity
        RETURNING s.quantity INTO v_quantity;
    END IF;
    IF v_quantity IS NULL THEN
        -- Refused. Stock may have moved since the guard saw it: look again under the lock.
        SELECT s.quantity INTO v_available FROM governance.stock_level s
         WHERE s.item_id = p_item_id AND s.location_id = p_location_id
           FOR UPDATE;
        v_available := coalesce(v_available, 0);
        IF (p_delta < 0 AND v_available < -p_delta)
           OR (p_delta > 0 AND v_available > 9223372036854775807 - p_delta) THEN
            RETURN -1 - v_available;
        END IF;
        RETURN governance._apply_stock(p_item_id, p_location_id, p_delta, p_movement_key);
    END IF;
    INSERT INTO governance.stock_movement
        (item_id, location_id, movement_key, delta, quantity_after, user_name, source_service,
         request_id)
    VALUES (p_item_id, p_location_id, p_movement_key, p_delta, v_quantity,
            governance.ctx('user'), governance.ctx('service'), governance.ctx('request_id'));
    RETURN v_quantity;
END
$$;

-- governance._stock_outcome(item, location, delta, applied): what _apply_stock's answer means:
-- APPLIED with the quantity, or REFUSED (not enough stock) / OVERFLOW with the figures.
CREATE OR REPLACE FUNCTION governance._stock_outcome(p_item_id text, p_location_id text,
                                                     p_delta bigint, p_applied bigint,
                                                     OUT outcome text, OUT quantity bigint,
                                                     OUT detail jsonb)
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_applied >= 0 THEN
        outcome := 'APPLIED';
        quantity := p_applied;
    ELSIF p_delta < 0 THEN
        outcome := 'REFUSED';
        detail := jsonb_build_object('item_id', p_item_id, 'location_id', p_location_id,
                                     'available', -1 - p_applied, 'requested', -p_delta,
                                     'delta', p_delta);
    ELSE
        outcome := 'OVERFLOW';
        detail := jsonb_build_object('item_id', p_item_id, 'location_id', p_location_id,
                                     'available', -1 - p_applied, 'delta', p_delta);
    END IF;
END
$$;

-- governance._stock_repeat(movement, item, location, delta): the answer to a movement key used
-- again: REPEATED with the first result, or MISMATCH if it was used for a different movement.
CREATE OR REPLACE FUNCTION governance._stock_repeat(m governance.stock_movement,
                                                    p_item_id text, p_location_id text,
                                                    p_delta bigint,
                                                    OUT outcome text, OUT quantity bigint,
                                                    OUT detail jsonb)
LANGUAGE plpgsql
AS $$
BEGIN
    IF m.item_id <> p_item_id OR m.location_id <> p_location_id OR m.delta <> p_delta THEN
        outcome := 'MISMATCH';
        detail := jsonb_build_object(
            'movement_key', m.movement_key, 'movement_id', m.id,
            'first', jsonb_build_object('item_id', m.item_id, 'location_id', m.location_id,
                                        'delta', m.delta),
            'requested', jsonb_build_object('item_id', p_item_id, 'location_id', p_location_id,
                                            'delta', p_delta));
    ELSE
        outcome := 'REPEATED';
        quantity := m.quantity_after;
    END IF;
END
$$;

-- governance._adjust_keyed(item, location, delta, movement_key): a change with a movement key,
-- applied once: APPLIED, REPEATED (the first result), REFUSED, OVERFLOW or MISMATCH.
CREATE OR REPLACE FUNCTION governance._adjust_keyed(p_item_id text, p_location_id text,
                                                    p_delta bigint, p_movement_key text,
                                                    OUT outcome text, OUT quantity bigint,
                                                    OUT detail jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    v_applied bigint;
    v_constraint text;
    m governance.stock_movement;
BEGIN
    SELECT * INTO m FROM governance.stock_movement sm WHERE sm.movement_key = p_movement_key;
    IF NOT FOUND THEN
        BEGIN
            v_applied := governance._apply_stock(p_item_id, p_location_id, p_delta,
                                                 p_movement_key);
            SELECT * INTO outcome, quantity, detail
              FROM governance._stock_outcome(p_item_id, p_location_id, p_delta, v_applied);
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            IF v_constraint IS DISTINCT FROM 'stock_movement_key_unique' THEN
                RAISE;
            END IF;
            -- A concurrent caller applied this key first (we waited for it to commit); our
            -- own change was undone with this block. Answer with the first result.
            SELECT * INTO m FROM governance.stock_movement sm
             WHERE sm.movement_key = p_movement_key;
            IF NOT FOUND THEN
                -- Only under REPEATABLE READ or SERIALIZABLE: the first movement committed
                -- after this transaction's snapshot was taken.
                PERFORM governance.raise_error('GV003',
                    'a concurrent movement with this key is not visible yet: retry',
                    jsonb_build_object('movement_key', p_movement_key));
            END IF;
        END;
    END IF;
    SELECT * INTO outcome, quantity, detail
      FROM governance._stock_repeat(m, p_item_id, p_location_id, p_delta);
END
$$;

-- governance._stock_args_ok(item, location, delta, movement_key): are the arguments valid (the
-- wrapper's rules)? An SQL expression, so that the planner inlines it on the hot path.
CREATE OR REPLACE FUNCTION governance._stock_args_ok(p_item_id text, p_location_id text,
                                                     p_delta bigint, p_movement_key text)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT coalesce(p_delta <> 0 AND p_delta <> -9223372036854775808
                    AND length(p_item_id) BETWEEN 1 AND 255
                    AND NOT governance.is_blank(p_item_id)
                    AND length(p_location_id) BETWEEN 1 AND 255
                    AND NOT governance.is_blank(p_location_id)
                    AND (p_movement_key IS NULL
                         OR (length(p_movement_key) BETWEEN 1 AND 255
                             AND NOT governance.is_blank(p_movement_key))), false)
$$;

-- governance._check_stock_args(item, location, delta, movement_key): GV002 saying which
-- argument is wrong (called once _stock_args_ok has said one is).
CREATE OR REPLACE FUNCTION governance._check_stock_args(p_item_id text, p_location_id text,
                                                        p_delta bigint, p_movement_key text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM governance._require_text('item_id', p_item_id, 255),
            governance._require_text('location_id', p_location_id, 255);
    IF p_movement_key IS NOT NULL THEN
        PERFORM governance._require_text('movement_key', p_movement_key, 255);
    END IF;
    PERFORM governance.raise_error('GV002', 'delta must be a non-zero bigint',
        jsonb_build_object('field', 'delta', 'delta', p_delta));
END
$$;

-- governance.adjust_stock(item_id, location_id, delta, movement_key, context): add delta
-- (negative: withdraw) to a stock level and record the movement; returns the new quantity.
-- Creates the level row when missing. A change that would go below zero is refused with GV002
-- carrying the available and requested quantities, and changes nothing. With a movement_key the
-- movement is applied once: a repeat returns the first result (GV024 if the key was used for a
-- different movement). A refused movement does not use its key up.
CREATE OR REPLACE FUNCTION governance.adjust_stock(p_item_id text, p_location_id text,
                                                   p_delta bigint,
                                                   p_movement_key text DEFAULT NULL,
                                                   p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_applied bigint;
    r record;
BEGIN
    PERFORM governance.apply_context(p_context);
    IF NOT governance._stock_args_ok(p_item_id, p_location_id, p_delta, p_movement_key) THEN
        PERFORM governance._check_stock_args(p_item_id, p_location_id, p_delta, p_movement_key);
    END IF;
    IF p_movement_key IS NULL THEN
        v_applied := governance._apply_stock(p_item_id, p_location_id, p_delta, NULL);
        IF v_applied >= 0 THEN
            RETURN v_applied;
        END IF;
        SELECT * INTO r
          FROM governance._stock_outcome(p_item_id, p_location_id, p_delta, v_applied);
    ELSE
        SELECT * INTO r
          FROM governance._adjust_keyed(p_item_id, p_location_id, p_delta, p_movement_key);
    END IF;
    CASE r.outcome
        WHEN 'APPLIED', 'REPEATED' THEN
            RETURN r.quantity;
        WHEN 'REFUSED' THEN
            PERFORM governance.raise_error('GV002', 'not enough stock', r.detail);
        WHEN 'OVERFLOW' THEN
            PERFORM governance.raise_error('GV002', 'the quantity would be out of range',
                                           r.detail);
        ELSE
            PERFORM governance.raise_error('GV024',
                'movement key was already used for a different movement', r.detail);
    END CASE;
    RETURN NULL;
END
$$;

-- governance.adjust_stock_batch(item_id, location_id, deltas, movement_keys, contexts): several
-- changes of one level, applied in order in one transaction, each with its own key and context
-- (NULL: none), each answered on its own row: outcome (APPLIED, REPEATED, REFUSED, OVERFLOW,
-- MISMATCH), quantity, detail. A refused change does not stop the others. The wrapper sends the
-- changes concurrent callers make to the same level as one batch, so that a hot item pays one
-- commit for many changes instead of one each.
CREATE OR REPLACE FUNCTION governance.adjust_stock_batch(p_item_id text, p_location_id text,
                                                         p_deltas bigint[],
                                                         p_movement_keys text[],
                                                         p_contexts jsonb[])
RETURNS TABLE (outcome text, quantity bigint, detail jsonb)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n int := coalesce(cardinality(p_deltas), 0);
    v_applied bigint;
BEGIN
    IF n NOT BETWEEN 1 AND 1000 OR cardinality(p_movement_keys) <> n
       OR cardinality(p_contexts) <> n THEN
        PERFORM governance.raise_error('GV002',
            'deltas, movement_keys and contexts must have the same 1 to 1000 entries',
            jsonb_build_object('deltas', n, 'movement_keys', cardinality(p_movement_keys),
                               'contexts', cardinality(p_contexts)));
    END IF;
    FOR i IN 1 .. n LOOP
        IF NOT governance._stock_args_ok(p_item_id, p_location_id, p_deltas[i],
                                         p_movement_keys[i]) THEN
            PERFORM governance._check_stock_args(p_item_id, p_location_id, p_deltas[i],
                                                 p_movement_keys[i]);
        END IF;
    END LOOP;
    FOR i IN 1 .. n LOOP
        PERFORM governance.apply_context(coalesce(p_contexts[i], '{}'));
        IF p_movement_keys[i] IS NULL THEN
            v_applied := governance._apply_stock(p_item_id, p_location_id, p_deltas[i], NULL);
            IF v_applied >= 0 THEN
                outcome := 'APPLIED';
                quantity := v_applied;
                detail := NULL;
            ELSE
                SELECT * INTO outcome, quantity, detail
                  FROM governance._stock_outcome(p_item_id, p_location_id, p_deltas[i],
                                                 v_applied);
            END IF;
        ELSE
            SELECT * INTO outcome, quantity, detail
              FROM governance._adjust_keyed(p_item_id, p_location_id, p_deltas[i],
                                            p_movement_keys[i]);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- governance.get_stock_level(item_id, location_id): the quantity on hand (0 for a level that
-- has never moved).
CREATE OR REPLACE FUNCTION governance.get_stock_level(p_item_id text, p_location_id text)
RETURNS bigint
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT s.quantity FROM governance.stock_level s
                      WHERE s.item_id = p_item_id AND s.location_id = p_location_id), 0)
$$;

-- governance.stock_history(item_id, location_id, limit, before_id): the movements of a level,
-- newest first; page backwards with before_id (the smallest id of the previous page).
CREATE OR REPLACE FUNCTION governance.stock_history(p_item_id text, p_location_id text,
                                                    p_limit int DEFAULT 100,
                                                    p_before_id bigint DEFAULT NULL)
RETURNS SETOF governance.stock_movement
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.* FROM governance.stock_movement m
     WHERE m.item_id = p_item_id AND m.location_id = p_location_id
       AND (p_before_id IS NULL OR m.id < p_before_id)
     ORDER BY m.id DESC
     LIMIT greatest(coalesce(p_limit, 100), 0)
$$;

-- governance.lock_activity: who holds and who waits for advisory locks in this database, with
-- the lock's name where governance.lock_name knows it (a name is known once a transaction that
-- took the lock through governance.try_lock / governance.lock / gov.locks.advisory committed).
-- Locks taken by other code with pg_advisory_*lock(bigint) appear too, with lock_name NULL;
-- compare lock_key with governance.lock_key('name') to recognise them. The two-int4 form of
-- advisory locks is not shown. query is visible only for your own sessions unless you are a
-- member of pg_read_all_stats. pygov's waiters wait in the lock queue (governance.try_lock with
-- a wait), so they appear here with granted = false while they wait.
CREATE OR REPLACE VIEW governance.lock_activity AS
SELECT ((l.classid::bigint << 32) | l.objid::bigint) AS lock_key,
       n.name AS lock_name,
       l.granted,
       l.mode,
       l.pid,
       a.usename::text AS user_name,
       a.application_name,
       a.client_addr,
       a.state,
       a.xact_start,
       l.waitstart AS waiting_since,
       CASE WHEN NOT l.granted THEN clock_timestamp() - l.waitstart END AS waiting_for,
       CASE WHEN NOT l.granted THEN pg_catalog.pg_blocking_pids(l.pid) END AS blocked_by,
       a.query
  FROM pg_catalog.pg_locks l
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
  LEFT JOIN governance.lock_name n ON n.lock_key = ((l.classid::bigint << 32) | l.objid::bigint)
 WHERE l.locktype = 'advisory'
   AND l.objsubid = 1
   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                      WHERE d.datname = pg_catalog.current_database());

GRANT SELECT ON governance.lock_activity TO governance_app, governance_admin, governance_auditor;

-- lock_rows runs with its caller's rights, so its caller needs its helpers too.
GRANT EXECUTE ON FUNCTION
    governance._regclass(text), governance._timeout_ms(interval),
    governance.raise_error(text, text, jsonb)
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION
    governance.lock_key(text),
    governance.try_lock(text, interval),
    governance.lock(text, interval),
    governance.lock_rows(text, text[], text, interval, boolean),
    governance.adjust_stock(text, text, bigint, text, jsonb),
    governance.adjust_stock_batch(text, text, bigint[], text[], jsonb[]),
    governance.get_stock_level(text, text),
    governance.stock_history(text, text, int, bigint)
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION
    governance.lock_key(text),
    governance.get_stock_level(text, text),
    governance.stock_history(text, text, int, bigint)
TO governance_auditor;
