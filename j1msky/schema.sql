-- J1MSKY schema, latest version. Versioned with PRAGMA user_version; an older
-- database is brought here by the files in migrations/ (see db.py).
-- Timestamps: TEXT 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (string order = time order).
-- Money: INTEGER micro-dollars.

-- API keys: only the SHA-256 of a key is stored, never the key itself.
CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,            -- key_<hex>
    name              TEXT NOT NULL,
    prefix            TEXT NOT NULL,               -- first characters, for people
    key_hash          TEXT NOT NULL UNIQUE,        -- sha256 hex of the key
    scopes            TEXT NOT NULL,               -- space separated
    signing_salt      TEXT,                        -- api_secret = HMAC(master, salt); NULL: no secret
    require_signature INTEGER NOT NULL DEFAULT 0,
    max_concurrent    INTEGER,                     -- NULL: config default
    created_at        TEXT NOT NULL,
    expires_at        TEXT,                        -- set by rotation (grace) or at creation
    revoked_at        TEXT,
    revoke_reason     TEXT,
    notify_user       INTEGER NOT NULL DEFAULT 0,
    rotated_to        TEXT,                        -- id of the key that replaced this one
    last_used_at      TEXT,
    suspended_until   TEXT,                        -- cost spike: no spawning until then
    suspended_reason  TEXT
);

-- Signatures seen inside the replay window (sha256 of the signature only).
CREATE TABLE seen_signatures (
    signature_hash TEXT PRIMARY KEY,
    seen_at        TEXT NOT NULL
);

-- Agents: one row per spawned agent or team run.
CREATE TABLE agents (
    id               INTEGER PRIMARY KEY,          -- keyset tiebreaker
    agent_id         TEXT NOT NULL UNIQUE,         -- subagent_<unix>_<digits>
    key_id           TEXT,
    model            TEXT NOT NULL,
    team             TEXT,
    status           TEXT NOT NULL,                -- spawning|running|completed|failed|cancelled
    task             TEXT,
    priority         TEXT NOT NULL,
    timeout          REAL NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    completed_at     TEXT,
    result           TEXT,
    error            TEXT,
    estimated_micros INTEGER NOT NULL DEFAULT 0,
    actual_micros    INTEGER NOT NULL DEFAULT 0,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    fallback_from    TEXT,
    steps            TEXT,                          -- JSON list for teams
    simulated        INTEGER NOT NULL DEFAULT 0,
    budget_day       TEXT,                          -- YYYY-MM-DD (time zone of config)
    privacy          TEXT,                          -- JSON options given at spawn
    pii_detected     TEXT,                          -- JSON list of PII kinds
    encrypted        INTEGER NOT NULL DEFAULT 0,    -- task/result sealed (AES-256-GCM)
    erase_after      TEXT,                          -- task and result erased then
    erased_at        TEXT,
    pending_micros   INTEGER NOT NULL DEFAULT 0,    -- estimates of calls still in flight after it ended
    estimated_charge_micros INTEGER NOT NULL DEFAULT 0  -- part of actual_micros charged at an estimate
);
-- The list's filter and sort columns; each also holds model and actual_micros, so a
-- filtered list's meta (counts and cost by model) is read from the index alone. Indexes
-- whose queries imply NOT NULL hold only non-NULL values (fewer writes per admission).
CREATE INDEX agents_created ON agents (created_at, model, actual_micros);
CREATE INDEX agents_status_created ON agents (status, created_at, model, actual_micros);
CREATE INDEX agents_model_created ON agents (model, created_at, actual_micros);
CREATE INDEX agents_team_created ON agents (team, created_at, model, actual_micros)
    WHERE team IS NOT NULL;
CREATE INDEX agents_completed ON agents (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX agents_cost ON agents (actual_micros, model);
CREATE INDEX agents_key_status ON agents (key_id, status);
CREATE INDEX agents_erase ON agents (erase_after) WHERE erased_at IS NULL;
CREATE INDEX agents_key_completed ON agents (key_id, completed_at)
    WHERE completed_at IS NOT NULL;
-- Running totals of agents by status and model (the list's meta and pagination total),
-- kept by triggers in the transaction of every change to an agent row.
CREATE TABLE agent_totals (
    status        TEXT NOT NULL,
    model         TEXT NOT NULL,
    agents        INTEGER NOT NULL,
    actual_micros INTEGER NOT NULL,
    PRIMARY KEY (status, model)
) WITHOUT ROWID;
CREATE TRIGGER agent_totals_insert AFTER INSERT ON agents BEGIN
    INSERT INTO agent_totals (status, model, agents, actual_micros)
    VALUES (new.status, new.model, 1, new.actual_micros)
    ON CONFLICT (status, model) DO UPDATE SET agents = agents + 1,
        actual_micros = actual_micros + excluded.actual_micros;
END;
CREATE TRIGGER agent_totals_update AFTER UPDATE OF status, model, actual_micros ON agents
WHEN old.status IS NOT new.status OR old.model IS NOT new.model
     OR old.actual_micros IS NOT new.actual_micros BEGIN
    UPDATE agent_totals SET agents = agents - 1, actual_micros = actual_micros - old.actual_micros
    WHERE status = old.status AND model = old.model;
    INSERT INTO agent_totals (status, model, agents, actual_micros)
    VALUES (new.status, new.model, 1, new.actual_micros)
    ON CONFLICT (status, model) DO UPDATE SET agents = agents + 1,
        actual_micros = actual_micros + excluded.actual_micros;
END;
CREATE TRIGGER agent_totals_delete AFTER DELETE ON agents BEGIN
    UPDATE agent_totals SET agents = agents - 1, actual_micros = actual_micros - old.actual_micros
    WHERE status = old.status AND model = old.model;
END;

-- Idempotency keys (Stripe semantics), scoped to the calling API key.
CREATE TABLE idempotency_keys (
    key_id        TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,                   -- sha256 of method, path, body
    state         TEXT NOT NULL,                   -- executing|done
    status_code   INTEGER,
    response_body TEXT,
    headers       TEXT,                            -- JSON object
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);

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
    estimated_micros INTEGER NOT NULL DEFAULT 0,    -- part of cost_micros charged at an estimate
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
-- The dispatcher's: each webhook's oldest due deliveries, pending rows only.
CREATE INDEX deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at)
    WHERE state = 'pending';
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

-- Provider calls sent and not yet settled: each may be billed by the provider, so its
-- estimate stays charged against the budget until its real cost is known (see ledger.py).
CREATE TABLE calls_in_flight (
    id              INTEGER PRIMARY KEY,
    agent_id        TEXT NOT NULL,
    step            INTEGER NOT NULL,              -- index in the agent's steps
    model           TEXT NOT NULL,
    provider        TEXT NOT NULL,
    estimate_micros INTEGER NOT NULL,              -- the model's price at the input estimate and the output cap
    held            INTEGER NOT NULL DEFAULT 0,    -- its agent ended first and holds the estimate in reserve
    sent_at         TEXT NOT NULL
);
CREATE INDEX calls_in_flight_agent ON calls_in_flight (agent_id);

-- One row per failed authentication (ipguard.auth_failed), so a restart does not reset
-- a brute-force window; rows older than the window are deleted as failures come in, and
-- an address's rows when it is blocked.
CREATE TABLE auth_failures (
    ip        TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE INDEX auth_failures_ip ON auth_failures (ip, failed_at);
CREATE INDEX auth_failures_time ON auth_failures (failed_at);

-- A signed-in browser. The cookie holds a random id; only its hash is stored. The key
-- is re-checked on every request, so revoking it ends its sessions at once.
CREATE TABLE console_sessions (
    id_hash      TEXT PRIMARY KEY,                 -- sha256 of the cookie's id
    key_id       TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,                    -- idle timeout counts from here
    expires_at   TEXT NOT NULL,                    -- absolute lifetime
    ip_address   TEXT,
    user_agent   TEXT
);
CREATE INDEX console_sessions_key ON console_sessions (key_id);

-- Single-use sign-in links from `j1msky login-link` (10 minutes).
CREATE TABLE console_login_links (
    token_hash TEXT PRIMARY KEY,                   -- sha256 of the link's token
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
