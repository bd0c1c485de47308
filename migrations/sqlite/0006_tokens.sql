-- API tokens besides the admin token: administrator, application-scoped or
-- owner-scoped, each with an optional expiry and revocable. Only the
-- token's SHA-256 is kept. A token dies with its application.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    app_id     TEXT REFERENCES applications(id) ON DELETE CASCADE,
    owner_id   TEXT,
    rate_limit INTEGER,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_by_app ON api_tokens (app_id, id);
