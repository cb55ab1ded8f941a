-- The geo feature store: curated breed observations per H3 cell (cell 'global', resolution -1, holds the totals), and,
-- kept apart from them, feedback votes (one per feedback token), the cells each vote counts in, and the audit trail of
-- reverts. Runs on SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS observations (
    cell       TEXT    NOT NULL,
    resolution INTEGER NOT NULL,
    breed      TEXT    NOT NULL,
    count      BIGINT  NOT NULL,
    updated    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cell, breed)
);
-- one row per feedback token: the primary key is the token id (one vote per token), and `reverted` is when a revert
-- took the vote back (the row stays, so the token stays used)
CREATE TABLE IF NOT EXISTS feedback_votes (
    token_id   TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    photo_id   TEXT,
    model      TEXT NOT NULL,
    breed      TEXT NOT NULL,
    source     TEXT NOT NULL,
    cells      TEXT NOT NULL,
    received   DOUBLE PRECISION NOT NULL,
    reverted   DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS feedback_votes_received ON feedback_votes (received);
CREATE INDEX IF NOT EXISTS feedback_votes_source ON feedback_votes (source, received);
-- the cells (and 'global') a live vote counts in, by day received (its weight fades with age)
CREATE TABLE IF NOT EXISTS feedback_cells (
    token_id TEXT   NOT NULL,
    cell     TEXT   NOT NULL,
    breed    TEXT   NOT NULL,
    day      BIGINT NOT NULL,
    PRIMARY KEY (token_id, cell)
);
CREATE INDEX IF NOT EXISTS feedback_cells_cell ON feedback_cells (cell, day);
CREATE TABLE IF NOT EXISTS feedback_audit (
    id       TEXT PRIMARY KEY,
    at       DOUBLE PRECISION NOT NULL,
    action   TEXT NOT NULL,
    who      TEXT NOT NULL,
    since    DOUBLE PRECISION,
    source   TEXT,
    votes    BIGINT NOT NULL,
    cells    TEXT NOT NULL
);
