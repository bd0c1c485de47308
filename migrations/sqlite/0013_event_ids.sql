-- One eventId per application, kept in a table of its own as on
-- PostgreSQL (where messages are partitioned by day and a unique index
-- cannot span the days), so both backends write it with the same SQL.
CREATE TABLE message_event_ids (
    app_id   TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    msg_id   TEXT NOT NULL,
    PRIMARY KEY (app_id, event_id)
);
INSERT INTO message_event_ids (app_id, event_id, msg_id)
SELECT app_id, event_id, id FROM messages WHERE event_id IS NOT NULL;
CREATE INDEX message_event_ids_by_msg ON message_event_ids (msg_id);
