-- v6: provider calls are paid for even when their agent ends first (cancel, timeout, restart).
ALTER TABLE agents ADD COLUMN pending_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN estimated_charge_micros INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN estimated_micros INTEGER NOT NULL DEFAULT 0;

CREATE TABLE calls_in_flight (
    id              INTEGER PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    step            INTEGER NOT NULL,
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    estimate_micros INTEGER NOT NULL,
    held            INTEGER NOT NULL DEFAULT 0,
    sent_at         TEXT NOT NULL
);
CREATE INDEX calls_in_flight_agent ON calls_in_flight (agent_id);
