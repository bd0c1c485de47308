-- Time-partitioned history. Messages, deliveries and attempts become RANGE
-- partitioned tables with one partition per UTC day, so history past
-- HERALD_HISTORY_RETENTION goes by dropping whole days, never by deleting
-- rows. Ids are a prefix and a ULID, which sorts by creation time, so
-- messages are partitioned by id and deliveries and attempts by their
-- message's id: a message, its deliveries and every attempt of it (retries
-- and resends on later days too) share one day and leave together.
--
-- Rows whose key falls in no day (a clock far off, a day not created yet,
-- or a message still being delivered when its day was dropped) go to a
-- DEFAULT partition, which the history sweep empties by rows.
--
-- What changes besides the layout:
-- * Deliveries and attempts no longer reference messages: a foreign key to
--   a partitioned table makes every detach scan the referencing table.
--   They still reference their endpoint (deleting one deletes its history).
-- * A unique index must hold the partition key, so an eventId is kept
--   unique per application by message_event_ids, a small table of its own.
-- * The FIFO queue's order is a plain sequence (PostgreSQL 15 allows no
--   identity column on a partitioned table).
-- * Ids compare bytewise (COLLATE "C"), as ULIDs sort.
--
-- An existing database moves its rows in this one transaction: Herald is
-- down meanwhile, for a time proportional to the history kept (README,
-- "History retention", gives a measured rate and the way around it).

-- The first 10 ULID characters (its 48-bit millisecond time) of `ms`, in
-- Crockford's base 32: with 16 zeros after it, the lowest ULID of that time.
CREATE FUNCTION herald_ulid_time(ms BIGINT) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> (5 * (9 - i))) & 31)::int + 1, 1), ''
                      ORDER BY i)
    FROM generate_series(0, 9) AS i
$$;

-- The lowest message id of a UTC day.
CREATE FUNCTION herald_day_bound(day DATE) RETURNS TEXT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'msg_' || herald_ulid_time((extract(epoch FROM day::timestamp) * 1000)::bigint) || '0000000000000000'
$$;

-- Creates the partitions of `day` (messages_pYYYYMMDD and the same for
-- deliveries and attempts) unless they exist. Answers whether it made them.
CREATE FUNCTION herald_create_day(day DATE) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
DECLARE
    suffix TEXT := to_char(day, 'YYYYMMDD');
    t TEXT;
BEGIN
    IF to_regclass('messages_p' || suffix) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    FOREACH t IN ARRAY ARRAY['messages', 'deliveries', 'attempts'] LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       t || '_p' || suffix, t, herald_day_bound(day), herald_day_bound(day + 1));
    END LOOP;
    RETURN TRUE;
END
$$;

ALTER TABLE attempts RENAME TO attempts_unpartitioned;
ALTER TABLE deliveries RENAME TO deliveries_unpartitioned;
ALTER TABLE messages RENAME TO messages_unpartitioned;

CREATE TABLE messages (
    id                 TEXT COLLATE "C" NOT NULL,
    app_id             TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_type         TEXT NOT NULL,
    event_id           TEXT,
    payload            TEXT NOT NULL,
    channels           TEXT,
    tags               TEXT,
    created_at         BIGINT NOT NULL,
    audience           TEXT,
    expires_at         BIGINT,
    payload_removed_at BIGINT
) PARTITION BY RANGE (id);

CREATE TABLE deliveries (
    id              TEXT COLLATE "C" NOT NULL,
    msg_id          TEXT COLLATE "C" NOT NULL,
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    app_id          TEXT NOT NULL,
    status          BIGINT NOT NULL,
    trigger_type    BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_token     BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    seq             BIGINT
) PARTITION BY RANGE (msg_id);

CREATE TABLE attempts (
    id                   TEXT COLLATE "C" NOT NULL,
    delivery_id          TEXT COLLATE "C" NOT NULL,
    msg_id               TEXT COLLATE "C" NOT NULL,
    endpoint_id          TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    app_id               TEXT NOT NULL,
    url                  TEXT NOT NULL,
    status               BIGINT NOT NULL,
    response_status_code BIGINT NOT NULL,
    response             TEXT NOT NULL,
    response_duration_ms BIGINT NOT NULL,
    trigger_type         BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    request_headers      TEXT,
    request_body         TEXT,
    response_headers     TEXT,
    status_class         BIGINT NOT NULL DEFAULT 0
) PARTITION BY RANGE (msg_id);

CREATE TABLE messages_default PARTITION OF messages DEFAULT;
CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT;
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;

-- A day for each day some kept message was made on, for today and for the
-- next three. Rows whose id falls outside them go to the default partition.
DO $$
DECLARE
    today DATE := (now() AT TIME ZONE 'UTC')::date;
    day DATE;
BEGIN
    FOR day IN
        SELECT DISTINCT (to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC')::date FROM messages_unpartitioned
        UNION SELECT generate_series(today, today + 3, interval '1 day')::date
    LOOP
        PERFORM herald_create_day(day);
    END LOOP;
END
$$;

INSERT INTO messages (id, app_id, event_type, event_id, payload, channels, tags, created_at, audience,
                      expires_at, payload_removed_at)
SELECT id, app_id, event_type, event_id, payload, channels, tags, created_at, audience,
       expires_at, payload_removed_at
FROM messages_unpartitioned;

INSERT INTO deliveries (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, next_attempt_at,
                        lease_token, created_at, updated_at, seq)
SELECT id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, next_attempt_at,
       lease_token, created_at, updated_at, seq
FROM deliveries_unpartitioned;

INSERT INTO attempts (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, response,
                      response_duration_ms, trigger_type, created_at, request_headers, request_body,
                      response_headers, status_class)
SELECT id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code, response,
       response_duration_ms, trigger_type, created_at, request_headers, request_body,
       response_headers, status_class
FROM attempts_unpartitioned;

-- One eventId per application, across every day.
CREATE TABLE message_event_ids (
    app_id   TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    msg_id   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (app_id, event_id)
);
INSERT INTO message_event_ids (app_id, event_id, msg_id)
SELECT app_id, event_id, id FROM messages_unpartitioned WHERE event_id IS NOT NULL;
CREATE INDEX message_event_ids_by_msg ON message_event_ids (msg_id);

DROP TABLE attempts_unpartitioned;
DROP TABLE deliveries_unpartitioned;
DROP TABLE messages_unpartitioned;

-- The FIFO queue's order, continuing where the identity column stopped.
CREATE SEQUENCE deliveries_seq OWNED BY deliveries.seq;
SELECT setval('deliveries_seq', coalesce((SELECT max(seq) FROM deliveries), 0) + 1, false);
ALTER TABLE deliveries ALTER COLUMN seq SET DEFAULT nextval('deliveries_seq');
ALTER TABLE deliveries ALTER COLUMN seq SET NOT NULL;

-- Indexes, built once the rows are in: each partition gets its own.
ALTER TABLE messages ADD PRIMARY KEY (id);
CREATE INDEX messages_event_id ON messages (app_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX messages_by_app ON messages (app_id, id);
CREATE INDEX messages_expiring ON messages (expires_at) WHERE payload_removed_at IS NULL;
CREATE INDEX messages_by_time ON messages (app_id, created_at);
CREATE INDEX messages_by_event_id ON messages (event_id) WHERE event_id IS NOT NULL;

-- A delivery is found by its message and its id: the message's id picks the day.
ALTER TABLE deliveries ADD PRIMARY KEY (msg_id, id);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN (1, 3);
CREATE INDEX deliveries_by_endpoint ON deliveries (endpoint_id);
CREATE INDEX deliveries_queue ON deliveries (endpoint_id, seq) WHERE status IN (1, 3);
-- What keeps a day's messages when the day is dropped: small, as most
-- deliveries finish within minutes.
CREATE INDEX deliveries_unfinished ON deliveries (msg_id) WHERE status IN (1, 3, 4);

ALTER TABLE attempts ADD PRIMARY KEY (msg_id, id);
-- An attempt named by its id alone (GET …/attempt/{id}) probes each day's index.
CREATE INDEX attempts_by_id ON attempts (id);
CREATE INDEX attempts_by_endpoint ON attempts (endpoint_id, id);
CREATE INDEX attempts_by_endpoint_class ON attempts (endpoint_id, status_class, id);
