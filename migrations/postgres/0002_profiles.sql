-- Delivery profiles, payload formats and endpoint checks.

ALTER TABLE applications ADD COLUMN profile TEXT;

ALTER TABLE endpoints ADD COLUMN profile TEXT;
ALTER TABLE endpoints ADD COLUMN verify_token TEXT;
ALTER TABLE endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'raw';
ALTER TABLE endpoints ADD COLUMN template TEXT;
ALTER TABLE endpoints ADD COLUMN disabled_reason TEXT;
-- When the endpoint's check is next repeated; NULL when its profile repeats none.
ALTER TABLE endpoints ADD COLUMN reverify_at BIGINT;
CREATE INDEX endpoints_by_reverify ON endpoints (reverify_at);
