-- Quarantine: isolate corrupt rows, scan tables for them, resolve them through a review
-- workflow (QUARANTINED -> UNDER_REVIEW -> RESOLVED). Every transition is written to the audit
-- trail (governance.log_operation) as model 'governance.quarantine_record': one row per
-- quarantine_data, review and resolution (object_id = the record's id), one row per scan that
-- created records (object_id NULL; the record ids in extra.record_id_ranges, as [first, last]
-- pairs of consecutive ids: exact, and a few bytes however many records a scan created).
--
-- Row identity: a quarantined row's object_id is its primary key in text form, as
-- governance.row_object_id computes it from the row's JSON (the same text the audit trail's
-- triggers record); the scanners and the guard trigger both use it, so an application
-- quarantining by hand passes the same text: for a one-column key simply its value ('42',
-- 'notebook'), for a composite key pygov.audit.object_key(...).
--
-- Table names: the public scanner and guard functions are SECURITY INVOKER so that a name is
-- resolved with the caller's search_path and visibility; they hand a regclass to a SECURITY
-- DEFINER worker that checks the caller's privileges on it before reading or changing anything.
-- As in 00_core.sql, only SECURITY DEFINER functions pin search_path; the others name the
-- built-ins they call as pg_catalog.*, so that no overload planted in the caller's schemas
-- (public.cardinality(text[]), public.jsonb_build_object(text, ...)) is ever chosen.

-- governance._composite_object_id(row, key_columns): the key values joined with ':'.
CREATE OR REPLACE FUNCTION governance._composite_object_id(p_row jsonb, p_key_columns text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT pg_catalog.string_agg(governance.key_part(p_row ->> k.col), ':' ORDER BY k.i)
      FROM pg_catalog.unnest(p_key_columns) WITH ORDINALITY AS k(col, i)
$$;

-- governance.row_object_id(row, key_columns): the object_id of a row given as jsonb. One key
-- column: its value as text; several: the values joined with ':' (each escaped by key_part).
-- No subquery in the body, so the planner inlines it into a scan's query.
CREATE OR REPLACE FUNCTION governance.row_object_id(p_row jsonb, p_key_columns text[])
RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
    SELECT CASE WHEN pg_catalog.cardinality(p_key_columns) = 1 THEN p_row ->> p_key_columns[1]
                ELSE governance._composite_object_id(p_row, p_key_columns) END
$$;

-- governance.resolve_relation(name, field): the relation a caller means by a name. The name is
-- read as SQL (`demo.inventory`, `"Odd Name"`) with the caller's search_path; failing that, as
-- one raw relation name (`x"; DROP TABLE t; --` finds a table called exactly that). GV002 when
-- nothing matches. SECURITY INVOKER on purpose: a pinned search_path would hide the caller's.
CREATE OR REPLACE FUNCTION governance.resolve_relation(p_name text, p_field text)
RETURNS regclass
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v regclass;
BEGIN
    IF p_name IS NULL OR governance.is_blank(p_name) OR pg_catalog.length(p_name) > 500 THEN
        PERFORM governance.raise_error('GV002', p_field || ' must be a table name',
            pg_catalog.jsonb_build_object('field', p_field, 'table', p_name));
    END IF;
    BEGIN
        v := pg_catalog.to_regclass(p_name);
    EXCEPTION WHEN OTHERS THEN
        v := NULL;  -- not valid SQL name syntax: try it as a raw name below
    END;
    IF v IS NULL THEN
        v := pg_catalog.to_regclass(pg_catalog.quote_ident(p_name));
    END IF;
    IF v IS NULL THEN
        PERFORM governance.raise_error('GV002', p_field || ' names no table the caller can see',
            pg_catalog.jsonb_build_object('field', p_field, 'table', p_name));
    END IF;
    RETURN v;
END
$$;

-- governance._model_name(regclass): the model name of a table, `schema.table`, unquoted.
CREATE OR REPLACE FUNCTION governance._model_name(p_table regclass)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT n.nspname || '.' || c.relname
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table
$$;

-- governance._record_model_name(regclass): the model name quarantine records of the table's
-- rows carry: a partition's rows are recorded under the partitioned table at the top of its
-- tree, so that scanning the partition or the whole table, and a guard on either, agree on
-- one record per row.
CREATE OR REPLACE FUNCTION governance._record_model_name(p_table regclass)
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT governance._model_name(coalesce(pg_catalog.pg_partition_root(p_table), p_table)) $$;

-- governance._quoted_name(regclass): the table as a quoted SQL name for dynamic statements.
CREATE OR REPLACE FUNCTION governance._quoted_name(p_table regclass)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table
$$;

-- governance._primary_key_columns(regclass): the primary key's columns in key order, or NULL.
CREATE OR REPLACE FUNCTION governance._primary_key_columns(p_table regclass)
RETURNS text[]
LANGUAGE sql
STABLE
AS $$
    SELECT array_agg(a.attname::text ORDER BY k.i)
      FROM pg_catalog.pg_index x
      CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, i)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
     WHERE x.indrelid = p_table AND x.indisprimary
$$;

-- governance._quarantine_table(regclass, field, privilege): check that the caller may use the
-- table this way (GV001 otherwise) and that it is a table with a primary key (GV002); returns
-- the key columns.
CREATE OR REPLACE FUNCTION governance._quarantine_table(p_table regclass, p_field text,
                                                        p_privilege text)
RETURNS text[]
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_kind "char";
    v_keys text[];
BEGIN
    SELECT c.relkind INTO v_kind FROM pg_catalog.pg_class c WHERE c.oid = p_table;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV002', p_field || ' names no table',
            jsonb_build_object('field', p_field, 'table', p_table::oid));
    END IF;
    IF NOT has_table_privilege(governance.caller_role(), p_table, p_privilege) THEN
        PERFORM governance.raise_error('GV001',
            format('%s on %s requires the %s privilege', p_field, governance._model_name(p_table),
                   p_privilege),
            jsonb_build_object('field', p_field, 'table', governance._model_name(p_table),
                               'role', governance.caller_role(), 'privilege', p_privilege));
    END IF;
    -- The scanners read the table as the governance owner. Where row-level security would hide
    -- rows from the caller, a scan would copy those rows into records the caller can read: it is
    -- refused instead of leaking them.
    IF p_privilege = 'SELECT' AND governance._rls_applies(p_table, governance.caller_role()) THEN
        PERFORM governance.raise_error('GV001',
            format('%s on %s has row-level security that applies to %s: scanning it needs a role '
                   'that bypasses it (its owner, or BYPASSRLS)', p_field,
                   governance._model_name(p_table), governance.caller_role()),
            jsonb_build_object('field', p_field, 'table', governance._model_name(p_table),
                               'role', governance.caller_role(), 'reason', 'row_level_security'));
    END IF;
    IF v_kind NOT IN ('r', 'p') THEN
        PERFORM governance.raise_error('GV002', p_field || ' must be a table',
            jsonb_build_object('field', p_field, 'table', governance._model_name(p_table),
                               'relkind', v_kind));
    END IF;
    v_keys := governance._primary_key_columns(p_table);
    IF v_keys IS NULL THEN
        PERFORM governance.raise_error('GV002',
            p_field || ' has no primary key, so its rows cannot be identified',
            jsonb_build_object('field', p_field, 'table', governance._model_name(p_table)));
    END IF;
    RETURN v_keys;
END
$$;

-- governance._column_type(regclass, column, field): the type of an existing column (the name is
-- the column's exact name, not SQL syntax); GV002 when there is none.
CREATE OR REPLACE FUNCTION governance._column_type(p_table regclass, p_column text, p_field text)
RETURNS regtype
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v regtype;
BEGIN
    SELECT a.atttypid::regtype INTO v
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_table AND a.attname = p_column AND a.attnum > 0
       AND NOT a.attisdropped;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV002', p_field || ' names no column of the table',
            jsonb_build_object('field', p_field, 'column', p_column,
                               'table', governance._model_name(p_table)));
    END IF;
    RETURN v;
END
$$;

-- governance._check_corruption_type(code): GV002 unless the type is a row of corruption_type.
CREATE OR REPLACE FUNCTION governance._check_corruption_type(p_code text)
RETURNS void
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_code IS NULL OR NOT EXISTS (SELECT 1 FROM governance.corruption_type t
                                      WHERE t.code = p_code) THEN
        PERFORM governance.raise_error('GV002', 'unknown corruption type',
            jsonb_build_object('field', 'corruption_type', 'corruption_type', p_code,
                               'known', (SELECT jsonb_agg(t.code ORDER BY t.code)
                                           FROM governance.corruption_type t)));
    END IF;
END
$$;

-- governance._corruption_type_in_use(): BEFORE UPDATE OR DELETE on corruption_type. A type
-- that quarantine records use cannot be deleted or renamed (the integrity a foreign key would
-- give, without its per-row cost on inserts).
CREATE OR REPLACE FUNCTION governance._corruption_type_in_use()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR NEW.code IS DISTINCT FROM OLD.code)
       AND EXISTS (SELECT 1 FROM governance.quarantine_record q
                    WHERE q.corruption_type = OLD.code) THEN
        PERFORM governance.raise_error('GV002', 'the corruption type is used by quarantine records',
            jsonb_build_object('corruption_type', OLD.code, 'operation', TG_OP));
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER corruption_type_in_use
    BEFORE UPDATE OR DELETE ON governance.corruption_type
    FOR EACH ROW EXECUTE FUNCTION governance._corruption_type_in_use();

-- governance._quarantine_actor(): who is acting: the context's user, else the database role.
CREATE OR REPLACE FUNCTION governance._quarantine_actor()
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT coalesce(governance.ctx('user'), governance.caller_role()) $$;

-- governance._quarantine_audit(action, before, after): the audit row of one transition. The
-- snapshot of the quarantined data is logged once, when the record is created.
CREATE OR REPLACE FUNCTION governance._quarantine_audit(p_action text,
                                                        p_before governance.quarantine_record,
                                                        p_after governance.quarantine_record)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    -- (a row IS NULL only when every field is: test the key instead)
    v_created boolean := p_before.id IS NULL;
BEGIN
    RETURN governance._log_operation(
        'governance.quarantine_record', p_after.id::text,
        CASE WHEN v_created THEN 'CREATE' ELSE 'UPDATE' END,
        governance.ctx('service'),
        CASE WHEN NOT v_created THEN to_jsonb(p_before) - 'original_data' END,
        CASE WHEN v_created THEN to_jsonb(p_after) ELSE to_jsonb(p_after) - 'original_data' END,
        jsonb_build_object('action', p_action, 'quarantined_model', p_after.model_name,
                           'quarantined_object_id', p_after.object_id,
                           'corruption_type', p_after.corruption_type));
END
$$;

-- governance._quarantine_text(field, value, max_length): GV002 unless 1..max_length characters.
CREATE OR REPLACE FUNCTION governance._quarantine_text(p_field text, p_value text,
                                                       p_max_length int)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF p_value IS NULL OR governance.is_blank(p_value) OR length(p_value) > p_max_length THEN
        PERFORM governance.raise_error('GV002',
            format('%s must be 1 to %s characters', p_field, p_max_length),
            jsonb_build_object('field', p_field, 'length', length(p_value)));
    END IF;
END
$$;

-- governance.quarantine_data(model_name, object_id, corruption_type, reason, data, context):
-- quarantine one object and return the record's id. At most one record per (model, object,
-- type) is open: quarantining it again returns the open record's id. The unique partial index
-- settles races: concurrent callers wait on the first insert and then find its row.
CREATE OR REPLACE FUNCTION governance.quarantine_data(
    p_model_name text, p_object_id text, p_corruption_type text, p_reason text,
    p_data jsonb DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r governance.quarantine_record;
    v_id bigint;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._quarantine_text('model_name', p_model_name, 255);
    PERFORM governance._quarantine_text('object_id', p_object_id, 1000);
    PERFORM governance._quarantine_text('reason', p_reason, 10000);
    PERFORM governance._check_corruption_type(p_corruption_type);
    LOOP
        INSERT INTO governance.quarantine_record AS q
            (model_name, object_id, corruption_type, reason, original_data, quarantined_by)
        VALUES (p_model_name, p_object_id, p_corruption_type, p_reason, p_data,
                governance._quarantine_actor())
        ON CONFLICT (model_name, object_id, corruption_type) WHERE status <> 'RESOLVED'
        DO NOTHING
        RETURNING q.* INTO r;
        IF FOUND THEN
            -- A snapshot under a table's name is that table's data, even after a rename.
            PERFORM governance._record_model_source(p_model_name);
            PERFORM governance._quarantine_audit('quarantine', NULL, r);
            RETURN r.id;
        END IF;
        SELECT q.id INTO v_id FROM governance.quarantine_record q
         WHERE q.model_name = p_model_name AND q.object_id = p_object_id
           AND q.corruption_type = p_corruption_type AND q.status <> 'RESOLVED';
        IF FOUND THEN
            RETURN v_id;
        END IF;
        -- the open record was resolved between our INSERT and SELECT: quarantine anew
    END LOOP;
END
$$;

-- governance._quarantine_lock(id, action, from_statuses): the record, locked for a transition
-- (FOR UPDATE: concurrent transitions of one record run one after the other, and the later ones
-- see the earlier's outcome). GV005 when there is no such record or the workflow does not allow
-- the action from its status.
CREATE OR REPLACE FUNCTION governance._quarantine_lock(p_id bigint, p_action text,
                                                       p_from_statuses text[])
RETURNS governance.quarantine_record
LANGUAGE plpgsql
AS $$
DECLARE
    r governance.quarantine_record;
BEGIN
    SELECT * INTO r FROM governance.quarantine_record q WHERE q.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM governance.raise_error('GV005', 'no such quarantine record',
            jsonb_build_object('id', p_id, 'action', p_action));
    END IF;
    IF r.status <> ALL (p_from_statuses) THEN
        PERFORM governance.raise_error('GV005',
            format('cannot %s a quarantine record that is %s', p_action, r.status),
            jsonb_build_object('id', p_id, 'status', r.status, 'action', p_action,
                               'resolution', r.resolution));
    END IF;
    RETURN r;
END
$$;

-- governance.start_quarantine_review(id, context): QUARANTINED -> UNDER_REVIEW. Any other
-- starting status is GV005. Returns the updated record.
CREATE OR REPLACE FUNCTION governance.start_quarantine_review(p_id bigint,
                                                             p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.quarantine_record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before governance.quarantine_record;
    r governance.quarantine_record;
BEGIN
    PERFORM governance.apply_context(p_context);
    v_before := governance._quarantine_lock(p_id, 'start_review', '{QUARANTINED}');
    UPDATE governance.quarantine_record q
       SET status = 'UNDER_REVIEW', reviewed_by = governance._quarantine_actor(),
           reviewed_at = clock_timestamp()
     WHERE q.id = p_id
    RETURNING q.* INTO r;
    PERFORM governance._quarantine_audit('start_review', v_before, r);
    RETURN NEXT governance._readable_quarantine_record(r);
END
$$;

-- governance.resolve_quarantine(id, notes, resolution, context): QUARANTINED or UNDER_REVIEW
-- -> RESOLVED with REPAIRED, DISCARDED or FALSE_POSITIVE and the reviewer's notes.
-- governance_admin only. Resolving a resolved record is GV005. Returns the updated record.
-- To repair a row guarded by the quarantine trigger, resolve and repair in one transaction.
CREATE OR REPLACE FUNCTION governance.resolve_quarantine(p_id bigint, p_notes text,
                                                        p_resolution text DEFAULT 'REPAIRED',
                                                        p_context jsonb DEFAULT NULL)
RETURNS SETOF governance.quarantine_record
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before governance.quarantine_record;
    r governance.quarantine_record;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance.require_admin('resolve_quarantine');
    PERFORM governance._quarantine_text('notes', p_notes, 10000);
    IF p_resolution IS NULL OR p_resolution NOT IN ('REPAIRED', 'DISCARDED', 'FALSE_POSITIVE') THEN
        PERFORM governance.raise_error('GV002',
            'resolution must be REPAIRED, DISCARDED or FALSE_POSITIVE',
            jsonb_build_object('field', 'resolution', 'resolution', p_resolution));
    END IF;
    v_before := governance._quarantine_lock(p_id, 'resolve', '{QUARANTINED,UNDER_REVIEW}');
    UPDATE governance.quarantine_record q
       SET status = 'RESOLVED', resolution = p_resolution, resolution_notes = p_notes,
           resolved_by = governance._quarantine_actor(), resolved_at = clock_timestamp()
     WHERE q.id = p_id
    RETURNING q.* INTO r;
    PERFORM governance._quarantine_audit('resolve', v_before, r);
    RETURN NEXT r;
END
$$;

-- governance._readable_quarantine_record(record): the record as the caller may see it: without
-- the snapshot (original_data NULL) when the caller may not read the table it came from (see
-- governance.caller_may_read).
CREATE OR REPLACE FUNCTION governance._readable_quarantine_record(
    p_record governance.quarantine_record)
RETURNS governance.quarantine_record
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_record.original_data IS NOT NULL
       AND NOT governance.caller_may_read(p_record.model_name) THEN
        p_record.original_data := NULL;
    END IF;
    RETURN p_record;
END
$$;

-- governance.get_quarantine_record(id): the record, or no row.
CREATE OR REPLACE FUNCTION governance.get_quarantine_record(p_id bigint)
RETURNS SETOF governance.quarantine_record
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.* FROM governance.quarantine_record q
     CROSS JOIN LATERAL governance._readable_quarantine_record(q) r
     WHERE q.id = p_id
$$;

-- governance.list_quarantine_records(status, model_name, corruption_type, limit): records in id
-- order. status is QUARANTINED, UNDER_REVIEW, RESOLVED, OPEN (not resolved) or NULL (all).
CREATE OR REPLACE FUNCTION governance.list_quarantine_records(
    p_status text DEFAULT NULL, p_model_name text DEFAULT NULL,
    p_corruption_type text DEFAULT NULL, p_limit int DEFAULT NULL)
RETURNS SETOF governance.quarantine_record
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_status IS NOT NULL
       AND p_status NOT IN ('QUARANTINED', 'UNDER_REVIEW', 'RESOLVED', 'OPEN') THEN
        PERFORM governance.raise_error('GV002',
            'status must be QUARANTINED, UNDER_REVIEW, RESOLVED or OPEN',
            jsonb_build_object('field', 'status', 'status', p_status));
    END IF;
    IF p_limit IS NOT NULL AND p_limit < 1 THEN
        PERFORM governance.raise_error('GV002', 'limit must be at least 1',
            jsonb_build_object('field', 'limit', 'limit', p_limit));
    END IF;
    -- Whether the caller may read a snapshot is asked once per model listed, not per record.
    RETURN QUERY
    WITH listed AS MATERIALIZED (
        SELECT q.* FROM governance.quarantine_record q
         WHERE (p_status IS NULL
                OR (p_status = 'OPEN' AND q.status <> 'RESOLVED') OR q.status = p_status)
           AND (p_model_name IS NULL OR q.model_name = p_model_name)
           AND (p_corruption_type IS NULL OR q.corruption_type = p_corruption_type)
         ORDER BY q.id
         LIMIT p_limit),
    hidden AS (
        -- (OFFSET 0: the filter is not pushed below the DISTINCT, to run for every record)
        SELECT m.model_name FROM (SELECT DISTINCT l.model_name FROM listed l OFFSET 0) m
         WHERE NOT governance.caller_may_read(m.model_name))
    SELECT l.id, l.model_name, l.object_id, l.corruption_type, l.status, l.reason,
           CASE WHEN l.model_name IN (SELECT h.model_name FROM hidden h) THEN NULL
                ELSE l.original_data END,
           l.quarantined_by, l.quarantined_at, l.reviewed_by, l.reviewed_at, l.resolved_by,
           l.resolved_at, l.resolution, l.resolution_notes
      FROM listed l
     ORDER BY l.id;
END
$$;

-- governance._row_json_sql(table, alias): SQL for the JSON of a row of the table, as
-- to_jsonb(row). The row is rebuilt from its columns (ROW(c.a, c.b, ...)::table), because a
-- whole-row reference is formed for every row the scan reads, before any filter, which would
-- cost a scan of a million rows more than the anti-join itself; columns are only read from the
-- rows that pass. to_jsonb of that row costs a quarter less than jsonb_build_object of the same
-- columns, which looks up each argument's type again in every call.
DROP FUNCTION IF EXISTS governance._row_json_sql(regclass, text, text[]);
CREATE OR REPLACE FUNCTION governance._row_json_sql(p_table regclass, p_alias text)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    SELECT 'pg_catalog.to_jsonb(ROW('
           || string_agg(format('%I.%I', p_alias, a.attname), ', ' ORDER BY a.attnum)
           || ')::' || governance._quoted_name(p_table) || ')'
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- governance._id_ranges(ids): the runs of consecutive ids, as [[first, last], ...] in order.
CREATE OR REPLACE FUNCTION governance._id_ranges(p_ids bigint[])
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT jsonb_agg(jsonb_build_array(r.first, r.last) ORDER BY r.first)
      FROM (SELECT min(x.id) AS first, max(x.id) AS last
              FROM (SELECT u.id, u.id - row_number() OVER (ORDER BY u.id) AS run
                      FROM pg_catalog.unnest(p_ids) AS u(id)) x
             GROUP BY x.run) r
$$;

-- governance._quarantine_scan(scanner, table, keys, corruption_type, rows_sql, reason_sql):
-- the set-based core of every scanner. rows_sql is `<table> AS c WHERE ...` (built with
-- format('%I')), reason_sql an expression over c.
--   1. One CREATE TEMP TABLE ... AS SELECT finds the suspect rows (object_id, JSON snapshot,
--      reason). PostgreSQL may run that SELECT in parallel, JSON included; an INSERT ... SELECT
--      into a regular table never is, and on a large table the scan is most of the work.
--   2. One INSERT ... SELECT from that set stores the records. Rows with an open record of
--      this type, or one resolved as FALSE_POSITIVE, are skipped, so scanning again adds
--      nothing; a race with another writer is settled by the unique index (see below).
--   3. One audit row for the scan (operation CREATE, object_id NULL) lists the records it
--      created in extra.record_id_ranges: an audit row per record would cost more than the
--      scan, and a list of 10,000 ids cost a twentieth of it.
CREATE OR REPLACE FUNCTION governance._quarantine_scan(p_scanner text, p_table regclass,
                                                       p_keys text[], p_corruption_type text,
                                                       p_rows_sql text, p_reason_sql text)
RETURNS bigint
LANGUAGE plpgsql
-- Snapshots and object ids must not depend on the session that scans: a timestamptz, float,
-- interval or bytea key formatted in the caller's TimeZone (or float digits...) would give the
-- same row another object id, so the guard and later scans would not find its record.
SET TimeZone = 'UTC'
SET extra_float_digits = 1
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
AS $$
DECLARE
    v_model text := governance._record_model_name(p_table);
    v_actor text := governance._quarantine_actor();
    v_id_sequence CONSTANT regclass := 'governance.quarantine_record_id_seq';
    v_ids_in_order boolean;
    v_id_before bigint;
    v_count bigint;
    v_ids bigint[];
    v_last_id bigint;
    v_record_id_ranges jsonb;
    v_constraint text;
    -- Plain INSERT first: ON CONFLICT's speculative insertion costs a fifth more per row.
    v_insert text := $q$
            INSERT INTO governance.quarantine_record AS q
                (model_name, object_id, corruption_type, reason, original_data, quarantined_by)
            SELECT $1, f.object_id, $2, f.reason, f.snapshot, $3
              FROM pg_temp.governance_scan f
             WHERE NOT EXISTS (SELECT 1 FROM governance.quarantine_record o
                                WHERE o.model_name = $1 AND o.object_id = f.object_id
                                  AND o.corruption_type = $2 AND o.status <> 'RESOLVED')
               AND NOT EXISTS (SELECT 1 FROM governance.quarantine_record o
                                WHERE o.model_name = $1 AND o.object_id = f.object_id
                                  AND o.corruption_type = $2
                                  AND o.resolution = 'FALSE_POSITIVE')
            %s $q$;
    v_returning_ids text :=
        'WITH ins AS (%s RETURNING q.id) SELECT count(*), array_agg(ins.id) FROM ins';
BEGIN
    -- The object id is read from the snapshot (which has every column), so each suspect row
    -- is turned into JSON once. OFFSET 0 keeps the inner SELECT a subquery (pulled up, its
    -- JSON would be built again for the id) and leaves it free to run in parallel.
    IF pg_catalog.to_regclass('pg_temp.governance_scan') IS NOT NULL THEN
        PERFORM governance.raise_error('GV002',
            'this session already has a temporary table named governance_scan, the name the '
            'scanners use for their working set: drop or rename it',
            jsonb_build_object('table', 'pg_temp.governance_scan',
                               'reason', 'temporary_table_exists'));
    END IF;
    EXECUTE format('CREATE TEMP TABLE governance_scan ON COMMIT DROP AS '
                   'SELECT governance.row_object_id(s.snapshot, %L) AS object_id, s.snapshot, '
                   's.reason FROM (SELECT %s AS snapshot, %s AS reason FROM %s OFFSET 0) s',
                   p_keys, governance._row_json_sql(p_table, 'c'), p_reason_sql, p_rows_sql);
    -- Which ids will the records get? With the sequence's defaults (CACHE 1, counting up, no
    -- CYCLE) ids are handed out one at a time in increasing order, so a plain INSERT's records
    -- have ids after the last one handed out before it and up to currval, and have all of them
    -- unless another INSERT took some meanwhile. Returning and aggregating 10,000 ids instead
    -- costs 4 ms, a fortieth of the scan: that is left to the other cases.
    SELECT s.seqcache = 1 AND s.seqincrement > 0 AND NOT s.seqcycle,
           coalesce(pg_catalog.pg_sequence_last_value(v_id_sequence), s.seqstart - s.seqincrement)
      INTO v_ids_in_order, v_id_before
      FROM pg_catalog.pg_sequence s WHERE s.seqrelid = v_id_sequence;
    BEGIN
        IF v_ids_in_order THEN
            EXECUTE format(v_insert, '') USING v_model, p_corruption_type, v_actor;
            GET DIAGNOSTICS v_count = ROW_COUNT;
        ELSE
            EXECUTE format(v_returning_ids, format(v_insert, '')) INTO v_count, v_ids
            USING v_model, p_corruption_type, v_actor;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- Another transaction stored one of these objects after our snapshot (a concurrent
        -- scan or quarantine_data): insert again, leaving whatever is open by now alone.
        EXECUTE format(v_returning_ids,
                       format(v_insert, 'ON CONFLICT (model_name, object_id, corruption_type) '
                                        'WHERE status <> ''RESOLVED'' DO NOTHING'))
        INTO v_count, v_ids
        USING v_model, p_corruption_type, v_actor;
    WHEN check_violation THEN
        GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
        IF v_constraint = 'quarantine_record_object_id_check' THEN
            PERFORM governance.raise_error('GV002',
                format('a row of %s has a key whose text is empty or over 1,000 characters: '
                       'it cannot be recorded, so the scan stored nothing', v_model),
                jsonb_build_object('table', v_model, 'field', 'object_id',
                                   'reason', 'object_id_length', 'max_length', 1000));
        END IF;
        RAISE;
    END;
    DROP TABLE pg_temp.governance_scan;
    IF v_count > 0 AND v_ids IS NULL THEN
        v_last_id := pg_catalog.currval(v_id_sequence);
        -- Not one run (another INSERT took ids in between, or the sequence counts in steps):
        -- ours are the rows of (v_id_before, v_last_id] written by the same subtransaction as
        -- the last one, which is ours.
        IF v_last_id - v_id_before <> v_count THEN
            SELECT array_agg(q.id) INTO v_ids
              FROM governance.quarantine_record q
             WHERE q.id > v_id_before AND q.id <= v_last_id
               AND q.xmin = (SELECT l.xmin FROM governance.quarantine_record l
                              WHERE l.id = v_last_id);
        END IF;
    END IF;
    v_record_id_ranges := CASE
        WHEN v_count = 0 THEN NULL
        WHEN v_ids IS NULL AND v_last_id - v_id_before = v_count
            THEN jsonb_build_array(jsonb_build_array(v_id_before + 1, v_last_id))
        ELSE governance._id_ranges(v_ids) END;
    IF v_count > 0 THEN
        -- The snapshots are the table's rows: readable as the table is (caller_may_read), even
        -- after it is renamed or dropped.
        INSERT INTO governance.model_source (model_name, table_oid)
        VALUES (v_model, coalesce(pg_catalog.pg_partition_root(p_table), p_table))
        ON CONFLICT DO NOTHING;
        PERFORM governance._log_operation(
            'governance.quarantine_record', NULL, 'CREATE', governance.ctx('service'), NULL, NULL,
            jsonb_build_object('action', 'scan', 'scanner', p_scanner,
                               'quarantined_model', v_model,
                               'corruption_type', p_corruption_type, 'count', v_count,
                               'record_id_ranges', v_record_id_ranges));
    END IF;
    RETURN v_count;
END
$$;

-- governance._scan_orphans(child, fk_column, parent, parent_column, corruption_type, reason,
-- context): the worker behind governance.scan_orphans, on resolved tables.
CREATE OR REPLACE FUNCTION governance._scan_orphans(
    p_child regclass, p_fk_column text, p_parent regclass, p_parent_column text,
    p_corruption_type text, p_reason text, p_context jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text[];
    v_fk_type regtype;
    v_parent_type regtype;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._check_corruption_type(p_corruption_type);
    v_keys := governance._quarantine_table(p_child, 'child_table', 'SELECT');
    IF NOT has_table_privilege(governance.caller_role(), p_parent, 'SELECT') THEN
        PERFORM governance.raise_error('GV001', 'parent_table requires the SELECT privilege',
            jsonb_build_object('field', 'parent_table', 'table', governance._model_name(p_parent),
                               'role', governance.caller_role(), 'privilege', 'SELECT'));
    END IF;
    v_fk_type := governance._column_type(p_child, p_fk_column, 'fk_column');
    v_parent_type := governance._column_type(p_parent, p_parent_column, 'parent_column');
    BEGIN
        -- Can the two columns be compared at all? Asked on NULLs, before reading any row.
        EXECUTE format('SELECT NULL::%s = NULL::%s', v_fk_type, v_parent_type);
    EXCEPTION WHEN undefined_function OR datatype_mismatch THEN
        PERFORM governance.raise_error('GV002', 'fk_column and parent_column cannot be compared',
            jsonb_build_object('field', 'parent_column', 'fk_type', v_fk_type::text,
                               'parent_type', v_parent_type::text));
    END;
    RETURN governance._quarantine_scan(
        'scan_orphans', p_child, v_keys, p_corruption_type,
        format('%s AS c WHERE c.%I IS NOT NULL AND NOT EXISTS '
               '(SELECT 1 FROM %s AS p WHERE p.%I = c.%I)',
               governance._quoted_name(p_child), p_fk_column,
               governance._quoted_name(p_parent), p_parent_column, p_fk_column),
        format('%L || c.%I::text || %L',
               coalesce(p_reason || ': ', '') || p_fk_column || ' = ', p_fk_column,
               ' has no match in ' || governance._model_name(p_parent) || '.' || p_parent_column));
END
$$;

-- governance.scan_orphans(child_table, fk_column, parent_table, parent_column, corruption_type,
-- reason, context): quarantine every child row whose fk_column matches no parent row (NULL
-- references are not orphans). One INSERT ... SELECT; returns how many rows it quarantined.
CREATE OR REPLACE FUNCTION governance.scan_orphans(
    p_child_table text, p_fk_column text, p_parent_table text, p_parent_column text DEFAULT 'id',
    p_corruption_type text DEFAULT 'ORPHANED_RECORD', p_reason text DEFAULT NULL,
    p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN governance._scan_orphans(
        governance.resolve_relation(p_child_table, 'child_table'), p_fk_column,
        governance.resolve_relation(p_parent_table, 'parent_table'), p_parent_column,
        p_corruption_type, p_reason, p_context);
END
$$;

-- governance._scan_negative(table, column, corruption_type, reason, context): the worker
-- behind governance.scan_negative, on a resolved table.
CREATE OR REPLACE FUNCTION governance._scan_negative(
    p_table regclass, p_column text, p_corruption_type text, p_reason text, p_context jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text[];
    v_type regtype;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance._check_corruption_type(p_corruption_type);
    v_keys := governance._quarantine_table(p_table, 'table', 'SELECT');
    v_type := governance._column_type(p_table, p_column, 'column');
    IF (SELECT t.typcategory FROM pg_catalog.pg_type t WHERE t.oid = v_type) <> 'N' THEN
        PERFORM governance.raise_error('GV002', 'column must be numeric',
            jsonb_build_object('field', 'column', 'column', p_column, 'type', v_type::text));
    END IF;
    RETURN governance._quarantine_scan(
        'scan_negative', p_table, v_keys, p_corruption_type,
        -- money is numeric too, but has no comparison with an integer.
        format('%s AS c WHERE c.%I < %s', governance._quoted_name(p_table), p_column,
               CASE WHEN v_type = 'money'::regtype THEN '0::money' ELSE '0' END),
        format('%L || c.%I::text || %L', coalesce(p_reason || ': ', '') || p_column || ' = ',
               p_column, ' is below zero'));
END
$$;

-- governance.scan_negative(table, column, corruption_type, reason, context): quarantine every
-- row whose column is below zero. One INSERT ... SELECT; returns how many it quarantined.
CREATE OR REPLACE FUNCTION governance.scan_negative(
    p_table text, p_column text, p_corruption_type text DEFAULT 'INVALID_STATE',
    p_reason text DEFAULT NULL, p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN governance._scan_negative(governance.resolve_relation(p_table, 'table'), p_column,
                                     p_corruption_type, p_reason, p_context);
END
$$;

-- governance.quarantine_orphaned_journal_entry(journal_table, fk_column, parent_table,
-- parent_column, context): scan_orphans for journal entries (ORPHANED_RECORD).
CREATE OR REPLACE FUNCTION governance.quarantine_orphaned_journal_entry(
    p_journal_table text, p_fk_column text, p_parent_table text,
    p_parent_column text DEFAULT 'id', p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
AS $$
    SELECT governance.scan_orphans(p_journal_table, p_fk_column, p_parent_table, p_parent_column,
                                   'ORPHANED_RECORD', 'orphaned journal entry', p_context)
$$;

-- governance.quarantine_negative_stock(table, column, context): scan_negative for stock levels
-- (NEGATIVE_STOCK).
CREATE OR REPLACE FUNCTION governance.quarantine_negative_stock(
    p_table text, p_column text DEFAULT 'quantity', p_context jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
AS $$
    SELECT governance.scan_negative(p_table, p_column, 'NEGATIVE_STOCK', 'negative stock',
                                    p_context)
$$;

-- governance.quarantine_guard_trigger(): BEFORE UPDATE OR DELETE, per row. Refuses (GV005) a
-- write to a row that has an open quarantine record. Arguments: the model name, then the key
-- columns (fixed when the guard is enabled).
CREATE OR REPLACE FUNCTION governance.quarantine_guard_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- The same formatting as the scanners (see _quarantine_scan), whatever the writer's session.
SET TimeZone = 'UTC'
SET extra_float_digits = 1
SET IntervalStyle = 'postgres'
SET bytea_output = 'hex'
AS $$
DECLARE
    v_object_id text;
    v_ids bigint[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- TRUNCATE removes every row at once: refused while any row of the table is open.
        SELECT array_agg(q.id ORDER BY q.id) INTO v_ids
          FROM governance.quarantine_record q
         WHERE q.model_name = TG_ARGV[0] AND q.status <> 'RESOLVED';
        IF v_ids IS NOT NULL THEN
            PERFORM governance.raise_error('GV005',
                'the table has quarantined rows: TRUNCATE is refused until their records are '
                'resolved',
                jsonb_build_object('model_name', TG_ARGV[0], 'quarantine_ids', to_jsonb(v_ids),
                                   'operation', TG_OP));
        END IF;
        RETURN NULL;
    END IF;
    v_object_id := governance.row_object_id(to_jsonb(OLD), TG_ARGV[1:TG_NARGS - 1]);
    SELECT array_agg(q.id ORDER BY q.id) INTO v_ids
      FROM governance.quarantine_record q
     WHERE q.model_name = TG_ARGV[0] AND q.object_id = v_object_id AND q.status <> 'RESOLVED';
    IF v_ids IS NOT NULL THEN
        PERFORM governance.raise_error('GV005',
            'the row is quarantined: writes are refused until its quarantine record is resolved',
            jsonb_build_object('model_name', TG_ARGV[0], 'object_id', v_object_id,
                               'quarantine_ids', to_jsonb(v_ids), 'operation', TG_OP));
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

-- governance._set_quarantine_guard(table, enabled, context): the worker behind
-- enable_quarantine_guard / disable_quarantine_guard. On a partitioned table PostgreSQL clones
-- the row trigger into every partition, present and future, but not the statement-level
-- TRUNCATE trigger, which a TRUNCATE of one partition would not fire: that one is created on
-- each partition that exists now.
CREATE OR REPLACE FUNCTION governance._set_quarantine_guard(p_table regclass, p_enabled boolean,
                                                           p_context jsonb)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text[];
    v_model text;
    v_args text;
    v_tree regclass[];
    v_part regclass;
    v_inherited boolean;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance.require_admin(CASE WHEN p_enabled THEN 'enable_quarantine_guard'
                                          ELSE 'disable_quarantine_guard' END);
    v_keys := governance._quarantine_table(p_table, 'table', 'TRIGGER');
    v_model := governance._record_model_name(p_table);
    v_tree := p_table || ARRAY(SELECT t.relid FROM pg_catalog.pg_partition_tree(p_table) t
                                WHERE t.relid <> p_table ORDER BY t.level, t.relid);
    -- A partition whose row trigger is the clone of its partitioned table's guard.
    v_inherited := EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g
                            WHERE g.tgrelid = p_table AND g.tgname = 'governance_quarantine_guard'
                              AND g.tgparentid <> 0);
    IF NOT p_enabled THEN
        IF v_inherited THEN
            PERFORM governance.raise_error('GV002',
                format('the guard on %s is the guard of the partitioned table %s: unguard that '
                       'table', governance._model_name(p_table), v_model),
                jsonb_build_object('field', 'table', 'table', governance._model_name(p_table),
                                   'partitioned_table', v_model));
        END IF;
        EXECUTE format('DROP TRIGGER IF EXISTS governance_quarantine_guard ON %s',
                       governance._quoted_name(p_table));
        FOREACH v_part IN ARRAY v_tree LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS governance_quarantine_guard_truncate ON %s',
                           governance._quoted_name(v_part));
        END LOOP;
        RETURN false;
    END IF;
    SELECT string_agg(format('%L', a), ', ' ORDER BY i) INTO v_args
      FROM unnest(v_model || v_keys) WITH ORDINALITY AS u(a, i);
    IF NOT v_inherited THEN
        EXECUTE format('CREATE OR REPLACE TRIGGER governance_quarantine_guard '
                       'BEFORE UPDATE OR DELETE ON %s FOR EACH ROW '
                       'EXECUTE FUNCTION governance.quarantine_guard_trigger(%s)',
                       governance._quoted_name(p_table), v_args);
    END IF;
    FOREACH v_part IN ARRAY v_tree LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER governance_quarantine_guard_truncate '
                       'BEFORE TRUNCATE ON %s FOR EACH STATEMENT '
                       'EXECUTE FUNCTION governance.quarantine_guard_trigger(%s)',
                       governance._quoted_name(v_part), v_args);
    END LOOP;
    RETURN true;
END
$$;

-- governance.enable_quarantine_guard(table, context): from now on, updates and deletes of a
-- row with an open quarantine record fail with GV005 (governance_admin only; repeatable).
CREATE OR REPLACE FUNCTION governance.enable_quarantine_guard(p_table text,
                                                             p_context jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN governance._set_quarantine_guard(governance.resolve_relation(p_table, 'table'), true,
                                            p_context);
END
$$;

-- governance.disable_quarantine_guard(table, context): remove the guard (governance_admin).
CREATE OR REPLACE FUNCTION governance.disable_quarantine_guard(p_table text,
                                                              p_context jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN governance._set_quarantine_guard(governance.resolve_relation(p_table, 'table'), false,
                                            p_context);
END
$$;

-- governance.add_corruption_type(code, description, context): register a deployment's own
-- corruption type (governance_admin). True when added, false when the code already existed.
CREATE OR REPLACE FUNCTION governance.add_corruption_type(p_code text, p_description text,
                                                         p_context jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t governance.corruption_type;
BEGIN
    PERFORM governance.apply_context(p_context);
    PERFORM governance.require_admin('add_corruption_type');
    IF p_code IS NULL OR p_code !~ '^[A-Z][A-Z0-9_]{0,49}$' THEN
        PERFORM governance.raise_error('GV002',
            'a corruption type is 1 to 50 capital letters, digits or _, starting with a letter',
            jsonb_build_object('field', 'code', 'code', p_code));
    END IF;
    PERFORM governance._quarantine_text('description', p_description, 1000);
    INSERT INTO governance.corruption_type AS ct (code, description, created_by)
    VALUES (p_code, p_description, governance._quarantine_actor())
    ON CONFLICT (code) DO NOTHING
    RETURNING ct.* INTO t;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM governance._log_operation('governance.corruption_type', p_code, 'CREATE',
                                      governance.ctx('service'), NULL, to_jsonb(t), NULL);
    RETURN true;
END
$$;

-- governance.list_corruption_types(): every corruption type, by code.
CREATE OR REPLACE FUNCTION governance.list_corruption_types()
RETURNS TABLE (code text, description text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT t.code, t.description FROM governance.corruption_type t ORDER BY t.code $$;

-- governance.open_quarantine: the review queue, for DBAs.
CREATE OR REPLACE VIEW governance.open_quarantine AS
SELECT q.id, q.model_name, q.object_id, q.corruption_type, q.status, q.reason,
       q.quarantined_by, q.quarantined_at, q.reviewed_by, q.reviewed_at
  FROM governance.quarantine_record q
 WHERE q.status <> 'RESOLVED';

GRANT EXECUTE ON FUNCTION
    governance.row_object_id(jsonb, text[]),
    governance.resolve_relation(text, text),
    governance.quarantine_data(text, text, text, text, jsonb, jsonb),
    governance.start_quarantine_review(bigint, jsonb),
    governance.resolve_quarantine(bigint, text, text, jsonb),
    governance.get_quarantine_record(bigint),
    governance.list_quarantine_records(text, text, text, int),
    governance._scan_orphans(regclass, text, regclass, text, text, text, jsonb),
    governance.scan_orphans(text, text, text, text, text, text, jsonb),
    governance._scan_negative(regclass, text, text, text, jsonb),
    governance.scan_negative(text, text, text, text, jsonb),
    governance.quarantine_orphaned_journal_entry(text, text, text, text, jsonb),
    governance.quarantine_negative_stock(text, text, jsonb),
    governance._set_quarantine_guard(regclass, boolean, jsonb),
    governance.enable_quarantine_guard(text, jsonb),
    governance.disable_quarantine_guard(text, jsonb),
    governance.add_corruption_type(text, text, jsonb),
    governance.list_corruption_types()
TO governance_app, governance_admin;
-- row_object_id runs with the caller's rights: what it calls must be executable too.
GRANT EXECUTE ON FUNCTION governance._composite_object_id(jsonb, text[])
TO governance_app, governance_admin, governance_auditor;
GRANT EXECUTE ON FUNCTION
    governance.row_object_id(jsonb, text[]),
    governance.get_quarantine_record(bigint),
    governance.list_quarantine_records(text, text, text, int),
    governance.list_corruption_types()
TO governance_auditor;
GRANT SELECT ON governance.open_quarantine TO governance_auditor, governance_admin;
