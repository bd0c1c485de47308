-- Owners and audiences; endpoint health.

ALTER TABLE endpoints ADD COLUMN owner_id TEXT;
-- Since when the endpoint's deliveries have been exhausting their retries
-- with no success in between; NULL while healthy.
ALTER TABLE endpoints ADD COLUMN failing_since BIGINT;

ALTER TABLE messages ADD COLUMN audience TEXT;
