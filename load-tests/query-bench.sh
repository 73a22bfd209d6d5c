#!/usr/bin/env bash
# Measures the query-api through HTTP (wrk, 8 connections) against the bare
# SQL it runs (pgbench, 8 clients, prepared statements) in the same run, on a
# database filled by load-tests/query-load.sh:
#   1. a 50-event page of one service over a one-hour window;
#   2. the same over a seven-day window;
#   3. /v1/stats (cached, the default, and uncached: STATS_CACHE_MS=0);
#   4. the console's histogram (/v1/stats/histogram, 60 buckets) of one
#      service over 1 hour and 7 days ending at a random minute (HTTP only).
# Prints p50/p99 of each and the HTTP/SQL ratio. Everything shares this
# machine's cores: read the ratios, not only the absolute numbers.
#
# Usage: DATABASE_URL=… REDIS_URL=… NOW=<epoch the data was loaded> load-tests/query-bench.sh
# Environment: DURATION (20s), CONNECTIONS (8), DAYS (10), SERVICES (50)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

: "${DATABASE_URL:?}" "${REDIS_URL:?}" "${NOW:?the load time, date +%s when query-load.sh ran}"
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-8}
export DAYS=${DAYS:-10} SERVICES=${SERVICES:-50} NOW
PORT=${PORT:-18091}
BIN=${CARGO_TARGET_DIR:-target}/release/query-api
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench is missing (postgresql-contrib)" >&2; exit 1; }
cargo build --release -q -p query-api # a no-op when up to date; never measure a stale binary

TMP=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

start_api() { # $1: STATS_CACHE_MS
    [[ -n $PID ]] && { kill "$PID"; wait "$PID" 2>/dev/null || true; }
    AUTH_REQUIRED=false STATS_CACHE_MS=$1 LOG_FORMAT=json RUST_LOG=warn \
        DATABASE_URL=$DATABASE_URL REDIS_URL=$REDIS_URL "$BIN" --listen "127.0.0.1:$PORT" &
    PID=$!
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/health/ready" && return; sleep 0.1; done
    echo "query-api did not start" >&2; exit 1
}

# p50 and p99 of a wrk run, in ms.
http() { # $1: lua script or "" ; $2: path
    local out
    if [[ -n $1 ]]; then
        out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$1" "http://127.0.0.1:$PORT")
    else
        out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$PORT$2")
    fi
    grep -q "Non-2xx" <<<"$out" && { echo "$out" >&2; echo "non-2xx answers" >&2; exit 1; }
    awk '/^ +50%/ {p50=$2} /^ +99%/ {p99=$2} /Requests\/sec/ {rps=$2}
         function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
         END { printf "%.2f %.2f %d\n", ms(p50), ms(p99), rps }' <<<"$out"
}

# p50 and p99 of a pgbench run of script $1, in ms.
sql() {
    rm -f "$TMP"/pgbench_log.*
    (cd "$TMP" && pgbench -n -M prepared -c "$CONNECTIONS" -j 2 -T "${DURATION%s}" -f "$1" -l "$DATABASE_URL" >"$TMP/pgbench.out" 2>&1) ||
        { cat "$TMP/pgbench.out" >&2; exit 1; }
    cat "$TMP"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {
        printf "%.2f %.2f %d\n", v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000, NR/'"${DURATION%s}"' }'
}

page_sql() { # $1: window hours
    cat >"$TMP/page.sql" <<SQL
\set s random(0, $SERVICES - 1)
\set back random($1, $DAYS * 24 - 1)
SELECT id, service, message, ts, ingested_at, event_id, metadata::text AS metadata FROM events
 WHERE service = 'svc-' || lpad(:s::text, 3, '0')
   AND ts >= to_timestamp((floor($NOW / 3600.0) - :back) * 3600)
   AND ts < to_timestamp((floor($NOW / 3600.0) - :back + $1) * 3600)
 ORDER BY ts DESC, id DESC LIMIT 51;
SQL
    echo "$TMP/page.sql"
}

stats_sql() {
    cat >"$TMP/stats.sql" <<'SQL'
SELECT service, hour, sum(count)::bigint FROM event_counts
 WHERE hour >= date_trunc('hour', now()) - interval '23 hours' AND hour < date_trunc('hour', now()) + interval '1 hour'
   AND (cardinality('{}'::text[]) = 0 OR service = ANY('{}'::text[]))
 GROUP BY GROUPING SETS ((service), (hour)) ORDER BY service, hour;
SELECT coalesce(sum(count) FILTER (WHERE hour = date_trunc('hour', now())), 0)::bigint,
       coalesce(sum(count) FILTER (WHERE hour = date_trunc('hour', now()) - interval '1 hour'), 0)::bigint,
       coalesce(sum(count) FILTER (WHERE hour < date_trunc('hour', now())), 0)::bigint
  FROM event_counts WHERE hour >= date_trunc('hour', now()) - interval '24 hours' AND hour <= date_trunc('hour', now());
SQL
    echo "$TMP/stats.sql"
}

report() { # name, http "p50 p99 rps", sql "p50 p99 tps"
    read -r hp50 hp99 hrps <<<"$2"
    read -r sp50 sp99 stps <<<"$3"
    printf '%-28s HTTP p50 %6.2f ms  p99 %6.2f ms  (%5d req/s) | SQL p50 %6.2f ms  p99 %6.2f ms  (%5d q/s) | ratio p50 %.1fx p99 %.1fx\n' \
        "$1" "$hp50" "$hp99" "$hrps" "$sp50" "$sp99" "$stps" \
        "$(echo "$hp50 / $sp50" | bc -l)" "$(echo "$hp99 / $sp99" | bc -l)"
}

rows=$(psql -X -At "$DATABASE_URL" -c "SELECT reltuples::bigint FROM pg_class WHERE relname = 'events'")
buffers=$(psql -X -At "$DATABASE_URL" -c "SHOW shared_buffers")
echo "events (estimate): $rows; shared_buffers $buffers; $CONNECTIONS connections, $DURATION per run"
start_api 1000
for hours in 1 168; do
    sqlr=$(sql "$(page_sql $hours)")
    httpr=$(WINDOW_HOURS=$hours http load-tests/wrk/query-page.lua "")
    report "page of 50, ${hours} h window" "$httpr" "$sqlr"
done
for hours in 1 168; do
    read -r hp50 hp99 hrps <<<"$(WINDOW_HOURS=$hours http load-tests/wrk/query-histogram.lua "")"
    printf '%-28s HTTP p50 %6.2f ms  p99 %6.2f ms  (%5d req/s)\n' "histogram, ${hours} h window" "$hp50" "$hp99" "$hrps"
done
sqlr=$(sql "$(stats_sql)")
httpr=$(http "" /v1/stats)
report "/v1/stats (cached 1 s)" "$httpr" "$sqlr"
start_api 0
httpr=$(http "" /v1/stats)
report "/v1/stats (uncached)" "$httpr" "$sqlr"
