-- Herald's schema on PostgreSQL. Times are Unix milliseconds and JSON is text,
-- as on SQLite, so both backends share one row mapping; payloads must stay
-- byte for byte as published, which jsonb would not keep.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE applications (
    id         TEXT PRIMARY KEY,
    uid        TEXT UNIQUE,
    name       TEXT NOT NULL,
    rate_limit BIGINT,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id                         TEXT PRIMARY KEY,
    app_id                     TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    uid                        TEXT,
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL DEFAULT '',
    filter_types               TEXT,
    channels                   TEXT,
    disabled                   BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit                 BIGINT,
    metadata                   TEXT NOT NULL DEFAULT '{}',
    headers                    TEXT NOT NULL DEFAULT '{}',
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at BIGINT,
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_by_app ON endpoints (app_id, id);

CREATE TABLE event_types (
    name          TEXT PRIMARY KEY,
    description   TEXT NOT NULL,
    archived      BOOLEAN NOT NULL DEFAULT FALSE,
    deprecated    BOOLEAN NOT NULL DEFAULT FALSE,
    schemas       TEXT,
    group_name    TEXT,
    feature_flags TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE messages (
    id         TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    event_id   TEXT,
    payload    TEXT NOT NULL,
    channels   TEXT,
    tags       TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX messages_by_app ON messages (app_id, id);

-- One row per (message, endpoint) send job: the transactional outbox.
-- Pending (1) and sending (3) rows are due at next_attempt_at; for a sending
-- row that is the end of its lease, so a crashed worker's job comes due again.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    msg_id          TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    app_id          TEXT NOT NULL,
    status          BIGINT NOT NULL,
    trigger_type    BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_token     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN (1, 3);
CREATE INDEX deliveries_by_msg ON deliveries (msg_id);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id);

CREATE TABLE attempts (
    id                   TEXT PRIMARY KEY,
    delivery_id          TEXT NOT NULL,
    msg_id               TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    endpoint_id          TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    app_id               TEXT NOT NULL,
    url                  TEXT NOT NULL,
    status               BIGINT NOT NULL,
    response_status_code BIGINT NOT NULL,
    response             TEXT NOT NULL,
    response_duration_ms BIGINT NOT NULL,
    trigger_type         BIGINT NOT NULL,
    created_at           BIGINT NOT NULL
);
CREATE INDEX attempts_by_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_by_msg ON attempts (msg_id, id);

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    status_code BIGINT,
    body        BYTEA,
    created_at  BIGINT NOT NULL
);
