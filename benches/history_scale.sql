-- Fills a Herald PostgreSQL database with history for the partition scale
-- run (docs/performance.md, "History at scale on PostgreSQL"): the days
-- :first to :last before today (1 is yesterday), :per_day messages a day,
-- each with one finished delivery to one of the application's endpoints
-- and :tries attempts (all but the last answered 500, the last 200).
--
-- Each day's three tables are filled bare, then attached as that day's
-- partitions: attaching builds their indexes in one pass each, several
-- times faster than growing them row by row. Two sessions over disjoint
-- days use both cores:
--
--   psql -v app=app_… -v first=1 -v last=15 -v per_day=333334 -v tries=5 -f benches/history_scale.sql URL &
--   psql -v app=app_… -v first=16 -v last=30 -v per_day=333334 -v tries=5 -f benches/history_scale.sql URL
--
-- The application and its endpoints are made through the API first.

\set ON_ERROR_STOP on
-- -v event_ids=true gives every message an eventId, as a product sending
-- its own ids would (dropping a day then frees them too).
\if :{?event_ids}
\else
  \set event_ids false
\endif
SET synchronous_commit = off;
SET maintenance_work_mem = '512MB';

CREATE TEMP TABLE scale_endpoints AS
SELECT row_number() OVER (ORDER BY id) - 1 AS n, id FROM endpoints WHERE app_id = :'app';

SELECT count(*) AS endpoints, count(*) > 0 AS has_endpoints FROM scale_endpoints \gset
\if :has_endpoints
\else
  \echo 'the application has no endpoints'
  \quit
\endif

-- The first 10 characters of a ULID made at `ms`: the migration's
-- herald_ulid_time as one expression, which the planner inlines.
CREATE FUNCTION pg_temp.ulid_time(ms BIGINT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 45) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 40) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 35) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 30) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 25) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 20) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 15) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 10) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 5) & 31)::int + 1, 1)
        || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> 0) & 31)::int + 1, 1)
$$;
SELECT pg_temp.ulid_time(1764000000000) = herald_ulid_time(1764000000000) AS same_ulid_encoding;

-- Per day: its three tables filled in one transaction, vacuumed while
-- their pages are warm, then attached in another.
SELECT format($f$
    CREATE TABLE %6$I (LIKE messages INCLUDING DEFAULTS);
    CREATE TABLE %7$I (LIKE deliveries INCLUDING DEFAULTS);
    CREATE TABLE %8$I (LIKE attempts INCLUDING DEFAULTS);

    INSERT INTO %6$I (id, app_id, event_type, event_id, payload, created_at, expires_at, payload_removed_at)
    SELECT 'msg_' || pg_temp.ulid_time(t) || lpad(upper(to_hex(g)), 16, '0'), %1$L, 'ticket.created',
           CASE WHEN %9$L THEN 'ticket-' || t || '-' || g END,
           '{"ticket": 1, "subject": "Printer on fire"}', t, NULL, NULL
    FROM (SELECT g, %2$s + g * (86400000 / %3$s) AS t FROM generate_series(0, %3$s - 1) g) s;
    INSERT INTO message_event_ids (app_id, event_id, msg_id)
    SELECT app_id, event_id, id FROM %6$I WHERE event_id IS NOT NULL;

    INSERT INTO %7$I (id, msg_id, endpoint_id, app_id, status, trigger_type, attempts, next_attempt_at,
                      created_at, updated_at)
    SELECT 'dlv_' || pg_temp.ulid_time(t) || lpad(upper(to_hex(g)), 16, '0'),
           'msg_' || pg_temp.ulid_time(t) || lpad(upper(to_hex(g)), 16, '0'),
           e.id, %1$L, 0, 0, %4$s, NULL, t, t + %4$s * 1000
    FROM (SELECT g, %2$s + g * (86400000 / %3$s) AS t FROM generate_series(0, %3$s - 1) g) s
    JOIN scale_endpoints e ON e.n = s.g %% %5$s;

    INSERT INTO %8$I (id, delivery_id, msg_id, endpoint_id, app_id, url, status, response_status_code,
                      response, response_duration_ms, trigger_type, created_at, status_class)
    SELECT 'atmpt_' || pg_temp.ulid_time(t + k * 1000) || lpad(upper(to_hex(g * %4$s + k)), 16, '0'),
           'dlv_' || pg_temp.ulid_time(t) || lpad(upper(to_hex(g)), 16, '0'),
           'msg_' || pg_temp.ulid_time(t) || lpad(upper(to_hex(g)), 16, '0'),
           e.id, %1$L, 'https://example.com/hook',
           CASE WHEN k = %4$s - 1 THEN 0 ELSE 2 END, CASE WHEN k = %4$s - 1 THEN 200 ELSE 500 END,
           '', 12, 0, t + k * 1000, CASE WHEN k = %4$s - 1 THEN 2 ELSE 5 END
    FROM (SELECT g, %2$s + g * (86400000 / %3$s) AS t FROM generate_series(0, %3$s - 1) g) s
    JOIN scale_endpoints e ON e.n = s.g %% %5$s
    CROSS JOIN generate_series(0, %4$s - 1) k;
    $f$, :'app', (extract(epoch FROM d) * 1000)::bigint, :per_day, :tries, :endpoints,
    'messages_p' || to_char(d, 'YYYYMMDD'), 'deliveries_p' || to_char(d, 'YYYYMMDD'),
    'attempts_p' || to_char(d, 'YYYYMMDD'), :'event_ids'),
    -- VACUUM runs alone, outside any transaction.
    format('VACUUM ANALYZE messages_p%s', to_char(d, 'YYYYMMDD')),
    format('VACUUM ANALYZE deliveries_p%s', to_char(d, 'YYYYMMDD')),
    format('VACUUM ANALYZE attempts_p%s', to_char(d, 'YYYYMMDD')),
    format($f$
    ALTER TABLE messages ATTACH PARTITION %6$I FOR VALUES FROM (herald_day_bound(%9$L)) TO (herald_day_bound(%9$L::date + 1));
    ALTER TABLE deliveries ATTACH PARTITION %7$I FOR VALUES FROM (herald_day_bound(%9$L)) TO (herald_day_bound(%9$L::date + 1));
    ALTER TABLE attempts ATTACH PARTITION %8$I FOR VALUES FROM (herald_day_bound(%9$L)) TO (herald_day_bound(%9$L::date + 1));
    $f$, NULL, NULL, NULL, NULL, NULL,
    'messages_p' || to_char(d, 'YYYYMMDD'), 'deliveries_p' || to_char(d, 'YYYYMMDD'),
    'attempts_p' || to_char(d, 'YYYYMMDD'), d::date)
FROM generate_series(current_date - :last, current_date - :first, interval '1 day') AS d
WHERE to_regclass('messages_p' || to_char(d, 'YYYYMMDD')) IS NULL
ORDER BY d
\gexec

-- The parents' own statistics (autovacuum keeps each partition's, never a
-- partitioned table's).
ANALYZE messages;
ANALYZE deliveries;
ANALYZE attempts;
