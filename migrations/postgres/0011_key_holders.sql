-- Key rotation: each node says which secret keys it holds and which one it
-- seals with, every HERALD_KEY_RELOAD_INTERVAL. `herald keys rotate` starts
-- only when every node seen lately holds the new key.
CREATE TABLE key_holders (
    node TEXT PRIMARY KEY,
    key_ids TEXT NOT NULL,
    sealing TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
