-- Whole-record retention. An application may keep its history for fewer
-- days than the server's HERALD_HISTORY_RETENTION; NULL follows the server.
ALTER TABLE applications ADD COLUMN history_retention_days BIGINT;
