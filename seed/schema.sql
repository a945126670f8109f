-- ducksheet schema. Referential integrity (sales -> product/customer) is checked by the
-- writer before it updates, so the tables carry no FOREIGN KEY clauses (DuckDB cannot
-- update a referenced row's columns in place).
CREATE TABLE IF NOT EXISTS product (
    product_id   INTEGER PRIMARY KEY,
    product_name VARCHAR NOT NULL,
    supplier     VARCHAR NOT NULL,
    brand        VARCHAR NOT NULL,
    family       VARCHAR NOT NULL,
    unit_price   DECIMAL(12, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS customer (
    customer_id   INTEGER PRIMARY KEY,
    customer_name VARCHAR NOT NULL,
    email         VARCHAR NOT NULL,
    region        VARCHAR NOT NULL,
    segment       VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS sales (
    sale_id      BIGINT PRIMARY KEY,
    invoice_date DATE NOT NULL,
    product_id   INTEGER NOT NULL,
    customer_id  INTEGER NOT NULL,
    quantity     INTEGER NOT NULL,
    net_price    DECIMAL(18, 2) NOT NULL  -- the line amount
);

-- Grouping sets over (supplier, brand, family) x month, kept exact by the writer.
-- level = GROUPING_ID(supplier, brand, family); month NULL = all-months total;
-- line_count = number of sales rows below the cell.
CREATE TABLE IF NOT EXISTS sales_summary_by_product_family (
    supplier   VARCHAR,
    brand      VARCHAR,
    family     VARCHAR,
    month      VARCHAR,
    level      INTEGER NOT NULL,
    quantity   BIGINT NOT NULL,
    net_amount DECIMAL(18, 2) NOT NULL,
    line_count BIGINT NOT NULL
);
-- cell_id: the writer's key for updating cells in bulk (the hierarchy columns hold
-- NULLs, so they cannot be one); not part of what clients see.
CREATE SEQUENCE IF NOT EXISTS summary_cell_ids;
ALTER TABLE sales_summary_by_product_family
    ADD COLUMN IF NOT EXISTS cell_id BIGINT DEFAULT nextval('summary_cell_ids');

-- Who last changed each cell and when (the grid's "changed by ann · 2 min ago").
ALTER TABLE sales_summary_by_product_family ADD COLUMN IF NOT EXISTS changed_by VARCHAR;
ALTER TABLE sales_summary_by_product_family ADD COLUMN IF NOT EXISTS changed_at TIMESTAMP;

-- The last request id applied, written in the same transaction as the edits.
CREATE TABLE IF NOT EXISTS _applied (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE,
    last_id   VARCHAR NOT NULL
);

-- Response payloads committed but not yet confirmed published to response_duck.
CREATE TABLE IF NOT EXISTS _outbox (
    seq      VARCHAR PRIMARY KEY,
    requests VARCHAR[] NOT NULL,
    payload  VARCHAR NOT NULL
);

-- Outcome of every request the writer has decided.
CREATE TABLE IF NOT EXISTS request_log (
    request_id VARCHAR NOT NULL,
    seq        VARCHAR NOT NULL,
    status     VARCHAR NOT NULL,
    code       VARCHAR,
    message    VARCHAR,
    user_name  VARCHAR
);

CREATE TABLE IF NOT EXISTS holds (
    supplier  VARCHAR,
    brand     VARCHAR,
    family    VARCHAR,
    month     VARCHAR,
    level     INTEGER NOT NULL,
    held_by   VARCHAR NOT NULL,
    held_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS validation_logs (
    import_id  VARCHAR NOT NULL,
    file_name  VARCHAR,
    row_number BIGINT,
    column_name VARCHAR,
    value      VARCHAR,
    reason     VARCHAR NOT NULL,
    logged_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- History (DESIGN §12): one event per applied request that changed something, written
-- in the same group commit as its effects. `ord` orders events like their request ids.
CREATE TABLE IF NOT EXISTS history (
    request   VARCHAR NOT NULL,
    seq       VARCHAR NOT NULL,  -- the response entry that published it
    ord       BIGINT NOT NULL,
    user_name VARCHAR NOT NULL,
    action    VARCHAR NOT NULL,  -- edit, edit_many, spread, undo, redo, hold
    changed_at TIMESTAMP NOT NULL,
    rows      BIGINT NOT NULL,   -- sales rows changed
    cells     BIGINT NOT NULL,   -- summary cells changed
    undoes    VARCHAR,           -- undo/redo: the request undone or redone
    held      BOOLEAN            -- hold: held or released
);

-- Every summary cell an event changed, before and after.
CREATE TABLE IF NOT EXISTS history_cells (
    request        VARCHAR NOT NULL,
    ord            BIGINT NOT NULL,
    supplier       VARCHAR,
    brand          VARCHAR,
    family         VARCHAR,
    month          VARCHAR,
    level          INTEGER NOT NULL,
    old_quantity   BIGINT,
    old_net_amount DECIMAL(18, 2),
    new_quantity   BIGINT,
    new_net_amount DECIMAL(18, 2)
);

-- Every sales row value an event changed, in units (cents, days since 1970-01-01):
-- the row history, and what undo and redo restore.
CREATE TABLE IF NOT EXISTS history_rows (
    request     VARCHAR NOT NULL,
    ord         BIGINT NOT NULL,
    sale_id     BIGINT NOT NULL,
    column_name VARCHAR NOT NULL,
    old         BIGINT NOT NULL,
    new         BIGINT NOT NULL
);

-- Each user's undo (undone = false) and redo stacks, oldest first.
CREATE TABLE IF NOT EXISTS undo_stacks (
    user_name VARCHAR NOT NULL,
    undone    BOOLEAN NOT NULL,
    position  INTEGER NOT NULL,
    request   VARCHAR NOT NULL
);

-- Versions (DESIGN §13): actual is this schema; every other version is a schema of its
-- own (v1, v2, …) with its facts, summary, holds, history and undo stacks.
CREATE TABLE IF NOT EXISTS versions (
    name        VARCHAR PRIMARY KEY,
    schema_name VARCHAR,            -- NULL: this schema (actual)
    source      VARCHAR,            -- the version it was copied from
    percent     DECIMAL(9, 4),      -- net prices scaled by this percent in the copy
    locked      BOOLEAN NOT NULL DEFAULT false,
    created_by  VARCHAR,
    created_at  TIMESTAMP
);
INSERT OR IGNORE INTO versions (name) VALUES ('actual');
