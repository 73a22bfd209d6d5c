#!/usr/bin/env bash
# The observability check of `make test`: a whole local stack on free ports
# (its own Redis, PostgreSQL and every service, data in a temporary
# directory), a little traffic through it, then:
# - every metric the dashboards and alert rules name is exported by a service;
# - Debian's real Prometheus, with the repository's scrape configuration and
#   alert rules (scrape interval shortened to 1 s), sees every target up and
#   the key series present.
# Everything it started is stopped on exit, whatever the outcome.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EVENTLINE_ROOT"

command -v prometheus >/dev/null || {
    is_root || die "prometheus not found: install Debian's prometheus package"
    apt_install prometheus
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/eventline-obs.XXXXXX")
chmod 755 "$TMP"
PROM_PID=""
read -r REDIS_PORT PG_PORT GATEWAY_PORT QUERY_PORT WORKER_PORT RETENTION_PORT PROM_PORT < <(free_ports 7)
export EVENTLINE_RUN_DIR=$TMP/run EVENTLINE_REDIS_PORT=$REDIS_PORT EVENTLINE_PG_PORT=$PG_PORT \
    EVENTLINE_GATEWAY_PORT=$GATEWAY_PORT EVENTLINE_QUERY_PORT=$QUERY_PORT \
    EVENTLINE_WORKER_PORT=$WORKER_PORT EVENTLINE_RETENTION_PORT=$RETENTION_PORT

cleanup() {
    local status=$?
    set +e
    [[ -n $PROM_PID ]] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null
    "$EVENTLINE_ROOT/infrastructure/scripts/stack.sh" down >/dev/null 2>&1
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT

info "a stack on free ports under $TMP"
"$EVENTLINE_ROOT/infrastructure/scripts/stack.sh" up >"$TMP/stack-up.log" 2>&1 || {
    cat "$TMP/stack-up.log" >&2
    die "the stack did not come up"
}

KEY=$(cat "$TMP/run/dev-api-key")
gateway=http://127.0.0.1:$GATEWAY_PORT
query=http://127.0.0.1:$QUERY_PORT
info "traffic: events through the gateway, a query"
for i in $(seq 20); do
    curl -fsS -o /dev/null -X POST "$gateway/v1/events" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "{\"service\":\"obs\",\"message\":\"event $i\"}"
done
curl -sS -o /dev/null -X POST "$gateway/v1/events" -H 'Content-Type: application/json' -d '{}' || true
if [[ -f services/query-api/Cargo.toml ]]; then
    curl -sS -o /dev/null "$query/v1/events?service=obs" -H "Authorization: Bearer $KEY" || true
fi

info "every metric named by the dashboards and alerts is exported"
exported=$TMP/exported.txt
for port in $GATEWAY_PORT $QUERY_PORT $WORKER_PORT $RETENTION_PORT; do
    curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '/^# TYPE/ {print $3}' || true
done | sort -u >"$exported"
named=$(grep -ohE 'eventline_[a-z0-9_]+' infrastructure/grafana/dashboards/*.json infrastructure/prometheus/alerts.yml |
    sed -E 's/_(bucket|sum|count)$//' | sort -u)
missing=$(comm -23 <(printf '%s\n' "$named") "$exported")
if [[ -n $missing ]]; then
    printf 'named in dashboards or alerts but exported by no service:\n%s\n' "$missing" >&2
    exit 1
fi
printf '  %s metric names checked\n' "$(printf '%s\n' "$named" | wc -l)"

info "Prometheus scrapes every target with the repository's configuration"
mkdir -p "$TMP/prometheus/targets"
sed -E 's/^(  (scrape|evaluation)_interval:).*/\1 1s/' infrastructure/prometheus/prometheus.yml >"$TMP/prometheus/prometheus.yml"
cp infrastructure/prometheus/alerts.yml "$TMP/prometheus/"
cat >"$TMP/prometheus/targets/eventline.json" <<JSON
[
  {"targets": ["127.0.0.1:$GATEWAY_PORT"], "labels": {"component": "ingest-gateway"}},
  {"targets": ["127.0.0.1:$QUERY_PORT"], "labels": {"component": "query-api"}},
  {"targets": ["127.0.0.1:$WORKER_PORT"], "labels": {"component": "worker"}},
  {"targets": ["127.0.0.1:$RETENTION_PORT"], "labels": {"component": "retention-job"}}
]
JSON
prometheus --config.file="$TMP/prometheus/prometheus.yml" --storage.tsdb.path="$TMP/prometheus/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
api=http://127.0.0.1:$PROM_PORT/api/v1
up_count() {
    curl -fsS "$api/targets?state=active" 2>/dev/null |
        python3 -c 'import json,sys; t=json.load(sys.stdin)["data"]["activeTargets"]; print(sum(x["health"]=="up" for x in t if x["scrapePool"]=="eventline"), len([x for x in t if x["scrapePool"]=="eventline"]))' ||
        echo "0 0"
}
for _ in $(seq 60); do
    read -r up total < <(up_count)
    ((total == 4 && up == 4)) && break
    sleep 1
done
((total == 4 && up == 4)) || { show_log_tail "$TMP/prometheus.log" 20; die "Prometheus sees $up of $total targets up"; }
printf '  4 of 4 targets up\n'
for series in eventline_ingest_events_accepted_total eventline_worker_events_inserted_total \
    eventline_worker_stream_lag_entries eventline_retention_runs_total eventline_build_info; do
    found=$(curl -fsS "$api/query" --data-urlencode "query=count($series)" |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
    ((found > 0)) || die "Prometheus has no $series"
    printf '  %s: %s series\n' "$series" "$found"
done
info "observability checks passed"
