#!/usr/bin/env bash
# Measures the ingest gateway with wrk against a bare baseline handler
# (services/ingest-gateway/examples/bare_gateway.rs: parse JSON + XADD,
# nothing else) in the same run, and prints each figure as a ratio to it.
#
# Needs the local stack for Redis, PostgreSQL and the dev key: run `make up`
# first. Everything (wrk, gateways, Redis) shares this machine's cores, so
# read the ratios, not the absolute numbers.
#
# Environment: DURATION (10s), CONNECTIONS (64), THREADS (2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
REDIS_URL=redis://127.0.0.1:${EVENTLINE_REDIS_PORT:-16379}
DATABASE_URL=postgres://postgres@127.0.0.1:${EVENTLINE_PG_PORT:-15432}/eventline
PREFIX="bench:"
STREAM="${PREFIX}events:{0}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
[[ -f .run/dev-api-key ]] || { echo "run 'make up' first (needs .run/dev-api-key)" >&2; exit 1; }
redis-cli -u "$REDIS_URL" ping >/dev/null || { echo "Redis is not up: run 'make up'" >&2; exit 1; }

cargo build --release -q -p ingest-gateway --bins --examples
BIN=${CARGO_TARGET_DIR:-target}/release

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    redis-cli -u "$REDIS_URL" del "$STREAM" "${PREFIX}bare" "${PREFIX}bare:bucket" >/dev/null || true
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

"$BIN/examples/bare_gateway" 127.0.0.1:18081 "$REDIS_URL" "${PREFIX}bare" xadd &
PIDS+=($!)
"$BIN/examples/bare_gateway" 127.0.0.1:18082 "$REDIS_URL" "${PREFIX}bare" script &
PIDS+=($!)
REDIS_URL=$REDIS_URL DATABASE_URL=$DATABASE_URL KEY_PEPPER=$(cat .run/key-pepper) \
    REDIS_KEY_PREFIX=$PREFIX STREAM_HIGH_WATER=1000000000 \
    RATE_LIMIT_KEY_PER_SECOND=100000000 RATE_LIMIT_KEY_BURST=100000000 \
    RATE_LIMIT_IP_PER_SECOND=100000000 RATE_LIMIT_IP_BURST=100000000 \
    LOG_FORMAT=json RUST_LOG=warn \
    "$BIN/ingest-gateway" --listen 127.0.0.1:18080 &
PIDS+=($!)
wait_port 18080
wait_port 18081
wait_port 18082

export EVENTLINE_KEY
EVENTLINE_KEY=$(cat .run/dev-api-key)

# run <label> <port> <lua script> <events per request>
declare -A RPS P50 P99
run() {
    local label=$1 port=$2 script=$3 per=$4 out
    redis-cli -u "$REDIS_URL" del "$STREAM" "${PREFIX}bare" >/dev/null
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "load-tests/wrk/$script" "http://127.0.0.1:$port/v1/events")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "$label: some requests were not answered 2xx:" >&2
        grep "Non-2xx" <<<"$out" >&2
    fi
    RPS[$label]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    P50[$label]=$(awk '$1 == "50%" {print $2}' <<<"$out")
    P99[$label]=$(awk '$1 == "99%" {print $2}' <<<"$out")
    EVENTS[$label]=$(awk -v r="${RPS[$label]}" -v n="$per" 'BEGIN {printf "%.0f", r * n}')
}
declare -A EVENTS

run bare-single 18081 single.lua 1
run bare-script-single 18082 single.lua 1
run gateway-single 18080 single.lua 1
run bare-batch100 18081 batch100.lua 100
run gateway-batch100 18080 batch100.lua 100

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
printf '\n%-20s %12s %12s %9s %9s %8s\n' run requests/s events/s p50 p99 ratio
for label in bare-single bare-script-single gateway-single; do
    printf '%-20s %12s %12s %9s %9s %8s\n' "$label" "${RPS[$label]}" "${EVENTS[$label]}" "${P50[$label]}" "${P99[$label]}" \
        "$(ratio "${RPS[$label]}" "${RPS[bare-single]}")"
done
for label in bare-batch100 gateway-batch100; do
    printf '%-20s %12s %12s %9s %9s %8s\n' "$label" "${RPS[$label]}" "${EVENTS[$label]}" "${P50[$label]}" "${P99[$label]}" \
        "$(ratio "${EVENTS[$label]}" "${EVENTS[bare-batch100]}")"
done
echo
echo "ratio: requests/s (single) or events/s (batch) relative to the bare handler in the same run;"
echo "$CONNECTIONS connections, $THREADS wrk threads, $DURATION per run, $(nproc) cores shared by everything."
