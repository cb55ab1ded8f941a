-- The geo feature store: breed observations per H3 cell (cell 'global', resolution -1, holds the totals),
-- and the feedback requests already applied (idempotency per request id). Runs on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS observations (
    cell       TEXT    NOT NULL,
    resolution INTEGER NOT NULL,
    breed      TEXT    NOT NULL,
    count      BIGINT  NOT NULL,
    updated    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cell, breed)
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT PRIMARY KEY,
    lat        DOUBLE PRECISION NOT NULL,
    lon        DOUBLE PRECISION NOT NULL,
    breed      TEXT NOT NULL,
    received   DOUBLE PRECISION NOT NULL
);
