-- query-api: metadata.<key>=<value> filters are JSON containment
-- (metadata @> '{"key": value}'), which this index serves. jsonb_path_ops
-- indexes only containment, and is smaller and cheaper to maintain than the
-- default jsonb_ops. Its insert cost is measured in
-- docs/adr/0030-query-api-reads.md.
--
-- On a partitioned table the index cascades to every partition; partitions
-- attached later (eventline_ensure_partitions) get it on ATTACH.
CREATE INDEX events_metadata ON events USING gin (metadata jsonb_path_ops);
