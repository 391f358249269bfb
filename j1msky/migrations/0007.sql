-- Version 7: failed authentications counted in the database, so a restart does not
-- reset a brute-force window.

-- One row per failed authentication (ipguard.auth_failed); rows older than the window
-- are deleted as failures come in, and an address's rows when it is blocked.
CREATE TABLE auth_failures (
    ip        TEXT NOT NULL,
    failed_at TEXT NOT NULL
);
CREATE INDEX auth_failures_ip ON auth_failures (ip, failed_at);
CREATE INDEX auth_failures_time ON auth_failures (failed_at);
