-- The operator email outbox. An email is written in the same transaction as
-- the event that causes it, then sent by a background task: claimed with a
-- lease (next_attempt_at moves to the lease's end, lease_token names the
-- holder), marked sent once the SMTP server accepted it, or retried on a
-- schedule until it is given up as failed.
CREATE TABLE operator_emails (
    id              TEXT PRIMARY KEY,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_token     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX operator_emails_due ON operator_emails (next_attempt_at) WHERE state = 'pending';
CREATE INDEX operator_emails_by_created ON operator_emails (created_at);
