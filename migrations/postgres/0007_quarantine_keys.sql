-- Quarantine: cheaper record keys. Storing 10,000 records is most of what a scan costs beyond
-- finding them, and the open-record index was a third of that. Measured on the scan_orphans
-- benchmark's 10,000-record INSERT (52 -> 44 ms):
--   * model_name, object_id and corruption_type compare byte by byte (COLLATE "C"): they are
--     identifiers, never sorted for people, and a linguistic comparison costs several times a
--     memcmp. A comparison with a text of the default collation takes the column's collation,
--     so every lookup still uses the index.
--   * The open-record index leads with object_id, which tells keys apart at the first column;
--     model_name first meant comparing the same table name again on every step down the tree.
--     The guard trigger, quarantine_data and the scanners look up all three columns; listing
--     one model's open records reads the (small) open part of the index.
--   * The length checks count characters only when the byte length is over the limit
--     (characters never outnumber bytes), instead of counting them in every row.
-- depends: 0005_quarantine

-- The view reads these columns; sql/40_quarantine.sql creates it again after migrating.
DROP VIEW IF EXISTS governance.open_quarantine;
DROP INDEX governance.quarantine_record_open_key;

ALTER TABLE governance.quarantine_record
    ALTER COLUMN model_name TYPE text COLLATE "C",
    ALTER COLUMN object_id TYPE text COLLATE "C",
    ALTER COLUMN corruption_type TYPE text COLLATE "C",
    DROP CONSTRAINT quarantine_record_model_name_check,
    DROP CONSTRAINT quarantine_record_object_id_check,
    DROP CONSTRAINT quarantine_record_reason_check,
    ADD CONSTRAINT quarantine_record_model_name_check CHECK (
        model_name <> '' AND (octet_length(model_name) <= 255 OR length(model_name) <= 255)),
    ADD CONSTRAINT quarantine_record_object_id_check CHECK (
        object_id <> '' AND (octet_length(object_id) <= 1000 OR length(object_id) <= 1000)),
    ADD CONSTRAINT quarantine_record_reason_check CHECK (
        reason <> '' AND (octet_length(reason) <= 10000 OR length(reason) <= 10000));

-- At most one open record per (model, object, type): see 0005_quarantine.sql.
CREATE UNIQUE INDEX quarantine_record_open_key
    ON governance.quarantine_record (object_id, model_name, corruption_type)
    WHERE status <> 'RESOLVED';
