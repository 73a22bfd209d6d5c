-- Least privilege: one NOLOGIN role per component, granted only what that
-- component does. Operators create login users IN ROLE these (see
-- docs/adr/0008-least-privilege.md); the local stack and the tests connect as
-- the superuser and are not affected.
--
--   eventline_owner      owns the event tables and their partitions (DDL)
--   eventline_retention  member of eventline_owner: creates, detaches, drops
--                        partitions, deletes expired rows, records its runs
--   eventline_worker     inserts events and maintains the hourly rollup
--   eventline_query      reads everything it serves; nothing else
--   eventline_gateway    reads API keys; nothing else
--
-- Roles are cluster-wide while migrations run per database (and the tests
-- migrate many databases at once), so creation tolerates a concurrent twin.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['eventline_owner', 'eventline_retention', 'eventline_worker',
                                'eventline_query', 'eventline_gateway'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- The migrating user keeps the right to change what eventline_owner owns.
DO $$
BEGIN
    EXECUTE format('GRANT eventline_owner TO %I', current_user);
    GRANT eventline_owner TO eventline_retention;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

-- Hand the event tables, every existing partition and the partition function
-- to eventline_owner. Partitions created later by eventline_ensure_partitions
-- (SECURITY DEFINER, owned by eventline_owner) belong to it from the start.
DO $$
DECLARE
    part regclass;
BEGIN
    ALTER TABLE events OWNER TO eventline_owner;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'events'::regclass LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO eventline_owner', part);
    END LOOP;
    ALTER TABLE event_counts OWNER TO eventline_owner;
    ALTER TABLE maintenance_runs OWNER TO eventline_owner;
    ALTER FUNCTION eventline_ensure_partitions(date, date) OWNER TO eventline_owner;
    ALTER FUNCTION eventline_partition_name(date) OWNER TO eventline_owner;
END
$$;

-- Anyone allowed to call it creates partitions as their owner, never
-- anything else: the function only ever creates events_pYYYYMMDD partitions.
ALTER FUNCTION eventline_ensure_partitions(date, date) SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE ALL ON FUNCTION eventline_ensure_partitions(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventline_ensure_partitions(date, date) TO eventline_worker, eventline_retention;

-- PostgreSQL 15 no longer lets every role create in public: the owner needs it
-- for new partitions.
GRANT USAGE, CREATE ON SCHEMA public TO eventline_owner;
GRANT USAGE ON SCHEMA public TO eventline_worker, eventline_query, eventline_gateway, eventline_retention;

-- worker: insert events, upsert the rollup. SELECT because its staging table
-- is created LIKE events and the insert RETURNs what feeds the rollup.
GRANT SELECT, INSERT ON events TO eventline_worker;
GRANT SELECT, INSERT, UPDATE ON event_counts TO eventline_worker;
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO eventline_worker', current_database());
END
$$;

-- query-api: read what it serves.
GRANT SELECT ON events, event_counts, maintenance_runs, api_keys TO eventline_query;

-- gateway: the key table only.
GRANT SELECT ON api_keys TO eventline_gateway;

-- retention: its runs (the tables it owns through eventline_owner).
GRANT SELECT, INSERT, UPDATE ON maintenance_runs TO eventline_retention;
