-- Whole-record retention. An application may keep its history for fewer
-- days than the server's HERALD_HISTORY_RETENTION; NULL follows the server.
ALTER TABLE applications ADD COLUMN history_retention_days INTEGER;
-- New databases give deleted pages back to the file system (Herald runs
-- PRAGMA incremental_vacuum after each sweep batch); that is set when the
-- file is created. An existing file switches only with a one-time VACUUM,
-- which rewrites the whole file, so Herald leaves it to the operator (see
-- "History retention" in the README).
