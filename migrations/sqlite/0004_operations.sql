-- Operator workflows: whileDisabled, attempt details, payload retention,
-- payload validation and background tasks.

-- What happens to messages for a disabled endpoint: 'drop' or 'hold'.
ALTER TABLE endpoints ADD COLUMN while_disabled TEXT NOT NULL DEFAULT 'drop';

-- Deliveries gain two states besides 0 success, 1 pending, 2 fail, 3 sending:
-- 4 held (waiting for the endpoint to be enabled) and 5 dropped (never sent).

-- What each attempt sent and received. request_body is NULL when it was the
-- message payload exactly as published (the common case, stored once).
ALTER TABLE attempts ADD COLUMN request_headers TEXT;
ALTER TABLE attempts ADD COLUMN request_body TEXT;
ALTER TABLE attempts ADD COLUMN response_headers TEXT;

-- When the payload may be removed, and when it was.
ALTER TABLE messages ADD COLUMN expires_at INTEGER;
ALTER TABLE messages ADD COLUMN payload_removed_at INTEGER;
CREATE INDEX messages_expiring ON messages (expires_at) WHERE payload_removed_at IS NULL;
CREATE INDEX messages_by_time ON messages (app_id, created_at);

-- NULL follows the server's HERALD_VALIDATE_PAYLOADS.
ALTER TABLE applications ADD COLUMN validate_payloads BOOLEAN;

CREATE TABLE background_tasks (
    id          TEXT PRIMARY KEY,
    task        TEXT NOT NULL,
    status      TEXT NOT NULL,
    app_id      TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    endpoint_id TEXT,
    params      TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX background_tasks_running ON background_tasks (updated_at) WHERE status = 'running';
