#!/usr/bin/env bash
# `make bench`: the pipeline end to end on this machine, side by side with the
# machine's raw ceilings measured in the same run.
#
# Uses the local stack's Redis and PostgreSQL (starts them with `make up` when
# they are not answering), but runs its own release-built gateway and worker
# on other ports, with a Redis key prefix and a fresh database of their own
# (eventline_bench, dropped afterwards), so the dev stack's data is untouched.
#
# Steps: ceilings (redis-benchmark XADD with the mean stream-entry size of the
# generated events; a bare COPY of the same rows into a daily-partitioned
# table), then seven runs of eventline-load with --e2e: batch closed loop (the
# most the gateway accepts); batches with every event keyed; OTLP/HTTP
# protobuf logs against JSON batches on equal terms (closed loop, back to back;
# the JSON events carry what the gateway maps each OTLP record to — an
# event_id, severity, attributes, resource, scope — so both store the same
# rows and differ only in the path, `--format json-as-otlp`); batch open loop at
# BENCH_BATCH_RATE, single events open loop at BENCH_SINGLE_RATE and a sweep
# of single-event rates (BENCH_SWEEP_RATES, "5000 10000 15000 20000 25000",
# BENCH_SWEEP_DURATION 10s each: where p99 passes 10 ms), and batch at
# half the sustained rate for the lag. Resident memory (VmHWM, VmRSS) of the
# gateway and the worker is read from /proc at the end, and the CPU time each
# process (generator, gateway, worker, Redis, PostgreSQL) used in each run from
# /proc before and after it.
# The tables are printed and everything is written to bench-results/<UTC time>/.
#
# With BENCH_SOAK=<duration> (e.g. 25m: at least twice DEDUP_TTL_SECONDS, 600)
# it runs one soak instead of the seven runs: BENCH_SOAK_RATE (10000) events/s in
# batches of 100 with load-tests/scenarios/soak.toml's events (half with an
# event_id), sampling Redis every 30 s into soak-redis.tsv: used_memory, the
# dedup claim hashes (keys, fields, MEMORY USAGE summed over every one of
# them), the stream's length and expired_stale_perc; it prints the claims'
# bytes per event of the DEDUP_TTL window at the end.
#
# With BENCH_CLUSTER=1 it runs the Redis comparison instead: a private six-node
# Redis Cluster (3 masters, 3 replicas, the stack's redis.conf) beside the
# stack's Redis, and with STREAM_SHARDS=3 two runs on each of one server, the
# cluster, and the cluster with REDIS_MIN_REPLICAS_ACK=1: batches closed loop
# (events/s end to end) and single events at BENCH_CLUSTER_SINGLE_RATE (5000/s;
# each request's latency); CPU counts every Redis node.
#
# Environment: BENCH_DURATION (30s), BENCH_BATCH_RATE (80000 events/s: the target, 75,000 stored, with room for the 2 % re-sent events stored once),
# BENCH_SINGLE_RATE (30000 requests/s), BENCH_SINGLE_CONNECTIONS (256), BENCH_GATEWAY_PORT (18180),
# BENCH_WORKER_PORT (19191), BENCH_KEEP_DB=1 keeps the eventline_bench database,
# EVENTLINE_REDIS_PORT (16379), EVENTLINE_PG_PORT (15432).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-30s}
BATCH_RATE=${BENCH_BATCH_RATE:-80000}
SINGLE_RATE=${BENCH_SINGLE_RATE:-30000}
GW_PORT=${BENCH_GATEWAY_PORT:-18180}
WORKER_PORT=${BENCH_WORKER_PORT:-19191}
REDIS_PORT=${EVENTLINE_REDIS_PORT:-16379}
PG_PORT=${EVENTLINE_PG_PORT:-15432}
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
ADMIN_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
DB=eventline_bench
DB_URL=postgres://postgres@127.0.0.1:$PG_PORT/$DB
PREFIX="bench$(date +%s):"
STREAM="${PREFIX}events:{0}"
OUT=$ROOT/bench-results/$(date -u +%Y%m%dT%H%M%SZ)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v redis-benchmark >/dev/null || die "redis-benchmark is missing (apt-get install redis-tools)"
command -v psql >/dev/null || die "psql is missing (apt-get install postgresql-client)"

if ! redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || ! psql "$ADMIN_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    say "Redis or PostgreSQL not answering: make up"
    infrastructure/scripts/stack.sh up
fi

say "building (release): ingest-gateway, worker, eventline-load, eventctl"
cargo build --release -q -p ingest-gateway -p worker -p eventline-load -p eventctl
LOAD=$BIN/eventline-load
mkdir -p "$OUT"

PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    redis-cli -u "$REDIS_URL" del "$STREAM" "${PREFIX}events:dlq" "bench:ceiling" >/dev/null
    # The run's dedup claims would live one to two DEDUP_TTL more and make the next
    # bench's Redis (and its AOF rewrites) millions of keys bigger.
    say "removing this run's dedup keys"
    # Server-side, one slice of the key space per call (~0.1 s each).
    local cursor=0
    while :; do
        cursor=$(redis-cli -u "$REDIS_URL" --raw eval "
            local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 100000)
            for _, k in ipairs(r[2]) do redis.call('UNLINK', k) end
            return r[1]" 0 "$cursor" "${PREFIX}dedup:*") || break
        [[ $cursor == 0 ]] && break
    done
    if [[ ${BENCH_KEEP_DB:-} != 1 ]]; then
        psql "$ADMIN_URL" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    fi
}
trap cleanup EXIT

say "a fresh database $DB: migrations, partitions, an API key"
psql "$ADMIN_URL" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
psql "$ADMIN_URL" -Atqc "CREATE DATABASE $DB" >/dev/null
PEPPER=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export KEY_PEPPER=$PEPPER
"$BIN/eventctl" --database-url "$DB_URL" migrate >/dev/null
KEY_FILE=$OUT/.api-key
(umask 077 && "$BIN/eventctl" --database-url "$DB_URL" keys create --name bench --scopes ingest | tr -d '[:space:]' >"$KEY_FILE")
[[ -s $KEY_FILE ]] || die "eventctl printed no key"

export REDIS_URL DATABASE_URL=$DB_URL REDIS_KEY_PREFIX=$PREFIX LOG_FORMAT=json RUST_LOG=warn
GW_PID="" WORKER_PID=""
# start_services [VAR=value…]: (re)starts the gateway and the worker, with the
# given settings on top of the run's, and waits until both are ready.
start_services() {
    local pid
    for pid in $GW_PID $WORKER_PID; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    say "starting the gateway (:$GW_PORT) and a worker (:$WORKER_PORT), key prefix $PREFIX${*:+, $*}"
    env RATE_LIMIT_KEY_PER_SECOND=100000000 RATE_LIMIT_KEY_BURST=100000000 \
        RATE_LIMIT_IP_PER_SECOND=100000000 RATE_LIMIT_IP_BURST=100000000 "$@" \
        "$BIN/ingest-gateway" --listen "127.0.0.1:$GW_PORT" >>"$OUT/gateway.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    env CONSUMER=bench-worker "$@" "$BIN/worker" --listen "127.0.0.1:$WORKER_PORT" >>"$OUT/worker.log" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
    local url
    for url in "http://127.0.0.1:$GW_PORT/health/ready" "http://127.0.0.1:$WORKER_PORT/health/ready"; do
        for _ in $(seq 100); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]] && continue 2
            sleep 0.2
        done
        die "$url not ready; see $OUT/*.log"
    done
}
start_services

say "ceiling: redis-benchmark XADD with the mean stream-entry size"
SIZE=$("$LOAD" entry-size --samples 20000)
PAYLOAD=$(head -c "$SIZE" /dev/zero | tr '\0' x)
XADD_RPS=$(redis-benchmark -p "$REDIS_PORT" -n 500000 -c 8 -P 16 --csv \
    XADD bench:ceiling '*' v 1 e "$PAYLOAD" | awk -F'"' 'NR == 2 {print $4}')
redis-cli -u "$REDIS_URL" del bench:ceiling >/dev/null
printf '{"entries_per_second": %s, "payload_bytes": %s}\n' "$XADD_RPS" "$SIZE" >"$OUT/xadd.json"
echo "XADD: $XADD_RPS entries/s with $SIZE-byte payloads" >&2

say "ceiling: bare COPY of the same rows into a daily-partitioned table"
"$LOAD" copy-ceiling --database-url "$DB_URL" --rows 300000 --chunk 5000 --json "$OUT/copy.json" >/dev/null
echo "COPY: $(grep -o '"rows_per_second": [0-9.]*' "$OUT/copy.json")" >&2

# backlog_sampler <file>: the group's undelivered + pending entries every 0.5 s.
backlog_sampler() {
    while true; do
        redis-cli -u "$REDIS_URL" xinfo groups "$STREAM" 2>/dev/null |
            awk 'prev == "pending" {p = $1} prev == "lag" {l = $1} {prev = $1} END {print p + l}' >>"$1"
        sleep 0.5
    done
}
# CPU time, in clock ticks, of each process of the pipeline: what a run costs
# in cores. "own" is the process's threads; "children" what its children
# used, exited ones included (a PostgreSQL backend that ended is counted in
# the postmaster's cutime; Redis's AOF rewrites and RDB saves are forks).
CLK_TCK=$(getconf CLK_TCK)
REDIS_PIDS=("$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}')")
PG_PID=$(head -1 "$(psql "$ADMIN_URL" -Atqc 'SHOW data_directory')/postmaster.pid" 2>/dev/null || true)
ticks() { # <pid>: "<own> <children>"
    [[ -n $1 && -r /proc/$1/stat ]] || { echo "0 0"; return; }
    local own children child
    read -r own children < <(awk '{print $14 + $15, $16 + $17}' "/proc/$1/stat")
    for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        children=$((children + $(awk '{print $14 + $15}' "/proc/$child/stat" 2>/dev/null || echo 0)))
    done
    echo "$own $children"
}
# gateway, worker, Redis (every node of REDIS_PIDS), Redis's forks, PostgreSQL
# (postmaster and backends)
pipeline_ticks() {
    local gw worker pg pid own children redis=0 forks=0
    read -r gw _ < <(ticks "$GW_PID")
    read -r worker _ < <(ticks "$WORKER_PID")
    for pid in "${REDIS_PIDS[@]}"; do
        read -r own children < <(ticks "$pid")
        redis=$((redis + own)) forks=$((forks + children))
    done
    pg=$(ticks "$PG_PID")
    echo "$gw $worker $redis $forks $((${pg% *} + ${pg#* }))"
}
declare -A BACKLOG
# run <label> <eventline-load flags…>
#
# A run's CPU is counted from its start until every accepted event is stored,
# plus a VACUUM (ANALYZE) of `events` then: each run pays for the table
# maintenance its rows cause (autovacuum's work, which would otherwise land in
# a later run) and leaves none to the next. eventline-load's own check of the
# stored rows (it reads all of them) comes after and is not counted: it runs
# the --on-drained command, which marks the moment and waits until this shell
# has taken the figures. The generator's CPU is its process's at that moment.
run() {
    local label=$1
    shift
    say "run $label: $*"
    backlog_sampler "$OUT/backlog-$label.txt" &
    local sampler=$!
    local before after start end mark=$OUT/.drained-$label load_pid gen=0
    read -r -a before < <(pipeline_ticks)
    redis-cli -u "$REDIS_URL" config resetstat >/dev/null
    rm -f "$mark"
    start=$(date +%s.%N)
    "$LOAD" run --target "http://127.0.0.1:$GW_PORT" --api-key-file "$KEY_FILE" \
        --e2e --database-url "$DB_URL" --label "$label" --json "$OUT/$label.json" \
        --on-drained "echo \"\$EVENTLINE_LOAD_PID\" >'$mark.tmp' && mv '$mark.tmp' '$mark' && while [ -e '$mark' ]; do sleep 0.05; done" \
        "$@" >"$OUT/$label.txt" &
    load_pid=$!
    while [[ ! -e $mark ]] && kill -0 "$load_pid" 2>/dev/null; do sleep 0.05; done
    if [[ -e $mark ]]; then
        psql "$DB_URL" -Atqc 'VACUUM (ANALYZE) events' >/dev/null
        # The generator's user + system time so far, in clock ticks.
        gen=$(awk '{print $14 + $15}' "/proc/$(<"$mark")/stat" 2>/dev/null || echo 0)
    fi
    end=$(date +%s.%N)
    read -r -a after < <(pipeline_ticks)
    rm -f "$mark"
    wait "$load_pid" || echo "($label: loss or duplicates, see above)" >&2
    cat "$OUT/$label.txt"
    redis-cli -u "$REDIS_URL" info commandstats | tr -d '\r' >"$OUT/redis-commandstats-$label.txt"
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null || true
    BACKLOG[$label]=$(sort -n "$OUT/backlog-$label.txt" | tail -1)
    awk -v tck="$CLK_TCK" -v start="$start" -v end="$end" -v g="$gen" \
        -v b="${before[*]}" -v a="${after[*]}" 'BEGIN {
            split(b, x, " "); split(a, y, " ")
            printf "{\"wall_seconds\": %.3f, \"cpu_seconds\": {\"generator\": %.3f, \"gateway\": %.3f, \"worker\": %.3f, \"redis\": %.3f, \"redis_forks\": %.3f, \"postgres\": %.3f}}\n",
                end - start, g / tck, (y[1] - x[1]) / tck, (y[2] - x[2]) / tck, (y[3] - x[3]) / tck, (y[4] - x[4]) / tck, (y[5] - x[5]) / tck
        }' >"$OUT/cpu-$label.json"
}

# redis_sampler <file>: Redis memory and the dedup claims every 30 s (soak).
redis_sampler() {
    printf 'seconds\tused_memory\tclaim_hashes\tclaim_fields\tclaim_bytes\tstream_length\texpired_stale_perc\n' >"$1"
    local t0=$SECONDS
    while true; do
        local cursor=0 hashes=0 fields=0 bytes=0 reply
        while :; do
            reply=$(redis-cli -u "$REDIS_URL" --raw eval "
                local r = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', 20000)
                local n, f, b = 0, 0, 0
                for _, k in ipairs(r[2]) do
                    n = n + 1
                    f = f + redis.call('HLEN', k)
                    b = b + (redis.call('MEMORY', 'USAGE', k) or 0)
                end
                return {r[1], n, f, b}" 0 "$cursor" "${PREFIX}dedup:*" | tr '\n' ' ') || break
            read -r cursor n f b <<<"$reply"
            hashes=$((hashes + n)) fields=$((fields + f)) bytes=$((bytes + b))
            [[ $cursor == 0 ]] && break
        done
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$((SECONDS - t0))" \
            "$(redis-cli -u "$REDIS_URL" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" {print $2}')" \
            "$hashes" "$fields" "$bytes" "$(redis-cli -u "$REDIS_URL" xlen "$STREAM")" \
            "$(redis-cli -u "$REDIS_URL" info stats | tr -d '\r' | awk -F: '$1 == "expired_stale_perc" {print $2}')" >>"$1"
        sleep 30
    done
}

if [[ -n ${BENCH_SOAK:-} ]]; then
    SOAK_RATE=${BENCH_SOAK_RATE:-10000}
    redis_sampler "$OUT/soak-redis.tsv" &
    SAMPLER=$!
    PIDS+=("$SAMPLER")
    run soak --rate "$SOAK_RATE" -c 16 -b 100 --services 200 --event-id-share 0.5 \
        --duplicate-share 0.02 --metadata mixed --duration "$BENCH_SOAK"
    kill "$SAMPLER" 2>/dev/null
    say "soak results ($OUT/soak-redis.tsv)"
    column -t "$OUT/soak-redis.tsv" >&2
    # The last sample: claims' bytes per event of the 600 s window.
    tail -1 "$OUT/soak-redis.tsv" | awk -v rate="$SOAK_RATE" -F'\t' '{
        printf "claims: %d fields in %d hashes, %d bytes: %.1f bytes per claim, %.1f bytes per event of a 600 s window at %d events/s\n",
            $4, $3, $5, $5 / ($4 > 0 ? $4 : 1), $5 / (rate * 600), rate }' >&2
    exit 0
fi

if [[ -n ${BENCH_CLUSTER:-} ]]; then
    # shellcheck source-path=SCRIPTDIR source=../infrastructure/scripts/common.sh
    source "$ROOT/infrastructure/scripts/common.sh"
    ensure_redis
    ensure_redis_cli
    say "a Redis Cluster of six nodes (3 masters, 3 replicas) with the stack's redis.conf"
    read -r -a CPORTS < <(free_cluster_ports 6)
    CLUSTER_DIR=$OUT/cluster
    for port in "${CPORTS[@]}"; do
        start_redis_cluster_node "$port" "$CLUSTER_DIR/$port" "$ROOT/infrastructure/redis/redis.conf" --maxmemory 0
    done
    trap 'stop_redis_cluster "$CLUSTER_DIR"; cleanup' EXIT
    create_redis_cluster "${CPORTS[@]}"
    wait_redis_cluster 60 "${CPORTS[@]}"
    NODES=$(printf 'redis://127.0.0.1:%s,' "${CPORTS[@]}")
    SINGLE_PIDS=("${REDIS_PIDS[@]}")
    CLUSTER_PIDS=()
    for port in "${CPORTS[@]}"; do CLUSTER_PIDS+=("$(<"$CLUSTER_DIR/$port/redis.pid")"); done
    # cluster_runs <label suffix>: the two runs of each configuration: batches
    # closed loop (events/s end to end) and single events at a moderate rate
    # (each request's latency, where WAIT adds a replication round trip).
    cluster_runs() {
        run "batch-max-$1" --mode closed -c 8 -b 100 --duration "$DURATION"
        run "single-$1" --rate "${BENCH_CLUSTER_SINGLE_RATE:-5000}" -c 64 -b 0 --duration "$DURATION"
    }
    REDIS_PIDS=("${SINGLE_PIDS[@]}")
    start_services STREAM_SHARDS=3
    cluster_runs one-server
    REDIS_PIDS=("${CLUSTER_PIDS[@]}")
    start_services STREAM_SHARDS=3 REDIS_CLUSTER_NODES="$NODES"
    cluster_runs cluster
    start_services STREAM_SHARDS=3 REDIS_CLUSTER_NODES="$NODES" REDIS_MIN_REPLICAS_ACK=1
    cluster_runs cluster-ack1
    say "results ($OUT)"
    "$LOAD" bench-report "$OUT"
    exit 0
fi

run batch-max --mode closed -c 8 -b 100 --duration "$DURATION"
run batch-max-keyed --mode closed -c 8 -b 100 --event-id-share 1 --duration "$DURATION"
run otlp-max --mode closed -c 8 -b 100 --format otlp --duration "$DURATION"
run batch-max-otlp-shaped --mode closed -c 8 -b 100 --format json-as-otlp --duration "$DURATION"
run batch-sustained --rate "$BATCH_RATE" -c 16 -b 100 --duration "$DURATION"
run single --rate "$SINGLE_RATE" -c "${BENCH_SINGLE_CONNECTIONS:-256}" -b 0 --duration "$DURATION"
# The single-event knee: where p99 passes 10 ms.
for rate in ${BENCH_SWEEP_RATES:-5000 10000 15000 20000 25000}; do
    run "sweep-$rate" --rate "$rate" -c "${BENCH_SINGLE_CONNECTIONS:-256}" -b 0 \
        --duration "${BENCH_SWEEP_DURATION:-10s}"
done
SUSTAINED=$(grep -o '"events_per_second": [0-9.]*' "$OUT/batch-sustained.json" | head -1 | awk '{printf "%.0f", $2}')
run lag --rate "$((SUSTAINED / 2))" -c 16 -b 100 --duration "$DURATION"

mem() { awk -v what="$2" '$1 == what":" {print $2}' "/proc/$1/status"; }
printf '{"gateway": {"vmrss_kib": %s, "vmhwm_kib": %s}, "worker": {"vmrss_kib": %s, "vmhwm_kib": %s}}\n' \
    "$(mem "$GW_PID" VmRSS)" "$(mem "$GW_PID" VmHWM)" "$(mem "$WORKER_PID" VmRSS)" "$(mem "$WORKER_PID" VmHWM)" \
    >"$OUT/memory.json"
{
    printf '{'
    sep=
    for label in "${!BACKLOG[@]}"; do
        printf '%s"%s": {"max_len": %s}' "$sep" "$label" "${BACKLOG[$label]:-0}"
        sep=,
    done
    printf '}\n'
} >"$OUT/stream.json"

say "results ($OUT)"
"$LOAD" bench-report "$OUT"
cat <<EOF

Ratios divide our figure by the ceiling measured in this run: ÷ XADD is events (or
requests) per second over redis-benchmark's XADD entries per second with the same
payload size; ÷ COPY is stored events per second over a bare COPY of the same rows.
"stream max" is the most entries the worker's group had undelivered or pending.
The last table sets otlp-max (OTLP/HTTP protobuf on /v1/logs) beside
batch-max-otlp-shaped (JSON batches of the same events, each with the metadata
the gateway maps an OTLP record to, so both store the same rows): both closed
loop, -c 8 -b 100. OTLP ÷ JSON: under 1 in a CPU row, OTLP costs
less per record; under 1 in the stored-per-second row, it is slower.
Everything (load generator, gateway, worker, Redis, PostgreSQL) shares $(nproc) cores.
EOF
