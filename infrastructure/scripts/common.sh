# shellcheck shell=bash
# Shared helpers for stack.sh and test.sh: find (or install) redis-server and the
# PostgreSQL server binaries, start and stop private instances of both, find free
# ports. Sourced, never executed; callers set `set -euo pipefail`.
#
# Invariant: these helpers only ever signal a process whose pid they read from a
# pidfile they were given AND whose command line matches what we started, so a
# system Redis or PostgreSQL is never touched.

# shellcheck disable=SC2034 # used by the scripts that source this file
EVENTLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# ---- messages -------------------------------------------------------------

info() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { ((EUID == 0)); }

# Print the last lines of a log file, framed, to stderr.
show_log_tail() {
    local log=$1 lines=${2:-30}
    [[ -f $log ]] || { warn "no log at $log"; return 0; }
    printf -- '---- last %s lines of %s ----\n' "$lines" "$log" >&2
    tail -n "$lines" "$log" >&2
    printf -- '---- end of %s ----\n' "$log" >&2
}

# ---- installing what is missing -------------------------------------------

APT_UPDATED=""
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: $*"
    if [[ -z $APT_UPDATED ]]; then
        info "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    info "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Sets REDIS_SERVER to the redis-server binary. EVENTLINE_REDIS_SERVER overrides.
# Installs the Debian package when missing and we are root; otherwise says what to do.
ensure_redis() {
    REDIS_SERVER=${EVENTLINE_REDIS_SERVER:-$(command -v redis-server || true)}
    if [[ -z $REDIS_SERVER ]]; then
        is_root || die "redis-server not found. Install it (sudo apt-get install -y redis-server) or set EVENTLINE_REDIS_SERVER=/path/to/redis-server"
        apt_install redis-server
        REDIS_SERVER=$(command -v redis-server) || die "redis-server still missing after apt-get install"
    fi
    [[ -x $REDIS_SERVER ]] || die "redis-server at $REDIS_SERVER is not executable"
}

# Prints the directory holding initdb, pg_ctl and postgres: EVENTLINE_PG_BIN if set,
# else the highest /usr/lib/postgresql/<version>/bin (Debian), else PATH.
find_pg_bin() {
    local dir
    if [[ -n ${EVENTLINE_PG_BIN:-} ]]; then
        printf '%s\n' "$EVENTLINE_PG_BIN"
        return 0
    fi
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    dir=$(command -v pg_ctl || true)
    if [[ -n $dir && -x ${dir%/*}/initdb && -x ${dir%/*}/postgres ]]; then
        printf '%s\n' "${dir%/*}"
        return 0
    fi
    return 1
}

# Sets PG_BIN (server binaries) and PSQL. Installs PostgreSQL when missing and root.
# shellcheck disable=SC2034 # PSQL is for the callers
ensure_postgres() {
    if ! PG_BIN=$(find_pg_bin); then
        is_root || die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. Install them (sudo apt-get install -y postgresql; on Debian 12 that is postgresql-15) or set EVENTLINE_PG_BIN=/path/to/postgresql/bin"
        apt_install postgresql
        PG_BIN=$(find_pg_bin) || die "PostgreSQL binaries still missing after apt-get install"
    fi
    [[ -x $PG_BIN/pg_ctl && -x $PG_BIN/initdb ]] || die "no initdb/pg_ctl in $PG_BIN"
    if [[ -x $PG_BIN/psql ]]; then
        PSQL=$PG_BIN/psql
    else
        PSQL=$(command -v psql) || die "psql not found (install postgresql-client)"
    fi
    if is_root; then
        id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' OS user to run PostgreSQL as"
    fi
}

# ---- processes and ports --------------------------------------------------

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints <count> distinct free TCP ports on 127.0.0.1, space separated.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Prints <count> distinct ports on 127.0.0.1 that are free together with the
# port 10000 above each (a Redis Cluster node's bus), space separated.
free_cluster_ports() {
    python3 - "$1" <<'EOF'
import random, socket, sys
want, found, held = int(sys.argv[1]), [], []
for port in random.sample(range(20000, 55000), 5000):
    pair = [socket.socket(), socket.socket()]
    try:
        for s, p in zip(pair, (port, port + 10000)):
            s.bind(("127.0.0.1", p))
    except OSError:
        for s in pair:
            s.close()
        continue
    found.append(port)
    held += pair
    if len(found) == want:
        break
print(" ".join(map(str, found)))
EOF
}

# Prints the pid recorded in <pidfile> if that process is alive and its command line
# contains <pattern>; fails otherwise (no file, dead process, or pid reused by another
# program).
live_pid() {
    local pidfile=$1 pattern=$2 pid cmdline
    [[ -s $pidfile ]] || return 1
    read -r pid <"$pidfile" || true
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/cmdline ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline") "
        [[ $cmdline == *"$pattern"* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

# SIGTERM the process in <pidfile> (if it is ours and alive), wait up to <timeout>
# seconds, then SIGKILL. Removes the pidfile.
stop_pidfile() {
    local pidfile=$1 pattern=$2 name=$3 timeout=${4:-15} pid i
    if pid=$(live_pid "$pidfile" "$pattern"); then
        info "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name did not exit within ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

# ---- Redis ----------------------------------------------------------------

# True when a Redis on 127.0.0.1:<port> answers PING with PONG (not LOADING etc.).
# redis_ping <port>: 0 when Redis answers PONG, 2 while it is still loading
# its data set (-LOADING), 1 otherwise.
redis_ping() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [[ $reply == "+PONG"* ]] && exit 0
        [[ $reply == "-LOADING"* ]] && exit 2
        exit 1
    ) 2>/dev/null
}

# start_redis <port> <dir> [config file] [redis-server options...]
# Daemonized Redis bound to 127.0.0.1 with its data in <dir>; pidfile and log default
# to <dir>/redis.pid and <dir>/redis.log. A config file (any first argument not
# starting with --) is read first; options override it, and later options
# earlier ones, so callers pass e.g. `--save '' --appendonly no` or
# `--pidfile X --logfile Y`. Returns once Redis answers PING.
start_redis() {
    local port=$1 dir=$2 log=$2/redis.log deadline i config=()
    shift 2
    if [[ $# -gt 0 && $1 != --* ]]; then
        config=("$1")
        shift
    fi
    mkdir -p "$dir"
    local redis_args=("${config[@]}" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir"
        --pidfile "$dir/redis.pid" --logfile "$log" "$@")
    # The effective log is the last --logfile given; we show it when start-up fails.
    for ((i = 0; i < ${#redis_args[@]} - 1; i++)); do
        if [[ ${redis_args[i]} == --logfile ]]; then log=${redis_args[i + 1]}; fi
    done
    "$REDIS_SERVER" "${redis_args[@]}" || { show_log_tail "$log"; die "redis-server failed to start on port $port"; }
    # 30 s to answer at all; a large AOF then takes as long as it takes to
    # load (Redis answers -LOADING meanwhile), up to 10 minutes.
    local loading_said="" status
    deadline=$((SECONDS + 30))
    while true; do
        status=0
        redis_ping "$port" || status=$?
        ((status == 0)) && break
        if ((status == 2)) && [[ -z $loading_said ]]; then
            info "Redis on port $port is loading its data set (see $log)"
            loading_said=1
            deadline=$((SECONDS + 600))
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$log"
            die "Redis on port $port did not answer PING in time"
        fi
        sleep 0.1
    done
}

# stop_redis <pidfile>: SIGTERM, so Redis flushes its AOF/RDB as configured.
stop_redis() { stop_pidfile "$1" redis-server Redis 30; }

# ---- Redis Cluster --------------------------------------------------------

# cluster-node-timeout (ms) of the local clusters: a master that stops
# answering for this long is failed over to its replica within a few seconds.
REDIS_CLUSTER_NODE_TIMEOUT=${EVENTLINE_REDIS_CLUSTER_NODE_TIMEOUT:-1500}

# Sets REDIS_CLI: the redis-cli next to redis-server (REDIS_SERVER or
# EVENTLINE_REDIS_SERVER), else the one on the PATH.
ensure_redis_cli() {
    local server=${REDIS_SERVER:-${EVENTLINE_REDIS_SERVER:-$(command -v redis-server || true)}}
    REDIS_CLI=${server%/*}/redis-cli
    [[ $server == */* && -x $REDIS_CLI ]] && return 0
    REDIS_CLI=$(command -v redis-cli) ||
        die "redis-cli not found; it comes with redis-server (Debian: apt-get install -y redis-tools)"
}

# redis_cli_on <port> <command...>: one command to 127.0.0.1:<port>, raw
# reply without carriage returns; gives up after 2 s (a frozen node).
redis_cli_on() {
    local port=$1
    shift
    timeout 2 "$REDIS_CLI" -h 127.0.0.1 -p "$port" --raw "$@" 2>/dev/null | tr -d '\r'
}

# redis_cluster_info <port> <field>: a CLUSTER INFO field; empty when the node
# does not answer.
redis_cluster_info() {
    redis_cli_on "$1" CLUSTER INFO | sed -n "s/^$2://p"
}

# start_redis_cluster_node <port> <dir> [config file] [redis-server options...]:
# start_redis with cluster mode on (cluster bus on <port> + 10000, state in
# <dir>/nodes.conf). Restarted with the same <dir>, a node rejoins its cluster.
start_redis_cluster_node() {
    start_redis "$@" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT"
}

# create_redis_cluster <port...>: when no node has a slot yet, makes one
# cluster of the nodes on 127.0.0.1:<port...>, one replica per master (six
# ports: three masters, three replicas). Nothing to do when every node already
# knows all 16384 slots (a cluster started again); a mix of both is an error.
create_redis_cluster() {
    local port assigned fresh=0 formed=0 addrs=()
    for port in "$@"; do
        assigned=$(redis_cluster_info "$port" cluster_slots_assigned)
        case $assigned in
            0) fresh=$((fresh + 1)) ;;
            16384) formed=$((formed + 1)) ;;
            *) die "Redis Cluster node $port reports ${assigned:-nothing} slots assigned" ;;
        esac
        addrs+=("127.0.0.1:$port")
    done
    ((formed == $#)) && return 0
    ((fresh == $#)) ||
        die "only some Redis Cluster nodes (${formed} of $#) belong to a cluster; stop them and delete their directories to start over"
    info "creating the Redis Cluster (${addrs[*]})"
    "$REDIS_CLI" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null ||
        die "redis-cli --cluster create failed"
}

# wait_redis_cluster <timeout seconds> <port...>: until every node reports
# cluster_state:ok with all 16384 slots served.
wait_redis_cluster() {
    local timeout=$1 deadline port state slots ok
    shift
    deadline=$((SECONDS + timeout))
    while true; do
        ok=1
        for port in "$@"; do
            state=$(redis_cluster_info "$port" cluster_state)
            slots=$(redis_cluster_info "$port" cluster_slots_ok)
            if [[ $state != ok || $slots != 16384 ]]; then
                ok=0
                break
            fi
        done
        ((ok == 1)) && return 0
        ((SECONDS < deadline)) ||
            die "the Redis Cluster is not ok after ${timeout}s (node $port: cluster_state:${state:-?}, cluster_slots_ok:${slots:-?})"
        sleep 0.2
    done
}

# wait_redis_cluster_replicas <timeout seconds> <port...>: until every replica
# among the nodes has its link to its master up (synced), so that a WAIT for
# one replica (REDIS_MIN_REPLICAS_ACK=1) succeeds from the first write.
wait_redis_cluster_replicas() {
    local timeout=$1 deadline port link
    shift
    deadline=$((SECONDS + timeout))
    for port in "$@"; do
        while true; do
            # A master has no master_link_status.
            link=$(redis_cli_on "$port" INFO replication | sed -n 's/^master_link_status://p')
            [[ -z $link || $link == up ]] && break
            ((SECONDS < deadline)) ||
                die "Redis Cluster replica $port: master_link_status:$link after ${timeout}s"
            sleep 0.2
        done
    done
}

# stop_redis_cluster <dir>: stop_redis for every node with a pidfile in
# <dir>/<port>/redis.pid.
stop_redis_cluster() {
    local pidfile node
    for pidfile in "$1"/*/redis.pid; do
        [[ -e $pidfile ]] || continue
        node=${pidfile%/redis.pid}
        stop_pidfile "$pidfile" redis-server "Redis Cluster node ${node##*/}" 30
    done
}

# ---- PostgreSQL -----------------------------------------------------------

# Runs a PostgreSQL server command; as the `postgres` OS user when we are root,
# because PostgreSQL refuses to run as root. Runs from / so the postgres user never
# trips over an unreadable working directory.
pg_run() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Creates <datadir> with the owner and mode PostgreSQL insists on.
prepare_pg_dir() {
    local datadir=$1
    mkdir -p "$datadir"
    if is_root; then
        chown postgres: "$datadir"
        runuser -u postgres -- test -w "$datadir" ||
            die "the postgres OS user cannot reach $datadir (a parent directory is not traversable); move the checkout or chmod o+x its parents"
    fi
    chmod 700 "$datadir"
}

# Creates <logfile> writable by the user PostgreSQL runs as.
prepare_pg_log() {
    mkdir -p "$(dirname "$1")"
    touch "$1"
    if is_root; then chown postgres: "$1"; fi
}

pg_running() {
    [[ -f $1/postmaster.pid ]] && pg_run "$PG_BIN/pg_ctl" status -D "$1" >/dev/null 2>&1
}

# start_postgres <port> <datadir> <logfile> [name=value settings...]
# initdb once (superuser `postgres`, trust auth, UTF8, C locale), then start on
# 127.0.0.1:<port> with its Unix socket in <datadir>. Each extra argument becomes
# `-c name=value`. Returns once the server accepts connections.
start_postgres() {
    local port=$1 datadir=$2 log=$3 setting sockdir
    shift 3
    prepare_pg_dir "$datadir"
    prepare_pg_log "$log"
    if [[ ! -f $datadir/PG_VERSION ]]; then
        info "initdb $datadir"
        pg_run "$PG_BIN/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 --locale=C >>"$log" 2>&1 ||
            { show_log_tail "$log"; die "initdb failed"; }
    fi
    # A Unix socket path must fit in ~107 bytes; past that, TCP only.
    sockdir=$datadir
    ((${#sockdir} <= 90)) || sockdir=""
    local opts="-p $port -k '$sockdir' -c listen_addresses=127.0.0.1"
    for setting in "$@"; do opts+=" -c $setting"; done
    pg_run "$PG_BIN/pg_ctl" start -w -t 60 -D "$datadir" -l "$log" -o "$opts" >/dev/null ||
        { show_log_tail "$log"; die "PostgreSQL failed to start on port $port"; }
}

# stop_postgres <datadir> [mode]: pg_ctl stop (default mode fast) if it is running.
stop_postgres() {
    local datadir=$1 mode=${2:-fast}
    pg_running "$datadir" || return 0
    info "stopping PostgreSQL ($datadir)"
    pg_run "$PG_BIN/pg_ctl" stop -D "$datadir" -m "$mode" -w -t 60 >/dev/null
}
