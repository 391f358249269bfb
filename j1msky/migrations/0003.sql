-- Version 3: running totals for cost control, provider hourly counters, events.

-- The budget day (configured time zone) an agent's reservation and spend belong to.
ALTER TABLE agents ADD COLUMN budget_day TEXT;

-- Covering indexes for the list's totals (meta.by_model, total_cost) under common filters.
CREATE INDEX agents_rollup ON agents (status, model, actual_micros);
CREATE INDEX agents_model_cost ON agents (model, actual_micros);

-- Provider calls (HTTP attempts sent) in the current clock-hour window.
CREATE TABLE provider_usage (
    provider     TEXT PRIMARY KEY,
    window_start TEXT NOT NULL,                     -- top of the hour, UTC
    calls        INTEGER NOT NULL DEFAULT 0
);

-- Money per budget day, kept as agents are admitted, charged and finish.
CREATE TABLE budget_days (
    day             TEXT PRIMARY KEY,               -- YYYY-MM-DD, configured time zone
    spent_micros    INTEGER NOT NULL DEFAULT 0,     -- charged from reported usage
    reserved_micros INTEGER NOT NULL DEFAULT 0      -- estimates of agents still active
);

-- Usage per budget day, model, provider and key: billing and status read only this.
CREATE TABLE usage_daily (
    day           TEXT NOT NULL,
    model         TEXT NOT NULL,
    provider      TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    calls         INTEGER NOT NULL DEFAULT 0,       -- model answers (agent steps)
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, model, provider, key_id)
);

-- Everything that happened, written in the same transaction as the change.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: feed cursors stay valid
    type       TEXT NOT NULL,                       -- agent.completed, budget.alert, ...
    created_at TEXT NOT NULL,
    data       TEXT NOT NULL                        -- JSON object
);
CREATE INDEX events_type ON events (type, id);
