-- The operator console. Each made token remembers when it last
-- authenticated (written at most once a minute per token), and a message
-- can be found by its eventId across every application.
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
CREATE INDEX messages_by_event_id ON messages (event_id) WHERE event_id IS NOT NULL;
