-- Version 4: webhooks and their durable outbox.

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,               -- wh_<hex>
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,                  -- JSON list of event types
    secret_sealed   TEXT NOT NULL,                  -- AES-GCM under a key from the master secret
    active          INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    key_id          TEXT,                           -- who registered it
    created_at      TEXT NOT NULL
);

-- The outbox: one row per event per subscribed webhook, written with the event.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        INTEGER,                        -- NULL for a test send
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,                  -- the exact body sent on every attempt
    state           TEXT NOT NULL,                  -- pending|delivered|failed|cancelled
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT
);
CREATE INDEX deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX deliveries_webhook ON webhook_deliveries (webhook_id, id);

-- Every attempt, for GET /webhooks/{id}/deliveries.
CREATE TABLE webhook_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at TEXT NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL
);
CREATE INDEX attempts_delivery ON webhook_attempts (delivery_id);
