-- Version 5: security and privacy.

-- Cost spike protection: a key may be suspended from spawning.
ALTER TABLE api_keys ADD COLUMN suspended_until TEXT;
ALTER TABLE api_keys ADD COLUMN suspended_reason TEXT;

-- Privacy options of an agent and what they found.
ALTER TABLE agents ADD COLUMN privacy TEXT;                  -- JSON options given at spawn
ALTER TABLE agents ADD COLUMN pii_detected TEXT;             -- JSON list of PII kinds
ALTER TABLE agents ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0;  -- task/result sealed
ALTER TABLE agents ADD COLUMN erase_after TEXT;              -- task and result erased then
ALTER TABLE agents ADD COLUMN erased_at TEXT;
CREATE INDEX agents_erase ON agents (erase_after) WHERE erased_at IS NULL;
CREATE INDEX agents_key_completed ON agents (key_id, completed_at);

-- Addresses refused before authentication, by hand or after repeated auth failures.
CREATE TABLE blocked_ips (
    ip         TEXT PRIMARY KEY,                 -- an address (no networks: see allowed_ips)
    reason     TEXT NOT NULL,
    source     TEXT NOT NULL,                    -- manual|auth_failures
    created_at TEXT NOT NULL,
    expires_at TEXT                              -- NULL: until unblocked
);

-- The audit trail (API_REFERENCE "Audit Logging").
CREATE TABLE audit_log (
    id            INTEGER PRIMARY KEY,
    timestamp     TEXT NOT NULL,
    event         TEXT NOT NULL,                 -- agent.spawn, security.violation, ...
    severity      TEXT NOT NULL,                 -- info|warning|critical
    api_key_id    TEXT,
    ip_address    TEXT,
    user_agent    TEXT,
    request_id    TEXT,
    resource_type TEXT,
    resource_id   TEXT,
    details       TEXT NOT NULL,                 -- JSON object, PII masked when asked
    request_body  TEXT,                          -- only with include_request_body
    response_body TEXT                           -- only with include_response_body
);
CREATE INDEX audit_time ON audit_log (timestamp);
CREATE INDEX audit_event ON audit_log (event, id);
CREATE INDEX audit_key ON audit_log (api_key_id, id);
CREATE INDEX audit_resource ON audit_log (resource_id);
