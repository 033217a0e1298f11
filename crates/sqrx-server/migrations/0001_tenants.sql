-- Users, their API keys and the audit log. The same statements run on SQLite and PostgreSQL:
-- text ids made by the server, times as Unix milliseconds (BIGINT), flags as 0/1 (BIGINT).
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    max_sandboxes BIGINT,
    max_cpu_millis BIGINT,
    max_memory_mb BIGINT,
    max_disk_mb BIGINT,
    max_lifetime_s BIGINT,
    rate_per_minute BIGINT
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    revoked_ms BIGINT,
    last_used_ms BIGINT
);

CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    user_id TEXT,
    key_id TEXT,
    action TEXT NOT NULL,
    target TEXT,
    result TEXT NOT NULL,
    status BIGINT NOT NULL,
    source_ip TEXT
);

CREATE INDEX audit_at ON audit (at_ms);
