-- Whether deliveries and checks to the endpoint verify its TLS certificate.
-- Off only where the server allows it (HERALD_ALLOW_INSECURE_TLS).
ALTER TABLE endpoints ADD COLUMN tls_verify BOOLEAN NOT NULL DEFAULT 1;
