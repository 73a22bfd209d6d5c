#!/usr/bin/env bash
# Fills a database with EVENTS events (10 million by default) for the
# query-api measurements: SERVICES services, spread evenly over the last DAYS
# days (one daily partition each), realistic metadata, and the hourly rollup
# built from them — all server-side (INSERT … SELECT generate_series), one
# day per transaction, so nothing crosses the network but the SQL.
#
# Usage: DATABASE_URL=postgres://…/eventline_bench load-tests/query-load.sh
# The database must exist and be migrated (`eventctl migrate`, or the
# migrations applied with psql). Existing events are kept; run on an empty
# database for the figures in docs/adr/0030-query-api-reads.md.
#
# Environment: EVENTS (10000000), DAYS (10), SERVICES (50)
set -euo pipefail

: "${DATABASE_URL:?set DATABASE_URL to the database to fill}"
EVENTS=${EVENTS:-10000000}
DAYS=${DAYS:-10}
SERVICES=${SERVICES:-50}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL")

per_day=$((EVENTS / DAYS))
step_us=$((86400 * 1000000 / per_day))
echo "loading $EVENTS events: $per_day a day over $DAYS days, $SERVICES services"
"${PSQL[@]}" -c "SELECT count(*) FROM eventline_ensure_partitions(current_date - $DAYS, current_date + 1)" >/dev/null

start=$(date +%s)
for ((d = DAYS; d >= 1; d--)); do
    # Day d covers [now - d days, now - (d-1) days).
    "${PSQL[@]}" <<SQL
INSERT INTO events (id, dedup_key, event_id, service, message, metadata, ts, ingested_at)
SELECT u, u, NULL,
       'svc-' || lpad(((hashint4(i) & 2147483647) % $SERVICES)::text, 3, '0'),
       'request ' || i || ' handled in ' || (i % 977) || ' ms',
       jsonb_build_object('user', 'u' || (i % 10000),
                          'status', (ARRAY[200, 200, 200, 404, 500])[i % 5 + 1],
                          'region', (ARRAY['eu', 'us', 'ap'])[i % 3 + 1],
                          'http', jsonb_build_object('method', 'GET', 'path', '/api/v1/items/' || (i % 5000))),
       t, t
  FROM (SELECT gen_random_uuid() AS u, g AS i,
               date_trunc('second', now()) - interval '$d days' + g * interval '$step_us microseconds' AS t
          FROM generate_series(0, $per_day - 1) g) s;
SQL
    printf '  day -%d loaded (%ds)\n' "$d" "$(($(date +%s) - start))"
done

echo "building the hourly rollup"
"${PSQL[@]}" <<'SQL'
INSERT INTO event_counts (service, hour, count)
SELECT service, date_trunc('hour', ts, 'UTC'), count(*) FROM events GROUP BY 1, 2
ON CONFLICT (service, hour) DO UPDATE SET count = EXCLUDED.count;
SQL
"${PSQL[@]}" -c "VACUUM ANALYZE events" -c "VACUUM ANALYZE event_counts"
echo "done in $(($(date +%s) - start)) s: $("${PSQL[@]}" -At -c 'SELECT count(*) FROM events') events"
