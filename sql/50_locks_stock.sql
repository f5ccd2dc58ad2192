-- Locks (advisory and row locks), guarded stock, and the DBA view of lock activity.
-- As in 00_core.sql, only SECURITY DEFINER functions pin search_path; the helpers run with
-- their caller's (pinned) path and name every object with its schema.
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
AS $$ SELECT ('x' || left(encode(sha256(convert_to(p_name, 'UTF8')), 'hex'), 16))::bit(64)::bigint $$;

-- governance._require_text(field, value, max_length): GV002 unless value is 1 to max_length
-- characters and not blank.
CREATE OR REPLACE FUNCTION governance._require_text(p_field text, p_value text, p_max int)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_value IS NULL OR btrim(p_value) = '' OR length(p_value) > p_max THEN
        PERFORM governance.raise_error('GV002',
            format('%s must be 1 to %s characters', p_field, p_max),
            jsonb_build_object('field', p_field, 'length', length(p_value)));
    END IF;
END
$$;

-- governance._timeout_ms(interval): a wait as lock_timeout milliseconds (at least 1: 0 would
-- mean "wait forever").
CREATE OR REPLACE FUNCTION governance._timeout_ms(p_wait interval)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
AS $$ SELECT greatest(1, ceil(extract(epoch FROM p_wait) * 1000))::bigint $$;

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
            jsonb_build_object('field', 'table', 'table', p_table));
    END IF;
    IF v_column IS NULL THEN
        SELECT a.attname INTO v_column
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = v_rel AND i.indisprimary AND i.indnkeyatts = 1;
        IF NOT FOUND THEN
            PERFORM governance.raise_error('GV002',
                'the table has no single-column primary key: name the key column',
                jsonb_build_object('field', 'column', 'table', p_table));
        END IF;
    END IF;
    SELECT tn.nspname, t.typname INTO v_type_schema, v_type
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
      JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
     WHERE a.attrelid = v_rel AND a.attname = v_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV002', 'no such column',
            jsonb_build_object('field', 'column', 'table', p_table, 'column', p_column));
    END IF;
    IF p_keys IS NULL OR cardinality(p_keys) = 0 OR cardinality(p_keys) > 10000
       OR array_position(p_keys, NULL) IS NOT NULL THEN
        PERFORM governance.raise_error('GV002', 'keys must be 1 to 10000 non-null values',
            jsonb_build_object('field', 'keys', 'count', cardinality(p_keys)));
    END IF;
    -- The keys in the column's own type and text form (so '007' and '7' are one int key).
    EXECUTE format('SELECT array_agg(DISTINCT k::text) FROM unnest($1::%I.%I[]) AS k',
                   v_type_schema, v_type)
       INTO v_keys USING p_keys;

    v_old := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', governance._timeout_ms(v_timeout) || 'ms', true);
    BEGIN
        -- ORDER BY under FOR UPDATE: rows are locked one by one in this order.
        EXECUTE format('SELECT array_agg(k) FROM (SELECT t.%1$I::text AS k FROM %2$I.%3$I AS t '
                       'WHERE t.%1$I = ANY ($1::%4$I.%5$I[]) ORDER BY t.%1$I FOR UPDATE OF t) s',
                       v_column, v_schema, v_table, v_type_schema, v_type)
           INTO v_locked USING v_keys;
    EXCEPTION WHEN lock_not_available THEN
        PERFORM governance.raise_error('GV003', 'rows are locked by another transaction',
            jsonb_build_object('table', p_table, 'column', v_column,
                               'keys', cardinality(v_keys),
                               'timeout_seconds', extract(epoch FROM v_timeout)));
    END;
    PERFORM set_config('lock_timeout', v_old, true);

    v_locked := coalesce(v_locked, '{}');
    SELECT array_agg(k ORDER BY k) INTO v_missing FROM unnest(v_keys) AS k
     WHERE NOT (k = ANY (v_locked));
    IF v_missing IS NOT NULL AND NOT coalesce(p_skip_missing, false) THEN
        PERFORM governance.raise_error('GV002', 'some rows to lock do not exist',
            jsonb_build_object('table', p_table, 'column', v_column,
                               'missing', to_jsonb(v_missing[1:20]),
                               'missing_count', cardinality(v_missing)));
    END IF;
    RETURN QUERY SELECT unnest(v_locked);
END
$$;

-- governance._apply_stock(item_id, location_id, delta, movement_key): the hot path of
-- adjust_stock, one statement: apply the delta to the level and record the movement. Returns
-- the new quantity; GV002 (changing nothing) when a withdrawal would go below zero.
CREATE OR REPLACE FUNCTION governance._apply_stock(p_item_id text, p_location_id text,
                                                   p_delta bigint, p_movement_key text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_quantity bigint;
    v_available bigint;
BEGIN
    -- One statement: a deposit creates the level on first use (so two first movements at once
    -- both count); a withdrawal's guard is in its WHERE, re-checked under the row lock, so there
    -- is no read-then-write race. Only one of ins and upd touches a row.
    WITH ins AS (
        INSERT INTO governance.stock_level AS s (item_id, location_id, quantity)
        SELECT p_item_id, p_location_id, p_delta WHERE p_delta > 0
        ON CONFLICT (item_id, location_id) DO UPDATE
           SET quantity = s.quantity + excluded.quantity, updated_at = clock_timestamp()
        RETURNING s.quantity
    ), upd AS (
        UPDATE governance.stock_level AS s
           SET quantity = s.quantity + p_delta, updated_at = clock_timestamp()
         WHERE p_delta < 0 AND s.item_id = p_item_id AND s.location_id = p_location_id
           AND s.quantity + p_delta >= 0
        RETURNING s.quantity
    )
    INSERT INTO governance.stock_movement AS m
        (item_id, location_id, movement_key, delta, quantity_after, user_name, source_service,
         request_id)
    SELECT p_item_id, p_location_id, p_movement_key, p_delta, lvl.quantity,
           governance.ctx('user'), governance.ctx('service'), governance.ctx('request_id')
      FROM (SELECT quantity FROM ins UNION ALL SELECT quantity FROM upd) AS lvl
    RETURNING m.quantity_after INTO v_quantity;
    IF v_quantity IS NOT NULL THEN
        RETURN v_quantity;
    END IF;
    -- Refused. Read the level under its row lock, so that the figures in the error agree with
    -- the refusal (stock may have arrived since the guard saw it: then apply after all).
    SELECT s.quantity INTO v_available FROM governance.stock_level s
     WHERE s.item_id = p_item_id AND s.location_id = p_location_id
       FOR UPDATE;
    v_available := coalesce(v_available, 0);
    IF v_available + p_delta < 0 THEN
        PERFORM governance.raise_error('GV002', 'not enough stock',
            jsonb_build_object('item_id', p_item_id, 'location_id', p_location_id,
                               'available', v_available, 'requested', -p_delta,
                               'delta', p_delta));
    END IF;
    RETURN governance._apply_stock(p_item_id, p_location_id, p_delta, p_movement_key);
END
$$;

-- governance._stock_repeat(movement, item, location, delta): the first result of a movement
-- key, or GV024 if the key was used for a different movement.
CREATE OR REPLACE FUNCTION governance._stock_repeat(m governance.stock_movement,
                                                    p_item_id text, p_location_id text,
                                                    p_delta bigint)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    IF m.item_id <> p_item_id OR m.location_id <> p_location_id OR m.delta <> p_delta THEN
        PERFORM governance.raise_error('GV024',
            'movement key was already used for a different movement',
            jsonb_build_object('movement_key', m.movement_key, 'movement_id', m.id,
                               'first', jsonb_build_object('item_id', m.item_id,
                                                           'location_id', m.location_id,
                                                           'delta', m.delta),
                               'requested', jsonb_build_object('item_id', p_item_id,
                                                               'location_id', p_location_id,
                                                               'delta', p_delta)));
    END IF;
    RETURN m.quantity_after;
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
    v_quantity bigint;
    v_constraint text;
    m governance.stock_movement;
BEGIN
    PERFORM governance.apply_context(p_context);
    IF p_item_id IS NULL OR p_location_id IS NULL OR p_delta IS NULL OR p_delta = 0
       OR length(p_item_id) NOT BETWEEN 1 AND 255 OR length(p_location_id) NOT BETWEEN 1 AND 255
       OR btrim(p_item_id) = '' OR btrim(p_location_id) = '' THEN
        -- Off the hot path: say which argument is wrong.
        PERFORM governance._require_text('item_id', p_item_id, 255),
                governance._require_text('location_id', p_location_id, 255);
        PERFORM governance.raise_error('GV002', 'delta must be a non-zero integer',
            jsonb_build_object('field', 'delta', 'delta', p_delta));
    END IF;

    IF p_movement_key IS NULL THEN
        v_quantity := governance._apply_stock(p_item_id, p_location_id, p_delta, NULL);
    ELSE
        PERFORM governance._require_text('movement_key', p_movement_key, 255);
        SELECT * INTO m FROM governance.stock_movement sm WHERE sm.movement_key = p_movement_key;
        IF FOUND THEN
            RETURN governance._stock_repeat(m, p_item_id, p_location_id, p_delta);
        END IF;
        BEGIN
            v_quantity := governance._apply_stock(p_item_id, p_location_id, p_delta,
                                                  p_movement_key);
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
            RETURN governance._stock_repeat(m, p_item_id, p_location_id, p_delta);
        END;
    END IF;
    RETURN v_quantity;
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
    governance.get_stock_level(text, text),
    governance.stock_history(text, text, int, bigint)
TO governance_app, governance_admin;
GRANT EXECUTE ON FUNCTION
    governance.lock_key(text),
    governance.get_stock_level(text, text),
    governance.stock_history(text, text, int, bigint)
TO governance_auditor;
