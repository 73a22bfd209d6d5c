#!/usr/bin/env bash
# `make chaos`: the chaos runner in full (eventline-load chaos). It starts a
# stack of its own — Redis persisting to its append-only file with
# `appendfsync everysec`, PostgreSQL, a TCP proxy between the workers and
# PostgreSQL, the gateway and three workers, release builds — on free ports
# under a scratch directory, and runs each scenario for 45 s at 8,000 events/s
# while it kills, freezes, stops and cuts those parts; then it checks every
# accepted event against PostgreSQL. Then the same on a second stack whose
# Redis is a Redis Cluster (three masters, three replicas, STREAM_SHARDS=3):
# cluster-failover (a master SIGKILLed, its replica takes over, the master
# rejoins as a replica), run with the gateway's REDIS_MIN_REPLICAS_ACK=0
# (what a failover loses is counted, not a failure) and =1 (nothing may be
# lost), and cluster-freeze (a master SIGSTOPped until its replica took
# over, then SIGCONT; =1). About a quarter of an hour. The results are
# printed and written to bench-results/chaos-<UTC time>.json.
#
# Arguments are passed on, e.g. `make chaos ARGS='--scenarios redis-kill,network'`
# or only the cluster ones, `ARGS='--scenarios cluster-failover,cluster-freeze'`;
# `--keep` leaves the logs (the cluster nodes' under cluster/redis-cluster/);
# `eventline-load chaos --help` lists them. `make test` runs the same
# scenarios scaled down (`--quick`, load-tests/tests/chaos.rs).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../infrastructure/scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../infrastructure/scripts/common.sh"
cd "$EVENTLINE_ROOT"

ensure_redis
ensure_postgres
export EVENTLINE_REDIS_SERVER=$REDIS_SERVER EVENTLINE_PG_BIN=$PG_BIN

info "building (release): ingest-gateway, worker, eventline-load"
cargo build --release -q -p ingest-gateway -p worker -p eventline-load
BIN=${CARGO_TARGET_DIR:-$EVENTLINE_ROOT/target}/release
mkdir -p bench-results
OUT=bench-results/chaos-$(date -u +%Y%m%dT%H%M%SZ).json
"$BIN/eventline-load" chaos --bin-dir "$BIN" --json "$OUT" "$@"
info "results: $OUT"
