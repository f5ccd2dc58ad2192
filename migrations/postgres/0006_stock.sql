-- Locks and guarded stock: the lock name registry, stock levels and their movements.
-- depends: 0002_idempotency

-- Names of pygov's advisory locks, by key (governance.lock_key(name)), so that the DBA view
-- governance.lock_activity can say which lock a backend holds or waits for. Written by the
-- holder of a lock the first time a name is used; display only (truncating it is harmless).
CREATE TABLE governance.lock_name (
    lock_key   bigint      PRIMARY KEY,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    first_used timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The migration lock (pygov/migrate.py) is a pygov advisory lock too: name it.
INSERT INTO governance.lock_name (lock_key, name) VALUES (1887004534, 'pygov.migrate')
ON CONFLICT DO NOTHING;

-- One row per (item, location): the quantity on hand, never negative. fillfactor leaves room
-- on each page so that the (frequent) updates of a hot row stay HOT updates.
CREATE TABLE governance.stock_level (
    item_id     text        NOT NULL CHECK (length(item_id) BETWEEN 1 AND 255),
    location_id text        NOT NULL CHECK (length(location_id) BETWEEN 1 AND 255),
    quantity    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT stock_level_pkey PRIMARY KEY (item_id, location_id),
    CONSTRAINT stock_level_quantity_check CHECK (quantity >= 0)
) WITH (fillfactor = 70);

-- Every accepted change of a stock level, in the order it was applied to that level.
CREATE TABLE governance.stock_movement (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id        text        NOT NULL,
    location_id    text        NOT NULL,
    movement_key   text        CHECK (length(movement_key) BETWEEN 1 AND 255),
    delta          bigint      NOT NULL CHECK (delta <> 0),
    quantity_after bigint      NOT NULL CHECK (quantity_after >= 0),
    user_name      text,
    source_service text,
    request_id     text,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- History of one level, newest first.
CREATE INDEX stock_movement_level_idx ON governance.stock_movement (item_id, location_id, id);
-- A movement key applies its movement once (unkeyed movements pay nothing for it).
CREATE UNIQUE INDEX stock_movement_key_unique ON governance.stock_movement (movement_key)
    WHERE movement_key IS NOT NULL;

REVOKE ALL ON governance.lock_name, governance.stock_level, governance.stock_movement FROM PUBLIC;
GRANT SELECT ON governance.lock_name, governance.stock_level, governance.stock_movement
    TO governance_app, governance_auditor, governance_admin;
