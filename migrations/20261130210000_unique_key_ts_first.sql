-- The events' unique key, (dedup_key, service, ts), reordered to
-- (ts, dedup_key, service). The same columns, so the same guarantee: one row
-- per dedup key, service and timestamp, and ON CONFLICT DO NOTHING still
-- finds it as its arbiter.
--
-- With dedup_key first, half the inserts (events with a client event_id,
-- whose dedup key is a UUIDv5 hash) landed at random places all over each
-- day's index: cache misses, page splits in the middle, and after every
-- checkpoint a full-page image for almost every insert. With ts first, new
-- rows (ts close to now) go to the index's right edge. Nothing looks up by
-- dedup_key alone. See docs/adr/0003-dedup-key-and-events-schema.md.
--
-- On a partitioned table this rebuilds the index of every partition, under
-- an exclusive lock: run it before the tables are large.
ALTER TABLE events DROP CONSTRAINT events_dedup_key;
ALTER TABLE events ADD CONSTRAINT events_dedup_key UNIQUE (ts, dedup_key, service);
