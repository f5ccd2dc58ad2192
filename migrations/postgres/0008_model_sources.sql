-- Which tables each model name has recorded rows of: audited tables (enable_audit) and scanned
-- tables (the quarantine scanners). governance.caller_may_read shows the data recorded under
-- a model only to roles that may read its table; a name that answers to no table is taken for
-- an application's own. Without this record, a table renamed, dropped or no longer audited
-- would turn its history and snapshots into such a name, readable by every governance role.
-- Kept for good: a row here is never deleted.
-- depends: 0007_quarantine_keys

CREATE TABLE governance.model_source (
    model_name  text COLLATE "C" NOT NULL,
    table_oid   oid         NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (model_name, table_oid)
);

INSERT INTO governance.model_source (model_name, table_oid)
SELECT t.model_name, t.table_oid FROM governance.audited_table t
ON CONFLICT DO NOTHING;

-- Records whose model is the schema.table name of an existing table came from it (a scan, or
-- by hand under the table's name).
INSERT INTO governance.model_source (model_name, table_oid)
SELECT DISTINCT q.model_name, c.oid
  FROM governance.quarantine_record q
  JOIN pg_catalog.pg_namespace n ON starts_with(q.model_name, n.nspname || '.')
  JOIN pg_catalog.pg_class c
    ON c.relnamespace = n.oid AND c.relname = substr(q.model_name, length(n.nspname) + 2)
 WHERE n.nspname <> 'governance' AND c.relkind IN ('r', 'p')
ON CONFLICT DO NOTHING;
