#!/usr/bin/env bash
# What `appendfsync always` costs against `everysec` on this machine: XADDs
# of the generated events' mean stream-entry size into two throwaway Redis
# servers with an append-only file, one per policy, measured alternately in
# the same run (everysec, always, everysec, always) with redis-benchmark,
# pipelined (-P 16, as the gateway's batches are) and one command per round
# trip (-P 1, as single-event requests are). Prints entries/s and the ratio.
#
# Environment: AOF_REQUESTS (200000), AOF_CLIENTS (16).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../infrastructure/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/common.sh"
cd "$EVENTLINE_ROOT"
ensure_redis
command -v redis-benchmark >/dev/null || die "redis-benchmark is missing (apt-get install redis-tools)"

N=${AOF_REQUESTS:-200000}
CLIENTS=${AOF_CLIENTS:-16}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/eventline-aof.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

SIZE=$(cargo run -q --release -p eventline-load -- entry-size --samples 20000)
PAYLOAD=$(head -c "$SIZE" /dev/zero | tr '\0' x)
declare -A PORT
read -r PORT[everysec] PORT[always] < <(free_ports 2)
for policy in everysec always; do
    mkdir -p "$TMP/$policy"
    "$REDIS_SERVER" --port "${PORT[$policy]}" --bind 127.0.0.1 --dir "$TMP/$policy" \
        --save '' --appendonly yes --appendfsync "$policy" >"$TMP/$policy.log" 2>&1 &
    PIDS+=($!)
done
for policy in everysec always; do
    for _ in $(seq 100); do
        redis-cli -p "${PORT[$policy]}" ping >/dev/null 2>&1 && continue 2
        sleep 0.05
    done
    die "redis-server ($policy) did not start; see $TMP/$policy.log"
done

bench() { # <policy> <pipeline>
    redis-benchmark -p "${PORT[$1]}" -n "$N" -c "$CLIENTS" -P "$2" --csv \
        XADD aof:bench '*' v 1 e "$PAYLOAD" | awk -F'"' 'NR == 2 {print $4}'
    redis-cli -p "${PORT[$1]}" del aof:bench >/dev/null
}
echo "XADD of $SIZE-byte entries, $N per measurement, $CLIENTS clients; filesystem: $(df -T "$TMP" | awk 'NR == 2 {print $2}')"
for pipeline in 16 1; do
    declare -A SUM=([everysec]=0 [always]=0)
    for round in 1 2; do
        for policy in everysec always; do
            rps=$(bench "$policy" "$pipeline")
            printf '  -P %-2s round %s %-8s %12.0f entries/s\n' "$pipeline" "$round" "$policy" "$rps"
            SUM[$policy]=$(awk -v a="${SUM[$policy]}" -v b="$rps" 'BEGIN {print a + b}')
        done
    done
    awk -v e="${SUM[everysec]}" -v a="${SUM[always]}" -v p="$pipeline" \
        'BEGIN {printf "-P %s: everysec %.0f, always %.0f entries/s (mean of 2): always/everysec = %.2f\n", p, e / 2, a / 2, a / e}'
done
