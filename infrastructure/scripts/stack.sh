#!/usr/bin/env bash
# The local stack behind `make up`, `make down` and `make status`: Redis and
# PostgreSQL on non-standard ports with their data under .run/, the migrations, and
# the services in the background. Running `up` again is harmless: what runs is left
# alone, what died is started again.
#
# Usage: stack.sh up|down|status
#
# Environment:
#   EVENTLINE_REDIS_PORT      Redis port (16379)
#   EVENTLINE_REDIS_CLUSTER=1 a six-node Redis Cluster (3 masters, 3 replicas)
#                             instead of the single Redis, its nodes' data under
#                             .run/redis-cluster/<port>/, given to the services
#                             as REDIS_CLUSTER_NODES (and STREAM_SHARDS=3 unless
#                             set: a shard per master); `down` and `status`
#                             handle it whether this is set or not. To switch
#                             between the two, `make down` first.
#   EVENTLINE_REDIS_CLUSTER_PORT  the first node's port (17000): the nodes listen
#                             on it and the next five, their cluster bus 10000 higher
#   EVENTLINE_REDIS_CLUSTER_NODE_TIMEOUT  cluster-node-timeout in ms (1500)
#   EVENTLINE_PG_PORT         PostgreSQL port (15432)
#   EVENTLINE_PG_SETTINGS     PostgreSQL settings, space-separated name=value
#                             (default: shared_buffers=1GB max_wal_size=8GB
#                             checkpoint_timeout=15min); applied when it starts
#   EVENTLINE_GATEWAY_PORT, EVENTLINE_QUERY_PORT, EVENTLINE_WORKER_PORT,
#   EVENTLINE_RETENTION_PORT  service ports (8080, 8081, 9091, 9092)
#   EVENTLINE_RUN_DIR         where data, logs and pids live (.run/)
#   EVENTLINE_READY_TIMEOUT   seconds to wait for each service to be ready (60)
#   PROFILE                   cargo profile: dev (default) or release
#   SKIP_BUILD=1              use the binaries already in target/ (no cargo build)
#   CARGO_TARGET_DIR          honoured when looking for the binaries
set -euo pipefail

# One entry per service: name | arguments | readiness URL.
# A service is started only once services/<name>/Cargo.toml exists.
# Stopped in this order too: the gateway stops accepting before the worker drains.
GATEWAY_PORT=${EVENTLINE_GATEWAY_PORT:-8080}
QUERY_PORT=${EVENTLINE_QUERY_PORT:-8081}
WORKER_PORT=${EVENTLINE_WORKER_PORT:-9091}
RETENTION_PORT=${EVENTLINE_RETENTION_PORT:-9092}
SERVICES=(
    "ingest-gateway|--listen 127.0.0.1:$GATEWAY_PORT|http://127.0.0.1:$GATEWAY_PORT/health/ready"
    "query-api|--listen 127.0.0.1:$QUERY_PORT|http://127.0.0.1:$QUERY_PORT/health/ready"
    "worker|--listen 127.0.0.1:$WORKER_PORT|http://127.0.0.1:$WORKER_PORT/health/ready"
    "retention-job|schedule --listen 127.0.0.1:$RETENTION_PORT|http://127.0.0.1:$RETENTION_PORT/health/ready"
)

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REDIS_PORT=${EVENTLINE_REDIS_PORT:-16379}
CLUSTER_PORT=${EVENTLINE_REDIS_CLUSTER_PORT:-17000}
CLUSTER_PORTS=()
for ((i = 0; i < 6; i++)); do CLUSTER_PORTS+=($((CLUSTER_PORT + i))); done
PG_PORT=${EVENTLINE_PG_PORT:-15432}
READY_TIMEOUT=${EVENTLINE_READY_TIMEOUT:-60}
RUN=${EVENTLINE_RUN_DIR:-$EVENTLINE_ROOT/.run}
LOGS=$RUN/logs
PIDS=$RUN/pids
PG_DATA=$RUN/postgres
CLUSTER_DIR=$RUN/redis-cluster
# PostgreSQL's default 128 MB of shared buffers holds a few minutes of events:
# queries over older hours then copy every page from the OS cache. Its default
# 1 GB of WAL between checkpoints lasts ~20 s at 50,000 events/s, and
# PostgreSQL warns about checkpoints that close together
# (docs/adr/0012-checkpoints-and-aof-rewrites.md).
PG_SETTINGS=${EVENTLINE_PG_SETTINGS-shared_buffers=1GB max_wal_size=8GB checkpoint_timeout=15min}

cd "$EVENTLINE_ROOT"

# ---- helpers ----------------------------------------------------------------

service_exists() { [[ -f services/$1/Cargo.toml ]]; }

cluster_mode() { [[ ${EVENTLINE_REDIS_CLUSTER:-} == 1 ]]; }

# "cluster" or "single": the Redis the stack runs on.
redis_mode() { if cluster_mode; then echo cluster; else echo single; fi; }

# The cluster nodes' URLs, comma-separated.
cluster_nodes() {
    local IFS=,
    printf '%s\n' "${CLUSTER_PORTS[*]/#/redis://127.0.0.1:}"
}

# Pattern that identifies a service's process in /proc/<pid>/cmdline.
service_pattern() { printf '/%s ' "$1"; }

service_pid() { live_pid "$PIDS/$1.pid" "$(service_pattern "$1")"; }

# Cargo flags and output directory for $PROFILE.
profile_args() {
    case ${PROFILE:-dev} in
        dev | debug) ;;
        release) printf '%s\n' --release ;;
        *) printf '%s\n' --profile "$PROFILE" ;;
    esac
}
bin_dir() {
    local target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$EVENTLINE_ROOT/$target
    case ${PROFILE:-dev} in
        dev | debug) printf '%s/debug\n' "$target" ;;
        *) printf '%s/%s\n' "$target" "$PROFILE" ;;
    esac
}

# The path of a built binary, or a clear error when it has not been built.
binary() {
    local bin
    bin=$(bin_dir)/$1
    [[ -x $bin ]] || die "$1 not found at $bin; build it with 'make build' (or run without SKIP_BUILD=1)"
    printf '%s\n' "$bin"
}

psql_local() { "$PSQL" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

# ---- up -----------------------------------------------------------------------

# The stack runs on one kind of Redis at a time: refuses to start on the one
# asked for while the other, or services started on the other, still run.
# Records the mode in $PIDS/redis-mode (none recorded: a single Redis).
check_redis_mode() {
    local mode recorded=single running="" pid pidfile line name args url
    mode=$(redis_mode)
    [[ -s $PIDS/redis-mode ]] && recorded=$(<"$PIDS/redis-mode")
    if [[ $mode == cluster ]] && pid=$(live_pid "$PIDS/redis.pid" redis-server); then
        running="a single Redis (pid $pid)"
    elif [[ $mode == single ]]; then
        for pidfile in "$CLUSTER_DIR"/*/redis.pid; do
            if [[ -e $pidfile ]] && live_pid "$pidfile" redis-server >/dev/null; then running="the Redis Cluster"; fi
        done
    fi
    if [[ -z $running && $recorded != "$mode" ]]; then
        for line in "${SERVICES[@]}"; do
            IFS='|' read -r name args url <<<"$line"
            if service_pid "$name" >/dev/null; then running="$name, started on the $recorded Redis"; fi
        done
    fi
    [[ -z $running ]] || die "the stack runs on $running; 'make down' first, then make up again"
    printf '%s\n' "$mode" >"$PIDS/redis-mode"
}

up_redis() {
    local pid
    if pid=$(live_pid "$PIDS/redis.pid" redis-server); then
        info "Redis already running (pid $pid)"
        return 0
    fi
    ! port_in_use "$REDIS_PORT" ||
        die "port $REDIS_PORT is taken by a process 'make up' did not start; stop it or set EVENTLINE_REDIS_PORT"
    info "starting Redis on 127.0.0.1:$REDIS_PORT"
    # Persistence from the deployed configuration (AOF, fsync every second, no
    # RDB snapshots, the AOF rewrite threshold), but no memory cap: make bench
    # keeps millions of dedup claims, more than the compose Redis's 1 GB.
    start_redis "$REDIS_PORT" "$RUN/redis" "$EVENTLINE_ROOT/infrastructure/redis/redis.conf" \
        --maxmemory 0 --pidfile "$PIDS/redis.pid" --logfile "$LOGS/redis.log"
}

# EVENTLINE_REDIS_CLUSTER=1: six cluster nodes instead of the single Redis,
# with its configuration, made into one cluster the first time.
up_redis_cluster() {
    local port pid
    ensure_redis_cli
    for port in "${CLUSTER_PORTS[@]}"; do
        if pid=$(live_pid "$CLUSTER_DIR/$port/redis.pid" redis-server); then
            info "Redis Cluster node $port already running (pid $pid)"
            continue
        fi
        if port_in_use "$port" || port_in_use $((port + 10000)); then
            die "port $port or $((port + 10000)) (its cluster bus) is taken by a process 'make up' did not start; stop it or set EVENTLINE_REDIS_CLUSTER_PORT"
        fi
        info "starting Redis Cluster node on 127.0.0.1:$port"
        start_redis_cluster_node "$port" "$CLUSTER_DIR/$port" "$EVENTLINE_ROOT/infrastructure/redis/redis.conf" \
            --maxmemory 0 --logfile "$LOGS/redis-$port.log"
    done
    create_redis_cluster "${CLUSTER_PORTS[@]}"
    info "waiting for the Redis Cluster (cluster_state:ok on every node, replicas in sync)"
    wait_redis_cluster 60 "${CLUSTER_PORTS[@]}"
    wait_redis_cluster_replicas 60 "${CLUSTER_PORTS[@]}"
}

up_postgres() {
    if pg_running "$PG_DATA"; then
        info "PostgreSQL already running"
    else
        ! port_in_use "$PG_PORT" ||
            die "port $PG_PORT is taken by a process 'make up' did not start; stop it or set EVENTLINE_PG_PORT"
        info "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        # shellcheck disable=SC2086 # one word per setting
        start_postgres "$PG_PORT" "$PG_DATA" "$LOGS/postgres.log" $PG_SETTINGS
    fi
    if [[ $(psql_local -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'eventline'") != 1 ]]; then
        info "creating database eventline"
        psql_local -d postgres -c 'CREATE DATABASE eventline'
    fi
}

# KEY_PEPPER from .run/key-pepper, generated once (64 hex chars, mode 600).
load_key_pepper() {
    local file=$RUN/key-pepper
    if [[ ! -s $file ]]; then
        info "generating $file"
        (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$file")
    fi
    chmod 600 "$file"
    KEY_PEPPER=$(<"$file")
    [[ $KEY_PEPPER =~ ^[0-9a-f]{64}$ ]] ||
        die "$file does not hold 64 hex characters; delete it and .run/dev-api-key to start over"
}

build() {
    if [[ ${SKIP_BUILD:-} == 1 ]]; then
        info "SKIP_BUILD=1: using the binaries in $(bin_dir)"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"
    local cargo_args
    mapfile -t cargo_args < <(profile_args)
    info "cargo build --workspace --bins ${cargo_args[*]}"
    cargo build --workspace --bins "${cargo_args[@]}"
}

ensure_dev_key() {
    local file=$RUN/dev-api-key key
    [[ -s $file ]] && return 0
    info "creating the dev API key ($file)"
    key=$("$EVENTCTL" keys create --name dev --scopes ingest,query,admin)
    key=${key//[[:space:]]/}
    [[ -n $key ]] || die "'eventctl keys create' printed no key"
    (umask 077 && printf '%s\n' "$key" >"$file")
    chmod 600 "$file"
}

start_service() {
    local name=$1 args=$2 bin pid argv
    if pid=$(service_pid "$name"); then
        info "$name already running (pid $pid)"
        return 0
    fi
    bin=$(binary "$name")
    read -r -a argv <<<"$args"
    info "starting $name $args"
    printf '\n==== %s started: %s %s\n' "$(date -u +%FT%TZ)" "$bin" "$args" >>"$LOGS/$name.log"
    nohup "$bin" "${argv[@]}" </dev/null >>"$LOGS/$name.log" 2>&1 &
    printf '%s\n' "$!" >"$PIDS/$name.pid"
}

# Polls <url> until it answers 200; fails early if the process exits, and after
# READY_TIMEOUT seconds. On failure prints the tail of the service's log.
wait_ready() {
    local name=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT)) code
    while true; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $code == 200 ]] && return 0
        if ! service_pid "$name" >/dev/null; then
            printf 'error: %s exited before becoming ready\n' "$name" >&2
            break
        fi
        if ((SECONDS >= deadline)); then
            [[ $code != 000 ]] || code="nothing (no connection)"
            printf 'error: %s not ready after %ss (%s answered %s)\n' "$name" "$READY_TIMEOUT" "$url" "$code" >&2
            break
        fi
        sleep 0.5
    done
    show_log_tail "$LOGS/$name.log" 30
    return 1
}

print_summary() {
    local line name args url started=() missing=()
    printf '\neventline is up.\n'
    for line in "${SERVICES[@]}"; do
        IFS='|' read -r name args url <<<"$line"
        if service_exists "$name"; then
            started+=("$name")
            printf '  %-15s %s  (ready: %s, metrics: %s)\n' "$name" "${url%/health/ready}" "$url" "${url%/health/ready}/metrics"
        else
            missing+=("$name")
        fi
    done
    if cluster_mode; then
        printf '  %-15s %s (STREAM_SHARDS=%s)\n' "Redis Cluster" "$REDIS_CLUSTER_NODES" "$STREAM_SHARDS"
    else
        printf '  %-15s %s\n' Redis "$REDIS_URL"
    fi
    printf '  %-15s %s\n' PostgreSQL "$DATABASE_URL"
    printf '  %-15s %s\n' logs ".run/logs/" "dev API key" ".run/dev-api-key"
    if ((${#missing[@]} > 0)); then
        local IFS=,
        printf '\nServices in the workspace so far: %s. Not yet: %s.\n' \
            "${started[*]:-none}" "${missing[*]}"
    fi
    if service_exists ingest-gateway; then
        # shellcheck disable=SC2016 # printed for the user to run, not expanded here
        printf '\nTry it:\n  %s\n' 'curl -sS -X POST http://127.0.0.1:'"$GATEWAY_PORT"'/v1/events -H "Authorization: Bearer $(cat .run/dev-api-key)" -H '"'"'Content-Type: application/json'"'"' -d '"'"'{"service":"checkout","message":"hello"}'"'"
    fi
    printf '\nStop it with: make down   (data stays in .run/; rm -rf .run wipes it)\n'
}

cmd_up() {
    ensure_redis
    ensure_postgres
    mkdir -p "$LOGS" "$PIDS"
    check_redis_mode
    if cluster_mode; then up_redis_cluster; else up_redis; fi
    up_postgres
    load_key_pepper
    build

    # The environment every service (and eventctl) gets. Exported only after the
    # build, so a sqlx compile-time DATABASE_URL is never pointed at this database.
    # On the cluster the services read REDIS_CLUSTER_NODES and not REDIS_URL;
    # on one server a REDIS_CLUSTER_NODES from the caller's shell must not
    # send them elsewhere.
    export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    if cluster_mode; then
        REDIS_CLUSTER_NODES=$(cluster_nodes)
        export REDIS_CLUSTER_NODES
        export STREAM_SHARDS=${STREAM_SHARDS:-3}
    else
        unset REDIS_CLUSTER_NODES
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/eventline"
    export KEY_PEPPER
    export LOG_FORMAT=json

    EVENTCTL=$(binary eventctl)
    info "applying migrations"
    "$EVENTCTL" migrate
    ensure_dev_key

    local line name args url failed=0
    for line in "${SERVICES[@]}"; do
        IFS='|' read -r name args url <<<"$line"
        if service_exists "$name"; then start_service "$name" "$args"; fi
    done
    for line in "${SERVICES[@]}"; do
        IFS='|' read -r name args url <<<"$line"
        service_exists "$name" || continue
        info "waiting for $name ($url)"
        wait_ready "$name" "$url" || failed=1
    done
    ((failed == 0)) || die "not every service became ready; see above (.run/logs/). 'make down' stops what runs."
    print_summary
}

# ---- down and status ----------------------------------------------------------

cmd_down() {
    local line name args url
    for line in "${SERVICES[@]}"; do
        IFS='|' read -r name args url <<<"$line"
        stop_pidfile "$PIDS/$name.pid" "$(service_pattern "$name")" "$name" 15
    done
    stop_redis "$PIDS/redis.pid"
    stop_redis_cluster "$CLUSTER_DIR"
    rm -f "$PIDS/redis-mode"
    if [[ -f $PG_DATA/postmaster.pid ]]; then
        PG_BIN=$(find_pg_bin) || die "cannot find pg_ctl to stop the PostgreSQL in $PG_DATA"
        stop_postgres "$PG_DATA" fast
    fi
    printf 'Stopped. Data stays in .run/ (rm -rf .run wipes it).\n'
}

# One line per cluster node and one for the cluster, when the cluster mode is
# on or a node runs.
status_redis_cluster() {
    local port pid state=""
    cluster_mode || compgen -G "$CLUSTER_DIR/*/redis.pid" >/dev/null || return 0
    ensure_redis_cli
    for port in "${CLUSTER_PORTS[@]}"; do
        if pid=$(live_pid "$CLUSTER_DIR/$port/redis.pid" redis-server); then
            printf '%-15s running (pid %s) redis://127.0.0.1:%s %s\n' \
                "Redis :$port" "$pid" "$port" "$(redis_cli_on "$port" ROLE | head -n 1)"
            [[ -n $state ]] || state=$(redis_cluster_info "$port" cluster_state)
        else
            printf '%-15s stopped\n' "Redis :$port"
        fi
    done
    printf '%-15s cluster_state:%s\n' "Redis Cluster" "${state:-unknown (no node answers)}"
}

cmd_status() {
    local line name args url pid ready
    if pid=$(live_pid "$PIDS/redis.pid" redis-server); then
        printf '%-15s running (pid %s) redis://127.0.0.1:%s\n' Redis "$pid" "$REDIS_PORT"
    elif ! cluster_mode && [[ $(cat "$PIDS/redis-mode" 2>/dev/null) != cluster ]]; then
        printf '%-15s stopped\n' Redis
    fi
    status_redis_cluster
    # shellcheck disable=SC2034 # PG_BIN is read by pg_running (common.sh)
    if PG_BIN=$(find_pg_bin) && pg_running "$PG_DATA"; then
        printf '%-15s running (pid %s) postgres://postgres@127.0.0.1:%s/eventline\n' \
            PostgreSQL "$(head -n 1 "$PG_DATA/postmaster.pid")" "$PG_PORT"
    else
        printf '%-15s stopped\n' PostgreSQL
    fi
    for line in "${SERVICES[@]}"; do
        IFS='|' read -r name args url <<<"$line"
        if ! service_exists "$name"; then
            printf '%-15s not in the workspace yet\n' "$name"
        elif pid=$(service_pid "$name"); then
            ready="not ready"
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true) == 200 ]] && ready=ready
            printf '%-15s running (pid %s) %s %s\n' "$name" "$pid" "${url%/health/ready}" "$ready"
        else
            printf '%-15s stopped\n' "$name"
        fi
    done
}

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        printf 'usage: %s up|down|status\n' "$0" >&2
        exit 2
        ;;
esac
