-- Guarded stock (SQLite fallback). Advisory locks need no table here: every governance
-- transaction is BEGIN IMMEDIATE, one writer at a time.
-- depends: 0001_idempotency

CREATE TABLE governance_stock_level (
    item_id     TEXT    NOT NULL CHECK (length(item_id) BETWEEN 1 AND 255),
    location_id TEXT    NOT NULL CHECK (length(location_id) BETWEEN 1 AND 255),
    quantity    INTEGER NOT NULL DEFAULT 0 CHECK (quantity >= 0),
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (item_id, location_id)
);

CREATE TABLE governance_stock_movement (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id        TEXT    NOT NULL,
    location_id    TEXT    NOT NULL,
    movement_key   TEXT    CHECK (length(movement_key) BETWEEN 1 AND 255),
    delta          INTEGER NOT NULL CHECK (delta <> 0),
    quantity_after INTEGER NOT NULL CHECK (quantity_after >= 0),
    user_name      TEXT,
    source_service TEXT,
    request_id     TEXT,
    occurred_at    TEXT    NOT NULL
);

CREATE INDEX governance_stock_movement_level_idx
    ON governance_stock_movement (item_id, location_id, id);
CREATE UNIQUE INDEX governance_stock_movement_key_unique
    ON governance_stock_movement (movement_key) WHERE movement_key IS NOT NULL;
