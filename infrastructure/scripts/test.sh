#!/usr/bin/env bash
# `make test` (and so CI): format check, clippy and the whole test suite, against a
# throwaway Redis and PostgreSQL on free ports under a temporary directory. Both are
# stopped and the directory removed on exit, whether the tests pass or not; the
# script exits with the status of the step that failed (0 when all pass).
#
# Environment:
#   TEST_ARGS           extra arguments for `cargo nextest run` / `cargo test`
#                       (split on spaces), e.g. TEST_ARGS='-p worker'
#   EVENTLINE_TEST_CMD  a shell command run instead of fmt, clippy and the tests,
#                       to check the harness itself
#   EVENTLINE_REDIS_SERVER, EVENTLINE_PG_BIN  use these binaries instead of searching
#   EVENTLINE_TEST_PG_SETTINGS  extra PostgreSQL settings, space-separated
#                       name=value (e.g. for the drain bench: shared_buffers=1GB)
#
# Exported to the tests:
#   EVENTLINE_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:<port>/postgres (superuser)
#   EVENTLINE_TEST_REDIS_URL     redis://127.0.0.1:<port>
#   EVENTLINE_TEST_REDIS_CLUSTER_NODES  the six nodes of a throwaway Redis Cluster
#                       (3 masters, 3 replicas), comma-separated redis:// URLs
#   EVENTLINE_REDIS_SERVER       path to redis-server, for tests that run their own
#   EVENTLINE_PG_BIN             directory of initdb/pg_ctl/postgres
#   EVENTLINE_TOOLS_PYTHON       the Python of the tools virtualenv (<target dir>/tools-venv,
#                       load-tests/otel/requirements.txt: the OpenTelemetry SDK), built
#                       here before the tests and rebuilt only when the requirements or
#                       python3 change
#   EVENTLINE_BROWSER_PYTHON     the same for the browser virtualenv (<target dir>/browser-venv,
#                       services/query-api/tests/browser/requirements.txt: Selenium,
#                       whose pins clash with the SDK's); Debian's chromium and
#                       chromium-driver are installed too when missing (as root)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$EVENTLINE_ROOT"

step() { printf '\n==== %s\n' "$*" >&2; }

TMP=""
cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n $TMP ]]; then
        stop_redis "$TMP/redis/redis.pid"
        stop_redis_cluster "$TMP/cluster"
        stop_postgres "$TMP/pg" immediate
        rm -rf "$TMP"
    fi
    if ((status == 0)); then
        step "all checks passed"
    else
        step "FAILED (exit status $status)"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TOOLS_REQUIREMENTS=load-tests/otel/requirements.txt
BROWSER_REQUIREMENTS=services/query-api/tests/browser/requirements.txt

# A virtualenv the tests drive real clients from: <target dir>/$2 from the
# pinned requirements file $1, its Python exported as $3. A stamp holds the
# hash of the requirements and of python3's version: a warm run only
# compares it.
ensure_venv() {
    local requirements=$1 name=$2 variable=$3
    local target venv stamp want
    target=${CARGO_TARGET_DIR:-target}
    [[ $target == /* ]] || target=$EVENTLINE_ROOT/$target
    venv=$target/$name
    stamp=$venv/.requirements.sha256
    if ! command -v python3 >/dev/null; then
        is_root || die "python3 not found (the tools virtualenv needs it): sudo apt-get install -y python3 python3-venv"
        apt_install python3 python3-venv
    fi
    want=$({
        python3 -c 'import sys; print(sys.version, sys.executable)'
        cat "$requirements"
    } | sha256sum | cut -d' ' -f1)
    if [[ ! -x $venv/bin/python || ! -f $stamp || $(<"$stamp") != "$want" ]]; then
        step "virtualenv $venv ($requirements)"
        rm -f "$stamp"
        if ! python3 -m venv --clear "$venv"; then
            # Debian and Ubuntu ship venv's pip bootstrap separately.
            is_root || die "python3 -m venv failed: sudo apt-get install -y python3-venv"
            apt_install python3-venv
            python3 -m venv --clear "$venv"
        fi
        # --no-deps: every package is pinned in the file; pip check proves none is missing.
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$requirements"
        "$venv/bin/python" -m pip check
        printf '%s\n' "$want" >"$stamp"
    fi
    export "$variable=$venv/bin/python"
}

# The console's browser test drives Debian's Chromium through its driver.
ensure_chromium() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        return 0
    fi
    is_root || die "chromium and chromedriver not found (the console's browser test needs them): sudo apt-get install -y chromium chromium-driver"
    apt_install chromium chromium-driver
}

start_databases() {
    ensure_redis
    ensure_postgres
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/eventline-test.XXXXXX")
    chmod 755 "$TMP" # the postgres OS user must reach $TMP/pg
    local redis_port pg_port
    read -r redis_port pg_port < <(free_ports 2)
    step "throwaway Redis on 127.0.0.1:$redis_port, PostgreSQL on 127.0.0.1:$pg_port ($TMP)"
    start_redis "$redis_port" "$TMP/redis" --save '' --appendonly no
    local pg_settings
    read -r -a pg_settings <<<"${EVENTLINE_TEST_PG_SETTINGS:-}"
    start_postgres "$pg_port" "$TMP/pg" "$TMP/postgres.log" \
        fsync=off synchronous_commit=off full_page_writes=off max_connections=300 "${pg_settings[@]}"

    start_test_cluster

    export EVENTLINE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
    export EVENTLINE_TEST_REDIS_URL="redis://127.0.0.1:$redis_port"
    export EVENTLINE_REDIS_SERVER=$REDIS_SERVER
    export EVENTLINE_PG_BIN=$PG_BIN
}

# Six Redis Cluster nodes on free ports (each with its bus port free too),
# made one cluster of 3 masters and 3 replicas.
start_test_cluster() {
    local ports port nodes=()
    ensure_redis_cli
    read -r -a ports < <(free_cluster_ports 6)
    ((${#ports[@]} == 6)) || die "cannot find six free ports for the test Redis Cluster"
    step "throwaway Redis Cluster on 127.0.0.1:${ports[*]}"
    for port in "${ports[@]}"; do
        start_redis_cluster_node "$port" "$TMP/cluster/$port" --save '' --appendonly no
        nodes+=("redis://127.0.0.1:$port")
    done
    create_redis_cluster "${ports[@]}"
    wait_redis_cluster 60 "${ports[@]}"
    # A WAIT for one replica (the replica-ack tests) must not meet a replica
    # still syncing.
    wait_redis_cluster_replicas 60 "${ports[@]}"
    EVENTLINE_TEST_REDIS_CLUSTER_NODES=$(IFS=,; printf '%s' "${nodes[*]}")
    export EVENTLINE_TEST_REDIS_CLUSTER_NODES
}

run_checks() {
    local extra
    read -r -a extra <<<"${TEST_ARGS:-}"
    command -v cargo >/dev/null || die "cargo not found (install Rust: https://rustup.rs)"

    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check

    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings

    step "deployment files (infrastructure/scripts/check-deploy.sh)"
    "$EVENTLINE_ROOT/infrastructure/scripts/check-deploy.sh"

    step "cargo deny check licenses bans sources"
    if ! cargo deny --version >/dev/null 2>&1; then
        echo "cargo-deny is not installed: cargo install cargo-deny --locked" >&2
        cargo install cargo-deny --locked
    fi
    cargo deny check licenses bans sources

    # TEST_ARGS narrows the run (-p <crate>, a filter): then no --workspace,
    # which would select every crate again.
    local scope=(--workspace)
    ((${#extra[@]} == 0)) || scope=()
    if cargo nextest --version >/dev/null 2>&1; then
        step "cargo nextest run ${scope[*]} --no-fail-fast ${extra[*]}"
        cargo nextest run "${scope[@]}" --no-fail-fast "${extra[@]}"
    else
        step "cargo test ${scope[*]} --no-fail-fast ${extra[*]} (cargo-nextest not installed)"
        cargo test "${scope[@]}" --no-fail-fast "${extra[@]}"
    fi

    # The whole stack, Prometheus scraping it, the dashboards' metric names.
    # Skipped only when the run is narrowed with TEST_ARGS.
    if [[ -z ${TEST_ARGS:-} ]]; then
        step "observability (infrastructure/scripts/check-observability.sh)"
        "$EVENTLINE_ROOT/infrastructure/scripts/check-observability.sh"
    fi
}

ensure_venv "$TOOLS_REQUIREMENTS" tools-venv EVENTLINE_TOOLS_PYTHON
ensure_venv "$BROWSER_REQUIREMENTS" browser-venv EVENTLINE_BROWSER_PYTHON
ensure_chromium
start_databases
if [[ -n ${EVENTLINE_TEST_CMD:-} ]]; then
    step "EVENTLINE_TEST_CMD: $EVENTLINE_TEST_CMD"
    bash -c "$EVENTLINE_TEST_CMD"
else
    run_checks
fi
