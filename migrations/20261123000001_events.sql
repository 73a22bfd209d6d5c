-- Events, partitioned by UTC day on ts. See docs/adr/0003-dedup-key-and-events-schema.md.
--
-- dedup_key is the event's identity for exactly-once storage: the UUIDv5 of
-- (service, event_id) when the client sent an event_id, else the event's id.
-- PostgreSQL requires the partition key in every unique constraint, and
-- Citus the distribution column (service), hence (dedup_key, service, ts).
CREATE TABLE events (
    id          uuid        NOT NULL,
    dedup_key   uuid        NOT NULL,
    event_id    text,
    service     text        NOT NULL,
    message     text        NOT NULL,
    metadata    jsonb,
    ts          timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL,
    CONSTRAINT events_dedup_key UNIQUE (dedup_key, service, ts)
) PARTITION BY RANGE (ts);

-- The query path: one service, a time range, newest first, keyset on (ts, id).
CREATE INDEX events_service_ts_id ON events (service, ts DESC, id DESC);
-- GET /v1/events/{id}.
CREATE INDEX events_id ON events (id);

-- Whatever no daily partition covers lands here rather than failing the
-- insert; creating the day's partition moves those rows out.
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- The name of a day's partition.
CREATE FUNCTION eventline_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'events_p' || to_char(day, 'YYYYMMDD')
$$;

-- Creates the daily partitions first_day..last_day (inclusive) that do not
-- exist, each covering [day 00:00 UTC, next day 00:00 UTC), moving the rows
-- the default partition holds for that day into it. Returns the names of the
-- partitions it created. Concurrent callers are serialised by an advisory
-- lock held to the end of the transaction.
CREATE FUNCTION eventline_ensure_partitions(first_day date, last_day date)
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    day  date;
    part text;
    lo   timestamptz;
    hi   timestamptz;
BEGIN
    IF first_day IS NULL OR last_day IS NULL OR last_day < first_day THEN
        RAISE EXCEPTION 'invalid day range % .. %', first_day, last_day;
    END IF;
    IF last_day - first_day > 400 THEN
        RAISE EXCEPTION 'refusing to create more than 400 partitions in one call (% .. %)',
            first_day, last_day;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('eventline_ensure_partitions'));
    day := first_day;
    WHILE day <= last_day LOOP
        part := eventline_partition_name(day);
        IF NOT EXISTS (
            SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'events'::regclass AND c.relname = part
        ) THEN
            lo := day::timestamp AT TIME ZONE 'UTC';
            hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
            EXECUTE format(
                'CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
                part);
            EXECUTE format(
                'WITH moved AS (DELETE FROM events_default WHERE ts >= $1 AND ts < $2 RETURNING *)
                 INSERT INTO %I SELECT * FROM moved', part)
                USING lo, hi;
            EXECUTE format(
                'ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                part, lo, hi);
            RETURN NEXT part;
        END IF;
        day := day + 1;
    END LOOP;
END
$$;
