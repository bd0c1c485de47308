-- The status-code class of each attempt (0 = no answer, 2 = 2xx … 5 = 5xx),
-- indexed with its endpoint and id: a class filter then reads its own rows
-- in id order instead of scanning every attempt of the endpoint.
ALTER TABLE attempts ADD COLUMN status_class BIGINT NOT NULL DEFAULT 0;
UPDATE attempts SET status_class = CASE
    WHEN response_status_code >= 100 AND response_status_code < 600 THEN response_status_code / 100
    ELSE 0 END;
CREATE INDEX attempts_by_endpoint_class ON attempts (endpoint_id, status_class, id);
