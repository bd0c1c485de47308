-- Ordered delivery per endpoint.

-- 'parallel' (the default) or 'fifo': one delivery at a time, in publish order.
ALTER TABLE endpoints ADD COLUMN ordering TEXT NOT NULL DEFAULT 'parallel';

-- A FIFO endpoint's queue, in publish order: the rowid grows with every
-- insert and the single writer commits in that order. A delivery waiting
-- behind its endpoint's head is pending (1) with no next_attempt_at, so it
-- stays out of the due index and costs the claim nothing.
CREATE INDEX deliveries_queue ON deliveries (endpoint_id) WHERE status IN (1, 3);
