-- Audit trail: a cheaper write path. Every audited row pays for every index of the trail, so it
-- keeps two B-trees and one BRIN:
--   (model_name, object_id, id)  B-tree: "the history of one object", newest first, paged by id;
--   (occurred_at)                B-tree (kept from 0003): time ranges, and the newest rows;
--   (id, transaction_id, user_name bloom)  BRIN: a row by id, the transaction ranges that seals
--       cover, "what did this user do" (a bloom filter per block range); rows arrive in id and
--       transaction order, and new block ranges are summarised by autovacuum, off the write path.
-- No primary key: on a partitioned table it would have to include occurred_at, so it would not
-- make id unique (its sequence does), and it would cost one more B-tree per audited row.
-- The lookup columns compare in byte order ("C"): lookups are equalities, and the locale's
-- collation would be paid on every index insert.
-- depends: 0003_audit

ALTER TABLE governance.audit_trail DROP CONSTRAINT audit_trail_pkey;
DROP INDEX governance.audit_trail_user_idx;
DROP INDEX governance.audit_trail_transaction_idx;
DROP INDEX governance.audit_trail_object_idx;

ALTER TABLE governance.audit_trail
    ALTER COLUMN model_name TYPE text COLLATE "C",
    ALTER COLUMN object_id TYPE text COLLATE "C",
    ALTER COLUMN user_name TYPE text COLLATE "C";

CREATE INDEX audit_trail_object_idx ON governance.audit_trail (model_name, object_id, id);
CREATE INDEX audit_trail_brin_idx ON governance.audit_trail
    USING brin (id, transaction_id, user_name text_bloom_ops)
    WITH (pages_per_range = 32, autosummarize = on);
