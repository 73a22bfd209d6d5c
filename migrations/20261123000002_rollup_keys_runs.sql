-- The hourly rollup behind /v1/stats: maintained by the workers in the same
-- transaction as the inserts, so stats never scan raw events.
CREATE TABLE event_counts (
    service text        NOT NULL,
    hour    timestamptz NOT NULL,
    count   bigint      NOT NULL CHECK (count >= 0),
    PRIMARY KEY (service, hour)
);
CREATE INDEX event_counts_hour ON event_counts (hour);

-- API keys. Only the keyed hash (HMAC-SHA256 with a server-side pepper) is
-- stored; the public prefix finds the row. See docs/adr/0004-api-keys.md.
CREATE TABLE api_keys (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix       text        NOT NULL UNIQUE,
    key_hash     bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0
                                 AND scopes <@ ARRAY['ingest', 'query', 'admin']),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- What the retention job did, and when: query-api reads the last success so
-- Prometheus can alert on a job that stopped running.
CREATE TABLE maintenance_runs (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    dry_run            boolean     NOT NULL DEFAULT false,
    outcome            text        NOT NULL DEFAULT 'running'
                                   CHECK (outcome IN ('running', 'success', 'failed', 'skipped')),
    partitions_created text[]      NOT NULL DEFAULT '{}',
    partitions_dropped text[]      NOT NULL DEFAULT '{}',
    rows_deleted       bigint      NOT NULL DEFAULT 0,
    error              text,
    details            jsonb
);
CREATE INDEX maintenance_runs_started_at ON maintenance_runs (started_at DESC);
