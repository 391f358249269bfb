-- Version 8: the owner's console (server-rendered pages at /).

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
